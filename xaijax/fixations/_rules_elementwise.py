"""Backtracking rules of elementwise primitives: activations, casts and comparisons pass the
mask through; residual junctions, maxima and ``where`` route each point to one operand.
"""

from __future__ import annotations

import jax.numpy as jnp

from xaijax.fixations import _masks as mk
from xaijax.fixations._registry import Equation, _register, _register_points
from xaijax.typing import Array

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
    return mk.to_dependent(eqn, [out_masks[0]] * len(eqn.in_values))


def _route_statistic(eqn: Equation, mask: Array) -> list[Array | None] | None:
    """Both operands depend on the input and exactly one is a broadcast statistic: follow the
    other one (layer norm's ``x - mean``, ``x * rsqrt(var)``: normalisation passes through)."""
    if eqn.statistic[0] != eqn.statistic[1]:
        keep = 1 if eqn.statistic[0] else 0
        return mk.to_dependent(eqn, [mask if i == keep else None for i in range(2)])
    return None


def _split(mask: mk.Mask, a: Array, b: Array, first_if: str) -> tuple[mk.Mask, mk.Mask]:
    """``mask & first``, ``mask & ~first`` with ``first = a >= b`` (``first_if="ge"``) or
    ``a <= b`` (``"le"``), on points when the mask is given as points of ``a``'s shape."""
    compare = jnp.greater_equal if first_if == "ge" else jnp.less_equal
    if isinstance(mask, mk.Points) and jnp.shape(a) == mask.shape == jnp.shape(b):
        first = compare(
            mk.take_rows(a.reshape(-1), mask.index), mk.take_rows(b.reshape(-1), mask.index)
        )
        return mask._replace(valid=mask.valid & first), mask._replace(valid=mask.valid & ~first)
    mask = mk.dense(mask)
    first = compare(jnp.broadcast_to(a, mask.shape), jnp.broadcast_to(b, mask.shape))
    return mask & first, mask & ~first


@_register_points("add", "sub", "add_any")
def add(eqn: Equation, out_masks: tuple[mk.Mask, ...]) -> list[mk.Mask | None]:
    """Affine ``x + b`` passes the set through; at a residual junction (both operands depend on
    the input) each point follows the operand of larger contribution, the first on ties
    (``papers.md`` 6(b).6: the skip value against the residual value at the point)."""
    (mask,) = out_masks
    if not (eqn.dependent[0] and eqn.dependent[1]):
        return mk.to_dependent(eqn, [mask, mask])
    routed = _route_statistic(eqn, mask)
    if routed is not None:
        return routed
    if eqn.options.residual == "both":
        return mk.to_dependent(eqn, [mask, mask])
    a, b = eqn.in_values
    b = -b if eqn.primitive == "sub" else b
    return mk.to_dependent(eqn, list(_split(mask, a, b, "ge")))


@_register_points("mul", "div")
def mul(eqn: Equation, out_masks: tuple[mk.Mask, ...]) -> list[mk.Mask | None]:
    """Scaling passes the set through; a product of two input-dependent factors follows the
    feature map when the other factor is a broadcast statistic, else both."""
    (mask,) = out_masks
    if eqn.dependent[0] and eqn.dependent[1]:
        routed = _route_statistic(eqn, mask)
        if routed is not None:
            return routed
    return mk.to_dependent(eqn, [mask, mask])


@_register_points("max", "min")
def maximum(eqn: Equation, out_masks: tuple[mk.Mask, ...]) -> list[mk.Mask | None]:
    """``max(x, 0)`` (ReLU) passes the set through; a max (min) of two input-dependent operands
    follows the one selected, the first on ties."""
    (mask,) = out_masks
    if not (eqn.dependent[0] and eqn.dependent[1]):
        return mk.to_dependent(eqn, [mask, mask])
    a, b = eqn.in_values
    return mk.to_dependent(eqn, list(_split(mask, a, b, "ge" if eqn.primitive == "max" else "le")))


@_register("select_n")
def select_n(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """``where``: each point follows the case that was selected; the predicate is not followed."""
    (mask,) = out_masks
    which = jnp.broadcast_to(eqn.in_values[0], mask.shape).astype(jnp.int32)
    masks = [None] + [mask & (which == i) for i in range(len(eqn.in_values) - 1)]
    return mk.to_dependent(eqn, masks)


@_register("clamp")
def clamp(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """``clamp(lo, x, hi)`` passes the set to ``x``."""
    return mk.to_dependent(eqn, [None, out_masks[0], None])
