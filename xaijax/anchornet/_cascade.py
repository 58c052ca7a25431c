"""Patch-based inference: batched patch cropping and the early-exit cascade (papers.md 2(b).5).

The ICME code (``make_table.py`` and ``dynamic_inference.py`` of winycg/AnchorNet) classifies an
image in stages: stage 0 runs a downstream net on the whole image resized to the patch size;
stage ``j`` (``1..K``) adds the logits of the ``j``-th informative patch to a running sum; the
image leaves at the first stage whose top softmax probability of the running sum passes that
stage's threshold. Here every stage is computed for every example in one jitted program, and
the exit is chosen afterwards, so the result is exact and vmappable, and any other thresholds
can be evaluated on the host from ``stage_logits`` (:func:`cascade_table`).

Conventions (each one the code's unless said otherwise):

* **Exit rule**: strict ``>`` as ``dynamic_inference.py`` (``max softmax > threshold``): a
  threshold of 0 always exits (the top probability is at least ``1 / C``), a threshold of 1
  never exits (the code writes 1.1 for that). The last stage always exits, whatever its
  threshold (the code would drop such examples from its accuracy instead).
* **Cost model** (``dynamic_inference.py``): an example that leaves at stage ``s`` costs
  ``sum(stage_flops[:s + 1])`` plus ``selector_flops`` (AnchorNet, 0.06 GFLOPs in the code)
  **once** when ``s >= 1``: ``0.790 (s + 1)`` for ``s = 0`` and ``0.06 + 0.790 (s + 1)``
  otherwise. (papers.md's wording "every later stage adds 0.06 + one more pass" reads as if
  AnchorNet were paid per stage; the code adds it once, and so does this module.)
* **Stage 0 input**: the code uses ``F.interpolate(mode="bicubic", align_corners=True)``
  (PyTorch's cubic kernel, ``a = -0.75``, no antialiasing). :func:`resize_full` uses JAX's cubic
  kernel (Keys, ``a = -0.5``), no antialiasing, half-pixel centres by default
  (``align_corners=True`` reproduces the code's sampling grid, not its kernel).
* **Patches**: the code slices 95 x 95 boxes out of the 224 px image and feeds them as they are
  (box side == patch size). :func:`crop_patches` also resizes boxes of any other side
  (bilinear, half-pixel centres, no antialiasing, reading only the box's pixels), which for a
  box whose side equals ``size`` is exactly the slice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _model, _validation, errors
from xaijax.typing import Array, Params

CROP_METHODS = ("bilinear", "nearest")
RESIZE_METHODS = ("bicubic", "bilinear")


# --- validation ----------------------------------------------------------------------------------


def _check_size(size: Any, name: str) -> int:
    """A positive int side (``patch_size``, ``size``, ``channels``)."""
    return _validation.check_positive_int(size, name)


def _check_images(images: Any, name: str = "images") -> Array:
    """Float images ``[B, H, W, C]`` or embeddings ``[B, L, D]``, finite when concrete."""
    x = _validation.as_array(images, name)
    if x.ndim not in (3, 4):
        raise errors.InputShapeError(
            f"`{name}` must be images [B, H, W, C] (or token embeddings [B, L, D]), got shape "
            f"{list(x.shape)}. Add a batch axis with `x[None]` for a single example."
        )
    # dtype (InputDTypeError) and NaN/Inf (NonFiniteInputError: one boolean from the device,
    # skipped under the caller's jit)
    return _validation.check_floating(x, name)


def _check_boxes(x: Array, boxes: Any) -> Array:
    b = _validation.as_array(boxes, "boxes")
    n = x.ndim - 2
    want = "[B, K, 4] inclusive (x1, y1, x2, y2)" if n == 2 else "[B, K, 2] inclusive spans"
    if b.ndim != 3 or b.shape[-1] != 2 * n:
        if n == 1 and b.ndim >= 1 and b.shape[-1] == 4:
            raise errors.InputShapeError(
                f"`boxes` are 2-D boxes {list(b.shape)} but `images` has shape "
                f"{list(x.shape)}, read as token embeddings [B, L, D]: for one image [H, W, C] "
                "add the batch axis with `images[None]` (and `boxes[None]`)."
            )
        raise errors.InputShapeError(
            f"`boxes` must be {want} for inputs of shape {list(x.shape)}, got shape "
            f"{list(b.shape)} (e.g. `Patches.boxes`; add a K axis with `boxes[:, None]` for one "
            "box per example)."
        )
    if b.shape[0] != x.shape[0]:
        raise errors.BatchMismatchError(
            f"`boxes` has {b.shape[0]} examples but `images` has {x.shape[0]}: give one row of "
            "boxes per image."
        )
    if not _validation.is_real(b.dtype):
        raise errors.InputDTypeError(
            f"`boxes` must hold numbers (integer or floating coordinates), got dtype {b.dtype}."
        )
    _validation.check_finite(b, "boxes")
    return jnp.asarray(b)


def _check_method(method: Any, allowed: tuple[str, ...], name: str = "method") -> str:
    return _validation.check_choice(method, name, allowed)


def _check_thresholds(thresholds: Any, stages: int) -> Array:
    """``stages`` exit thresholds in ``[0, 1]``: the one check of :func:`exit_stages`,
    :func:`early_exit_cascade` and :func:`cascade_table` (values only when concrete)."""
    if isinstance(thresholds, jax.core.Tracer):
        t = thresholds
    else:
        try:
            # a hyperparameter vector of S values (not a batch): read on the host
            t = np.asarray(thresholds, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgumentError(
                f"`thresholds` must be {stages} numbers in [0, 1], got {thresholds!r}."
            ) from e
    if t.ndim != 1 or t.shape[0] != stages:
        raise errors.InvalidArgumentError(
            f"`thresholds` must give one value per stage: {stages} (stage 0 on the whole input "
            f"plus one per box, K = {stages - 1}), got shape {list(np.shape(t))}."
        )
    if not isinstance(t, jax.core.Tracer) and not (np.all(t >= 0.0) and np.all(t <= 1.0)):
        raise errors.InvalidArgumentError(
            f"`thresholds` must lie in [0, 1] (0: always exit at that stage, 1: never), got "
            f"{t.tolist()}. The code's 1.1 ('never exit') is 1 here."
        )
    return jnp.asarray(t, jnp.float32)


def _check_flops(value: Any, name: str) -> None:
    """A FLOP count: a finite number >= 0 (a concrete 0-d array is read as one; tracers pass)."""
    if not _validation.is_concrete(value):
        return
    if isinstance(value, jax.Array | np.ndarray) and value.ndim == 0:
        value = value.item()  # one scalar hyperparameter, not a batch
    _validation.check_nonnegative_number(value, name)


def _check_stage_logits(stage_logits: Any) -> Array:
    logits = _validation.as_array(stage_logits, "stage_logits")
    if logits.ndim != 3:
        raise errors.InputShapeError(
            f"`stage_logits` must be [B, S, C] (the running logits after each stage, e.g. "
            f"`CascadeResult.stage_logits`), got shape {list(logits.shape)}."
        )
    return _validation.check_floating(logits, "stage_logits")


# --- cropping and resizing ------------------------------------------------------------------------


def _axis_sampler(lo: Array, hi: Array, n_in: int, size: int, method: str):
    """One axis of one box: ``(i0, i1, frac)`` each ``[size]``; output ``o`` reads
    ``(1 - frac) v[i0] + frac v[i1]``. The box ``[lo, hi]`` (inclusive) is first clipped to
    ``[0, n_in - 1]``; samples are clamped to the box, so only its pixels are read."""
    lo = jnp.clip(lo, 0.0, n_in - 1.0)
    hi = jnp.clip(hi, lo, n_in - 1.0)
    width = hi - lo + 1.0
    centres = (jnp.arange(size, dtype=jnp.float32) + 0.5) * (width / size)
    if method == "nearest":  # PyTorch's "nearest-exact"
        i0 = jnp.clip(jnp.floor(lo + centres), lo, hi).astype(jnp.int32)
        return i0, i0, jnp.zeros((size,), jnp.float32)
    s = jnp.clip(lo + centres - 0.5, lo, hi)
    base = jnp.floor(s)
    i0 = base.astype(jnp.int32)
    i1 = jnp.minimum(i0 + 1, jnp.floor(hi).astype(jnp.int32))
    return i0, i1, s - base


def _crop_one(image: Array, box: Array, size: int, method: str) -> Array:
    """``image [*space, C]``, ``box [2n]`` -> ``[size]*n + [C]``."""
    box = box.astype(jnp.float32)
    if image.ndim == 2:  # [L, D], box (start, end)
        i0, i1, f = _axis_sampler(box[0], box[1], image.shape[0], size, method)
        f = f.astype(image.dtype)[:, None]
        return (1 - f) * image[i0] + f * image[i1]
    height, width = image.shape[:2]
    y0, y1, fy = _axis_sampler(box[1], box[3], height, size, method)
    x0, x1, fx = _axis_sampler(box[0], box[2], width, size, method)
    fy = fy.astype(image.dtype)[:, None, None]
    fx = fx.astype(image.dtype)[None, :, None]

    def row(yi):
        return (1 - fx) * image[yi[:, None], x0[None, :]] + fx * image[yi[:, None], x1[None, :]]

    return (1 - fy) * row(y0) + fy * row(y1)


@functools.partial(jax.jit, static_argnames=("size", "method"))
def _crop(images: Array, boxes: Array, size: int, method: str) -> Array:
    one = functools.partial(_crop_one, size=size, method=method)
    return jax.vmap(jax.vmap(one, in_axes=(None, 0)))(images, boxes)


def crop_patches(images: Array, boxes: Array, *, size: int, method: str = "bilinear") -> Array:
    """Crops every box of every example and resizes it to ``size x size``, batched and jittable.

    Each box is read as the pixel square ``[x1, x2 + 1) x [y1, y2 + 1)`` (inclusive integer
    coordinates, as :attr:`Patches.boxes`; non-integer coordinates are allowed) and resampled to
    ``size x size`` with half-pixel centres and no antialiasing, reading only the box's pixels
    (edge samples are clamped to the box, as cropping first and resizing second). A box whose
    side equals ``size`` and whose corners are integers gives exactly its pixels. Boxes that
    reach outside the image are **clipped** to it first (the part inside is stretched to the
    square); AnchorNet's unpadded boxes never do.

    Args:
      images: ``[B, H, W, C]`` float images, or ``[B, L, D]`` token embeddings.
      boxes: ``[B, K, 4]`` inclusive ``(x1, y1, x2, y2)`` (x = column), or ``[B, K, 2]``
        inclusive token spans ``(start, end)`` for ``[B, L, D]`` inputs.
      size: the output side (static: one compile per ``size``).
      method: ``"bilinear"`` (default) or ``"nearest"`` (PyTorch's ``nearest-exact``).

    Returns:
      ``[B, K, size, size, C]`` (``[B, K, size, D]`` for token embeddings).

    Raises:
      InputShapeError: ``images`` or ``boxes`` of the wrong rank or last axis.
      InputDTypeError: ``images`` not floating point (or ``boxes`` not numbers).
      NonFiniteInputError: ``images`` or ``boxes`` hold NaN or Inf (concrete inputs only).
      BatchMismatchError: ``boxes`` and ``images`` disagree on ``B``.
      InvalidArgumentError: ``size < 1`` or an unknown ``method``.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
      >>> anchornet.crop_patches(x, jnp.array([[[1, 0, 2, 1]]]), size=2)[0, 0, ..., 0].tolist()
      [[1.0, 2.0], [5.0, 6.0]]

    References:
      papers.md 2(b).5; the ICME code's ``crop_patches`` (``make_table.py``) slices
      ``inputs[i, :, b0:b2 + 1, b1:b3 + 1]``.
    """
    size = _check_size(size, "size")
    method = _check_method(method, CROP_METHODS)
    x = _check_images(images)
    b = _check_boxes(x, boxes)
    return _crop(x, b, size, method)


def _resize(images: Array, size: int, method: str, align_corners: bool, antialias: bool) -> Array:
    n = images.ndim - 2
    spatial = images.shape[1:-1]
    shape = (images.shape[0],) + (size,) * n + (images.shape[-1],)
    if align_corners:
        scale = [(size - 1) / (s - 1) if size > 1 and s > 1 else size / s for s in spatial]
        trans = [
            0.5 - 0.5 * sc if size > 1 and s > 1 else 0.0
            for sc, s in zip(scale, spatial, strict=True)
        ]
    else:
        scale = [size / s for s in spatial]
        trans = [0.0] * n
    return jax.image.scale_and_translate(
        images,
        shape,
        tuple(range(1, 1 + n)),
        jnp.asarray(scale, jnp.float32),
        jnp.asarray(trans, jnp.float32),
        method="cubic" if method == "bicubic" else "linear",
        antialias=antialias,
    ).astype(images.dtype)


_resize_jit = jax.jit(_resize, static_argnums=(1, 2, 3, 4))


def resize_full(
    images: Array,
    *,
    size: int,
    method: str = "bicubic",
    align_corners: bool = False,
    antialias: bool = False,
) -> Array:
    """The whole input resized to ``size x size``: the cascade's stage-0 input.

    Args:
      images: ``[B, H, W, C]`` float images, or ``[B, L, D]`` token embeddings.
      size: the output side.
      method: ``"bicubic"`` (default; JAX's Keys cubic, ``a = -0.5``) or ``"bilinear"``.
      align_corners: ``False`` (default): half-pixel centres, as ``jax.image.resize``;
        ``True``: corner pixels map to corner pixels, the code's sampling grid
        (``F.interpolate(..., align_corners=True)``; PyTorch's cubic uses ``a = -0.75``).
      antialias: low-pass filter when shrinking (off in the code's ``F.interpolate``; PIL
        would have it on).

    Returns:
      ``[B, size, size, C]`` (``[B, size, D]`` for token embeddings), in the input's dtype.

    Raises:
      InputShapeError / InputDTypeError: ``images`` not float ``[B, H, W, C]`` / ``[B, L, D]``.
      NonFiniteInputError: ``images`` hold NaN or Inf (concrete inputs only).
      InvalidArgumentError: ``size < 1`` or an unknown ``method``.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> anchornet.resize_full(jnp.ones((2, 32, 32, 3)), size=16).shape
      (2, 16, 16, 3)

    References:
      papers.md 2(b).5 ("full images bicubically resized to 95 x 95"); ICME code
      ``make_table.py``.
    """
    size = _check_size(size, "size")
    method = _check_method(method, RESIZE_METHODS)
    x = _check_images(images)
    return _resize_jit(x, size, method, bool(align_corners), bool(antialias))


# --- FLOPs ----------------------------------------------------------------------------------------


def _logits_fn(m: _model.Model) -> Callable[[Params, Array], Array]:
    def logits(params, x):
        return _model._pick(m.apply_fn(params, x), m.head)

    return logits


def _flops_of(cost: Any) -> float | None:
    if cost is None:
        return None
    if isinstance(cost, list | tuple):  # older jax: one dict per computation
        vals = [_flops_of(c) for c in cost]
        vals = [v for v in vals if v is not None]
        return float(sum(vals)) if vals else None
    if isinstance(cost, dict) and "flops" in cost:
        return float(cost["flops"])
    return None


_flops_cache: dict[tuple, float] = {}


def stage_flops(
    model: Any,
    params: Params,
    *,
    patch_size: int,
    channels: int,
    dtype: Any = jnp.float32,
    spatial_dims: int = 2,
) -> float:
    """FLOPs of one example's downstream pass on a ``patch_size`` input, from XLA's cost analysis.

    The model's head (its logits) is lowered for one example ``[1, p, p, channels]`` (``[1, p,
    channels]`` with ``spatial_dims=1``) and XLA's ``cost_analysis()`` read (of the lowered
    module; of the compiled one when the lowered gives no count). XLA counts a multiply-add as
    2 FLOPs, so a convolution costs ``2 x MACs``; the code's 0.790 "GFLOPs" for DenseNet-201 at
    95 px are multiply-adds (``cal_multi_adds``), half of this count.

    Args:
      model: a :class:`~xaijax.Model`, a Linen module or ``apply_fn(params, x) -> logits``.
      params: its parameters (arrays, tracers or ``jax.ShapeDtypeStruct``: only shapes matter).
      patch_size: the input side.
      channels: the input channels (or the embedding width).
      dtype: the input dtype.
      spatial_dims: 2 for images, 1 for token embeddings.

    Returns:
      The FLOPs, a Python float (cached per model, parameter shapes and input shape).

    Raises:
      InvalidArgumentError: bad sizes, or XLA reports no ``"flops"`` on this backend.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> anchornet.stage_flops(lambda w, x: x.reshape(1, -1) @ w, jnp.zeros((12, 5)),
      ...                       patch_size=2, channels=3)
      120.0

    References:
      papers.md 2(b).5 (cost model of ``dynamic_inference.py``), 2(g) (FLOPs from
      ``cost_analysis``).
    """
    size = _check_size(patch_size, "patch_size")
    ch = _check_size(channels, "channels")
    if spatial_dims not in (1, 2):
        raise errors.InvalidArgumentError(f"`spatial_dims` must be 1 or 2, got {spatial_dims!r}.")
    m = _model.as_model(model, what="stage_flops")
    x = jax.ShapeDtypeStruct((1,) + (size,) * spatial_dims + (ch,), jnp.dtype(dtype))
    abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), params)
    try:
        key = (m, _model.shape_key(abstract), x.shape, str(x.dtype))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _flops_cache:
        return _flops_cache[key]
    _model.num_classes(m, abstract, x)  # a named error if the model cannot run on x
    lowered = jax.jit(_logits_fn(m)).lower(abstract, x)
    flops = _flops_of(lowered.cost_analysis())
    if flops is None:
        flops = _flops_of(lowered.compile().cost_analysis())
    if flops is None:
        raise errors.InvalidArgumentError(
            f"XLA's cost analysis on this backend ({jax.default_backend()}) reports no 'flops' "
            "for the model: pass the per-stage FLOPs yourself (`early_exit_cascade(..., "
            "downstream_flops=...)`), e.g. counted analytically."
        )
    if key is not None:
        if len(_flops_cache) > 256:
            _flops_cache.clear()
        _flops_cache[key] = flops
    return flops


# --- the cascade ----------------------------------------------------------------------------------


class CascadeResult(NamedTuple):
    """What :func:`early_exit_cascade` returns for a batch (``S = K + 1`` stages, ``C`` classes).

    Attributes:
      prediction: ``[B]`` int32, the argmax of the running logits at the exit stage.
      exit_stage: ``[B]`` int32 in ``[0, S - 1]``.
      probabilities: ``[B, C]`` softmax of the running logits at exit.
      logits: ``[B, C]`` the running logit sum at exit.
      stage_logits: ``[B, S, C]`` the running sums after every stage (stage 0: the whole input
        alone), so any thresholds can be evaluated on the host (:func:`cascade_table`).
      flops: ``[B]`` float32 FLOPs spent on each example: ``sum(stage_flops[:exit + 1])`` plus
        ``selector_flops`` once when ``exit >= 1`` (the code's cost model).
      stage_flops: ``[S]`` float32 FLOPs of each stage's downstream pass, per example.
    """

    prediction: Array
    exit_stage: Array
    probabilities: Array
    logits: Array
    stage_logits: Array
    flops: Array
    stage_flops: Array


def _exit_stages(stage_logits: Array, thresholds: Array) -> Array:
    conf = jnp.max(jax.nn.softmax(stage_logits, axis=-1), axis=-1)  # [B, S]
    passed = conf > jnp.asarray(thresholds, conf.dtype)[None, :]
    passed = passed.at[:, -1].set(True)
    return jnp.argmax(passed, axis=1).astype(jnp.int32)


def exit_stages(stage_logits: Array, thresholds: Sequence[float] | Array) -> Array:
    """The exit stage of every example under :func:`early_exit_cascade`'s rule.

    Args:
      stage_logits: ``[B, S, C]`` running logits after each stage
        (``CascadeResult.stage_logits``).
      thresholds: ``S`` values in ``[0, 1]``, one per stage (checked as in
        :func:`early_exit_cascade`; values only when concrete).

    Returns:
      ``[B]`` int32: the first stage whose top softmax probability is ``> thresholds[stage]``;
      the last stage when none is (strict ``>`` as the code).

    Raises:
      InputShapeError: ``stage_logits`` not ``[B, S, C]``.
      InvalidArgumentError: not ``S`` thresholds, or one outside ``[0, 1]``.
      NonFiniteInputError: ``stage_logits`` hold NaN or Inf (concrete inputs only).

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> logits = jnp.array([[[0.0, 1.0], [3.0, 1.0]], [[0.0, 5.0], [0.0, 9.0]]])
      >>> anchornet.exit_stages(logits, [0.9, 0.0]).tolist()
      [1, 0]
    """
    logits = _check_stage_logits(stage_logits)
    return _exit_stages(logits, _check_thresholds(thresholds, logits.shape[1]))


def _finish(stage_logits, thresholds, per_stage, selector) -> CascadeResult:
    exit_stage = _exit_stages(stage_logits, thresholds)
    logits = jnp.take_along_axis(stage_logits, exit_stage[:, None, None], axis=1)[:, 0]
    cum = jnp.cumsum(per_stage)
    flops = cum[exit_stage] + jnp.where(exit_stage >= 1, selector, 0.0)
    return CascadeResult(
        prediction=jnp.argmax(logits, axis=-1).astype(jnp.int32),
        exit_stage=exit_stage,
        probabilities=jax.nn.softmax(logits, axis=-1),
        logits=logits,
        stage_logits=stage_logits,
        flops=flops.astype(jnp.float32),
        stage_flops=per_stage,
    )


def _run(m, params, images, boxes, thresholds, per_stage, selector, *, patch_size, opts):
    crop_method, resize_method, align_corners, antialias = opts
    f = _logits_fn(m)
    full = _resize(images, patch_size, resize_method, align_corners, antialias)
    running = f(params, full)
    batch, k = boxes.shape[:2]
    stages = [running]
    if k:
        patches = _crop(images, boxes, patch_size, crop_method)
        flat = patches.reshape((batch * k,) + patches.shape[2:])
        per_patch = f(params, flat).reshape(batch, k, -1)
        for j in range(k):  # sequential sums, as the code's `cumsum_logits += logits[:, j]`
            running = running + per_patch[:, j]
            stages.append(running)
    return _finish(jnp.stack(stages, axis=1), thresholds, per_stage, selector)


_run_jit = jax.jit(_run, static_argnums=(0,), static_argnames=("patch_size", "opts"))


def early_exit_cascade(
    model: Any,
    params: Params,
    images: Array,
    boxes: Array,
    *,
    patch_size: int,
    thresholds: Sequence[float] | Array,
    selector_flops: float = 0.0,
    downstream_flops: float | None = None,
    crop_method: str = "bilinear",
    resize_method: str = "bicubic",
    align_corners: bool = False,
    antialias: bool = False,
) -> CascadeResult:
    """AnchorNet's early-exit inference cascade, every stage batched in one jitted program.

    Stage 0 runs the downstream net on the whole input resized to ``patch_size``
    (:func:`resize_full`); stage ``j = 1..K`` adds the logits of box ``j - 1`` cropped to
    ``patch_size`` (:func:`crop_patches`) to the running sum. An example exits at the first
    stage whose top softmax probability is **strictly greater** than that stage's threshold (the
    code's ``>``: 0 always exits, 1 never does), and at the last stage otherwise. All stages run
    for all examples (the result is exact and independent of the batch); FLOPs are charged per
    example by its exit stage, as the code's cost model (see :class:`CascadeResult`).

    The cascade sums the **logits** of the model's head (its ``score`` is ignored).

    Args:
      model: a :class:`~xaijax.Model`, a Linen module or ``apply_fn(params, x) -> logits [B, C]``
        taking ``x [B, p, p, C]`` (``[B, p, D]`` for token embeddings).
      params: the downstream net's parameters (the whole variables dict for BatchNorm models).
      images: ``[B, H, W, C]`` float images (or ``[B, L, D]`` token embeddings).
      boxes: ``[B, K, 4]`` inclusive boxes in patch order (``Patches.boxes[:, :K]``), or
        ``[B, K, 2]`` token spans.
      patch_size: the downstream input side (95 in the code).
      thresholds: ``S = K + 1`` values in ``[0, 1]``, one per stage (the last one is ignored:
        the last stage always exits).
      selector_flops: the patch selector's (AnchorNet's) FLOPs, charged once to every example
        that goes past stage 0.
      downstream_flops: FLOPs of one downstream pass; default: :func:`stage_flops` (XLA's cost
        analysis of the model at ``patch_size``).
      crop_method, resize_method, align_corners, antialias: see :func:`crop_patches` and
        :func:`resize_full`.

    Returns:
      :class:`CascadeResult`.

    Raises:
      InvalidArgumentError: thresholds outside ``[0, 1]`` or not ``K + 1`` of them,
        ``patch_size < 1``, an unknown method.
      InputShapeError / BatchMismatchError: ``images`` or ``boxes`` of the wrong shape.
      InputDTypeError: ``images`` not floating point.
      NonFiniteInputError: ``images`` or ``boxes`` hold NaN or Inf (concrete inputs only).
      ModelCallError / ModelOutputError: the model cannot run on ``[B, p, p, C]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> net = lambda w, x: x.mean(axis=(1, 2)) @ w  # a [B, 4, 4, 3] -> [B, 2] toy
      >>> w = jnp.array([[4.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
      >>> x = jnp.zeros((2, 8, 8, 3)).at[0, :4, :4, 0].set(1.0)
      >>> boxes = jnp.array([[[0, 0, 3, 3]], [[4, 4, 7, 7]]])
      >>> r = anchornet.early_exit_cascade(net, w, x, boxes, patch_size=4, thresholds=[0.6, 0])
      >>> r.exit_stage.tolist(), r.prediction.tolist(), r.flops.tolist()
      ([0, 1], [0, 0], [60.0, 120.0])

    References:
      papers.md 2(b).5 and 2(e); ICME code ``make_table.py`` (stage logits) and
      ``dynamic_inference.py`` (exit rule and cost model).
    """
    size = _check_size(patch_size, "patch_size")
    x = _check_images(images)
    b = _check_boxes(x, boxes)
    thr = _check_thresholds(thresholds, b.shape[1] + 1)
    opts = (
        _check_method(crop_method, CROP_METHODS, "crop_method"),
        _check_method(resize_method, RESIZE_METHODS, "resize_method"),
        bool(align_corners),
        bool(antialias),
    )
    _check_flops(selector_flops, "selector_flops")
    if downstream_flops is not None:
        _check_flops(downstream_flops, "downstream_flops")
    m = _model.as_model(model, what="early_exit_cascade")
    stage_in = jax.ShapeDtypeStruct((x.shape[0],) + (size,) * (x.ndim - 2) + x.shape[-1:], x.dtype)
    _model.num_classes(m, params, stage_in)
    if downstream_flops is None:
        downstream_flops = stage_flops(
            m,
            params,
            patch_size=size,
            channels=x.shape[-1],
            dtype=x.dtype,
            spatial_dims=x.ndim - 2,
        )
    per_stage = jnp.full((b.shape[1] + 1,), downstream_flops, jnp.float32)
    selector = jnp.asarray(selector_flops, jnp.float32)
    try:
        hash(m)
        run = _run_jit
    except TypeError:  # an unhashable head: compile per call
        run = jax.jit(functools.partial(_run, m), static_argnames=("patch_size", "opts"))
        return run(params, x, b, thr, per_stage, selector, patch_size=size, opts=opts)
    return run(m, params, x, b, thr, per_stage, selector, patch_size=size, opts=opts)


# --- the accuracy-vs-FLOPs table on the host ----------------------------------------------------


def cascade_table(
    result_or_stage_logits: CascadeResult | Array,
    labels: Array,
    stage_flops: Sequence[float] | Array | None = None,
    thresholds_list: Sequence[Sequence[float]] = (),
    *,
    selector_flops: float = 0.0,
) -> list[dict[str, Any]]:
    """Rows of the ICME table: accuracy, mean FLOPs and mean exit stage per threshold vector.

    The exit rule and cost model are :func:`early_exit_cascade`'s (strict ``>``; the last stage
    always exits; ``selector_flops`` once past stage 0), applied on the host to stored stage
    logits, so a whole table costs one cascade run.

    Args:
      result_or_stage_logits: a :class:`CascadeResult` or its ``stage_logits [B, S, C]``.
      labels: ``[B]`` int class labels.
      stage_flops: ``[S]`` FLOPs per stage (a scalar is repeated); optional with a
        :class:`CascadeResult` (its ``stage_flops``). With a result, the thresholds list may be
        given in this position.
      thresholds_list: threshold vectors, each of ``S`` values in ``[0, 1]``.
      selector_flops: the selector's FLOPs, charged once past stage 0.

    Returns:
      One dict per threshold vector: ``"thresholds"`` (list), ``"accuracy"`` (fraction),
      ``"mean_flops"``, ``"mean_exit_stage"`` and ``"exit_counts"`` (examples per stage).

    Raises:
      InputShapeError: stage logits not ``[B, S, C]``.
      BatchMismatchError: ``labels`` not one per example.
      NonFiniteInputError: stage logits hold NaN or Inf.
      InvalidArgumentError: a threshold vector not of ``S`` values in ``[0, 1]`` (the check of
        :func:`exit_stages` and :func:`early_exit_cascade`), or a bad ``selector_flops``.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import anchornet
      >>> logits = jnp.array([[[0.0, 1.0], [3.0, 1.0]], [[0.0, 5.0], [0.0, 9.0]]])
      >>> rows = anchornet.cascade_table(logits, jnp.array([0, 1]), [1.0, 1.0], [[0, 0], [0.9, 0]])
      >>> [(r["accuracy"], r["mean_flops"]) for r in rows]
      [(0.5, 1.0), (1.0, 1.5)]

    References:
      papers.md 2(e) (the table's shape) and ``dynamic_inference.py``.
    """
    if isinstance(result_or_stage_logits, CascadeResult):
        logits = result_or_stage_logits.stage_logits
        if stage_flops is not None and np.ndim(stage_flops) == 2 and not thresholds_list:
            stage_flops, thresholds_list = None, stage_flops
        if stage_flops is None:
            stage_flops = result_or_stage_logits.stage_flops
    else:
        logits = result_or_stage_logits
        if stage_flops is None:
            raise errors.InvalidArgumentError(
                "`stage_flops` is needed with bare stage logits (one value per stage, or one "
                "for all); or pass the CascadeResult."
            )
    logits = _check_stage_logits(logits)
    _check_flops(selector_flops, "selector_flops")
    n, stages = logits.shape[:2]
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != n:
        raise errors.BatchMismatchError(f"`labels` has {y.shape[0]} entries but the logits {n}.")
    per_stage = np.broadcast_to(np.asarray(stage_flops, np.float64), (stages,))
    cum = np.cumsum(per_stage)
    conf = np.asarray(jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1))  # [B, S]
    pred = np.asarray(jnp.argmax(logits, axis=-1))  # [B, S]
    rows = []
    for thresholds in thresholds_list:
        t = np.asarray(_check_thresholds(thresholds, stages), np.float32)
        passed = conf > t[None, :]
        passed[:, -1] = True
        ex = np.argmax(passed, axis=1)
        flops = cum[ex] + np.where(ex >= 1, float(selector_flops), 0.0)
        rows.append(
            {
                "thresholds": [float(v) for v in np.asarray(thresholds, np.float64)],
                "accuracy": float(np.mean(pred[np.arange(n), ex] == y)),
                "mean_flops": float(np.mean(flops)),
                "mean_exit_stage": float(np.mean(ex)),
                "exit_counts": np.bincount(ex, minlength=stages).tolist(),
            }
        )
    return rows
