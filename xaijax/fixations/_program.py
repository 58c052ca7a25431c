"""The traced model as a flat program: one list of equations with every call inlined.

``jax.make_jaxpr`` of a Flax model nests its equations inside ``jit``, ``custom_jvp_call``
(``jax.nn.relu``), ``custom_vjp_call``, ``closed_call`` and ``remat`` sub-jaxprs. The walker
needs the value of every intermediate and a single backward order, so :func:`build_program`
inlines all of them into one list of :class:`Step` over integer variable ids (the project's one
jaxpr interpreter, :mod:`xaijax._jaxpr`, which guided backpropagation uses too), and computes the
static facts the rules use (which values depend on the explained input, which are broadcast
statistics, which are flattened feature volumes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from jax.extend import core as jex_core

from xaijax import _jaxpr
from xaijax._jaxpr import Literal, Step, read

__all__ = ["Literal", "Program", "Step", "build_program", "evaluate", "read"]

# Elementwise primitives through which the "statistic" and "flattened" facts propagate.
_SHAPE_KEEPING = frozenset(
    {
        "convert_element_type",
        "copy",
        "copy_p",
        "reduce_precision",
        "neg",
        "abs",
        "sqrt",
        "rsqrt",
        "square",
        "integer_pow",
        "exp",
        "log",
        "add",
        "sub",
        "mul",
        "div",
        "max",
        "min",
    }
)


@dataclasses.dataclass
class Program(_jaxpr.Flat):
    """A flat program (:class:`xaijax._jaxpr.Flat`: ``steps``, ``avals``, ``arg_ids`` (parameter
    leaves, then ``x``), ``const_ids``, ``const_values``, ``out_ids``) with static per-variable
    facts.

    Attributes:
      dependent: per id, whether the value depends on the explained input ``x``.
      statistic: per id, whether the value is a broadcast statistic of the input (a mean or
        variance spread back over the features, as in layer norm): such operands are not
        followed when the other operand of a binary op carries the features.
      flattened: per id, whether the value is a feature volume flattened to fewer axes (the
        ``x.reshape(B, -1)`` before a dense layer), which selects the paper's
        "fully connected layer on a spatial volume" rule.
      residual_branch: per id, whether the value lies inside a residual branch: it feeds one
        operand of a residual junction (an ``add`` or ``sub`` of two input-dependent feature
        maps) but not the other one, as the convolutions between a ResNet block's fork and
        its ``add`` do (the identity or projection shortcut is the other branch).
    """

    dependent: list[bool] = dataclasses.field(default_factory=list)
    statistic: list[bool] = dataclasses.field(default_factory=list)
    flattened: list[bool] = dataclasses.field(default_factory=list)
    residual_branch: list[bool] = dataclasses.field(default_factory=list)


def _size(aval) -> int:
    return int(np.prod(aval.shape, dtype=np.int64))


def _non_unit(shape) -> int:
    return sum(1 for s in shape if s != 1)


def build_program(closed: jex_core.ClosedJaxpr) -> Program:
    """Inlines every call of ``closed`` and computes the static facts (see :class:`Program`).

    The explained input is the jaxpr's last argument.
    """
    b = _jaxpr.flatten(closed)
    arg_ids, out_ids = b.arg_ids, b.out_ids
    n = len(b.avals)
    dependent = [False] * n
    statistic = [False] * n
    flattened = [False] * n
    dependent[arg_ids[-1]] = True
    for step in b.steps:
        dep_in = [i for i in step.inputs if isinstance(i, int) and dependent[i]]
        if not dep_in:
            continue
        name = step.primitive.name
        outs = list(step.outputs)
        for o in outs:
            dependent[o] = True
        if name == "broadcast_in_dim":
            src = step.inputs[0]
            grows = _size(b.avals[outs[0]]) > _size(b.avals[src])
            statistic[outs[0]] = grows or statistic[src]
        elif name == "reshape":
            src = step.inputs[0]
            statistic[outs[0]] = statistic[src]
            flattened[outs[0]] = _non_unit(b.avals[src].shape) > _non_unit(b.avals[outs[0]].shape)
        elif name in _SHAPE_KEEPING:
            for o in outs:
                statistic[o] = all(statistic[i] for i in dep_in)
                flattened[o] = any(flattened[i] for i in dep_in)
    return Program(
        steps=b.steps,
        avals=b.avals,
        arg_ids=arg_ids,
        const_ids=b.const_ids,
        const_values=b.const_values,
        out_ids=out_ids,
        dependent=dependent,
        statistic=statistic,
        flattened=flattened,
        residual_branch=_residual_branches(b.steps, n, dependent, statistic),
    )


def _residual_branches(
    steps: list[Step], n: int, dependent: list[bool], statistic: list[bool]
) -> list[bool]:
    """Per id: inside a residual branch (see :class:`Program`).

    For every junction (``add``/``sub`` of two input-dependent operands, neither a broadcast
    statistic), the input-dependent ancestors of each operand (the operand included) are
    collected; the values that are ancestors of exactly one operand form the two branches.
    """
    producer: dict[int, Step] = {}
    for step in steps:
        for o in step.outputs:
            producer[o] = step

    def ancestors(v: int) -> set[int]:
        seen: set[int] = set()
        stack = [v]
        while stack:
            u = stack.pop()
            if u in seen or not dependent[u]:
                continue
            seen.add(u)
            step = producer.get(u)
            if step is not None:
                stack.extend(i for i in step.inputs if isinstance(i, int))
        return seen

    branch = [False] * n
    for step in steps:
        if step.primitive.name not in ("add", "sub", "add_any") or len(step.inputs) != 2:
            continue
        a, b = step.inputs
        if not (isinstance(a, int) and isinstance(b, int) and dependent[a] and dependent[b]):
            continue
        if statistic[a] or statistic[b]:
            continue
        for v in ancestors(a) ^ ancestors(b):
            branch[v] = True
    return branch


def evaluate(program: Program, leaves: list[Any], x1: Any) -> list[Any]:
    """Runs the flat program forward, returning every value (``None`` for unused slots)."""
    return _jaxpr.evaluate(program, [*leaves, x1])
