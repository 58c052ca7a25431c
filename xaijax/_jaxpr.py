"""One jaxpr interpreter (private): a traced function as a flat program with every call inlined.

``jax.make_jaxpr`` of a Flax model nests its equations inside call-like primitives: ``jit``
(``pjit`` in older JAX), ``custom_jvp_call`` (``jax.nn.relu``), ``custom_vjp_call``,
``closed_call``, ``core_call`` and ``remat`` (``jax.checkpoint``) sub-jaxprs. Guided
backpropagation rewrites the ReLUs found at any depth and CNN Fixations needs the value of every
intermediate in one backward order, so both use :func:`flatten`, which inlines all of these into
one list of :class:`Step` over integer variable ids, and :func:`evaluate`, which runs the list
forward (optionally replacing some steps).

Inlining a call changes no forward value: its outputs are the sub-jaxpr's outputs. It drops
the custom derivative rules of ``custom_jvp_call`` / ``custom_vjp_call`` (the inlined body is
differentiated as written) and the rematerialisation of ``remat``. Control flow (``cond``,
``while``, ``scan``) is not a call: it stays one step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from jax.extend import core as jex_core

# The one table of call-like primitives: name -> the parameter holding the sub-jaxpr (a Jaxpr or
# a ClosedJaxpr). Old and new names are both listed so several JAX versions work.
CALL_PRIMITIVES: dict[str, str] = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "named_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "remat": "jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
}


@dataclasses.dataclass(frozen=True)
class Literal:
    """A constant operand written into the jaxpr (``0.0`` in ``max x 0.0``)."""

    value: Any


@dataclasses.dataclass(frozen=True)
class Step:
    """One primitive application: ``outputs = primitive.bind(*inputs, **params)``.

    ``inputs`` holds variable ids (``int``) or :class:`Literal` constants; ``outputs`` holds
    variable ids (outputs the jaxpr drops get an id that nothing reads). ``params`` are the
    equation's parameters as in the jaxpr; ``ctx`` its context (compute type, metadata), which
    :func:`evaluate` binds under; ``name`` the equation's name stack (a Flax Linen module's
    path, e.g. ``"AnchorNet/block3"``), for messages.
    """

    primitive: jex_core.Primitive
    params: dict[str, Any]
    inputs: tuple[int | Literal, ...]
    outputs: tuple[int, ...]
    ctx: Any = None
    name: str = ""


@dataclasses.dataclass
class Flat:
    """A traced function as one flat list of steps.

    Attributes:
      steps: equations in forward order, no call-like primitive among them.
      avals: abstract value (shape, dtype) of every variable id.
      arg_ids: ids of the traced function's flat arguments.
      const_ids / const_values: ids and values of constants captured by the jaxpr.
      out_ids: ids (or literals) of the outputs.
    """

    steps: list[Step]
    avals: list[Any]
    arg_ids: list[int]
    const_ids: list[int]
    const_values: list[Any]
    out_ids: list[int | Literal]


def sub_jaxpr(primitive_name: str, params: dict[str, Any]) -> tuple[Any, list[Any]] | None:
    """``(jaxpr, consts)`` called by a call-like equation, or ``None`` for any other one."""
    key = CALL_PRIMITIVES.get(primitive_name)
    sub = None if key is None else params.get(key)
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

    def inline(self, jaxpr, consts: Sequence[Any], in_ids: Sequence[int | Literal]):
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
            sub = sub_jaxpr(eqn.primitive.name, eqn.params)
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
            self.steps.append(
                Step(
                    eqn.primitive,
                    dict(eqn.params),
                    tuple(ins),
                    tuple(out_ids),
                    eqn.ctx,
                    str(getattr(eqn.source_info, "name_stack", "")),
                )
            )
        return [read(v) for v in jaxpr.outvars]


def flatten(closed: jex_core.ClosedJaxpr) -> Flat:
    """Inlines every call-like equation of ``closed`` (at any depth) into one list of steps."""
    b = _Builder()
    arg_ids = [b.new_var(v.aval) for v in closed.jaxpr.invars]
    out_ids = b.inline(closed.jaxpr, list(closed.consts), list(arg_ids))
    return Flat(
        steps=b.steps,
        avals=b.avals,
        arg_ids=arg_ids,
        const_ids=b.const_ids,
        const_values=b.const_values,
        out_ids=out_ids,
    )


def read(values: Sequence[Any], ref: int | Literal) -> Any:
    """The value of ``ref``: a literal's constant or a stored value."""
    return ref.value if isinstance(ref, Literal) else values[ref]


def bind(step: Step, invals: Sequence[Any]) -> list[Any]:
    """Applies one step to operand values, under the equation's context; one value per output."""
    params = step.primitive.get_bind_params(step.params)
    if step.ctx is None:
        out = step.primitive.bind(*invals, **params)
    else:
        with step.ctx.manager:
            out = step.primitive.bind(*invals, **params)
    return list(out) if step.primitive.multiple_results else [out]


#: ``rewrite(step, invals) -> outputs or None``: replaces a step's evaluation (``None``: bind it).
Rewrite = Callable[[Step, list[Any]], Sequence[Any] | None]


def evaluate(flat: Flat, args: Sequence[Any], rewrite: Rewrite | None = None) -> list[Any]:
    """Runs the flat program forward on ``args`` (the flat arguments), returning every value by
    id (``None`` for ids nothing wrote). ``rewrite`` may replace the evaluation of steps."""
    values: list[Any] = [None] * len(flat.avals)
    for i, c in zip(flat.const_ids, flat.const_values, strict=True):
        values[i] = c
    for i, a in zip(flat.arg_ids, args, strict=True):
        values[i] = a
    for step in flat.steps:
        invals = [read(values, i) for i in step.inputs]
        outs = None if rewrite is None else rewrite(step, invals)
        if outs is None:
            outs = bind(step, invals)
        for i, v in zip(step.outputs, outs, strict=True):
            values[i] = v
    return values
