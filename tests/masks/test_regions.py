"""Salient regions (Stage B) against a NumPy + scikit-image port of ``rank_regions.py``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.measure import label

from xaijax import errors, masks
from xaijax._filters import gaussian_blur


def _model(params, x):
    """Class 0's logit grows with the image's weighted mean (weights ``params``)."""
    s = (x[..., 0] * params[None]).mean((1, 2))
    return jnp.stack([s, -s, jnp.zeros_like(s)], 1)


def _reference(params, x, heat, threshold=128 / 255, min_area=0.01, top_k=3):
    """NumPy port: binarise, skimage label (8-connectivity), drop small, score, top k."""
    null = np.asarray(gaussian_blur(jnp.asarray(x), 10.0, size=11, border="reflect101"))
    out = []
    for b in range(x.shape[0]):
        t = int(np.argmax(np.asarray(_model(params, x[b : b + 1]))[0]))
        lab = label(heat[b] > threshold, connectivity=2)
        found = []
        for r in range(1, lab.max() + 1):
            region = lab == r
            if region.sum() < min_area * region.size:
                continue
            xr = x[b] * (1 - region[..., None]) + null[b] * region[..., None]
            p = np.asarray(jax.nn.softmax(_model(params, xr[None])))[0, t]
            found.append((1 - p, region))
        found.sort(key=lambda d: -d[0])
        out.append(found[:top_k])
    return out


def _batch(seed=0, b=3, size=20):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(b, size, size, 1)).astype(np.float32)
    heat = np.zeros((b, size, size), np.float32)
    for i in range(b):  # a few rectangles of random sizes (some under 1%), bright = salient
        for _ in range(5):
            y0, x0 = rng.integers(0, size - 4, 2)
            hh, ww = rng.integers(1, 6, 2)
            heat[i, y0 : y0 + hh, x0 : x0 + ww] = rng.uniform(0.6, 1.0)
        heat[i] += rng.uniform(0, 0.4, (size, size))  # dim background, below the threshold
    params = rng.normal(size=(size, size)).astype(np.float32) * 4
    return params, x, np.clip(heat, 0, 1)


def test_matches_a_numpy_skimage_port():
    params, x, heat = _batch()
    got = masks.salient_regions(_model, params, x, heat)
    ref = _reference(params, x, heat)
    assert got.masks.shape == (3, 3, 20, 20) and got.drop.shape == (3, 3)
    for b in range(3):
        n = len(ref[b])
        assert np.asarray(got.valid[b]).tolist() == [True] * n + [False] * (3 - n)
        for k, (drop, region) in enumerate(ref[b]):
            np.testing.assert_allclose(got.drop[b, k], drop, rtol=1e-4, atol=1e-6)
            np.testing.assert_array_equal(got.masks[b, k], region)
            np.testing.assert_allclose(got.area[b, k], region.mean(), rtol=1e-6)
        assert not np.asarray(got.masks[b, n:]).any()


def test_small_regions_are_dropped_and_empty_masks_give_no_region():
    x = np.ones((2, 20, 20, 1), np.float32)
    heat = np.zeros((2, 20, 20), np.float32)
    heat[0, 0:2, 0:2] = 1.0  # 4 pixels = 1% of 400: kept
    heat[0, 10, 10] = 1.0  # 1 pixel: dropped
    params = np.ones((20, 20), np.float32)
    got = masks.salient_regions(_model, params, x, heat, top_k=2)
    assert np.asarray(got.valid).tolist() == [[True, False], [False, False]]
    assert np.asarray(got.masks[0, 0]).sum() == 4
    # 4-connectivity splits a diagonal pair that 8-connectivity joins
    heat = np.zeros((1, 20, 20), np.float32)
    heat[0, 0:2, 0:2] = 1.0
    heat[0, 2:4, 2:4] = 1.0
    full = masks.salient_regions(_model, params, x[:1], heat)
    face = masks.salient_regions(_model, params, x[:1], heat, connectivity="face")
    assert int(full.valid.sum()) == 1 and int(face.valid.sum()) == 2


def test_batched_equals_per_example_and_explicit_target():
    params, x, heat = _batch(seed=1)
    got = masks.salient_regions(_model, params, x, heat, target=jnp.array([1, 1, 0]))
    for b in range(3):
        one = masks.salient_regions(
            _model, params, x[b : b + 1], heat[b : b + 1], jnp.array([[1, 1, 0][b]])
        )
        jax.tree_util.tree_map(
            lambda u, w, b=b: np.testing.assert_allclose(u[b : b + 1], w, rtol=1e-5), got, one
        )


def test_named_errors():
    params, x, heat = _batch()
    with pytest.raises(errors.InputShapeError, match="heat"):
        masks.salient_regions(_model, params, x, heat[:, :10])
    with pytest.raises(errors.InputShapeError, match="rank"):
        masks.salient_regions(_model, params, x[..., 0], heat)
    with pytest.raises(errors.InvalidArgumentError, match="top_k"):
        masks.salient_regions(_model, params, x, heat, top_k=0)
    with pytest.raises(errors.InvalidArgumentError, match="min_area"):
        masks.salient_regions(_model, params, x, heat, min_area=0.0)
    with pytest.raises(errors.InvalidArgumentError, match="connectivity"):
        masks.salient_regions(_model, params, x, heat, connectivity="diag")
