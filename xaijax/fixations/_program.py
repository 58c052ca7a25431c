"""The traced model as a flat program: one list of equations with every call inlined.

``jax.make_jaxpr`` of a Flax model nests its equations inside ``jit``, ``custom_jvp_call``
(``jax.nn.relu``), ``custom_vjp_call``, ``closed_call`` and ``remat`` sub-jaxprs. The walker
needs the value of every intermediate and a single backward order, so :func:`build_program`
inlines all of them into one list of :class:`Step` over integer variable ids, and computes the
static facts the rules use (which values depend on the explained input, which are broadcast
statistics, which are flattened feature volumes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from jax.extend import core as jex_core

# Primitives whose sub-jaxpr is evaluated as if it were written inline. Their outputs are the
# sub-jaxpr's outputs, so inlining changes nothing in the forward values.
_CALL_PRIMITIVES = frozenset(
    {
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "named_call",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
        "remat",
        "remat2",
        "checkpoint",
    }
)
_JAXPR_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")

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


@dataclasses.dataclass(frozen=True)
class Literal:
    """A constant operand written into the jaxpr (``0.0`` in ``max x 0.0``)."""

    value: Any


@dataclasses.dataclass(frozen=True)
class Step:
    """One primitive application: ``outputs = primitive.bind(*inputs, **params)``.

    ``inputs`` holds variable ids (``int``) or :class:`Literal` constants; ``outputs`` holds
    variable ids (outputs the jaxpr drops get an id that nothing reads).
    """

    primitive: jex_core.Primitive
    params: dict[str, Any]
    inputs: tuple[int | Literal, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass
class Program:
    """A flat program with static per-variable facts.

    Attributes:
      steps: equations in forward order.
      avals: abstract value (shape, dtype) of every variable id.
      arg_ids: ids of the traced function's flat arguments (parameter leaves, then ``x``).
      const_ids / const_values: ids and values of constants captured by the jaxpr.
      out_ids: ids (or literals) of the outputs.
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

    steps: list[Step]
    avals: list[Any]
    arg_ids: list[int]
    const_ids: list[int]
    const_values: list[Any]
    out_ids: list[int | Literal]
    dependent: list[bool]
    statistic: list[bool]
    flattened: list[bool]
    residual_branch: list[bool] = dataclasses.field(default_factory=list)


def _sub_jaxpr(step_params: dict[str, Any]):
    for name in _JAXPR_PARAMS:
        sub = step_params.get(name)
        if isinstance(sub, jex_core.ClosedJaxpr):
            return sub.jaxpr, list(sub.consts)
        if isinstance(sub, jex_core.Jaxpr):
            return sub, []
    return None


class _Builder:
    def __init__(self):
        self.steps: list[Step] = []
        self.avals: list[Any] = []
        self.const_ids: list[int] = []
        self.const_values: list[Any] = []

    def new_var(self, aval) -> int:
        self.avals.append(aval)
        return len(self.avals) - 1

    def inline(self, jaxpr: jex_core.Jaxpr, consts: list[Any], in_ids: list[int | Literal]):
        env: dict[Any, int | Literal] = {}

        def read(v):
            if isinstance(v, jex_core.Literal):
                return Literal(v.val)
            return env[v]

        for v, c in zip(jaxpr.constvars, consts, strict=True):
            i = self.new_var(v.aval)
            self.const_ids.append(i)
            self.const_values.append(c)
            env[v] = i
        for v, i in zip(jaxpr.invars, in_ids, strict=True):
            env[v] = i
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            sub = _sub_jaxpr(eqn.params) if eqn.primitive.name in _CALL_PRIMITIVES else None
            if sub is not None:
                outs = self.inline(sub[0], sub[1], ins)
                for v, o in zip(eqn.outvars, outs, strict=True):
                    if not isinstance(v, jex_core.DropVar):
                        env[v] = o
                continue
            out_ids = []
            for v in eqn.outvars:
                i = self.new_var(v.aval)
                out_ids.append(i)
                if not isinstance(v, jex_core.DropVar):
                    env[v] = i
            self.steps.append(Step(eqn.primitive, dict(eqn.params), tuple(ins), tuple(out_ids)))
        return [read(v) for v in jaxpr.outvars]


def _size(aval) -> int:
    return int(np.prod(aval.shape, dtype=np.int64))


def _non_unit(shape) -> int:
    return sum(1 for s in shape if s != 1)


def build_program(closed: jex_core.ClosedJaxpr) -> Program:
    """Inlines every call of ``closed`` and computes the static facts (see :class:`Program`).

    The explained input is the jaxpr's last argument.
    """
    b = _Builder()
    arg_ids = [b.new_var(v.aval) for v in closed.jaxpr.invars]
    out_ids = b.inline(closed.jaxpr, list(closed.consts), list(arg_ids))
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


def read(values: list[Any], ref: int | Literal) -> Any:
    """The value of ``ref``: a literal's constant or a stored value."""
    return ref.value if isinstance(ref, Literal) else values[ref]


def evaluate(program: Program, leaves: list[Any], x1: Any) -> list[Any]:
    """Runs the flat program forward, returning every value (``None`` for unused slots)."""
    values: list[Any] = [None] * len(program.avals)
    for i, c in zip(program.const_ids, program.const_values, strict=True):
        values[i] = c
    for i, a in zip(program.arg_ids, [*leaves, x1], strict=True):
        values[i] = a
    for step in program.steps:
        outs = step.primitive.bind(*[read(values, i) for i in step.inputs], **step.params)
        if not step.primitive.multiple_results:
            outs = (outs,)
        for i, v in zip(step.outputs, outs, strict=True):
            values[i] = v
    return values
