"""The visual summaries of one class (Godi et al., BMVC 2018, papers.md 4(b) Stage C, steps 1-7).

:func:`summarize` assembles the building blocks of :mod:`xaijax.summaries`:

1. :func:`~xaijax.summaries.proposals` per image (``num_proposals`` boxes, inclusive ends);
2. HOG descriptors of every box (:func:`~xaijax.summaries.box_descriptors`), L2-normalised
   once, so that the appearance similarity of a pair of images is one clamped matrix product
   (:func:`~xaijax.summaries.cosine_similarity`, the offline substitute for whitened HOG);
3. Proposal Flow LOM confidences (:func:`~xaijax.summaries.lom_confidence_batched`) for every
   unordered pair ``i <= j`` (``C_ji = C_ij^T``). The ``N (N + 1) / 2`` pairs run in jitted
   chunks of ``chunk_size`` pairs; the pairs ``i < j`` are scheduled as the rounds of a
   round-robin tournament (every image at most once per round), so each chunk folds its
   confidences into two small running buffers with unique scatter indices and nothing of size
   ``N^2 P^2`` is ever stored: the ``top_similar`` largest confidences of every box to the boxes
   of the *other* images (``[N, P, top_similar]``, for step 4) and the blocks between salient
   boxes (``[N, N, V, V]``, ``V`` = the largest number of salient boxes of one image, for step
   5);
4. salient ("valid") proposals: more than ``valid_threshold`` of the box's pixels have
   ``heat > mask_threshold`` (the code binarises the saved heat mask at 128 of 255);
5. greedy redundancy pruning per image, non-maximum-suppression style: boxes are visited by
   decreasing score (the mean of their ``top_similar`` largest confidences to the other images'
   proposals; ties by proposal order) and a box is kept unless it is redundant with a box
   already kept: ``|b1 & b2| / min(|b1|, |b2|) >= same_region`` and
   ``max(|b1|, |b2|) / min(|b1|, |b2|) < scale_factor`` (inclusive pixel areas);
6. the similarity matrix over all kept boxes (same-image blocks included), shifted to
   ``S - max(S)`` with preference ``preference_factor * median`` (:func:`summary_preference`),
   and :func:`~xaijax.summaries.affinity_propagation`;
7. per cluster: the exemplar first, then the cluster's boxes of the *other* images sorted by
   their similarity ``S[member, exemplar]``, the most similar box of each image only, cut to
   ``top_members`` boxes in all (exemplar included);
8. the SSIM quality filter, with papers.md 4(f).6's offline alignment: every member box and the
   exemplar box are cropped and resized to one ``ssim_size`` (the member's box scaled onto the
   exemplar's), converted to grey (ITU-R BT.601 weights, MATLAB's ``rgb2gray``), and compared
   pairwise (:func:`~xaijax.summaries.pairwise_ssim`); ``med_c`` = median of the off-diagonal
   values of cluster ``c`` (clusters with one member have none and are rejected),
   ``med* = median_c med_c``; a cluster is accepted iff ``med_c >= cluster_ssim * med*``, and in
   an accepted cluster a member (the exemplar too) is kept iff the fraction of its SSIM values to
   the other members that lie below ``med*`` is ``< member_ssim``.

Cost and memory. The pair step dominates: ``N (N + 1) / 2`` LOM calls of ``P x P`` (each a
``lax.scan`` over ``P`` rows, ``iterations`` IRLS steps per row). The device holds
``chunk_size`` pairs of ``~10 P^2`` floats at a time, plus the two buffers above
(``4 N P top_similar`` and ``4 N^2 V^2`` bytes: for ``N = 100, P = 500, V = 100``, 20 MB and
400 MB). Affinity propagation is ``O(K^2)`` per iteration on the ``K`` kept boxes and is
compiled once per ``K``. Measured on a shared 2-core CPU VM, 64 x 64 images, ``P = 500``
(first call, compilation included; planted-pattern images, ~21 salient boxes per image):
``N = 10``: 22 s (LOM 7 s); ``N = 30``: 66 s (LOM 42 s, 46 s warm in all); ``N = 100``: 419 s
(proposals 23, descriptors 15, LOM 372, pruning 0.4, affinity propagation 6 for ``K = 689``,
filter 2): about 75-90 ms per image pair, so the pair step bounds ``N`` to a few hundred on
a CPU; memory is not the limit (``V ~ 25`` here).
"""

from __future__ import annotations

