"""Boxes: weakly supervised localisation from saliency maps (CAM / Grad-CAM protocol) and IoU.

Box convention everywhere in :mod:`xaijax.metrics`: a box is ``(y0, x0, y1, x1)`` in pixel
indices, **inclusive-exclusive** like a Python slice, so it covers rows ``y0 .. y1 - 1`` and
columns ``x0 .. x1 - 1`` (``map[y0:y1, x0:x1]``) and its area is ``(y1 - y0) * (x1 - x0)``. The
empty box is ``(0, 0, 0, 0)``. Datasets with 1-based inclusive corners (PASCAL VOC, ImageNet
XML) convert with ``(ymin - 1, xmin - 1, ymax, xmax)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from xaijax import _components, _validation, errors
from xaijax import _validation as _checks
from xaijax.typing import Array, ArrayLike


def boxes_to_mask(boxes: ArrayLike, height: int, width: int) -> Array:
    """Rasterises boxes into boolean masks.

    Pixel ``(r, c)`` is inside box ``(y0, x0, y1, x1)`` when ``y0 <= r < y1`` and
    ``x0 <= c < x1``. With several boxes per example (``[B, M, 4]``) the mask is their union, which
    is what "inside any ground-truth box of the class" means in the pointing game and WSOL;
    pad with empty boxes ``(0, 0, 0, 0)`` when examples have fewer than M boxes.

    Args:
      boxes: ``[B, 4]`` or ``[B, M, 4]`` boxes ``(y0, x0, y1, x1)``, integer or float.
      height: mask height H.
      width: mask width W.

    Returns:
      ``[B, H, W]`` bool.

    Example:
      >>> from xaijax.metrics import boxes_to_mask
      >>> boxes_to_mask([[0, 1, 2, 3]], 3, 4).astype(int).tolist()
      [[[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]]
    """
    b = _checks.check_boxes(boxes, "boxes", allow_multi=True)
    height = _validation.check_positive_int(height, "height")
    width = _validation.check_positive_int(width, "width")
    if b.ndim == 2:
        b = b[:, None, :]
    return _boxes_to_mask(b, height, width)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def _boxes_to_mask(b: Array, height: int, width: int) -> Array:
    rows = jnp.arange(height)[None, None, :, None]
    cols = jnp.arange(width)[None, None, None, :]
    y0, x0, y1, x1 = (b[:, :, i, None, None] for i in range(4))
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return inside.any(axis=1)


def boxes_from_mask(mask: ArrayLike) -> Array:
    """Tight box around all True pixels of each mask.

    Args:
      mask: ``[B, H, W]`` boolean masks (integer: nonzero = inside).

    Returns:
      ``[B, 4]`` int32 boxes ``(y0, x0, y1, x1)`` (inclusive-exclusive); ``(0, 0, 0, 0)`` for an
      empty mask.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.metrics import boxes_from_mask
      >>> m = jnp.zeros((1, 5, 5), bool).at[0, 1:3, 2:5].set(True)
      >>> boxes_from_mask(m).tolist()
      [[1, 2, 3, 5]]
    """
    m = _checks.as_array(mask, "mask")
    if m.ndim != 3:
        raise errors.InputShapeError(
            f"`mask` must be laid out as [B, H, W], got shape {_checks.shape_str(m.shape)}."
        )
    m = _checks.check_mask(m, "mask", m.shape)
    return _tight_boxes(m)


@jax.jit
def _tight_boxes(m: Array) -> Array:
    """[B, H, W] bool -> [B, 4] int32 tight boxes; (0, 0, 0, 0) when empty."""
    _, h, w = m.shape
    rows, cols = m.any(axis=2), m.any(axis=1)
    r = jnp.arange(h, dtype=jnp.int32)[None, :]
    c = jnp.arange(w, dtype=jnp.int32)[None, :]
    y0 = jnp.where(rows, r, h).min(1)
    y1 = jnp.where(rows, r + 1, 0).max(1)
    x0 = jnp.where(cols, c, w).min(1)
    x1 = jnp.where(cols, c + 1, 0).max(1)
    box = jnp.stack([y0, x0, y1, x1], axis=1)
    return jnp.where(rows.any(1, keepdims=True), box, 0)


def box_iou(a: ArrayLike, b: ArrayLike) -> Array:
    """Intersection over union of paired boxes.

    .. math:: \\mathrm{IoU}(A, B) = |A \\cap B| / |A \\cup B|

    with areas ``(y1 - y0) * (x1 - x0)`` (inclusive-exclusive boxes; boxes with ``y1 < y0`` count
    as empty). Two empty boxes give 0, not NaN. WSOL counts a localisation as correct when the IoU
    with *any* ground-truth box is >= 0.5: compare against ``[B, M, 4]`` ground truth with
    ``box_iou(jnp.repeat(pred[:, None], M, 1), gt).max(-1)``.

    Args:
      a: ``[..., 4]`` boxes ``(y0, x0, y1, x1)``.
      b: boxes of the same shape.

    Returns:
      ``[...]`` float32 IoUs in [0, 1] (``[B]`` for ``[B, 4]`` inputs).

    Example:
      >>> from xaijax.metrics import box_iou
      >>> box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3]]).tolist()  # 1 / (4 + 4 - 1)
      [0.1428571492433548]
    """
    a = _checks.check_boxes(a, "a", any_rank=True)
    b = _checks.check_boxes(b, "b", any_rank=True)
    _checks.check_same_shape(a, b, "a", "b")
    return _box_iou(a, b)


@jax.jit
def _box_iou(a: Array, b: Array) -> Array:
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)

    def area(x):
        return jnp.maximum(x[..., 2] - x[..., 0], 0) * jnp.maximum(x[..., 3] - x[..., 1], 0)

    ih = jnp.maximum(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0)
    iw = jnp.maximum(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0)
    inter = ih * iw
    union = area(a) + area(b) - inter
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)


def box_from_map(
    saliency: ArrayLike,
    *,
    threshold: float = 0.15,
    relative: bool = True,
    connectivity: int = 4,
) -> Array:
    """Bounding box of the largest connected blob of a thresholded saliency map (WSOL protocol).

    Each map is min-max normalised to [0, 1] (a constant map becomes all zeros, without NaN),
    pixels with normalised value ``> threshold`` form the foreground (Grad-CAM uses 0.15, CAM
    0.2 of the max), the largest ``connectivity``-connected foreground component is kept and its
    tight box returned. Ties between equally large components go to the one whose first pixel
    comes first in row-major order. An empty foreground (constant or all-zero maps, or
    ``threshold >= 1``) gives the empty box ``(0, 0, 0, 0)``, whose IoU with any box is 0, i.e. a
    localisation failure.

    Connected components are computed in-graph (jittable, vmapped over the batch) by min-label
    propagation with pointer jumping under ``lax.while_loop``: each foreground pixel starts with
    its own flat index, repeatedly takes the minimum over the runs of foreground along each axis
    (and over its diagonal neighbours for 8-connectivity) and then the label of its label, until
    nothing changes; the final label of a component is its smallest flat index.

    Args:
      saliency: ``[B, H, W]`` floating maps.
      threshold: foreground threshold on the normalised map (``relative=True``) or on the raw
        values (``relative=False``).
      relative: normalise each map to [0, 1] before thresholding.
      connectivity: 4 (edge neighbours) or 8 (also diagonal neighbours).

    Returns:
      ``[B, 4]`` int32 boxes ``(y0, x0, y1, x1)``, inclusive-exclusive.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.metrics import box_from_map
      >>> s = jnp.zeros((1, 6, 6)).at[0, 1:3, 1:4].set(1.0).at[0, 5, 5].set(1.0)
      >>> box_from_map(s).tolist()
      [[1, 1, 3, 4]]

    References:
      Zhou et al., "Learning Deep Features for Discriminative Localization" (CAM), CVPR 2016;
      Selvaraju et al., "Grad-CAM", ICCV 2017.
    """
    s = _checks.check_map(saliency, "saliency")
    threshold = _validation.check_number(threshold, "threshold")
    if relative and not 0 <= threshold <= 1:
        raise errors.InvalidArgumentError(
            f"`threshold` must be in [0, 1] for relative thresholds (it applies to the map "
            f"normalised to [0, 1]), got {threshold!r}. Pass `relative=False` for a raw value."
        )
    if connectivity not in (4, 8) or isinstance(connectivity, bool):
        raise errors.InvalidArgumentError(f"`connectivity` must be 4 or 8, got {connectivity!r}.")
    return _box_from_map(s, float(threshold), bool(relative), int(connectivity))


@functools.partial(jax.jit, static_argnames=("relative", "connectivity"))
def _box_from_map(s: Array, threshold: float, relative: bool, connectivity: int) -> Array:
    s = s.astype(jnp.float32)
    if relative:
        lo = s.min(axis=(1, 2), keepdims=True)
        hi = s.max(axis=(1, 2), keepdims=True)
        rng = hi - lo
        s = jnp.where(rng > 0, (s - lo) / jnp.where(rng > 0, rng, 1), 0.0)
    fg = s > threshold
    comp = jax.vmap(functools.partial(largest_component, connectivity=connectivity))(fg)
    return _tight_boxes(comp)


_CONNECTIVITY = {4: "face", 8: "full"}


@functools.partial(jax.jit, static_argnames=("connectivity",))
def connected_components(fg: Array, connectivity: int = 4) -> Array:
    """Labels the connected components of one boolean image ``[H, W]`` (jittable).

    Returns ``[H, W]`` int32 labels: each foreground pixel gets the smallest row-major flat index
    of its component; background pixels get ``H * W``. (The project's one n-D implementation,
    ``xaijax._components``, which SLIC uses too.)
    """
    if connectivity not in (4, 8):
        raise errors.InvalidArgumentError(f"`connectivity` must be 4 or 8, got {connectivity!r}.")
    return _components.label_foreground(fg, _CONNECTIVITY[connectivity])


@functools.partial(jax.jit, static_argnames=("connectivity",))
def largest_component(fg: Array, connectivity: int = 4) -> Array:
    """Boolean mask ``[H, W]`` of the largest connected component of ``fg`` (empty if none)."""
    if connectivity not in (4, 8):
        raise errors.InvalidArgumentError(f"`connectivity` must be 4 or 8, got {connectivity!r}.")
    return _components.largest_foreground(fg, _CONNECTIVITY[connectivity])
