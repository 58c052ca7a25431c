"""Figures (show, show_grid, show_boxes, show_video): what each panel shows, pixel for pixel.

A panel's picture is the RGB array its ``imshow`` received (``ax.get_images()[0].get_array()``);
one test also renders figures to PNG through Agg.
"""

from __future__ import annotations

import doctest
import io
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from PIL import Image

from xaijax import errors, viz
from xaijax.viz import _images, _plots, _png, _segments, _text

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(size=(3, 6, 7, 3)).astype(np.float32)


def picture(ax) -> np.ndarray:
    return np.asarray(ax.get_images()[0].get_array(), np.float32)


def map_axes(fig) -> list:
    """The panels that hold an image, in drawing order (colour bars have none)."""
    return [ax for ax in fig.axes if ax.get_images()]


def test_tests_draw_with_agg():
    assert matplotlib.get_backend().lower() == "agg"


# --- one map versus a batch: the same picture per image ------------------------------------------


@pytest.mark.parametrize("method", ["heat_map", "blended_heat_map"])
@pytest.mark.parametrize("sign", ["auto", "all", "positive", "absolute"])
def test_grid_rows_equal_single_image_figures(method, sign):
    # Rows with very different ranges: a shared scale (the `normalize` bug) would differ.
    maps = {
        "signed": RNG.normal(size=(3, 6, 7)) * np.array([1.0, 100.0, 0.01])[:, None, None],
        "channels": RNG.normal(size=(3, 6, 7, 3)),
    }
    grid = viz.show_grid(IMAGES, maps, method=method, sign=sign)
    cells = np.array(map_axes(grid)).reshape(3, 3)  # image | signed | channels
    for i in range(3):
        one = viz.show(IMAGES[i], {k: v[i] for k, v in maps.items()}, method=method, sign=sign)
        alone = viz.show_grid(
            IMAGES[i : i + 1], {k: v[i : i + 1] for k, v in maps.items()}, method=method, sign=sign
        )
        for j, ax in enumerate(map_axes(one)):
            np.testing.assert_allclose(picture(cells[i, j + 1]), picture(ax), atol=1e-6)
            np.testing.assert_allclose(picture(map_axes(alone)[j + 1]), picture(ax), atol=1e-6)
        np.testing.assert_allclose(picture(cells[i, 0]), IMAGES[i], atol=1e-6)


def test_a_map_is_scaled_on_its_own_not_by_its_rows():
    m = RNG.uniform(size=(2, 6, 7))
    fig = viz.show_grid(IMAGES[:2], {"m": np.stack([m[0], 1000 * m[1]])}, method="heat_map")
    same = viz.show_grid(IMAGES[:2], {"m": m}, method="heat_map")
    for a, b in zip(map_axes(fig), map_axes(same), strict=True):
        np.testing.assert_allclose(picture(a), picture(b), atol=1e-6)


# --- colours: diverging for signed maps, 0 at the centre ------------------------------------------


def test_signed_map_puts_zero_at_the_centre_colour_and_separates_values():
    values = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    m = np.tile(values, (6, 2))[:, :7]  # columns -1, -0.5, 0, 0.5, 1, -1, -0.5
    fig = viz.show(IMAGES[0], m, method="heat_map", percentile=100)
    rgb = picture(fig.axes[0])[0]
    cmap = matplotlib.colormaps["RdBu_r"]
    np.testing.assert_allclose(rgb[2], cmap(0.5)[:3], atol=1e-6)  # 0 -> the centre colour
    np.testing.assert_allclose(rgb[0], cmap(0.0)[:3], atol=1e-6)  # -1 -> one end
    np.testing.assert_allclose(rgb[4], cmap(1.0)[:3], atol=1e-6)  # +1 -> the other end
    assert len({tuple(c) for c in rgb[:5].round(4)}) == 5
    assert fig.axes[1].get_ylim() == (-1.0, 1.0)  # the colour bar is symmetric about 0


def test_positive_maps_use_a_sequential_map_and_auto_reads_the_sign():
    m = np.linspace(0, 1, 42).reshape(6, 7)
    fig = viz.show(IMAGES[0], m, method="heat_map", percentile=100)
    viridis = matplotlib.colormaps["viridis"]
    np.testing.assert_allclose(picture(fig.axes[0])[0, 0], viridis(0.0)[:3], atol=1e-6)
    np.testing.assert_allclose(picture(fig.axes[0])[-1, -1], viridis(1.0)[:3], atol=1e-6)
    assert fig.axes[1].get_ylim() == (0.0, 1.0)
    # One negative pixel switches "auto" to the diverging map; "positive" shows it as 0.
    m2 = m.copy()
    m2[0, 0] = -0.2
    auto = picture(viz.show(IMAGES[0], m2, method="heat_map", percentile=100).axes[0])
    pos = picture(viz.show(IMAGES[0], m2, method="heat_map", sign="positive").axes[0])
    assert auto[0, 0, 2] > auto[0, 0, 0]  # blue
    np.testing.assert_allclose(pos[0, 0], viridis(0.0)[:3], atol=1e-6)


