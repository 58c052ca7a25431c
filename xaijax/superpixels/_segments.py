"""Segment-map checks of the per-segment explainers (GWS, LIME, KernelSHAP), on the device.

:func:`xaijax.segmentation.validate_segments` states what a valid map is. Here its static checks
(dtype, shape against the inputs) run on the map's abstract value, so nothing is copied to the
host; the value checks (labels in ``[0, S)``, enough distinct labels per image, enough samples)
are one jitted reduction on the device that brings back one boolean. Only when that boolean says
something is wrong is the map read on the host, to say what (``validate_segments`` raises the
named error). Under the caller's ``jit``/``vmap`` the value checks cannot run and are skipped.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors
from xaijax._validation import fetch, is_concrete
from xaijax.segmentation import validate_segments
from xaijax.typing import Array


def check_num_segments(value, what: str) -> int:
    """The static number of segments ``S``: a positive int (required, never read from data)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise errors.InvalidArgumentError(
            f"{what} needs `num_segments`, the static number of segment labels S (labels lie in "
            f"[0, S)), as a positive int; got {value!r}. Pass the bound of your segmenter (e.g. "
            "`num_segments` of `xaijax.segmentation.slic`, or `int(segments.max()) + 1` computed "
            "once): one S for all calls means a new segment map never recompiles."
        )
    return int(value)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _counts(segments: Array, num: int, min_segments: int) -> tuple[Array, Array]:
    """``(labels ok, distinct labels per image [B])``: labels in ``[0, num)`` and every image
    with at least ``min_segments`` of them."""
    flat = segments.reshape(segments.shape[0], -1)
    in_range = jnp.all((flat >= 0) & (flat < num))
    ones = jnp.ones(flat.shape[1], jnp.int32)
    sizes = jax.vmap(lambda s: jax.ops.segment_sum(ones, s, num))(flat)
    distinct = jnp.sum(sizes > 0, axis=1)
    return in_range & jnp.all(distinct >= min_segments), distinct


@functools.partial(jax.jit, static_argnums=(1, 2))
def _segments_ok(segments: Array, num: int, min_segments: int, fewer_than) -> Array:
    ok, distinct = _counts(segments, num, min_segments)
    if fewer_than is not None:
        ok = ok & jnp.all(distinct < fewer_than)
    return ok


def check_segments(
    segments,
    x,
    num_segments: int,
    *,
    channel_axis: bool = True,
    min_segments: int = 2,
    fewer_samples: tuple[int, str] | None = None,
) -> Array:
    """Checks a segment map against ``x`` and returns it as ``int32`` ``[B, *spatial]``.

    Args:
      segments: integer map ``[B, *spatial]`` or ``[*spatial]`` (shared by the batch).
      x: the inputs (``[B, *spatial, C]`` with ``channel_axis``, else ``[B, *spatial]``), or
        ``None`` to skip the shape check (then ``segments`` must be a batch).
      num_segments: the static ``S``; labels must lie in ``[0, S)``.
      channel_axis: whether ``x`` has a trailing channel axis.
      min_segments: fewest distinct labels an image may have.
      fewer_samples: ``(num_samples, method)``: every image must have fewer non-empty segments
        than ``num_samples`` (a regression over the segments needs more samples than unknowns).

    Raises:
      SegmentMapError: a non-integer map, a shape that does not fit ``x``, labels outside
        ``[0, S)`` or too few segments in an image.
      InvalidArgumentError: more non-empty segments than ``fewer_samples`` allows.
    """
    if not hasattr(segments, "dtype") or not hasattr(segments, "shape"):
        segments = np.asarray(segments)
    kwargs = dict(num_segments=num_segments, channel_axis=channel_axis, min_segments=min_segments)
    # Static checks only: validate_segments sees an abstract value and skips its value checks.
    shape = jax.eval_shape(lambda s: validate_segments(s, x, **kwargs), segments).shape
    segs = jnp.broadcast_to(jnp.asarray(segments, jnp.int32), shape)
    if not is_concrete(segs):
        return segs
    limit = fewer_samples[0] if fewer_samples is not None else None
    if bool(fetch(_segments_ok, segs, num_segments, min_segments, limit)):
        return segs
    # The error path only: read the map on the host to say what is wrong.
    validate_segments(np.asarray(segs), x, **kwargs)
    if fewer_samples is not None:
        num_samples, method = fewer_samples
        features = int(np.max(np.asarray(_counts(segs, num_segments, 1)[1])))
        raise errors.InvalidArgumentError(
            f"{method} fits {features} segment weights plus an intercept from {num_samples} "
            "samples; it needs more samples than segments. Raise `num_samples` (e.g. to "
            f"{max(1000, 10 * features)}) or use a coarser segmentation."
        )
    raise errors.SegmentMapError(  # not reached while validate_segments states the same rules
        f"`segments` does not hold labels in [0, {num_segments}) with at least {min_segments} "
        "segments per image."
    )
