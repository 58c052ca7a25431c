"""Argument checks shared by the metrics (private).

Static checks (rank, shape, dtype) always run, also under ``jit``; value checks run only on
concrete arrays (see :mod:`xaijax._validation`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _validation, errors

shape_str = _validation._shape_str


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
    return _validation.check_floating(x, name, rank=3, layout=layout)


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
        return _validation.check_floating(x, name)
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