def test_channel_maps_are_summed_like_captum_unless_told_otherwise():
    cm = RNG.normal(size=(6, 7, 3))
    for how, reduced in [("sum", cm.sum(-1)), ("sum_abs", np.abs(cm).sum(-1))]:
        a = viz.show(IMAGES[0], cm, channel_reduce=how)
        b = viz.show(IMAGES[0], reduced)
        np.testing.assert_allclose(picture(a.axes[0]), picture(b.axes[0]), atol=1e-6)


def test_methods_compose_as_documented():
    img, m = IMAGES[0], RNG.uniform(size=(6, 7))
    scaled = _images.scale_map(m, "positive", 99.5)
    heat = matplotlib.colormaps["viridis"](scaled)[..., :3]
    got = {method: picture(viz.show(img, m, method=method).axes[0]) for method in viz.METHODS}
    np.testing.assert_allclose(got["heat_map"], heat, atol=1e-6)
    grey = img.mean(-1, keepdims=True)
    np.testing.assert_allclose(got["blended_heat_map"], 0.5 * grey + 0.5 * heat, atol=1e-6)
    np.testing.assert_allclose(got["masked_image"], img * scaled[..., None], atol=1e-6)
    np.testing.assert_allclose(got["original_image"], img, atol=1e-6)


def test_grid_titles_colour_bars_and_png(tmp_path):
    maps = {"integrated_gradients": RNG.normal(size=(2, 6, 7)), "cam": RNG.uniform(size=(2, 6, 7))}
    fig = viz.show_grid(IMAGES[:2], maps, references={"ground truth": IMAGES[:2, ..., 0] > 0.5})
    titles = [ax.get_title() for ax in map_axes(fig)[:4]]
    assert titles == ["image", "ground truth", "integrated_\ngradients", "cam"]
    bars = [ax for ax in fig.axes if not ax.get_images()]
    assert [b.get_xlim() for b in bars] == [(-1.0, 1.0), (0.0, 1.0)]  # one per column
    shared = viz.show_grid(IMAGES[:2], maps, colorbar="shared")
    labels = [ax.get_ylabel() for ax in shared.axes if not ax.get_images()]
    assert len(labels) == 2 and any("integrated_gradients" in t for t in labels)
    path = tmp_path / "grid.png"
    viz.save_png(path, fig, dpi=50)
    png = np.asarray(Image.open(path))
    assert png.ndim == 3 and png.shape[0] > 50 and png.std() > 0


# --- boxes, points, video ---------------------------------------------------------------------


def test_boxes_and_points_are_drawn_in_pixel_coordinates():
    fig = viz.show_boxes(
        IMAGES[0], [[1, 2, 4, 6], [0, 0, 0, 0]], points=[[2, 3]], labels=["a", "b"]
    )
    ax = fig.axes[0]
    (rect,) = ax.patches  # the all-zero box ("nothing to box") is skipped
    assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (1.5, 0.5, 4, 3)
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), [[3, 2]])  # (x, y)
    with_map = viz.show_boxes(IMAGES[0], [1, 2, 4, 6], maps=RNG.normal(size=(6, 7)))
    assert len(with_map.axes) == 2 and len(with_map.axes[0].patches) == 1


def test_video_is_scaled_as_one_clip():
    m = RNG.uniform(size=(6, 7))
    clip = np.stack([m, 0.5 * m, 0.0 * m])
    fig = viz.show_video(IMAGES, clip, method="heat_map", percentile=100)
    frames, maps = map_axes(fig)[:3], map_axes(fig)[3:]
    assert [ax.get_title() for ax in frames] == ["t = 0", "t = 1", "t = 2"]
    viridis = matplotlib.colormaps["viridis"]
    np.testing.assert_allclose(picture(maps[0]), viridis(m / m.max())[..., :3], atol=1e-6)
    np.testing.assert_allclose(picture(maps[1]), viridis(0.5 * m / m.max())[..., :3], atol=1e-6)
    np.testing.assert_allclose(picture(maps[2]), np.broadcast_to(viridis(0.0)[:3], (6, 7, 3)))


# --- bad input: named errors ---------------------------------------------------------------------