import functools
import inspect
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _validation as v
from xaijax import errors
from xaijax.summaries._affinity import affinity_propagation, summary_preference
from xaijax.summaries._flow import LOM_OPTIONS, _lom_single, _options, lom_confidence
from xaijax.summaries._hog import box_descriptors, crop_boxes
from xaijax.summaries._proposals import proposals
from xaijax.summaries._ssim import pairwise_ssim

GREY_WEIGHTS = (0.2989, 0.5870, 0.1140)
_LOM_NAMES = LOM_OPTIONS


class Summary(NamedTuple):
    """One cluster of :func:`summarize` (host values; ``M <= top_members`` members).

    Attributes:
      image: index of the exemplar's image.
      box: ``[4]`` int32 exemplar box ``(x1, y1, x2, y2)``, inclusive.
      member_images: ``[M]`` int32 image of each member (the exemplar first, one box per image).
      member_boxes: ``[M, 4]`` int32 member boxes, inclusive.
      member_similarity: ``[M]`` float32 ``S[member, exemplar]`` (unshifted LOM confidence),
        decreasing after the exemplar.
      member_ssim: ``[M, M]`` float32 SSIM between the aligned grey crops of the members.
      member_kept: ``[M]`` bool, members kept by the quality filter (all False when the cluster
        is rejected).
      median_ssim: ``med_c``, the median off-diagonal SSIM (NaN for a one-member cluster).
      accepted: whether the cluster passed the quality filter (a summary).
    """

    image: int
    box: np.ndarray
    member_images: np.ndarray
    member_boxes: np.ndarray
    member_similarity: np.ndarray
    member_ssim: np.ndarray
    member_kept: np.ndarray
    median_ssim: float
    accepted: bool


class SummaryResult(NamedTuple):
    """What :func:`summarize` returns for ``N`` images and ``P`` proposals (host values).

    Attributes:
      clusters: one :class:`Summary` per affinity-propagation cluster, in exemplar order,
        accepted or not (``accepted`` lists the summaries).
      reference_ssim: ``med*``, the median over clusters of ``med_c`` (NaN without clusters).
      boxes: ``[N, P, 4]`` int32 proposals, inclusive.
      proposal_valid: ``[N, P]`` bool, False for padding proposals.
      salient: ``[N, P]`` bool, the valid proposals of step 4 (more than ``valid_threshold``
        salient pixels).
      score: ``[N, P]`` float32, the pruning score (mean of the ``top_similar`` largest
        confidences to the other images' proposals); NaN where not computed.
      kept: ``[N, P]`` bool, the salient boxes that survive redundancy pruning.
      kept_image: ``[K]`` int32 image of each kept box (the points of the clustering).
      kept_index: ``[K]`` int32 proposal index of each kept box.
      similarity: ``[K, K]`` float32 unshifted similarity matrix over the kept boxes.
      labels: ``[K]`` int32 cluster of each kept box (-1 without clusters).
      converged: whether affinity propagation converged.
      seconds: wall-clock seconds per step (``proposals``, ``descriptors``, ``lom``, ``prune``,
        ``affinity``, ``filter``), each measured after the step's results were on the host.
    """

    clusters: tuple[Summary, ...]
    reference_ssim: float
    boxes: np.ndarray
    proposal_valid: np.ndarray
    salient: np.ndarray
    score: np.ndarray
    kept: np.ndarray
    kept_image: np.ndarray
    kept_index: np.ndarray
    similarity: np.ndarray
    labels: np.ndarray
    converged: bool
    seconds: dict[str, float]

    @property
    def accepted(self) -> tuple[Summary, ...]:
        """The clusters accepted by the quality filter: the class's visual summaries."""
        return tuple(c for c in self.clusters if c.accepted)


# ------------------------------------------------------------------------------------------
# Steps as small pure functions (tested against NumPy ports).


def _salient_fraction(boxes: jax.Array, heat: jax.Array, threshold: float) -> jax.Array:
    """Share of pixels with ``heat > threshold`` in every inclusive box: ``[N, P]``."""
    binary = (heat > threshold).astype(jnp.int32)
    ii = jnp.pad(jnp.cumsum(jnp.cumsum(binary, axis=1), axis=2), ((0, 0), (1, 0), (1, 0)))
    x1, y1, x2, y2 = (boxes[..., k] for k in range(4))

    def at(r, c):
        return jax.vmap(lambda t, rr, cc: t[rr, cc])(ii, r, c)

    inside = at(y2 + 1, x2 + 1) - at(y1, x2 + 1) - at(y2 + 1, x1) + at(y1, x1)
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    return inside.astype(jnp.float32) / jnp.maximum(area, 1).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("mask_threshold", "valid_threshold"))
def _salient_proposals(boxes, valid, heat, *, mask_threshold, valid_threshold):
    """Step 4: valid boxes holding more than ``valid_threshold`` salient pixels."""
    return valid & (_salient_fraction(boxes, heat, mask_threshold) > valid_threshold)


