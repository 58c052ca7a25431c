"""The model type: how to call a network and which score of its outputs is explained.

A :class:`Model` is a small frozen record of pure functions, in optax's manner:

* ``apply_fn(params, x) -> outputs``: the network on a batch ``x: [B, ...]``; ``outputs`` may be
  any pytree (one logits array, a tuple or dict of heads, ...);
* ``head``: which part of ``outputs`` holds the class scores ``[B, C]`` (``None`` for a single
  array, a dict key, a tuple index, a path tuple of those, or a function ``outputs -> [B, C]``);
* ``score``: what is explained of that head: ``"logit"`` (the default, in every family),
  ``"probability"`` (softmax), ``"log_probability"`` (log-softmax) or a function ``[B, C] ->
  [B, C]``;
* optional access to named layers (``open_layer``), for Grad-CAM and other layer methods.

A bare ``apply_fn(params, x) -> [B, C]`` is accepted wherever a model is, and means
``Model(apply_fn)``: the logits of one head. Flax models come in through :func:`from_linen` and
:func:`from_nnx`, which also open their layers without editing them.

The model's outputs are checked once per input shape, from ``jax.eval_shape`` (no computation):
an ``apply_fn`` that raises on the given ``params``/``x`` (params that do not fit, a single
example without its batch axis, a Linen model with BatchNorm given only its ``params``) raises
:class:`~xaijax.errors.ModelCallError`, and outputs whose scores are not ``[B, C]`` floats raise
:class:`~xaijax.errors.ModelOutputError`; both say how to fix it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors
from xaijax.typing import Array, Params, PyTree

SCORES = ("logit", "probability", "log_probability")

#: ``run(params, x, delta=None) -> (outputs, activation)``: the model opened at one layer;
#: ``delta`` (shaped like the activation) is added to the layer's output.
RunFn = Callable[[Params, Array, Array | None], tuple[PyTree, Array]]


class LayerAccess(NamedTuple):
    """A model opened at one named layer.

    Attributes:
      run: ``run(params, x, delta=None) -> (outputs, activation)``.
      layer: the layer's name (``/``-separated path).
    """

    run: RunFn
    layer: str


@dataclasses.dataclass(frozen=True)
class Model:
    """A network and the score of its outputs that explainers explain.

    Build one with :func:`model`, :func:`from_linen` or :func:`from_nnx`; every explainer factory
    also accepts a bare ``apply_fn`` (the logits of one head).

    Attributes:
      apply_fn: ``apply_fn(params, x) -> outputs`` on a batch.
      head: where the class scores are in ``outputs`` (see the module docstring).
      score: ``"logit"``, ``"probability"``, ``"log_probability"`` or a function.
      layers: ``layers(name) -> LayerAccess`` opening a named layer, or ``None``.
      layer_names: ``layer_names(params, x) -> list[str]``: the layers ``layers`` can open.
      name: a short description (for messages and manifests).
    """

    apply_fn: Callable[[Params, Array], PyTree]
    head: Hashable | Callable[[PyTree], Array] | None = None
    score: str | Callable[[Array], Array] = "logit"
    layers: Callable[[str], LayerAccess] | None = dataclasses.field(default=None, repr=False)
    layer_names: Callable[[Params, Array], list[str]] | None = dataclasses.field(
        default=None, repr=False
    )
    name: str = "model"

    def scores(self, params: Params, x: Array) -> Array:
        """The explained scores ``[B, C]`` of ``x``: the head's logits, probabilities..."""
        return self.read_scores(self.apply_fn(params, x))

    def read_scores(self, outputs: PyTree) -> Array:
        """Picks the head out of ``outputs`` and applies ``score``: ``[B, C]``."""
        logits = _pick(outputs, self.head)
        if callable(self.score):
            return self.score(logits)
        if self.score == "probability":
            return jax.nn.softmax(logits, axis=-1)
        if self.score == "log_probability":
            return jax.nn.log_softmax(logits, axis=-1)
        return logits

    def open_layer(self, layer: str) -> LayerAccess:
        """Opens the layer named ``layer``; raises a named error when the model has no layers."""
        if self.layers is None:
            raise errors.InvalidArgumentError(
                "This model gives no access to named layers (it was built from a bare function). "
                "Build it with `xaijax.from_linen(module)` or `xaijax.from_nnx(module)` to use "
                "layer methods such as grad_cam."
            )
        if not isinstance(layer, str) or not layer:
            raise errors.UnknownLayerError(
                f"`layer` must be a non-empty layer name, got {layer!r}."
            )
        return self.layers(layer)

    def with_score(self, score: str | Callable[[Array], Array]) -> Model:
        """The same model explaining another score (e.g. ``"probability"``)."""
        return dataclasses.replace(self, score=_check_score(score))

    def with_head(self, head: Hashable | Callable[[PyTree], Array] | None) -> Model:
        """The same model explaining another head of its outputs."""
        return dataclasses.replace(self, head=head)


