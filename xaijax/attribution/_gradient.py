"""Vanilla gradient (saliency) and gradient x input."""

from __future__ import annotations

from typing import Any

import jax

from xaijax._explainer import Explainer
from xaijax._model import as_model
from xaijax.attribution import _common as c


def gradient(model: Any) -> Explainer:
    """Vanilla gradient ("saliency"): the gradient of the target score with respect to the input.

    .. math:: a(x) = \\partial f_t(x) / \\partial x

    Args:
      model: an :class:`~xaijax.Model` (its ``score``, the logits by default, is explained), a
        Linen module, or a bare ``apply_fn(params, x) -> logits [B, C]``.

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
    m = as_model(model, what="gradient")
    core = jax.jit(lambda params, x, target: c.input_gradient(m, params, x, target))
    return Explainer(name="gradient", model=m, run=core, result="map")


def gradient_x_input(model: Any) -> Explainer:
    """Gradient times input: ``x * df_t/dx`` (equal to IG with a zero baseline for linear models).

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn``.

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
    m = as_model(model, what="gradient_x_input")
    core = jax.jit(lambda params, x, target: x * c.input_gradient(m, params, x, target))
    return Explainer(name="gradient_x_input", model=m, run=core, result="map")