def _redundant(boxes: jax.Array, same_region: float, scale_factor: float) -> jax.Array:
    """``[V, V]`` redundancy of boxes ``[V, 4]`` (overlap on the smaller; similar area)."""
    b = boxes.astype(jnp.float32)
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = jnp.minimum(b[:, None, 2], b[None, :, 2]) - jnp.maximum(b[:, None, 0], b[None, :, 0]) + 1
    ih = jnp.minimum(b[:, None, 3], b[None, :, 3]) - jnp.maximum(b[:, None, 1], b[None, :, 1]) + 1
    inter = jnp.maximum(iw, 0.0) * jnp.maximum(ih, 0.0)
    small = jnp.minimum(area[:, None], area[None, :])
    large = jnp.maximum(area[:, None], area[None, :])
    return (inter / small >= same_region) & (large / small < scale_factor)


def _prune_one(boxes, score, valid, *, same_region: float, scale_factor: float) -> jax.Array:
    """Step 5 for one image: greedy NMS-style pruning; ``[V]`` bool kept flags."""
    red = _redundant(boxes, same_region, scale_factor)
    order = jnp.argsort(jnp.where(valid, -score, jnp.inf), stable=True)

    def body(t, kept):
        i = order[t]
        return kept.at[i].set(valid[i] & ~jnp.any(red[i] & kept))

    return jax.lax.fori_loop(0, boxes.shape[0], body, jnp.zeros(boxes.shape[0], jnp.bool_))


@functools.partial(jax.jit, static_argnames=("same_region", "scale_factor"))
def _prune(boxes, score, valid, *, same_region, scale_factor):
    """:func:`_prune_one` over images: ``[N, V, 4], [N, V], [N, V] -> [N, V]``."""
    fn = functools.partial(_prune_one, same_region=same_region, scale_factor=scale_factor)
    return jax.vmap(fn)(boxes, score, valid)


def _members(
    similarity: np.ndarray,
    labels: np.ndarray,
    exemplars: np.ndarray,
    image_of: np.ndarray,
    top_members: int,
) -> list[np.ndarray]:
    """Step 7 (host): per exemplar, the member points (exemplar first, one per image, top-k).

    Args:
      similarity: ``[K, K]`` similarities ``S[member, exemplar]``.
      labels: ``[K]`` cluster of each point.
      exemplars: ``[C]`` exemplar point of cluster ``c`` (``labels[exemplars[c]] == c``).
      image_of: ``[K]`` image of each point.
      top_members: most points per cluster, exemplar included.
    """
    out = []
    for c, e in enumerate(exemplars):
        pts = np.flatnonzero((labels == c) & (image_of != image_of[e]))
        pts = pts[np.argsort(-similarity[pts, e], kind="stable")]
        _, first = np.unique(image_of[pts], return_index=True)
        pts = pts[np.sort(first)]
        out.append(np.concatenate([[e], pts])[:top_members].astype(np.int64))
    return out


