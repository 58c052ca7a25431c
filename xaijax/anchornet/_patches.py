"""Informative patches: greedy IoU-suppressed top-k per branch, merged by normalised score
(papers.md 2(b).4 and 2(f).5).

Per branch, as the code's loop: locations sorted by score, descending (ties: lower flat index
first); a location is accepted when no box is accepted yet, or when the IoU of its box with
every accepted box is ``<= iou_threshold``; stop at ``topk`` boxes. Boxes use the code's
inclusive coordinates (``x1, y1, x2, y2`` with ``x2 = x1 + rf - 1``; area ``(x2 - x1 + 1)
(y2 - y1 + 1)``). The code's ``if i == 0`` test compares the flat location index to 0, a no-op:
the first candidate is accepted because the accepted list is empty, as here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from xaijax import _validation, errors
from xaijax.typing import Array

#: How :func:`informative_patches` merges branches.
MERGES = ("normalised", "raw")


class Patches(NamedTuple):
    """The informative patches of a batch, ``K = branch * topk`` slots sorted by the merge
    score (normalised or raw, see :func:`informative_patches`; descending, invalid slots last).

    Attributes:
      boxes: ``[B, K, 4]`` inclusive ``(x1, y1, x2, y2)`` input boxes; for 1-D maps ``[B, K, 2]``
        inclusive token spans ``(start, end)``.
      scores: ``[B, K]`` the location's score divided by its branch's maximum (when positive).
      raw_scores: ``[B, K]`` the location's score.
      branch: ``[B, K]`` the branch index of each patch.
      locations: ``[B, K, 2]`` (``[B, K, 1]`` for 1-D) the location ``(i, j)`` in its branch.
      valid: ``[B, K]`` which slots hold a patch.
    """

    boxes: Array
    scores: Array
    raw_scores: Array
    branch: Array
    locations: Array
    valid: Array


def _iou(box: Array, boxes: Array) -> Array:
    """Inclusive-coordinate IoU of ``box [2n]`` with ``boxes [K, 2n]`` (n = 1 or 2 axes)."""
    n = box.shape[-1] // 2
    inter = jnp.ones(boxes.shape[0], jnp.float32)
    area_a = jnp.ones((), jnp.float32)
    area_b = jnp.ones(boxes.shape[0], jnp.float32)
    for a in range(n):
        lo = jnp.maximum(box[a], boxes[:, a])
        hi = jnp.minimum(box[n + a], boxes[:, n + a])
        inter = inter * jnp.maximum(0, hi - lo + 1).astype(jnp.float32)
        area_a = area_a * (box[n + a] - box[a] + 1).astype(jnp.float32)
        area_b = area_b * (boxes[:, n + a] - boxes[:, a] + 1).astype(jnp.float32)
    return inter / (area_a + area_b - inter)


def _select_one(scores: Array, valid: Array, rf, jump, offset, topk: int, thr: float):
    """One branch of one example: ``scores [*grid]`` -> (boxes, locs, raw, ok) of ``topk``."""
    grid = scores.shape
    nd = len(grid)
    flat = jnp.where(valid.reshape(-1), scores.reshape(-1), -jnp.inf)
    order = jnp.argsort(-flat, stable=True)
    coords = jnp.stack(jnp.unravel_index(order, grid), axis=-1).astype(jnp.int32)  # [N, nd]
    # (x, y) order for 2-D boxes: columns first.
    xy = coords[:, ::-1]
    starts = jnp.asarray(offset[::-1], jnp.int32)[None] + xy * jnp.asarray(jump[::-1])[None]
    ends = starts + jnp.asarray(rf[::-1], jnp.int32)[None] - 1
    cand = jnp.concatenate([starts, ends], axis=-1)  # [N, 2 nd]
    cand_ok = jnp.isfinite(flat[order])

    def body(n, carry):
        boxes, locs, raw, count = carry
        box = cand[n]
        used = jnp.arange(topk) < count
        ious = _iou(box, boxes)
        fine = jnp.all(jnp.where(used, ious <= thr, True))
        take = cand_ok[n] & (count < topk) & ((count == 0) | fine)
        slot = jnp.minimum(count, topk - 1)
        boxes = jnp.where(take, boxes.at[slot].set(box), boxes)
        locs = jnp.where(take, locs.at[slot].set(coords[n]), locs)
        raw = jnp.where(take, raw.at[slot].set(flat[order[n]]), raw)
        return boxes, locs, raw, count + take.astype(jnp.int32)

    init = (
        jnp.zeros((topk, 2 * nd), jnp.int32),
        jnp.zeros((topk, nd), jnp.int32),
        jnp.zeros((topk,), scores.dtype),
        jnp.int32(0),
    )
    boxes, locs, raw, count = jax.lax.fori_loop(0, flat.shape[0], body, init)
    return boxes, locs, raw, jnp.arange(topk) < count


def _per_branch(value, num: int, name: str) -> list[tuple[int, ...]]:
    vals = list(value) if isinstance(value, Sequence) else [value] * num
    if len(vals) != num:
        raise errors.InvalidArgumentError(
            f"`{name}` has {len(vals)} entries but the maps have {num} branches: give one per "
            "branch or a single value."
        )
    return [tuple(int(a) for a in (v if isinstance(v, Sequence) else (v,))) for v in vals]


def informative_patches(
    location_maps: Array,
    *,
    rf: int | Sequence[int],
    jump: int | Sequence[int],
    offset: int | Sequence[int] = 0,
    topk: int = 4,
    iou_threshold: float = 0.5,
    valid: Array | None = None,
    merge: str = "normalised",
) -> Patches:
    """Greedy IoU-suppressed top-k patches per branch, merged across branches.

    Args:
      location_maps: ``[B, branch, h, w]`` per-location scores (e.g.
        ``contributions(...).location_map``), or ``[B, branch, L']`` for text.
      rf: receptive field per branch (int, or one per branch; a branch's value may be a tuple
        per axis).
      jump: the jump per branch, likewise.
      offset: the box offset per branch, likewise (0 for unpadded networks).
      topk: patches kept per branch (>= 1).
      iou_threshold: a box is rejected when its IoU with an accepted box exceeds this, in
        ``[0, 1]`` (the code: 0.5 in ``visualize.py``, 0.3 in ``train_downnet_patch.py``).
      valid: ``[B, branch, h, w]`` bool, locations that exist (``Contributions.valid``).
      merge: how branches are merged: ``"normalised"`` (papers.md 2(b): each branch's scores
        divided by that branch's maximum, when positive, so every branch's best patch scores
        1.0 and the branch leaders come first in branch order, a tie) or ``"raw"`` (the
        location scores themselves, e.g. contributions to the logit, compared across branches;
        pick this to choose one patch among branches).

    Returns:
      :class:`Patches` sorted by the merge score (``scores`` holds the normalised scores in
      both modes, ``raw_scores`` the location scores).

    Raises:
      InputShapeError: ``location_maps`` not ``[B, branch, h, w]`` / ``[B, branch, L']``, or
        ``valid`` of another shape.
      InputDTypeError: ``location_maps`` not real numbers.
      NonFiniteInputError: ``location_maps`` hold NaN or Inf (concrete inputs only).
      InvalidArgumentError: a bad ``topk``, ``iou_threshold``, ``rf``/``jump``/``offset`` or
        ``merge``.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> maps = jnp.zeros((1, 1, 3, 3)).at[0, 0, 2, 1].set(1.0)
      >>> p = anchornet.informative_patches(maps, rf=5, jump=2, topk=1)
      >>> p.boxes[0, 0].tolist(), bool(p.valid[0, 0])
      ([2, 4, 6, 8], True)
    """
    maps = _validation.as_array(location_maps, "location_maps")
    if maps.ndim not in (3, 4):
        raise errors.InputShapeError(
            f"`location_maps` must be [B, branch, h, w] (or [B, branch, L'] for text), got "
            f"shape {list(maps.shape)}."
        )
    # real numbers (integers cast to float32), finite when concrete (one boolean from the device)
    maps = _validation.check_real(maps, "location_maps")
    topk = _validation.check_positive_int(topk, "topk")
    if (
        isinstance(iou_threshold, bool)
        or not isinstance(iou_threshold, int | float)
        or not 0.0 <= float(iou_threshold) <= 1.0
    ):
        raise errors.InvalidArgumentError(
            f"`iou_threshold` must be in [0, 1], got {iou_threshold!r} (the code uses 0.5 or 0.3)."
        )
    nb, nd = maps.shape[1], maps.ndim - 2
    rfs, jumps, offs = (
        _per_branch(v, nb, n) for v, n in ((rf, "rf"), (jump, "jump"), (offset, "offset"))
    )
    rfs = [r * nd if len(r) == 1 else r for r in rfs]
    jumps = [j * nd if len(j) == 1 else j for j in jumps]
    offs = [o * nd if len(o) == 1 else o for o in offs]
    for name, vals, low in (("rf", rfs, 1), ("jump", jumps, 1), ("offset", offs, 0)):
        if any(len(v) != nd or min(v) < low for v in vals):
            raise errors.InvalidArgumentError(
                f"`{name}` {vals} must give {nd} value(s) >= {low} per branch."
            )
    mask = jnp.ones(maps.shape, bool) if valid is None else jnp.asarray(valid, bool)
    if mask.shape != maps.shape:
        raise errors.InputShapeError(
            f"`valid` has shape {list(mask.shape)} but `location_maps` {list(maps.shape)}."
        )
    _validation.check_choice(merge, "merge", MERGES)
    thr = float(iou_threshold)
    out = []
    for b in range(nb):
        fn = jax.vmap(lambda s, v, b=b: _select_one(s, v, rfs[b], jumps[b], offs[b], topk, thr))
        out.append(fn(maps[:, b], mask[:, b]))
    boxes = jnp.concatenate([o[0] for o in out], axis=1)
    locs = jnp.concatenate([o[1] for o in out], axis=1)
    raw = jnp.concatenate([o[2] for o in out], axis=1)
    ok = jnp.concatenate([o[3] for o in out], axis=1)
    branch = jnp.repeat(jnp.arange(nb, dtype=jnp.int32), topk)[None].repeat(maps.shape[0], 0)
    masked = jnp.where(mask, maps, -jnp.inf)
    peak = jnp.max(masked.reshape(maps.shape[0], nb, -1), axis=-1)  # [B, branch]
    scale = jnp.where(peak > 0, peak, 1.0)
    norm = raw / jnp.repeat(scale, topk, axis=1)
    key = jnp.where(ok, norm if merge == "normalised" else raw, -jnp.inf)
    order = jnp.argsort(-key, axis=1, stable=True)

    def take(a):
        idx = order.reshape(order.shape + (1,) * (a.ndim - 2))
        return jnp.take_along_axis(a, idx, axis=1)

    return Patches(
        boxes=take(boxes),
        scores=take(jnp.where(ok, norm, 0.0)),
        raw_scores=take(jnp.where(ok, raw, 0.0)),
        branch=take(branch),
        locations=take(locs),
        valid=take(ok),
    )
