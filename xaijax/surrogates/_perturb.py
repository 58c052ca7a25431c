"""Shared machinery of the surrogate explainers: fill images (or a pad id for tokens), sample
masks, chunked evaluation."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _filters, errors
from xaijax import _validation as v
from xaijax._model import Model
from xaijax.superpixels._segments import check_num_segments, check_segments


def check_fill(fill) -> str | float:
    """``"mean"``, ``"blur"`` or a finite number."""
    if isinstance(fill, str):
        return v.check_choice(fill, "fill", ("mean", "blur"))
    try:
        return v.check_number(fill, "fill")
    except errors.InvalidArgumentError as e:
        raise errors.InvalidArgumentError(
            f"`fill` must be 'mean' (segment mean colour, LIME's hide_color=None), 'blur' or a "
            f"finite number (LIME's hide_color), got {fill!r}."
        ) from e


def token_fill(fill, vocab_size: int | None) -> int | None:
    """The pad or mask id that replaces switched-off tokens: ``fill`` when it is an int (checked
    against ``vocab_size`` when given), else ``None`` (a fill for images only)."""
    if isinstance(fill, bool) or not isinstance(fill, int | np.integer):
        return None
    fill = int(fill)
    if vocab_size is not None and not 0 <= fill < vocab_size:
        raise errors.InvalidArgumentError(
            f"`fill`={fill} is not a token id of a vocabulary of `vocab_size`={vocab_size}: pass "
            f"the pad or mask id of your tokenizer, in [0, {vocab_size})."
        )
    return fill


def check_vocab_size(vocab_size) -> int | None:
    """``None`` or a positive int."""
    return None if vocab_size is None else v.check_positive_int(vocab_size, "vocab_size")


@jax.jit
def _tokens_ok(x, vocab_size):
    return jnp.all((x >= 0) & (x < vocab_size))


def check_inputs(x, fill_id: int | None, vocab_size: int | None, what: str) -> bool:
    """The input checks of LIME and KernelSHAP; returns whether ``x`` holds token ids.

    Floats must be ``[B, *spatial, C]`` (images, videos). Integers are token ids ``[B, L]``,
    masked with the int ``fill`` (a pad or mask id), which must fit ``x``'s dtype; with
    ``vocab_size`` the ids of ``x`` are checked to lie in ``[0, vocab_size)`` on the device (an
    embedding lookup would clamp them silently under ``jit``).
    """
    if not jnp.issubdtype(x.dtype, jnp.integer):
        if x.ndim < 3:
            raise errors.InputDTypeError(
                f"{what} takes images or videos [B, *spatial, C] as floats, or token ids [B, L] "
                f"as integers; got {x.dtype} of shape {v._shape_str(x.shape)}. If these are "
                "token ids, pass them as integers: `x.astype(jnp.int32)`."
            )
        return False
    if x.ndim != 2:
        raise errors.InputShapeError(
            f"{what} reads integer inputs as token ids [B, L], got {x.dtype} of shape "
            f"{v._shape_str(x.shape)}. For uint8 images or videos use "
            "`x.astype(jnp.float32) / 255.0`."
        )
    if fill_id is None:
        raise errors.InvalidArgumentError(
            f"{what} over token ids replaces switched-off tokens with a pad or mask id: build it "
            "with `fill=<id>` (an int, e.g. `fill=0` for xaijax.data.synthetic's PAD_ID). "
            "'mean', 'blur' and float fills are for images."
        )
    info = jnp.iinfo(x.dtype)
    if not 0 <= fill_id <= info.max:
        raise errors.InvalidArgumentError(
            f"`fill`={fill_id} is not a token id: ids are >= 0 and fit the tokens' dtype "
            f"{x.dtype} (at most {info.max}). Pass the pad or mask id of your tokenizer."
        )
    if vocab_size is not None and v.is_concrete(x) and not bool(_tokens_ok(x, vocab_size)):
        bad = np.asarray(x)
        bad = bad[(bad < 0) | (bad >= vocab_size)]
        raise errors.InvalidArgumentError(
            f"`x` holds token ids outside [0, {vocab_size}) (e.g. {int(bad[0])}): check the "
            "tokenizer and `vocab_size`."
        )
    return True


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

    Raises:
      InvalidArgumentError: ``num_segments`` is not a positive int, ``fill`` is not ``"mean"``,
        ``"blur"`` or a finite number, or ``blur_sigma`` is not a positive number.
      InputShapeError / InputDTypeError / NonFiniteInputError: ``x`` is not a finite float
        batch ``[B, *spatial, C]``.
      SegmentMapError: with ``fill="mean"``, ``segments`` does not fit ``x`` or (when
        concrete) holds labels outside ``[0, num_segments)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[[[0.0], [1.0]], [[4.0], [4.0]]]])  # [1, 2, 2, 1]
      >>> fill_image(x, jnp.array([[[0, 0], [1, 1]]]), 2)[0, ..., 0]
      Array([[0.5, 0.5],
             [4. , 4. ]], dtype=float32)
    """
    num_segments = check_num_segments(num_segments, "fill_image")
    fill = check_fill(fill)
    blur_sigma = v.check_positive_number(blur_sigma, "blur_sigma")
    x = v.check_floating(x, "x", min_rank=3, layout="[B, *spatial, C]")
    if fill == "mean":  # the only fill that reads the segments
        segments = check_segments(segments, x, num_segments, min_segments=1)
    return _fill_image(x, segments, num_segments, fill, blur_sigma)


