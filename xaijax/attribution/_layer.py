"""Attribution to a named layer's output: any explainer, with the layer's activation as its input.

:func:`at_layer` is Captum's ``LayerIntegratedGradients`` / ``LayerGradientXActivation`` /
``LayerActivation``-style attribution as a transform of the existing factories: the model is
opened at ``layer`` (:meth:`xaijax.Model.open_layer`), and the explainer built by ``method``
sees a model whose *input* is that layer's activation ``a``. The layer's output is replaced by
``a`` through the layer access, which adds ``delta = a - act(x)`` to it, so everything after the
layer runs unchanged and everything before it runs once on ``x``. For text models the layer is
the embedding: integer token ids ``[B, L]`` have no gradient, their embeddings ``[B, L, D]`` do,
and IG, gradient x input, SmoothGrad and occlusion all work there and give per-token scores
``[B, L]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from xaijax import _model, errors
from xaijax import _validation as v
from xaijax._explainer import Explainer, options
from xaijax._model import LayerAccess, Model, as_model
from xaijax.attribution import _common as c
from xaijax.typing import Array, Params

#: How :func:`at_layer` reduces the layer's last (feature) axis.
REDUCTIONS = ("auto", "sum", "mean")


class LayerInput(NamedTuple):
    """The ``params`` the inner explainer of :func:`at_layer` sees: the model's parameters, the
    batch ``x`` and its activation at the layer (``[B, ...]``), so the layer model can run."""

    params: Params
    x: Array
    activation: Array


def layer_model(m: Model, access: LayerAccess) -> Model:
    """The model ``(LayerInput, a) -> outputs`` whose input ``a`` replaces the layer's output.

    ``a`` may hold ``k`` rows per example, example-major (``[B * k, ...]``: the path points,
    noisy copies or occluded windows of one example are consecutive, as every xaijax explainer
    lays them out); the examples' inputs are repeated to match.
    """

    def apply_fn(lp: LayerInput, a: Array):
        params, x, act = lp
        b = x.shape[0]
        if a.shape[0] % b:
            raise errors.InputShapeError(
                f"The layer model of {access.layer!r} got {a.shape[0]} activations for a batch "
                f"of {b} examples; it needs a multiple of {b} (k rows per example, "
                "example-major)."
            )
        k = a.shape[0] // b
        if k > 1:
            x = jnp.repeat(x, k, axis=0)
            act = jnp.repeat(act, k, axis=0)
        outputs, _ = access.run(params, x, a - act.astype(a.dtype))
        return outputs

    return Model(apply_fn=apply_fn, head=m.head, score=m.score, name=f"{m.name}@{access.layer}")


def _innermost(e: Explainer) -> Explainer:
    while e.inner is not None:
        e = e.inner
    return e


def _takes_baseline(e: Explainer) -> bool:
    fn = e.run
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    try:
        return "baseline" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def at_layer(
    method: Callable[[Model], Explainer],
    model: Any,
    layer: str,
    *,
    reduce: str | None = "auto",
    baseline_input: Any = None,
) -> Explainer:
    """Attributions to the output of a named layer, by any explainer factory.

    ``method(layer_model)`` builds the explainer (``xaijax.integrated_gradients``,
    ``xaijax.gradient_x_input``, ``lambda m: xaijax.smooth(xaijax.gradient(m))``,
    ``lambda m: xaijax.occlusion(m, window=1)``, ...) on a model whose input is the layer's
    activation ``a = act(x)``; it runs on ``a`` and its attributions ``[B, *layer shape]`` are
    reduced over the layer's last (feature) axis. For a text model whose layer is the embedding,
    ``x`` is token ids ``[B, L]``, ``a`` is ``[B, L, D]`` and the result is one score per token
    ``[B, L]``; this is Captum's ``LayerIntegratedGradients`` (``method=integrated_gradients``)
    and ``LayerGradientXActivation`` (``method=gradient_x_input``).

    * Integrated Gradients integrates from a baseline *activation* to ``act(x)``: zeros by default
      (the inner explainer's ``baseline="zero"``), or ``act(baseline_input)``, e.g. the
      activation of an all-pad sequence (``baseline_input=PAD_ID``; Captum's LayerIG default is
      the activation of an all-zero input). Completeness holds on that path:
      ``attr.sum() ~= f_t(x) - f_t(baseline)`` with ``f_t`` evaluated with the layer's output
      replaced by the baseline activation.
    * SmoothGrad adds its noise to the activation (relative to its range per example).
    * Occlusion slides its window over the layer's positions and fills every feature there with
      its ``fill`` (0 by default): for text, it *zeroes the embedding rows* of a window of tokens
      (layer side). To replace tokens by a pad or mask id (input side), use
      :func:`xaijax.surrogates.lime` / :func:`~xaijax.surrogates.kernel_shap` on the token ids
      with ``fill=PAD_ID``.

    Args:
      method: a factory ``model -> Explainer`` whose result is shaped like its input (result
        ``"map"``): ``xaijax.integrated_gradients``, ``xaijax.gradient``,
        ``xaijax.gradient_x_input``, ``xaijax.occlusion``, or a ``lambda``/``functools.partial``
        setting their options or wrapping them in ``xaijax.smooth``.
      model: an :class:`~xaijax.Model` with named layers (:func:`xaijax.from_linen`,
        :func:`xaijax.from_nnx`) or a ``flax.linen.Module``.
      layer: the layer's name (``"/"``-separated path; ``"embed"`` for the zoo's text model).
        An unknown name raises :class:`~xaijax.errors.UnknownLayerError` listing the layers.
      reduce: how the feature axis is reduced: ``"sum"`` (per-token scores that add up to the
        total attribution; Captum's convention for embeddings), ``"mean"``, ``"auto"`` (the
        default: ``"mean"`` when the innermost explainer is occlusion, whose map repeats one
        score over the features, else ``"sum"``), or ``None`` to keep ``[B, *layer shape]``.
      baseline_input: for explainers with a per-call ``baseline`` (Integrated Gradients): an
        input (a scalar such as a pad id, one example ``[*x.shape[1:]]`` or a batch shaped like
        ``x``, cast to ``x``'s dtype) whose activation at ``layer`` is the baseline. ``None``:
        the inner explainer's own baseline (zero activation for IG). Can be overridden per call.

    Returns:
      An :class:`~xaijax.Explainer` (``integer_inputs=True``) ``explain(params, x, target=None,
      *, baseline_input=None, key=..., **per_call) -> [B, *layer shape[:-1]]`` (result
      ``"spatial_map"``: ``[B, L]`` for token embeddings), or ``[B, *layer shape]`` (result
      ``"layer_map"``) with ``reduce=None``. ``target`` resolves to the class of highest score;
      ``key`` is required when the inner explainer is stochastic (``smooth``); other per-call
      arguments (e.g. IG's ``baseline=`` as an activation array) go to the inner explainer.

    Raises:
      UnknownLayerError: ``layer`` is not a layer of the model (NNX models: when built; Linen
        models: at the first call, whose ``x`` lists the layers).
      InvalidArgumentError: a model without named layers, a ``method`` that is not a factory or
        builds an explainer with another kind of result, ``baseline_input`` for an explainer
        without a ``baseline``, a layer output that is not a floating array with a batch axis.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn, xaijax
      >>> class Bag(nn.Module):  # mean of token embeddings, then a dense head
      ...     @nn.compact
      ...     def __call__(self, ids):
      ...         return nn.Dense(2, name="head")(nn.Embed(10, 4, name="embed")(ids).mean(1))
      >>> net, ids = Bag(), jnp.array([[1, 2, 3, 0]])
      >>> params = net.init(jax.random.key(0), ids)["params"]
      >>> lig = xaijax.at_layer(xaijax.integrated_gradients, xaijax.from_linen(net), "embed")
      >>> scores = lig(params, ids, jnp.array([1]))  # one score per token
      >>> scores.shape
      (1, 4)
      >>> logits = net.apply({"params": params}, ids)  # zero embeddings give the bias alone
      >>> bias = params["head"]["bias"]
      >>> bool(jnp.allclose(scores.sum(), logits[0, 1] - bias[1], atol=1e-5))
      True

    References:
      Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017 (IG on
      embeddings for text); Captum's ``LayerIntegratedGradients`` (Kokhlikyan et al., "Captum:
      A unified and generic model interpretability library for PyTorch", arXiv 2009.07896).
    """
    m = as_model(model, what="at_layer")
    if isinstance(method, Explainer) or not callable(method):
        got = method.name if isinstance(method, Explainer) else type(method).__name__
        raise errors.InvalidArgumentError(
            f"`at_layer` needs an explainer *factory* (a function model -> Explainer), got "
            f"{got!r}: it builds the explainer on the layer's model itself. Pass e.g. "
            "`xaijax.at_layer(xaijax.integrated_gradients, model, layer)`, or "
            "`xaijax.at_layer(lambda m: xaijax.integrated_gradients(m, steps=32), model, layer)`."
        )
    if reduce is not None:
        v.check_choice(reduce, "reduce", REDUCTIONS)
    access = m.open_layer(layer)
    inner = method(layer_model(m, access))
    if not isinstance(inner, Explainer):
        raise errors.InvalidArgumentError(
            f"`method` must return an xaijax Explainer, got {type(inner).__name__}: pass a "
            "factory such as `xaijax.integrated_gradients` or a lambda calling one."
        )
    if inner.result != "map":
        raise errors.InvalidArgumentError(
            f"`at_layer` reduces maps shaped like the layer's activation, but `{inner.name}` "
            f"returns {inner.result!r}. Use gradient, gradient_x_input, integrated_gradients, "
            "occlusion or smooth(...) of one of them; for LIME or KernelSHAP over tokens call "
            "`xaijax.surrogates.lime(model, num_segments=L, fill=PAD_ID)` on the token ids."
        )
    takes_baseline = _takes_baseline(_innermost(inner))
    if baseline_input is not None and not takes_baseline:
        raise _no_baseline(inner)
    how = reduce
    if reduce == "auto":
        how = "mean" if _innermost(inner).name == "occlusion" else "sum"

    @jax.jit
    def forward(params, x, target):
        outputs, act = access.run(params, x, None)
        return act, c.resolve(m.read_scores(outputs), target)

    activation = jax.jit(lambda params, x: access.run(params, x, None)[1])
    shapes: dict = {}

    def layer_shape(params, x):
        key = _model.shape_key((params, x))
        if key not in shapes:
            _, act = jax.eval_shape(lambda p, xx: access.run(p, xx, None), params, x)
            if (
                not hasattr(act, "shape")
                or len(act.shape) < 2
                or act.shape[0] != x.shape[0]
                or not jnp.issubdtype(act.dtype, jnp.floating)
            ):
                raise errors.InvalidArgumentError(
                    f"Layer {layer!r} outputs {getattr(act, 'dtype', '?')}"
                    f"{list(getattr(act, 'shape', ()))} for a batch of {x.shape[0]}: at_layer "
                    "needs a floating activation [B, ..., features]. Pick another layer "
                    "(`xaijax.layer_names(model, params, x)` lists them)."
                )
            if len(shapes) > 64:
                shapes.clear()
            shapes[key] = act
        return shapes[key]

    def check(params, x, target, kwargs):
        act = layer_shape(params, x)
        kwargs = dict(kwargs)
        base = kwargs.pop("baseline_input", None)
        if base is not None:
            if not takes_baseline:
                raise _no_baseline(inner)
            if "baseline" in kwargs:
                raise errors.InvalidArgumentError(
                    "Give either `baseline_input` (an input whose activation is the baseline) "
                    "or `baseline` (the baseline activation itself), not both."
                )
            kwargs["baseline_input"] = _check_baseline_input(base, x)
        if inner.check is not None:
            rest = {k: val for k, val in kwargs.items() if k not in ("key", "baseline_input")}
            zeros = jnp.zeros(act.shape, act.dtype)
            _, target, rest = inner.check(LayerInput(params, x, zeros), zeros, target, rest)
            kwargs = {**rest, **{k: kwargs[k] for k in ("key", "baseline_input") if k in kwargs}}
        return x, target, kwargs

    default_base = baseline_input

    def run(params, x, target=None, *, baseline_input=None, **kwargs) -> Array:
        act, target = forward(params, x, target)
        base = default_base if baseline_input is None else baseline_input
        if base is not None:
            ids = jnp.broadcast_to(jnp.asarray(base, x.dtype), x.shape)
            kwargs["baseline"] = activation(params, ids)
        attr = inner.run(LayerInput(params, x, act), act, target, **kwargs)
        if how == "sum":
            return jnp.sum(attr, axis=-1)
        if how == "mean":
            return jnp.mean(attr, axis=-1)
        return attr

    if baseline_input is not None:
        base_opt = baseline_input if isinstance(baseline_input, int | float) else "array"
    else:
        base_opt = None
    return Explainer(
        name=f"at_layer({inner.name}, {layer!r})",
        model=m,
        run=run,
        result="layer_map" if reduce is None else "spatial_map",
        options=options(layer=layer, method=inner.name, reduce=reduce, baseline_input=base_opt),
        inner=inner,
        stochastic=inner.stochastic,
        integer_inputs=True,
        check=check,
    )


def _no_baseline(inner: Explainer) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(
        f"`baseline_input` sets the baseline activation of explainers that take a `baseline` "
        f"(integrated_gradients); `{inner.name}` takes none. Drop `baseline_input`."
    )


def _check_baseline_input(base: Any, x: Array) -> Array:
    """A baseline input broadcastable to ``x`` (token ids: integers >= 0)."""
    arr = base if hasattr(base, "dtype") else jnp.asarray(base)
    integer = jnp.issubdtype(x.dtype, jnp.integer)
    if integer and not jnp.issubdtype(arr.dtype, jnp.integer):
        raise errors.InputDTypeError(
            f"`baseline_input` must be token ids (integers) like `x`, got {arr.dtype}: pass a "
            "pad or mask id such as `baseline_input=0`."
        )
    try:
        jax.eval_shape(lambda a: jnp.broadcast_to(a, x.shape), arr)
    except (TypeError, ValueError) as e:
        raise errors.InputShapeError(
            f"`baseline_input` of shape {list(arr.shape)} does not broadcast to `x` of shape "
            f"{list(x.shape)}: give a scalar (e.g. a pad id), one example or a batch like `x`."
        ) from e
    if integer and v.is_concrete(arr) and not bool(v.fetch(lambda a: jnp.all(a >= 0), arr)):
        raise errors.InvalidArgumentError(
            "`baseline_input` holds negative token ids: token ids are >= 0 (pass your pad or "
            "mask id)."
        )
    return arr
