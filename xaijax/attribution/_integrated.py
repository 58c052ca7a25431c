"""Integrated Gradients with Captum's quadrature rules and memory-bounded step chunks."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _filters, errors
from xaijax import _validation as v
from xaijax._explainer import Explainer, options
from xaijax._model import Model, as_model
from xaijax.attribution import _common as c
from xaijax.typing import Array

METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Path positions ``alpha`` in [0, 1] and weights for ``steps`` gradient evaluations.

    Left/right/middle Riemann sums with weight ``1/steps`` and Gauss-Legendre nodes mapped from
    [-1, 1] to [0, 1] (weights halved) match Captum's ``approximation_parameters``. The trapezoid
    rule is the composite trapezoid rule on ``linspace(0, 1, steps)``: its weights sum to 1, as
    an integral over [0, 1] needs. Captum's ``riemann_trapezoid`` weights sum to
    ``(steps - 1) / steps`` (it scales the rule by ``1/steps`` instead of ``1/(steps - 1)``), so
    its attributions are smaller by that factor; xaijax keeps the correct rule.
    Nodes and weights are float64 NumPy arrays; explainers cast them to the input's dtype, so
    float64 IG (``jax_enable_x64``) integrates with float64 nodes.
    """
    v.check_choice(method, "method", METHODS)
    n = v.check_positive_int(steps, "steps")
    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1.0), 0.5 * w
    if method == "riemann_trapezoid":
        if n < 2:
            raise errors.InvalidArgumentError("`steps` must be >= 2 for the trapezoid rule.")
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
        return np.linspace(0.0, 1.0, n), w
    w = np.full(n, 1.0 / n)
    if method == "riemann_left":
        return np.linspace(0.0, 1.0 - 1.0 / n, n), w
    if method == "riemann_right":
        return np.linspace(1.0 / n, 1.0, n), w
    return np.linspace(0.5 / n, 1.0 - 0.5 / n, n), w


def make_baseline(baseline, x: Array, blur_sigma: float) -> Array:
    """Builds the IG reference: ``"zero"``, ``"blur"``, a callable ``x -> x0``, or an array."""
    if isinstance(baseline, str):
        if baseline == "zero":
            return jnp.zeros_like(x)
        if baseline == "blur":
            return _filters.gaussian_blur(x, blur_sigma)
        raise errors.InvalidArgumentError(
            f"`baseline` must be 'zero', 'blur', an array or a callable, got {baseline!r}."
        )
    if callable(baseline):
        return jnp.asarray(baseline(x), x.dtype)
    base = jnp.asarray(baseline, x.dtype)
    try:
        return jnp.broadcast_to(base, x.shape)
    except ValueError as e:
        raise errors.InputShapeError(
            f"`baseline` of shape {tuple(base.shape)} does not broadcast to `x` of shape "
            f"{tuple(x.shape)}: give one baseline per example or one shared [1, ...] baseline."
        ) from e