IMG = IMAGES[0]
OK = np.ones((6, 7))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: viz.show(IMG, np.ones((7, 6))), errors.InputShapeError, "[6, 7]"),
        (lambda: viz.show(IMG, np.ones((6, 7, 2))), errors.InputShapeError, "does not match"),
        (lambda: viz.show(IMG, OK, method="heatmap"), errors.InvalidArgumentError, "method"),
        (lambda: viz.show(IMG, OK, sign="both"), errors.InvalidArgumentError, "sign"),
        (lambda: viz.show(IMG, OK * np.nan), errors.NonFiniteInputError, "NaN"),
        (lambda: viz.show(IMG * np.inf, OK), errors.NonFiniteInputError, "Inf"),
        (lambda: viz.show(None, OK), errors.InvalidArgumentError, "heat_map"),
        (lambda: viz.show(IMG, -OK, method="masked_image"), errors.InvalidArgumentError, "sign="),
        (lambda: viz.show(IMG, [OK, OK], titles=["a"]), errors.InvalidArgumentError, "titles"),
        (lambda: viz.show(IMG, OK, alpha=2), errors.InvalidArgumentError, "alpha"),
        (lambda: viz.show(IMG, OK, cmap="nope"), errors.InvalidArgumentError, "cmap"),
        (lambda: viz.show(IMG, OK, channel_reduce="max"), errors.InvalidArgumentError, "sum"),
        (lambda: viz.show_grid(IMG, {"m": OK}), errors.InputShapeError, "images[None]"),
        (lambda: viz.show_grid(IMAGES, {"m": OK[None]}), errors.BatchMismatchError, "3"),
        (lambda: viz.show_grid(IMAGES, {"m": np.ones((3, 7, 6))}), errors.InputShapeError, "m"),
        (
            lambda: viz.show_grid(IMAGES, {"m": OK[None].repeat(3, 0)}, colorbar="left"),
            errors.InvalidArgumentError,
            "colorbar",
        ),
        (lambda: viz.show_boxes(IMG, [[0, 0, 9, 3]]), errors.InputShapeError, "does not fit"),
        (lambda: viz.show_boxes(IMG, [[0, 0, 3]]), errors.InputShapeError, "(y0, x0, y1, x1)"),
        (lambda: viz.show_boxes(IMG, points=[[6, 0]]), errors.InputShapeError, "outside"),
        (lambda: viz.show_video(IMAGES, np.ones((2, 6, 7))), errors.InputShapeError, "per frame"),
        (lambda: viz.show_video(IMAGES[0], OK), errors.InputShapeError, "one map"),
        # Bad options that used to reach matplotlib (or Python) as raw errors.
        (lambda: viz.show(IMG, OK, titles=3), errors.InvalidArgumentError, "`titles`"),
        (lambda: viz.show(IMG, OK, titles=[{"a": 1}]), errors.InvalidArgumentError, "titles[0]"),
        (lambda: viz.show(IMG, OK, ax="x"), errors.InvalidArgumentError, "matplotlib Axes"),
        (lambda: viz.show_boxes(IMG, [[0, 0, 2, 2]], ax=1), errors.InvalidArgumentError, "`ax`"),
        (
            lambda: viz.show_boxes(IMG, [[0, 0, 2, 2]], color="nocolour"),
            errors.InvalidArgumentError,
            "`color` must be a matplotlib colour",
        ),
        (lambda: viz.show_boxes(IMG, [[0, 0, 2, 2]], labels=3), errors.InvalidArgumentError, "box"),
        (
            lambda: viz.show_grid(IMAGES, {"m": np.ones((3, 6, 7))}, row_titles=5),
            errors.InvalidArgumentError,
            "`row_titles`",
        ),
        (
            lambda: viz.show_grid(IMAGES, {"m": np.ones((3, 6, 7))}, panel_size=-1),
            errors.InvalidArgumentError,
            "`panel_size` must be a finite number > 0",
        ),
        (
            lambda: viz.show_grid(IMAGES, {"m": np.ones((3, 6, 7))}, panel_size=0),
            errors.InvalidArgumentError,
            "panel_size",
        ),
        (
            lambda: viz.show_grid(IMAGES, {"m": np.ones((3, 6, 7))}, panel_size=float("inf")),
            errors.InvalidArgumentError,
            "panel_size",
        ),
        (
            lambda: viz.show_grid(IMAGES, {"m": np.ones((3, 6, 7))}, title_width=0),
            errors.InvalidArgumentError,
            "title_width",
        ),
        (
            lambda: viz.show_video(IMAGES, np.ones((3, 6, 7)), panel_size=0),
            errors.InvalidArgumentError,
            "panel_size",
        ),
        # Float images must be in [0, 1]: 0..255 or normalised floats used to be clipped silently.
        (lambda: viz.show(IMG * 255, OK), errors.InvalidArgumentError, "divide by 255"),
        (lambda: viz.show(IMG - 0.5, OK), errors.InvalidArgumentError, "undo the normalisation"),
        (
            lambda: viz.show_grid(IMAGES * 255, {"m": np.ones((3, 6, 7))}),
            errors.InvalidArgumentError,
            "expects float images in [0, 1]",
        ),
        (
            lambda: viz.show_video(IMAGES * 2, np.ones((3, 6, 7))),
            errors.InvalidArgumentError,
            "[0, 1]",
        ),
        (
            lambda: viz.show_boxes(IMG * 255, [[0, 0, 2, 2]]),
            errors.InvalidArgumentError,
            "[0, 1]",
        ),
    ],
)
def test_bad_inputs_raise_named_errors(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def test_ax_draws_one_map_into_a_given_figure():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    assert viz.show(IMG, OK, ax=ax) is fig and ax.get_images()
    with pytest.raises(errors.InvalidArgumentError, match="one map"):
        viz.show(IMG, [OK, OK], ax=ax)


# --- optional dependency, notebooks, docs ---------------------------------------------------------


def test_missing_matplotlib_is_a_named_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(errors.MissingDependencyError, match=r"xaijax\[viz\]") as info:
        viz.show(IMG, OK)
    assert isinstance(info.value, ImportError)
    # The array layer and the HTML do not need it.
    assert viz.heatmap(OK).shape == (6, 7, 3) and "<span" in viz.text_html(["a"], [1.0])


def test_importing_viz_does_not_import_matplotlib():
    code = "import sys, xaijax.viz; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _Shell:
    def __init__(self):
        from IPython.core.formatters import DisplayFormatter

        self.display_formatter = DisplayFormatter()


def test_figures_display_in_a_notebook_without_pyplot(monkeypatch):
    IPython = pytest.importorskip("IPython")
    from matplotlib.figure import Figure

    shell = _Shell()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    fig = viz.show(IMG, OK)
    data, _ = shell.display_formatter.format(fig)
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
    # A formatter the user set (e.g. %matplotlib inline with svg) is left alone.
    shell2 = _Shell()
    mine = lambda f: b"mine"
    shell2.display_formatter.formatters["image/png"].for_type(Figure, mine)
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell2)
    viz.show(IMG, OK)
    assert shell2.display_formatter.formatters["image/png"].lookup_by_type(Figure) is mine


