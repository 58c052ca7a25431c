"""The explainer type: a typed value of pure functions, callable on a batch.

Every xaijax method returns an :class:`Explainer`, called as

    ``explain(params, x, target=None, *, key=..., **per_call) -> result``

with ``x`` a batch ``[B, ...]`` and ``target`` ``[B]`` class indices (``None``: the class of
highest score). The value records what it was built from (``model``, ``name``, ``options``, the
wrapped ``inner`` explainer) so wrappers (``smooth``, ``gws``, ``multi_crop``, ...) read it
explicitly. Calling it runs the boundary checks once (shapes and dtypes; then NaN/Inf and target
ranges on the device, one boolean back), then ``run``, the unchecked pure function that wrappers
compose. Under the caller's ``jit``/``vmap`` the value checks cannot run: :func:`checked` keeps
them through ``jax.experimental.checkify``.

A function of your own becomes an explainer with :func:`explainer`. Wrappers accept an
:class:`Explainer`, ``jax.jit(explainer)`` and ``functools.partial(explainer, **keywords)``
(the same results as the unwrapped explainer); anything else raises
:class:`~xaijax.errors.NotAnExplainerError`, since a bare function does not say which model and
class it explains.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xaijax import _model, errors
from xaijax import _validation as v
from xaijax._model import Model
from xaijax.typing import Array, Params, PyTree

#: What each kind of explainer returns (the README's result table is built from the same words).
RESULTS = {
    "map": "an array shaped like `x` ([B, ...], attributions per input element)",
    "spatial_map": "an array [B, *spatial] (no channel axis: [B, H, W] images, [B, T, H, W] "
    "video, [B, L] tokens)",
    "segment_scores": "an array [B, S] (one score per segment)",
    "layer_map": "an array [B, *layer output] (per element of a layer's output, e.g. [B, L, D] "
    "token embeddings)",
    "surrogate": "a NamedTuple of arrays (coefficients [B, S], intercept, score, ...)",
    "mask": "a NamedTuple of arrays (map [B, H, W] saliency, mask [B, H, W] (1 keep), "
    "per-image statistics [B]: target_prob, mask_prob, drop, ...)",
    "contributions": "a NamedTuple of arrays (map [B, H, W] pixel map, per-location "
    "contributions [B, branch, h, w, C] whose sum plus bias is the logit, location_map, ...)",
}

#: The per-example arrays a dataset store holds beside an explainer's result (the pipeline
#: writes them; ``viz.show_results`` never draws them as maps).
STORE_EXTRAS = (
    "index",
    "target",
    "top_classes",
    "top_probabilities",
    "energy_in_mask",
    "pointing_game",
)

#: ``run(params, x, target, **per_call) -> result``: inputs already checked.
RunFn = Callable[..., PyTree]
#: ``check(params, x, target, per_call) -> (x, target, per_call)``: extra boundary checks.
CheckFn = Callable[[Params, Array, Array | None, dict], tuple[Array, Array | None, dict]]


@dataclasses.dataclass(frozen=True, eq=False)
class Explainer:
    """An explanation method bound to a model: ``explain(params, x, target=None, **kw)``.

    Attributes:
      name: the method, e.g. ``"integrated_gradients"`` or ``"smooth(gradient)"``.
      model: the :class:`~xaijax.Model` it explains (its ``score`` is what is explained).
      run: ``run(params, x, target, **per_call)``, the pure function without boundary checks;
        wrappers call it on inputs they have checked.
      result: a key of :data:`RESULTS`: what a call returns.
      options: the hyperparameters it was built with, as ``(name, value)`` pairs.
      inner: the explainer this one wraps, or ``None``.
      stochastic: whether a call needs a keyword-only ``key``.
      integer_inputs: whether ``x`` may be integer token ids ``[B, L]``.
      min_rank: the smallest rank of ``x`` (a batch of at least vectors: 2).
      check: extra boundary checks of this method, or ``None``.
      bound: per-call keyword arguments bound with ``functools.partial`` or :meth:`bind`.
    """

    name: str
    model: Model
    run: RunFn = dataclasses.field(repr=False)
    result: str = "map"
    options: tuple[tuple[str, Any], ...] = ()
    inner: Explainer | None = dataclasses.field(default=None, repr=False)
    stochastic: bool = False
    integer_inputs: bool = False
    min_rank: int = 2
    check: CheckFn | None = dataclasses.field(default=None, repr=False)
    bound: tuple[tuple[str, Any], ...] = ()

    @property
    def __name__(self) -> str:  # so jax.jit / functools.wraps name the wrapper well
        return self.name

    def __call__(self, params: Params, x: Any, target: Any = None, **kwargs: Any) -> PyTree:
        kwargs = {**dict(self.bound), **kwargs}
        x, target, kwargs = self.prepare(params, x, target, kwargs)
        out = self.run(params, x, target, **kwargs)
        if v.is_concrete(x) and all(v.is_concrete(a) for a in jax.tree_util.tree_leaves(out)):
            v.check_finite_output(out, f"`{self.name}`")
        return out

    def prepare(self, params: Params, x: Any, target: Any, kwargs: dict):
        """The boundary checks: ``(x, target, kwargs)`` checked and converted."""
        x = check_batch(x, integer=self.integer_inputs, min_rank=self.min_rank)
        target = v.check_target(target, x.shape[0])
        if self.stochastic:
            kwargs["key"] = v.check_key(kwargs.get("key"))
        elif "key" in kwargs:
            raise errors.InvalidArgumentError(
                f"`{self.name}` is deterministic and takes no `key`: drop it."
            )
        num = _model.num_classes(self.model, params, x)
        check_values(x, target, num)
        if self.check is not None:
            x, target, kwargs = self.check(params, x, target, kwargs)
        return x, target, kwargs

    def bind(self, **kwargs: Any) -> Explainer:
        """The same explainer with per-call keyword arguments bound (e.g. ``baseline=``)."""
        return dataclasses.replace(self, bound=tuple({**dict(self.bound), **kwargs}.items()))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={val!r}" for k, val in self.options)
        return f"Explainer({self.name}{', ' + opts if opts else ''})"


def check_batch(x: Any, *, integer: bool = False, min_rank: int = 2) -> Array:
    """Static checks of a batch ``x``: an array, at least ``min_rank``, floating (or integer
    token ids when ``integer``). Returns a jax array."""
    x = v.as_array(x, "x")
    if not integer and jnp.issubdtype(x.dtype, jnp.integer) and x.ndim == 2:  # token ids?
        raise errors.InputDTypeError(
            f"`x` must be a floating-point array, got {x.dtype}. Integer [B, L] = "
            f"{list(x.shape)} looks like token ids, which this method cannot perturb or "
            "differentiate: explain a token model at its embedding layer with "
            "`xaijax.at_layer(xaijax.integrated_gradients, model, 'embed')` (also gradient, "
            "gradient_x_input, smooth(...) and occlusion; one score per token [B, L]), or over "
            "the tokens with `xaijax.surrogates.lime(model, num_segments=L, fill=PAD_ID)` or "
            "`kernel_shap`. Numeric features: `x.astype(jnp.float32)`."
        )
    if x.ndim < min_rank:
        raise errors.InputShapeError(
            f"`x` must be a batch of rank >= {min_rank} ([B, ...]), got shape {list(x.shape)}. "
            "The first axis is the batch: for a single example use `x[None]`."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating) and not (
        integer and jnp.issubdtype(x.dtype, jnp.integer)
    ):
        if jnp.issubdtype(x.dtype, jnp.integer):
            advice = (
                "For uint8 images or videos use `x.astype(jnp.float32) / 255.0`; other "
                "integers: `x.astype(jnp.float32)`."
            )
        else:
            advice = "Cast it with `x.astype(jnp.float32)`."
        raise errors.InputDTypeError(f"`x` must be a floating-point array, got {x.dtype}. {advice}")
    if x.shape[0] == 0:
        raise errors.InputShapeError(
            f"`x` is an empty batch (shape {list(x.shape)}): give at least one example."
        )
    return jnp.asarray(x)


@jax.jit
def _batch_ok(x, target, num_classes):
    ok = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
    if target is not None:
        ok = ok & jnp.all((target >= 0) & (target < num_classes))
    return ok


def check_values(x: Array, target: Array | None, num_classes: int) -> None:
    """Value checks of a concrete batch, on its device: one boolean comes back."""
    if not v.is_concrete(x) or (target is not None and not v.is_concrete(target)):
        return
    if bool(v.fetch(_batch_ok, x, target, num_classes)):
        return
    v.check_finite(x, "x")  # the error path: say what is wrong
    v.check_target_in_range(target, num_classes)


def resolve_target(m: Model, params: Params, x: Array, target: Array | None) -> Array:
    """``target``, or the class of highest score when ``None`` ([B] int32; traceable)."""
    if target is not None:
        return target
    return jnp.argmax(m.scores(params, x), axis=-1).astype(jnp.int32)


def explainer(
    fn: Callable[..., PyTree],
    model: Any,
    *,
    name: str | None = None,
    result: str = "map",
    stochastic: bool = False,
    integer_inputs: bool = False,
) -> Explainer:
    """Makes a function of your own an :class:`Explainer`, so wrappers can compose it.

    Args:
      fn: ``fn(params, x, target, **kwargs) -> result`` on a checked batch; ``target`` is
        ``[B]`` ints or ``None`` (wrappers such as ``smooth`` always pass resolved targets).
      model: the model ``fn`` explains (a :class:`~xaijax.Model`, a Linen module or a bare
        ``apply_fn``): wrappers read the class to explain from its scores.
      name: a name for messages; defaults to ``fn.__name__``.
      result: a key of :data:`RESULTS`.
      stochastic: whether ``fn`` takes a keyword-only ``key``.
      integer_inputs: whether ``x`` may be integer token ids.

    Example:
      >>> import jax, jax.numpy as jnp, xaijax
      >>> f = lambda p, x: x @ p
      >>> def my_grad(params, x, target):
      ...     return jax.grad(lambda xx: f(params, xx)[jnp.arange(len(x)), target].sum())(x)
      >>> sg = xaijax.smooth(xaijax.explainer(my_grad, f), num_samples=4)
      >>> sg(jnp.eye(2), jnp.ones((1, 2)), jnp.array([1]), key=jax.random.key(0)).tolist()
      [[0.0, 1.0]]
    """
    if not callable(fn):
        raise errors.InvalidArgumentError(f"`fn` must be callable, got {type(fn).__name__}.")
    if result not in RESULTS:
        raise errors.InvalidArgumentError(
            f"`result` must be one of {sorted(RESULTS)}, got {result!r}."
        )
    m = _model.as_model(model, what="xaijax.explainer")
    return Explainer(
        name=name or getattr(fn, "__name__", "explainer"),
        model=m,
        run=fn,
        result=result,
        stochastic=stochastic,
        integer_inputs=integer_inputs,
    )


def as_explainer(obj: Any, wrapper: str) -> Explainer:
    """The :class:`Explainer` a wrapper was handed: the value itself, ``jax.jit`` of one, or
    ``functools.partial`` of one with keyword arguments; anything else is a named error."""
    if isinstance(obj, Explainer):
        return obj
    inner = getattr(obj, "__wrapped__", None)
    if isinstance(inner, Explainer) and hasattr(obj, "lower"):  # jax.jit(explainer)
        return inner
    if isinstance(obj, functools.partial):
        base = as_explainer(obj.func, wrapper)
        if obj.args:
            raise errors.NotAnExplainerError(
                f"`{wrapper}` was handed functools.partial({base.name}, ...) with positional "
                "arguments bound; bind per-call options by keyword only "
                f"(functools.partial({base.name}, baseline=...)) or use `explainer.bind(...)`."
            )
        return base.bind(**obj.keywords)
    name = getattr(obj, "__name__", type(obj).__name__)
    raise errors.NotAnExplainerError(
        f"`{wrapper}` needs an xaijax Explainer (what xaijax.gradient(model), "
        f"xaijax.integrated_gradients(model), ... return), got {name!r}. A bare function does "
        "not say which model it explains, so the wrapper cannot resolve the target class. Wrap "
        f"it with `xaijax.explainer(fn, model)` and pass that to `{wrapper}`."
    )


def checked(explain: Any) -> Callable[..., tuple[Any, PyTree]]:
    """The explainer with its value checks kept under ``jit``, through ``checkify``.

    Returns ``f(params, x, target=None, **kw) -> (error, result)``: jit it as you like, then
    call ``error.throw()`` (a ``JaxRuntimeError`` naming the failed check) or inspect
    ``error.get()``. Checks: ``x`` finite, ``target`` in range, the result finite.

    Example:
      >>> import jax, jax.numpy as jnp, xaijax
      >>> f = jax.jit(xaijax.checked(xaijax.gradient(lambda p, x: x @ p)))
      >>> err, g = f(jnp.eye(2), jnp.array([[jnp.nan, 1.0]]))
      >>> err.get() is not None
      True
    """
    from jax.experimental import checkify

    e = as_explainer(explain, "checked")

    def run(params, x, target=None, **kwargs):
        kwargs = {**dict(e.bound), **kwargs}
        x = check_batch(x, integer=e.integer_inputs, min_rank=e.min_rank)
        target = v.check_target(target, x.shape[0])
        num = _model.num_classes(e.model, params, x)
        if jnp.issubdtype(x.dtype, jnp.inexact):
            checkify.check(jnp.all(jnp.isfinite(x)), "`x` holds NaN or Inf values")
        if target is not None:
            checkify.check(
                jnp.all((target >= 0) & (target < num)),
                f"`target` holds a class index outside [0, {num})",
            )
        if e.stochastic:
            kwargs["key"] = v.check_key(kwargs.get("key"))
        if e.check is not None:
            x, target, kwargs = e.check(params, x, target, kwargs)
        out = e.run(params, x, target, **kwargs)
        leaves = [a for a in jax.tree_util.tree_leaves(out) if jnp.issubdtype(a.dtype, jnp.inexact)]
        if leaves:
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))
            checkify.check(finite, f"`{e.name}` produced NaN or Inf values")
        return out

    return checkify.checkify(run)


def options(**kwargs: Any) -> tuple[tuple[str, Any], ...]:
    """Hyperparameters as sorted ``(name, value)`` pairs for :attr:`Explainer.options`."""
    return tuple(sorted(kwargs.items()))
