"""Shared machinery of the surrogate explainers: fill images, sample masks, chunked evaluation."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _filters, errors
from xaijax import _validation as v
from xaijax._model import Model
from xaijax.superpixels._segments import check_segments


def check_fill(fill) -> str | float:
    """``"mean"``, ``"blur"`` or a finite number."""
    if isinstance(fill, str):
        return v.check_choice(fill, "fill", ("mean", "blur"))
    ok = not isinstance(fill, bool) and isinstance(fill, int | float | np.integer | np.floating)
    if not ok or not np.isfinite(fill):
        raise errors.InvalidArgumentError(
            f"`fill` must be 'mean' (segment mean colour, LIME's hide_color=None), 'blur' or a "
            f"finite number (LIME's hide_color), got {fill!r}."
        )
    return float(fill)


def check_common(num_samples, chunk_size, blur_sigma) -> tuple[int, int | None, float]:
    """Checks the hyperparameters LIME and KernelSHAP share."""
    num_samples = v.check_positive_int(num_samples, "num_samples")
    if chunk_size is not None:
        chunk_size = v.check_positive_int(chunk_size, "chunk_size")
    blur_sigma = v.check_positive_number(blur_sigma, "blur_sigma")
    return num_samples, chunk_size, blur_sigma


def fill_image(
    x: jax.Array, segments: jax.Array, num_segments: int, fill="mean", blur_sigma: float = 5.0
) -> jax.Array:
    """What a switched-off segment shows in LIME and KernelSHAP.

    Args:
      x: inputs ``[B, *spatial, C]``.
      segments: integer map ``[B, *spatial]`` with labels in ``[0, num_segments)``.
      num_segments: static number of segment labels ``S``.
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
        sums = jax.ops.segment_sum(v, s, num_segments)
        counts = jax.ops.segment_sum(jnp.ones(s.shape, v.dtype), s, num_segments)
        return (sums / jnp.maximum(counts, 1.0)[:, None])[s]

    return jax.vmap(single)(flat, labels).reshape(x.shape)


@jax.jit
def _binary(masks) -> jax.Array:
    return jnp.all((masks == 0) | (masks == 1))


def check_masks(masks, num_segments: int, batch_size: int) -> jax.Array:
    """Externally supplied binary sample masks ``[N, S]`` (shared) or ``[B, N, S]``, as float32;
    the 0/1 check runs on the device (one boolean back)."""
    if not hasattr(masks, "dtype"):
        masks = np.asarray(masks)
    shape = tuple(masks.shape)
    ok_shape = (len(shape) == 2 and shape[1] == num_segments) or (
        len(shape) == 3 and shape[0] == batch_size and shape[2] == num_segments
    )
    if not ok_shape:
        raise errors.InputShapeError(
            f"`masks` must be [N, S] (shared by the batch) or [B, N, S] with S = {num_segments} "
            f"segments and B = {batch_size}, got {v._shape_str(shape)}: one row of on/off "
            "switches per sample, one column per segment label."
        )
    masks = jnp.asarray(masks, jnp.float32)
    if v.is_concrete(masks) and not bool(jax.device_get(_binary(masks))):
        raise errors.InvalidArgumentError(
            "`masks` must hold only 0 and 1 (segment off / on); cast booleans with "
            "`masks.astype(jnp.float32)`."
        )
    return masks


def check_call(x, kwargs: dict, num_segments: int, num_samples: int, what: str) -> dict:
    """The per-call checks LIME and KernelSHAP share (the Explainer's ``check`` hook).

    Checks ``segments`` (required) and ``masks`` (optional) against ``x`` and returns the
    per-call arguments with ``segments`` as ``int32`` ``[B, *spatial]`` and ``masks`` as float32.
    Every image must have fewer non-empty segments than samples (``N`` of ``masks``, or
    ``num_samples``).
    """
    kwargs = dict(kwargs)
    if kwargs.get("segments") is None:
        raise errors.InvalidArgumentError(
            f"{what} needs the segment map of each call: `explain(params, x, segments=..., "
            f"key=...)`, integer labels in [0, {num_segments}) shaped [B, *spatial] or "
            "[*spatial]."
        )
    unknown = sorted(set(kwargs) - {"segments", "masks", "key"})
    if unknown:
        raise errors.InvalidArgumentError(
            f"{what} takes the per-call arguments `segments`, `key` and `masks`, got "
            f"{unknown}: hyperparameters go to the factory."
        )
    masks = kwargs.get("masks")
    if masks is not None:
        masks = check_masks(masks, num_segments, x.shape[0])
        kwargs["masks"] = masks
    n = num_samples if masks is None else masks.shape[-2]
    kwargs["segments"] = check_segments(
        kwargs["segments"], x, num_segments, fewer_samples=(n, what)
    )
    return kwargs


def _outputs(m: Model, params, x, fill, segments, target, masks):
    """The explained scores for ``target`` on perturbed inputs: ``masks [B, c, S] -> [B, c]``."""
    b, c = masks.shape[:2]
    keep = jax.vmap(lambda mm, s: mm[:, s])(masks, segments)[..., None]  # [B, c, *spatial, 1]
    perturbed = jnp.where(keep > 0, x[:, None], fill[:, None])
    # Examples stay the outer axis of the flattened batch: a sharded batch stays sharded.
    scores = m.scores(params, perturbed.reshape((b * c, *x.shape[1:])))
    scores = scores.reshape(b, c, -1)
    return jnp.take_along_axis(scores, target[:, None, None], axis=2)[..., 0]


# Module-level jits keyed by the (hashable) model: explainers built twice with the same model
# share their compiled code.
_outputs_jit = jax.jit(_outputs, static_argnums=0)


class Evaluator:
    """Evaluates a model on ``N`` masked copies of each input, ``chunk_size`` copies of each
    example per model call (``B * chunk_size`` inputs; ``None``: all ``N`` at once).

    Eagerly (concrete arguments) it loops in Python over one jitted chunk function, which
    compiles once and ran fastest on CPU; under an outer transformation it uses ``lax.map`` so
    memory stays bounded inside one program.
    """

    def __init__(self, model: Model, chunk_size: int | None):
        self.model = model
        self.chunk_size = chunk_size

    def __call__(self, params, x, fill, segments, target, masks) -> jax.Array:
        b, n, s = masks.shape
        chunk = n if self.chunk_size is None else min(n, self.chunk_size)
        num_chunks = -(-n // chunk)
        pad = num_chunks * chunk - n
        if pad:
            masks = jnp.concatenate([masks, jnp.ones((b, pad, s), masks.dtype)], axis=1)
        args = (params, x, fill, segments, target, masks)
        if all_concrete(*args):
            parts = [
                _outputs_jit(
                    self.model,
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
                lambda mm: _outputs(self.model, params, x, fill, segments, target, mm), chunks
            )
            out = jnp.moveaxis(out, 0, 1).reshape(b, num_chunks * chunk)
        return out[:, :n]


def all_concrete(*args: Any) -> bool:
    return all(v.is_concrete(a) for a in jax.tree_util.tree_leaves(args))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def target_and_fill(m: Model, num: int, fill, blur_sigma: float, params, x, segments, target):
    """``(target or the class of highest score, fill image)``, jitted."""
    if target is None:
        target = jnp.argmax(m.scores(params, x), axis=-1).astype(jnp.int32)
    return target, fill_image(x, segments, num, fill, blur_sigma)
