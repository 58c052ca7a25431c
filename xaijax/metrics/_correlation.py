"""Similarity of two maps: Spearman's rho, Kendall's tau-b and top-k overlap.

All three flatten each example of a batch ``[B, ...]`` and return one value per example. They
are used to compare explanations with each other (sanity checks, robustness, agreement between
methods); ties are common in saliency maps (zeros after ReLU, flat superpixel scores), so both
rank correlations handle them exactly as SciPy does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _validation, errors
from xaijax import _validation as _checks
from xaijax.typing import Array, ArrayLike

#: Largest number of values per example for :func:`kendall` with 32-bit pair counts.
KENDALL_MAX_SIZE_32BIT = 65536


def _check_pair(a, b) -> tuple[Array, Array]:
    a = _checks.check_real(a, "a")
    b = _checks.check_real(b, "b")
    _checks.check_same_shape(a, b, "a", "b")
    return a, b


def _order_keys(v: Array) -> Array:
    """``[B, ...]`` -> ``[B, N]`` int32 keys with the order and the ties of the float32 values.

    Only order and equality matter to the three similarities, and XLA sorts integers an order of
    magnitude faster than floats on CPU. -0.0 is mapped to +0.0 first, so that they tie.
    """
    v = v.reshape(v.shape[0], -1).astype(jnp.float32)
    v = jnp.where(v == 0, jnp.zeros_like(v), v)
    bits = jax.lax.bitcast_convert_type(v, jnp.int32)
    return bits ^ ((bits >> 31) & jnp.int32(0x7FFFFFFF))  # negatives: reverse their magnitude


def spearman(a: ArrayLike, b: ArrayLike) -> Array:
    """Spearman's rank correlation between two maps, per example.

    Pearson correlation of the average ranks (ties share the mean of the ranks they span), which
    equals ``scipy.stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic`` for every example.
    Where SciPy returns NaN (one of the maps is constant), this returns 0. Cost: one integer sort
    and a binary search per map, O(N log N).

    Args:
      a: ``[B, ...]`` real maps (any number of trailing axes; flattened per example).
      b: maps of the same shape.

    Returns:
      ``[B]`` float32 correlations in [-1, 1].

    Example:
      >>> from xaijax.metrics import spearman
      >>> rho = spearman([[1.0, 2.0, 3.0, 4.0]], [[10.0, 20.0, 20.0, 0.0]])
      >>> print(f"{float(rho[0]):.4f}")  # scipy.stats.spearmanr gives -0.3162
      -0.3162

    References:
      Spearman, "The proof and measurement of association between two things", 1904; used as
      the map similarity of Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
    """
    a, b = _check_pair(a, b)
    return _spearman(a, b)


def _count_below(keys: Array, sorted_keys: Array, *, inclusive: bool = False) -> Array:
    """For each key, how many of ``sorted_keys`` are < it (<= it when ``inclusive``), batched."""
    side = "right" if inclusive else "left"
    return jax.vmap(lambda s, q: jnp.searchsorted(s, q, side=side).astype(jnp.int32))(
        sorted_keys, keys
    )


def _average_ranks(keys: Array) -> Array:
    """Average 1-based ranks of integer keys ``[B, N]`` (``scipy.stats.rankdata``'s 'average').

    A value with ``lo`` smaller and ``hi - lo`` equal values (itself included) spans the ranks
    ``lo + 1 .. hi``, whose mean is ``(lo + hi + 1) / 2``. One single-operand sort plus a binary
    search is several times faster on CPU than an ``argsort`` and its inverse.
    """
    sk = jnp.sort(keys, axis=-1)
    lo = _count_below(keys, sk)
    hi = _count_below(keys, sk, inclusive=True)
    return (lo + hi + 1).astype(jnp.float32) / 2


def _pearson(x: Array, y: Array) -> Array:
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    den = jnp.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    return jnp.where(den > 0, (x * y).sum(-1) / jnp.where(den > 0, den, 1), 0.0)


@jax.jit
def _spearman(a: Array, b: Array) -> Array:
    ka, kb = _order_keys(a), _order_keys(b)
    ranks = _average_ranks(jnp.concatenate([ka, kb], axis=0))
    return jnp.clip(_pearson(ranks[: ka.shape[0]], ranks[ka.shape[0] :]), -1.0, 1.0)


def kendall(a: ArrayLike, b: ArrayLike) -> Array:
    """Kendall's tau-b between two maps, per example, with ties.

    .. math:: \\tau_b = \\frac{n_c - n_d}{\\sqrt{(n_0 - n_1)(n_0 - n_2)}}

    with ``n_c``/``n_d`` the concordant/discordant pairs, ``n_0 = N(N-1)/2`` and ``n_1``, ``n_2``
    the pairs tied in ``a`` and in ``b``. It equals ``scipy.stats.kendalltau(...).statistic``
    (variant ``"b"``) and is computed like SciPy: sort lexicographically by ``(a, b)`` (here:
    integer ranks packed into one key), count discordant pairs as the inversions of ``b`` in that
    order, ties from run lengths. The inversions are counted by a bottom-up merge sort
    (``log2 N`` single-key integer sorts in a ``fori_loop``), i.e. O(N log^2 N) time and O(N)
    memory per example, so full-resolution maps are fine: 8 maps of 224 x 224 take 0.7-1 s on
    a busy 2-core CPU (SciPy's merge-sort C code: 0.2-0.3 s), where an O(N^2) count needs
    2.5e9 comparisons per map. Pair counts are 32-bit, which limits N to 65,536 values per
    example unless ``jax_enable_x64`` is on. Where SciPy returns NaN (a constant map), this
    returns 0. Values are compared in float32: float64 values closer than that count as ties.

    Args:
      a: ``[B, ...]`` real maps (flattened per example).
      b: maps of the same shape.

    Returns:
      ``[B]`` float32 correlations in [-1, 1].

    Example:
      >>> from xaijax.metrics import kendall
      >>> tau = kendall([[1.0, 2.0, 3.0, 4.0]], [[10.0, 20.0, 20.0, 0.0]])
      >>> print(f"{float(tau[0]):.4f}")  # scipy.stats.kendalltau gives -0.1826
      -0.1826

    References:
      Kendall, "The treatment of ties in ranking problems", Biometrika 1945; Knight, "A computer
      method for calculating Kendall's tau with ungrouped data", JASA 1966.
    """
    a, b = _check_pair(a, b)
    n = int(np.prod(a.shape[1:]))
    if n > KENDALL_MAX_SIZE_32BIT and not jax.config.jax_enable_x64:
        raise errors.InvalidArgumentError(
            f"`kendall` counts pairs in int32, which supports at most {KENDALL_MAX_SIZE_32BIT} "
            f"values per example, got {n}. Downsample the maps (e.g. `jax.image.resize`) or turn "
            "on `jax.config.update('jax_enable_x64', True)`."
        )
    return _kendall(a, b)


def _count_inversions(r: Array) -> Array:
    """Pairs i < j with r[i] > r[j] for integer ranks ``r`` in [0, N), by bottom-up merge sort.

    Level ``l`` merges the sorted blocks of ``s = 2**l`` values pairwise. All levels use the same
    shapes, so they run in one ``lax.fori_loop``: a single-key sort of packed
    ``(block, rank, half)`` integers merges every pair of blocks at once, the left half first among
    equal ranks. In a merged block, the j-th right-half value sits at position ``p = L + j`` where
    ``L`` is the number of left values <= it, so the left values greater than right ones number
    ``sum(s - L) = s*s + s*(s-1)/2 - sum(p)`` per block: no scan needed.
    """
    n = r.shape[0]
    levels = max(0, (n - 1).bit_length())
    size = 1 << levels
    x64 = jax.config.jax_enable_x64
    key_dtype = jnp.uint64 if x64 else jnp.uint32
    count_dtype = jnp.int64 if x64 else jnp.int32
    rank_bits = max(1, (n - 1).bit_length())
    # padding with the largest rank adds no inversion (it sits at the end)
    r = jnp.concatenate([r, jnp.full(size - n, n - 1, r.dtype)]).astype(key_dtype)
    pos = jnp.arange(size, dtype=key_dtype)
    one = jnp.asarray(1, key_dtype)
    mask = jnp.asarray((1 << rank_bits) - 1, key_dtype)

    def level(lev, state):
        r, total = state
        s = jnp.left_shift(one, lev.astype(key_dtype))
        block = pos // (2 * s)
        half = (pos // s) % 2
        key = jax.lax.sort((block << (rank_bits + 1)) | (r << 1) | half)
        r = (key >> 1) & mask
        right_pos = jnp.where((key & 1) == 1, pos - block * (2 * s), 0).sum(dtype=count_dtype)
        s = s.astype(count_dtype)
        per_block = s * s + s * (s - 1) // 2
        return r, total + (size // 2 // s) * per_block - right_pos

    _, total = jax.lax.fori_loop(0, levels, level, (r, jnp.zeros((), count_dtype)))
    return total


def _kendall_batch(kx: Array, ky: Array) -> Array:
    """Tau-b of integer keys ``[B, N]``, with single-operand sorts only (fast on CPU)."""
    n = kx.shape[-1]
    x64 = jax.config.jax_enable_x64
    count_dtype = jnp.int64 if x64 else jnp.int32
    pair_dtype = jnp.uint64 if x64 else jnp.uint32
    # min-ranks: how many values are strictly smaller (ties share it)
    rx = _count_below(kx, jnp.sort(kx, axis=-1))
    ry = _count_below(ky, jnp.sort(ky, axis=-1))
    # (x, y) pairs packed into one integer (n * n <= 2**32) and sorted: SciPy's lexsort
    pairs = jnp.sort(rx.astype(pair_dtype) * n + ry.astype(pair_dtype), axis=-1)
    rxy = _count_below(pairs, pairs)
    tot = jnp.asarray(n * (n - 1) // 2, count_dtype)
    # tied pairs: sum over values of (#equal values before it) = tot - sum of min-ranks
    xtie = tot - rx.sum(-1, dtype=count_dtype)
    ytie = tot - ry.sum(-1, dtype=count_dtype)
    ntie = tot - rxy.sum(-1, dtype=count_dtype)
    # discordant pairs = inversions of y's ranks in (x, y) order
    y_in_xy_order = (pairs % n).astype(jnp.int32)
    dis = jax.vmap(_count_inversions)(y_in_xy_order).astype(count_dtype)
    concordant = tot - xtie - ytie + ntie - dis  # in [0, tot]: no overflow
    num = (concordant - dis).astype(jnp.float32)
    den = jnp.sqrt((tot - xtie).astype(jnp.float32)) * jnp.sqrt((tot - ytie).astype(jnp.float32))
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0.0)


@jax.jit
def _kendall(a: Array, b: Array) -> Array:
    return jnp.clip(_kendall_batch(_order_keys(a), _order_keys(b)), -1.0, 1.0)


def top_k_overlap(a: ArrayLike, b: ArrayLike, k: int) -> Array:
    """Fraction of shared positions among the ``k`` largest values of two maps, per example.

    ``|topk(a) ∩ topk(b)| / k`` on the flattened maps (Quantus' ``TopKIntersection`` compares a
    map with a mask instead). Ties at the k-th value go to the lower flat index, as in
    ``jax.lax.top_k``. Rank on ``|a|`` by passing ``jnp.abs(a)``.

    Args:
      a: ``[B, ...]`` real maps (flattened per example).
      b: maps of the same shape.
      k: number of top positions, ``1 <= k <= N`` (N values per example).

    Returns:
      ``[B]`` float32 values in [0, 1].

    Example:
      >>> from xaijax.metrics import top_k_overlap
      >>> top_k_overlap([[5.0, 4.0, 3.0, 0.0]], [[5.0, 0.0, 3.0, 4.0]], 2).tolist()
      [0.5]
    """
    a, b = _check_pair(a, b)
    k = _validation.check_positive_int(k, "k")
    n = int(np.prod(a.shape[1:]))
    if k > n:
        raise errors.InvalidArgumentError(
            f"`k` must be at most the number of values per example ({n}), got {k}."
        )
    return _top_k_overlap(a, b, jnp.int32(k))


@jax.jit
def _top_k_overlap(a: Array, b: Array, k: Array) -> Array:
    # k stays a traced value: a new k compiles nothing
    ka, kb = _order_keys(a), _order_keys(b)
    members = _top_k_members(jnp.concatenate([ka, kb], axis=0), k)
    shared = (members[: ka.shape[0]] & members[ka.shape[0] :]).sum(-1)
    return shared.astype(jnp.float32) / k


def _top_k_members(keys: Array, k: Array) -> Array:
    """[B, N] bool: the k largest keys of each row, ties at the k-th value to the lower index."""
    n = keys.shape[-1]
    kth = jnp.sort(keys, axis=-1)[:, n - k, None]
    above = keys > kth
    at = keys == kth
    room = k - above.sum(-1, keepdims=True)
    return above | (at & (jnp.cumsum(at, axis=-1) <= room))
