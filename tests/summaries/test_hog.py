"""HOG, box crops and cosine similarity against scikit-image and NumPy oracles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors
from xaijax.summaries import box_descriptors, cosine_similarity, crop_boxes, hog, hog_size


def _images(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize(
    ("block_norm", "colour"),
    [("L1", True), ("L1-sqrt", False), ("L2", True), ("L2-Hys", False), ("L2-Hys", True)],
)
def test_hog_matches_skimage(block_norm, colour):
    skimage_feature = pytest.importorskip("skimage.feature")
    x = _images((2, 40, 37, 3) if colour else (2, 40, 37))
    opts = dict(orientations=8, pixels_per_cell=(7, 6), cells_per_block=(3, 2))
    ours = np.asarray(hog(x, block_norm=block_norm, **opts))
    ref = np.stack(
        [
            skimage_feature.hog(
                im, block_norm=block_norm, channel_axis=-1 if colour else None, **opts
            )
            for im in x
        ]
    )
    assert ours.shape == ref.shape == (2, hog_size((40, 37), **opts))
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_hog_defaults_and_sqrt_match_skimage():
    skimage_feature = pytest.importorskip("skimage.feature")
    x = _images((2, 48, 48, 3), seed=1)
    ours = np.asarray(hog(x, transform_sqrt=True))
    ref = np.stack([skimage_feature.hog(im, transform_sqrt=True, channel_axis=-1) for im in x])
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_hog_picks_the_channel_of_largest_gradient():
    # Channel 1's gradient is 10x channel 0's at every pixel (and both vanish at the corners):
    # colour HOG = grey HOG of channel 1, although channel 0's orientations differ.
    r, c = np.meshgrid(np.arange(24.0), np.arange(24.0), indexing="ij")
    x = np.zeros((1, 24, 24, 3), np.float32)
    x[0, ..., 1] = (r + 2 * c) / 24
    x[0, ..., 0] = 0.1 * (r - c) / 24
    x[0, ..., 2] = 0.5
    np.testing.assert_allclose(hog(x, cells_per_block=2), hog(x[..., 1], cells_per_block=2))
    assert not np.allclose(hog(x[..., 0], cells_per_block=2), hog(x[..., 1], cells_per_block=2))


def test_hog_is_batched_jittable_and_vmappable():
    x = _images((3, 32, 32))
    full = hog(x, cells_per_block=2)
    np.testing.assert_allclose(jax.jit(lambda a: hog(a, cells_per_block=2))(x), full, atol=1e-6)
    one = jnp.stack([hog(x[i : i + 1], cells_per_block=2)[0] for i in range(3)])
    np.testing.assert_allclose(one, full, atol=1e-6)
    np.testing.assert_allclose(
        jax.vmap(lambda a: hog(a, cells_per_block=2))(x[:, None])[:, 0], full, atol=1e-6
    )


def test_hog_errors():
    with pytest.raises(errors.InputShapeError, match="batch"):
        hog(np.zeros((32,), np.float32))
    with pytest.raises(errors.InputShapeError, match="too small"):
        hog(np.zeros((1, 16, 16), np.float32))
    with pytest.raises(errors.InvalidArgumentError, match="block_norm"):
        hog(np.zeros((1, 32, 32), np.float32), block_norm="L3")
    with pytest.raises(errors.NonFiniteInputError, match="NaN"):
        hog(np.full((1, 32, 32), np.nan, np.float32))
    with pytest.raises(errors.InvalidArgumentError, match="pixels_per_cell"):
        hog(np.zeros((1, 32, 32), np.float32), pixels_per_cell=0)


def _bilinear_crop(image, box, size):
    """NumPy oracle: half-pixel-centre bilinear samples of [x1, x2) x [y1, y2), edge-clamped."""
    x1, y1, x2, y2 = box
    rows, cols = size

    def coords(lo, hi, n, limit):
        c = lo + (np.arange(n) + 0.5) * (hi - lo) / n - 0.5
        f = np.floor(c)
        w = c - f
        i0 = np.clip(f, 0, limit - 1).astype(int)
        i1 = np.clip(f + 1, 0, limit - 1).astype(int)
        return i0, i1, w

    r0, r1, wr = coords(y1, y2, rows, image.shape[0])
    c0, c1, wc = coords(x1, x2, cols, image.shape[1])
    top = image[r0][:, c0] * (1 - wc) + image[r0][:, c1] * wc
    bottom = image[r1][:, c0] * (1 - wc) + image[r1][:, c1] * wc
    return top * (1 - wr[:, None]) + bottom * wr[:, None]


def test_crop_boxes_is_bilinear_sampling():
    x = _images((2, 30, 40), seed=2)
    boxes = np.array(
        [[[0, 0, 16, 16], [3, 5, 35, 13], [10.5, 2.25, 18.5, 28]], [[20, 10, 40, 30]] * 3],
        np.float32,
    )
    crops = np.asarray(crop_boxes(x, boxes, size=(16, 16), antialias=False))
    assert crops.shape == (2, 3, 16, 16)
    for n in range(2):
        for p in range(3):
            np.testing.assert_allclose(
                crops[n, p], _bilinear_crop(x[n], boxes[n, p], (16, 16)), atol=1e-5
            )


def test_box_descriptors_equal_skimage_hog_of_the_crop():
    skimage_feature = pytest.importorskip("skimage.feature")
    x = _images((2, 80, 90, 3), seed=3)
    boxes = np.array([[[0, 0, 64, 64], [20, 10, 84, 74]], [[5, 16, 69, 80], [26, 0, 90, 64]]])
    ours = np.asarray(box_descriptors(x, boxes, chunk_size=1))
    assert ours.shape == (2, 2, 1764)
    for n in range(2):
        for p in range(2):
            x1, y1, x2, y2 = boxes[n, p]
            ref = skimage_feature.hog(x[n, y1:y2, x1:x2], cells_per_block=(2, 2), channel_axis=-1)
            np.testing.assert_allclose(ours[n, p], ref, atol=1e-5)


def test_box_descriptors_of_a_scaled_box_follow_the_resampled_crop():
    x = _images((1, 64, 64), seed=4)
    boxes = np.array([[[8, 8, 40, 56]]], np.float32)
    crop = crop_boxes(x, boxes, size=32)
    np.testing.assert_allclose(
        box_descriptors(x, boxes, size=32)[:, 0], hog(crop[:, 0], cells_per_block=2), atol=1e-6
    )


def test_box_errors():
    x = np.zeros((2, 32, 32), np.float32)
    with pytest.raises(errors.InputShapeError, match="N = 2"):
        box_descriptors(x, np.zeros((3, 1, 4)))
    with pytest.raises(errors.InputShapeError, match=r"\[N, P, 4\]"):
        crop_boxes(x, np.zeros((2, 4)))
    with pytest.raises(errors.InputShapeError, match="too small"):
        box_descriptors(x, np.zeros((2, 1, 4)), size=8)


def test_cosine_similarity_clamped_and_finite():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 3, 6))
    a[0, 0] = 0.0  # a zero descriptor: similarity 0, not NaN
    a, b = a.astype(np.float32), b.astype(np.float32)
    ours = np.asarray(cosine_similarity(a, b))
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    ref = np.einsum(
        "npd,nqd->npq", a / np.maximum(na, 1e-12), b / np.linalg.norm(b, axis=-1)[..., None]
    )
    np.testing.assert_allclose(ours, np.maximum(ref, 0), atol=1e-6)
    assert (ours >= 0).all() and np.isfinite(ours).all() and (ours[0, 0] == 0).all()
    np.testing.assert_allclose(cosine_similarity(a, b, clamp=False), ref, atol=1e-6)
    every_pair = np.asarray(cosine_similarity(a[:, None], b[None]))
    assert every_pair.shape == (2, 2, 4, 3)
    np.testing.assert_allclose(every_pair[1, 1], ours[1], atol=1e-6)
    np.testing.assert_allclose(every_pair[1, 0], cosine_similarity(a[1], b[0]), atol=1e-6)
    with pytest.raises(errors.InputShapeError, match="broadcast"):
        cosine_similarity(a, b[:, :, :5])
    with pytest.raises(errors.InputShapeError, match="broadcast"):
        cosine_similarity(np.stack([a] * 3), np.stack([b] * 2))
