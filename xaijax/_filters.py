"""Small image filters shared by several families (private)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors

BORDERS = ("reflect", "renormalise")


def gaussian_kernel1d(sigma: float, size: int | None = None) -> np.ndarray:
    """A normalised 1D Gaussian kernel; ``size`` defaults to ``2 * ceil(3 sigma) + 1``."""
    if size is None:
        size = 2 * int(np.ceil(3.0 * sigma)) + 1
    r = (size - 1) / 2.0
    t = np.arange(size, dtype=np.float64) - r
    k = np.exp(-0.5 * (t / max(float(sigma), 1e-12)) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_matrix(n: int, sigma: float, size: int | None = None) -> np.ndarray:
    """``[n, n]`` Gaussian smoothing along an axis of length ``n``, cut at the borders.

    Row ``i`` holds ``exp(-(i - j)^2 / (2 sigma^2))`` for ``|i - j| <= r`` (``r = (size - 1) / 2``,
    by default ``ceil(3 sigma)``) renormalised to sum to 1 over the ``j`` inside the axis, so a
    constant stays constant and nothing is invented beyond the border.
    """
    r = math.ceil(3 * sigma) if size is None else (size - 1) / 2
    i = np.arange(n)
    d = i[:, None] - i[None, :]
    k = np.exp(-0.5 * (d / sigma) ** 2) * (np.abs(d) <= r)
    return (k / k.sum(1, keepdims=True)).astype(np.float32)


def gaussian_blur(
    x: jax.Array,
    sigma: float,
    *,
    size: int | None = None,
    axes=None,
    border: str = "reflect",
) -> jax.Array:
    """Separable Gaussian blur of ``x`` along ``axes`` (default: all but the first and last).

    ``x``: ``[B, *spatial, C]``. Either border keeps a constant image constant:

    * ``"reflect"``: borders are reflected (like scipy's ``mode='reflect'``... close to OpenCV's
      default); the kernel (``size`` taps, default ``2 * ceil(3 sigma) + 1``) shrinks on axes
      too short for it.
    * ``"renormalise"``: the kernel is cut at the border and renormalised over the pixels inside
      (:func:`gaussian_matrix`), as LIME and KernelSHAP's blur fill does.
    """
    if border not in BORDERS:
        raise errors.InvalidArgumentError(f"`border` must be one of {BORDERS}, got {border!r}.")
    if axes is None:
        axes = tuple(range(1, x.ndim - 1))
    if border == "renormalise":
        return _blur_renormalised(x, sigma, size, axes)
    k = jnp.asarray(gaussian_kernel1d(sigma, size))
    r = (k.shape[0] - 1) // 2
    out = x
    for ax in axes:
        n = out.shape[ax]
        pad = [(0, 0)] * out.ndim
        pad[ax] = (min(r, n - 1), min(r, n - 1))
        padded = jnp.pad(out, pad, mode="symmetric") if n > 1 else out
        if n == 1:
            continue
        kk = k if r <= n - 1 else jnp.asarray(gaussian_kernel1d(sigma, 2 * (n - 1) + 1))
        moved = jnp.moveaxis(padded, ax, -1)
        flat = moved.reshape(-1, moved.shape[-1])
        conv = jax.vmap(lambda row, kk=kk: jnp.convolve(row, kk, mode="valid"))(flat)
        out = jnp.moveaxis(conv.reshape(moved.shape[:-1] + (n,)), -1, ax)
    return out


def _blur_renormalised(x: jax.Array, sigma: float, size: int | None, axes) -> jax.Array:
    letters = "abcdefghijklmnopqrstuvwxy"[: x.ndim]
    for ax in axes:
        ax = ax % x.ndim
        out = letters[:ax] + "z" + letters[ax + 1 :]
        m = jnp.asarray(gaussian_matrix(x.shape[ax], sigma, size))
        x = jnp.einsum(f"z{letters[ax]},{letters}->{out}", m, x)
    return x


def resize_spatial(maps: jax.Array, shape: tuple[int, ...], method: str = "bilinear") -> jax.Array:
    """Resizes ``[B, *spatial]`` maps to ``[B, *shape]`` (half-pixel centres, like
    ``torch.nn.functional.interpolate(align_corners=False)`` for upsampling)."""
    if tuple(maps.shape[1:]) == tuple(shape):
        return maps
    method = {"bilinear": "linear", "trilinear": "linear"}.get(method, method)
    return jax.image.resize(maps, (maps.shape[0], *shape), method=method, antialias=False)
