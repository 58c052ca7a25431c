"""The one validation layer of xaijax (private; shared by every family).

* **Static checks** (shape, rank, dtype, hyperparameters) run in the factory or at the API
  boundary, once per call, also under ``jit``/``vmap`` (they read only shapes).
* **Value checks** (NaN/Inf, target and segment-label ranges) need numbers. On a concrete
  ``jax.Array`` they are computed *on the device* by one small jitted reduction, and one boolean
  comes back to the host, never the batch (a NumPy input is already on the host and is checked
  there). On a tracer, i.e. inside the caller's own ``jit``/``vmap``, they cannot raise and are
  skipped: use :func:`xaijax.checked` (``jax.experimental.checkify``) to keep them under ``jit``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors


def is_concrete(x) -> bool:
    """True when ``x`` holds concrete values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def fetch(fn, *args):
    """``jax.device_get(fn(*args))`` for a value check on concrete arrays: the (jitted) check
    runs on the arrays' device and only its small result comes to the host.

    While a caller's ``jit`` is tracing, the check's result would be a tracer even for a concrete
    array captured there as a constant (``bool`` cannot read it): then it runs again eagerly
    (``jax.ensure_compile_time_eval``). Outside a trace it runs as a normal call, which keeps a
    sharded batch's values on its devices.
    """
    out = fn(*args)
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(out)):
        with jax.ensure_compile_time_eval():  # only inside a caller's trace: eager there
            out = fn(*args)
    return jax.device_get(out)


