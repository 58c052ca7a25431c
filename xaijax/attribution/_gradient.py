"""Vanilla gradient (saliency) and gradient x input."""

from __future__ import annotations

from collections.abc import Callable

import jax

from xaijax.attribution import _common as c
from xaijax.typing import ApplyFn, Array


def gradient(apply_fn: ApplyFn) -> Callable[..., Array]:
    """Vanilla gradient ("saliency"): the gradient of the target logit with respect to the input.

    .. math:: a(x) = \\partial f_t(x) / \\partial x

    Args:
      apply_fn: the model, ``apply_fn(params, x) -> logits [B, C]``.

    Returns:
      ``explain(params, x, target=None) -> [B, ...]``, the signed gradient, shaped like ``x``.
      ``target`` is ``[B]`` class indices or ``None`` for the predicted class. Take
      ``jnp.abs`` (Captum's ``Saliency(abs=True)``) or reduce channels for display.

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> w = jnp.array([[1., -2.], [3., 4.]])
      >>> explain = xaijax.gradient(lambda p, x: x @ p)
      >>> explain(w, jnp.ones((1, 2)), jnp.array([1])).tolist()
      [[-2.0, 4.0]]

    References:
      Simonyan, Vedaldi, Zisserman, "Deep Inside Convolutional Networks", ICLR-W 2014.
    """
    spec = c.ModelSpec(apply_fn)
    core = jax.jit(lambda params, x, target: c.input_gradient(apply_fn, params, x, target))

    def explain(params, x, target=None) -> Array:
        x, target = c.check_inputs(spec, params, x, target)
        return core(params, x, target)

    return c.attach(explain, apply_fn=apply_fn, name="gradient")


def gradient_x_input(apply_fn: ApplyFn) -> Callable[..., Array]:
    """Gradient times input: ``x * df_t/dx`` (equal to IG with a zero baseline for linear models).

    Args:
      apply_fn: the model, ``apply_fn(params, x) -> logits [B, C]``.

    Returns:
      ``explain(params, x, target=None) -> [B, ...]`` shaped like ``x``.

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> explain = xaijax.gradient_x_input(lambda p, x: x @ p)
      >>> explain(jnp.eye(2), jnp.array([[3., 5.]]), jnp.array([0])).tolist()
      [[3.0, 0.0]]

    References:
      Shrikumar et al., "Not Just a Black Box", arXiv 1605.01713, 2016.
    """
    spec = c.ModelSpec(apply_fn)
    core = jax.jit(lambda params, x, target: x * c.input_gradient(apply_fn, params, x, target))

    def explain(params, x, target=None) -> Array:
        x, target = c.check_inputs(spec, params, x, target)
        return core(params, x, target)

    return c.attach(explain, apply_fn=apply_fn, name="gradient_x_input")
