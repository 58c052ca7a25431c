"""Guided backpropagation by rewriting the model's jaxpr: no edits to the model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from xaijax._explainer import Explainer
from xaijax._model import as_model
from xaijax.attribution import _common as c
from xaijax.typing import Array


@jax.custom_vjp
def guided_relu(x: Array) -> Array:
    """ReLU whose backward pass keeps only positive gradients at positive inputs."""
    return jnp.maximum(x, 0)


def _guided_fwd(x):
    return jnp.maximum(x, 0), x


def _guided_bwd(x, g):
    return (jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_fwd, _guided_bwd)

_SUBJAXPR_PARAMS = {
    "pjit": "jaxpr",
    "jit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "remat": "jaxpr",
    "checkpoint": "jaxpr",
}


def _is_zero_literal(var) -> bool:
    if not isinstance(var, jcore.Literal):
        return False
    try:
        return bool(np.all(np.asarray(var.val) == 0))
    except Exception:  # noqa: BLE001
        return False


def _is_relu(eqn) -> bool:
    return eqn.primitive.name == "max" and any(_is_zero_literal(a) for a in eqn.invars)


def _eval(jaxpr, consts, args, relu: Callable[[Array], Array]):
    env = {}

    def read(var):
        return var.val if isinstance(var, jcore.Literal) else env[var]

    for var, val in zip(jaxpr.constvars, consts, strict=True):
        env[var] = val
    for var, val in zip(jaxpr.invars, args, strict=True):
        env[var] = val
    for eqn in jaxpr.eqns:
        invals = [read(a) for a in eqn.invars]
        name = eqn.primitive.name
        if _is_relu(eqn):
            operand = next(
                val
                for var, val in zip(eqn.invars, invals, strict=True)
                if not _is_zero_literal(var)
            )
            outvals = [relu(jnp.broadcast_to(operand, eqn.outvars[0].aval.shape))]
        elif name in _SUBJAXPR_PARAMS and _SUBJAXPR_PARAMS[name] in eqn.params:
            sub = eqn.params[_SUBJAXPR_PARAMS[name]]
            inner, inner_consts = (sub.jaxpr, sub.consts) if hasattr(sub, "jaxpr") else (sub, ())
            outvals = _eval(inner, inner_consts, invals, relu)
        else:
            bind_params = eqn.primitive.get_bind_params(eqn.params)
            with eqn.ctx.manager:
                out = eqn.primitive.bind(*invals, **bind_params)
            outvals = out if eqn.primitive.multiple_results else [out]
        for var, val in zip(eqn.outvars, outvals, strict=True):
            env[var] = val
    return [read(var) for var in jaxpr.outvars]


def replace_relu(fn: Callable, relu: Callable[[Array], Array] = guided_relu) -> Callable:
    """Returns ``fn`` with every ReLU (``max(x, 0)``, e.g. ``jax.nn.relu``) replaced by ``relu``.

    Works on the traced jaxpr, recursing into nested jit and custom-derivative calls, so the
    model's code is not touched. ReLUs inside control flow (scan, while, cond) are left as is.
    """

    def wrapped(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat = jax.tree_util.tree_leaves(args)
        out = _eval(closed.jaxpr, closed.consts, flat, relu)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

    return wrapped


def guided_backprop(model: Any) -> Explainer:
    """Guided backpropagation: the gradient with the guided ReLU backward rule.

    At every ReLU the backward pass keeps a gradient only where both the forward input and the
    incoming gradient are positive. The rule is applied by rewriting the model's jaxpr (see
    :func:`replace_relu`), so any model built from ``jax.nn.relu``/``jnp.maximum(x, 0)`` works
    unedited. A model without ReLUs gets exactly its gradient.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn``.

    Returns:
      ``explain(params, x, target=None) -> [B, ...]`` shaped like ``x``.

    Example:
      >>> import jax, jax.numpy as jnp, xaijax
      >>> f = lambda p, x: jax.nn.relu(x @ p)
      >>> xaijax.guided_backprop(f)(jnp.array([[1., -1.], [1., 1.]]), jnp.ones((1, 2)),
      ...                           jnp.array([0])).tolist()
      [[1.0, 1.0]]

    References:
      Springenberg et al., "Striving for Simplicity: The All Convolutional Net", ICLR-W 2015.
    """
    m = as_model(model, what="guided_backprop")
    guided = dataclasses.replace(m, apply_fn=replace_relu(m.apply_fn))
    core = jax.jit(lambda params, x, target: c.input_gradient(guided, params, x, target))
    return Explainer(name="guided_backprop", model=m, run=core, result="map")
