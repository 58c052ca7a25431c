"""Index bookkeeping for sliding windows (convolutions and pooling), in any number of dimensions.

A window operation with kernel ``k``, stride ``s``, padding ``(lo, hi)``, input (base) dilation
``bd`` and window dilation ``wd`` reads, for output index ``o`` and kernel offset ``j`` along one
axis, the position ``q = o * s + j * wd - lo`` of the ``bd``-dilated input. That position is a
real input element iff ``0 <= q <= (n - 1) * bd`` and ``q % bd == 0``; the element is
``q // bd``. These maps depend only on static shapes and are computed with NumPy at trace time.

Moving masks back to the input is done without scatters: :func:`place` contracts each axis with
a small static 0/1 matrix (target index x source index), which compiles fast and runs as dense
matrix products on any backend.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from xaijax.typing import Array


def out_size(n: int, k: int, s: int, lo: int, hi: int, bd: int = 1, wd: int = 1) -> int:
    """Number of window positions along one axis."""
    dilated = (n - 1) * bd + 1 + lo + hi
    extent = (k - 1) * wd + 1
    return max(0, (dilated - extent) // s + 1)


def axis_positions(
    n: int, k: int, s: int, lo: int, hi: int, bd: int = 1, wd: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Input index and validity of every (output, offset) pair along one axis: ``[O, k]`` each.

    Invalid (padding) pairs get a clipped, in-range index.
    """
    o = out_size(n, k, s, lo, hi, bd, wd)
    q = np.arange(o)[:, None] * s + np.arange(k)[None, :] * wd - lo
    valid = (q >= 0) & (q <= (n - 1) * bd) & (q % bd == 0)
    return np.clip(q // bd, 0, n - 1), valid


def window_indices(
    in_shape: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    base_dilation: Sequence[int] | None = None,
    window_dilation: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Flat input index and validity of every window element.

    Returns:
      ``(index [P, K] int32, valid [P, K] bool, out_shape)`` with ``P = prod(out_shape)`` output
      positions and ``K = prod(window)`` offsets, both in row-major order (the order
      ``np.argmax`` scans a window, so ties resolve to the first offset, as in the authors' code).
    """
    d = len(in_shape)
    base_dilation = base_dilation or (1,) * d
    window_dilation = window_dilation or (1,) * d
    strides_in = np.cumprod((1,) + tuple(in_shape[::-1]))[:-1][::-1]
    index = np.zeros((), np.int64)
    valid = np.ones((), bool)
    out_shape = []
    for ax in range(d):
        pos, ok = axis_positions(
            in_shape[ax],
            window[ax],
            strides[ax],
            padding[ax][0],
            padding[ax][1],
            base_dilation[ax],
            window_dilation[ax],
        )
        out_shape.append(pos.shape[0])
        shape = [1] * (2 * d)
        shape[ax] = pos.shape[0]
        shape[d + ax] = pos.shape[1]
        index = index + (pos * int(strides_in[ax])).reshape(shape)
        valid = valid & ok.reshape(shape)
    full = tuple(out_shape) + tuple(window)
    p = int(np.prod(out_shape, dtype=np.int64))
    k = int(np.prod(window, dtype=np.int64))
    index = np.broadcast_to(index, full).reshape(p, k).astype(np.int32)
    valid = np.broadcast_to(valid, full).reshape(p, k)
    return index, valid, tuple(out_shape)


def scatter_any(size: int, index: Array, values: Array) -> Array:
    """``out[index[i]] |= values[i]`` over a flat boolean array of ``size`` (duplicates merged)."""
    hits = (
        jnp.zeros(size, jnp.int32)
        .at[index.reshape(-1)]
        .add(values.reshape(-1).astype(jnp.int32), mode="drop")
    )
    return hits > 0


def place(mask: Array, targets: Sequence[np.ndarray | None], sizes: Sequence[int]) -> Array:
    """Moves a boolean mask back along its leading axes through static index maps.

    ``out[t_1[i_1], ..., t_d[i_d], ...] |= mask[i_1, ..., i_d, ...]`` where ``targets[a]`` maps
    source index ``i_a`` to a target index in ``[0, sizes[a])`` (``-1``: dropped) and ``None``
    leaves axis ``a`` as it is. Trailing axes are carried along.
    """
    m = mask
    for ax, (t, n) in enumerate(zip(targets, sizes, strict=True)):
        if t is None:
            continue
        a = (np.asarray(t)[None, :] == np.arange(n)[:, None]).astype(np.float32)  # [n, M]
        moved = jnp.tensordot(
            jnp.asarray(a), m.astype(jnp.float32), axes=([1], [ax]), precision=lax.Precision.HIGHEST
        )
        m = jnp.moveaxis(moved, 0, ax) > 0
    return m


def window_values(
    x: Array,
    window: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    base_dilation: Sequence[int],
    window_dilation: Sequence[int],
    fill,
) -> Array:
    """The window elements of ``x`` as ``[prod(window), *out_shape]`` (offsets row-major), with
    padding read as ``fill``; made of strided slices, no gather."""
    config = [(lo, hi, bd - 1) for (lo, hi), bd in zip(padding, base_dilation, strict=True)]
    xp = lax.pad(x, jnp.asarray(fill, x.dtype), config)
    out = [
        out_size(n, k, s, lo, hi, bd, wd)
        for n, k, s, (lo, hi), bd, wd in zip(
            x.shape, window, strides, padding, base_dilation, window_dilation, strict=True
        )
    ]
    pieces = []
    for offset in itertools.product(*[range(k) for k in window]):
        start = [j * wd for j, wd in zip(offset, window_dilation, strict=True)]
        limit = [st + (o - 1) * s + 1 for st, o, s in zip(start, out, strides, strict=True)]
        pieces.append(lax.slice(xp, start, limit, tuple(strides)))
    return jnp.stack(pieces)


def window_targets(
    in_shape: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    base_dilation: Sequence[int],
    window_dilation: Sequence[int],
) -> list[np.ndarray | None]:
    """Per axis, the input index of each interleaved ``(output, offset)`` pair (``-1`` for
    padding), or ``None`` for an axis the window leaves untouched."""
    targets: list[np.ndarray | None] = []
    for n, k, s, (lo, hi), bd, wd in zip(
        in_shape, window, strides, padding, base_dilation, window_dilation, strict=True
    ):
        if k == 1 and s == 1 and lo == 0 and hi == 0 and bd == 1:
            targets.append(None)
            continue
        idx, ok = axis_positions(n, k, s, lo, hi, bd, wd)
        targets.append(np.where(ok, idx, -1).reshape(-1))
    return targets


def interleave(m: Array, d: int) -> Array:
    """``[K_1..K_d, O_1..O_d]`` -> ``[O_1 * K_1, ..., O_d * K_d]`` (output-major pairs)."""
    ks, os_ = m.shape[:d], m.shape[d:]
    perm = [p for ax in range(d) for p in (d + ax, ax)]
    return jnp.transpose(m, perm).reshape([o * k for o, k in zip(os_, ks, strict=True)])
