"""Masks over the values of a traced model, as the backtracking rules pass them on.

A mask is a boolean array of its operand's shape (what registered rules see, and what the
cheap rules compute on) or :class:`Points` (a fixed-size list of flat indices, the one
representation of the costly rules: convolutions, pooling and reductions touch only the windows
of the discriminative neurons). Measured on the zoo models (random weights, batch of 64, loaded
2-core CPU, interleaved with one jitted forward pass), the walk cost 1.0 to 3.6 forward passes
with points in these rules and 10 to 28 with the boolean-mask versions the package also had
(text1d, whose forward pass takes 1.5 ms: 3 against 120); those versions are removed. Where no
bound helps (``sum_pool="positive"`` with ``residual="both"``: every positive input) points
cost about as much as boolean masks, except on the 3-D convolutions of video3d (2x slower).

Also the small index helpers the rules share (explicit ranks, int32 arithmetic, gathers
without negative-index handling).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from xaijax.typing import Array

if TYPE_CHECKING:
    from xaijax.fixations._registry import Equation


class Points(NamedTuple):
    """A mask in compact form: the representation of the costly rules (convolutions, pooling,
    reductions), which the walker passes on between rules.

    The True entries of the mask are ``index[valid]``: flat (row-major) indices into an operand
    of ``shape``. An index may occur several times (the set is what counts: every rule maps each
    neuron on its own, so a repeated neuron adds nothing). A convolution or pooling rule returns
    its operand's mask as points, and the next such rule starts from them instead of compacting
    a dense mask again (the costly part of these rules on CPU).
    """

    index: Array
    valid: Array
    shape: tuple[int, ...]


Mask = Any  # a boolean array or Points


def dense(mask: Mask) -> Array:
    """The boolean array of a mask given as an array or as :class:`Points`."""
    if isinstance(mask, Points):
        return mark(numel(mask.shape), mask.index, mask.valid).reshape(mask.shape)
    return mask


def to_points(mask: Mask, capacity: int) -> Points:
    """The mask as at most ``capacity`` points; ``capacity`` must bound its number of True
    entries. Dense masks are compacted (:func:`compact`); longer lists of points lose their
    repeats first (by sorting the list: no array of the operand's size is touched). Without a
    useful bound (``capacity >= size``) every element is a point and nothing is compacted."""
    size = numel(mask.shape)
    if isinstance(mask, Points) and mask.index.shape[0] <= capacity:
        return mask
    if capacity >= size:  # no useful bound: every neuron as a point, nothing to compact
        flat = dense(mask).reshape(-1)
        return Points(jnp.arange(size, dtype=jnp.int32), flat, tuple(mask.shape))
    if isinstance(mask, Points):
        key = lax.sort(select(mask.valid, mask.index, size))
        repeat = jnp.concatenate([jnp.zeros((1,), bool), key[1:] == key[:-1]])
        key = lax.sort(select(~repeat, key, size))[:capacity]  # unique ones first
        ok = key < size
        return Points(select(ok, key, 0), ok, mask.shape)
    last = mask.shape[-1]
    row, col, ok = compact(mask.reshape(-1, last), capacity)
    return Points(row * last + col, ok, tuple(mask.shape))


def merge(a: Mask, b: Mask) -> Mask:
    """The union of two masks of one operand."""
    if isinstance(a, Points) and isinstance(b, Points):
        return Points(
            jnp.concatenate([a.index, b.index]), jnp.concatenate([a.valid, b.valid]), a.shape
        )
    return dense(a) | dense(b)


def unbroadcast(mask: Array, shape: tuple[int, ...]) -> Array:
    """Reduces a mask over axes that an elementwise op broadcast from ``shape``."""
    if mask.shape == tuple(shape):
        return mask
    if len(shape) == 0:
        return jnp.any(mask)
    axes = tuple(i for i, (s, m) in enumerate(zip(shape, mask.shape, strict=True)) if s != m)
    return jnp.any(mask, axis=axes, keepdims=True).reshape(shape)


def to_dependent(eqn: Equation, masks: Sequence[Mask | None]) -> list[Mask | None]:
    out: list[Mask | None] = []
    for v, d, m in zip(eqn.in_values, eqn.dependent, masks, strict=True):
        if not d or m is None:
            out.append(None)
        elif isinstance(m, Points) and m.shape == tuple(jnp.shape(v)):
            out.append(m)  # same shape: the points stay where they are
        else:
            out.append(unbroadcast(dense(m), jnp.shape(v)))
    return out


def only_first(eqn: Equation, mask: Mask | None) -> list[Mask | None]:
    return to_dependent(eqn, [mask] + [None] * (len(eqn.in_values) - 1))


def lowest(dtype) -> Any:
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    return jnp.iinfo(dtype).min


def one_hot(index: Array, n: int) -> Array:
    """``index[..., None] == arange(n)`` with explicit ranks (no implicit rank promotion)."""
    return index[..., None] == jnp.arange(n).reshape((1,) * index.ndim + (n,))


def as_float(x: Array) -> Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def i32(v: int) -> Array:
    return jnp.asarray(v, jnp.int32)


def div(a: Array, n: int) -> Array:
    """``a // n`` for non-negative int32 ``a`` (fewer ops than ``//``, which handles signs)."""
    return a if n == 1 else lax.div(a, i32(n))


def rem(a: Array, n: int) -> Array:
    """``a % n`` for non-negative int32 ``a``."""
    return jnp.zeros_like(a) if n == 1 else lax.rem(a, i32(n))


def clamp(a: Array, lo: int, hi: int) -> Array:
    return lax.clamp(i32(lo), a, i32(hi))


def select(pred: Array, a: Array, b: Array) -> Array:
    """``where(pred, a, b)`` with ``b`` a scalar (no implicit broadcasting)."""
    return lax.select(pred, a, jnp.full(a.shape, b, a.dtype))


def take_rows(a: Array, index: Array) -> Array:
    """``a[index]`` along axis 0 for in-range ``index`` (no negative-index handling)."""
    dn = lax.GatherDimensionNumbers(
        offset_dims=tuple(range(index.ndim, index.ndim + a.ndim - 1)),
        collapsed_slice_dims=(0,),
        start_index_map=(0,),
    )
    return lax.gather(
        a,
        index[..., None],
        dn,
        slice_sizes=(1, *a.shape[1:]),
        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS,
    )


def compact(mask: Array, capacity: int) -> tuple[Array, Array, Array]:
    """The True entries of a ``[R, L]`` mask as ``(row, col, valid)``, each ``[capacity]``.

    Two levels keep the cost near ``R + capacity * L`` instead of ``R * L``: the rows holding a
    True entry first (at most ``capacity`` of them), then the entries of those rows; each level
    is a ``jnp.flatnonzero(..., size=...)``. ``capacity`` must bound the number of True entries
    (the walker's static bounds do). One level (``flatnonzero`` of the whole mask) made the
    walk 5-35 % slower on four of the six zoo models (2-core CPU, batch 64).
    """
    r, length = mask.shape
    cap_rows = min(r, capacity)
    if cap_rows == r:  # every row fits: no first level
        rows, sub = jnp.arange(r, dtype=jnp.int32), mask
    else:
        rows = jnp.flatnonzero(jnp.any(mask, axis=1), size=cap_rows, fill_value=r).astype(jnp.int32)
        sub = take_rows(mask, jnp.minimum(rows, r - 1)) & (rows < r)[:, None]
    cap = min(capacity, cap_rows * length)
    flat = jnp.flatnonzero(sub.reshape(-1), size=cap, fill_value=cap_rows * length).astype(
        jnp.int32
    )
    valid = flat < cap_rows * length
    flat = select(valid, flat, 0)
    row = take_rows(rows, div(flat, length))
    return select(valid, row, 0), rem(flat, length), valid


def mark(size: int, index: Array, keep: Array) -> Array:
    """A flat boolean mask of ``size`` with ``index[keep]`` set."""
    where = select(keep, index, size).reshape(-1, 1)
    dn = lax.ScatterDimensionNumbers(
        update_window_dims=(), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,)
    )
    ones = jnp.ones(where.shape[:1], bool)
    return lax.scatter(
        jnp.zeros((size,), bool), where, ones, dn, mode=lax.GatherScatterMode.FILL_OR_DROP
    )


