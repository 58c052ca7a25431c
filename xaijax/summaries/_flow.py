"""Proposal Flow's local offset matching (LOM) confidences, as coded, in JAX.

A port of ``algorithms/LOM.m`` of Ham et al.'s Proposal Flow code (the function the visual
summaries code ``functions/compute_flow_fn.m`` calls), from the point where the appearance
similarity of every proposal pair is known:

1. clamp the similarity at 0 (``max(W, 0)``, as the code does for its HOG and dot features);
2. aspect filter: pair ``(i, k)`` gets 0 unless ``1/t < aspect_B(k) / aspect_A(i) < t``
   (``t = 2``; aspect = width / height with the code's ``x2 - x1``, ``y2 - y1``);
3. for each box ``i`` of image A, **in order** ``i = 0, 1, ...``: its neighbourhood ``N(i)`` is
   the boxes of A whose IoU with ``i`` is ``> 0`` (``i`` included; inclusive pixel boxes as
   MATLAB's ``bboxOverlapRatio`` on ``[x, y, x2 - x + 1, y2 - y + 1]``); every ``j`` in ``N(i)``
   takes its best match ``k*(j) = argmax_k C(j, k)`` (first maximum) and the offset
   ``o_j = (cxA_j - cxB_k*, cyA_j - cyB_k*, areaA_j / areaB_k*)`` (box centres);
4. a robust centre ``mu`` of the ``o_j``: 20 Weiszfeld/IRLS iterations from ``(1, 1, 1)`` with the
   code's element-wise distance ``|o - mu| + eps`` (so a per-coordinate median, not the joint
   geometric median), every neighbour weighted equally;
5. row ``i`` is multiplied by
   ``exp(-0.05 ||(dx, dy)_ik - mu_xy|| - 0.3 |ds_ik - mu_s|) * sum_{j in N(i)} max_k C(j, k) /
   sum_j max_k C(j, k)`` and written back at once, so the rows ``j < i`` that box ``i`` reads
   (its neighbours' best matches, and the global sum) are already re-weighted. The JAX version
   reproduces this with a ``lax.scan`` over the rows whose carry holds the matrix and each row's
   maximum and arg-maximum (only row ``i`` changes at step ``i``), so the cost is ``O(P^2)`` per
   pair, not ``O(P^3)``.

References:
  Ham, Cho, Schmid, Ponce, "Proposal Flow", CVPR 2016 (code: bsham/ProposalFlow,
  ``algorithms/LOM.m``).
  Godi et al., "Understanding Deep Architectures by Visual Summaries", BMVC 2018 (code:
  godimarcovr/interpretable_visual_summaries ``functions/compute_flow_fn.m``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from xaijax import errors
from xaijax._validation import (
    as_array,
    check_finite,
    check_nonnegative_number,
    check_positive_int,
    check_positive_number,
    shape_str,
)

#: MATLAB's ``eps`` (``2^-52``), the code's guard in the Weiszfeld distance.
MATLAB_EPS = 2.220446049250313e-16


def _check_options(
    iterations, aspect_threshold, iou_threshold, xy_weight, scale_weight, init, eps
) -> tuple[Any, ...]:
    iterations = check_positive_int(iterations, "iterations")
    if aspect_threshold is not None:
        aspect_threshold = check_positive_number(aspect_threshold, "aspect_threshold")
        if aspect_threshold <= 1:
            raise errors.InvalidArgumentError(
                f"`aspect_threshold` must be > 1 (pairs are kept when 1/t < ratio < t), got "
                f"{aspect_threshold!r}; pass `None` to switch the aspect filter off."
            )
    iou_threshold = check_nonnegative_number(iou_threshold, "iou_threshold")
    if iou_threshold >= 1:
        raise errors.InvalidArgumentError(
            f"`iou_threshold` must be a number in [0, 1), got {iou_threshold!r} (the code uses 0: "
            "every overlapping box is a neighbour)."
        )
    xy_weight = check_positive_number(xy_weight, "xy_weight", allow_zero=True)
    scale_weight = check_positive_number(scale_weight, "scale_weight", allow_zero=True)
    try:
        init = tuple(float(v) for v in init)
    except (TypeError, ValueError):
        init = ()
    if len(init) != 3 or not all(math.isfinite(v) for v in init):
        raise errors.InvalidArgumentError(
            f"`init` must be three finite numbers (dx, dy, ds), got {init!r}; the code starts "
            "from (1, 1, 1)."
        )
    eps = check_positive_number(eps, "eps")
    return iterations, aspect_threshold, float(iou_threshold), xy_weight, scale_weight, init, eps


def _check_boxes(boxes, name: str, batch: bool) -> jax.Array:
    boxes = as_array(boxes, name)
    rank = 3 if batch else 2
    layout = "[N, P, 4]" if batch else "[P, 4]"
    if boxes.ndim != rank or boxes.shape[-1] != 4:
        raise errors.InputShapeError(
            f"`{name}` must be laid out as {layout} with rows (x1, y1, x2, y2) (inclusive pixel "
            f"coordinates), got shape {shape_str(boxes.shape)}."
            + (" For one image pair use `lom_confidence`." if boxes.ndim == 2 and batch else "")
        )
    if boxes.dtype == jnp.bool_ or not (
        jnp.issubdtype(boxes.dtype, jnp.integer) or jnp.issubdtype(boxes.dtype, jnp.floating)
    ):
        raise errors.InputDTypeError(
            f"`{name}` must hold integer or floating coordinates, got dtype {boxes.dtype}."
        )
    return jnp.asarray(boxes)


def _check_valid(valid, name: str, shape: tuple[int, ...]) -> jax.Array:
    if valid is None:
        return jnp.ones(shape, jnp.bool_)
    valid = as_array(valid, name)
    if tuple(valid.shape) != shape:
        raise errors.InputShapeError(
            f"`{name}` must be a boolean mask of shape {shape_str(shape)} (one flag per box), "
            f"got {shape_str(valid.shape)}."
        )
    if valid.dtype != jnp.bool_:
        raise errors.InputDTypeError(
            f"`{name}` must be boolean, got dtype {valid.dtype}; use `{name} != 0`."
        )
    return jnp.asarray(valid)


def _check_similarity(similarity, shape: tuple[int, ...]) -> jax.Array:
    similarity = as_array(similarity, "similarity")
    if tuple(similarity.shape) != shape:
        raise errors.InputShapeError(
            f"`similarity` must have shape {shape_str(shape)} (boxes of image A x boxes of image "
            f"B), got {shape_str(similarity.shape)}."
        )
    if not jnp.issubdtype(similarity.dtype, jnp.floating):
        raise errors.InputDTypeError(
            f"`similarity` must be a floating-point array, got dtype {similarity.dtype}; cast it "
            "with `.astype(jnp.float32)`."
        )
    check_finite(similarity, "similarity")  # on the device: one boolean comes back
    return jnp.asarray(similarity)


def _geometry(boxes: jax.Array, inclusive: bool):
    """Centres, the code's width/height (``x2 - x1``) and the IoU extents of ``[P, 4]`` boxes."""
    b = boxes.astype(jnp.float32)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    extra = 1.0 if inclusive else 0.0
    return {
        "cx": (x1 + x2) / 2,
        "cy": (y1 + y2) / 2,
        "w": x2 - x1,
        "h": y2 - y1,
        "x1": x1,
        "y1": y1,
        "x2": x2 + extra,  # exclusive end, for the overlap test
        "y2": y2 + extra,
    }


