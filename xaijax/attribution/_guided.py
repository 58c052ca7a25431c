"""Guided backpropagation by rewriting the model's jaxpr: no edits to the model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _jaxpr
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


def _is_zero_literal(ref) -> bool:
    if not isinstance(ref, _jaxpr.Literal):
        return False
    try:
        return bool(np.all(np.asarray(ref.value) == 0))
    except Exception:  # noqa: BLE001
        return False


def _relu_rewrite(relu: Callable[[Array], Array], avals: list) -> _jaxpr.Rewrite:
    """Evaluates every ReLU step (``max`` with a literal zero operand) as ``relu``; ``avals``
    are the flat program's abstract values (for the output shape)."""

    def rewrite(step: _jaxpr.Step, invals: list) -> list | None:
        if step.primitive.name != "max" or not any(_is_zero_literal(i) for i in step.inputs):
            return None
        operand = next(
            val for ref, val in zip(step.inputs, invals, strict=True) if not _is_zero_literal(ref)
        )
        return [relu(jnp.broadcast_to(operand, avals[step.outputs[0]].shape))]

    return rewrite


def replace_relu(fn: Callable, relu: Callable[[Array], Array] = guided_relu) -> Callable:
    """Returns ``fn`` with every ReLU (``max(x, 0)``, e.g. ``jax.nn.relu``) replaced by ``relu``.

    Works on the traced jaxpr with every call inlined (nested ``jit``, custom-derivative and
    ``jax.checkpoint`` calls: :mod:`xaijax._jaxpr`), so the model's code is not touched. ReLUs
    inside control flow (scan, while, cond) are left as is.
    """

    def wrapped(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        program = _jaxpr.flatten(closed)
        values = _jaxpr.evaluate(
            program, jax.tree_util.tree_leaves(args), _relu_rewrite(relu, program.avals)
        )
        out = [_jaxpr.read(values, ref) for ref in program.out_ids]
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