def _check_score(score):
    if callable(score):
        return score
    if score not in SCORES:
        raise errors.InvalidArgumentError(
            f"`score` must be one of {list(SCORES)} or a function [B, C] -> [B, C], got {score!r}."
        )
    return score


def _pick(outputs: PyTree, head) -> Array:
    if head is None:
        return outputs
    if callable(head):
        return head(outputs)
    path = head if isinstance(head, tuple) else (head,)
    out = outputs
    for part in path:
        out = out[part]
    return out


def model(
    apply_fn: Callable[[Params, Array], PyTree],
    *,
    head: Hashable | Callable[[PyTree], Array] | None = None,
    score: str | Callable[[Array], Array] = "logit",
    name: str | None = None,
) -> Model:
    """A :class:`Model` from a pure function ``apply_fn(params, x) -> outputs``.

    Args:
      apply_fn: the network on a batch ``x: [B, ...]``; outputs may be any pytree.
      head: where the class scores are: ``None`` (the outputs are ``[B, C]``), a dict key, a
        tuple index, a tuple path of those, or a function ``outputs -> [B, C]``.
      score: ``"logit"`` (default), ``"probability"``, ``"log_probability"`` or a function.
      name: a short description.

    Returns:
      A :class:`Model` (no named layers: use :func:`from_linen` / :func:`from_nnx` for those).

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> two_heads = lambda p, x: {"class": x @ p, "attributes": -(x @ p)}
      >>> m = xaijax.model(two_heads, head="attributes", score="probability")
      >>> m.scores(jnp.eye(2), jnp.array([[0.0, 1.0]])).round(3).tolist()
      [[0.731, 0.269]]
    """
    if isinstance(apply_fn, Model):
        return dataclasses.replace(apply_fn, head=head, score=_check_score(score))
    if not callable(apply_fn):
        raise errors.InvalidArgumentError(
            f"`apply_fn` must be callable as apply_fn(params, x), got {type(apply_fn).__name__}."
        )
    return Model(
        apply_fn=apply_fn,
        head=head,
        score=_check_score(score),
        name=name or getattr(apply_fn, "__name__", "model"),
    )


def as_model(obj: Any, *, what: str = "this explainer") -> Model:
    """The :class:`Model` of ``obj``: a Model, a Linen module, or a bare ``apply_fn`` (logits)."""
    if isinstance(obj, Model):
        return obj
    from flax import linen as nn
    from flax import nnx

    if isinstance(obj, nn.Module):
        return from_linen(obj)
    if isinstance(obj, nnx.Module):
        raise errors.InvalidArgumentError(
            f"{what} got an NNX module: split it first with "
            "`model, params = xaijax.from_nnx(module)` and pass `model` (and `params` when "
            "calling)."
        )
    if callable(obj):
        return Model(apply_fn=obj, name=getattr(obj, "__name__", "model"))
    raise errors.InvalidArgumentError(
        f"{what} needs a model: an xaijax.Model, a flax.linen.Module, or a function "
        f"apply_fn(params, x) -> logits [B, C]; got {type(obj).__name__}."
    )


# --- Flax Linen --------------------------------------------------------------------------------


def _variables(params) -> Mapping:
    """Accepts either the ``params`` collection or a full variables dict ``{"params": ...}``."""
    if isinstance(params, Mapping) and "params" in params:
        return params
    return {"params": params}


