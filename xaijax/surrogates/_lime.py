"""LIME for images, videos (``lime_image``) and token sequences (``lime_text``), batched over
examples and chunked over samples."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from xaijax import _validation as v
from xaijax._explainer import Explainer, options
from xaijax._model import as_model
from xaijax.segmentation import segment_sizes
from xaijax.superpixels._segments import check_num_segments
from xaijax.surrogates import _perturb as p
from xaijax.surrogates._ridge import weighted_r2, weighted_ridge

#: Feature-selection rules of :func:`lime` (``lime_base.LimeBase.feature_selection``).
FEATURE_SELECTIONS = ("auto", "none", "highest_weights", "forward_selection")


class LimeExplanation(NamedTuple):
    """What :func:`lime` returns for a batch (``lime_base.explain_instance_with_data``'s tuple).

    Attributes:
      coefficients: ``[B, S]`` weights of the local linear model per segment (0 for segments
        that are empty or not selected).
      intercept: ``[B]`` its intercept.
      score: ``[B]`` weighted R^2 of the fit on the samples.
      local_prediction: ``[B]`` the surrogate's prediction for the first sample (the input).
      selected: ``[B, S]`` bool, the segments the feature selection kept.
    """

    coefficients: jax.Array
    intercept: jax.Array
    score: jax.Array
    local_prediction: jax.Array
    selected: jax.Array


def sample_masks(key: jax.Array, num_samples: int, num_segments: int) -> jax.Array:
    """LIME's samples: i.i.d. Bernoulli(0.5) on/off switches, the first row all on.

    Args:
      key: a PRNG key.
      num_samples: ``N`` rows.
      num_segments: ``S`` columns.

    Returns:
      ``float32`` ``[N, S]`` of 0/1; row 0 is all ones (the unperturbed input).

    Raises:
      InvalidArgumentError: ``num_samples`` or ``num_segments`` is not a positive int.
      MissingKeyError / InvalidKeyError: ``key`` is not one PRNG key.

    Examples:
      >>> import jax
      >>> sample_masks(jax.random.key(0), 3, 4)[0]
      Array([1., 1., 1., 1.], dtype=float32)
    """
    key = v.check_key(key)
    num_samples = v.check_positive_int(num_samples, "num_samples")
    num_segments = check_num_segments(num_segments, "sample_masks")
    return _sample_masks(key, num_samples, num_segments)


def _sample_masks(key: jax.Array, num_samples: int, num_segments: int) -> jax.Array:
    """:func:`sample_masks` without the checks (the explainer checked its arguments)."""
    masks = jax.random.bernoulli(key, 0.5, (num_samples, num_segments)).astype(jnp.float32)
    return masks.at[0].set(1.0)


def _cosine_distance(z: jax.Array, z0: jax.Array) -> jax.Array:
    """``sklearn.metrics.pairwise_distances(z, z0[None], metric="cosine")`` (zero rows -> 1)."""
    norms = jnp.sqrt(jnp.sum(z * z, axis=1))
    n0 = jnp.sqrt(jnp.sum(z0 * z0))
    denom = norms * n0
    sim = jnp.where(denom > 0, (z @ z0) / jnp.where(denom > 0, denom, 1.0), 0.0)
    return jnp.clip(1.0 - sim, 0.0, 2.0)


def _forward_selection(z, y, w, valid, k: int) -> jax.Array:
    """Greedy forward selection of ``k`` features by weighted R^2 of an OLS fit (``alpha=0``)."""
    s = z.shape[1]
    eye = jnp.eye(s, dtype=bool)

    def r2_with(selected, j):
        mask = selected | eye[j]
        coef, b = weighted_ridge(z, y, w, mask, 0.0)
        return weighted_r2(z * mask[None, :], y, w, coef, b)

    def step(_, selected):
        scores = jax.vmap(lambda j: r2_with(selected, j))(jnp.arange(s))
        scores = jnp.where(valid & ~selected, scores, -jnp.inf)
        best = jnp.argmax(scores)  # first maximum, as lime's strict ``>`` scan
        return selected | (eye[best] & jnp.isfinite(scores[best]))

    return jax.lax.fori_loop(0, k, step, jnp.zeros(s, bool))


def _select(z, y, w, valid, method: str, num_features: int) -> jax.Array:
    s = z.shape[1]
    if method == "auto":
        method = "forward_selection" if num_features <= 6 else "highest_weights"
    if method == "none" or num_features >= s:
        return valid
    if method == "forward_selection":
        return _forward_selection(z, y, w, valid, num_features)
    coef, _ = weighted_ridge(z, y, w, valid, 0.01)
    key = jnp.where(valid, jnp.abs(coef * z[0]), -jnp.inf)
    _, top = jax.lax.top_k(key, num_features)
    return jnp.zeros(s, bool).at[top].set(True) & valid


def _fit_single(z, y, valid, kernel_width, alpha, method, num_features) -> LimeExplanation:
    """Kernel weights, feature selection and the final ridge fit for one example."""
    z = z * valid[None, :]
    distances = _cosine_distance(z, z[0])
    w = jnp.sqrt(jnp.exp(-(distances**2) / kernel_width**2))
    selected = _select(z, y, w, valid, method, num_features)
    coef, intercept = weighted_ridge(z, y, w, selected, alpha)
    score = weighted_r2(z * selected[None, :], y, w, coef, intercept)
    local = intercept + z[0] @ coef
    return LimeExplanation(coef, intercept, score, local, selected)


_draw = jax.jit(_sample_masks, static_argnums=(1, 2))


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _fit(masks, y, valid, kernel_width, alpha, method, num_features) -> LimeExplanation:
    """Vmapped :func:`_fit_single`; ``masks`` is ``[N, S]`` (shared) or ``[B, N, S]``."""
    fit_one = lambda z, yy, v: _fit_single(  # noqa: E731
        z, yy, v, kernel_width, alpha, method, num_features
    )
    return jax.vmap(fit_one, in_axes=(0 if masks.ndim == 3 else None, 0, 0))(masks, y, valid)


def lime(
    model: Any,
    *,
    num_segments: int,
    num_samples: int = 1000,
    fill: str | float = "mean",
    blur_sigma: float = 5.0,
    kernel_width: float = 0.25,
    alpha: float = 1.0,
    feature_selection: str = "auto",
    num_features: int = 100000,
    chunk_size: int | None = 64,
    vocab_size: int | None = None,
) -> Explainer:
    """LIME for images, videos and token sequences, reimplementing ``lime_image`` in JAX.

    For every example: draw ``num_samples`` binary vectors over the segments (i.i.d.
    Bernoulli(0.5), the first all ones); render each by replacing the switched-off segments with
    the fill (each segment's mean colour, LIME's default ``hide_color=None``; a constant; or a
    Gaussian blur); evaluate the model's explained score on all of them (``chunk_size`` samples
    of each example per model call); weight the samples by :math:`\\sqrt{\\exp(-d^2 / w^2)}`
    with ``d`` the cosine distance to the first sample and ``w = kernel_width``; select features
    (``lime_base``'s ``auto``, ``highest_weights``, ``forward_selection`` or ``none``); and fit
    a weighted ridge regression (``alpha``, unpenalised intercept) in closed form. Everything but
    the Python loop over sample chunks is jitted and vmapped over the batch; called under
    ``jit`` the chunks run in a ``lax.map``. Videos work the same way with supervoxels
    (``[B, T, H, W, C]`` inputs, ``[B, T, H, W]`` segments).

    Token sequences: integer token ids ``[B, L]`` are explained per token. The segments are the
    token positions (``segments`` defaults to ``0 .. L-1``, so ``num_segments=L``), or spans
    given as a label map ``[B, L]`` / ``[L]``; a switched-off token is replaced by the int
    ``fill`` (the pad or mask id), like ``lime_text``'s removal of words. The samples are the
    same Bernoulli(0.5) switches as for images (``lime_text`` draws how many words to remove
    uniformly instead), with the same kernel on cosine distances (``lime_text``'s distance x 100
    with kernel width 25 is the same weight as ``kernel_width=0.25``).

    The explained score is the model's (:attr:`xaijax.Model.score`): the logits of a bare
    ``apply_fn``, as in every xaijax explainer. The LIME paper and the ``lime`` package explain
    probabilities (``classifier_fn`` returns ``predict_proba``): for lime's exact setting pass
    ``xaijax.model(apply_fn, score="probability")``.

    The same ``key`` gives the same sample masks to every example of the batch (so a batched call
    equals per-example calls); pass ``masks`` to use your own, e.g. the exact masks the ``lime``
    package drew, for a sample-for-sample comparison.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn(params, x) ->
        logits [B, C]``; ``x`` is ``[B, *spatial, C]`` floats or token ids ``[B, L]`` ints.
      num_segments: the static number of segment labels ``S`` (required; labels lie in
        ``[0, S)``, e.g. ``num_segments`` of :func:`~xaijax.segmentation.slic`; ``L`` for one
        segment per token). Maps with any number of labels below ``S`` share one compilation.
      num_samples: samples per example (LIME's default 1000); ignored when ``masks`` is given.
      fill: ``"mean"``, ``"blur"`` or a finite number (LIME's ``hide_color``); for token ids an
        int, the pad or mask id written into switched-off tokens (required for tokens).
      blur_sigma: Gaussian sigma in pixels for ``fill="blur"``.
      kernel_width: width of the exponential kernel on cosine distances (LIME's 0.25).
      alpha: ridge penalty of the explanation model (LIME's ``Ridge(alpha=1)``), >= 0.
      feature_selection: one of :data:`FEATURE_SELECTIONS` (``lasso_path`` is not supported).
      num_features: how many segments the selection keeps (LIME's default 100000 keeps all).
      chunk_size: samples of each example per model call, so a call sees ``B * chunk_size``
        inputs (``None``: all ``num_samples`` at once). The former ``batch_size`` counted the
        model's inputs: ``batch_size=N`` for a batch of ``B`` is ``chunk_size=N // B``.
      vocab_size: for token ids, the size of the vocabulary: when given, ``fill`` and the ids
        of ``x`` are checked to lie in ``[0, vocab_size)`` (an embedding lookup under ``jit``
        clamps out-of-range ids silently).

    Returns:
      An :class:`~xaijax.Explainer` (result ``"surrogate"``, ``integer_inputs=True``)
      ``explain(params, x, target=None, *, segments, key, masks=None)`` returning a
      :class:`LimeExplanation` with ``[B, S]`` coefficients (``[B, L]``, one per token, for
      token ids with the default segments). ``target`` is ``[B]`` class indices
      or ``None`` (the class of highest score, like LIME's ``top_labels=1``); ``segments`` is an
      integer map ``[B, *spatial]`` or ``[*spatial]`` (optional for token ids); ``key`` is a
      PRNG key (required, as for every stochastic explainer; unused when ``masks`` is given);
      ``masks`` (``[N, S]`` or ``[B, N, S]`` of 0/1) replaces the sampling.

    Raises:
      SegmentMapError: a segment map of the wrong shape, with negative, non-integer labels,
        labels ``>= num_segments``, or one segment only.
      InvalidArgumentError: bad hyperparameters (in the factory), or no more samples than
        segments; for token ids, a ``fill`` that is not an int id in range, ``num_segments <
        L`` without ``segments``, or ids outside ``[0, vocab_size)``.
      InputDTypeError: a float batch of rank 2 (token ids must be integers).
      InputShapeError: integer inputs that are not ``[B, L]``.
      MissingKeyError: no ``key``.
      NonFiniteOutputError: the model's scores are not finite on the samples.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> apply_fn = lambda w, x: jnp.einsum("bhwc,khwc->bk", x, w)  # linear in the pixels
      >>> w = jnp.stack([jnp.zeros((2, 2, 1)), jnp.array([[1.0, 1.0], [-2.0, -2.0]])[..., None]])
      >>> seg = jnp.array([[0, 0], [1, 1]])
      >>> explain = lime(apply_fn, num_segments=2, num_samples=200, fill=0.0, alpha=0.0)
      >>> out = explain(w, jnp.ones((1, 2, 2, 1)), jnp.array([1]), segments=seg,
      ...               key=jax.random.key(0))
      >>> out.coefficients.round(3)
      Array([[ 2., -4.]], dtype=float32)

      Token ids: one coefficient per token, switched-off tokens replaced by the pad id 0.

      >>> emb = jnp.array([0.0, 1.0, -1.0, 3.0])  # a bag-of-tokens score per id
      >>> bag = lambda p, ids: jnp.stack([p[ids].sum(1), jnp.zeros(len(ids))], 1)
      >>> explain = lime(bag, num_segments=4, num_samples=200, fill=0, alpha=0.0)
      >>> out = explain(emb, jnp.array([[1, 2, 3, 1]]), jnp.array([0]), key=jax.random.key(0))
      >>> out.coefficients.round(2).tolist()
      [[1.0, -1.0, 3.0, 1.0]]

    References:
      Ribeiro, Singh, Guestrin, "'Why Should I Trust You?': Explaining the Predictions of Any
      Classifier", KDD 2016; reference code ``marcotcr/lime`` (``lime_image.py``,
      ``lime_text.py``, ``lime_base.py``).
    """
    m = as_model(model, what="lime")
    num = check_num_segments(num_segments, "lime")
    num_samples, chunk_size, blur_sigma = p.check_common(num_samples, chunk_size, blur_sigma)
    vocab_size = p.check_vocab_size(vocab_size)
    fill_id = p.token_fill(fill, vocab_size)
    fill = p.check_fill(fill)
    v.check_choice(feature_selection, "feature_selection", FEATURE_SELECTIONS)
    num_features = v.check_positive_int(num_features, "num_features")
    kernel_width = v.check_positive_number(kernel_width, "kernel_width")
    alpha = v.check_positive_number(alpha, "alpha", allow_zero=True)
    evaluate = p.Evaluator(m, chunk_size)
    fit_options = (kernel_width, alpha, feature_selection, num_features)

    def check(params, x, target, kwargs):
        tokens = p.check_inputs(x, fill_id, vocab_size, "LIME")
        return x, target, p.check_call(x, kwargs, num, num_samples, "LIME", tokens=tokens)

    def run(params, x, target=None, *, segments, key, masks=None) -> LimeExplanation:
        valid = segment_sizes(segments, num) > 0
        if masks is None:
            masks = _draw(key, num_samples, num)
        fill_value = fill_id if jnp.issubdtype(x.dtype, jnp.integer) else fill
        target, fill_img = p.target_and_fill(
            m, num, fill_value, blur_sigma, params, x, segments, target
        )
        full = jnp.broadcast_to(masks, (x.shape[0], *masks.shape[-2:]))
        y = evaluate(params, x, fill_img, segments, target, full)
        return _fit(masks, y, valid, *fit_options)

    return Explainer(
        name="lime",
        model=m,
        run=run,
        result="surrogate",
        options=options(
            num_segments=num,
            num_samples=num_samples,
            fill=fill,
            blur_sigma=blur_sigma,
            kernel_width=kernel_width,
            alpha=alpha,
            feature_selection=feature_selection,
            num_features=num_features,
            chunk_size=chunk_size,
            vocab_size=vocab_size,
        ),
        stochastic=True,
        integer_inputs=True,
        min_rank=2,
        check=check,
    )