def argmax(v: Array, axis: int) -> Array:
    """``jnp.argmax`` (the first maximum) as int32. Not ``max`` then ``v == max``: XLA may
    recompute ``v`` in two fusions with different rounding (fused multiply-adds), which can leave
    no element equal to the maximum; the variadic reduction computes both in one pass."""
    return jnp.argmax(v, axis=axis).astype(jnp.int32)


def sum_small(a: Array, axis: int) -> Array:
    """``jnp.sum(a, axis)`` over a short axis as a chain of adds in index order (the order of
    XLA's reduction loop); XLA's CPU reduction over a middle axis is many times slower."""
    n = a.shape[axis]
    if n == 0 or n > 64:
        return jnp.sum(a, axis=axis)
    total = lax.index_in_dim(a, 0, axis, keepdims=False)
    for i in range(1, n):
        total = total + lax.index_in_dim(a, i, axis, keepdims=False)
    return total


def pick(a: Array, index: Array) -> Array:
    """``a[..., index]`` along the last axis, ``index`` of ``a.shape[:-1]`` (or broadcastable);
    a one-hot reduction: a batched ``take_along_axis`` gather is slow on CPU under ``vmap``."""
    hit = one_hot(index, a.shape[-1])
    return jnp.sum(jnp.where(hit, a, jnp.zeros((), a.dtype)), axis=-1)


def unravel(index: Array, shape: Sequence[int]) -> list[Array]:
    out = []
    for n in reversed(tuple(shape)):
        out.append(rem(index, n))
        index = div(index, n)
    return out[::-1]


def numel(shape) -> int:
    """The number of elements of an array of ``shape``."""
    return int(np.prod(shape, dtype=np.int64))


def window_points(
    coords: list[Array],
    in_shape: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    base_dilation: Sequence[int],
    window_dilation: Sequence[int],
) -> tuple[Array, Array]:
    """For output points given by per-axis ``coords`` (each ``[N]``), the flat input index and
    validity of every window element: ``[N, K]`` each (offsets in row-major order)."""
    offsets = np.array(list(itertools.product(*[range(k) for k in window])), np.int64)
    offsets = offsets.reshape(-1, len(window))
    strides_in = np.cumprod((1,) + tuple(in_shape[::-1]))[:-1][::-1]
    flat = jnp.zeros((coords[0].shape[0], offsets.shape[0]), jnp.int32)
    valid = jnp.ones(flat.shape, bool)
    for a, (n, s, (lo, _), bd, wd) in enumerate(
        zip(in_shape, strides, padding, base_dilation, window_dilation, strict=True)
    ):
        q = coords[a][:, None] * s + jnp.asarray(offsets[None, :, a] * wd - lo, jnp.int32)
        valid = valid & (q >= 0) & (q <= (n - 1) * bd)
        q = clamp(q, 0, (n - 1) * bd)
        if bd > 1:
            valid = valid & (rem(q, bd) == 0)
        flat = flat + div(q, bd) * int(strides_in[a])
    return flat, valid