def from_linen(
    module,
    *,
    head: Hashable | Callable[[PyTree], Array] | None = None,
    score: str | Callable[[Array], Array] = "logit",
    method: str | None = None,
    **apply_kwargs: Any,
) -> Model:
    """A :class:`Model` of a Flax Linen module, with its named layers open to layer methods.

    ``params`` passed to explainers may be the ``"params"`` collection or the whole variables
    dict (``{"params": ..., "batch_stats": ...}`` for a model with BatchNorm: pass that one, and
    ``train=False``-style flags through ``apply_kwargs``).

    Args:
      module: a ``flax.linen.Module``.
      head: where the class scores are in the module's outputs (see :func:`model`).
      score: ``"logit"`` (default), ``"probability"``, ``"log_probability"`` or a function.
      method: name of the module method to call (default ``__call__``).
      **apply_kwargs: keyword arguments of every ``module.apply`` call (e.g. ``train=False``).

    Returns:
      A :class:`Model` whose ``layers(name)`` intercepts the submodule ``name`` (a
      ``/``-separated path; its first call) with ``nn.intercept_methods``: no model edits.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn, xaijax
      >>> net = nn.Dense(3)
      >>> m = xaijax.from_linen(net, score="probability")
      >>> params = net.init(jax.random.key(0), jnp.ones((1, 2)))["params"]
      >>> m.scores(params, jnp.ones((4, 2))).shape
      (4, 3)
    """
    from flax import linen as nn

    if not isinstance(module, nn.Module):
        raise errors.InvalidArgumentError(
            f"`module` must be a flax.linen.Module, got {type(module).__name__}."
        )
    kwargs = dict(apply_kwargs)
    if method is not None:
        kwargs["method"] = method

    def apply_fn(params, x):
        return module.apply(_variables(params), x, **kwargs)

    def layer_names(params, x) -> list[str]:
        names: list[str] = []

        def interceptor(next_fun, args, kw, context):
            if context.method_name == "__call__" and context.module.path:
                name = "/".join(context.module.path)
                if name not in names:
                    names.append(name)
            return next_fun(*args, **kw)

        with nn.intercept_methods(interceptor):  # a fresh function: no tracing-cache hit
            jax.eval_shape(lambda p, xx: apply_fn(p, xx), params, x)
        return names

    def layers(layer: str) -> LayerAccess:
        def run(params, x, delta=None):
            captured: list[Array] = []

            def interceptor(next_fun, args, kw, context):
                out = next_fun(*args, **kw)
                if (
                    not captured
                    and context.method_name == "__call__"
                    and "/".join(context.module.path) == layer
                ):
                    if not hasattr(out, "shape"):
                        raise errors.UnknownLayerError(
                            f"Layer {layer!r} returns {type(out).__name__}, not an array: pick "
                            "a layer whose output is a single feature map."
                        )
                    captured.append(out)
                    if delta is not None:
                        out = out + delta
                return out

            with nn.intercept_methods(interceptor):
                outputs = apply_fn(params, x)
            if not captured:
                raise unknown_layer(layer, layer_names(params, x))
            return outputs, captured[0]

        return LayerAccess(run=run, layer=layer)

    return Model(
        apply_fn=apply_fn,
        head=head,
        score=_check_score(score),
        layers=layers,
        layer_names=layer_names,
        name=type(module).__name__,
    )


def unknown_layer(layer: str, names: list[str]) -> errors.UnknownLayerError:
    listing = ", ".join(repr(n) for n in names) or "(none found)"
    return errors.UnknownLayerError(
        f"`layer`={layer!r} is not a layer of this model. Layers that exist: {listing}. "
        "Pass one of these names (nested layers use '/', e.g. 'block3/conv1')."
    )


# --- Flax NNX ----------------------------------------------------------------------------------


def _nnx_get(module, layer: str):
    from flax import nnx

    obj = module
    for part in layer.replace(".", "/").split("/"):
        if isinstance(obj, list | tuple) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif part and hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            return None
    return obj if isinstance(obj, nnx.Module) and obj is not module else None


def from_nnx(
    module,
    *,
    head: Hashable | Callable[[PyTree], Array] | None = None,
    score: str | Callable[[Array], Array] = "logit",
) -> tuple[Model, Any]:
    """A :class:`Model` of a Flax NNX module and its ``params`` (the state from ``nnx.split``).

    Pass ``params`` to explainers. Named layers open on a merged copy of the module: the user's
    module object is never mutated.

    Args:
      module: an ``nnx.Module``.
      head: where the class scores are in the module's outputs (see :func:`model`).
      score: ``"logit"`` (default), ``"probability"``, ``"log_probability"`` or a function.

    Returns:
      ``(model, params)``.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp, xaijax
      >>> model, params = xaijax.from_nnx(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> xaijax.gradient(model)(params, jnp.ones((1, 3))).shape
      (1, 3)
    """
    from flax import nnx

    if not isinstance(module, nnx.Module):
        raise errors.InvalidArgumentError(
            f"`module` must be a flax.nnx.Module, got {type(module).__name__}."
        )
    graphdef, state = nnx.split(module)
    names = [
        "/".join(str(p) for p in path)
        for path, sub in nnx.iter_modules(module)
        if path and isinstance(sub, nnx.Module)
    ]

    def apply_fn(params, x):
        return nnx.merge(graphdef, params)(x)

    def layers(layer: str) -> LayerAccess:
        if _nnx_get(module, layer) is None:
            raise unknown_layer(layer, names)

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
            outputs = copy(x)
            if not captured:
                raise errors.UnknownLayerError(
                    f"Layer {layer!r} exists but was not called by the model's forward pass."
                )
            return outputs, captured[0]

        return LayerAccess(run=run, layer=layer)

    m = Model(
        apply_fn=apply_fn,
        head=head,
        score=_check_score(score),
        layers=layers,
        layer_names=lambda params, x: list(names),
        name=type(module).__name__,
    )
    return m, state


