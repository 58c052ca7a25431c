"""PNG files, normalisation, colours and grids (the NumPy layer) against independent references."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from xaijax import errors, viz


def test_png_round_trips_through_pillow():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(viz.encode_png(img))).convert("RGB"))
    np.testing.assert_array_equal(decoded, img)


def test_normalize_is_finite_on_zero_maps_and_scales_to_one():
    maps = np.stack([np.zeros((4, 4)), np.arange(16.0).reshape(4, 4)])
    out = viz.normalize(maps, percentile=100)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], 0.0)
    assert out[1].max() == 1.0 and out[1, 0, 0] == 0.0


def test_colorize_endpoints_and_grid_layout():
    rgb = viz.colorize(np.array([0.0, 1.0]))
    assert rgb.shape == (2, 3) and rgb[0].sum() < rgb[1].sum()
    g = viz.grid([[np.zeros((3, 3, 3)), np.ones((3, 3))]], pad=1)
    assert g.shape == (5, 9, 3)
    np.testing.assert_array_equal(g[1:4, 5:8], 1.0)
    np.testing.assert_array_equal(g[1:4, 1:4], 0.0)
    with pytest.raises(errors.InputShapeError, match="tile"):
        viz.grid([[np.zeros((3, 3)), np.zeros((4, 4))]])


# --- one map versus a batch of maps (issue 10: `normalize` on [H, W] scaled every row) --------


def test_normalize_scales_a_single_map_as_one_map():
    m = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(viz.normalize(m, percentile=100), m / 11.0, rtol=1e-6)
    np.testing.assert_allclose(viz.normalize(m, percentile=100, signed=True), m / 11.0, rtol=1e-6)
    # A batch [B, H, W] is scaled per map; `batch_axis` makes either reading explicit.
    batch = np.stack([m, 2 * m + 1])
    out = viz.normalize(batch, percentile=100)
    np.testing.assert_allclose(out[0], m / 11.0, rtol=1e-6)
    np.testing.assert_allclose(out[1], (2 * m + 1) / 23.0, rtol=1e-6)
    whole = viz.normalize(batch, percentile=100, batch_axis=False)
    np.testing.assert_allclose(whole, batch / 23.0, rtol=1e-6)
    per_row = viz.normalize(m, percentile=100, batch_axis=True)
    np.testing.assert_allclose(per_row[1], m[1] / 7.0, rtol=1e-6)


def test_heatmap_and_overlay_of_one_example_equal_the_batched_call():
    rng = np.random.default_rng(1)
    m = rng.uniform(0, 1, (5, 6)) * np.arange(1, 6)[:, None]  # rows of different maxima
    img = rng.uniform(0, 1, (5, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(viz.heatmap(m), viz.heatmap(m[None])[0], rtol=1e-6)
    np.testing.assert_allclose(viz.overlay(img, m), viz.overlay(img[None], m[None])[0], rtol=1e-6)
    # Channel maps: [H, W, C] needs `batch_axis=False` (rank 3 reads as a batch [B, H, W]).
    cm = rng.normal(size=(5, 6, 3))
    np.testing.assert_allclose(
        viz.heatmap(cm, batch_axis=False), viz.heatmap(cm[None])[0], rtol=1e-6
    )
    np.testing.assert_allclose(viz.overlay(img, cm), viz.overlay(img[None], cm[None])[0], rtol=1e-6)


# --- named errors on bad input ------------------------------------------------------------------


def _img(*shape, value=0.5, dtype=np.float32):
    return np.full(shape, value, dtype)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: viz.normalize(np.float32(1.0)), errors.InputShapeError, "rank 0"),
        (lambda: viz.normalize(np.zeros((0, 3, 3))), errors.InputShapeError, "empty"),
        (lambda: viz.normalize(np.zeros((2, 2, 2, 2, 2))), errors.InputShapeError, "batch_axis"),
        (lambda: viz.normalize(np.array([["a", "b"]])), errors.InputDTypeError, "numeric"),
        (
            lambda: viz.normalize(np.ones((2, 2)), percentile=120),
            errors.InvalidArgumentError,
            "percentile",
        ),
        (lambda: viz.normalize(_img(2, 2, value=np.nan)), errors.NonFiniteInputError, "NaN"),
        (lambda: viz.colorize(np.array([0.5, np.nan])), errors.NonFiniteInputError, "NaN"),
        (lambda: viz.colorize(np.array(["x"])), errors.InputDTypeError, "numeric"),
        (lambda: viz.heatmap(_img(1, 3, 3, value=np.inf)), errors.NonFiniteInputError, "Inf"),
        (lambda: viz.heatmap(np.zeros(4)), errors.InputShapeError, "[H, W]"),
        (lambda: viz.heatmap(np.zeros((1, 0, 3))), errors.InputShapeError, "empty"),
        (lambda: viz.overlay(_img(1, 4, 4, 3), _img(1, 3, 3)), errors.InputShapeError, "[1, 4, 4]"),
        (lambda: viz.overlay(_img(4, 4), _img(4, 4)), errors.InputShapeError, "images"),
        (
            lambda: viz.overlay(_img(4, 4, 3, value=np.nan), _img(4, 4)),
            errors.NonFiniteInputError,
            "images",
        ),
        (
            lambda: viz.overlay(_img(4, 4, 3), _img(4, 4), alpha=2.0),
            errors.InvalidArgumentError,
            "alpha",
        ),
        (
            lambda: viz.overlay(_img(4, 4, 3, dtype=np.int64), _img(4, 4)),
            errors.InputDTypeError,
            "uint8",
        ),
        (lambda: viz.encode_png(_img(2, 2, 3, value=np.nan)), errors.NonFiniteInputError, "NaN"),
        (lambda: viz.encode_png(np.zeros(3)), errors.InputShapeError, "[H, W, 3]"),
        (lambda: viz.encode_png(np.zeros((2, 2, 2))), errors.InputShapeError, "channels"),
        (lambda: viz.encode_png(np.zeros((0, 0, 3))), errors.InputShapeError, "empty"),
        (lambda: viz.encode_png(np.zeros((2, 2, 3), np.int32)), errors.InputDTypeError, "uint8"),
        (lambda: viz.encode_png(np.zeros((2, 2), object)), errors.InputDTypeError, "numeric"),
        (lambda: viz.grid([]), errors.InputShapeError, "no tile"),
        (lambda: viz.grid([[np.zeros(3)]]), errors.InputShapeError, "tile (0, 0)"),
        (lambda: viz.grid([[_img(2, 2, value=np.nan)]]), errors.NonFiniteInputError, "tile (0, 0)"),
        (lambda: viz.grid([[_img(2, 2)]], pad=-1), errors.InvalidArgumentError, "pad"),
        (lambda: viz.grid([[_img(2, 2)]], scale=0), errors.InvalidArgumentError, "scale"),
        (lambda: viz.grid([[_img(2, 2, value=255.0)]]), errors.InvalidArgumentError, "by 255"),
        (
            lambda: viz.overlay(_img(4, 4, 3, value=-0.4), _img(4, 4)),
            errors.InvalidArgumentError,
            "range [-0.4, -0.4]",
        ),
        (lambda: viz.encode_png(_img(2, 2, 3, value=1.01)), errors.InvalidArgumentError, "[0, 1]"),
    ],
)
def test_bad_inputs_raise_named_errors(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def test_png_channels_and_dtypes_round_trip_through_pillow():
    grey = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    expected = (grey * 255 + 0.5).astype(np.uint8)
    for image in (grey, grey[..., None]):
        decoded = np.asarray(Image.open(io.BytesIO(viz.encode_png(image))).convert("RGB"))
        np.testing.assert_array_equal(decoded, np.repeat(expected[..., None], 3, -1))
    rgba = np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(viz.encode_png(rgba))))
    np.testing.assert_array_equal(decoded, rgba)
    mask = np.eye(3, dtype=bool)
    decoded = np.asarray(Image.open(io.BytesIO(viz.encode_png(mask))).convert("L"))
    np.testing.assert_array_equal(decoded, mask * 255)
    # uint8 tiles in a grid keep their 0..255 meaning (they used to be clipped to white).
    tile = np.full((2, 2, 3), 128, np.uint8)
    np.testing.assert_allclose(viz.grid([[tile]], pad=0), 128 / 255.0, rtol=1e-6)


def test_save_png_checks_the_directory_before_encoding(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    from xaijax.viz import _png

    def no_encoding(image):
        raise AssertionError("encoded before the path was checked")

    monkeypatch.setattr(_png, "encode_png", no_encoding)
    for path in (afile / "x.png", tmp_path / "missing" / "x.png", tmp_path):
        with pytest.raises(errors.OutputPathError, match=re.escape(str(path.parent))) as info:
            viz.save_png(path, np.zeros((2, 2, 3), np.float32))
        assert isinstance(info.value, OSError)
    monkeypatch.undo()
    viz.save_png(tmp_path / "ok.png", np.zeros((2, 2, 3), np.float32))
    assert (tmp_path / "ok.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_hand_written_png_encoder_is_gone():
    from xaijax.viz import _png

    source = open(_png.__file__).read()
    assert "zlib" not in source and "IHDR" not in source  # pillow writes the files now


# --- signed maps: a diverging colour map centred at 0 (issue 11) ---------------------------------


def test_signed_heatmap_gives_distinct_colours_and_white_zero():
    m = np.array([[-1.0, -0.5, 0.0, 0.5, 1.0]])
    rgb = viz.heatmap(m, signed=True, percentile=100)[0]
    assert len({tuple(c) for c in rgb.round(4)}) == 5  # -1, -0.5 and 0 used to be one colour
    np.testing.assert_allclose(rgb[2], viz.COLORMAPS["RdBu_r"][5], atol=1e-6)  # the centre
    assert rgb[0, 2] > rgb[0, 0] and rgb[4, 0] > rgb[4, 2]  # negative blue, positive red
    # Mirror values are equally far from white.
    white = viz.COLORMAPS["RdBu_r"][5]
    assert abs(np.abs(rgb[1] - white).sum() - np.abs(rgb[3] - white).sum()) < 0.15


def test_numpy_colormaps_match_matplotlib_where_sampled():
    matplotlib = pytest.importorskip("matplotlib")
    for name, anchors in viz.COLORMAPS.items():
        stops = np.linspace(0, 1, len(anchors))
        reference = matplotlib.colormaps[name](stops)[:, :3]
        np.testing.assert_allclose(viz.colorize(stops, name), reference, atol=2 / 255)


def test_signed_heatmap_batched_equals_unbatched():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(2, 5, 6)) * np.array([1.0, 10.0])[:, None, None]
    for i in range(2):
        np.testing.assert_allclose(
            viz.heatmap(m[i], signed=True), viz.heatmap(m, signed=True)[i], rtol=1e-6
        )