def integrated_gradients(
    model: Any,
    *,
    steps: int = 50,
    method: str = "gausslegendre",
    baseline="zero",
    blur_sigma: float = 5.0,
    chunk_size: int | None = None,
) -> Explainer:
    """Integrated Gradients: the path integral of the gradient from a baseline to the input.

    .. math:: a(x) = (x - x_0) \\odot \\int_0^1 \\nabla f_t(x_0 + \\alpha (x - x_0))\\, d\\alpha

    The integral is a quadrature over ``steps`` points (Captum's rules). Memory is bounded by
    ``chunk_size``: the number of path points evaluated together (each model call sees
    ``B * chunk_size`` inputs), so 256 steps with ``chunk_size=32`` need the memory of 32.

    Args:
      model: an :class:`~xaijax.Model` (its ``score``, the logits by default, is explained), a
        Linen module, or a bare ``apply_fn(params, x) -> logits [B, C]``.
      steps: number of path points.
      method: ``"gausslegendre"`` (Captum's default), ``"riemann_left"``, ``"riemann_right"``,
        ``"riemann_middle"`` or ``"riemann_trapezoid"``.
      baseline: ``"zero"``, ``"blur"`` (the input Gaussian-blurred with ``blur_sigma``), an array
        broadcastable to ``x``, or a callable ``x -> x0``. Can be overridden per call.
      blur_sigma: sigma in pixels of the ``"blur"`` baseline.
      chunk_size: path points per model call; ``None`` evaluates all steps at once.

    Returns:
      An :class:`~xaijax.Explainer` ``explain(params, x, target=None, *, baseline=None) ->
      [B, ...]`` shaped like ``x``. The target of every path point is the target (or the class
      of highest score) at ``x``. Completeness: ``attr.sum() ~= f_t(x) - f_t(x0)`` (see
      :func:`convergence_delta`). Where the model's scores at ``x`` are not finite the map is
      NaN (an eager call then raises :class:`~xaijax.errors.NonFiniteOutputError`) rather
      than a finite map of a meaningless integral.

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> f = lambda p, x: jnp.stack([jnp.sum(x ** 2, axis=1), jnp.zeros(x.shape[0])], axis=1)
      >>> ig = xaijax.integrated_gradients(f, steps=16)
      >>> [round(a, 4) for a in ig(None, jnp.array([[1., 2.]]), jnp.array([0]))[0].tolist()]
      [1.0, 4.0]

    References:
      Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    """
    m = as_model(model, what="integrated_gradients")
    alphas_np, weights_np = quadrature(method, steps)
    chunk = (
        steps if chunk_size is None else min(v.check_positive_int(chunk_size, "chunk_size"), steps)
    )
    num_chunks = math.ceil(steps / chunk)
    pad = num_chunks * chunk - steps
    alphas_np = np.concatenate([alphas_np, np.zeros(pad)])
    weights_np = np.concatenate([weights_np, np.zeros(pad)])
    v.check_positive_number(blur_sigma, "blur_sigma")
    if isinstance(baseline, str):
        v.check_choice(baseline, "baseline", ("zero", "blur"))

    def chunk_fn(i, params, x, x0, target):
        # Nodes and weights in the input's dtype: float64 IG integrates with float64 nodes.
        alphas = jnp.asarray(alphas_np, x.dtype)
        weights = jnp.asarray(weights_np, x.dtype)
        a = jax.lax.dynamic_slice_in_dim(alphas, i * chunk, chunk)
        w = jax.lax.dynamic_slice_in_dim(weights, i * chunk, chunk)
        delta = x - x0
        # [B, chunk, ...]: examples outermost, so a batch sharded over devices stays sharded
        # when the path points are flattened into one model batch (no collective).
        path = x0[:, None] + a.reshape((1, chunk) + (1,) * (x.ndim - 1)) * delta[:, None]
        flat = path.reshape((x.shape[0] * chunk,) + x.shape[1:])
        grads = c.input_gradient(m, params, flat, jnp.repeat(target, chunk))
        return jnp.tensordot(grads.reshape(path.shape), w, axes=((1,), (0,)))

    jitted_chunk = jax.jit(chunk_fn)
    start = jax.jit(functools.partial(_start, m))

    def run(params, x, target=None, *, baseline=None) -> Array:
        x0 = _baseline(default_baseline if baseline is None else baseline, x, blur_sigma)
        target, finite = start(params, x, target)
        total = c.chunked_sum(
            chunk_fn, num_chunks, (params, x, x0, target), jitted_chunk=jitted_chunk
        )
        return _finish(x, x0, total, finite)

    def check(params, x, target, kwargs):
        if kwargs.get("baseline") is not None:
            b = kwargs["baseline"]
            if isinstance(b, str):
                v.check_choice(b, "baseline", ("zero", "blur"))
            elif not callable(b):
                base = jnp.asarray(b)
                v.check_finite(base, "baseline")
        return x, target, kwargs

    default_baseline = baseline
    return Explainer(
        name="integrated_gradients",
        model=m,
        run=run,
        result="map",
        options=options(
            steps=steps,
            method=method,
            baseline=baseline if isinstance(baseline, str) else "array",
            blur_sigma=blur_sigma,
            chunk_size=chunk_size,
        ),
        check=check,
    )


def _start(m: Model, params, x, target):
    """The target (or class of highest score) at ``x`` and whether the scores there are finite."""
    scores = m.scores(params, x)
    return c.resolve(scores, target), jnp.all(jnp.isfinite(scores), axis=-1)


def _baseline(baseline, x, blur_sigma):
    if isinstance(baseline, str) and baseline == "blur":
        return _blur(x, blur_sigma)
    return make_baseline(baseline, x, blur_sigma)


_blur = jax.jit(_filters.gaussian_blur, static_argnums=1)


@jax.jit
def _finish(x, x0, total, finite):
    out = (x - x0) * total
    return jnp.where(c.broadcast_like(finite, out), out, jnp.nan)


def convergence_delta(model: Any, params, x, attributions, target, baseline=None) -> Array:
    """Completeness gap ``sum(attr) - (f_t(x) - f_t(x0))`` per example ``[B]`` (Captum's delta).

    ``f_t`` is the model's explained score (see :class:`~xaijax.Model`)."""
    m = as_model(model, what="convergence_delta")
    x = jnp.asarray(x)
    x0 = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(jnp.asarray(baseline), x.shape)
    target = jnp.asarray(target, jnp.int32)
    diff = c.select(m.scores(params, x), target) - c.select(m.scores(params, x0), target)
    return jnp.sum(attributions.reshape(x.shape[0], -1), axis=1) - diff
