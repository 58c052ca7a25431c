"""The authors' five-crop protocol (``papers.md`` 6(b).8), as a wrapper of any map explainer."""

from __future__ import annotations

import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xaijax import _model, _validation, errors
from xaijax._explainer import Explainer, as_explainer, check_batch, check_values
from xaijax._explainer import options as _explainer_options
from xaijax._model import Model
from xaijax.fixations._post import _check_fraction
from xaijax.typing import Array, ArrayLike, Params

CROP_REDUCTIONS = ("sum", "mean")
CROP_SELECTIONS = ("agree", "all")

#: Crop order of Caffe's ``oversample``: the four corners, then the centre.
CORNERS_AND_CENTRE = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")


def crop_geometry(height: int, width: int, crop_fraction: float) -> tuple[tuple[int, int], list]:
    """The resized size and the five crop offsets for an image of ``height x width``.

    The image is resized by ``1 / crop_fraction`` (rounded to whole pixels) and the crops have
    the image's own size, so the model sees inputs of the shape it was trained on.

    Returns:
      ``((resized_h, resized_w), [(dy, dx)] * 5)`` in :data:`CORNERS_AND_CENTRE` order.
    """
    rh = max(height, int(round(height / crop_fraction)))
    rw = max(width, int(round(width / crop_fraction)))
    dy, dx = rh - height, rw - width
    return (rh, rw), [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]