def _shape_str(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def check_floating(
    x, name: str, *, rank: int | None = None, min_rank: int | None = None, layout: str = ""
) -> jax.Array:
    """Checks ``x`` is a finite floating array of the given rank; returns it as a jax array.

    Args:
      x: the argument.
      name: its name in the public signature (used in messages).
      rank: exact rank required, or ``None``.
      min_rank: smallest rank allowed, or ``None``.
      layout: a human description of the expected layout, e.g. ``"[B, H, W, C]"``.
    """
    x = as_array(x, name)
    hint = f" laid out as {layout}" if layout else ""
    if rank is not None and x.ndim != rank:
        raise errors.InputShapeError(
            f"`{name}` must have rank {rank}{hint}, got shape {_shape_str(x.shape)}. "
            + (
                f"For a single example add a batch axis: `{name}[None]`."
                if x.ndim == rank - 1
                else "Reshape it to the expected layout."
            )
        )
    if min_rank is not None and x.ndim < min_rank:
        raise errors.InputShapeError(
            f"`{name}` must have rank >= {min_rank}{hint}, got shape {_shape_str(x.shape)}. "
            f"The first axis is the batch: for a single example use `{name}[None]`."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise errors.InputDTypeError(
            f"`{name}` must be a floating-point array, got dtype {x.dtype}. "
            + (
                f"For uint8 images use `{name}.astype(jnp.float32) / 255.0`."
                if jnp.issubdtype(x.dtype, jnp.integer)
                else f"Cast it with `{name}.astype(jnp.float32)`."
            )
        )
    check_finite(x, name)
    return jnp.asarray(x)


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


@jax.jit
def _count_nonfinite(x) -> jax.Array:
    return jnp.sum(~jnp.isfinite(x))


def all_finite(tree) -> bool:
    """Whether every floating leaf of a concrete pytree is finite: one boolean to the host.

    NumPy leaves are checked on the host (they are there already); jax arrays on their device.
    Tracers are skipped (``True``).
    """
    leaves = [
        a
        for a in jax.tree_util.tree_leaves(tree)
        if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.inexact) and is_concrete(a)
    ]
    host = [a for a in leaves if isinstance(a, np.ndarray)]
    device = [a for a in leaves if not isinstance(a, np.ndarray)]
    if any(not np.all(np.isfinite(a)) for a in host):
        return False
    return bool(fetch(_all_finite, device)) if device else True


def check_finite(x, name: str) -> None:
    """Raises :class:`NonFiniteInputError` when a concrete floating ``x`` holds NaN or Inf."""
    if not is_concrete(x) or not jnp.issubdtype(x.dtype, jnp.inexact):
        return
    if all_finite(x):
        return
    if isinstance(x, np.ndarray):
        n_bad = int(np.size(x) - np.isfinite(x).sum())
    else:  # the error path only: one more scalar
        n_bad = int(fetch(_count_nonfinite, x))
    raise errors.NonFiniteInputError(
        f"`{name}` holds {n_bad} NaN or Inf value(s). Explanations of non-finite inputs "
        f"are meaningless: clean the input (e.g. `jnp.nan_to_num({name})`) first."
    )


def check_finite_output(result, what: str) -> None:
    """Raises :class:`NonFiniteOutputError` when a concrete result holds NaN or Inf."""
    if all_finite(result):
        return
    raise errors.NonFiniteOutputError(
        f"{what} produced NaN or Inf values although its inputs were finite: the model's "
        "scores (or their gradients) are not finite for this input. Check the model on `x` "
        "(e.g. `jnp.isfinite(model.scores(params, x)).all()`), its parameters, and any log or "
        "division inside it."
    )


@jax.jit
def _range_flags(target, num_classes) -> jax.Array:
    return jnp.any((target < 0) | (target >= num_classes))


def check_target(target, batch_size: int, name: str = "target") -> jax.Array | None:
    """Checks ``target`` is ``None`` or an integer array ``[B]`` (a scalar is broadcast)."""
    if target is None:
        return None
    if not hasattr(target, "dtype"):
        target = np.asarray(target)
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise errors.InputDTypeError(
            f"`{name}` must hold integer class indices, got dtype {target.dtype}. "
            f"Pass `{name}.astype(jnp.int32)`, or None to explain the predicted class."
        )
    if target.ndim == 0:
        target = jnp.broadcast_to(target, (batch_size,))
    if target.ndim != 1:
        raise errors.InputShapeError(
            f"`{name}` must be a vector [B] of class indices, got shape {_shape_str(target.shape)}."
        )
    if target.shape[0] != batch_size:
        raise errors.BatchMismatchError(
            f"`{name}` has {target.shape[0]} entries but `x` has a batch of {batch_size}: "
            f"give one class index per example."
        )
    return jnp.asarray(target, jnp.int32)


def check_target_in_range(target, num_classes: int, name: str = "target") -> None:
    """Raises :class:`TargetOutOfRangeError` when a concrete ``target`` is >= ``num_classes``."""
    if target is None or not is_concrete(target) or not np.size(target):
        return
    if isinstance(target, np.ndarray):
        bad_any = bool(np.any((target < 0) | (target >= num_classes)))
    else:  # on the device: one boolean back
        bad_any = bool(fetch(_range_flags, target, num_classes))
    if bad_any:
        t = np.asarray(target)  # the error path only
        if t.min() < 0:
            raise errors.TargetOutOfRangeError(
                f"`{name}` holds a negative class index ({int(t.min())}); class indices run "
                f"from 0 to {num_classes - 1}: use indices in [0, {num_classes})."
            )
        raise errors.TargetOutOfRangeError(
            f"`{name}` holds class index {int(t.max())}, but the model has {num_classes} "
            f"scores: use indices in [0, {num_classes})."
        )


def check_positive_number(value, name: str, *, allow_zero: bool = False) -> float:
    """Checks a hyperparameter is a finite Python number > 0 (``>= 0`` with ``allow_zero``)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    if ok:
        ok = bool(np.isfinite(value)) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise errors.InvalidArgumentError(
            f"`{name}` must be a finite number {bound}, got {value!r}."
        )
    return float(value)


def check_number(value, name: str) -> float:
    """Checks a hyperparameter is a finite Python number (e.g. a fill value)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    if not ok or not np.isfinite(value):
        raise errors.InvalidArgumentError(f"`{name}` must be a finite number, got {value!r}.")
    return float(value)


def check_fraction(value, name: str, *, closed: bool = True) -> float:
    """Checks a hyperparameter lies in (0, 1] (``closed``) or (0, 1)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    if ok:
        ok = bool(np.isfinite(value)) and 0 < value and (value <= 1 if closed else value < 1)
    if not ok:
        raise errors.InvalidArgumentError(
            f"`{name}` must be a number in (0, 1{']' if closed else ')'}, got {value!r}."
        )
    return float(value)


def check_positive_int(value, name: str) -> int:
    """Checks a hyperparameter is a positive Python int."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise errors.InvalidArgumentError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """Checks a string option is one of ``choices``."""
    if value not in choices:
        raise errors.InvalidArgumentError(
            f"`{name}` must be one of {sorted(choices)}, got {value!r}."
        )
    return value


def check_key(key, name: str = "key") -> jax.Array:
    """Checks a PRNG key was given: a typed key (``jax.random.key``) of shape ``()`` or a legacy
    ``uint32[2]`` key (``jax.random.PRNGKey``); explicit randomness only."""
    if key is None:
        raise errors.MissingKeyError(
            f"This transform is stochastic and needs a keyword-only `{name}`: "
            f"pass `{name}=jax.random.key(0)` (or any key you split yourself)."
        )
    dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()))
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    legacy = dtype is not None and dtype == np.uint32 and shape == (2,)
    if typed and shape == ():
        return key
    if legacy:
        return key
    what = (
        f"an array of dtype {dtype} and shape {list(shape)}"
        if dtype is not None
        else (f"a {type(key).__name__}")
    )
    raise errors.InvalidKeyError(
        f"`{name}` must be one PRNG key, got {what}. Pass `jax.random.key(seed)` (or a legacy "
        f"`jax.random.PRNGKey(seed)`); for several calls split it yourself "
        f"(`jax.random.split(key)`), one key per call."
    )


def check_logits(logits, batch_size: int) -> None:
    """Checks a model returned ``[B, C]`` logits."""
    if logits.ndim != 2 or logits.shape[0] != batch_size:
        raise errors.InputShapeError(
            f"`apply_fn(params, x)` must return logits of shape [B, C] = [{batch_size}, C], "
            f"got {_shape_str(logits.shape)}. Wrap the model so it returns one row per example."
        )


# --- maps, masks and boxes (the metrics family) ------------------------------------------

shape_str = _shape_str


def is_real(dtype) -> bool:
    """True for integer and floating dtypes (not bool, not complex)."""
    return dtype != jnp.bool_ and (
        jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
    )


def as_array(x, name: str):
    """Returns ``x`` unchanged if it has ``shape``/``dtype``, else as a numpy array."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return x
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001
        raise errors.InputDTypeError(
            f"`{name}` must be an array, got {type(x).__name__}: pass a jax or numpy array."
        ) from e


def check_map(x, name: str) -> jax.Array:
    """A finite floating saliency map ``[B, H, W]``."""
    layout = "[B, H, W]"
    x = as_array(x, name)
    if x.ndim == 4:
        raise errors.InputShapeError(
            f"`{name}` must be a single-channel map laid out as {layout}, got shape "
            f"{shape_str(x.shape)}. Reduce the channel axis first, e.g. "
            f"`xaijax.metrics.reduce_channels({name})` (sum of |.| over channels)."
        )
    return check_floating(x, name, rank=3, layout=layout)


def check_real(x, name: str) -> jax.Array:
    """A finite real array ``[B, ...]``; integer inputs are cast to float32."""
    x = as_array(x, name)
    if x.ndim < 2:
        raise errors.InputShapeError(
            f"`{name}` must be a batch [B, ...] of maps, got shape {shape_str(x.shape)}. "
            f"For a single map add a batch axis: `{name}[None]`."
        )
    if not is_real(x.dtype):
        raise errors.InputDTypeError(
            f"`{name}` must hold real numbers (integer or floating), got dtype {x.dtype}. "
            f"Cast it with `{name}.astype(jnp.float32)`."
        )
    if jnp.issubdtype(x.dtype, jnp.floating):
        return check_floating(x, name)
    if isinstance(x, np.ndarray):  # cast on the host: no extra compile for integer inputs
        return jnp.asarray(x.astype(np.float32))
    return jnp.asarray(x).astype(jnp.float32)


def check_mask(mask, name: str, shape) -> jax.Array:
    """A boolean (or integer, nonzero = inside) mask of exactly ``shape``; returned as bool."""
    mask = as_array(mask, name)
    if jnp.issubdtype(mask.dtype, jnp.floating):
        raise errors.InputDTypeError(
            f"`{name}` must be a boolean mask, got dtype {mask.dtype}. Threshold it explicitly, "
            f"e.g. `{name} > 0.5`."
        )
    if mask.dtype != jnp.bool_ and not jnp.issubdtype(mask.dtype, jnp.integer):
        raise errors.InputDTypeError(f"`{name}` must be a boolean mask, got dtype {mask.dtype}.")
    if tuple(mask.shape) != tuple(shape):
        raise errors.InputShapeError(
            f"`{name}` must have the saliency map's shape {shape_str(shape)}, got "
            f"{shape_str(mask.shape)}. Resize the mask (nearest neighbour) or the map so they "
            "match; build masks from boxes with `xaijax.metrics.boxes_to_mask`."
        )
    mask = jnp.asarray(mask)
    return mask if mask.dtype == jnp.bool_ else mask != 0


def check_same_shape(a, b, name_a: str, name_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise errors.InputShapeError(
            f"`{name_a}` and `{name_b}` must have the same shape, got {shape_str(a.shape)} and "
            f"{shape_str(b.shape)}."
        )


def check_boxes(
    boxes, name: str, *, allow_multi: bool = False, any_rank: bool = False
) -> jax.Array:
    """Boxes ``[B, 4]`` (or ``[B, M, 4]`` when ``allow_multi``, ``[..., 4]`` when ``any_rank``)
    as (y0, x0, y1, x1)."""
    boxes = as_array(boxes, name)
    layout = "[B, 4] or [B, M, 4]" if allow_multi else "[B, 4]"
    if any_rank:
        rank_ok = boxes.ndim >= 1
    else:
        rank_ok = boxes.ndim in ((2, 3) if allow_multi else (2,))
    if not rank_ok or boxes.shape[-1] != 4:
        raise errors.InputShapeError(
            f"`{name}` must be laid out as {layout} with rows (y0, x0, y1, x1), got shape "
            f"{shape_str(boxes.shape)}."
        )
    if not is_real(boxes.dtype):
        raise errors.InputDTypeError(
            f"`{name}` must hold integer or floating coordinates, got dtype {boxes.dtype}."
        )
    return jnp.asarray(boxes)


def check_nonnegative_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise errors.InvalidArgumentError(
            f"`{name}` must be a non-negative Python number, got {value!r}."
        )
    if not np.isfinite(value) or value < 0:
        raise errors.InvalidArgumentError(f"`{name}` must be finite and >= 0, got {value!r}.")
    return float(value)
