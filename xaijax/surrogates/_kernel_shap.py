"""KernelSHAP over segments (superpixels, supervoxels or tokens), batched and chunked like LIME."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors
from xaijax._explainer import Explainer, options
from xaijax._model import as_model
from xaijax._validation import _shape_str, check_choice, is_concrete
from xaijax.segmentation import segment_sizes
from xaijax.superpixels._segments import check_num_segments
from xaijax.surrogates import _perturb as p
from xaijax.surrogates._ridge import constrained_least_squares


class KernelShapExplanation(NamedTuple):
    """What :func:`kernel_shap` returns for a batch.

    Attributes:
      values: ``[B, S]`` Shapley value estimates per segment (0 for empty segments); they sum
        to ``prediction - base_value`` exactly (efficiency).
      base_value: ``[B]`` the model output with every segment switched off, ``f(empty)``.
      prediction: ``[B]`` the model output on the input, ``f(x)``.
    """

    values: jax.Array
    base_value: jax.Array
    prediction: jax.Array


def shapley_kernel(sizes: jax.Array, num_players: jax.Array) -> jax.Array:
    """The Shapley kernel :math:`\\pi(z) = \\frac{M - 1}{\\binom{M}{|z|} |z| (M - |z|)}`.

    Coalitions that are empty or full (infinite weight) get 0: KernelSHAP enforces them as
    constraints instead.

    Args:
      sizes: coalition sizes ``|z|``.
      num_players: ``M``.

    Returns:
      Weights, the shape of ``sizes``.

    Examples:
      >>> import jax.numpy as jnp
      >>> shapley_kernel(jnp.array([0, 1, 2, 3]), 3).round(4)
      Array([0.    , 0.3333, 0.3333, 0.    ], dtype=float32)
    """
    sizes = jnp.asarray(sizes, jnp.float32)
    m = jnp.asarray(num_players, jnp.float32)
    inner = (sizes > 0) & (sizes < m)
    s = jnp.where(inner, sizes, 1.0)
    log_binom = jax.scipy.special.gammaln(m + 1) - jax.scipy.special.gammaln(s + 1)
    log_binom = log_binom - jax.scipy.special.gammaln(m - s + 1)
    weight = (m - 1) / (jnp.exp(log_binom) * s * jnp.maximum(m - s, 1.0))
    return jnp.where(inner, weight, 0.0)


def _sample_single(key: jax.Array, valid: jax.Array, num_samples: int, paired: bool):
    """Coalitions and their regression weights for one example with ``M`` valid segments.

    When all ``2^M - 2`` proper coalitions fit in ``num_samples`` they are enumerated and
    weighted by the Shapley kernel (the regression then gives the exact Shapley values; unused
    rows get weight 0). Otherwise a size ``k`` in ``1..M-1`` is drawn with probability
    proportional to ``(M-1) / (k (M-k))`` (the kernel's total mass on size ``k``), then a uniform
    subset of that size among the valid segments, all with weight 1; with ``paired`` every
    coalition is followed by its complement.
    """
    s = valid.shape[0]
    m = jnp.sum(valid).astype(jnp.int32)
    mf = m.astype(jnp.float32)
    k = jnp.arange(1, s, dtype=jnp.float32)
    logits = jnp.where(k < mf, jnp.log(jnp.maximum(mf - 1, 1.0)) - jnp.log(k * (mf - k)), -jnp.inf)
    draws = -(-num_samples // 2) if paired else num_samples
    k_key, u_key = jax.random.split(key)
    sizes = jax.random.categorical(k_key, logits, shape=(draws,)) + 1
    u = jnp.where(valid[None, :], jax.random.uniform(u_key, (draws, s)), jnp.inf)
    ranks = jnp.argsort(jnp.argsort(u, axis=1), axis=1)
    sampled = ranks < sizes[:, None]
    if paired:
        sampled = jnp.concatenate([sampled, valid[None, :] & ~sampled], axis=0)[:num_samples]
    # Exact enumeration: row i is the coalition whose bits are i + 1 over the valid segments.
    small = m < min(30, max(num_samples.bit_length(), 2))
    m_small = jnp.where(small, m, 0)
    codes = jnp.arange(1, num_samples + 1, dtype=jnp.int32)
    rank = jnp.cumsum(valid.astype(jnp.int32)) - 1
    bits = (codes[:, None] >> jnp.where(valid, rank, 0)[None, :]) & 1
    bits = bits.astype(bool) & valid[None, :]
    used = codes < (jnp.left_shift(1, m_small) - 1)
    exact = small & ((jnp.left_shift(1, m_small) - 2) <= num_samples)
    enumerated = bits & used[:, None]
    kernel = shapley_kernel(jnp.sum(enumerated, axis=1), m) * used
    z = jnp.where(exact, enumerated, sampled).astype(jnp.float32)
    return z, jnp.where(exact, kernel, 1.0)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _draw(key, valid, num_samples: int, paired: bool):
    return jax.vmap(lambda v: _sample_single(key, v, num_samples, paired))(valid)


@jax.jit
def _kernel_weights(masks, valid):
    sizes = jnp.sum(masks * valid[:, None, :], axis=2)
    return shapley_kernel(sizes, jnp.sum(valid, axis=1, keepdims=True))


MASK_WEIGHTS = ("kernel", "uniform")


def _check_mask_weights(mask_weights, batch_size: int, num_masks: int, masks: jax.Array):
    """Regression weights ``[B, N]`` of replayed masks (``kernel_shap``'s ``mask_weights``)."""
    if isinstance(mask_weights, str):
        check_choice(mask_weights, "mask_weights", MASK_WEIGHTS)
        if mask_weights == "uniform":
            return jnp.ones((batch_size, num_masks), jnp.float32)
        return None  # the kernel, computed from the masks and the valid segments
    if not hasattr(mask_weights, "dtype"):
        try:
            mask_weights = np.asarray(mask_weights)
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgumentError(
                f"`mask_weights` must be 'kernel', 'uniform' or an array of weights, got "
                f"{type(mask_weights).__name__}."
            ) from e
    shape = tuple(mask_weights.shape)
    if shape not in ((num_masks,), (batch_size, num_masks)):
        raise errors.InputShapeError(
            f"`mask_weights` has shape {_shape_str(shape)} but `masks` holds {num_masks} "
            f"coalitions for {batch_size} example(s): give one weight per mask row, shape "
            f"[{num_masks}] (shared) or [{batch_size}, {num_masks}]."
        )
    if (
        not (
            jnp.issubdtype(mask_weights.dtype, jnp.floating)
            or jnp.issubdtype(mask_weights.dtype, jnp.integer)
        )
        or mask_weights.dtype == bool
    ):
        raise errors.InputDTypeError(
            f"`mask_weights` must hold real numbers, got dtype {mask_weights.dtype}."
        )
    weights = jnp.broadcast_to(jnp.asarray(mask_weights, jnp.float32), (batch_size, num_masks))
    if is_concrete(weights) and is_concrete(masks) and not bool(_weights_ok(weights)):
        raise errors.InvalidArgumentError(
            "`mask_weights` must be finite and non-negative, with a positive weight for some "
            "mask of every example; for coalitions drawn from the Shapley kernel distribution "
            "pass 'uniform', for enumerated or uniformly drawn ones 'kernel'."
        )
    return weights


@jax.jit
def _weights_ok(weights):
    ok = jnp.all(jnp.isfinite(weights) & (weights >= 0))
    return ok & jnp.all(jnp.sum(weights, axis=1) > 0)


@jax.jit
def _anchor(masks):
    """Prepends the full and the empty coalition to every example's masks."""
    b, _, s = masks.shape
    ends = jnp.stack([jnp.ones((b, s)), jnp.zeros((b, s))], axis=1)
    return jnp.concatenate([ends, masks], axis=1)


@jax.jit
def _solve(masks, y, weights, valid) -> KernelShapExplanation:
    """Efficiency-constrained regression per example; rows 0 and 1 are f(x) and f(empty)."""

    def one(z, yy, w, v):
        values = constrained_least_squares(z * v[None, :], yy[2:] - yy[1], w, v, yy[0] - yy[1])
        return KernelShapExplanation(values, yy[1], yy[0])

    return jax.vmap(one)(masks[:, 2:], y, weights, valid)


def kernel_shap(
    model: Any,
    *,
    num_segments: int,
    num_samples: int = 1000,
    fill: str | float = "mean",
    blur_sigma: float = 5.0,
    paired: bool = True,
    chunk_size: int | None = 64,
    vocab_size: int | None = None,
) -> Explainer:
    """KernelSHAP over segments: Shapley values of superpixels, supervoxels or tokens.

    Segments are the players; a coalition ``z`` keeps its segments and fills the others (mean
    colour, blur or a constant, as in :func:`lime`). KernelSHAP fits the additive model
    ``f(z) = phi_0 + z . phi`` by weighted least squares under the Shapley kernel, with
    ``phi_0 = f(empty)`` and the efficiency constraint ``sum(phi) = f(x) - f(empty)`` imposed
    exactly (a KKT system solved in closed form). Coalitions are sampled with probability
    proportional to the kernel (so all get equal weight), in complementary pairs by default.
    When all ``2^M - 2`` proper coalitions of an example's ``M`` segments fit in
    ``num_samples`` they are enumerated instead and weighted by the kernel, which gives the exact
    Shapley values. Either way the kernel enters once: as the sampling distribution (weights 1)
    or as the weights (exact enumeration), never both.

    Replayed ``masks`` (e.g. the coalitions Captum's or shap's sampler drew) come with
    ``mask_weights``, which says how they were drawn: ``"kernel"`` (default) weights each by the
    Shapley kernel, right for enumerated coalitions or ones drawn *uniformly*; ``"uniform"``
    gives every mask weight 1, right for coalitions *drawn from the kernel distribution* (as
    Captum's ``KernelShap`` and shap's sampler draw them; weighting those by the kernel again
    counts it twice, which fits another weighted regression whose limit is not the Shapley
    values); an array ``[N]`` or ``[B, N]`` gives the weights explicitly.

    Token ids ``[B, L]`` (integers) are explained per token as in :func:`lime`: the players
    are the token positions (``segments`` defaults to ``0 .. L-1``; ``num_segments=L``) or given
    spans, and a switched-off token is replaced by the int ``fill`` (a pad or mask id).

    ``f`` is the model's explained score (:attr:`xaijax.Model.score`; the logits of a bare
    ``apply_fn``); for probabilities pass ``xaijax.model(apply_fn, score="probability")``.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn(params, x) ->
        logits [B, C]``; ``x`` is ``[B, *spatial, C]`` floats or token ids ``[B, L]`` ints.
      num_segments: the static number of segment labels ``S`` (required; labels lie in
        ``[0, S)``; ``L`` for one player per token). Maps with any number of labels below ``S``
        share one compilation.
      num_samples: coalitions per example (besides the empty and the full one).
      fill: ``"mean"``, ``"blur"`` or a finite number; for token ids an int, the pad or mask id
        (required for tokens).
      blur_sigma: Gaussian sigma in pixels for ``fill="blur"``.
      paired: sample each coalition together with its complement (variance reduction).
      chunk_size: coalitions of each example per model call, so a call sees ``B * chunk_size``
        inputs (``None``: all at once). The former ``batch_size`` counted the model's inputs:
        ``batch_size=N`` for a batch of ``B`` is ``chunk_size=N // B``.
      vocab_size: for token ids, the size of the vocabulary: when given, ``fill`` and the ids
        of ``x`` are checked to lie in ``[0, vocab_size)``.

    Returns:
      An :class:`~xaijax.Explainer` (result ``"surrogate"``)
      ``explain(params, x, target=None, *, segments, key, masks=None, mask_weights="kernel")``
      returning a :class:`KernelShapExplanation` (``values`` ``[B, S]``: ``[B, L]`` for token
      ids with the default segments); arguments as for :func:`lime` (``masks``
      ``[N, S]`` or ``[B, N, S]`` of 0/1 replaces sampling; ``key`` is then unused but still
      required); ``mask_weights`` (``"kernel"``, ``"uniform"`` or an array ``[N]`` / ``[B, N]``)
      weights the replayed masks, as described above.

    Raises:
      SegmentMapError: a segment map of the wrong shape, with negative, non-integer labels,
        labels ``>= num_segments``, or one segment only.
      InvalidArgumentError: bad hyperparameters (in the factory), or no more samples than
        segments; an unknown ``mask_weights``, negative or non-finite weights, or
        ``mask_weights`` without ``masks``; for token ids, as for :func:`lime`.
      InputShapeError: ``mask_weights`` of another shape than the masks; integer inputs that
        are not ``[B, L]``.
      InputDTypeError: a float batch of rank 2 (token ids must be integers).
      MissingKeyError: no ``key``.
      NonFiniteOutputError: the model's scores are not finite on the coalitions.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> apply_fn = lambda w, x: jnp.stack([x.sum((1, 2, 3)), x.prod((1, 2, 3))], -1)
      >>> seg = jnp.array([[0, 1], [2, 2]])
      >>> x = jnp.full((1, 2, 2, 1), 2.0)
      >>> out = kernel_shap(apply_fn, num_segments=3, fill=0.0, num_samples=64)(
      ...     None, x, jnp.array([1]), segments=seg, key=jax.random.key(0))
      >>> out.values.round(2), out.prediction - out.base_value  # product: equal shares
      (Array([[5.33, 5.33, 5.33]], dtype=float32), Array([16.], dtype=float32))

    References:
      Lundberg, Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
    """
    m = as_model(model, what="kernel_shap")
    num = check_num_segments(num_segments, "kernel_shap")
    num_samples, chunk_size, blur_sigma = p.check_common(num_samples, chunk_size, blur_sigma)
    vocab_size = p.check_vocab_size(vocab_size)
    fill_id = p.token_fill(fill, vocab_size)
    fill = p.check_fill(fill)
    if not isinstance(paired, bool):
        raise errors.InvalidArgumentError(f"`paired` must be True or False, got {paired!r}.")
    evaluate = p.Evaluator(m, chunk_size)

    def check(params, x, target, kwargs):
        tokens = p.check_inputs(x, fill_id, vocab_size, "KernelSHAP")
        weights = kwargs.pop("mask_weights", "kernel")
        kwargs = p.check_call(x, kwargs, num, num_samples, "KernelSHAP", tokens=tokens)
        masks = kwargs.get("masks")
        if masks is None:
            if not (isinstance(weights, str) and weights == "kernel"):
                raise errors.InvalidArgumentError(
                    "`mask_weights` weights replayed `masks` and needs them; xaijax's own "
                    "sampler (with `key`) already weights its draws correctly."
                )
        else:
            kwargs["mask_weights"] = _check_mask_weights(
                weights, x.shape[0], masks.shape[-2], masks
            )
        return x, target, kwargs

    def run(
        params, x, target=None, *, segments, key, masks=None, mask_weights="kernel"
    ) -> KernelShapExplanation:
        valid = segment_sizes(segments, num) > 0
        if masks is None:
            masks, weights = _draw(key, valid, num_samples, paired)
        else:
            masks = jnp.broadcast_to(masks, (x.shape[0], *masks.shape[-2:]))
            weights = (
                None
                if mask_weights is None
                else _check_mask_weights(mask_weights, x.shape[0], masks.shape[1], masks)
            )
            if weights is None:
                weights = _kernel_weights(masks, valid)
        fill_value = fill_id if jnp.issubdtype(x.dtype, jnp.integer) else fill
        target, fill_img = p.target_and_fill(
            m, num, fill_value, blur_sigma, params, x, segments, target
        )
        full = _anchor(masks)
        y = evaluate(params, x, fill_img, segments, target, full)
        return _solve(full, y, weights, valid)

    return Explainer(
        name="kernel_shap",
        model=m,
        run=run,
        result="surrogate",
        options=options(
            num_segments=num,
            num_samples=num_samples,
            fill=fill,
            blur_sigma=blur_sigma,
            paired=paired,
            chunk_size=chunk_size,
            vocab_size=vocab_size,
        ),
        stochastic=True,
        integer_inputs=True,
        min_rank=2,
        check=check,
    )