def _lom_single(
    boxes_a,
    boxes_b,
    similarity,
    valid_a,
    valid_b,
    *,
    iterations: int,
    aspect_threshold: float | None,
    iou_threshold: float,
    xy_weight: float,
    scale_weight: float,
    init: tuple[float, float, float],
    eps: float,
    clamp: bool,
    inclusive: bool,
    sequential: bool,
) -> jax.Array:
    ga, gb = _geometry(boxes_a, inclusive), _geometry(boxes_b, inclusive)
    # Degenerate boxes (zero width or height) have no aspect ratio: they take no part.
    valid_a = valid_a & (ga["w"] > 0) & (ga["h"] > 0)
    valid_b = valid_b & (gb["w"] > 0) & (gb["h"] > 0)
    pair = valid_a[:, None] & valid_b[None, :]
    conf = similarity.astype(jnp.float32)
    if clamp:
        conf = jnp.maximum(conf, 0.0)
    if aspect_threshold is not None:
        # ratio = (wB / hB) / (wA / hA) = num / den, compared without dividing so that integer
        # boxes on the boundary (ratio exactly 2) are decided exactly, as in float64 MATLAB.
        num = gb["w"][None, :] * ga["h"][:, None]
        den = gb["h"][None, :] * ga["w"][:, None]
        pair = pair & (num < aspect_threshold * den) & (num * aspect_threshold > den)
    conf = jnp.where(pair, conf, 0.0)

    # Offsets of every pair (the code's offset_x, offset_y, offset_s).
    area_a = ga["w"] * ga["h"]
    area_b = jnp.where(valid_b, gb["w"] * gb["h"], 1.0)
    off_x = ga["cx"][:, None] - gb["cx"][None, :]
    off_y = ga["cy"][:, None] - gb["cy"][None, :]
    off_s = area_a[:, None] / area_b[None, :]

    # Neighbourhoods: IoU > threshold among the valid boxes of A (the box itself included).
    iw = jnp.minimum(ga["x2"][:, None], ga["x2"][None, :]) - jnp.maximum(
        ga["x1"][:, None], ga["x1"][None, :]
    )
    ih = jnp.minimum(ga["y2"][:, None], ga["y2"][None, :]) - jnp.maximum(
        ga["y1"][:, None], ga["y1"][None, :]
    )
    inter = jnp.maximum(iw, 0.0) * jnp.maximum(ih, 0.0)
    size = (ga["x2"] - ga["x1"]) * (ga["y2"] - ga["y1"])
    union = size[:, None] + size[None, :] - inter
    iou = inter / jnp.where(union > 0, union, 1.0)
    neigh = (iou > iou_threshold) & valid_a[:, None] & valid_a[None, :]

    def row_stats(rows):
        masked = jnp.where(valid_b, rows, -jnp.inf)
        best = jnp.argmax(masked, axis=-1)  # first maximum, as MATLAB's max
        top = jnp.where(jnp.any(valid_b), jnp.max(masked, axis=-1), 0.0)
        return best, top

    mu0 = jnp.asarray(init, jnp.float32)

    def update_row(i, best, top):
        """Row ``i``'s factor from every row's current best match ``best`` and maximum ``top``."""
        nb = neigh[i]
        offs = jnp.stack(
            [ga["cx"] - gb["cx"][best], ga["cy"] - gb["cy"][best], area_a / area_b[best]]
        )  # [3, P]: the offset of each box of A to its best match

        def weiszfeld(_, mu):
            inv = 1.0 / (jnp.abs(offs - mu[:, None]) + eps)
            inv = jnp.where(nb[None, :], inv, 0.0)
            return jnp.sum(offs * inv, axis=1) / jnp.sum(inv, axis=1)

        mu = jax.lax.fori_loop(0, iterations, weiszfeld, mu0)
        mu = jnp.where(jnp.any(nb), mu, mu0)
        dxy = jnp.sqrt((off_x[i] - mu[0]) ** 2 + (off_y[i] - mu[1]) ** 2)
        affinity = jnp.exp(-xy_weight * dxy - scale_weight * jnp.abs(off_s[i] - mu[2]))
        local = jnp.sum(jnp.where(nb, top, 0.0))
        total = jnp.sum(jnp.where(valid_a, top, 0.0))
        share = jnp.where(total != 0, local / jnp.where(total != 0, total, 1.0), 0.0)
        return affinity * share

    best, top = row_stats(conf)
    if sequential:

        def step(carry, i):
            conf, best, top = carry
            row = conf[i] * update_row(i, best, top)
            row = jnp.where(valid_a[i], row, 0.0)
            b_i, t_i = row_stats(row)
            conf = conf.at[i].set(row)
            return (conf, best.at[i].set(b_i), top.at[i].set(t_i)), None

        (conf, _, _), _ = jax.lax.scan(step, (conf, best, top), jnp.arange(conf.shape[0]))
        return conf
    factors = jax.vmap(lambda i: update_row(i, best, top))(jnp.arange(conf.shape[0]))
    return jnp.where(valid_a[:, None], conf * factors, 0.0)


