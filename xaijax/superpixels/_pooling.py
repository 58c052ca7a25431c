"""Pooling pixel attributions over segments, and LIME-style top-segment masks."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors
from xaijax._validation import check_choice, check_floating, check_positive_int
from xaijax.segmentation import segment_sizes
from xaijax.superpixels._segments import check_num_segments, check_segments

#: Pooling rules of :func:`superpixel_scores`.
REDUCTIONS = ("mean", "sum", "max", "abs_mean", "positive_mean")
#: How a trailing channel axis of the attributions is collapsed first.
CHANNEL_REDUCTIONS = ("sum", "mean", "max_abs", "l2")


def _reduce_channels(a: jax.Array, how: str) -> jax.Array:
    if how == "sum":
        return jnp.sum(a, axis=-1)
    if how == "mean":
        return jnp.mean(a, axis=-1)
    if how == "max_abs":
        return jnp.max(jnp.abs(a), axis=-1)
    return jnp.sqrt(jnp.sum(a * a, axis=-1))


def _has_channels(seg_shape: tuple, att_shape: tuple) -> bool:
    """Whether attributions carry a trailing channel axis, judged against the segment map."""
    if seg_shape in (att_shape, att_shape[1:]):
        return False
    return seg_shape in (att_shape[:-1], att_shape[1:-1]) or len(att_shape) > len(seg_shape) + 1


def _pool_single(values: jax.Array, labels: jax.Array, num: int, reduce: str) -> jax.Array:
    """Scores ``[S]`` of one flat map; empty segments score 0."""
    counts = jax.ops.segment_sum(jnp.ones_like(values), labels, num)
    if reduce == "max":
        top = jax.ops.segment_max(values, labels, num)
        return jnp.where(counts > 0, top, 0.0)
    if reduce == "abs_mean":
        values = jnp.abs(values)
    elif reduce == "positive_mean":
        values = jnp.maximum(values, 0.0)
    sums = jax.ops.segment_sum(values, labels, num)
    if reduce == "sum":
        return sums
    return sums / jnp.maximum(counts, 1.0)


def superpixel_scores(
    attributions: jax.typing.ArrayLike,
    segments: jax.typing.ArrayLike,
    reduce: str = "mean",
    *,
    num_segments: int,
    channel_reduce: str = "sum",
) -> jax.Array:
    """Pools a pixel (voxel) attribution map over segments: one score per segment.

    With ``R_k`` the pixels of segment ``k`` and ``g(p)`` the attribution of pixel ``p`` (after
    the channel reduction):

    * ``mean``: :math:`\\frac{1}{|R_k|}\\sum_{p\\in R_k} g(p)` (the "average gradient" of GWS);
    * ``sum``: :math:`\\sum_{p\\in R_k} g(p)`;
    * ``max``: :math:`\\max_{p\\in R_k} g(p)`;
    * ``abs_mean``: mean of :math:`|g(p)|`;
    * ``positive_mean``: mean of :math:`\\max(g(p), 0)`.

    Computed with ``jax.ops.segment_sum``/``segment_max`` and a static number of segments, so it
    jits, vmaps and never recompiles for a new segment map of the same shape (whatever number of
    labels it uses). The labels are checked on the device (one boolean comes back).

    Args:
      attributions: ``[B, *spatial]`` or ``[B, *spatial, C]`` (channels are reduced first).
      segments: integer map ``[B, *spatial]`` (or ``[*spatial]`` shared by the batch) with labels
        in ``[0, num_segments)``.
      reduce: one of :data:`REDUCTIONS`.
      num_segments: the static number of segment labels ``S`` (required; e.g. ``num_segments``
        of :func:`~xaijax.segmentation.slic`).
      channel_reduce: ``sum`` (signed methods), ``mean``, ``max_abs`` (magnitude methods) or
        ``l2``; used only when ``attributions`` has a channel axis.

    Returns:
      ``float32`` scores ``[B, S]``; segments without pixels score 0.

    Raises:
      SegmentMapError: a segment map that does not fit ``attributions``, or bad labels.
      InvalidArgumentError: an unknown ``reduce`` or ``channel_reduce``, or no positive int
        ``num_segments``.

    Examples:
      >>> import jax.numpy as jnp
      >>> a = jnp.array([[[1.0, 3.0], [-2.0, 0.0]]])
      >>> seg = jnp.array([[[0, 0], [1, 1]]])
      >>> superpixel_scores(a, seg, "mean", num_segments=2)
      Array([[ 2., -1.]], dtype=float32)

    References:
      Hartley et al., "Gradient Weighted Superpixels for Interpretability in CNNs",
      arXiv 1908.08997, 2019.
    """
    check_choice(reduce, "reduce", REDUCTIONS)
    check_choice(channel_reduce, "channel_reduce", CHANNEL_REDUCTIONS)
    num_segments = check_num_segments(num_segments, "superpixel_scores")
    attributions = check_floating(attributions, "attributions", min_rank=2)
    has_channels = _has_channels(tuple(np.shape(segments)), tuple(attributions.shape))
    segments = check_segments(segments, attributions, num_segments, channel_axis=has_channels)
    return _scores(attributions, segments, reduce, num_segments, channel_reduce, has_channels)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _scores(attributions, segments, reduce, num, channel_reduce, has_channels) -> jax.Array:
    if has_channels:
        attributions = _reduce_channels(attributions, channel_reduce)
    b = attributions.shape[0]
    values = attributions.reshape(b, -1).astype(jnp.float32)
    labels = segments.reshape(b, -1)
    return jax.vmap(lambda v, s: _pool_single(v, s, num, reduce))(values, labels)


def top_segments_mask(
    segments: jax.typing.ArrayLike,
    scores: jax.typing.ArrayLike,
    k: int = 5,
    *,
    positive_only: bool = True,
) -> jax.Array:
    """A boolean mask of the ``k`` best segments of every image, as LIME displays them.

    Mirrors ``lime_image.ImageExplanation.get_image_and_mask(label, positive_only, num_features=k,
    min_weight=0)``: with ``positive_only`` the ``k`` highest-scoring segments among those with a
    positive score, otherwise the ``k`` segments of largest ``|score|`` (non-zero). Empty segments
    are never chosen.

    Args:
      segments: integer map ``[B, *spatial]`` with labels in ``[0, S)``.
      scores: ``[B, S]`` per-segment scores (GWS scores, LIME coefficients, Shapley values).
      k: number of segments to show (static).
      positive_only: keep only positively scored segments.

    Returns:
      ``bool`` mask ``[B, *spatial]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> seg = jnp.array([[[0, 1], [2, 2]]])
      >>> top_segments_mask(seg, jnp.array([[0.5, -1.0, 2.0]]), k=1)
      Array([[[False, False],
              [ True,  True]]], dtype=bool)
    """
    k = check_positive_int(k, "k")
    scores = check_floating(scores, "scores", rank=2, layout="[B, S]")
    segments = check_segments(segments, None, scores.shape[1], min_segments=1)
    if segments.shape[0] != scores.shape[0]:
        raise errors.BatchMismatchError(
            f"`segments` has a batch of {segments.shape[0]} but `scores` has "
            f"{scores.shape[0]} rows: give one row of scores per segment map."
        )
    return _top_mask(segments, scores, k, positive_only)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _top_mask(segments, scores, k, positive_only) -> jax.Array:
    num = scores.shape[1]
    valid = segment_sizes(segments, num) > 0
    if positive_only:
        key = jnp.where(valid & (scores > 0), scores, -jnp.inf)
    else:
        key = jnp.where(valid & (scores != 0), jnp.abs(scores), -jnp.inf)
    kk = min(k, num)
    top_values, top_index = jax.lax.top_k(key, kk)
    chosen = jnp.zeros(key.shape, bool)
    chosen = jax.vmap(lambda c, i, t: c.at[i].set(t > -jnp.inf))(chosen, top_index, top_values)
    b = segments.shape[0]
    flat = segments.reshape(b, -1)
    return jnp.take_along_axis(chosen, flat, axis=1).reshape(segments.shape)