def _fill_image(
    x: jax.Array, segments: jax.Array, num_segments: int, fill="mean", blur_sigma: float = 5.0
) -> jax.Array:
    """:func:`fill_image` without the checks (the explainer checked its arguments)."""
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
    if v.is_concrete(masks) and not bool(v.fetch(_binary, masks)):
        raise errors.InvalidArgumentError(
            "`masks` must hold only 0 and 1 (segment off / on); cast booleans with "
            "`masks.astype(jnp.float32)`."
        )
    return masks


def check_call(
    x, kwargs: dict, num_segments: int, num_samples: int, what: str, *, tokens: bool = False
) -> dict:
    """The per-call checks LIME and KernelSHAP share (the Explainer's ``check`` hook).

    Checks ``segments`` (required for images and videos; for token ids ``[B, L]`` it defaults to
    the token positions ``0 .. L-1``) and ``masks`` (optional) against ``x`` and returns the
    per-call arguments with ``segments`` as ``int32`` ``[B, *spatial]`` and ``masks`` as float32.
    Every image must have fewer non-empty segments than samples (``N`` of ``masks``, or
    ``num_samples``).
    """
    kwargs = dict(kwargs)
    if tokens and kwargs.get("segments") is None:
        length = x.shape[1]
        if num_segments < length:
            raise errors.InvalidArgumentError(
                f"{what} over tokens makes each of the L = {length} token positions a segment "
                f"unless `segments` groups them, so `num_segments` must be >= {length}, got "
                f"{num_segments}: pass `num_segments={length}`, or `segments` [B, L] / [L] "
                f"labelling spans with labels in [0, {num_segments})."
            )
        kwargs["segments"] = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), x.shape)
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
        kwargs["segments"], x, num_segments, channel_axis=not tokens, fewer_samples=(n, what)
    )
    return kwargs


def _outputs(m: Model, params, x, fill, segments, target, masks):
    """The explained scores for ``target`` on perturbed inputs: ``masks [B, c, S] -> [B, c]``."""
    b, c = masks.shape[:2]
    keep = jax.vmap(lambda mm, s: mm[:, s])(masks, segments)  # [B, c, *spatial]
    # A channel axis for images and videos ([B, c, *spatial, 1]); none for token ids [B, L].
    keep = keep.reshape(keep.shape + (1,) * (x.ndim + 1 - keep.ndim))
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
    return target, _fill_image(x, segments, num, fill, blur_sigma)
