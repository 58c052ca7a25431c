"""Deletion and insertion (the RISE causal metrics), batched and chunked.

Protocol (Petsiuk et al. 2018, reference code ``eclique/RISE evaluation.py``): order the pixels
by decreasing saliency; the curve starts from a *start* image and, ``step`` pixels at a time,
replaces the most salient remaining pixels by those of a *finish* image, recording the model's
explained score of the target class after every step (RISE records the softmax probability:
pass ``xaijax.model(apply_fn, score="probability")``; a bare ``apply_fn`` means its logits, as
in every xaijax method). Deletion goes from the image to the substrate
(zeros by default), insertion from a blurred copy of the image back to the image. With
``N = ceil(H*W / step)`` steps the curve has ``N + 1`` points ``s_0 .. s_N`` (``s_0`` = start
image, ``s_N`` = finish image) and

.. math:: \\mathrm{AUC} = \\frac{1}{N}\\Big(\\sum_{i=0}^{N} s_i - \\frac{s_0}{2} -
   \\frac{s_N}{2}\\Big)

(the trapezoid rule on [0, 1]). Lower deletion AUC and higher insertion AUC are better.

Curve point ``i`` is the image whose pixels of saliency rank ``< i * step`` come from the finish
image, so all points are independent: they are evaluated ``chunk_size`` points (times B
examples) per model call by one jitted function, looped over in Python. A second call with the
same shapes and an equal model (the same ``apply_fn`` object, or the same
:class:`~xaijax.Model`) compiles nothing.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _filters, _model, _validation, errors
from xaijax import _validation as _checks
from xaijax._model import Model, as_model
from xaijax.typing import Array, ArrayLike, Params


class CausalCurve(NamedTuple):
    """Result of :func:`deletion_auc` / :func:`insertion_auc` with ``return_curve=True``.

    Attributes:
      auc: ``[B]`` areas under the curves.
      curve: ``[B, N + 1]`` target-class scores (the model's explained score: probabilities
        for a model with ``score="probability"``); ``curve[:, i]`` after ``i * step`` pixels
        were replaced (all pixels at ``i = N``).
    """

    auc: Array
    curve: Array


_RISE_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default, as RISE's gkern uses it


def rise_blur_kernel(size: int = 11, sigma: float = 5.0) -> np.ndarray:
    """The ``size x size`` Gaussian blur kernel of the RISE code, as a float32 numpy array.

    RISE builds it as ``scipy.ndimage.gaussian_filter`` of a centred unit impulse in a
    ``size x size`` array (``gkern(klen, nsig)``): a sampled Gaussian truncated at 4 sigma and
    *folded back* into the window by the filter's ``"reflect"`` boundary, so it sums to 1 even
    though sigma = 5 is wide for an 11-pixel window. It is separable: the outer product of
    ``xaijax._filters.gaussian_kernel1d(sigma, size, truncate=4)`` with itself.
    """
    k1 = _filters.gaussian_kernel1d(sigma, size, truncate=_RISE_TRUNCATE, dtype=np.float64)
    return np.outer(k1, k1).astype(np.float32)


def rise_blur(x: ArrayLike, size: int = 11, sigma: float = 5.0) -> Array:
    """Blurs ``[B, H, W, C]`` images per channel with :func:`rise_blur_kernel`, zero padding.

    This is the insertion start image of RISE (a ``conv2d`` with ``padding = size // 2``, so
    the borders darken towards 0 as in the reference code).
    """
    x = _validation.check_floating(x, "x", rank=4, layout="[B, H, W, C]")
    size, sigma = _check_blur(size, sigma)
    return _blur(x, size, sigma)


def _check_blur(size, sigma) -> tuple[int, float]:
    size = _validation.check_positive_int(size, "blur_size")
    if size % 2 == 0:
        raise errors.InvalidArgumentError(
            f"`blur_size` must be odd so the blurred image keeps its size, got {size}."
        )
    return size, _validation.check_positive_number(sigma, "blur_sigma")


@functools.partial(jax.jit, static_argnums=(1, 2))
def _blur(x: Array, size: int, sigma: float) -> Array:
    """:func:`rise_blur_kernel` applied separably, zeros outside (a ``"SAME"`` convolution)."""
    return _filters.gaussian_blur(x, sigma, size=size, truncate=_RISE_TRUNCATE, border="zero")


def deletion_auc(
    model: Any,
    params: Params,
    x: ArrayLike,
    saliency: ArrayLike,
    target: ArrayLike | None = None,
    *,
    step: int | None = None,
    substrate: float | ArrayLike = 0.0,
    chunk_size: int = 32,
    return_curve: bool = False,
) -> Array | CausalCurve:
    """Deletion metric of RISE: score drop as the most salient pixels are removed.

    Starts from ``x`` and replaces ``step`` pixels per step, in order of decreasing saliency, by
    the ``substrate`` (all channels of a pixel at once); ties in the saliency go to the lower
    row-major index first. See the module docstring for the curve and the AUC formula.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn(params, x) ->
        logits [B, K]``; its explained score is recorded. RISE records probabilities: pass
        ``xaijax.model(apply_fn, score="probability")`` for the paper's metric.
      params: its parameters.
      x: ``[B, H, W, C]`` floating images (already normalised as the model expects; the RISE
        code deletes to 0 in normalised space, i.e. to the mean colour).
      saliency: ``[B, H, W]`` floating maps.
      target: ``[B]`` class indices, or None for the class the model predicts on ``x``.
      step: pixels replaced per step; default ``W`` (one row's worth, so ``N = H`` steps: 224
        steps of 224 pixels for a 224 x 224 image, as in RISE).
      substrate: what deleted pixels become: a number, or an array broadcastable to ``x``
        (e.g. ``[C]`` mean colour, or a blurred copy ``[B, H, W, C]``).
      chunk_size: curve points per example and model call; each call evaluates
        ``B * chunk_size`` images.
      return_curve: also return the ``[B, N + 1]`` curves.

    Returns:
      ``[B]`` float32 AUCs (in [0, 1] for probabilities), or a :class:`CausalCurve` when
      ``return_curve``.

    Raises:
      InputShapeError, InputDTypeError, NonFiniteInputError: bad ``x``, ``saliency`` or
        ``substrate``.
      ModelCallError, ModelOutputError: the model cannot be called on ``x`` or gives no
        ``[B, K]`` scores.
      TargetOutOfRangeError: a ``target`` outside ``[0, K)``.
      NonFiniteOutputError: the model's scores on the curve are NaN or Inf.
      InvalidArgumentError: bad ``step`` or ``chunk_size``; an unhashable model.

    Example:
      >>> import jax.numpy as jnp, xaijax
      >>> from xaijax.metrics import deletion_auc
      >>> def apply_fn(params, x):  # logit of class 0 = sum of the top row
      ...     s = x[:, 0].sum(axis=(1, 2))
      ...     return jnp.stack([s, jnp.zeros_like(s)], axis=1)
      >>> probs = xaijax.model(apply_fn, score="probability")  # RISE's score
      >>> x = jnp.ones((1, 2, 2, 1))
      >>> sal = jnp.array([[[2.0, 1.0], [0.0, 0.0]]])
      >>> r = deletion_auc(probs, None, x, sal, jnp.array([0]), step=1, return_curve=True)
      >>> [round(float(v), 3) for v in r.curve[0]]  # softmax([2, 0]), softmax([1, 0]), 0.5...
      [0.881, 0.731, 0.5, 0.5, 0.5]
      >>> round(float(r.auc[0]), 3)  # (0.881/2 + 0.731 + 0.5 + 0.5 + 0.5/2) / 4
      0.605
      >>> r = deletion_auc(apply_fn, None, x, sal, jnp.array([0]), step=1, return_curve=True)
      >>> r.curve[0].tolist()  # a bare apply_fn: its logits
      [2.0, 1.0, 0.0, 0.0, 0.0]

    References:
      Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
      Models", BMVC 2018.
    """
    m = as_model(model, what="deletion_auc")
    x, s, step, chunk_size = _check_common(x, saliency, step, chunk_size)
    sub = _checks.as_array(substrate, "substrate")
    if not (jnp.issubdtype(sub.dtype, jnp.floating) or jnp.issubdtype(sub.dtype, jnp.integer)):
        raise errors.InputDTypeError(
            f"`substrate` must be a number or a real array, got dtype {sub.dtype}."
        )
    try:
        ok = np.broadcast_shapes(tuple(sub.shape), tuple(x.shape)) == tuple(x.shape)
    except ValueError:
        ok = False
    if not ok:
        raise errors.InputShapeError(
            f"`substrate` must broadcast to `x`'s shape {_checks.shape_str(x.shape)}, got shape "
            f"{_checks.shape_str(sub.shape)}: pass a number, a [C] colour or a [B, H, W, C] image."
        )
    _validation.check_finite(sub, "substrate")
    # broadcast inside the jitted curve function (no eager op, no extra compile)
    finish = np.asarray(sub, x.dtype) if isinstance(sub, np.ndarray) else sub.astype(x.dtype)
    return _causal_curve(m, params, x, s, target, x, finish, step, chunk_size, return_curve)


def insertion_auc(
    model: Any,
    params: Params,
    x: ArrayLike,
    saliency: ArrayLike,
    target: ArrayLike | None = None,
    *,
    step: int | None = None,
    blur_sigma: float = 5.0,
    blur_size: int = 11,
    chunk_size: int = 32,
    return_curve: bool = False,
) -> Array | CausalCurve:
    """Insertion metric of RISE: score rise as the most salient pixels are restored.

    Starts from a blurred copy of ``x`` (:func:`rise_blur`: RISE's ``gkern(11, 5)`` kernel, zero
    padding) and restores ``step`` original pixels per step in order of decreasing saliency (ties:
    lower row-major index first). See the module docstring for the curve and the AUC.

    Args:
      model: an :class:`~xaijax.Model`, a Linen module or a bare ``apply_fn(params, x) ->
        logits [B, K]``; its explained score is recorded. RISE records probabilities: pass
        ``xaijax.model(apply_fn, score="probability")`` for the paper's metric.
      params: its parameters.
      x: ``[B, H, W, C]`` floating images.
      saliency: ``[B, H, W]`` floating maps.
      target: ``[B]`` class indices, or None for the class the model predicts on ``x``.
      step: pixels restored per step; default ``W`` (``N = H`` steps).
      blur_sigma: Gaussian sigma of the start image's blur.
      blur_size: odd kernel size of the blur.
      chunk_size: curve points per example and model call; each call evaluates
        ``B * chunk_size`` images.
      return_curve: also return the ``[B, N + 1]`` curves.

    Returns:
      ``[B]`` float32 AUCs (in [0, 1] for probabilities), or a :class:`CausalCurve` when
      ``return_curve``.

    Raises:
      The errors of :func:`deletion_auc`, and InvalidArgumentError for a bad blur.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax.metrics import insertion_auc
      >>> def apply_fn(params, x):
      ...     s = x.sum(axis=(1, 2, 3))
      ...     return jnp.stack([s, jnp.zeros_like(s)], axis=1)
      >>> x = jnp.ones((2, 8, 8, 3))
      >>> sal = jnp.ones((2, 8, 8))
      >>> insertion_auc(apply_fn, None, x, sal, jnp.array([0, 1])).shape
      (2,)

    References:
      Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
      Models", BMVC 2018.
    """
    m = as_model(model, what="insertion_auc")
    x, s, step, chunk_size = _check_common(x, saliency, step, chunk_size)
    blur_size, blur_sigma = _check_blur(blur_size, blur_sigma)
    start = _blur(x, blur_size, blur_sigma)
    return _causal_curve(m, params, x, s, target, start, x, step, chunk_size, return_curve)


def _check_common(x, saliency, step, chunk_size):
    x = _validation.check_floating(x, "x", rank=4, layout="[B, H, W, C]")
    s = _checks.check_map(saliency, "saliency")
    if tuple(s.shape) != tuple(x.shape[:3]):
        raise errors.InputShapeError(
            f"`saliency` must be [B, H, W] = {_checks.shape_str(x.shape[:3])} to match `x`, got "
            f"{_checks.shape_str(s.shape)}. Resize the map to the image (e.g. "
            "`jax.image.resize(s, x.shape[:3], 'bilinear')`) or reduce its channels."
        )
    step = x.shape[2] if step is None else _validation.check_positive_int(step, "step")
    chunk_size = _validation.check_positive_int(chunk_size, "chunk_size")
    return x, s, step, chunk_size


def _causal_curve(m: Model, params, x, s, target, start, finish, step, chunk_size, return_curve):
    try:
        hash(m)
    except TypeError as e:
        raise errors.InvalidArgumentError(
            "The model must be hashable (it is a static argument of the jitted curve function): "
            f"its head {m.head!r} or score is not. Use a tuple path or a function as `head=`, "
            "and reuse one model object across calls."
        ) from e
    b, h, w, _ = x.shape
    num_classes = _model.num_classes(m, params, x)
    target = _validation.check_target(target, b)
    _validation.check_target_in_range(target, num_classes)
    if target is None:
        target = _predict(m, params, x)
    rank = _saliency_rank(s)
    n_steps = math.ceil(h * w / step)
    n_points = n_steps + 1
    k = min(chunk_size, n_points)
    n_chunks = math.ceil(n_points / k)
    counts = np.minimum(np.arange(n_chunks * k), n_steps) * step  # pixels replaced per point
    chunks = [
        _curve_chunk(m, params, start, finish, rank, target, counts[i * k : (i + 1) * k])
        for i in range(n_chunks)
    ]
    auc, curve = _assemble(chunks, n_points)
    if _validation.is_concrete(curve):  # one boolean to the host
        _validation.check_finite_output(curve, "The deletion / insertion curve")
    return CausalCurve(auc, curve) if return_curve else auc


@functools.partial(jax.jit, static_argnames=("m",))
def _predict(m, params, x):
    return jnp.argmax(m.scores(params, x), axis=-1).astype(jnp.int32)


@jax.jit
def _saliency_rank(s: Array) -> Array:
    """Rank of each pixel in decreasing saliency (0 = most salient), ties by row-major index."""
    b, h, w = s.shape
    flat = s.reshape(b, h * w)
    order = jnp.argsort(flat, axis=1, stable=True, descending=True)
    ranks = jnp.broadcast_to(jnp.arange(h * w, dtype=jnp.int32), (b, h * w))
    rank = jnp.zeros((b, h * w), jnp.int32).at[jnp.arange(b)[:, None], order].set(ranks)
    return rank.reshape(b, h, w)


@functools.partial(jax.jit, static_argnames=("m",))
def _curve_chunk(m, params, start, finish, rank, target, counts):
    b, h, w, c = start.shape
    k = counts.shape[0]
    finish = jnp.broadcast_to(finish, start.shape)
    replaced = rank[:, None, :, :] < counts[None, :, None, None]  # [B, K, H, W]
    imgs = jnp.where(replaced[..., None], finish[:, None], start[:, None])
    scores = m.scores(params, imgs.reshape(b * k, h, w, c)).astype(jnp.float32).reshape(b, k, -1)
    return jnp.take_along_axis(scores, target[:, None, None], axis=2)[..., 0]


@functools.partial(jax.jit, static_argnames=("n_points",))
def _assemble(chunks: list[Array], n_points: int) -> tuple[Array, Array]:
    curve = jnp.concatenate(chunks, axis=1)[:, :n_points]
    n = n_points - 1
    auc = (curve.sum(1) - curve[:, 0] / 2 - curve[:, -1] / 2) / n
    return auc, curve
