"""Attribute grounding: one map per attribute (CAM on the attribute head or Grad-CAM), peaks,
boxes and the part-based hit test."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from xaijax import _validation, errors
from xaijax._explainer import Explainer, as_explainer
from xaijax._model import as_model
from xaijax._validation import _shape_str
from xaijax.attribution import cam, grad_cam
from xaijax.eat._heads import ATTRIBUTES
from xaijax.typing import Array, ArrayLike, Params

#: Grounding methods: ``"cam"`` (the default; exact for a linear head on pooled features) and
#: ``"grad_cam"`` (Grad-CAM of the attribute logit).
METHODS = ("cam", "grad_cam")


def attribute_grounding(
    model: Any,
    layer: str,
    *,
    method: str = "cam",
    relu: bool = True,
    upsample: bool = True,
    head: Any = ATTRIBUTES,
) -> Explainer:
    """An explainer of attribute logits: ``ground(params, x, attribute [B]) -> [B, H, W]``.

    ``method="cam"``: ``G_j = ReLU(Σ_k W_a[k, j] F_k)`` on the feature map ``F`` of ``layer``;
    for a linear attribute head on the global average pool of ``F`` (:class:`EATNet` on a zoo
    backbone with ``head="gap"``) the map before ReLU and upsampling decomposes the logit
    exactly, ``a_j = mean_ij G_j(i, j) + b_j``. ``method="grad_cam"``: Grad-CAM of ``a_j``.
    Both go through :func:`xaijax.cam` / :func:`xaijax.grad_cam` on the model's attribute head,
    so the explainer contract (jit, vmap, batches) is theirs; ``target`` is an attribute index
    (``None``: the attribute of highest logit).

    Args:
      model: an :class:`EATNet`, or a :class:`~xaijax.Model` of one (its head is set to
        ``head``).
      layer: the feature layer (the backbone's ``cam_layer``, e.g. ``"block4"``).
      method: one of :data:`METHODS`.
      relu: keep positive evidence only (the papers note's ``G_j``); ``False`` for the exact
        decomposition.
      upsample: resize bilinearly to the input's spatial shape.
      head: the output entry holding the attribute logits.

    Returns:
      An :class:`~xaijax.Explainer` returning ``[B, H, W]`` maps.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax import eat, models
      >>> net = eat.eat_net(models.get_model("vgg", 4, widths=(8, 16)), 6)
      >>> x = jnp.zeros((2, 32, 32, 3))
      >>> params = net.init(jax.random.key(0), x)["params"]
      >>> eat.attribute_grounding(net, "block2")(params, x, jnp.array([0, 5])).shape
      (2, 32, 32)

    References:
      Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016;
      Selvaraju et al., "Grad-CAM", ICCV 2017.
    """
    _validation.check_choice(method, "method", METHODS)
    m = as_model(model, what="attribute_grounding").with_head(head)
    factory = cam if method == "cam" else grad_cam
    e = factory(m, layer, relu=relu, upsample=upsample)
    return dataclasses.replace(
        e,
        name=f"attribute_grounding({method})",
        options=(*e.options, ("method", method)),
    )


def ground_attributes(grounding: Any, params: Params, x: ArrayLike, attributes: ArrayLike) -> Array:
    """Grounds several attributes per image: ``[B, m] indices -> [B, m, H, W]`` maps.

    The ``m`` attributes are vmapped over (one batched call), e.g. the attributes a sentence
    names (``select_attributes(...).indices``).

    Args:
      grounding: from :func:`attribute_grounding`.
      params: the model parameters.
      x: ``[B, H, W, 3]`` images.
      attributes: ``[B, m]`` int attribute indices.

    Returns:
      ``[B, m, H, W]`` maps.

    Raises:
      InputShapeError: ``attributes`` not ``[B, m]``.
      TargetOutOfRangeError: an index outside the attribute head.
    """
    e = as_explainer(grounding, "ground_attributes")
    idx = _validation.as_array(attributes, "attributes")
    xa = _validation.as_array(x, "x")
    if idx.ndim != 2 or idx.shape[0] != xa.shape[0] or not jnp.issubdtype(idx.dtype, jnp.integer):
        raise errors.InputShapeError(
            f"`attributes` must be int [B, m] with B = {xa.shape[0]} (the batch of `x`), got "
            f"{idx.dtype}{_shape_str(idx.shape)}."
        )
    if idx.shape[1] == 0:
        raise errors.InputShapeError("`attributes` is [B, 0]: give at least one attribute.")
    kwargs = dict(e.bound)
    x_checked, _, kwargs = e.prepare(params, xa, idx[:, 0], kwargs)
    num = _num_attributes(e, params, x_checked)
    if _validation.is_concrete(idx):
        _validation.check_target_in_range(idx.reshape(-1), num, name="attributes")
    return jax.vmap(lambda t: e.run(params, x_checked, t, **kwargs), in_axes=1, out_axes=1)(
        idx.astype(jnp.int32)
    )


def _num_attributes(e: Explainer, params, x) -> int:
    from xaijax import _model

    return _model.num_classes(e.model, params, x)


def peaks(maps: ArrayLike) -> Array:
    """The arg-max location ``(y, x)`` of each map (ties: first in row-major order).

    Args:
      maps: ``[..., H, W]`` maps.

    Returns:
      ``[..., 2]`` int32 ``(row, column)``.

    Example:
      >>> import jax.numpy as jnp
      >>> peaks(jnp.zeros((1, 3, 4)).at[0, 2, 1].set(1.0)).tolist()
      [[2, 1]]
    """
    s = _validation.as_array(maps, "maps")
    if s.ndim < 2:
        raise errors.InputShapeError(f"`maps` must be [..., H, W], got {_shape_str(s.shape)}.")
    return _peaks(s)


@jax.jit
def _peaks(s: Array) -> Array:
    h, w = s.shape[-2:]
    flat = jnp.argmax(s.reshape(*s.shape[:-2], h * w), axis=-1)
    return jnp.stack([flat // w, flat % w], axis=-1).astype(jnp.int32)


def peak_boxes(maps: ArrayLike, size: tuple[float, float]) -> Array:
    """A box of ``size = (height, width)`` pixels centred on each map's peak, clipped to it.

    APN's grounding box (papers note 5(b).6) is a quarter of the object's box per side centred at
    the attribute map's maximum. For threshold boxes (CAM's WSOL rule) use
    :func:`xaijax.metrics.box_from_map`.

    Args:
      maps: ``[..., H, W]`` maps.
      size: ``(height, width)`` of the box in pixels (> 0).

    Returns:
      ``[..., 4]`` float32 boxes ``(y0, x0, y1, x1)``, ``y1``/``x1`` exclusive.

    Example:
      >>> import jax.numpy as jnp
      >>> peak_boxes(jnp.zeros((1, 8, 8)).at[0, 0, 4].set(1.0), (4, 2)).tolist()
      [[0.0, 3.5, 2.5, 5.5]]
    """
    if not (isinstance(size, tuple | list) and len(size) == 2):
        raise errors.InvalidArgumentError(
            f"`size` must be a (height, width) pair in pixels, got {size!r}."
        )
    bh = _validation.check_positive_number(size[0], "size[0]")
    bw = _validation.check_positive_number(size[1], "size[1]")
    s = _validation.as_array(maps, "maps")
    p = peaks(s).astype(jnp.float32) + 0.5  # pixel centres
    h, w = s.shape[-2:]
    y0 = jnp.clip(p[..., 0] - bh / 2, 0, h)
    y1 = jnp.clip(p[..., 0] + bh / 2, 0, h)
    x0 = jnp.clip(p[..., 1] - bw / 2, 0, w)
    x1 = jnp.clip(p[..., 1] + bw / 2, 0, w)
    return jnp.stack([y0, x0, y1, x1], axis=-1)


def grounding_hits(
    maps: ArrayLike, attributes: ArrayLike, part_masks: ArrayLike, attribute_part: ArrayLike
) -> Array:
    """Whether the peak of each attribute's map lies inside the ground-truth part carrying it.

    The part-based grounding test of the papers note (5(g)): attribute ``j`` lives on part
    ``attribute_part[j]`` (on the synthetic benchmark ``j // 19``, the order of
    ``ATTRIBUTE_NAMES``); a map is a hit when its arg-max pixel is inside that part's mask.
    An absent part (empty mask) is never hit.

    Args:
      maps: ``[B, m, H, W]`` grounding maps (:func:`ground_attributes`).
      attributes: ``[B, m]`` int attribute indices of the maps.
      part_masks: ``[B, P, H, W]`` bool part masks.
      attribute_part: ``[A]`` int part index of each attribute.

    Returns:
      ``[B, m]`` bool hits.
    """
    s = _validation.as_array(maps, "maps")
    idx = _validation.as_array(attributes, "attributes")
    parts = _validation.as_array(part_masks, "part_masks")
    table = _validation.as_array(attribute_part, "attribute_part")
    if s.ndim != 4 or idx.shape != s.shape[:2]:
        raise errors.InputShapeError(
            f"`maps` must be [B, m, H, W] and `attributes` [B, m]; got {_shape_str(s.shape)} and "
            f"{_shape_str(idx.shape)}."
        )
    if parts.ndim != 4 or parts.shape[0] != s.shape[0] or parts.shape[2:] != s.shape[2:]:
        raise errors.InputShapeError(
            f"`part_masks` must be [B, P, H, W] = [{s.shape[0]}, P, {s.shape[2]}, {s.shape[3]}],"
            f" got {_shape_str(parts.shape)}."
        )
    return _hits(s, idx.astype(jnp.int32), parts.astype(bool), table.astype(jnp.int32))


@jax.jit
def _hits(s, idx, parts, table):
    p = _peaks(s)  # [B, m, 2]
    part = table[idx]  # [B, m]
    b = jnp.arange(s.shape[0])[:, None]
    return parts[b, part, p[..., 0], p[..., 1]]
