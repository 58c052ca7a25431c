"""SSIM against scikit-image's structural_similarity."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from xaijax import errors
from xaijax.summaries import pairwise_ssim, ssim


def _pairs(shape=(3, 20, 24), seed=0, noise=0.2):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    b = np.clip(a + noise * rng.normal(size=shape), 0, 1)
    return a, b


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"gaussian_weights": True},
        {"win_size": 5},
        {"win_size": 9, "use_sample_covariance": False},
        {"K1": 0.05, "K2": 0.1},
    ],
)
def test_ssim_matches_skimage(opts):
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _pairs()
    ours = np.asarray(ssim(a.astype(np.float32), b.astype(np.float32), **opts))
    ref = [
        metrics.structural_similarity(x, y, data_range=1.0, **opts)
        for x, y in zip(a, b, strict=True)
    ]
    assert ours.shape == (3,)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_ssim_of_8bit_values_and_near_constant_crops():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (2, 16, 16)).astype(np.uint8)
    b = rng.integers(0, 256, (2, 16, 16)).astype(np.uint8)
    ref = [metrics.structural_similarity(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ssim(a, b, data_range=255), ref, atol=1e-5)
    # Nearly flat crops: float32 cancellation in E[x^2] - E[x]^2 would show at this scale.
    c, d = 0.7 + 1e-3 * rng.random((2, 2, 16, 16))
    ref = [metrics.structural_similarity(x, y, data_range=1.0) for x, y in zip(c, d, strict=True)]
    np.testing.assert_allclose(ssim(c.astype(np.float32), d.astype(np.float32)), ref, atol=1e-5)


def test_ssim_leading_axes_jit_and_vmap():
    a, b = _pairs((2, 3, 12, 12), seed=2)
    a, b = a.astype(np.float32), b.astype(np.float32)
    full = np.asarray(ssim(a, b))
    assert full.shape == (2, 3)
    np.testing.assert_allclose(jax.jit(ssim)(a, b), full, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(ssim)(a, b), full, atol=1e-6)
    np.testing.assert_allclose(ssim(a, a), np.ones((2, 3)), atol=1e-6)


def test_pairwise_ssim_matches_skimage_pairs():
    metrics = pytest.importorskip("skimage.metrics")
    crops = np.random.default_rng(3).random((4, 14, 15))
    crops[1] = np.clip(crops[0] + 0.1, 0, 1)  # one similar pair
    ours = np.asarray(pairwise_ssim(crops.astype(np.float32), chunk_size=3))
    ref = np.array(
        [[metrics.structural_similarity(x, y, data_range=1.0) for y in crops] for x in crops]
    )
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    batched = np.asarray(pairwise_ssim(np.stack([crops, crops[::-1]]).astype(np.float32)))
    np.testing.assert_allclose(batched[0], ours, atol=1e-6)
    np.testing.assert_allclose(batched[1], ours[::-1, ::-1], atol=1e-6)


def test_ssim_errors():
    a = np.zeros((2, 16, 16), np.float32)
    with pytest.raises(errors.InputShapeError, match="same shape"):
        ssim(a, a[:1])
    with pytest.raises(errors.InputShapeError, match="smaller than the 7 x 7"):
        ssim(a[:, :6], a[:, :6])
    with pytest.raises(errors.NonFiniteInputError, match="NaN"):
        ssim(a, np.full_like(a, np.inf))
    with pytest.raises(errors.InvalidArgumentError, match="odd"):
        ssim(a, a, win_size=4)
    with pytest.raises(errors.InvalidArgumentError, match="gaussian"):
        ssim(a, a, gaussian_weights=True, win_size=7)
    with pytest.raises(errors.InvalidArgumentError, match="data_range"):
        ssim(a, a, data_range=0)
    with pytest.raises(errors.InputShapeError, match=r"\[..., M, H, W\]"):
        pairwise_ssim(a[0])