# --- the output check, once per input shape -----------------------------------------------------


def shape_key(tree) -> tuple:
    """A hashable key from the structure, shapes and dtypes of a pytree."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (treedef, tuple((tuple(np.shape(a)), str(getattr(a, "dtype", type(a)))) for a in leaves))


def _describe(tree) -> str:
    def one(leaf):
        return f"{getattr(leaf, 'dtype', type(leaf).__name__)}{list(np.shape(leaf))}"

    if isinstance(tree, Mapping):
        return "a dict {" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in tree.items()) + "}"
    if isinstance(tree, tuple | list):
        return f"a {type(tree).__name__} (" + ", ".join(_describe(v) for v in tree) + ")"
    return one(tree)


_checked: dict[tuple, int] = {}


def num_classes(m: Model, params: Params, x: Array) -> int:
    """Checks once per input shape, from ``eval_shape``, that ``m`` gives ``[B, C]`` float
    scores for ``x``; returns ``C``. Raises ModelCallError / ModelOutputError."""
    key = (id(m), m.apply_fn, m.head, m.score, shape_key((params, x)))
    if key in _checked:
        return _checked[key]
    try:
        outputs = jax.eval_shape(m.apply_fn, params, x)
    except errors.XaijaxError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the user's function, named
        hint = ""
        shape = tuple(np.shape(x))
        if "batch_stats" in str(e) or "Collection" in type(e).__name__:
            hint = (
                " The model has variable collections besides 'params' (e.g. BatchNorm's "
                "'batch_stats'): pass the whole variables dict {'params': ..., 'batch_stats': "
                "...} as `params`, and build the model with `xaijax.from_linen(module, "
                "train=False)` (or your module's flag for inference)."
            )
        else:
            hint = (
                " Check that `params` belong to this model and that `x` is a batch: for a single "
                f"example of shape {list(shape[1:]) if len(shape) > 1 else list(shape)} add a "
                "batch axis with `x[None]`."
            )
        raise errors.ModelCallError(
            f"Calling the model on `x` of shape {list(shape)} failed with "
            f"{type(e).__name__}: {_first_line(e).rstrip('.')}.{hint}"
        ) from e
    try:
        scores = jax.eval_shape(m.read_scores, outputs)
    except Exception as e:  # noqa: BLE001
        raise errors.ModelOutputError(
            f"The model returned {_describe(outputs)}, from which head={m.head!r} cannot be "
            f"read ({type(e).__name__}: {_first_line(e)}). Say which head holds the class "
            "scores [B, C]: `xaijax.model(apply_fn, head=...)` (a dict key, a tuple index or a "
            "function outputs -> [B, C])."
        ) from e
    b = int(np.shape(x)[0])
    if (
        not hasattr(scores, "shape")
        or len(scores.shape) != 2
        or scores.shape[0] != b
        or not jnp.issubdtype(scores.dtype, jnp.floating)
    ):
        advice = (
            "Say which head holds the class scores: `xaijax.model(apply_fn, head=...)`."
            if m.head is None and not hasattr(outputs, "shape")
            else "Wrap the model so it returns one row of class scores per example."
        )
        raise errors.ModelOutputError(
            f"The model's scores must be floats of shape [B, C] = [{b}, C]; it returned "
            f"{_describe(outputs)}"
            + (f" (head={m.head!r})" if m.head is not None else "")
            + f". {advice}"
        )
    if len(_checked) > 4096:
        _checked.clear()
    _checked[key] = int(scores.shape[1])
    return _checked[key]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""
