"""The one Gaussian-blur builder (xaijax._filters) against scipy.ndimage and closed forms."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from xaijax import _filters, errors

SCIPY_MODES = {"reflect": "reflect", "reflect101": "mirror", "zero": "constant"}


@pytest.mark.parametrize("border", ["reflect", "reflect101", "zero"])
@pytest.mark.parametrize(("sigma", "truncate"), [(1.0, 4.0), (2.5, 3.0), (5.0, 4.0)])
def test_blur_matches_scipy_gaussian_filter(border, sigma, truncate):
    """Images [B, H, W, C] and clips [B, T, H, W, C], blurred over every spatial axis."""
    rng = np.random.default_rng(0)
    for shape in [(2, 23, 17, 3), (1, 5, 12, 13, 2)]:
        x = rng.random(shape).astype(np.float32)
        radius = int(truncate * sigma + 0.5)
        if border == "reflect" and radius > min(shape[1:-1]) - 1:
            continue  # the reflect kernel shrinks on short axes (tested below)
        got = _filters.gaussian_blur(jnp.asarray(x), sigma, border=border, truncate=truncate)
        sig = (0,) + (sigma,) * (x.ndim - 2) + (0,)
        ref = ndimage.gaussian_filter(
            x.astype(np.float64), sig, mode=SCIPY_MODES[border], truncate=truncate
        )
        np.testing.assert_allclose(got, ref, atol=2e-6)


def test_rise_kernel_is_scipy_gaussian_filter_of_an_impulse():
    for size, sigma in [(11, 5.0), (5, 1.0), (21, 3.0), (1, 2.0)]:
        impulse = np.zeros((size, size))
        impulse[size // 2, size // 2] = 1.0
        ref = ndimage.gaussian_filter(impulse, sigma)  # RISE's gkern: mode reflect, truncate 4
        k1 = _filters.gaussian_kernel1d(sigma, size, truncate=4.0, dtype=np.float64)
        np.testing.assert_allclose(np.outer(k1, k1), ref, atol=1e-12)
        assert abs(k1.sum() - 1) < 1e-12


def test_renormalise_keeps_constants_and_cuts_at_the_border():
    x = np.full((1, 9, 4, 1), 3.0, np.float32)
    out = _filters.gaussian_blur(jnp.asarray(x), 2.0, border="renormalise")
    np.testing.assert_allclose(out, 3.0, rtol=1e-6)
    # closed form along one axis: the taps inside the axis, renormalised
    n, sigma = 7, 1.5
    e = np.zeros((1, n, 1, 1), np.float32)
    e[0, 0] = 1.0
    got = np.asarray(_filters.gaussian_blur(jnp.asarray(e), sigma, border="renormalise"))[
        0, :, 0, 0
    ]
    r = int(np.ceil(3 * sigma))
    i = np.arange(n)
    w = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2) * (
        np.abs(i[:, None] - i[None, :]) <= r
    )
    np.testing.assert_allclose(got, (w / w.sum(1, keepdims=True))[:, 0], rtol=1e-6)


def test_reflect_kernel_shrinks_on_short_axes():
    # An axis of n samples takes a kernel of 2n - 1 taps (renormalised) with reflection.
    n, sigma = 3, 5.0
    e = np.zeros((1, n, 1), np.float32)
    e[0, 0] = 1.0
    got = np.asarray(_filters.gaussian_blur(jnp.asarray(e), sigma))[0, :, 0]
    taps = _filters.gaussian_kernel1d(sigma, 2 * n - 1, dtype=np.float64)
    ref = ndimage.correlate1d(e[0, :, 0].astype(np.float64), taps, mode="reflect")
    np.testing.assert_allclose(got, ref, atol=1e-7)
    # length-1 axes are left as they are
    one = np.arange(4.0, dtype=np.float32).reshape(1, 1, 4, 1)
    np.testing.assert_allclose(_filters.gaussian_blur(jnp.asarray(one), 5.0, axes=(1,)), one)


def test_unknown_border_is_a_named_error():
    with pytest.raises(errors.InvalidArgumentError, match="border"):
        _filters.gaussian_blur(jnp.zeros((1, 4, 4, 1)), 1.0, border="wrap")
