"""Salient regions of a mask (Visual Summaries, Stage B): components ranked by their drop."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from xaijax import _validation as v
from xaijax import errors
from xaijax._components import CONNECTIVITIES, label_foreground
from xaijax._explainer import check_batch, check_values
from xaijax._filters import gaussian_blur
from xaijax._model import as_model, num_classes
from xaijax.typing import Array, Params


class SalientRegions(NamedTuple):
    """The top regions of each image of a batch ``[B, H, W, C]``, best first.

    Attributes:
      masks: ``[B, K, H, W]`` bool, one connected region each (all False where ``valid`` is).
      drop: ``[B, K]`` ``1 - p_c(x with only the region replaced by the null image)`` (0 where
        not valid).
      area: ``[B, K]`` the region's share of the image.
      valid: ``[B, K]`` bool: whether the image has a K-th region (at least ``min_area``).
    """

    masks: Array
    drop: Array
    area: Array
    valid: Array


def salient_regions(
    model: Any,
    params: Params,
    x: Any,
    heat: Any,
    target: Any = None,
    *,
    threshold: float = 128 / 255,
    min_area: float = 0.01,
    top_k: int = 3,
    connectivity: str = "full",
    null_blur_sigma: float = 10.0,
    null_kernel_size: int = 11,
) -> SalientRegions:
    """The ``top_k`` salient regions of each image's heat mask, scored by their drop.

    As the Visual Summaries code (``rank_regions.py``): the heat mask (the ``map`` of
    :func:`crisp_mask`, bright = deleted) is binarised at ``h > threshold`` (OpenCV's
    ``THRESH_BINARY`` at 128 of 255), its connected components labelled (skimage's ``label``:
    8-connectivity, ``connectivity="full"``; the package's one implementation), components
    under ``min_area`` of the image dropped, each remaining one scored by
    ``drop_r = 1 - p_c(x * (1 - r) + null * r)`` (only that region replaced by the null image,
    the image blurred as ``cv2.GaussianBlur(x, (11, 11), 10)``), and the ``top_k`` kept. At most
    ``floor(1 / min_area)`` components can reach ``min_area``, so every one of them is scored
    (that many model calls per image, in one batch). Batched and jitted per input shape.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn``; ``p_c`` is the
        softmax probability of its head.
      params: the model's parameters.
      x: ``[B, H, W, C]`` images.
      heat: ``[B, H, W]`` heat masks in ``[0, 1]`` (bright = salient).
      target: ``[B]`` classes, or ``None`` for the arg-max class.
      threshold: binarisation threshold of ``heat`` (128/255).
      min_area: the smallest region kept, as a share of the image (0.01).
      top_k: regions kept per image (3).
      connectivity: ``"full"`` (8-neighbours, skimage's default) or ``"face"`` (4).
      null_blur_sigma: sigma of the null image's blur (10).
      null_kernel_size: taps of the null image's blur (11).

    Returns:
      A :class:`SalientRegions`.

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> f = lambda p, x: jnp.stack([4 * x[:, :4, :4].mean((1, 2, 3)), jnp.zeros(len(x))], 1)
      >>> heat = jnp.zeros((1, 16, 16)).at[:, :4, :4].set(1.0).at[:, 10:14, 10:14].set(1.0)
      >>> r = xaijax.masks.salient_regions(f, None, jnp.ones((1, 16, 16, 1)), heat, top_k=2)
      >>> r.valid.tolist(), bool(r.masks[0, 0, 0, 0])
      ([[True, True]], True)

    References:
      Godi et al., "Understanding Deep Architectures by Visual Summaries", BMVC 2018.
    """
    net = as_model(model, what="salient_regions")
    threshold = v.check_number(threshold, "threshold")
    min_area = v.check_fraction(min_area, "min_area")
    top_k = v.check_positive_int(top_k, "top_k")
    connectivity = v.check_choice(connectivity, "connectivity", CONNECTIVITIES)
    null_blur_sigma = v.check_positive_number(null_blur_sigma, "null_blur_sigma")
    null_kernel_size = v.check_positive_int(null_kernel_size, "null_kernel_size")
    x = check_batch(x, min_rank=4)
    if x.ndim != 4:
        raise errors.InputShapeError(
            f"`x` must be images [B, H, W, C] for salient_regions, got shape {list(x.shape)}."
        )
    heat = v.as_array(heat, "heat")
    if tuple(heat.shape) != tuple(x.shape[:3]):
        raise errors.InputShapeError(
            f"`heat` must be [B, H, W] = {list(x.shape[:3])} heat masks (a mask explainer's "
            f"`map`), got shape {list(heat.shape)}."
        )
    if not jnp.issubdtype(heat.dtype, jnp.floating):
        heat = heat.astype(jnp.float32)
    target = v.check_target(target, x.shape[0])
    check_values(x, target, num_classes(net, params, x))
    candidates = max(1, math.floor(1.0 / min_area + 1e-9))
    return _program(
        net,
        threshold,
        min_area,
        top_k,
        candidates,
        connectivity,
        null_blur_sigma,
        null_kernel_size,
        params,
        x,
        heat.astype(x.dtype),
        target,
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7))
def _program(
    net, threshold, min_area, top_k, candidates, connectivity, sigma, size, params, x, heat, target
):
    """One jitted program per model, options and input shape (jit's cache on static args)."""
    prob_model = net.with_score("probability")

    def one(x, null, heat, t):
        h, w = heat.shape
        n = h * w
        labels = label_foreground(heat > threshold, connectivity).reshape(n)
        sizes = jnp.zeros(n + 1, jnp.int32).at[labels].add(1)[:n]
        k = min(candidates, n)
        size_k, lab_k = jax.lax.top_k(sizes, k)
        ok = size_k >= min_area * n
        regions = (labels[None, :] == lab_k[:, None]) & ok[:, None]  # [k, n]
        r = regions.reshape(k, h, w, 1).astype(x.dtype)
        perturbed = x[None] * (1.0 - r) + null[None] * r
        p = prob_model.scores(params, perturbed)[:, t]
        drop = jnp.where(ok, 1.0 - p, -jnp.inf)
        kk = min(top_k, k)
        best, idx = jax.lax.top_k(drop, kk)
        valid = ok[idx]
        masks = regions[idx].reshape(kk, h, w)
        drop = jnp.where(valid, best, 0.0)
        area = jnp.where(valid, size_k[idx] / n, 0.0).astype(x.dtype)
        if kk < top_k:  # fewer pixels than regions asked for: pad with empty regions
            pad = top_k - kk
            masks = jnp.concatenate([masks, jnp.zeros((pad, h, w), bool)])
            drop = jnp.concatenate([drop, jnp.zeros(pad, drop.dtype)])
            area = jnp.concatenate([area, jnp.zeros(pad, area.dtype)])
            valid = jnp.concatenate([valid, jnp.zeros(pad, bool)])
        return SalientRegions(masks=masks, drop=drop, area=area, valid=valid)

    if target is None:
        target = jnp.argmax(net.scores(params, x), axis=-1).astype(jnp.int32)
    null = gaussian_blur(x, sigma, size=size, border="reflect101")
    return jax.vmap(one)(x, null, heat, target)
