"""Reaching a named intermediate layer of a Flax model without editing the model.

For Flax Linen the layer's output is intercepted with ``nn.intercept_methods``; for Flax NNX the
model is split into ``(graphdef, state)`` with ``nnx.split`` and the layer's ``__call__`` is
wrapped on the merged copy. Either way the result is a pure function

    ``run(params, x, delta=None) -> (logits, activation)``

where ``delta`` (shaped like the activation) is added to the layer's output, so the gradient of
the logits with respect to ``delta`` at zero is the gradient with respect to the activation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from xaijax import errors
from xaijax.typing import Array

RunFn = Callable[[Any, Array, Array | None], tuple[Array, Array]]


class LayerAccess(NamedTuple):
    """A model opened at one layer.

    Attributes:
      run: ``run(params, x, delta=None) -> (logits, activation)``.
      apply_fn: ``apply_fn(params, x) -> logits``, the unmodified model.
      layer: the layer's name (``/``-separated path).
    """

    run: RunFn
    apply_fn: Callable[[Any, Array], Array]
    layer: str


def _variables(params) -> Mapping:
    """Accepts either the ``params`` collection or a full variables dict ``{"params": ...}``."""
    if isinstance(params, Mapping) and "params" in params:
        return params
    return {"params": params}


def _linen_names(model: nn.Module, params, x) -> list[str]:
    names: list[str] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and context.module.path:
            name = "/".join(context.module.path)
            if name not in names:
                names.append(name)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda p, xx: model.apply(_variables(p), xx), params, x)
    return names


def _unknown(layer: str, names: list[str]) -> errors.UnknownLayerError:
    listing = ", ".join(repr(n) for n in names) or "(none found)"
    return errors.UnknownLayerError(
        f"`layer`={layer!r} is not a layer of this model. Layers that exist: {listing}. "
        "Pass one of these names (nested layers use '/', e.g. 'block3/conv1')."
    )


def linen_layer(model: nn.Module, layer: str) -> LayerAccess:
    """Opens a Flax Linen model at the submodule named ``layer`` (its ``__call__`` output).

    Args:
      model: a ``flax.linen.Module``; it is called as ``model.apply({"params": params}, x)``
        (or ``model.apply(params, x)`` when ``params`` already holds a ``"params"`` key).
      layer: the submodule path, e.g. ``"block4"`` or ``"block4/conv2"``. If the submodule is
        called several times, its first call is used.

    Returns:
      A :class:`LayerAccess`.
    """

    def apply_fn(params, x):
        return model.apply(_variables(params), x)

    def run(params, x, delta=None):
        captured: list[Array] = []

        def interceptor(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if (
                not captured
                and context.method_name == "__call__"
                and "/".join(context.module.path) == layer
            ):
                if not isinstance(out, jax.Array | jax.core.Tracer) and not hasattr(out, "shape"):
                    raise errors.UnknownLayerError(
                        f"Layer {layer!r} returns {type(out).__name__}, not an array: pick a "
                        "layer whose output is a single feature map."
                    )
                captured.append(out)
                if delta is not None:
                    out = out + delta
            return out

        with nn.intercept_methods(interceptor):
            logits = model.apply(_variables(params), x)
        if not captured:
            raise _unknown(layer, _linen_names(model, params, x))
        return logits, captured[0]

    return LayerAccess(run=run, apply_fn=apply_fn, layer=layer)


def _nnx_get(module, layer: str):
    obj = module
    for part in layer.replace(".", "/").split("/"):
        if isinstance(obj, list | tuple) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            return None
    return obj if isinstance(obj, nnx.Module) else None


def _nnx_names(module) -> list[str]:
    return [
        "/".join(str(p) for p in path)
        for path, sub in nnx.iter_modules(module)
        if path and isinstance(sub, nnx.Module)
    ]


def nnx_layer(model: nnx.Module, layer: str) -> tuple[LayerAccess, Any]:
    """Opens a Flax NNX model at the submodule ``layer``; returns ``(access, params)``.

    ``params`` is the model's state from ``nnx.split``; pass it as the explainer's ``params``.
    The user's model object is never mutated: the layer is wrapped on a merged copy.
    """
    graphdef, state = nnx.split(model)
    if _nnx_get(model, layer) is None:
        raise _unknown(layer, _nnx_names(model))

    def apply_fn(params, x):
        return nnx.merge(graphdef, params)(x)

    def run(params, x, delta=None):
        copy = nnx.merge(graphdef, params)
        sub = _nnx_get(copy, layer)
        captured: list[Array] = []
        cls = type(sub)

        def hooked_call(self, *args, **kwargs):
            out = cls.__call__(self, *args, **kwargs)
            if self is sub and not captured:
                captured.append(out)
                if delta is not None:
                    out = out + delta
            return out

        sub.__class__ = type(cls.__name__, (cls,), {"__call__": hooked_call})
        logits = copy(x)
        return logits, captured[0]

    return LayerAccess(run=run, apply_fn=apply_fn, layer=layer), state


def from_nnx(model: nnx.Module) -> tuple[Callable[[Any, Array], Array], Any]:
    """Turns an NNX model into the xaijax contract: ``(apply_fn, params)`` via ``nnx.split``.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp, xaijax
      >>> model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
      >>> apply_fn, params = xaijax.from_nnx(model)
      >>> xaijax.gradient(apply_fn)(params, jnp.ones((1, 3))).shape
      (1, 3)
    """
    graphdef, state = nnx.split(model)
    return (lambda params, x: nnx.merge(graphdef, params)(x)), state


def layer_access(model, layer: str) -> LayerAccess:
    """Dispatches on the model type: Linen module, or an existing :class:`LayerAccess`."""
    if isinstance(model, LayerAccess):
        return model
    if isinstance(model, nn.Module):
        return linen_layer(model, layer)
    if isinstance(model, nnx.Module):
        raise errors.InvalidArgumentError(
            "For an NNX model use `access, params = xaijax.attribution.nnx_layer(model, layer)` "
            "and pass `access` as the model (and `params` to the explainer)."
        )
    raise errors.InvalidArgumentError(
        f"`model` must be a flax.linen.Module or a LayerAccess, got {type(model).__name__}."
    )


def layer_gradient(run: RunFn, params, x, target):
    """``(activation, d logit_t / d activation, target)`` for a layer opened by ``run``."""
    _, act_shape = jax.eval_shape(lambda p, xx: run(p, xx, None), params, x)

    def f(delta):
        logits, act = run(params, x, delta)
        t = target if target is not None else jnp.argmax(logits, -1).astype(jnp.int32)
        picked = jnp.take_along_axis(logits, t[:, None], axis=1)
        return jnp.sum(picked), (act, t)

    grads, (act, t) = jax.grad(f, has_aux=True)(jnp.zeros(act_shape.shape, act_shape.dtype))
    return act, grads, t
