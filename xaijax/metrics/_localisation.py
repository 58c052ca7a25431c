"""Localisation metrics on saliency maps: pointing game, energy in mask, channel reduction."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from xaijax import _validation
from xaijax import _validation as _checks
from xaijax.typing import Array, ArrayLike

_REDUCTIONS = ("sum_abs", "sum", "max_abs", "l2")


def reduce_channels(attributions: ArrayLike, reduction: str = "sum_abs") -> Array:
    """Reduces per-channel attributions ``[B, H, W, C]`` to a saliency map ``[B, H, W]``.

    The metrics of this package take single-channel maps; this is the usual way to get one from a
    gradient-type attribution of an image batch.

    Args:
      attributions: ``[B, H, W, C]`` floating attributions.
      reduction: ``"sum_abs"`` (sum of ``|a|`` over channels, the default, as in Simonyan et al.
        up to the max-vs-sum choice), ``"sum"`` (signed sum), ``"max_abs"`` (max of ``|a|``) or
        ``"l2"`` (Euclidean norm over channels).

    Returns:
      ``[B, H, W]`` map with the attributions' dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.metrics import reduce_channels
      >>> reduce_channels(jnp.array([[[[1.0, -2.0]]]])).tolist()
      [[[3.0]]]
    """
    a = _validation.check_floating(attributions, "attributions", rank=4, layout="[B, H, W, C]")
    _validation.check_choice(reduction, "reduction", _REDUCTIONS)
    return _reduce(a, reduction)


@functools.partial(jax.jit, static_argnames=("reduction",))
def _reduce(a: Array, reduction: str) -> Array:
    if reduction == "sum_abs":
        return jnp.abs(a).sum(-1)
    if reduction == "sum":
        return a.sum(-1)
    if reduction == "max_abs":
        return jnp.abs(a).max(-1)
    return jnp.sqrt(jnp.square(a).sum(-1))


def pointing_game(saliency: ArrayLike, mask: ArrayLike, *, tolerance: float = 0) -> Array:
    """Pointing game (Zhang et al. 2016): does the map's maximum fall on the object?

    An example is a *hit* when the arg-max pixel of its map lies inside the ground-truth mask, or
    within ``tolerance`` pixels (Euclidean distance between pixel centres) of a mask pixel. Zhang et
    al. use a 15-pixel tolerance on ImageNet-sized images; Fong & Vedaldi's code uses none. Ties in
    the maximum go to the first pixel in row-major order (``jnp.argmax``). An empty mask is never
    hit. The accuracy of a dataset is the mean of the hits (per class, then averaged over classes,
    in the papers).

    Args:
      saliency: ``[B, H, W]`` floating maps (reduce channels first with :func:`reduce_channels`).
      mask: ``[B, H, W]`` boolean object masks (integer masks: nonzero = object). For boxes use
        ``boxes_to_mask(boxes, H, W)`` (``[B, M, 4]`` boxes give the union of M boxes, i.e. "inside
        any ground-truth box").
      tolerance: non-negative radius in pixels.

    Returns:
      ``[B]`` bool hits.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.metrics import pointing_game
      >>> s = jnp.zeros((1, 4, 4)).at[0, 0, 0].set(1.0)
      >>> m = jnp.zeros((1, 4, 4), bool).at[0, 2:, 2:].set(True)
      >>> pointing_game(s, m).tolist(), pointing_game(s, m, tolerance=3).tolist()
      ([False], [True])

    References:
      Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016.
    """
    s = _checks.check_map(saliency, "saliency")
    m = _checks.check_mask(mask, "mask", s.shape)
    tol = _checks.check_nonnegative_number(tolerance, "tolerance")
    return _pointing_game(s, m, tol)


@jax.jit
def _pointing_game(s: Array, m: Array, tol: float) -> Array:
    b, h, w = s.shape
    flat = jnp.argmax(s.reshape(b, h * w), axis=1)
    row, col = flat // w, flat % w
    rows = jnp.arange(h)[None, :, None]
    cols = jnp.arange(w)[None, None, :]
    d2 = jnp.square(rows - row[:, None, None]) + jnp.square(cols - col[:, None, None])
    return jnp.any(m & (d2.astype(jnp.float32) <= tol * tol), axis=(1, 2))


def energy_in_mask(saliency: ArrayLike, mask: ArrayLike) -> Array:
    """Share of the positive saliency mass that lies inside the mask.

    .. math:: E = \\frac{\\sum_{p \\in M} \\max(s_p, 0)}{\\sum_p \\max(s_p, 0)}

    This is the energy-based pointing game of Score-CAM and Quantus' "relevance mass accuracy"
    restricted to positive evidence. A map without positive mass (all zero or all negative) gets
    0, never NaN.

    Args:
      saliency: ``[B, H, W]`` floating maps.
      mask: ``[B, H, W]`` boolean masks.

    Returns:
      ``[B]`` float32 values in [0, 1].

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.metrics import energy_in_mask
      >>> s = jnp.array([[[3.0, 1.0], [-5.0, 0.0]]])
      >>> m = jnp.array([[[True, False], [True, False]]])
      >>> energy_in_mask(s, m).tolist()
      [0.75]

    References:
      Wang et al., "Score-CAM", CVPR-W 2020; Arras et al., "CLEVR-XAI", Inf. Fusion 2022.
    """
    s = _checks.check_map(saliency, "saliency")
    m = _checks.check_mask(mask, "mask", s.shape)
    return _energy_in_mask(s, m)


@jax.jit
def _energy_in_mask(s: Array, m: Array) -> Array:
    pos = jnp.maximum(s, 0).astype(jnp.float32)
    total = pos.sum(axis=(1, 2))
    inside = jnp.where(m, pos, 0).sum(axis=(1, 2))
    return jnp.where(total > 0, inside / jnp.where(total > 0, total, 1), 0.0)