def _prepare(boxes_a, boxes_b, similarity, valid_a, valid_b, batch: bool) -> tuple[jax.Array, ...]:
    a = _check_boxes(boxes_a, "boxes_a", batch)
    b = _check_boxes(boxes_b, "boxes_b", batch)
    if batch and a.shape[0] != b.shape[0]:
        raise errors.BatchMismatchError(
            f"`boxes_a` holds {a.shape[0]} image pairs but `boxes_b` holds {b.shape[0]}; pass one "
            "row of boxes per pair in both."
        )
    lead = (a.shape[0],) if batch else ()
    sim = _check_similarity(similarity, (*lead, a.shape[-2], b.shape[-2]))
    va = _check_valid(valid_a, "valid_a", tuple(a.shape[:-1]))
    vb = _check_valid(valid_b, "valid_b", tuple(b.shape[:-1]))
    return a, b, sim, va, vb


def _options(
    iterations, aspect_threshold, iou_threshold, xy_weight, scale_weight, init, eps, clamp,
    inclusive, sequential,
) -> dict:  # fmt: skip
    it, at, iou, xw, sw, init, eps = _check_options(
        iterations, aspect_threshold, iou_threshold, xy_weight, scale_weight, init, eps
    )
    return {
        "iterations": it,
        "aspect_threshold": at,
        "iou_threshold": iou,
        "xy_weight": xw,
        "scale_weight": sw,
        "init": init,
        "eps": eps,
        "clamp": bool(clamp),
        "inclusive": bool(inclusive),
        "sequential": bool(sequential),
    }


