"""The authors' five-crop protocol (``papers.md`` 6(b).8), as a wrapper of any map explainer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xaijax import _validation, errors
from xaijax.fixations._post import _check_fraction
from xaijax.typing import ApplyFn, Array, ArrayLike, Params

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


def multi_crop(
    explain,
    *,
    apply_fn: ApplyFn | None = None,
    crop_fraction: float = 0.875,
    mirrored_vote: bool = True,
    select: str = "agree",
    reduce: str = "sum",
):
    """The authors' five-crop protocol around an explainer: fixations of every agreeing crop.

    CNN Fixations' code does not backtrack the image itself but five crops of it (Caffe's
    ``oversample``): the image is resized so that a crop covers ``crop_fraction`` of each side
    (256 -> 224 px there: 0.875), the four corner crops and the centre crop are classified, the
    label is the arg-max of the mean probability over the crops (with their mirror images,
    ``mirrored_vote``), or the centre crop's label when no crop predicts it; every crop whose own
    prediction is that label is backtracked, and the fixations of all of them, mapped back to
    image coordinates (``int((i + offset) / r)``), are added up (``papers.md`` 6(b).8). The
    authors' heatmap then counts a location once per crop and channel that fixates it.

    Explaining small crops at several offsets moves the image borders, where a network's
    zero padding makes some channels peak, to different image positions, while the object stays
    put: their fixations spread out and the object's pile up.

    The wrapper works for any explainer that returns a map at input resolution
    ``[B, H, W, ...]`` (fixation maps from :func:`fixations`, or saliency maps from
    :mod:`xaijax.attribution`, e.g. to compare with Grad-CAM under the same crops).

    Args:
      explain: ``explain(params, x, target) -> map [B, H, W, ...]`` for images
        ``x [B, H, W, C]``, e.g. ``fixations(apply_fn, channel_reduction="count")``.
      apply_fn: the model, ``apply_fn(params, x) -> logits [B, K]``, used for the crops' vote;
        ``None`` takes ``explain.apply_fn`` (set by :func:`fixations` and the attribution
        explainers).
      crop_fraction: the side of a crop as a fraction of the resized image's side, in (0, 1];
        1 gives five identical crops of the unresized image.
      mirrored_vote: the label vote also averages the mirror image of every crop (Caffe's ten
        crops); the mirrored crops are not backtracked, as in the authors' code.
      select: ``"agree"`` (authors): explain the crops whose prediction is the label, the centre
        crop when none is; ``"all"``: every crop.
      reduce: ``"sum"`` (authors, for fixation counts) adds the crops' maps at every image
        location; ``"mean"`` divides by how many used crop pixels land there (for saliency maps).

    Returns:
      ``explain_crops(params, x, target=None) -> map [B, H, W, ...]``: int32 for ``"sum"`` of
      integer or boolean maps, else float32. ``target`` ``[B]`` fixes the label (the crops that
      predict it are explained; the centre crop when none does); ``None`` votes as above.
      ``explain_crops.crops_used(params, x, target=None) -> [B, 5]`` bool says which crops were
      explained, in :data:`CORNERS_AND_CENTRE` order.

    Raises:
      InvalidArgumentError: no model for the vote, ``crop_fraction`` outside (0, 1], unknown
        ``select`` or ``reduce``.
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
    if not callable(explain):
        raise errors.InvalidArgumentError(
            f"`explain` must be callable as explain(params, x, target), got "
            f"{type(explain).__name__}."
        )
    apply_fn = apply_fn if apply_fn is not None else getattr(explain, "apply_fn", None)
    if not callable(apply_fn):
        raise errors.InvalidArgumentError(
            "multi_crop needs the model to vote on the crops' label: pass "
            "`apply_fn=` (apply_fn(params, x) -> logits), or wrap an explainer that carries it "
            "(`fixations(apply_fn)` does)."
        )
    fraction = _check_fraction(crop_fraction, "crop_fraction", allow_zero=False)
    _validation.check_choice(select, "select", CROP_SELECTIONS)
    _validation.check_choice(reduce, "reduce", CROP_REDUCTIONS)

    def crops_of(x: Array) -> tuple[Array, list]:
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
        return jnp.stack(crops), [(rh, rw), offsets]

    def vote(params: Params, crops: Array, target: Array | None) -> tuple[Array, Array]:
        """Label ``[B]`` and crops used ``[5, B]`` (the authors' ``pred``)."""
        n, b = crops.shape[:2]
        flat = crops.reshape(n * b, *crops.shape[2:])
        logits = apply_fn(params, flat)
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(n, b, -1)
        crop_labels = jnp.argmax(probs, axis=-1)  # [5, B]
        if target is None:
            mean = jnp.sum(probs, axis=0)
            if mirrored_vote:
                mirrored = apply_fn(params, jnp.flip(flat, axis=2))
                mean = mean + jnp.sum(
                    jax.nn.softmax(mirrored.astype(jnp.float32), axis=-1).reshape(n, b, -1), axis=0
                )
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

    def run(params: Params, x: Array, target: Array | None) -> Array:
        crops, ((rh, rw), offsets) = crops_of(x)
        n, b, h, w = crops.shape[:4]
        label, used = vote(params, crops, target)
        maps = explain(params, crops.reshape(n * b, *crops.shape[2:]), jnp.tile(label, n))
        maps = maps.reshape(n, b, *maps.shape[1:])
        integer = not jnp.issubdtype(maps.dtype, jnp.floating)
        weight = used.reshape(n, b, *([1] * (maps.ndim - 2))).astype(jnp.float32)
        total = jnp.zeros((b, h, w, *maps.shape[4:]), jnp.float32)
        cover = jnp.zeros((b, h, w), jnp.float32)
        for i, (dy, dx) in enumerate(offsets):
            ay = jnp.asarray(_back_matrix(h, rh, dy))  # [H, h]
            ax = jnp.asarray(_back_matrix(w, rw, dx))  # [W, w]
            m = maps[i].astype(jnp.float32) * weight[i]
            total = total + jnp.einsum(
                "Yy,byx...,Xx->bYX...", ay, m, ax, precision=lax.Precision.HIGHEST
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

    def used_crops(params: Params, x: Array, target: Array | None) -> Array:
        return vote(params, crops_of(x)[0], target)[1].T

    run_jit = jax.jit(run)
    used_jit = jax.jit(used_crops)

    def check(x, target):
        x = _validation.check_floating(x, "x", rank=4, layout="[B, H, W, C] (a batch of images)")
        return x, _validation.check_target(target, x.shape[0])

    num_classes: dict = {}  # per input shape and parameter structure: trace the model once

    def explain_crops(params: Params, x: ArrayLike, target: ArrayLike | None = None) -> Array:
        x, target = check(x, target)
        key = (x.shape, str(x.dtype), jax.tree_util.tree_structure(params))
        if key not in num_classes:
            out = jax.eval_shape(apply_fn, params, x)
            _validation.check_logits(out, x.shape[0])
            num_classes[key] = int(out.shape[-1])
        _validation.check_target_in_range(target, num_classes[key])
        return run_jit(params, x, target)

    def crops_used(params: Params, x: ArrayLike, target: ArrayLike | None = None) -> Array:
        x, target = check(x, target)
        return used_jit(params, x, target)

    explain_crops.crops_used = crops_used
    explain_crops.apply_fn = apply_fn
    return explain_crops