@pytest.mark.parametrize("module", [viz, _images, _plots, _png, _segments, _text])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and (result.attempted > 0 or module is viz)


def test_png_of_a_figure_round_trips(tmp_path):
    fig = viz.show(IMG, OK)
    data = io.BytesIO()
    fig.savefig(data, format="png")
    assert Image.open(data).size[0] > 100


def test_image_range_message_names_the_range():
    with pytest.raises(errors.InvalidArgumentError) as info:
        viz.show(np.full((6, 7, 3), 200.0), OK)
    assert "got range [200, 200]" in str(info.value)


def test_float_images_within_rounding_of_zero_and_one_are_accepted():
    img = IMG.copy()
    img[0, 0] = 1.0 + 5e-4
    img[0, 1] = -5e-4
    shown = picture(viz.show(img, OK, method="original_image").axes[0])
    np.testing.assert_array_equal(shown[0, :2], [[1, 1, 1], [0, 0, 0]])  # clipped
    # uint8 images are still 0..255.
    u8 = (IMG * 255).astype(np.uint8)
    np.testing.assert_allclose(
        picture(viz.show(u8, OK, method="original_image").axes[0]), u8 / 255.0, atol=1e-6
    )


@pytest.mark.parametrize("dpi", [-1, 0, "x", float("nan")])
def test_save_png_checks_dpi_before_writing(tmp_path, dpi):
    path = tmp_path / "fig.png"
    with pytest.raises(errors.InvalidArgumentError, match="`dpi`"):
        viz.save_png(path, viz.show(IMG, OK), dpi=dpi)
    assert not path.exists()
    viz.save_png(path, viz.show(IMG, OK), dpi=50)
    assert path.stat().st_size > 0


def test_bad_row_titles_length_is_raised_before_drawing(monkeypatch):
    drawn = []
    monkeypatch.setattr(_plots, "new_figure", lambda *a: drawn.append(a))
    with pytest.raises(errors.InvalidArgumentError, match="row_titles"):
        viz.show_grid(IMAGES, {"m": np.ones((3, 6, 7))}, row_titles=["a"])
    assert drawn == []


def test_boxes_accept_any_matplotlib_colour():
    for colour in ("red", "#ff0000", (1.0, 0.0, 0.0), (1.0, 0.0, 0.0, 1.0)):
        fig = viz.show_boxes(IMG, [[0, 0, 2, 2]], color=colour)
        assert tuple(fig.axes[0].patches[0].get_edgecolor()) == (1.0, 0.0, 0.0, 1.0)