def lom_confidence(
    boxes_a: jax.typing.ArrayLike,
    boxes_b: jax.typing.ArrayLike,
    similarity: jax.typing.ArrayLike,
    *,
    valid_a: jax.typing.ArrayLike | None = None,
    valid_b: jax.typing.ArrayLike | None = None,
    iterations: int = 20,
    aspect_threshold: float | None = 2.0,
    iou_threshold: float = 0.0,
    xy_weight: float = 0.05,
    scale_weight: float = 0.3,
    init: tuple[float, float, float] = (1.0, 1.0, 1.0),
    eps: float = MATLAB_EPS,
    clamp: bool = True,
    inclusive: bool = True,
    sequential: bool = True,
) -> jax.Array:
    """Proposal Flow's LOM confidences between the proposals of two images, as coded.

    Steps 3-5 of Proposal Flow's ``LOM.m`` (see the module docstring): the appearance
    similarity, clamped at 0 and aspect-filtered, re-weighted row by row by how well each pair's
    offset agrees with the robust (per-coordinate IRLS) centre of the offsets of the row's
    overlapping boxes, times the share of the best-match mass those boxes hold. Rows are updated
    **in place and in order** (row ``i`` reads rows ``j < i`` already re-weighted), reproduced by
    a ``lax.scan`` over rows; ``sequential=False`` computes every row from the filtered
    similarity instead (the order-free reading of the paper; faster, not what the code does).

    Choices where the code is silent or undefined (the code never meets these cases):
    boxes with zero width or height, and boxes whose ``valid_*`` flag is False, take no part
    (zero rows/columns, not neighbours); when every best match is 0 the share is 0 (MATLAB
    gives ``0/0 = NaN``); a row whose neighbourhood is empty keeps ``init`` as its centre.

    Args:
      boxes_a: ``[P, 4]`` proposals of image A as ``(x1, y1, x2, y2)``, inclusive pixel
        coordinates (Selective Search's and the code's convention), integer or float.
      boxes_b: ``[Q, 4]`` proposals of image B.
      similarity: ``[P, Q]`` float appearance similarity (the code: whitened-HOG dot products;
        offline substitute: cosine of HOG vectors).
      valid_a: optional ``[P]`` bool, False for padding boxes (e.g. ``proposals``' mask).
      valid_b: optional ``[Q]`` bool.
      iterations: Weiszfeld/IRLS iterations (code: 20).
      aspect_threshold: ``t`` of the aspect filter ``1/t < ratio < t`` (code: 2.0); ``None``
        switches it off (the code's ``bDeleteByAspect = false``).
      iou_threshold: neighbours are boxes with IoU strictly above this (code: 0).
      xy_weight: weight of the centre-offset distance in the affinity (code: 0.05).
      scale_weight: weight of the area-ratio distance (code: 0.3).
      init: starting point ``(dx, dy, ds)`` of the IRLS (code: ``ones(3, 1)``).
      eps: the guard added to the element-wise distance (code: MATLAB's ``eps``).
      clamp: clamp the similarity at 0 first (code: ``max(wVoteFull, 0)``).
      inclusive: boxes are inclusive pixel boxes for the IoU test (code: True, ``w = x2-x1+1``);
        False reads ``x2``, ``y2`` as exclusive ends. Centres, aspect and area always use
        ``x2 - x1`` and ``y2 - y1`` as the code's ``box2frame`` does.
      sequential: in-place, in-order row updates as coded (True) or all rows from the filtered
        similarity (False).

    Returns:
      ``[P, Q]`` float32 confidences (the region-to-region similarity of the visual summaries).

    Raises:
      InputShapeError: boxes not ``[P, 4]``/``[Q, 4]``, similarity not ``[P, Q]``, masks of the
        wrong shape.
      InputDTypeError: non-numeric boxes, non-float similarity, non-boolean masks.
      NonFiniteInputError: NaN/Inf in a concrete ``similarity``.
      InvalidArgumentError: an option out of its domain.

    Examples:
      >>> import jax.numpy as jnp
      >>> from xaijax.summaries import lom_confidence
      >>> boxes = jnp.array([[0, 0, 9, 9], [5, 5, 14, 14], [20, 20, 39, 29]])
      >>> sim = jnp.eye(3) + 0.1
      >>> conf = lom_confidence(boxes, boxes, sim)
      >>> conf.shape, int(conf[0].argmax()), int(conf[2].argmax())
      ((3, 3), 0, 2)

    References:
      Ham, Cho, Schmid, Ponce, "Proposal Flow", CVPR 2016 (``algorithms/LOM.m``).
      Godi et al., "Understanding Deep Architectures by Visual Summaries", BMVC 2018.
    """
    opts = _options(
        iterations, aspect_threshold, iou_threshold, xy_weight, scale_weight, init, eps, clamp,
        inclusive, sequential,
    )  # fmt: skip
    a, b, sim, va, vb = _prepare(boxes_a, boxes_b, similarity, valid_a, valid_b, False)
    return _jitted(a, b, sim, va, vb, **opts)


