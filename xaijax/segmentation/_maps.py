"""Segment maps: validation of external maps, relabelling, sizes, merging small components.

(Connected components themselves are labelled by the private :mod:`xaijax._components`.)

A segment map assigns an integer label to every pixel (``[B, H, W]``) or voxel
(``[B, T, H, W]``) of a batch. Labels are non-negative and smaller than a *static* number of
segments ``S``, so that every per-segment array is ``[B, S]`` and jitted code never sees a
data-dependent shape. Labels need not be contiguous: a label with no pixels is simply an empty
(invalid) segment, reported by :func:`segment_sizes` as size 0.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors
from xaijax._validation import _shape_str, check_positive_int, fetch, is_concrete


def num_segments(segments: jax.typing.ArrayLike) -> int:
    """The static segment count ``S = max label + 1`` of a concrete segment map.

    Use it once, eagerly, to size the per-segment arrays of a whole pipeline; inside ``jit`` pass
    that number explicitly (as ``num_segments=``) instead.

    Args:
      segments: concrete integer segment map ``[B, ...]``.

    Returns:
      ``int(segments.max()) + 1``.

    Raises:
      InvalidArgumentError: when ``segments`` is a tracer (its values are unknown).

    Examples:
      >>> import jax.numpy as jnp
      >>> num_segments(jnp.array([[[0, 0], [3, 1]]]))
      4
    """
    if not is_concrete(segments):
        raise errors.InvalidArgumentError(
            "The number of segments cannot be read from a traced `segments` array (inside "
            "jit/vmap): pass `num_segments=` explicitly (e.g. the `num_segments` of `slic`)."
        )
    return int(fetch(jnp.max, jnp.asarray(segments))) + 1  # one scalar back


def validate_segments(
    segments: jax.typing.ArrayLike,
    x: jax.typing.ArrayLike | None = None,
    *,
    num_segments: int | None = None,
    channel_axis: bool = True,
    min_segments: int = 2,
    name: str = "segments",
) -> jax.Array:
    """Checks an (external) segment map and returns it as an ``int32`` batch.

    Accepts any integer map, e.g. scikit-image's ``quickshift`` output (LIME's default) or
    :func:`slic`/:func:`grid` output. Static checks (dtype, shape) always run; value checks
    (negative labels, labels ``>= num_segments``, fewer than ``min_segments`` distinct labels in an
    image) run when ``segments`` is concrete.

    Args:
      segments: integer map ``[B, *spatial]``, or ``[*spatial]`` shared by the whole batch (it is
        broadcast to ``[B, *spatial]``).
      x: the inputs ``[B, *spatial, C]`` (``channel_axis=True``) or ``[B, *spatial]``; ``None``
        skips the shape check against the inputs.
      num_segments: static number of segments ``S``; labels must lie in ``[0, S)``.
      channel_axis: whether ``x`` has a trailing channel axis.
      min_segments: fewest distinct labels an image may have (an explanation over one segment
        says nothing).
      name: the argument name used in error messages.

    Returns:
      ``int32`` array ``[B, *spatial]``.

    Raises:
      SegmentMapError: wrong dtype or shape, negative labels, labels ``>= num_segments``, or an
        image with fewer than ``min_segments`` segments.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.zeros((2, 4, 4, 3))
      >>> seg = jnp.arange(16).reshape(4, 4) // 8  # two halves, shared by the batch
      >>> validate_segments(seg, x).shape
      (2, 4, 4)
    """
    if not hasattr(segments, "dtype"):
        segments = np.asarray(segments)
    if not (jnp.issubdtype(segments.dtype, jnp.integer)) or segments.dtype == bool:
        raise errors.SegmentMapError(
            f"`{name}` must hold integer labels, got dtype {segments.dtype}. "
            + (
                f"If the values are whole numbers cast them: `{name}.astype(jnp.int32)`."
                if jnp.issubdtype(segments.dtype, jnp.floating)
                else "Pass an integer array with one label per pixel."
            )
        )
    if x is not None:
        x_shape = tuple(np.shape(x))
        spatial = x_shape[1:-1] if channel_axis else x_shape[1:]
        expected = x_shape[:1] + spatial
        layout = "[B, *spatial, C]" if channel_axis else "[B, *spatial]"
        if tuple(segments.shape) == spatial:
            segments = jnp.broadcast_to(jnp.asarray(segments), expected)
        elif tuple(segments.shape) != expected:
            raise errors.SegmentMapError(
                f"`{name}` has shape {_shape_str(segments.shape)} but the inputs have shape "
                f"{_shape_str(x_shape)} (laid out as {layout}): give one label per pixel, i.e. "
                f"shape {_shape_str(expected)}, or {_shape_str(spatial)} to share one map "
                "across the batch."
            )
    elif segments.ndim < 2:
        raise errors.SegmentMapError(
            f"`{name}` must be a batch of maps [B, *spatial], got shape "
            f"{_shape_str(segments.shape)}."
        )
    if is_concrete(segments) and np.size(segments):
        # On the device: four scalars come back (never the map). Distinct labels are counted
        # below the largest label, a bound read from the map itself when S is not given.
        lo, hi = (int(v) for v in fetch(_label_range, jnp.asarray(segments)))
        if lo < 0:
            raise errors.SegmentMapError(
                f"`{name}` holds a negative label ({lo}); labels must be >= 0. "
                "Shift them, e.g. `segments - segments.min()`."
            )
        if num_segments is not None and hi >= num_segments:
            raise errors.SegmentMapError(
                f"`{name}` holds label {hi} but `num_segments` is "
                f"{num_segments}: labels must lie in [0, num_segments). Raise `num_segments` "
                "or relabel with `xaijax.segmentation.relabel_contiguous`."
            )
        bound = num_segments if num_segments is not None else hi + 1
        fewest, worst = (int(v) for v in fetch(_fewest_labels, jnp.asarray(segments), bound))
        if fewest < min_segments:
            raise errors.SegmentMapError(
                f"`{name}` image {worst} has {fewest} segment(s); at least "
                f"{min_segments} are needed for a region explanation. Use a finer segmentation "
                "(e.g. more `approx_segments` in `slic`)."
            )
    return jnp.asarray(segments, jnp.int32)


@jax.jit
def _label_range(segments: jax.Array) -> jax.Array:
    return jnp.stack([jnp.min(segments), jnp.max(segments)])


@functools.partial(jax.jit, static_argnums=1)
def _fewest_labels(segments: jax.Array, bound: int) -> jax.Array:
    """``[fewest distinct labels in an image, that image's index]`` of labels in [0, bound)."""
    flat = segments.reshape(segments.shape[0], -1)
    ones = jnp.ones(flat.shape[1], jnp.int32)
    sizes = jax.vmap(lambda row: jax.ops.segment_sum(ones, row, bound))(flat)
    distinct = jnp.sum(sizes > 0, axis=1)
    return jnp.stack([jnp.min(distinct), jnp.argmin(distinct)])


def _check_label_map(segments, name: str, fn: str) -> jax.Array:
    """Static checks of a label map for ``fn``: integer dtype, rank >= 2; returns it as int32."""
    if not hasattr(segments, "dtype"):
        segments = np.asarray(segments)
    if not jnp.issubdtype(segments.dtype, jnp.integer) or segments.dtype == bool:
        raise errors.SegmentMapError(
            f"`{fn}` needs integer labels in `{name}`, got dtype {segments.dtype}. "
            f"Cast whole-number labels with `{name}.astype(jnp.int32)`."
        )
    if segments.ndim < 2:
        raise errors.SegmentMapError(
            f"`{fn}` needs a batch of maps `{name}` [B, *spatial], got shape "
            f"{_shape_str(segments.shape)}; for one map add a batch axis: `{name}[None]`."
        )
    return jnp.asarray(segments, jnp.int32)


def _check_label_range(segments: jax.Array, upper: int | None, bound: str, fn: str) -> None:
    """Raises for labels < 0 or >= ``upper`` when ``segments`` is concrete.

    The test runs on the device and brings back one boolean (the batch stays where it is); the
    extremes for the message are fetched only when it fails. A traced map cannot be checked.
    """
    if not is_concrete(segments) or segments.size == 0:
        return
    if not bool(_out_of_range(segments, jnp.iinfo(jnp.int32).max if upper is None else upper)):
        return
    lo, hi = int(jnp.min(segments)), int(jnp.max(segments))
    if lo < 0:
        raise errors.SegmentMapError(
            f"`{fn}` got a negative label (label {lo}); labels must lie in "
            f"[0, {bound}). Shift them first, e.g. `segments - segments.min()`."
        )
    raise errors.SegmentMapError(
        f"`{fn}` got label {hi} but `{bound}` is {upper}: labels must lie in [0, {bound}). "
        f"Raise `{bound}` to at least {hi + 1} (e.g. `xaijax.segmentation.num_segments(...)`) "
        "or relabel with `xaijax.segmentation.relabel_contiguous`."
    )


@jax.jit
def _out_of_range(segments: jax.Array, upper: jax.Array) -> jax.Array:
    return jnp.any((segments < 0) | (segments >= upper))


def segment_sizes(segments: jax.typing.ArrayLike, num_segments: int) -> jax.Array:
    """Pixel (voxel) count of every segment.

    Args:
      segments: integer map ``[B, *spatial]`` with labels in ``[0, num_segments)``.
      num_segments: static number of segments ``S``.

    Returns:
      ``int32`` array ``[B, S]``; 0 marks an empty (invalid, padded) segment.

    Raises:
      SegmentMapError: non-integer labels, a map without batch axis, or (for a concrete map)
        a label that is negative or ``>= num_segments``. The range check runs on the device and
        brings back one boolean. Inside ``jit``/``vmap`` the labels are unknown and it cannot
        run: out-of-range labels are then dropped (counted nowhere), so check the map once
        eagerly, e.g. with :func:`validate_segments`.
      InvalidArgumentError: ``num_segments`` is not a positive integer.

    Examples:
      >>> import jax.numpy as jnp
      >>> segment_sizes(jnp.array([[[0, 0], [2, 0]]]), 4)
      Array([[3, 0, 1, 0]], dtype=int32)
    """
    num_segments = check_positive_int(num_segments, "num_segments")
    segments = _check_label_map(segments, "segments", "segment_sizes")
    _check_label_range(segments, num_segments, "num_segments", "segment_sizes")
    return _segment_sizes(segments, num_segments)


@functools.partial(jax.jit, static_argnums=1)
def _segment_sizes(segments: jax.Array, num: int) -> jax.Array:
    flat = segments.reshape(segments.shape[0], math.prod(segments.shape[1:]))
    ones = jnp.ones(flat.shape[1], jnp.int32)
    return jax.vmap(lambda s: jax.ops.segment_sum(ones, s, num))(flat)


def _relabel_single(labels: jax.Array, num_labels: int) -> jax.Array:
    """Relabels one flat map to 0..K-1 in raster order of each segment's first pixel (no sort)."""
    n = labels.shape[0]
    index = jnp.arange(n, dtype=jnp.int32)
    first = jax.ops.segment_min(index, labels, num_labels)[labels]  # first pixel of my segment
    rank = jnp.cumsum((first == index).astype(jnp.int32)) - 1
    return rank[first]


def relabel_contiguous(
    segments: jax.typing.ArrayLike, num_segments: int | None = None
) -> jax.Array:
    """Relabels every map of a batch to ``0 .. K-1``, numbered in raster order.

    Segment ``0`` is the one containing the first pixel, segment ``1`` the next one met in
    raster (C) order, and so on, as scikit-image's ``enforce_connectivity`` numbers them.

    Args:
      segments: non-negative integer map ``[B, *spatial]``.
      num_segments: static bound on the input labels (all labels ``< num_segments``); inferred from
        a concrete ``segments`` when ``None``.

    Returns:
      ``int32`` map ``[B, *spatial]`` with labels ``0 .. K-1`` (``K`` distinct labels per image).

    Raises:
      SegmentMapError: non-integer labels, a map without batch axis, or (for a concrete map)
        a negative label or one ``>= num_segments``. The check runs on the device and brings back
        one boolean. Inside ``jit``/``vmap`` it cannot run, and out-of-range labels give
        meaningless output there: check the map once eagerly.
      InvalidArgumentError: ``num_segments`` is not a positive integer, or is ``None`` for a
        traced map.

    Examples:
      >>> import jax.numpy as jnp
      >>> relabel_contiguous(jnp.array([[[7, 7], [2, 9]]]))
      Array([[[0, 0],
              [1, 2]]], dtype=int32)
    """
    segments = _check_label_map(segments, "segments", "relabel_contiguous")
    if segments.size == 0:
        return segments
    if num_segments is None:
        if not is_concrete(segments):
            num_segments(segments)  # raises: the bound cannot be read from a traced map
        _check_label_range(segments, None, "num_segments", "relabel_contiguous")
        num_segments = int(jnp.max(segments)) + 1  # one scalar back, not the batch
    else:
        num_segments = check_positive_int(num_segments, "num_segments")
        _check_label_range(segments, num_segments, "num_segments", "relabel_contiguous")
    flat = segments.reshape(segments.shape[0], -1)
    out = jax.vmap(lambda s: _relabel_single(s, num_segments))(flat)
    return out.reshape(segments.shape)


# --- small components merged into a neighbour (single example, used by slic) ----------------


def _neighbour_views(a: jax.Array, fill) -> list[jax.Array]:
    """The 2 * ndim axis-aligned neighbours of every element (``fill`` outside the array)."""
    views = []
    for axis in range(a.ndim):
        pad = [(0, 0)] * a.ndim
        for lo, hi in ((1, 0), (0, 1)):
            pad[axis] = (lo, hi)
            padded = jnp.pad(a, pad, constant_values=fill)
            start = 0 if lo else 1
            views.append(jax.lax.slice_in_dim(padded, start, start + a.shape[axis], axis=axis))
    return views


def _absorb_small(components: jax.Array, min_size: int) -> jax.Array:
    """Merges every component smaller than ``min_size`` whole into one adjacent segment.

    Large components keep their label (the root index). Each small component joins, in one
    piece, one already-labelled neighbouring segment (the one with the largest label, a
    deterministic but arbitrary choice, as scikit-image's is); components with no labelled
    neighbour yet wait for the next round. The largest component always counts as large.
    Merging whole components into one neighbour keeps their other borders, which spreading the
    neighbours into them pixel by pixel would erase (boundary recall on the synthetic part maps
    at 224 x 224 drops from 0.91 to 0.84 that way); choosing the neighbour of closest mean colour
    instead gained only 0.005 at three times the cost.
    """
    n = components.size
    comp = components.reshape(-1)
    sizes = jax.ops.segment_sum(jnp.ones(n, jnp.int32), comp, n)
    big = (sizes[components] >= min_size) | (components == jnp.argmax(sizes))
    assigned = jnp.where(big, components, -1)

    def body(assigned):
        best = jnp.full(assigned.shape, -1, jnp.int32)
        for view in _neighbour_views(assigned, -1):
            best = jnp.maximum(best, view)
        flat = assigned.reshape(-1)
        pick = jnp.where(flat < 0, best.reshape(-1), -1)
        choice = jax.ops.segment_max(pick, comp, n)[comp]
        return jnp.where(flat < 0, jnp.maximum(choice, -1), flat).reshape(assigned.shape)

    return jax.lax.while_loop(lambda a: jnp.any(a < 0), body, assigned)