def _quality(
    ssim: np.ndarray, count: np.ndarray, cluster_ssim: float, member_ssim: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Step 8's rules (host) on ``[C, M, M]`` SSIM matrices whose first ``count[c]`` rows count.

    Returns ``(med_c [C], accepted [C], kept [C, M], med*)``.
    """
    n_clusters, m = ssim.shape[0], ssim.shape[1]
    med = np.full(n_clusters, np.nan)
    for c in range(n_clusters):
        n = int(count[c])
        if n >= 2:
            block = np.asarray(ssim[c, :n, :n], np.float64)
            med[c] = np.median(block[~np.eye(n, dtype=bool)])
    finite = np.isfinite(med)
    ref = float(np.median(med[finite])) if finite.any() else float("nan")
    accepted = finite & (np.where(finite, med, -np.inf) >= cluster_ssim * ref)
    kept = np.zeros((n_clusters, m), bool)
    for c in np.flatnonzero(accepted):
        n = int(count[c])
        block = np.asarray(ssim[c, :n, :n], np.float64)
        below = (block < ref) & ~np.eye(n, dtype=bool)
        kept[c, :n] = below.sum(axis=1) / (n - 1) < member_ssim
    return med, accepted, kept, ref


# ------------------------------------------------------------------------------------------
# The pair step.


def _schedule(n: int) -> list[list[tuple[int, int]]]:
    """Rounds of pairs: first ``(i, i)`` for all ``i``, then a round-robin over ``i < j``.

    Every image occurs at most once per round (the circle method; a bye when ``n`` is odd).
    """
    rounds = [[(i, i) for i in range(n)]]
    m = n + (n % 2)
    ring = list(range(m))
    for _ in range(m - 1):
        pairs = []
        for k in range(m // 2):
            a, b = ring[k], ring[m - 1 - k]
            if a < n and b < n:
                pairs.append((min(a, b), max(a, b)))
        rounds.append(pairs)
        ring = [ring[0], ring[-1], *ring[1:-1]]
    return [r for r in rounds if r]


@functools.partial(jax.jit, static_argnames=("lom",), donate_argnames=("top", "blocks"))
def _pair_chunk(unit, boxes, pvalid, vidx, top, blocks, ia, ib, merge_a, merge_b, tw_a, tw_b,
                *, lom):  # fmt: skip
    """LOM of ``c`` image pairs, folded into the running top-k and the salient blocks."""
    sim = jnp.einsum("cpd,cqd->cpq", unit[ia], unit[ib], precision=jax.lax.Precision.HIGHEST)
    sim = jnp.maximum(sim, 0.0)
    conf = jax.vmap(functools.partial(_lom_single, **dict(lom)))(
        boxes[ia], boxes[ib], sim, pvalid[ia], pvalid[ib]
    )
    k = top.shape[-1]
    kk = min(k, conf.shape[-1])

    def fold(top, idx, c, col_valid):
        cand = jax.lax.top_k(jnp.where(col_valid[:, None, :], c, -jnp.inf), kk)[0]
        old = top.at[idx].get(mode="fill", fill_value=-jnp.inf)
        new = jax.lax.top_k(jnp.concatenate([old, cand], axis=-1), k)[0]
        return top.at[idx].set(new, mode="drop")

    top = fold(top, merge_a, conf, pvalid[ib])
    top = fold(top, merge_b, jnp.swapaxes(conf, 1, 2), pvalid[ia])
    rows = jnp.take_along_axis(conf, vidx[ia][:, :, None], axis=1)
    blk = jnp.take_along_axis(rows, vidx[ib][:, None, :], axis=2)  # [c, V, V]
    blocks = blocks.at[ia, ib].set(blk)
    blocks = blocks.at[tw_a, tw_b].set(jnp.swapaxes(blk, 1, 2), mode="drop")
    return top, blocks


def _chunks(n: int, chunk_size: int) -> tuple[list[list[tuple[int, int]]], int]:
    """The rounds of :func:`_schedule` cut into chunks of one size ``c <= chunk_size``.

    ``c`` minimises the padded slots (ties: fewer chunks), e.g. rounds of 50 pairs in chunks
    of 10 rather than 16 (4 x 16 = 64 slots). Short chunks are padded by the caller.
    """
    rounds = _schedule(n)
    longest = max(len(r) for r in rounds)
    top = min(chunk_size, longest)

    def slots(c):
        return sum(-(-len(r) // c) * c for r in rounds) + 2 * sum(-(-len(r) // c) for r in rounds)

    c = min(range(max(1, top // 2), top + 1), key=lambda c: (slots(c), -c))
    return [r[s : s + c] for r in rounds for s in range(0, len(r), c)], c


def _pair_step(unit, boxes, pvalid, vidx, *, top_similar, chunk_size, lom):
    n, p = boxes.shape[:2]
    k = max(1, min(top_similar, (n - 1) * p))
    top = jnp.full((n, p, k), -jnp.inf, jnp.float32)
    vmax = vidx.shape[1]
    blocks = jnp.zeros((n, n, vmax, vmax), jnp.float32)
    lom_key = tuple(sorted(lom.items()))
    chunks, c = _chunks(n, chunk_size)
    for chunk in chunks:
        pad = c - len(chunk)
        ia = np.array([a for a, _ in chunk] + [chunk[0][0]] * pad, np.int32)
        ib = np.array([b for _, b in chunk] + [chunk[0][1]] * pad, np.int32)
        off = (np.arange(c) < len(chunk)) & (ia != ib)
        merge_a = np.where(off, ia, n).astype(np.int32)
        merge_b = np.where(off, ib, n).astype(np.int32)
        top, blocks = _pair_chunk(
            unit, boxes, pvalid, vidx, top, blocks, ia, ib, merge_a, merge_b, merge_b,
            merge_a, lom=lom_key,
        )  # fmt: skip
    finite = jnp.isfinite(top)
    count = jnp.sum(finite, axis=-1)
    score = jnp.sum(jnp.where(finite, top, 0.0), axis=-1) / jnp.maximum(count, 1)
    return jnp.where(count > 0, score, 0.0), blocks


# ------------------------------------------------------------------------------------------
# Checks.


def _check_inputs(images, heat, min_images: int = 2) -> tuple[jax.Array, jax.Array]:
    images = v.as_array(images, "images")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise errors.InputShapeError(
            f"`images` must be a batch of RGB images [N, H, W, 3] of one class, got shape "
            f"{v._shape_str(images.shape)}. Stack the class's images along a first axis."
        )
    images = v.check_floating(images, "images", rank=4, layout="[N, H, W, 3]")
    n, h, w = images.shape[:3]
    if n < min_images:
        raise errors.InputShapeError(
            f"`images` holds {n} image; summaries cluster regions across images of a class, so "
            "pass at least 2 (the code's default is 10, the paper suggests 100)."
        )
    if h < 8 or w < 8:
        raise errors.InputShapeError(
            f"`images` of {h} x {w} pixels are too small for proposals and HOG: use at least "
            "8 x 8 (the paper uses 224 x 224)."
        )
    heat = v.as_array(heat, "heat")
    if heat.ndim != 3 or tuple(heat.shape) != (n, h, w):
        raise errors.InputShapeError(
            f"`heat` must hold one heat map per image, [N, H, W] = [{n}, {h}, {w}], got "
            f"{v._shape_str(heat.shape)}. Pass the crisp masks' `.map` (bright = salient); "
            "for a [N, H, W, 1] array use `heat[..., 0]`."
        )
    heat = v.check_floating(heat, "heat", rank=3, layout="[N, H, W]")
    lo = jnp.minimum(jnp.min(images), jnp.min(heat))
    hi = jnp.maximum(jnp.max(images), jnp.max(heat))
    if bool((lo < 0) | (hi > 1)):
        raise errors.InvalidArgumentError(
            f"`images` and `heat` must lie in [0, 1], got values in [{float(lo):.3g}, "
            f"{float(hi):.3g}]. Divide 8-bit images by 255; pass heat maps `h` as the mask "
            "explainers save them (in [0, 1])."
        )
    return images, heat


def _check_options_dict(options, name: str, fn: Callable, exclude: tuple[str, ...]) -> dict:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise errors.InvalidArgumentError(
            f"`{name}` must be a dict of keyword arguments of `{fn.__name__}`, got {options!r}."
        )
    allowed = set(inspect.signature(fn).parameters) - set(exclude)
    allowed = {
        a for a in allowed if inspect.signature(fn).parameters[a].kind.name == "KEYWORD_ONLY"
    }
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise errors.InvalidArgumentError(
            f"`{name}` has unknown keys {unknown}; allowed: {sorted(allowed)}."
        )
    return dict(options)


def _check_threshold(value, name: str) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    if not ok or not 0 <= value < 1:
        raise errors.InvalidArgumentError(f"`{name}` must be a number in [0, 1), got {value!r}.")
    return float(value)


def _empty(boxes, pvalid, salient, seconds, why: str) -> SummaryResult:
    warnings.warn(why, RuntimeWarning, stacklevel=3)
    n, p = pvalid.shape
    return SummaryResult(
        clusters=(),
        reference_ssim=float("nan"),
        boxes=boxes,
        proposal_valid=pvalid,
        salient=salient,
        score=np.full((n, p), np.nan, np.float32),
        kept=np.zeros((n, p), bool),
        kept_image=np.zeros(0, np.int32),
        kept_index=np.zeros(0, np.int32),
        similarity=np.zeros((0, 0), np.float32),
        labels=np.zeros(0, np.int32),
        converged=False,
        seconds=seconds,
    )


def summarize(
    images: jax.typing.ArrayLike,
    heat: jax.typing.ArrayLike,
    *,
    num_proposals: int = 500,
    mask_threshold: float = 128 / 255,
    valid_threshold: float = 0.75,
    same_region: float = 0.5,
    scale_factor: float = 2.0,
    top_similar: int = 100,
    preference_factor: float = 1.3,
    damping: float = 0.9,
    max_iter: int = 1000,
    convergence_iter: int = 100,
    top_members: int = 10,
    cluster_ssim: float = 0.9,
    member_ssim: float = 0.6,
    ssim_size: int | tuple[int, int] = (32, 32),
    chunk_size: int = 16,
    descriptor_chunk_size: int = 4,
    proposal_options: Mapping[str, Any] | None = None,
    descriptor_options: Mapping[str, Any] | None = None,
    lom_options: Mapping[str, Any] | None = None,
    ssim_options: Mapping[str, Any] | None = None,
) -> SummaryResult:
    """The visual summaries of one class from its images and their crisp heat masks.

    Stage C of Godi et al. (papers.md 4(b), steps 1-7; see the module docstring for each step
    and the choices made where the code is silent): proposals, HOG descriptors, Proposal Flow
    LOM confidences between every pair of images, salient proposals, redundancy pruning,
    affinity propagation over the kept boxes, members (one per image, top ``top_members``) and
    the SSIM quality filter with the box-pair alignment of papers.md 4(f).6. Defaults are the
    code's constants. Device work is jitted and batched; the LOM pairs run ``chunk_size`` at a
    time (cost ``~N^2 / 2`` LOM calls: see the module notes for memory and how far ``N`` goes).

    Args:
      images: ``[N, H, W, 3]`` float RGB images in ``[0, 1]``, ``N >= 2``, of one class.
      heat: ``[N, H, W]`` heat masks ``h`` in ``[0, 1]`` (bright = salient), e.g.
        ``xaijax.masks.crisp_mask(...)(params, images).map``.
      num_proposals: boxes per image (the code: 500 Selective Search boxes).
      mask_threshold: a pixel is salient iff ``heat > mask_threshold`` (the code: 128 / 255).
      valid_threshold: a box is valid iff more than this share of its pixels is salient
        (``valid_rp_thresh = 0.75``).
      same_region: overlap ``|b1 & b2| / min(|b1|, |b2|)`` from which boxes are redundant
        (``same_region_thresh = 0.5``).
      scale_factor: redundant boxes also have ``max(area) / min(area) <`` this
        (``scale_factor_thresh = 2.0``).
      top_similar: the pruning score is the mean of a box's this many largest confidences to
        the other images' proposals (100).
      preference_factor: affinity propagation's preference, times the median of the shifted
        similarities (1.3).
      damping, max_iter, convergence_iter: affinity propagation's (0.9, 1000, 100).
      top_members: most members per summary, the exemplar included (``topk = 10``).
      cluster_ssim: a cluster is accepted iff ``med_c >= cluster_ssim * med*`` (0.9).
      member_ssim: a member is kept iff the share of its SSIM values below ``med*`` is under
        this (0.6).
      ssim_size: ``(rows, cols)`` the aligned crops are resized to for SSIM (the code resizes
        to the exemplar's crop; a fixed size keeps one compiled program).
      chunk_size: image pairs per jitted LOM batch (bounds device memory).
      descriptor_chunk_size: images per batch of HOG descriptors.
      proposal_options: keyword arguments for :func:`~xaijax.summaries.proposals`.
      descriptor_options: keyword arguments for :func:`~xaijax.summaries.box_descriptors`.
      lom_options: keyword arguments for :func:`~xaijax.summaries.lom_confidence`.
      ssim_options: keyword arguments for :func:`~xaijax.summaries.pairwise_ssim`.

    Returns:
      :class:`SummaryResult`: every cluster (:class:`Summary`: exemplar, members with their
      similarity and SSIM, accepted or not), ``.accepted`` the summaries, and the intermediate
      proposals, salient and kept flags, similarity matrix, labels and per-step seconds. With
      no salient proposal in any image there is no cluster and a ``RuntimeWarning`` says why.

    Raises:
      InputShapeError: ``images`` not ``[N, H, W, 3]`` with ``N >= 2``, or ``heat`` not
        ``[N, H, W]``.
      InputDTypeError: non-float ``images`` or ``heat``.
      NonFiniteInputError: NaN or Inf in them.
      InvalidArgumentError: values outside ``[0, 1]``, or an option out of its domain.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax.summaries import summarize
      >>> x = jax.random.uniform(jax.random.key(0), (3, 32, 32, 3))
      >>> heat = jnp.zeros((3, 32, 32)).at[:, 8:24, 8:24].set(1.0)
      >>> result = summarize(x, heat, num_proposals=40, ssim_size=16,
      ...                    proposal_options=dict(approx_segments=(9,)))
      >>> result.boxes.shape, bool(result.salient.any())
      ((3, 40, 4), True)

    References:
      Godi, Carletti, Aghaei, Giuliari, Cristani, "Understanding Deep Architectures by Visual
      Summaries", BMVC 2018 (``compute_clusters.m``).
      Ham, Cho, Schmid, Ponce, "Proposal Flow", CVPR 2016.
      Frey & Dueck, "Clustering by passing messages between data points", Science 2007.
    """
    # Options first, then the inputs: nothing runs before every check has passed.
    num_proposals = v.check_positive_int(num_proposals, "num_proposals")
    mask_threshold = _check_threshold(mask_threshold, "mask_threshold")
    valid_threshold = _check_threshold(valid_threshold, "valid_threshold")
    same_region = v.check_fraction(same_region, "same_region")
    scale_factor = v.check_positive_number(scale_factor, "scale_factor")
    if scale_factor <= 1:
        raise errors.InvalidArgumentError(
            f"`scale_factor` must be > 1 (redundant boxes have an area ratio below it), got "
            f"{scale_factor!r}."
        )
    top_similar = v.check_positive_int(top_similar, "top_similar")
    preference_factor = v.check_number(preference_factor, "preference_factor")
    if not (isinstance(damping, int | float) and not isinstance(damping, bool)) or not (
        0.5 <= damping < 1
    ):
        raise errors.InvalidArgumentError(
            f"`damping` must be a number in [0.5, 1), got {damping!r}."
        )
    max_iter = v.check_positive_int(max_iter, "max_iter")
    convergence_iter = v.check_positive_int(convergence_iter, "convergence_iter")
    top_members = v.check_positive_int(top_members, "top_members")
    if top_members < 2:
        raise errors.InvalidArgumentError(
            f"`top_members` must be >= 2 (the exemplar and at least one other image), got "
            f"{top_members}."
        )
    cluster_ssim = v.check_positive_number(cluster_ssim, "cluster_ssim", allow_zero=True)
    member_ssim = v.check_fraction(member_ssim, "member_ssim")
    if isinstance(ssim_size, int | np.integer) and not isinstance(ssim_size, bool):
        ssim_size = (int(ssim_size), int(ssim_size))
    try:
        ssim_size = tuple(v.check_positive_int(s, "ssim_size") for s in ssim_size)
    except TypeError:
        ssim_size = ()
    if len(ssim_size) != 2:
        raise errors.InvalidArgumentError(
            "`ssim_size` must be a positive int or a pair (rows, cols) of them."
        )
    chunk_size = v.check_positive_int(chunk_size, "chunk_size")
    descriptor_chunk_size = v.check_positive_int(descriptor_chunk_size, "descriptor_chunk_size")
    popts = _check_options_dict(proposal_options, "proposal_options", proposals,
                                ("num_proposals",))  # fmt: skip
    dopts = _check_options_dict(descriptor_options, "descriptor_options", box_descriptors,
                                ("chunk_size",))  # fmt: skip
    lopts = _check_options_dict(lom_options, "lom_options", lom_confidence,
                                ("valid_a", "valid_b"))  # fmt: skip
    sopts = _check_options_dict(ssim_options, "ssim_options", pairwise_ssim, ("chunk_size",))
    defaults = inspect.signature(lom_confidence).parameters
    lom = _options(*(lopts.get(k, defaults[k].default) for k in _LOM_NAMES))
    win = sopts.get("win_size") or (11 if sopts.get("gaussian_weights") else 7)
    if min(ssim_size) < win:
        raise errors.InvalidArgumentError(
            f"`ssim_size` {ssim_size} is smaller than the SSIM window ({win}); use larger crops."
        )
    images, heat = _check_inputs(images, heat)
    n = images.shape[0]
    seconds: dict[str, float] = {}

    # 1. Proposals, and step 4 (salient proposals: cheap, so a class without any stops here).
    t0 = time.perf_counter()
    props = proposals(images, num_proposals=num_proposals, **popts)
    salient_d = _salient_proposals(props.boxes, props.valid, heat,
                                   mask_threshold=mask_threshold,
                                   valid_threshold=valid_threshold)  # fmt: skip
    boxes = np.asarray(props.boxes)
    pvalid = np.asarray(props.valid)
    salient = np.asarray(salient_d)
    seconds["proposals"] = time.perf_counter() - t0
    p = boxes.shape[1]
    if not salient.any():
        return _empty(
            boxes, pvalid, salient, seconds,
            f"No summary: no proposal of any of the {n} images has more than "
            f"{valid_threshold:.0%} of its pixels salient (heat > {mask_threshold:.3f}). The "
            "heat masks are empty or too scattered; check the masks, or lower "
            "`valid_threshold` / `mask_threshold`.",
        )  # fmt: skip

    # 2. HOG descriptors, L2-normalised once (cosine similarity = clamped dot product).
    t0 = time.perf_counter()
    desc = box_descriptors(images, props.boxes + jnp.array([[[0, 0, 1, 1]]], jnp.int32),
                           chunk_size=descriptor_chunk_size, **dopts)  # fmt: skip
    unit = desc / jnp.maximum(jnp.linalg.norm(desc, axis=-1, keepdims=True), 1e-12)
    unit.block_until_ready()
    seconds["descriptors"] = time.perf_counter() - t0

    # 3. LOM over the pairs i <= j: pruning scores and the blocks between salient boxes.
    t0 = time.perf_counter()
    count = salient.sum(axis=1)
    vmax = int(count.max())
    vidx = np.argsort(~salient, axis=1, kind="stable")[:, :vmax].astype(np.int32)
    vmask = np.arange(vmax)[None, :] < count[:, None]
    score_d, blocks = _pair_step(
        unit, props.boxes, props.valid, jnp.asarray(vidx), top_similar=top_similar,
        chunk_size=chunk_size, lom=lom,
    )  # fmt: skip
    score = np.asarray(score_d)
    seconds["lom"] = time.perf_counter() - t0

    # 5. Redundancy pruning per image (on the salient boxes, padded to V per image).
    t0 = time.perf_counter()
    vboxes = np.take_along_axis(boxes, vidx[:, :, None], axis=1)
    vscore = np.take_along_axis(score, vidx, axis=1)
    vkept = np.asarray(
        _prune(
            jnp.asarray(vboxes),
            jnp.asarray(vscore),
            jnp.asarray(vmask),
            same_region=same_region,
            scale_factor=scale_factor,
        )  # fmt: skip
    )
    kept_image, kept_pos = np.nonzero(vkept)
    kept_index = vidx[kept_image, kept_pos]
    kept = np.zeros((n, p), bool)
    kept[kept_image, kept_index] = True
    score_out = np.where(salient, score, np.nan).astype(np.float32)
    seconds["prune"] = time.perf_counter() - t0

    # 6. Similarity over the kept boxes, shift, preference, affinity propagation.
    t0 = time.perf_counter()
    ki, kp = jnp.asarray(kept_image), jnp.asarray(kept_pos)
    sim_d = blocks[ki[:, None], ki[None, :], kp[:, None], kp[None, :]]
    shifted, pref = summary_preference(sim_d, factor=preference_factor)
    ap = affinity_propagation(shifted, preference=pref, damping=damping, max_iter=max_iter,
                              convergence_iter=convergence_iter)  # fmt: skip
    similarity = np.asarray(sim_d)
    labels = np.asarray(ap.labels)
    n_clusters = int(ap.n_clusters)
    exemplars = np.asarray(ap.exemplars)[:n_clusters]
    converged = bool(ap.converged)
    seconds["affinity"] = time.perf_counter() - t0

    # 7. Members; 8. the SSIM quality filter on aligned grey crops.
    t0 = time.perf_counter()
    members = _members(similarity, labels, exemplars, kept_image, top_members)
    clusters: list[Summary] = []
    ref = float("nan")
    if members:
        m = max(len(x) for x in members)
        pts = np.stack([np.pad(x, (0, m - len(x)), mode="edge") for x in members])  # [C, M]
        counts = np.array([len(x) for x in members])
        img = kept_image[pts]
        bx = boxes[img, kept_index[pts]]
        grey = jnp.tensordot(images, jnp.asarray(GREY_WEIGHTS, images.dtype), axes=1)
        crops = crop_boxes(grey[jnp.asarray(img.reshape(-1))],
                           jnp.asarray(bx.reshape(-1, 1, 4) + np.array([[[0, 0, 1, 1]]])),
                           size=ssim_size)  # fmt: skip
        crops = crops.reshape(len(members), m, *ssim_size)
        ssim = np.asarray(pairwise_ssim(crops, **sopts))
        med, accepted, member_kept, ref = _quality(ssim, counts, cluster_ssim, member_ssim)
        for c, x in enumerate(members):
            k = len(x)
            clusters.append(
                Summary(
                    image=int(kept_image[x[0]]),
                    box=boxes[kept_image[x[0]], kept_index[x[0]]].astype(np.int32),
                    member_images=kept_image[x].astype(np.int32),
                    member_boxes=bx[c, :k].astype(np.int32),
                    member_similarity=similarity[x, x[0]].astype(np.float32),
                    member_ssim=ssim[c, :k, :k].astype(np.float32),
                    member_kept=member_kept[c, :k],
                    median_ssim=float(med[c]),
                    accepted=bool(accepted[c]),
                )
            )
    seconds["filter"] = time.perf_counter() - t0
    return SummaryResult(
        clusters=tuple(clusters),
        reference_ssim=ref,
        boxes=boxes,
        proposal_valid=pvalid,
        salient=salient,
        score=score_out,
        kept=kept,
        kept_image=kept_image.astype(np.int32),
        kept_index=kept_index.astype(np.int32),
        similarity=similarity,
        labels=labels,
        converged=converged,
        seconds=seconds,
    )


__all__ = ["GREY_WEIGHTS", "Summary", "SummaryResult", "summarize"]