def _back_matrix(n: int, resized: int, offset: int) -> np.ndarray:
    """``[n, n]`` 0/1 matrix: image index (row) of every crop index (column).

    Crop index ``i`` sits at ``i + offset`` in the resized image, hence at
    ``floor((i + offset) * n / resized)`` in the image (the authors' ``int((i + off) / r)``).
    """
    target = np.minimum(((np.arange(n) + offset) * n) // resized, n - 1)
    return (np.arange(n)[:, None] == target[None, :]).astype(np.float32)


def _crops_of(x: Array, fraction: float) -> tuple[Array, tuple]:
    """``[5, B, H, W, C]`` crops of the resized batch, and the geometry."""
    b, h, w = x.shape[:3]
    (rh, rw), offsets = crop_geometry(h, w, fraction)
    big = x
    if (rh, rw) != (h, w):
        big = jax.image.resize(x, (b, rh, rw, *x.shape[3:]), method="linear")
    crops = [
        lax.slice_in_dim(lax.slice_in_dim(big, dy, dy + h, axis=1), dx, dx + w, axis=2)
        for dy, dx in offsets
    ]
    return jnp.stack(crops), ((rh, rw), offsets)


def _vote_probabilities(m: Model, params: Params, x: Array) -> Array:
    """What the vote averages: class probabilities ``[N, K]`` as in the authors' ``pred``.

    The model's explained scores, made probabilities by a softmax when they are logits or
    log-probabilities (the softmax of log-probabilities is the probabilities); probabilities and
    the scores of a function ``score`` are averaged as they are.
    """
    scores = m.scores(params, x).astype(jnp.float32)
    if m.score in ("logit", "log_probability"):
        return jax.nn.softmax(scores, axis=-1)
    return scores


def _vote(m: Model, mirrored_vote: bool, select: str, params, crops, target):
    """Label ``[B]`` and crops used ``[5, B]`` (the authors' ``pred``)."""
    n, b = crops.shape[:2]
    flat = crops.reshape(n * b, *crops.shape[2:])
    probs = _vote_probabilities(m, params, flat).reshape(n, b, -1)
    crop_labels = jnp.argmax(probs, axis=-1)  # [5, B]
    if target is None:
        mean = jnp.sum(probs, axis=0)
        if mirrored_vote:
            mirrored = _vote_probabilities(m, params, jnp.flip(flat, axis=2))
            mean = mean + jnp.sum(mirrored.reshape(n, b, -1), axis=0)
        label = jnp.argmax(mean, axis=-1)
        predicted = jnp.any(crop_labels == label[None], axis=0)
        label = jnp.where(predicted, label, crop_labels[4])
    else:
        label = target
    if select == "all":
        return label, jnp.ones((n, b), bool)
    used = crop_labels == label[None]
    centre = (jnp.arange(n) == 4)[:, None]
    return label, used | (centre & ~jnp.any(used, axis=0)[None])


def _check_images(x: Array) -> None:
    if x.ndim != 4:
        raise errors.InputShapeError(
            f"`x` must have rank 4 laid out as [B, H, W, C] (a batch of images) for multi_crop, "
            f"got shape {list(x.shape)}. For a single image add a batch axis: `x[None]`."
        )


#: The crops-used function of every multi_crop explainer, by its ``run`` (shared by the
#: explainer's bound copies), for :func:`crops_used`.
_CROPS_USED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def multi_crop(
    explainer: Any,
    *,
    crop_fraction: float = 0.875,
    mirrored_vote: bool = True,
    select: str = "agree",
    reduce: str = "sum",
) -> Explainer:
    """The authors' five-crop protocol around an explainer: fixations of every agreeing crop.

    CNN Fixations' code does not backtrack the image itself but five crops of it (Caffe's
    ``oversample``): the image is resized so that a crop covers ``crop_fraction`` of each side
    (256 -> 224 px there: 0.875), the four corner crops and the centre crop are classified, the
    label is the arg-max of the mean probability over the crops (with their mirror images,
    ``mirrored_vote``), or the centre crop's label when no crop predicts it; every crop whose own
    prediction is that label is backtracked, and the fixations of all of them, mapped back to
    image coordinates (``int((i + offset) / r)``), are added up (``papers.md`` 6(b).8). The
    authors' heatmap then counts a location once per crop and channel that fixates it.

    The vote reads the inner explainer's model (``explainer.model``): its explained scores,
    through a softmax when they are logits (the default) or log-probabilities, so the vote
    averages probabilities as the authors' does; a model with ``score="probability"`` is
    averaged as it is, and so are the scores of a function ``score``.

    Explaining small crops at several offsets moves the image borders, where a network's
    zero padding makes some channels peak, to different image positions, while the object stays
    put: their fixations spread out and the object's pile up.

    The wrapper works for any explainer that returns a map at input resolution
    ``[B, H, W, ...]`` (fixation maps from :func:`fixations`, or saliency maps from
    :mod:`xaijax.attribution`, e.g. to compare with Grad-CAM under the same crops).

    Args:
      explainer: an :class:`~xaijax.Explainer` returning maps ``[B, H, W, ...]`` for images
        ``x [B, H, W, C]``, e.g. ``fixations(model, channel_reduction="count")``; ``jax.jit``
        of one and ``functools.partial`` of one with keywords are read through. A bare function
        raises :class:`~xaijax.errors.NotAnExplainerError`: make it an explainer with
        ``xaijax.explainer(fn, model)``, which also names the model that votes.
      crop_fraction: the side of a crop as a fraction of the resized image's side, in (0, 1];
        1 gives five identical crops of the unresized image.
      mirrored_vote: the label vote also averages the mirror image of every crop (Caffe's ten
        crops); the mirrored crops are not backtracked, as in the authors' code.
      select: ``"agree"`` (authors): explain the crops whose prediction is the label, the centre
        crop when none is; ``"all"``: every crop.
      reduce: ``"sum"`` (authors, for fixation counts) adds the crops' maps at every image
        location; ``"mean"`` divides by how many used crop pixels land there (for saliency maps).

    Returns:
      An :class:`~xaijax.Explainer` ``explain_crops(params, x, target=None, **kw) -> map [B, H,
      W, ...]`` (the inner's result kind): int32 for ``"sum"`` of integer or boolean maps, else
      float32. ``target`` ``[B]`` fixes the label (the crops that predict it are explained; the
      centre crop when none does); ``None`` votes as above. Extra keyword arguments (and a
      ``key`` when the inner explainer is stochastic) go to the inner explainer.
      :func:`crops_used` ``(explain_crops, params, x, target=None) -> [B, 5]`` bool says which
      crops were explained, in :data:`CORNERS_AND_CENTRE` order.

    Raises:
      NotAnExplainerError: ``explainer`` is not an explainer.
      InvalidArgumentError: ``crop_fraction`` outside (0, 1], unknown ``select`` or ``reduce``.
      InputShapeError: (when called) ``x`` is not a batch of images ``[B, H, W, C]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax.fixations import fixations, multi_crop
      >>> apply_fn = lambda p, x: jnp.mean(x, axis=(1, 2)) @ p
      >>> x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
      >>> explain = multi_crop(fixations(apply_fn, channel_reduction="count"))
      >>> explain(jnp.ones((3, 4)), x).shape
      (2, 16, 16)

    References:
      Mopuri, Garg and Babu, "CNN Fixations: An unraveling approach to visualize the
      discriminative image regions", IEEE TIP 28(5), 2019 (arXiv 1708.06670); code
      ``val-iisc/cnn-fixations`` ``demo/utils.py`` (``imgPreprocess``, ``pred``) and
      ``demo/layers.py`` (``data``).
    """
    inner = as_explainer(explainer, "multi_crop")
    fraction = _check_fraction(crop_fraction, "crop_fraction", allow_zero=False)
    _validation.check_choice(select, "select", CROP_SELECTIONS)
    _validation.check_choice(reduce, "reduce", CROP_REDUCTIONS)
    m = inner.model
    bound = dict(inner.bound)

    def combine(params: Params, x: Array, target: Array | None, kwargs: dict) -> Array:
        crops, ((rh, rw), offsets) = _crops_of(x, fraction)
        n, b, h, w = crops.shape[:4]
        label, used = _vote(m, mirrored_vote, select, params, crops, target)
        flat = crops.reshape(n * b, *crops.shape[2:])
        maps = inner.run(params, flat, jnp.tile(label, n), **{**bound, **kwargs})
        maps = maps.reshape(n, b, *maps.shape[1:])
        integer = not jnp.issubdtype(maps.dtype, jnp.floating)
        weight = used.reshape(n, b, *([1] * (maps.ndim - 2))).astype(jnp.float32)
        total = jnp.zeros((b, h, w, *maps.shape[4:]), jnp.float32)
        cover = jnp.zeros((b, h, w), jnp.float32)
        for i, (dy, dx) in enumerate(offsets):
            ay = jnp.asarray(_back_matrix(h, rh, dy))  # [H, h]
            ax = jnp.asarray(_back_matrix(w, rw, dx))  # [W, w]
            mi = maps[i].astype(jnp.float32) * weight[i]
            total = total + jnp.einsum(
                "Yy,byx...,Xx->bYX...", ay, mi, ax, precision=lax.Precision.HIGHEST
            )
            if reduce == "mean":
                ones = jnp.broadcast_to(weight[i].reshape(b, 1, 1), (b, h, w))
                cover = cover + jnp.einsum(
                    "Yy,byx,Xx->bYX", ay, ones, ax, precision=lax.Precision.HIGHEST
                )
        if reduce == "mean":
            c = cover.reshape(cover.shape + (1,) * (total.ndim - 3))
            return total / jnp.maximum(c, 1.0)
        return jnp.round(total).astype(jnp.int32) if integer else total

    combine_jit = jax.jit(combine)

    def run(params: Params, x: Array, target: Array | None = None, **kwargs: Any) -> Array:
        return combine_jit(params, x, target, kwargs)

    def check(params, x, target, kwargs):
        _check_images(x)
        if inner.check is not None:
            x, target, kwargs = inner.check(params, x, target, kwargs)
        return x, target, kwargs

    @jax.jit
    def used_crops(params: Params, x: Array, target: Array | None) -> Array:
        return _vote(m, mirrored_vote, select, params, _crops_of(x, fraction)[0], target)[1].T

    _CROPS_USED[run] = used_crops
    return Explainer(
        name=f"multi_crop({inner.name})",
        model=m,
        run=run,
        result=inner.result,
        options=_explainer_options(
            crop_fraction=fraction, mirrored_vote=mirrored_vote, select=select, reduce=reduce
        ),
        inner=inner,
        stochastic=inner.stochastic,
        min_rank=4,
        check=check,
    )


def crops_used(
    explainer: Any, params: Params, x: ArrayLike, target: ArrayLike | None = None
) -> Array:
    """Which of the five crops a :func:`multi_crop` explainer explains for ``x``.

    Args:
      explainer: what :func:`multi_crop` returned (``jax.jit`` or ``functools.partial`` of it
        are read through).
      params: the model's parameters.
      x: ``[B, H, W, C]`` floating images.
      target: ``[B]`` class indices fixing the label, or ``None`` for the crops' vote.

    Returns:
      ``[B, 5]`` bool, in :data:`CORNERS_AND_CENTRE` order.

    Raises:
      NotAnExplainerError: ``explainer`` is not an explainer.
      InvalidArgumentError: it is an explainer, but not one :func:`multi_crop` made.
      InputShapeError, InputDTypeError, NonFiniteInputError, TargetOutOfRangeError: bad ``x``
        or ``target``, as when calling the explainer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax.fixations import crops_used, fixations, multi_crop
      >>> apply_fn = lambda p, x: jnp.mean(x, axis=(1, 2)) @ p
      >>> x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
      >>> explain = multi_crop(fixations(apply_fn), select="all")
      >>> crops_used(explain, jnp.ones((3, 4)), x).tolist()
      [[True, True, True, True, True], [True, True, True, True, True]]
    """
    e = as_explainer(explainer, "crops_used")
    used = _CROPS_USED.get(e.run)
    if used is None:
        raise errors.InvalidArgumentError(
            f"`crops_used` needs an explainer made by `multi_crop`, got {e.name!r}: pass "
            "`multi_crop(...)`'s result."
        )
    x = check_batch(x, min_rank=4)
    _check_images(x)
    target = _validation.check_target(target, x.shape[0])
    check_values(x, target, _model.num_classes(e.model, params, x))
    return used(params, x, target)
