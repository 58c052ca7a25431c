"""Backtracking rules: one per primitive, from the masks of an equation's outputs to its operands.

A rule sees one equation of the traced model (its operand and output values for one example)
and boolean masks over its outputs (the discriminative neurons found so far), and returns a
boolean mask per operand: the neurons of that operand that drove the masked outputs, or ``None``
for an operand it does not follow (weights, biases, indices, statistics). Rules are pure
``jax.numpy`` code on fixed-size masks, so the whole walk is jittable and vmappable.

Inside the walker, the built-in rules of convolutions, pooling, reductions, elementwise ops,
junctions and reshapes also take and give masks as :class:`Points` (a fixed-size list of flat
indices), so consecutive compact rules skip the costly re-compaction of a dense mask
(:func:`walk_rule`); :func:`lookup` and registered rules see boolean arrays only.

The rules follow the authors' code (``val-iisc/cnn-fixations``, ``demo/layers.py``) as specified
in ``shared/papers.md`` section 6(b); the options of :class:`Options` choose between the authors'
behaviour and the PyTorch port's where the two disagree (section 6(f)).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xaijax import errors
from xaijax.fixations import _windows
from xaijax.typing import Array

CONV_POSITIONS = ("official", "center", "argmax_contribution", "argmax_activation")
DENSE_VOLUME = ("argmax", "positive")
SUM_POOL = ("argmax", "positive")
RESIDUAL = ("larger", "both")


class Options(NamedTuple):
    """The rule variants (``shared/papers.md`` 6(f)).

    Attributes:
      conv_position: where a convolution rule lands inside the window once the input channel
        ``c*`` of largest summed contribution is chosen. ``"official"`` (the authors' code):
        ``(c*, S*y, S*x)``, the window's top-left corner in padded coordinates read as an input
        position: the window centre for symmetric "same" padding, its corner without padding
        (clipped into the input); except for a convolution inside a residual branch (between
        the fork and the ``add`` of a residual junction), where the authors' ResNet code
        (``papers.md`` 6(b).6, 6(f).4) moves to the largest *activation* of channel ``c*`` in
        the window, as ``"argmax_activation"`` does. ``"center"``: the window centre in input
        coordinates; ``"argmax_contribution"`` (PyTorch port): the position of largest
        contribution ``x * w`` inside the window (padding excluded), in channel ``c*``;
        ``"argmax_activation"``: the position of largest activation ``x`` inside the window
        (padding excluded), in channel ``c*``, for every convolution.
      dense_volume: a dense layer applied to a flattened spatial volume keeps, per discriminative
        output, the single position of largest contribution (``"argmax"``, authors) or every
        position of positive contribution (``"positive"``, PyTorch port). On a plain vector the
        rule is always "every positive contribution".
      sum_pool: average and global average pooling (and any sum over axes) keep the largest
        input of the window, as max pooling does (``"argmax"``, authors), or every positive input
        (``"positive"``).
      residual: at ``add`` of two input-dependent branches (a residual junction) each point
        follows the branch with the larger value (``"larger"``, authors), or both (``"both"``).
    """

    conv_position: str = "official"
    dense_volume: str = "argmax"
    sum_pool: str = "argmax"
    residual: str = "larger"


VARIANTS: dict[str, Options] = {
    "official": Options(),
    "pytorch": Options(conv_position="argmax_contribution", dense_volume="positive"),
}


class Equation(NamedTuple):
    """What a rule sees of one equation, for a single example.

    Attributes:
      primitive: the primitive's name (``"conv_general_dilated"``).
      params: the primitive's parameters, as in the jaxpr.
      in_values: the operand values (the model's batch axis, of size 1, included).
      out_values: the output values.
      dependent: per operand, whether it depends on the explained input (only those can
        receive a mask; parameters and constants never do).
      statistic: per operand, whether it is a broadcast statistic of the input (layer-norm mean
        and variance, squeeze-excitation gates) rather than a feature map.
      flattened: per operand, whether it is a spatial volume flattened for a dense layer.
      options: the rule variants.
      out_bounds: per output, a static upper bound on the number of True entries of its mask
        (``None``: unknown). Convolution and pooling rules use it to work on a compact list of
        the discriminative neurons instead of the dense mask.
      residual_branch: whether the equation lies inside a residual branch (its output feeds
        one operand of a residual junction but not the other); the authors' ResNet rule moves
        the convolutions there to the largest activation (``conv_position="official"``).
    """

    primitive: str
    params: dict[str, Any]
    in_values: tuple[Array, ...]
    out_values: tuple[Array, ...]
    dependent: tuple[bool, ...]
    statistic: tuple[bool, ...]
    flattened: tuple[bool, ...]
    options: Options
    out_bounds: tuple[int, ...] | None = None
    residual_branch: bool = False


#: A rule: ``rule(eqn, out_masks) -> one mask (bool, operand's shape) or None per operand``.
Rule = Callable[[Equation, tuple[Array, ...]], Sequence[Array | None]]

_BUILTIN: dict[str, Rule] = {}
_USER: dict[str, Rule] = {}
# Built-in rules that also take and may return masks as Points (see walk_rule).
_POINTS: dict[str, Rule] = {}


def register_rule(primitive: Any, rule: Rule) -> None:
    """Registers (or replaces) the backtracking rule of a primitive.

    The rule is called during the backward walk, once per equation of that primitive whose
    outputs hold discriminative neurons, as ``rule(eqn, out_masks)``:

    * ``eqn`` is an :class:`Equation` with the operand and output values for one example,
      which operands depend on the input, the primitive's parameters and the rule options;
    * ``out_masks`` holds one boolean mask per output, of the output's shape;
    * it returns one entry per operand: a boolean mask of the operand's shape (the operand
      neurons that drove the masked outputs), or ``None`` to follow nothing into it.

    It must be pure ``jax.numpy`` code (it runs under ``jit`` and ``vmap``). A registered rule
    takes precedence over the built-in one for the same primitive.

    Args:
      primitive: a ``jax.extend.core.Primitive`` or its name.
      rule: the rule.

    Raises:
      InvalidArgumentError: ``primitive`` is neither a primitive nor a string, or ``rule`` is not
        callable.

    Example:
      >>> import jax
      >>> from xaijax import fixations
      >>> def pass_through(eqn, out_masks):  # for a custom elementwise primitive
      ...     return [out_masks[0] if d else None for d in eqn.dependent]
      >>> fixations.register_rule("my_activation", pass_through)
    """
    name = primitive if isinstance(primitive, str) else getattr(primitive, "name", None)
    if not isinstance(name, str) or not name:
        raise errors.InvalidArgumentError(
            f"`primitive` must be a jax Primitive or its name, got {primitive!r}."
        )
    if not callable(rule):
        raise errors.InvalidArgumentError(
            f"`rule` must be callable as rule(eqn, out_masks), got {type(rule).__name__}."
        )
    _USER[name] = rule


def lookup(name: str) -> Rule:
    """The rule of primitive ``name``; raises :class:`UnsupportedPrimitiveError` when none."""
    rule = _USER.get(name) or _BUILTIN.get(name)
    if rule is None:
        raise errors.UnsupportedPrimitiveError(
            f"CNN Fixations has no backtracking rule for the primitive `{name}`, which lies on "
            "the path from the logits to the input. Register one with "
            f"`xaijax.fixations.register_rule({name!r}, rule)` (see its docstring), or explain a "
            "model that avoids it."
        )
    return rule


def walk_rule(name: str) -> Rule:
    """The rule the walker calls for primitive ``name``: the built-in rule working on masks given
    as arrays or :class:`Points` where it has one (and no rule was registered for ``name``),
    else the rule of :func:`lookup` with every mask made dense first."""
    if name not in _USER and name in _POINTS:
        return _POINTS[name]
    rule = lookup(name)

    def on_dense(eqn: Equation, out_masks: tuple[Mask, ...]) -> Sequence[Array | None]:
        return rule(eqn, tuple(dense(m) for m in out_masks))

    return on_dense


def supported_primitives() -> tuple[str, ...]:
    """Names of the primitives that have a rule (built-in or registered), sorted."""
    return tuple(sorted(set(_BUILTIN) | set(_USER)))


def _register(*names: str):
    def deco(fn: Rule) -> Rule:
        for n in names:
            _BUILTIN[n] = fn
        return fn

    return deco


def _register_points(*names: str):
    """Registers a rule that takes masks as arrays or :class:`Points` and may return Points:
    the walker calls it as it is (:func:`walk_rule`), :func:`lookup` gives it with array
    masks out."""

    def deco(fn: Rule) -> Rule:
        @functools.wraps(fn)
        def on_arrays(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
            return [None if m is None else dense(m) for m in fn(eqn, out_masks)]

        for n in names:
            _POINTS[n] = fn
            _BUILTIN[n] = on_arrays
        return on_arrays

    return deco


# --- compact masks --------------------------------------------------------------------------------


class Points(NamedTuple):
    """A mask in compact form, as the walker passes it between the rules that support it.

    The True entries of the mask are ``index[valid]``: flat (row-major) indices into an operand
    of ``shape``. An index may occur several times (the set is what counts: every rule maps each
    neuron on its own, so a repeated neuron adds nothing). A convolution or pooling rule on the
    compact path returns its operand's mask as points, and the next such rule starts from them
    instead of compacting the dense mask again (the costly part of these rules on CPU).
    """

    index: Array
    valid: Array
    shape: tuple[int, ...]


Mask = Any  # a boolean array or Points


def dense(mask: Mask) -> Array:
    """The boolean array of a mask given as an array or as :class:`Points`."""
    if isinstance(mask, Points):
        return _mark(_size(mask.shape), mask.index, mask.valid).reshape(mask.shape)
    return mask


def _points(mask: Mask, capacity: int) -> Points:
    """The mask as at most ``capacity`` points; ``capacity`` must bound its number of True
    entries. Dense masks are compacted; longer lists of points lose their repeats first (by
    sorting the list: no array of the operand's size is touched)."""
    if isinstance(mask, Points):
        n = mask.index.shape[0]
        if n <= capacity:
            return mask
        size = _size(mask.shape)
        key = lax.sort(_select(mask.valid, mask.index, size))
        repeat = jnp.concatenate([jnp.zeros((1,), bool), key[1:] == key[:-1]])
        key = lax.sort(_select(~repeat, key, size))[:capacity]  # unique ones first
        ok = key < size
        return Points(_select(ok, key, 0), ok, mask.shape)
    last = mask.shape[-1]
    row, col, ok = _compact(mask.reshape(-1, last), capacity)
    return Points(row * last + col, ok, tuple(mask.shape))


def merge(a: Mask, b: Mask) -> Mask:
    """The union of two masks of one operand."""
    if isinstance(a, Points) and isinstance(b, Points):
        return Points(
            jnp.concatenate([a.index, b.index]), jnp.concatenate([a.valid, b.valid]), a.shape
        )
    return dense(a) | dense(b)


# --- helpers -------------------------------------------------------------------------------------


def _unbroadcast(mask: Array, shape: tuple[int, ...]) -> Array:
    """Reduces a mask over axes that an elementwise op broadcast from ``shape``."""
    if mask.shape == tuple(shape):
        return mask
    if len(shape) == 0:
        return jnp.any(mask)
    axes = tuple(i for i, (s, m) in enumerate(zip(shape, mask.shape, strict=True)) if s != m)
    return jnp.any(mask, axis=axes, keepdims=True).reshape(shape)


def _to_dependent(eqn: Equation, masks: Sequence[Mask | None]) -> list[Mask | None]:
    out: list[Mask | None] = []
    for v, d, m in zip(eqn.in_values, eqn.dependent, masks, strict=True):
        if not d or m is None:
            out.append(None)
        elif isinstance(m, Points) and m.shape == tuple(jnp.shape(v)):
            out.append(m)  # same shape: the points stay where they are
        else:
            out.append(_unbroadcast(dense(m), jnp.shape(v)))
    return out


def _lowest(dtype) -> Any:
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    return jnp.iinfo(dtype).min


def _one_hot(index: Array, n: int) -> Array:
    """``index[..., None] == arange(n)`` with explicit ranks (no implicit rank promotion)."""
    return index[..., None] == jnp.arange(n).reshape((1,) * index.ndim + (n,))


def _as_float(x: Array) -> Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _i32(v: int) -> Array:
    return jnp.asarray(v, jnp.int32)


def _div(a: Array, n: int) -> Array:
    """``a // n`` for non-negative int32 ``a`` (fewer ops than ``//``, which handles signs)."""
    return a if n == 1 else lax.div(a, _i32(n))


def _rem(a: Array, n: int) -> Array:
    """``a % n`` for non-negative int32 ``a``."""
    return jnp.zeros_like(a) if n == 1 else lax.rem(a, _i32(n))


def _clamp(a: Array, lo: int, hi: int) -> Array:
    return lax.clamp(_i32(lo), a, _i32(hi))


def _select(pred: Array, a: Array, b: Array) -> Array:
    """``where(pred, a, b)`` with ``b`` a scalar (no implicit broadcasting)."""
    return lax.select(pred, a, jnp.full(a.shape, b, a.dtype))


def _take_rows(a: Array, index: Array) -> Array:
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


# A rule works on a compact list of the discriminative neurons when the list's static capacity
# times the work per neuron stays below _SPARSE_BUDGET elements (per example) and the dense
# computation would exceed _DENSE_SMALL; else on dense masks (for small layers the dense code is
# as fast and much quicker to compile).
_SPARSE_BUDGET = 1 << 21
_DENSE_SMALL = 1 << 12


def _use_compact(capacity: int, size: int, compact_work: int, dense_work: int) -> bool:
    return capacity < size and compact_work <= _SPARSE_BUDGET and dense_work > _DENSE_SMALL


def _rank(v: Array) -> Array:
    """Inclusive running count of a 1-D mask, as products with triangular 0/1 matrices over
    blocks of 64 (recursively for the block totals). ``jnp.cumsum`` lowers to an associative
    scan that is slow on CPU and slow to compile."""
    n = v.shape[0]
    block = min(64, n)
    rows = -(-n // block)
    counts = v.astype(jnp.float32)
    padded = jnp.pad(counts, (0, rows * block - n)).reshape(rows, block)
    tri = jnp.asarray(np.triu(np.ones((block, block), np.float32)))
    within = jnp.dot(padded, tri, precision=lax.Precision.HIGHEST).astype(jnp.int32)
    if rows == 1:
        return within[0, :n]
    totals = within[:, -1]
    offsets = _rank(totals) - totals
    return (within + offsets[:, None]).reshape(-1)[:n]


def _first_true(v: Array, k: int) -> Array:
    """Indices of the first ``k`` True entries of a 1-D mask, padded with ``len(v)``.

    The ``j``-th True entry (``j`` from 1) sits at the number of entries whose running count is
    below ``j``; the running count never decreases, so a binary search over it finds all ``k``
    indices with ``log2(len(v))`` gathers of ``k`` elements (a scatter of ``len(v)`` updates, the
    direct way, is much slower on CPU, above all under ``vmap``).
    """
    n = v.shape[0]
    if n == 0:
        return jnp.zeros((k,), jnp.int32)
    rank = _rank(v)
    query = jnp.arange(1, k + 1, dtype=jnp.int32)
    found = jnp.zeros((k,), jnp.int32)  # entries known to have a running count below query
    step = 1 << (n.bit_length() - 1)
    while step:
        cand = found + step
        below = _take_rows(rank, jnp.minimum(cand, n) - 1) < query
        found = lax.select((cand <= n) & below, cand, found)
        step //= 2
    return found


def _compact(mask: Array, capacity: int) -> tuple[Array, Array, Array]:
    """The True entries of a ``[R, L]`` mask as ``(row, col, valid)``, each ``[capacity]``.

    Two levels keep the cost near ``R + capacity * L`` instead of ``R * L``: the rows holding a
    True entry first (at most ``capacity`` of them), then the entries of those rows.
    ``capacity`` must bound the number of True entries (the walker's static bounds do).
    """
    r, length = mask.shape
    cap_rows = min(r, capacity)
    if cap_rows == r:  # every row fits: no first level
        rows, sub = jnp.arange(r, dtype=jnp.int32), mask
    else:
        rows = _first_true(jnp.any(mask, axis=1), cap_rows)
        sub = _take_rows(mask, jnp.minimum(rows, r - 1)) & (rows < r)[:, None]
    cap = min(capacity, cap_rows * length)
    flat = _first_true(sub.reshape(-1), cap)
    valid = flat < cap_rows * length
    flat = _select(valid, flat, 0)
    row = _take_rows(rows, _div(flat, length))
    return _select(valid, row, 0), _rem(flat, length), valid


def _argmax(v: Array, axis: int) -> Array:
    """``jnp.argmax`` (the first maximum) as int32. Not ``max`` then ``v == max``: XLA may
    recompute ``v`` in two fusions with different rounding (fused multiply-adds), which can leave
    no element equal to the maximum; the variadic reduction computes both in one pass."""
    return jnp.argmax(v, axis=axis).astype(jnp.int32)


def _sum_small(a: Array, axis: int) -> Array:
    """``jnp.sum(a, axis)`` over a short axis as a chain of adds in index order (the order of
    XLA's reduction loop); XLA's CPU reduction over a middle axis is many times slower."""
    n = a.shape[axis]
    if n == 0 or n > 64:
        return jnp.sum(a, axis=axis)
    total = lax.index_in_dim(a, 0, axis, keepdims=False)
    for i in range(1, n):
        total = total + lax.index_in_dim(a, i, axis, keepdims=False)
    return total


def _pick(a: Array, index: Array) -> Array:
    """``a[..., index]`` along the last axis, ``index`` of ``a.shape[:-1]`` (or broadcastable);
    a one-hot reduction: a batched ``take_along_axis`` gather is slow on CPU under ``vmap``."""
    hit = _one_hot(index, a.shape[-1])
    return jnp.sum(jnp.where(hit, a, jnp.zeros((), a.dtype)), axis=-1)


def _unravel(index: Array, shape: Sequence[int]) -> list[Array]:
    out = []
    for n in reversed(tuple(shape)):
        out.append(_rem(index, n))
        index = _div(index, n)
    return out[::-1]


# --- elementwise ---------------------------------------------------------------------------------

_PASS_THROUGH = (
    "abs",
    "acos",
    "acosh",
    "and",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "cbrt",
    "ceil",
    "conj",
    "convert_element_type",
    "copy",
    "copy_p",
    "cos",
    "cosh",
    "eq",
    "erf",
    "erf_inv",
    "erfc",
    "exp",
    "exp2",
    "expm1",
    "floor",
    "ge",
    "gt",
    "imag",
    "integer_pow",
    "is_finite",
    "le",
    "lgamma",
    "digamma",
    "log",
    "log1p",
    "logistic",
    "lt",
    "ne",
    "neg",
    "nextafter",
    "not",
    "or",
    "pow",
    "real",
    "reduce_precision",
    "rem",
    "round",
    "rsqrt",
    "sharding_constraint",
    "sign",
    "sin",
    "sinh",
    "sqrt",
    "square",
    "tan",
    "tanh",
    "xor",
)


@_register_points(*_PASS_THROUGH)
def elementwise(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """Elementwise ops (activations, casts, comparisons) pass the set to every dependent operand."""
    return _to_dependent(eqn, [out_masks[0]] * len(eqn.in_values))


def _route_statistic(eqn: Equation, mask: Array) -> list[Array | None] | None:
    """Both operands depend on the input and exactly one is a broadcast statistic: follow the
    other one (layer norm's ``x - mean``, ``x * rsqrt(var)``: normalisation passes through)."""
    if eqn.statistic[0] != eqn.statistic[1]:
        keep = 1 if eqn.statistic[0] else 0
        return _to_dependent(eqn, [mask if i == keep else None for i in range(2)])
    return None


def _split(mask: Mask, a: Array, b: Array, first_if: str) -> tuple[Mask, Mask]:
    """``mask & first``, ``mask & ~first`` with ``first = a >= b`` (``first_if="ge"``) or
    ``a <= b`` (``"le"``), on points when the mask is given as points of ``a``'s shape."""
    compare = jnp.greater_equal if first_if == "ge" else jnp.less_equal
    if isinstance(mask, Points) and jnp.shape(a) == mask.shape == jnp.shape(b):
        first = compare(
            _take_rows(a.reshape(-1), mask.index), _take_rows(b.reshape(-1), mask.index)
        )
        return mask._replace(valid=mask.valid & first), mask._replace(valid=mask.valid & ~first)
    mask = dense(mask)
    first = compare(jnp.broadcast_to(a, mask.shape), jnp.broadcast_to(b, mask.shape))
    return mask & first, mask & ~first


@_register_points("add", "sub", "add_any")
def add(eqn: Equation, out_masks: tuple[Mask, ...]) -> list[Mask | None]:
    """Affine ``x + b`` passes the set through; at a residual junction (both operands depend on
    the input) each point follows the operand of larger contribution, the first on ties
    (``papers.md`` 6(b).6: the skip value against the residual value at the point)."""
    (mask,) = out_masks
    if not (eqn.dependent[0] and eqn.dependent[1]):
        return _to_dependent(eqn, [mask, mask])
    routed = _route_statistic(eqn, mask)
    if routed is not None:
        return routed
    if eqn.options.residual == "both":
        return _to_dependent(eqn, [mask, mask])
    a, b = eqn.in_values
    b = -b if eqn.primitive == "sub" else b
    return _to_dependent(eqn, list(_split(mask, a, b, "ge")))


@_register_points("mul", "div")
def mul(eqn: Equation, out_masks: tuple[Mask, ...]) -> list[Mask | None]:
    """Scaling passes the set through; a product of two input-dependent factors follows the
    feature map when the other factor is a broadcast statistic, else both."""
    (mask,) = out_masks
    if eqn.dependent[0] and eqn.dependent[1]:
        routed = _route_statistic(eqn, mask)
        if routed is not None:
            return routed
    return _to_dependent(eqn, [mask, mask])


@_register_points("max", "min")
def maximum(eqn: Equation, out_masks: tuple[Mask, ...]) -> list[Mask | None]:
    """``max(x, 0)`` (ReLU) passes the set through; a max (min) of two input-dependent operands
    follows the one selected, the first on ties."""
    (mask,) = out_masks
    if not (eqn.dependent[0] and eqn.dependent[1]):
        return _to_dependent(eqn, [mask, mask])
    a, b = eqn.in_values
    return _to_dependent(eqn, list(_split(mask, a, b, "ge" if eqn.primitive == "max" else "le")))


@_register("select_n")
def select_n(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """``where``: each point follows the case that was selected; the predicate is not followed."""
    (mask,) = out_masks
    which = jnp.broadcast_to(eqn.in_values[0], mask.shape).astype(jnp.int32)
    masks = [None] + [mask & (which == i) for i in range(len(eqn.in_values) - 1)]
    return _to_dependent(eqn, masks)


@_register("clamp")
def clamp(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """``clamp(lo, x, hi)`` passes the set to ``x``."""
    return _to_dependent(eqn, [None, out_masks[0], None])


# --- index bookkeeping ---------------------------------------------------------------------------


def _only_first(eqn: Equation, mask: Mask | None) -> list[Mask | None]:
    return _to_dependent(eqn, [mask] + [None] * (len(eqn.in_values) - 1))


@_register_points("reshape", "squeeze")
def reshape(eqn: Equation, out_masks: tuple[Mask, ...]) -> list[Mask | None]:
    """Reshapes move no value: the mask is reshaped back."""
    (mask,) = out_masks
    shape = tuple(jnp.shape(eqn.in_values[0]))
    if isinstance(mask, Points):  # row-major flat indices do not change
        return _only_first(eqn, Points(mask.index, mask.valid, shape))
    return _only_first(eqn, mask.reshape(shape))


@_register("transpose")
def transpose(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The mask is transposed back."""
    inv = tuple(int(i) for i in np.argsort(eqn.params["permutation"]))
    return _only_first(eqn, jnp.transpose(out_masks[0], inv))


@_register("rev")
def rev(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The mask is reversed back."""
    return _only_first(eqn, lax.rev(out_masks[0], tuple(eqn.params["dimensions"])))


@_register("broadcast_in_dim")
def broadcast_in_dim(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """An operand element is discriminative if any of its copies is."""
    (mask,) = out_masks
    shape = jnp.shape(eqn.in_values[0])
    dims = tuple(eqn.params["broadcast_dimensions"])
    mask = jnp.any(mask, axis=tuple(d for d in range(mask.ndim) if d not in dims))
    return _only_first(eqn, _unbroadcast(mask, shape))


@_register("concatenate")
def concatenate(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """Routes by range along the concatenated axis (Inception branches, DenseNet features)."""
    (mask,) = out_masks
    axis = eqn.params["dimension"]
    sizes = [jnp.shape(v)[axis] for v in eqn.in_values]
    bounds = np.cumsum([0] + sizes)
    parts = [
        lax.slice_in_dim(mask, int(bounds[i]), int(bounds[i + 1]), axis=axis)
        for i in range(len(sizes))
    ]
    return _to_dependent(eqn, parts)


@_register("split")
def split(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The pieces' masks are concatenated back."""
    return _only_first(eqn, jnp.concatenate(out_masks, axis=eqn.params["axis"]))


@_register("slice")
def slice_(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The mask is placed back at the sliced positions."""
    (mask,) = out_masks
    shape = jnp.shape(eqn.in_values[0])
    start = eqn.params["start_indices"]
    strides = eqn.params["strides"] or (1,) * len(shape)
    config = []
    for n, s0, st, o in zip(shape, start, strides, mask.shape, strict=True):
        covered = s0 + (o - 1) * st + 1 if o > 0 else s0
        config.append((int(s0), int(n - covered), int(st - 1)))
    return _only_first(eqn, lax.pad(mask, jnp.array(False), config))


@_register("pad")
def pad(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The padding is cut away again (padding values are constants, not followed)."""
    (mask,) = out_masks
    config = eqn.params["padding_config"]
    unpad = [(-int(lo), -int(hi), 0) for lo, hi, _ in config]
    m = lax.pad(mask, jnp.array(False), unpad)
    m = lax.slice(m, (0,) * m.ndim, m.shape, tuple(int(i) + 1 for _, _, i in config))
    return _to_dependent(eqn, [m, None])


@_register("dynamic_slice")
def dynamic_slice(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The mask is written back at the (clamped) start indices."""
    operand, *starts = eqn.in_values
    m = lax.dynamic_update_slice(jnp.zeros(jnp.shape(operand), bool), out_masks[0], starts)
    return _only_first(eqn, m)


@_register("dynamic_update_slice")
def dynamic_update_slice(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """Points inside the update follow the update, the others the operand."""
    (mask,) = out_masks
    operand, update, *starts = eqn.in_values
    upd = jnp.shape(update)
    into_operand = lax.dynamic_update_slice(mask, jnp.zeros(upd, bool), starts)
    into_update = lax.dynamic_slice(mask, starts, upd)
    return _to_dependent(eqn, [into_operand, into_update] + [None] * len(starts))


@_register("gather")
def gather(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """Embedding lookups and fancy indexing.

    Into the operand (gathered activations): the mask is scattered back to where each element
    was read. Into the indices (token ids looking up an embedding table): an index is
    discriminative if any element of the slice it selected is.
    """
    (mask,) = out_masks
    operand, indices = eqn.in_values
    dn = eqn.params["dimension_numbers"]
    into_operand = into_indices = None
    if eqn.dependent[0]:
        scatter_dn = lax.ScatterDimensionNumbers(
            update_window_dims=dn.offset_dims,
            inserted_window_dims=dn.collapsed_slice_dims,
            scatter_dims_to_operand_dims=dn.start_index_map,
            operand_batching_dims=dn.operand_batching_dims,
            scatter_indices_batching_dims=dn.start_indices_batching_dims,
        )
        hits = lax.scatter_add(
            jnp.zeros(jnp.shape(operand), jnp.int32),
            indices,
            mask.astype(jnp.int32),
            scatter_dn,
            mode=eqn.params["mode"],
        )
        into_operand = hits > 0
    if eqn.dependent[1]:
        per_index = jnp.any(mask, axis=tuple(dn.offset_dims))
        into_indices = jnp.broadcast_to(per_index[..., None], jnp.shape(indices))
    return _to_dependent(eqn, [into_operand, into_indices])


def _window_points(
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
        q = _clamp(q, 0, (n - 1) * bd)
        if bd > 1:
            valid = valid & (_rem(q, bd) == 0)
        flat = flat + _div(q, bd) * int(strides_in[a])
    return flat, valid


def _mark(size: int, index: Array, keep: Array) -> Array:
    """A flat boolean mask of ``size`` with ``index[keep]`` set."""
    where = _select(keep, index, size).reshape(-1, 1)
    dn = lax.ScatterDimensionNumbers(
        update_window_dims=(), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,)
    )
    ones = jnp.ones(where.shape[:1], bool)
    return lax.scatter(
        jnp.zeros((size,), bool), where, ones, dn, mode=lax.GatherScatterMode.FILL_OR_DROP
    )


# --- reductions and pooling ----------------------------------------------------------------------


def _keep_argmax(x: Array, mask: Mask, axes: Sequence[int], mode: str) -> Mask:
    """Per masked output of a reduction over ``axes``: its arg-max (``mode="max"``), arg-min
    (``"min"``), as one point per output, or every positive input (``"positive"``)."""
    axes = tuple(int(a) % x.ndim for a in axes)
    keep = tuple(d for d in range(x.ndim) if d not in axes)
    k = int(np.prod([x.shape[d] for d in axes], dtype=np.int64))
    om = dense(mask).reshape(-1)
    if mode != "positive" and axes and axes == tuple(range(axes[0], axes[0] + len(axes))):
        # Contiguous axes (global pooling): [pre, k, post], arg-max over the middle axis.
        pre = _size(x.shape[: axes[0]])
        post = _size(x.shape[axes[-1] + 1 :])
        x3 = x.reshape(pre, k, post)
        best = _argmax(x3 if mode == "max" else -_as_float(x3), 1).reshape(-1)  # [pre * post]
        base = (np.arange(pre)[:, None] * (k * post) + np.arange(post)[None, :]).reshape(-1)
        index = jnp.asarray(base, jnp.int32) + best * jnp.int32(post)
        return Points(index, om, tuple(x.shape))
    perm = keep + axes
    xt = jnp.transpose(x, perm).reshape(-1, k)
    if mode == "positive":
        m = om[:, None] & (xt > 0)
        m = m.reshape(tuple(x.shape[d] for d in perm))
        return jnp.transpose(m, tuple(int(i) for i in np.argsort(perm)))
    score = xt if mode == "max" else -_as_float(xt)
    best = _argmax(score, 1)  # [R]
    strides_in = np.cumprod((1,) + tuple(x.shape[::-1]))[:-1][::-1]
    base = np.zeros(xt.shape[0], np.int64)  # flat index of each output's first input
    if keep:
        rows = np.unravel_index(np.arange(xt.shape[0]), [x.shape[d] for d in keep])
        for r, d in zip(rows, keep, strict=True):
            base = base + r * int(strides_in[d])
    index = jnp.asarray(base, jnp.int32)
    for coord, d in zip(_unravel(best, [x.shape[d] for d in axes]), axes, strict=True):
        index = index + coord * int(strides_in[d])
    return Points(index, om, tuple(x.shape))


@_register_points("reduce_max", "reduce_min", "reduce_sum", "argmax", "argmin")
def reduce(eqn: Equation, out_masks: tuple[Mask, ...]) -> list[Mask | None]:
    """Reductions over axes. Max (min): the arg-max (arg-min) input, first on ties. Sum, hence
    global average pooling (``mean`` is ``reduce_sum`` then a division): the arg-max input as
    for max pooling (authors' code, ``sum_pool="argmax"``) or every positive input."""
    x = eqn.in_values[0]
    p = eqn.primitive
    mode = {"reduce_max": "max", "argmax": "max", "reduce_min": "min", "argmin": "min"}.get(p)
    if mode is None:
        mode = "max" if eqn.options.sum_pool == "argmax" else "positive"
    return _only_first(eqn, _keep_argmax(x, out_masks[0], eqn.params["axes"], mode))


@_register_points("reduce_window_max", "reduce_window_min", "reduce_window_sum")
def reduce_window(eqn: Equation, out_masks: tuple[Mask, ...]) -> list[Mask | None]:
    """Max pooling: each discriminative output goes to the arg-max of its window (first on ties;
    padding never wins). Average pooling: the same (authors), or every positive element of the
    window (``sum_pool="positive"``)."""
    x = eqn.in_values[0]
    p = eqn.params
    geometry = (
        tuple(p["window_dimensions"]),
        tuple(p["window_strides"]),
        tuple(tuple(int(v) for v in pr) for pr in p["padding"]),
        tuple(p["base_dilation"]),
        tuple(p["window_dilation"]),
    )
    if eqn.primitive == "reduce_window_min":
        x = -_as_float(x)
    positive = eqn.primitive == "reduce_window_sum" and eqn.options.sum_pool == "positive"
    mask = out_masks[0]
    size = _size(mask.shape)
    capacity = eqn.out_bounds[0] if eqn.out_bounds else size
    kt = _size(geometry[0])
    if _use_compact(capacity, size, capacity * kt, size * kt):
        # Compact path: the window of each discriminative output only.
        pts = _points(mask, capacity)
        coords = _unravel(pts.index, mask.shape)
        flat, valid = _window_points(coords, x.shape, *geometry)
        vals = _take_rows(x.reshape(-1), flat)
        if positive:
            keep = pts.valid[:, None] & valid & (vals > 0)
            m = Points(flat.reshape(-1), keep.reshape(-1), tuple(x.shape))
        else:
            best = _argmax(jnp.where(valid, vals, _lowest(vals.dtype)), 1)
            index = _pick(flat, best)
            m = Points(index, pts.valid & jnp.any(valid, axis=1), tuple(x.shape))
        return _only_first(eqn, m)
    mask = dense(mask)
    vals = _windows.window_values(x, *geometry, fill=_lowest(x.dtype))  # [K, *O]
    om = mask[None]
    if positive:
        sel = om & (vals > 0)
    else:
        best = jnp.argmax(vals, axis=0)
        sel = om & (jnp.arange(vals.shape[0]).reshape((-1,) + (1,) * x.ndim) == best[None])
    sel = _windows.interleave(sel.reshape(geometry[0] + sel.shape[1:]), x.ndim)
    return _only_first(
        eqn, _windows.place(sel, _windows.window_targets(x.shape, *geometry), x.shape)
    )


# --- dense and convolution -----------------------------------------------------------------------


def _dense_positive(a: Array, w: Array, om: Array) -> Array:
    """``[B, M, K] x [B, K, N]``, out mask ``[B, M, N]`` -> ``[B, M, K]``: ``a_k * w_kn > 0`` for
    some masked ``n``."""
    o = om.astype(jnp.float32)
    pos = jnp.einsum("bmn,bkn->bmk", o, (w > 0).astype(jnp.float32)) > 0
    neg = jnp.einsum("bmn,bkn->bmk", o, (w < 0).astype(jnp.float32)) > 0
    return ((a > 0) & pos) | ((a < 0) & neg)


def _dense_argmax(a: Array, w: Array, om: Array) -> Array:
    """Per masked ``(m, n)`` the single ``k`` of largest ``a_mk * w_kn`` (first on ties)."""
    contrib = _as_float(a)[:, :, :, None] * _as_float(w)[:, None, :, :]
    best = jnp.argmax(contrib, axis=2)  # [B, M, N]
    k = a.shape[-1]
    hit = _one_hot(best, k) & om[..., None]  # [B, M, N, K]
    return jnp.any(hit, axis=2)


@_register("dot_general")
def dot_general(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """Dense layers (any ``dot_general``): the inputs of positive contribution ``a * w > 0`` to a
    discriminative output (``papers.md`` 6(b).1). When the input is a flattened spatial volume,
    only the single position of largest contribution (6(b).2, ``dense_volume="argmax"``)."""
    (mask,) = out_masks
    lhs, rhs = eqn.in_values
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lc, rc, lb, rb = (tuple(int(d) for d in t) for t in (lc, rc, lb, rb))
    lf = tuple(d for d in range(lhs.ndim) if d not in lc + lb)
    rf = tuple(d for d in range(rhs.ndim) if d not in rc + rb)

    def prod(shape, dims):
        return int(np.prod([shape[d] for d in dims], dtype=np.int64))

    nb, nm, nk, nn_ = (
        prod(lhs.shape, lb),
        prod(lhs.shape, lf),
        prod(lhs.shape, lc),
        prod(rhs.shape, rf),
    )
    lperm, rperm = lb + lf + lc, rb + rc + rf
    a = jnp.transpose(lhs, lperm).reshape(nb, nm, nk)
    w = jnp.transpose(rhs, rperm).reshape(nb, nk, nn_)
    om = mask.reshape(nb, nm, nn_)

    def rule(flat: bool):
        vol = flat and eqn.options.dense_volume == "argmax"
        return _dense_argmax if vol else _dense_positive

    def back(m, shape, perm):
        m = m.reshape(tuple(shape[d] for d in perm))
        return jnp.transpose(m, tuple(int(i) for i in np.argsort(perm)))

    out: list[Array | None] = [None, None]
    if eqn.dependent[0]:
        out[0] = back(rule(eqn.flattened[0])(a, w, om), lhs.shape, lperm)
    if eqn.dependent[1]:
        wt, at, omt = (jnp.swapaxes(t, 1, 2) for t in (w, a, om))
        m = jnp.swapaxes(rule(eqn.flattened[1])(wt, at, omt), 1, 2)
        out[1] = back(m, rhs.shape, rperm)
    return out


def _conv_sparse(
    x: Array,
    w: Array,
    om: Array,
    capacity: int,
    **geometry: Any,
) -> Array:
    """Convolution rule for one image on a compact list of at most ``capacity`` discriminative
    outputs: the window of each (``[K, C/G]`` activations and weights) and nothing else."""
    o = w.shape[-1]
    pos, d, ok = _compact(om.reshape(-1, o), capacity)
    target, ok = _conv_points(x, w, pos, d, ok, om.shape[:-1], **geometry)
    return _mark(x.size, target, ok).reshape(x.shape)


def _conv_points(
    x: Array,
    w: Array,
    pos: Array,
    d: Array,
    ok: Array,
    out_spatial: tuple[int, ...],
    *,
    strides: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    lhs_dilation: tuple[int, ...],
    rhs_dilation: tuple[int, ...],
    position: str,
) -> tuple[Array, Array]:
    """Convolution rule for one image ``x [*S, C]`` on a list of discriminative outputs (flat
    spatial position ``pos``, channel ``d``, ``ok``, each ``[N]``, over ``[*out_spatial, O]``):
    the flat index into ``x`` each one goes to, and whether it goes anywhere."""
    spatial, c = x.shape[:-1], x.shape[-1]
    kshape, cg, o = w.shape[:-2], w.shape[-2], w.shape[-1]
    og = o // (c // cg)
    kt = _size(kshape)
    coords = _unravel(pos, out_spatial)
    flat, valid = _window_points(
        coords, spatial, kshape, strides, padding, lhs_dilation, rhs_dilation
    )
    group = _div(d, og)
    window = _take_rows(_as_float(x).reshape(-1, c), flat)  # [N, K, C]: whole rows
    if cg != c:
        window = window.reshape(*flat.shape, c // cg, cg)
        window = jnp.take_along_axis(window, group[:, None, None, None], axis=2)[:, :, 0]
    window = window * valid[..., None]  # padding reads zero
    weights = _take_rows(jnp.moveaxis(_as_float(w).reshape(kt, cg, o), -1, 0), d)  # [N, K, C/G]
    contrib = window * weights
    cstar = _argmax(_sum_small(contrib, 1), 1)  # [N]
    strides_in = np.cumprod((1,) + tuple(spatial[::-1]))[:-1][::-1]
    if position in ("argmax_contribution", "argmax_activation"):
        # Channel c* of every window element, read by scalar gathers (padding is masked out).
        channel = (group * cg + cstar)[:, None]
        per_k = _take_rows(_as_float(x).reshape(-1), flat * c + channel)  # [N, K]
        if position == "argmax_contribution":
            k_index = jnp.arange(kt, dtype=jnp.int32)[None, :] * (cg * o)
            wflat = _as_float(w).reshape(-1)  # [K, C/G, O] row-major
            per_k = per_k * _take_rows(wflat, k_index + (cstar * o + d)[:, None])
        best = _argmax(jnp.where(valid, per_k, -jnp.inf), 1)
        where = _pick(flat, best)
        ok = ok & jnp.any(valid, axis=1)
    else:
        where = jnp.zeros_like(pos)
        for a, (n, k, s, (lo, _), ld, rd) in enumerate(
            zip(spatial, kshape, strides, padding, lhs_dilation, rhs_dilation, strict=True)
        ):
            oi = coords[a] * s
            if position == "center":
                oi = _div(_clamp(oi + ((k - 1) // 2) * rd - lo, 0, (n - 1) * ld), ld)
            where = where + _clamp(oi, 0, n - 1) * int(strides_in[a])
    return where * c + group * cg + cstar, ok


def _conv_one(
    x: Array,
    w: Array,
    om: Array,
    *,
    strides: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    lhs_dilation: tuple[int, ...],
    rhs_dilation: tuple[int, ...],
    position: str,
) -> Array:
    """Convolution rule for one image: ``x [*S, C]``, ``w [*K, C/G, O]``, ``om [*S', O]``."""
    spatial, c = x.shape[:-1], x.shape[-1]
    kshape, cg, o = w.shape[:-2], w.shape[-2], w.shape[-1]
    d = len(spatial)
    g = c // cg
    og = o // g
    # Summed contribution of every input channel to every output, as one convolution with a
    # group per input channel: contrib[..., c, j] = sum_window x[., c] * w[., c, (group c) j].
    wg = w.reshape(*kshape, cg, g, og)
    wg = jnp.moveaxis(wg, -2, -3).reshape(*kshape, 1, c * og)
    spec = "".join("DHW"[3 - d :]) if d <= 3 else None
    dn = lax.conv_dimension_numbers(
        (1, *spatial, c), wg.shape, ("N" + spec + "C", spec + "IO", "N" + spec + "C")
    )
    contrib = lax.conv_general_dilated(
        _as_float(x)[None],
        _as_float(wg),
        strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dn,
        feature_group_count=c,
        precision=lax.Precision.HIGHEST,
    )[0]
    out_shape = contrib.shape[:-1]
    p = int(np.prod(out_shape, dtype=np.int64))
    contrib = contrib.reshape(p, g, cg, og)
    cstar = jnp.argmax(contrib, axis=2)  # [P, G, O/G]: channel of largest summed contribution
    keep = om.reshape(p, g, og)
    if position in ("argmax_contribution", "argmax_activation"):
        index, valid, _ = _windows.window_indices(
            spatial, kshape, strides, padding, lhs_dilation, rhs_dilation
        )
        kt = index.shape[1]
        patches = (_as_float(x).reshape(-1, c)[index] * valid[..., None]).reshape(p, kt, g, cg)
        wk = _as_float(w).reshape(kt, cg, g, og)
        pi = jnp.arange(p)[:, None, None, None]
        ki = jnp.arange(kt)[None, :, None, None]
        gi = jnp.arange(g)[None, None, :, None]
        di = jnp.arange(og)[None, None, None, :]
        cs = cstar[:, None, :, :]
        per_k = patches[pi, ki, gi, cs]  # [P, K, G, O/G]
        if position == "argmax_contribution":
            per_k = per_k * wk[ki, cs, gi, di]
        per_k = jnp.where(valid[:, :, None, None], per_k, -jnp.inf)
        best = jnp.argmax(per_k, axis=1)
        where = jnp.take_along_axis(jnp.asarray(index), best.reshape(p, g * og), axis=1)
        keep = keep & jnp.asarray(valid.any(axis=1))[:, None, None]
        channel = jnp.arange(g)[None, :, None] * cg + cstar
        size = int(np.prod(spatial, dtype=np.int64)) * c
        flat = where.reshape(p, g, og) * c + channel
        return _windows.scatter_any(size, flat, keep).reshape(x.shape)
    # The spatial position does not depend on the output channel: mark the chosen input
    # channels per output position, then move the positions back to the input.
    hit = jnp.any(_one_hot(cstar, cg) & keep[..., None], axis=2)  # [P, G, C/G]
    hit = hit.reshape(*out_shape, c)
    targets = []
    for ax, (n, k, s, (lo, _), ld, rd) in enumerate(
        zip(spatial, kshape, strides, padding, lhs_dilation, rhs_dilation, strict=True)
    ):
        oi = np.arange(out_shape[ax]) * s
        if position == "center":
            oi = (oi + ((k - 1) // 2) * rd - lo) // ld
        targets.append(np.clip(oi, 0, n - 1))
    return _windows.place(hit, targets, spatial)


@_register_points("conv_general_dilated")
def conv_general_dilated(eqn: Equation, out_masks: tuple[Mask, ...]) -> list[Mask | None]:
    """Convolutions in any number of spatial dimensions, with strides, padding, dilations and
    feature groups (depthwise too): per discriminative output ``(c, y, x)`` the input channel
    ``c*`` of largest summed contribution over the window (``papers.md`` 6(b).4), at the
    position chosen by ``conv_position``. Only the input (not the kernel) is followed."""
    p = eqn.params
    if p["batch_group_count"] != 1:
        raise errors.UnsupportedPrimitiveError(
            "CNN Fixations has no rule for `conv_general_dilated` with batch_group_count="
            f"{p['batch_group_count']} (a weight-gradient convolution). Register one with "
            "`xaijax.fixations.register_rule('conv_general_dilated', rule)`."
        )
    if not eqn.dependent[0]:
        return [None, None]
    lhs, rhs = eqn.in_values
    dn = p["dimension_numbers"]
    lperm = (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])
    rperm = (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])
    operm = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])
    d = lhs.ndim - 2
    geometry = dict(
        strides=tuple(p["window_strides"]),
        padding=tuple(tuple(int(v) for v in pr) for pr in p["padding"]),
        lhs_dilation=tuple(p["lhs_dilation"] or (1,) * d),
        rhs_dilation=tuple(p["rhs_dilation"] or (1,) * d),
        position=eqn.options.conv_position,
    )
    if geometry["position"] == "official" and eqn.residual_branch:
        geometry["position"] = "argmax_activation"  # the authors' ResNet rule, 6(b).6
    mask = out_masks[0]
    size = _size(mask.shape)
    capacity = eqn.out_bounds[0] if eqn.out_bounds else size
    per_output = _size(rhs.shape) // max(1, rhs.shape[dn.rhs_spec[0]])  # K * C_in / G
    compact = _use_compact(capacity, size, capacity * per_output, size * per_output)
    in_place = lperm == tuple(range(lhs.ndim)) and operm == lperm and lhs.shape[0] == 1
    if compact and in_place:  # channels last, one example: points in, points out
        pts = _points(mask, capacity)
        o = mask.shape[-1]
        target, ok = _conv_points(
            lhs[0],
            jnp.transpose(rhs, rperm),
            _div(pts.index, o),
            _rem(pts.index, o),
            pts.valid,
            tuple(mask.shape[1:-1]),
            **geometry,
        )
        return [Points(target, ok, tuple(lhs.shape)), None]
    if compact:
        one = functools.partial(_conv_sparse, capacity=capacity, **geometry)
    else:
        one = functools.partial(_conv_one, **geometry)
    mask = dense(mask)
    x, w, om = (jnp.transpose(v, perm) for v, perm in ((lhs, lperm), (rhs, rperm), (mask, operm)))
    if x.shape[0] == 1:  # one example (the walker's case): no inner vmap, whose batched
        m = one(x[0], w, om[0])[None]  # gathers and scatters are slow on CPU
    else:
        m = jax.vmap(one, in_axes=(0, None, 0))(x, w, om)
    return [jnp.transpose(m, tuple(int(i) for i in np.argsort(lperm))), None]


# --- static bounds on the number of discriminative neurons ---------------------------------------


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


# Rules that send each discriminative output to at most one operand element in total.
_PARTITION = frozenset(
    {"concatenate", "select_n", "dynamic_update_slice", "clamp", "max", "min", "split"}
)


def input_bounds(eqn: Equation, out_bounds: Sequence[int]) -> tuple[list[int], int]:
    """Static bounds for the backward walk: per operand, how many True entries its mask can
    hold, and how much the total over the walk's frontier can grow.

    Most built-in rules send every discriminative output neuron to at most one neuron of one
    operand (convolutions, max pooling, arg-max reductions, residual junctions, concatenation,
    index bookkeeping), so the number of neurons on the frontier of the walk cannot grow and a
    residual or dense block does not double it; the "every positive input" rules and rules
    that follow several operands can grow it. Registered rules are assumed unbounded.

    Returns:
      ``(bounds, growth)``: per-operand bounds (operand sizes at most) and the increase of the
      frontier total.
    """
    b = int(sum(out_bounds))
    sizes = [_size(jnp.shape(v)) for v in eqn.in_values]
    dep = eqn.dependent
    name = eqn.primitive
    if name in _USER or name not in _BUILTIN:
        return list(sizes), sum(n for n, d in zip(sizes, dep, strict=True) if d)
    per = [b] * len(sizes)
    factor, absolute = 1, 0
    both = dep[0] and len(dep) > 1 and dep[1]
    if name == "dot_general":
        argmax = eqn.options.dense_volume == "argmax"
        factor = 0
        for i, (f, n, d) in enumerate(zip(eqn.flattened, sizes, dep, strict=True)):
            if d and argmax and f:
                factor += 1
            elif d:
                per[i] = n
                absolute += n
    elif name in ("reduce_window_sum", "reduce_sum") and eqn.options.sum_pool == "positive":
        x = jnp.shape(eqn.in_values[0])
        if name == "reduce_sum":
            factor = _size([x[a] for a in eqn.params["axes"]])
        else:
            factor = _size(eqn.params["window_dimensions"])
        per[0] = b * factor
    elif name == "gather":
        vec = int(jnp.shape(eqn.in_values[1])[-1] or 1)
        per[1] = b * vec
        factor = int(dep[0]) + vec * int(dep[1])
    elif name in ("add", "sub", "add_any"):
        stat_routed = eqn.statistic[0] != eqn.statistic[1]
        factor = 2 if (both and not stat_routed and eqn.options.residual == "both") else 1
    elif name in ("mul", "div"):
        factor = 2 if (both and eqn.statistic[0] == eqn.statistic[1]) else 1
    elif name in _PARTITION or name in ("conv_general_dilated",):
        factor = 1
    else:  # elementwise: every dependent operand gets the whole set
        factor = max(1, sum(dep))
    growth = absolute + max(0, factor - 1) * b
    return [min(p, n) for p, n in zip(per, sizes, strict=True)], growth
