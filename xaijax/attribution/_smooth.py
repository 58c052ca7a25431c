"""SmoothGrad, SquareGrad and VarGrad as a wrapper around any explainer."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from xaijax import _validation as v
from xaijax.attribution import _common as c
from xaijax.typing import Array

KINDS = ("smoothgrad", "squaregrad", "vargrad")


def smooth(
    explainer: Callable[..., Array],
    *,
    samples: int = 16,
    noise: float = 0.15,
    kind: str = "smoothgrad",
    relative_noise: bool = True,
    batch_size: int | None = None,
) -> Callable[..., Array]:
    """Averages an explainer over Gaussian-noised copies of the input (a noise tunnel).

    ``smooth(gradient(f))`` is SmoothGrad; ``smooth(integrated_gradients(f))`` is SmoothGrad over
    IG. Noise draw ``j`` comes from ``fold_in(key, j)`` and is shared by the examples of the
    batch (so batched results equal per-example results). For each example the noise standard
    deviation is ``noise * (max(x) - min(x))`` when
    ``relative_noise`` (the SmoothGrad paper's noise level), else ``noise``.

    * ``"smoothgrad"``: mean of the attributions.
    * ``"squaregrad"``: mean of the squared attributions.
    * ``"vargrad"``: variance of the attributions.

    Args:
      explainer: any xaijax explainer ``explain(params, x, target=None, **kw)``.
      samples: number of noisy copies.
      noise: noise level (see above).
      kind: ``"smoothgrad"``, ``"squaregrad"`` or ``"vargrad"``.
      relative_noise: scale ``noise`` by each example's value range.
      batch_size: noisy copies evaluated together; ``None`` means all at once.

    Returns:
      ``explain(params, x, target=None, *, key, **kw) -> [B, ...]``. ``target=None`` resolves to
      the class predicted on the clean input, so every noisy copy explains the same class.
      Extra keyword arguments go to the inner explainer.

    Example:
      >>> import jax, jax.numpy as jnp, xaijax
      >>> sg = xaijax.smooth(xaijax.gradient(lambda p, x: x @ p), samples=4)
      >>> sg(jnp.eye(2), jnp.ones((1, 2)), jnp.array([1]), key=jax.random.key(0)).tolist()
      [[0.0, 1.0]]

    References:
      Smilkov et al., "SmoothGrad: removing noise by adding noise", arXiv 1706.03825, 2017;
      Adebayo et al., "Local explanation methods for deep neural networks lack sensitivity to
      parameter values" (VarGrad), ICLR-W 2018.
    """
    v.check_choice(kind, "kind", KINDS)
    samples = v.check_positive_int(samples, "samples")
    chunk = (
        samples
        if batch_size is None
        else min(v.check_positive_int(batch_size, "batch_size"), samples)
    )
    num_chunks = math.ceil(samples / chunk)
    apply_fn = getattr(explainer, "apply_fn", None)
    spec = c.ModelSpec(apply_fn) if apply_fn is not None else None
    predict = (
        jax.jit(lambda params, x: c.predicted_class(apply_fn, params, x)) if apply_fn else None
    )

    def chunk_fn(i, params, x, target, key, kwargs):
        idx = i * chunk + jnp.arange(chunk)
        valid = (idx < samples).astype(x.dtype)
        lo = jnp.min(x.reshape(x.shape[0], -1), axis=1)
        hi = jnp.max(x.reshape(x.shape[0], -1), axis=1)
        sigma = c.broadcast_like(hi - lo, x) * noise if relative_noise else noise

        def one(j):
            # One draw per sample, shared by the batch: an example's noise does not depend on
            # its position in the batch, so batched results equal per-example results.
            eps = jax.random.normal(jax.random.fold_in(key, j), x.shape[1:], x.dtype)
            return explainer(params, x + sigma * eps[None], target, **kwargs)

        if kwargs:  # per-call arguments may carry the batch axis: one call per sample
            attrs = jax.vmap(one)(idx)
            w = valid.reshape((chunk,) + (1,) * (attrs.ndim - 1))
            return jnp.sum(w * attrs, axis=0), jnp.sum(w * attrs * attrs, axis=0)
        # One call on [B * chunk] noisy copies, examples outermost: a batch spread over devices
        # stays spread (no all-gather, see xaijax._devices), and the model sees one big batch.
        eps = jax.vmap(
            lambda j: jax.random.normal(jax.random.fold_in(key, j), x.shape[1:], x.dtype)
        )(idx)
        scale = sigma[:, None] if relative_noise else sigma
        noisy = x[:, None] + scale * eps[None]  # [B, chunk, ...]
        b = x.shape[0]
        flat_target = None if target is None else jnp.repeat(target, chunk)
        attrs = explainer(params, noisy.reshape((b * chunk,) + x.shape[1:]), flat_target)
        attrs = attrs.reshape((b, chunk) + attrs.shape[1:])
        w = valid.reshape((1, chunk) + (1,) * (attrs.ndim - 2))
        return jnp.sum(w * attrs, axis=1), jnp.sum(w * attrs * attrs, axis=1)

    jitted_chunk = jax.jit(chunk_fn)

    def explain(params, x, target=None, *, key=None, **kwargs) -> Array:
        key = v.check_key(key)
        x, target = c.check_inputs(spec, params, x, target)
        if target is None and predict is not None:
            target = predict(params, x)
        s1, s2 = c.chunked_sum(
            chunk_fn, num_chunks, (params, x, target, key, kwargs), jitted_chunk=jitted_chunk
        )
        return _combine(s1, s2, kind, samples)

    return c.attach(explain, apply_fn=apply_fn, name=f"smooth({getattr(explainer, 'name', '?')})")


def _combine(s1, s2, kind, n):
    mean = s1 / n
    if kind == "smoothgrad":
        return mean
    if kind == "squaregrad":
        return s2 / n
    return s2 / n - mean * mean
