"""Object proposals for the visual summaries: a documented substitute for Selective Search.

The visual-summaries code takes 500 Selective Search boxes per image (Uijlings et al., IJCV 2013).
Selective Search over-segments the image (Felzenszwalb's graph segmentation) and greedily merges
the two most similar *adjacent* regions until one is left, every region of the hierarchy being a
box; it does so for several colour spaces and similarity mixes, and ranks boxes by hierarchy level
times a random number. This module keeps the idea and makes it static-shaped, batched and
deterministic, on the accelerator:

* **segments**: the package's SLIC (:func:`xaijax.segmentation.slic`) at several scales
  (``approx_segments``), instead of Felzenszwalb's segmentation;
* **hierarchy**: per scale, ``S - 1`` greedy merges (``lax.fori_loop``) of the adjacent pair with
  the highest similarity ``colour_weight * s_colour + size_weight * s_size + fill_weight * s_fill``
  where ``s_colour = 1 - mean_c |mean_a - mean_b|`` (mean colour of the image rescaled to [0, 1],
  a stand-in for Selective Search's histogram intersection), and ``s_size``, ``s_fill`` are
  Selective Search's size and fill terms; no texture term, one colour space;
* **ranking**: by depth in the hierarchy (the whole image first, then the regions of the last
  merges, ...; the scales interleaved, coarse first), without Selective Search's random factor;
  then multi-scale **sliding boxes** fill up to ``num_proposals``;
* exact duplicates and boxes smaller than ``min_size`` pixels per side are dropped; when fewer
  than ``num_proposals`` remain, ``valid`` flags the padding.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors
from xaijax._validation import (
    check_floating,
    check_positive_int,
    check_positive_number,
    shape_str,
)
from xaijax.segmentation import slic


class Proposals(NamedTuple):
    """Boxes of :func:`proposals`.

    Attributes:
      boxes: ``[B, P, 4]`` int32 ``(x1, y1, x2, y2)``, **inclusive** pixel coordinates (the box
        covers columns ``x1 .. x2`` and rows ``y1 .. y2``: ``image[y1:y2 + 1, x1:x2 + 1]``), as
        Selective Search and Proposal Flow's code. Padding rows are ``(0, 0, 0, 0)``.
      valid: ``[B, P]`` bool; False for padding when fewer than ``P`` distinct boxes exist.
        Valid boxes come first.
    """

    boxes: jax.Array
    valid: jax.Array


def _sliding_boxes(
    height: int, width: int, fractions, aspects, stride: float, min_size: int
) -> np.ndarray:
    """Static multi-scale sliding boxes ``[M, 4]`` (larger windows first, raster order)."""
    out = []
    for f in fractions:
        for a in aspects:
            w = min(width, max(min_size, round(f * width * math.sqrt(a))))
            h = min(height, max(min_size, round(f * height / math.sqrt(a))))
            sx, sy = max(1, round(stride * w)), max(1, round(stride * h))
            xs = list(range(0, width - w + 1, sx))
            ys = list(range(0, height - h + 1, sy))
            if xs[-1] != width - w:
                xs.append(width - w)
            if ys[-1] != height - h:
                ys.append(height - h)
            out += [(x, y, x + w - 1, y + h - 1) for y in ys for x in xs]
    return np.asarray(out, np.int32).reshape(-1, 4)


def _hierarchy(labels, image, num_segments: int, weights):
    """Boxes of one image's segments and of the ``S - 1`` greedy merges, with their depth.

    Returns ``boxes [2S - 1, 4]``, ``valid [2S - 1]`` and ``depth [2S - 1]`` (0 = last merge).
    """
    height, width = labels.shape
    s = num_segments
    n_pix = float(height * width)
    colour_w, size_w, fill_w = weights
    flat = labels.reshape(-1)
    ys, xs = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    size = jax.ops.segment_sum(jnp.ones_like(flat, jnp.float32), flat, s)
    colsum = jax.ops.segment_sum(image.reshape(-1, image.shape[-1]), flat, s)
    big = jnp.int32(2**30)
    box = jnp.stack(
        [
            jax.ops.segment_min(xs, flat, s),
            jax.ops.segment_min(ys, flat, s),
            jax.ops.segment_max(xs, flat, s),
            jax.ops.segment_max(ys, flat, s),
        ],
        axis=1,
    )
    alive = size > 0
    box = jnp.where(alive[:, None], box, 0)
    adj = jnp.zeros((s, s), jnp.bool_)
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        a, b = a.reshape(-1), b.reshape(-1)
        adj = adj.at[a, b].set(True).at[b, a].set(True)
    adj = adj & ~jnp.eye(s, dtype=jnp.bool_)

    def sim_rows(rows, colsum, size, box, alive, adj):
        """Similarity of regions ``rows`` to every region (-inf where not adjacent/alive)."""
        mean = colsum / jnp.maximum(size, 1.0)[:, None]
        d_col = jnp.mean(jnp.abs(mean[rows][:, None, :] - mean[None, :, :]), axis=-1)
        n = size[rows][:, None] + size[None, :]
        lo = jnp.minimum(box[rows][:, None, :2], box[None, :, :2])
        hi = jnp.maximum(box[rows][:, None, 2:], box[None, :, 2:])
        hull = jnp.prod((hi - lo + 1).astype(jnp.float32), axis=-1)
        sim = colour_w * (1.0 - d_col) + size_w * (1.0 - n / n_pix)
        sim = sim + fill_w * (1.0 - (hull - n) / n_pix)
        ok = adj[rows] & alive[rows][:, None] & alive[None, :]
        return jnp.where(ok, sim, -jnp.inf)

    sim = sim_rows(jnp.arange(s), colsum, size, box, alive, adj)
    upper = jnp.triu(jnp.ones((s, s), jnp.bool_), 1)

    def step(t, carry):
        colsum, size, box, alive, adj, sim, out_box, out_ok = carry
        masked = jnp.where(upper, sim, -jnp.inf)
        k = jnp.argmax(masked.reshape(-1))
        a, b = k // s, k % s
        ok = jnp.isfinite(masked.reshape(-1)[k])
        new_box = jnp.concatenate(
            [jnp.minimum(box[a, :2], box[b, :2]), jnp.maximum(box[a, 2:], box[b, 2:])]
        )
        colsum2 = colsum.at[a].add(colsum[b])
        size2 = size.at[a].add(size[b])
        box2 = box.at[a].set(new_box)
        alive2 = alive.at[b].set(False)
        row = (adj[a] | adj[b]).at[a].set(False).at[b].set(False)
        adj2 = adj.at[a].set(row).at[:, a].set(row).at[b].set(False).at[:, b].set(False)
        new_row = sim_rows(a[None], colsum2, size2, box2, alive2, adj2)[0]
        sim2 = sim.at[a].set(new_row).at[:, a].set(new_row)
        sim2 = sim2.at[b].set(-jnp.inf).at[:, b].set(-jnp.inf)
        keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
        carry = (
            keep(colsum2, colsum),
            keep(size2, size),
            keep(box2, box),
            keep(alive2, alive),
            keep(adj2, adj),
            keep(sim2, sim),
            out_box.at[t].set(jnp.where(ok, new_box, 0)),
            out_ok.at[t].set(ok),
        )
        return carry

    init = (
        colsum,
        size,
        box,
        alive,
        adj,
        sim,
        jnp.zeros((s - 1, 4), jnp.int32),
        jnp.zeros((s - 1,), jnp.bool_),
    )
    if s > 1:
        *_, merged_box, merged_ok = jax.lax.fori_loop(0, s - 1, step, init)
    else:
        merged_box, merged_ok = init[-2], init[-1]
    num_merges = jnp.sum(merged_ok)
    t = jnp.arange(s - 1)
    merged_depth = jnp.where(merged_ok, num_merges - 1 - t, big)
    seg_depth = jnp.where(alive, num_merges + jnp.cumsum(alive) - 1, big)
    boxes = jnp.concatenate([merged_box, box.astype(jnp.int32)])
    valid = jnp.concatenate([merged_ok, alive])
    depth = jnp.concatenate([merged_depth, seg_depth])
    del big
    return boxes, valid, depth


def _proposals_core(images, *, num_proposals, scales, compactness, slic_iters, weights, windows,
                    min_size):  # fmt: skip
    images = images.astype(jnp.float32)
    lo = jnp.min(images, axis=(1, 2, 3), keepdims=True)
    hi = jnp.max(images, axis=(1, 2, 3), keepdims=True)
    unit = (images - lo) / jnp.where(hi > lo, hi - lo, 1.0)
    n_scales = len(scales)
    all_boxes, all_valid, all_key = [], [], []
    for idx, approx in enumerate(scales):
        s = 2 * approx
        labels = slic(approx, compactness, num_iters=slic_iters, num_segments=s)(images)
        boxes, valid, depth = jax.vmap(
            functools.partial(_hierarchy, num_segments=s, weights=weights)
        )(labels, unit)
        all_boxes.append(boxes)
        all_valid.append(valid)
        all_key.append(depth.astype(jnp.int32) * n_scales + idx)
    batch = images.shape[0]
    if len(windows):
        m = windows.shape[0]
        all_boxes.append(jnp.broadcast_to(jnp.asarray(windows), (batch, m, 4)))
        all_valid.append(jnp.ones((batch, m), jnp.bool_))
        base = jnp.int32(2**30)
        all_key.append(jnp.broadcast_to(base + jnp.arange(m, dtype=jnp.int32), (batch, m)))
    boxes = jnp.concatenate(all_boxes, axis=1)
    valid = jnp.concatenate(all_valid, axis=1)
    key = jnp.concatenate(all_key, axis=1)
    wide = boxes[..., 2] - boxes[..., 0] + 1
    tall = boxes[..., 3] - boxes[..., 1] + 1
    valid = valid & (wide >= min_size) & (tall >= min_size)

    def select(boxes, valid, key):
        n = boxes.shape[0]
        order = jnp.arange(n)
        same = jnp.all(boxes[:, None, :] == boxes[None, :, :], axis=-1)
        before = (key[None, :] < key[:, None]) | (
            (key[None, :] == key[:, None]) & (order[None, :] < order[:, None])
        )
        dup = jnp.any(same & before & valid[None, :], axis=1)
        valid = valid & ~dup
        sort_key = jnp.where(valid, key, jnp.iinfo(jnp.int32).max)
        perm = jnp.argsort(sort_key, stable=True)[:num_proposals]
        out_valid = valid[perm]
        out_boxes = jnp.where(out_valid[:, None], boxes[perm], 0)
        if num_proposals > n:
            pad = num_proposals - n
            out_boxes = jnp.concatenate([out_boxes, jnp.zeros((pad, 4), out_boxes.dtype)])
            out_valid = jnp.concatenate([out_valid, jnp.zeros((pad,), jnp.bool_)])
        return out_boxes, out_valid

    out_boxes, out_valid = jax.vmap(select)(boxes, valid, key)
    return Proposals(out_boxes.astype(jnp.int32), out_valid)


_STATIC = (
    "num_proposals",
    "scales",
    "compactness",
    "slic_iters",
    "weights",
    "min_size",
    "window_spec",
)


def _core_from_spec(images, *, window_spec, **kwargs):
    height, width = images.shape[1:3]
    fractions, aspects, stride = window_spec
    windows = _sliding_boxes(height, width, fractions, aspects, stride, kwargs["min_size"])
    return _proposals_core(images, windows=windows, **kwargs)


_jitted = jax.jit(_core_from_spec, static_argnames=_STATIC)


def _positive_tuple(value, name: str, *, integer: bool) -> tuple:
    try:
        items = tuple(value)
    except TypeError:
        items = (value,)
    if not items:
        raise errors.InvalidArgumentError(f"`{name}` must hold at least one value, got {value!r}.")
    check = check_positive_int if integer else check_positive_number
    return tuple(check(v, f"{name}[{i}]") for i, v in enumerate(items))


def proposals(
    images: jax.typing.ArrayLike,
    *,
    num_proposals: int = 500,
    approx_segments: tuple[int, ...] = (25, 50, 100),
    compactness: float = 10.0,
    slic_iters: int = 10,
    colour_weight: float = 1.0,
    size_weight: float = 1.0,
    fill_weight: float = 1.0,
    window_fractions: tuple[float, ...] = (1.0, 0.75, 0.5, 0.375, 0.25),
    window_aspects: tuple[float, ...] = (1.0, 2.0, 0.5),
    window_stride: float = 1 / 3,
    min_size: int = 4,
) -> Proposals:
    """Region proposals: hierarchical groupings of SLIC superpixels plus sliding boxes.

    A deterministic, static-shaped substitute for Selective Search (see the module docstring):
    for each SLIC scale, the boxes of the segments and of the ``S - 1`` greedy merges of the most
    similar adjacent regions, ranked by depth in the hierarchy (the whole image first; scales
    interleaved, coarse first), then multi-scale sliding boxes, exact duplicates and boxes
    narrower than ``min_size`` removed, the first ``num_proposals`` kept.

    Cost: per scale of ``S = 2 * approx_segments`` label slots, ``S - 1`` sequential merge steps of
    ``O(S^2)`` each, and a ``O(T^2)`` duplicate test over the ``T ~ sum(2S) + windows``
    candidates; vmapped over the batch.

    Args:
      images: ``[B, H, W, C]`` float images (any range; each is rescaled to [0, 1] for the
        colour similarity; SLIC converts RGB to Lab itself).
      num_proposals: ``P``, boxes per image (the code: 500).
      approx_segments: SLIC's ``approx_segments`` for each scale (label bound ``2 *`` that).
      compactness: SLIC's compactness.
      slic_iters: SLIC's k-means iterations.
      colour_weight: weight of ``1 - mean |colour_a - colour_b|`` in the merge similarity.
      size_weight: weight of Selective Search's size term ``1 - (n_a + n_b) / (H W)``.
      fill_weight: weight of Selective Search's fill term
        ``1 - (|hull(a, b)| - n_a - n_b) / (H W)`` (``hull`` = the two regions' common box).
      window_fractions: sliding-box sides as fractions of the image side (at aspect 1).
      window_aspects: sliding-box aspect ratios ``width / height`` (the area is kept).
      window_stride: sliding-box stride as a fraction of the box side.
      min_size: smallest width and height, in pixels, of a proposal.

    Returns:
      :class:`Proposals`: ``boxes [B, P, 4]`` int32 ``(x1, y1, x2, y2)`` inclusive, and
      ``valid [B, P]`` bool (valid boxes first).

    Raises:
      InputShapeError, InputDTypeError, NonFiniteInputError: ``images`` is not a finite float
        ``[B, H, W, C]`` batch, or is smaller than ``min_size`` pixels per side.
      InvalidArgumentError: an option out of its domain.

    Examples:
      >>> import jax.numpy as jnp
      >>> from xaijax.summaries import proposals
      >>> x = jnp.full((2, 32, 32, 3), 0.5).at[:, 8:20, 4:16].set(jnp.array([1.0, 0.0, 0.0]))
      >>> p = proposals(x, num_proposals=50, approx_segments=(9, 16))
      >>> p.boxes.shape, p.valid.shape, p.boxes.dtype
      ((2, 50, 4), (2, 50), dtype('int32'))
      >>> bool(((p.boxes == jnp.array([[[4, 8, 15, 19]]])).all(-1) & p.valid).any(-1).all())
      True

    References:
      Uijlings, van de Sande, Gevers, Smeulders, "Selective Search for Object Recognition",
      IJCV 2013 (what this substitutes).
      Achanta et al., "SLIC Superpixels Compared to State-of-the-art Superpixel Methods",
      TPAMI 2012.
      Ham, Cho, Schmid, Ponce, "Proposal Flow", CVPR 2016 (500 Selective Search boxes per image).
    """
    num_proposals = check_positive_int(num_proposals, "num_proposals")
    scales = _positive_tuple(approx_segments, "approx_segments", integer=True)
    compactness = check_positive_number(compactness, "compactness")
    slic_iters = check_positive_int(slic_iters, "slic_iters")
    weights = tuple(
        check_positive_number(v, n, allow_zero=True)
        for v, n in (
            (colour_weight, "colour_weight"),
            (size_weight, "size_weight"),
            (fill_weight, "fill_weight"),
        )
    )
    fractions = _positive_tuple(window_fractions, "window_fractions", integer=False)
    if any(f > 1 for f in fractions):
        raise errors.InvalidArgumentError(
            f"`window_fractions` must lie in (0, 1] (fractions of the image side), got "
            f"{window_fractions!r}."
        )
    aspects = _positive_tuple(window_aspects, "window_aspects", integer=False)
    stride = check_positive_number(window_stride, "window_stride")
    min_size = check_positive_int(min_size, "min_size")
    x = check_floating(images, "images", rank=4, layout="[B, H, W, C]")
    if x.shape[1] < min_size or x.shape[2] < min_size or x.shape[3] == 0:
        raise errors.InputShapeError(
            f"`images` of shape {shape_str(x.shape)} is too small: proposals need H, W >= "
            f"min_size={min_size} and C >= 1. Use larger images or a smaller `min_size`."
        )
    return _jitted(
        x,
        num_proposals=num_proposals,
        scales=scales,
        compactness=compactness,
        slic_iters=slic_iters,
        weights=weights,
        min_size=min_size,
        window_spec=(fractions, aspects, stride),
    )


__all__ = ["Proposals", "proposals"]
