"""Argument checks at the API boundary (private; shared by every family).

Shape, rank and dtype checks are static and always run, also under ``jit``/``vmap``. Value checks
(NaN/Inf, label ranges) need concrete numbers: they run when the argument is a concrete array and
are skipped when it is a tracer, i.e. when the caller has already wrapped xaijax in its own
transform. This keeps every public function usable inside ``jit`` while bad eager input still
gets a clear error instead of a silent NaN or an XLA stack trace.
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
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except Exception as e:  # noqa: BLE001
            raise errors.InputDTypeError(
                f"`{name}` must be an array, got {type(x).__name__}: pass a jax or numpy array."
            ) from e
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
    if is_concrete(x):
        finite = bool(np.all(np.isfinite(np.asarray(x))))
        if not finite:
            n_bad = int(np.size(x) - np.isfinite(np.asarray(x)).sum())
            raise errors.NonFiniteInputError(
                f"`{name}` holds {n_bad} NaN or Inf value(s). Explanations of non-finite inputs "
                f"are meaningless: clean the input (e.g. `jnp.nan_to_num({name})`) first."
            )
    return jnp.asarray(x)


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
    if is_concrete(target) and np.any(np.asarray(target) < 0):
        raise errors.TargetOutOfRangeError(
            f"`{name}` holds a negative class index ({int(np.min(np.asarray(target)))}); "
            "class indices run from 0 to num_classes - 1."
        )
    return jnp.asarray(target, jnp.int32)


def check_target_in_range(target, num_classes: int, name: str = "target") -> None:
    """Raises :class:`TargetOutOfRangeError` when a concrete ``target`` is >= ``num_classes``."""
    if target is None or not is_concrete(target):
        return
    t = np.asarray(target)
    if t.size and (t.max() >= num_classes or t.min() < 0):
        bad = int(t.max()) if t.max() >= num_classes else int(t.min())
        raise errors.TargetOutOfRangeError(
            f"`{name}` holds class index {bad}, but the model has {num_classes} logits: "
            f"use indices in [0, {num_classes})."
        )


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
    """Checks a PRNG key was given (explicit randomness only)."""
    if key is None:
        raise errors.MissingKeyError(
            f"This transform is stochastic and needs a keyword-only `{name}`: "
            f"pass `{name}=jax.random.key(0)` (or any key you split yourself)."
        )
    return key


def check_logits(logits, batch_size: int) -> None:
    """Checks a model returned ``[B, C]`` logits."""
    if logits.ndim != 2 or logits.shape[0] != batch_size:
        raise errors.InputShapeError(
            f"`apply_fn(params, x)` must return logits of shape [B, C] = [{batch_size}, C], "
            f"got {_shape_str(logits.shape)}. Wrap the model so it returns one row per example."
        )
