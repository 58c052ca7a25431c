"""Shared machinery of the surrogate explainers: fill images, sample masks, chunked evaluation."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _filters, errors
from xaijax._validation import (
    _shape_str,
    check_choice,
    check_floating,
    check_positive_int,
    check_target,
    check_target_in_range,
    is_concrete,
)
from xaijax.segmentation import num_segments as infer_num_segments
from xaijax.segmentation import segment_sizes, validate_segments
from xaijax.typing import ApplyFn

OUTPUTS = ("probs", "logits")


def check_fill(fill) -> str | float:
    """``"mean"``, ``"blur"`` or a finite number."""
    if isinstance(fill, str):
        return check_choice(fill, "fill", ("mean", "blur"))
    if isinstance(fill, bool) or not isinstance(fill, int | float) or not math.isfinite(fill):
        raise errors.InvalidArgumentError(
            f"`fill` must be 'mean' (segment mean colour, LIME's hide_color=None), 'blur' or a "
            f"number (LIME's hide_color), got {fill!r}."
        )
    return float(fill)


def check_common(num_samples, batch_size, output, blur_sigma) -> tuple[int, int]:
    """Checks the hyperparameters LIME and KernelSHAP share."""
    num_samples = check_positive_int(num_samples, "num_samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    check_choice(output, "output", OUTPUTS)
    if not math.isfinite(blur_sigma) or blur_sigma <= 0:
        raise errors.InvalidArgumentError(
            f"`blur_sigma` must be a positive number, got {blur_sigma!r}."
        )
    return num_samples, batch_size


def fill_image(
    x: jax.Array, segments: jax.Array, num: int, fill="mean", blur_sigma: float = 5.0
) -> jax.Array:
    """What a switched-off segment shows in LIME and KernelSHAP.

    Args:
      x: inputs ``[B, *spatial, C]``.
      segments: integer map ``[B, *spatial]`` with labels in ``[0, num)``.
      num: static number of segments.
      fill: ``"mean"`` (each segment's mean colour, LIME's ``hide_color=None``), ``"blur"`` (a
        Gaussian blur of each frame, ``blur_sigma`` pixels, truncated at 3 sigma and
        renormalised at the borders) or a number (a constant image).
      blur_sigma: see ``fill``.

    Returns:
      The fill image, shaped like ``x``.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[[[0.0], [1.0]], [[4.0], [4.0]]]])  # [1, 2, 2, 1]
      >>> fill_image(x, jnp.array([[[0, 0], [1, 1]]]), 2)[0, ..., 0]
      Array([[0.5, 0.5],
             [4. , 4. ]], dtype=float32)
    """
    if fill == "blur":  # each frame alone: only the two axes before the channels
        return _filters.gaussian_blur(
            x, blur_sigma, axes=(x.ndim - 3, x.ndim - 2), border="renormalise"
        )
    if fill != "mean":
        return jnp.full_like(x, fill)
    b, c = x.shape[0], x.shape[-1]
    flat = x.reshape(b, -1, c)
    labels = segments.reshape(b, -1)

    def single(v, s):
        sums = jax.ops.segment_sum(v, s, num)
        counts = jax.ops.segment_sum(jnp.ones(s.shape, v.dtype), s, num)
        return (sums / jnp.maximum(counts, 1.0)[:, None])[s]

    return jax.vmap(single)(flat, labels).reshape(x.shape)


def check_masks(masks, num_segments: int, batch_size: int) -> jax.Array:
    """Externally supplied binary sample masks ``[N, S]`` (shared) or ``[B, N, S]``, as float32."""
    if not hasattr(masks, "dtype"):
        masks = np.asarray(masks)
    shape = tuple(masks.shape)
    ok_shape = (len(shape) == 2 and shape[1] == num_segments) or (
        len(shape) == 3 and shape[0] == batch_size and shape[2] == num_segments
    )
    if not ok_shape:
        raise errors.InputShapeError(
            f"`masks` must be [N, S] (shared by the batch) or [B, N, S] with S = {num_segments} "
            f"segments and B = {batch_size}, got {_shape_str(shape)}: one row of on/off "
            "switches per sample, one column per segment label."
        )
    if is_concrete(masks):
        values = np.asarray(masks)
        if not np.all((values == 0) | (values == 1)):
            raise errors.InvalidArgumentError(
                "`masks` must hold only 0 and 1 (segment off / on); cast booleans with "
                "`masks.astype(jnp.float32)`."
            )
    return jnp.asarray(masks, jnp.float32)


def check_enough_samples(num_samples: int, valid: jax.Array, what: str) -> None:
    """Raises when a regression over the segments would have fewer samples than unknowns."""
    if is_concrete(valid):
        features = int(np.max(np.sum(np.asarray(valid), axis=-1)))
    else:
        features = int(valid.shape[-1])
    if num_samples <= features:
        raise errors.InvalidArgumentError(
            f"{what} fits {features} segment weights plus an intercept from `num_samples` = "
            f"{num_samples} samples; it needs more samples than segments. Raise `num_samples` "
            f"(e.g. to {max(1000, 10 * features)}) or use a coarser segmentation."
        )


def _outputs(apply_fn: ApplyFn, output: str, params, x, fill, segments, target, masks):
    """Model outputs for ``target`` on the perturbed inputs: ``masks [B, c, S] -> [B, c]``."""
    b, c = masks.shape[:2]
    keep = jax.vmap(lambda m, s: m[:, s])(masks, segments)[..., None]  # [B, c, *spatial, 1]
    perturbed = jnp.where(keep > 0, x[:, None], fill[:, None])
    logits = apply_fn(params, perturbed.reshape((b * c, *x.shape[1:])))
    logits = logits.reshape(b, c, -1)
    if output == "probs":
        logits = jax.nn.softmax(logits, axis=-1)
    return jnp.take_along_axis(logits, target[:, None, None], axis=2)[..., 0]


# Module-level jits keyed by the (hashable) model and options: explainers built twice with the
# same model and options share their compiled code.
_outputs_jit = jax.jit(_outputs, static_argnums=(0, 1))


class Evaluator:
    """Evaluates a model on ``N`` masked copies of each input, ``batch_size`` inputs at a time.

    Eagerly (concrete arguments) it loops in Python over one jitted chunk function, which
    compiles once and ran fastest on CPU; under an outer transformation it uses ``lax.map`` so
    memory stays bounded inside one program.
    """

    def __init__(self, apply_fn: ApplyFn, output: str, batch_size: int):
        self.apply_fn = apply_fn
        self.output = output
        self.batch_size = batch_size

    def __call__(self, params, x, fill, segments, target, masks) -> jax.Array:
        b, n, s = masks.shape
        chunk = max(1, min(n, self.batch_size // b))
        num_chunks = -(-n // chunk)
        pad = num_chunks * chunk - n
        if pad:
            masks = jnp.concatenate([masks, jnp.ones((b, pad, s), masks.dtype)], axis=1)
        args = (params, x, fill, segments, target, masks)
        if all_concrete(*args):
            parts = [
                _outputs_jit(
                    self.apply_fn,
                    self.output,
                    params,
                    x,
                    fill,
                    segments,
                    target,
                    masks[:, i * chunk : (i + 1) * chunk],
                )
                for i in range(num_chunks)
            ]
            out = jnp.concatenate(parts, axis=1)
        else:
            chunks = jnp.moveaxis(masks.reshape(b, num_chunks, chunk, s), 1, 0)
            out = jax.lax.map(
                lambda m: _outputs(
                    self.apply_fn, self.output, params, x, fill, segments, target, m
                ),
                chunks,
            )
            out = jnp.moveaxis(out, 0, 1).reshape(b, num_chunks * chunk)
        return out[:, :n]


def all_concrete(*args: Any) -> bool:
    return all(is_concrete(a) for a in jax.tree_util.tree_leaves(args))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def prepare(apply_fn: ApplyFn, num: int, fill, blur_sigma: float, params, x, segments, target):
    """``(target or the predicted class, fill image, logits of x)``, jitted."""
    logits = apply_fn(params, x)
    if target is None:
        target = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return target, fill_image(x, segments, num, fill, blur_sigma), logits


def check_inputs(x, target, segments, num_segments: int | None):
    """The per-call checks LIME and KernelSHAP share.

    Returns:
      ``(x, segments, num, target, valid)``: the checked batch ``[B, *spatial, C]``, the segment
      maps ``[B, *spatial]``, the static number of segments, ``target`` ``[B]`` or ``None`` and
      ``valid`` ``[B, num]`` (the segments that are not empty).
    """
    x = check_floating(x, "x", min_rank=3, layout="[B, *spatial, C]")
    segs = validate_segments(segments, x, num_segments=num_segments)
    num = infer_num_segments(segs) if num_segments is None else num_segments
    target = check_target(target, x.shape[0])
    valid = segment_sizes(segs, num) > 0
    return x, segs, num, target, valid


def target_and_fill(apply_fn: ApplyFn, num: int, fill, blur_sigma: float, params, x, segs, target):
    """:func:`prepare` plus the range check of ``target``: ``(target, fill image)``."""
    target, fill_img, logits = prepare(apply_fn, num, fill, blur_sigma, params, x, segs, target)
    check_target_in_range(target, logits.shape[-1])
    return target, fill_img