def lom_confidence_batched(
    boxes_a: jax.typing.ArrayLike,
    boxes_b: jax.typing.ArrayLike,
    similarity: jax.typing.ArrayLike,
    *,
    valid_a: jax.typing.ArrayLike | None = None,
    valid_b: jax.typing.ArrayLike | None = None,
    iterations: int = 20,
    aspect_threshold: float | None = 2.0,
    iou_threshold: float = 0.0,
    xy_weight: float = 0.05,
    scale_weight: float = 0.3,
    init: tuple[float, float, float] = (1.0, 1.0, 1.0),
    eps: float = MATLAB_EPS,
    clamp: bool = True,
    inclusive: bool = True,
    sequential: bool = True,
) -> jax.Array:
    """:func:`lom_confidence` over ``N`` image pairs at once (one jitted, vmapped program).

    Args:
      boxes_a: ``[N, P, 4]`` proposals of the first image of each pair, ``(x1, y1, x2, y2)``
        inclusive.
      boxes_b: ``[N, Q, 4]`` proposals of the second image of each pair.
      similarity: ``[N, P, Q]`` float appearance similarities.
      valid_a: optional ``[N, P]`` bool validity of ``boxes_a``.
      valid_b: optional ``[N, Q]`` bool validity of ``boxes_b``.
      iterations, aspect_threshold, iou_threshold, xy_weight, scale_weight, init, eps, clamp,
        inclusive, sequential: as in :func:`lom_confidence`.

    Returns:
      ``[N, P, Q]`` float32 confidences; ``[n]`` equals ``lom_confidence`` of pair ``n``.

    Raises:
      BatchMismatchError: ``boxes_a`` and ``boxes_b`` disagree on ``N``.
      InputShapeError, InputDTypeError, NonFiniteInputError, InvalidArgumentError: as in
        :func:`lom_confidence`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from xaijax.summaries import lom_confidence_batched
      >>> boxes = jnp.array([[[0, 0, 9, 9], [5, 5, 14, 14]]] * 4)
      >>> lom_confidence_batched(boxes, boxes, jnp.ones((4, 2, 2))).shape
      (4, 2, 2)

    References:
      Ham, Cho, Schmid, Ponce, "Proposal Flow", CVPR 2016 (``algorithms/LOM.m``).
    """
    opts = _options(
        iterations, aspect_threshold, iou_threshold, xy_weight, scale_weight, init, eps, clamp,
        inclusive, sequential,
    )  # fmt: skip
    a, b, sim, va, vb = _prepare(boxes_a, boxes_b, similarity, valid_a, valid_b, True)
    return _jitted_batched(a, b, sim, va, vb, **opts)


#: The options of :func:`lom_confidence` (all static under ``jit``).
LOM_OPTIONS = _STATIC = (
    "iterations",
    "aspect_threshold",
    "iou_threshold",
    "xy_weight",
    "scale_weight",
    "init",
    "eps",
    "clamp",
    "inclusive",
    "sequential",
)
_jitted = jax.jit(_lom_single, static_argnames=_STATIC)


def _batched(a, b, sim, va, vb, **opts):
    return jax.vmap(lambda *args: _lom_single(*args, **opts))(a, b, sim, va, vb)


_jitted_batched = jax.jit(_batched, static_argnames=_STATIC)

__all__ = ["MATLAB_EPS", "lom_confidence", "lom_confidence_batched"]
