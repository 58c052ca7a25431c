"""SmoothGrad, SquareGrad and VarGrad as a wrapper around any explainer."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from xaijax import _validation as v
from xaijax._explainer import Explainer, as_explainer, options
from xaijax.attribution import _common as c
from xaijax.typing import Array

KINDS = ("smoothgrad", "squaregrad", "vargrad")


def smooth(
    explainer: Any,
    *,
    num_samples: int = 16,
    noise: float = 0.15,
    kind: str = "smoothgrad",
    relative_noise: bool = True,
    chunk_size: int | None = None,
) -> Explainer:
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
      explainer: an :class:`~xaijax.Explainer` (``jax.jit`` of one and ``functools.partial``
        of one with keywords are read through; a bare function raises
        :class:`~xaijax.errors.NotAnExplainerError`: wrap it with :func:`xaijax.explainer`).
      num_samples: number of noisy copies.
      noise: noise level (see above), >= 0.
      kind: ``"smoothgrad"``, ``"squaregrad"`` or ``"vargrad"``.
      relative_noise: scale ``noise`` by each example's value range.
      chunk_size: noisy copies evaluated together; ``None`` means all at once.

    Returns:
      An :class:`~xaijax.Explainer` ``explain(params, x, target=None, *, key, **kw) -> [B,
      ...]``. ``target=None`` resolves to the class of highest score on the clean input (the
      inner explainer's model), so every noisy copy explains the same class. Extra keyword
      arguments go to the inner explainer.

    Example:
      >>> import jax, jax.numpy as jnp, xaijax
      >>> sg = xaijax.smooth(xaijax.gradient(lambda p, x: x @ p), num_samples=4)
      >>> sg(jnp.eye(2), jnp.ones((1, 2)), jnp.array([1]), key=jax.random.key(0)).tolist()
      [[0.0, 1.0]]

    References:
      Smilkov et al., "SmoothGrad: removing noise by adding noise", arXiv 1706.03825, 2017;
      Adebayo et al., "Local explanation methods for deep neural networks lack sensitivity to
      parameter values" (VarGrad), ICLR-W 2018.
    """
    inner = as_explainer(explainer, "smooth")
    v.check_choice(kind, "kind", KINDS)
    samples = v.check_positive_int(num_samples, "num_samples")
    v.check_positive_number(noise, "noise", allow_zero=True)
    chunk = (
        samples
        if chunk_size is None
        else min(v.check_positive_int(chunk_size, "chunk_size"), samples)
    )
    num_chunks = math.ceil(samples / chunk)
    m = inner.model
    predict = jax.jit(lambda params, x: c.resolve(m.scores(params, x), None))
    bound = dict(inner.bound)

    def chunk_fn(i, params, x, target, key, kwargs):
        kwargs = {**bound, **kwargs}
        idx = i * chunk + jnp.arange(chunk)
        valid = (idx < samples).astype(x.dtype)
        lo = jnp.min(x.reshape(x.shape[0], -1), axis=1)
        hi = jnp.max(x.reshape(x.shape[0], -1), axis=1)
        sigma = c.broadcast_like(hi - lo, x) * noise if relative_noise else noise

        def one(j):
            # One draw per sample, shared by the batch: an example's noise does not depend on
            # its position in the batch, so batched results equal per-example results.
            draw = jax.random.fold_in(key, j)
            eps = jax.random.normal(draw, x.shape[1:], x.dtype)
            extra = {"key": jax.random.fold_in(draw, 1)} if inner.stochastic else {}
            return inner.run(params, x + sigma * eps[None], target, **kwargs, **extra)

        if kwargs or inner.stochastic:  # per-call arguments may carry the batch axis
            attrs = jax.vmap(one)(idx)
            w = valid.reshape((chunk,) + (1,) * (attrs.ndim - 1))
            return jnp.sum(w * attrs, axis=0), jnp.sum(w * attrs * attrs, axis=0)
        # One call on [B * chunk] noisy copies, examples outermost: a sharded batch stays
        # sharded (no collective), and the model sees one big batch.
        eps = jax.vmap(
            lambda j: jax.random.normal(jax.random.fold_in(key, j), x.shape[1:], x.dtype)
        )(idx)
        scale = sigma[:, None] if relative_noise else sigma
        noisy = x[:, None] + scale * eps[None]  # [B, chunk, ...]
        b = x.shape[0]
        flat = noisy.reshape((b * chunk,) + x.shape[1:])
        attrs = inner.run(params, flat, jnp.repeat(target, chunk))
        attrs = attrs.reshape((b, chunk) + attrs.shape[1:])
        w = valid.reshape((1, chunk) + (1,) * (attrs.ndim - 2))
        return jnp.sum(w * attrs, axis=1), jnp.sum(w * attrs * attrs, axis=1)

    jitted_chunk = jax.jit(chunk_fn)

    def run(params, x, target=None, *, key, **kwargs) -> Array:
        if target is None:
            target = predict(params, x)
        s1, s2 = c.chunked_sum(
            chunk_fn, num_chunks, (params, x, target, key, kwargs), jitted_chunk=jitted_chunk
        )
        return _combine(s1, s2, kind, samples)

    def check(params, x, target, kwargs):
        if inner.check is not None:
            rest = {k: val for k, val in kwargs.items() if k != "key"}
            x, target, rest = inner.check(params, x, target, rest)
            kwargs = {**rest, "key": kwargs["key"]}
        return x, target, kwargs

    return Explainer(
        name=f"smooth({inner.name})",
        model=m,
        run=run,
        result=inner.result,
        options=options(
            num_samples=samples,
            noise=noise,
            kind=kind,
            relative_noise=relative_noise,
            chunk_size=chunk_size,
        ),
        inner=inner,
        stochastic=True,
        integer_inputs=False,
        min_rank=inner.min_rank,
        check=check,
    )


def _combine(s1, s2, kind, n):
    mean = s1 / n
    if kind == "smoothgrad":
        return mean
    if kind == "squaregrad":
        return s2 / n
    return s2 / n - mean * mean
