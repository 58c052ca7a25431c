"""Input checks and optional imports shared by the :mod:`xaijax.viz` modules (NumPy only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xaijax import errors

INSTALL = "pip install 'xaijax[viz]'"


def matplotlib() -> Any:
    """The ``matplotlib`` module, imported on first use; a named error says how to install it."""
    try:
        import matplotlib as mpl
        import matplotlib.cm
        import matplotlib.colors
        import matplotlib.figure
        import matplotlib.patches  # noqa: F401  (the submodules used as mpl.<name>)
    except ImportError as e:
        raise errors.MissingDependencyError(
            f"xaijax.viz draws figures with matplotlib, which is not installed ({e}). Install "
            f"the viz extra: `{INSTALL}` (or `pip install matplotlib`). The array functions "
            "(heatmap, overlay, normalize, grid) and text_html work without it."
        ) from e
    return mpl


def pillow() -> Any:
    """``PIL.Image``, imported on first use (matplotlib depends on pillow)."""
    try:
        from PIL import Image
    except ImportError as e:
        raise errors.MissingDependencyError(
            f"xaijax.viz writes PNG files with pillow, which is not installed ({e}). Install the "
            f"viz extra: `{INSTALL}` (or `pip install pillow`)."
        ) from e
    return Image


def shape_str(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def numeric(a, name: str) -> np.ndarray:
    """``a`` as a NumPy array of a real numeric dtype (bool counts as 0/1)."""
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as e:
        raise errors.InputShapeError(
            f"`{name}` could not be read as one array ({e}); pass a rectangular NumPy or JAX "
            "array, not a ragged list."
        ) from e
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise errors.InputDTypeError(
            f"`{name}` must be a numeric array (integers or floats), got dtype {arr.dtype}. "
            f"Convert it first, e.g. `np.asarray({name}, np.float32)`."
        )
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            n_nan = int(np.isnan(arr).sum())
            raise errors.NonFiniteInputError(
                f"`{name}` holds {n_nan} NaN and {int(bad.sum()) - n_nan} Inf value(s); they "
                "would be drawn as black, indistinguishable from zero. A non-finite map means "
                "the explainer failed: find out why, or clean it on purpose "
                f"(`np.nan_to_num({name})`)."
            )


def check_not_empty(arr: np.ndarray, name: str) -> None:
    if arr.size == 0:
        raise errors.InputShapeError(
            f"`{name}` is empty (shape {shape_str(arr.shape)}): there is nothing to draw. "
            "Check the slicing that produced it."
        )


def as_maps(maps, name: str = "maps") -> np.ndarray:
    """Finite, non-empty float32 maps."""
    arr = numeric(maps, name)
    check_finite(arr, name)
    check_not_empty(arr, name)
    return arr.astype(np.float32)


def as_image(image, name: str) -> np.ndarray:
    """An image as float32 in [0, 1]: uint8 is 0..255, bool is 0/1, floats are clipped."""
    arr = numeric(image, name)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.integer):
        raise errors.InputDTypeError(
            f"`{name}` has integer dtype {arr.dtype}, whose range is ambiguous: pass uint8 "
            f"(0..255) or floats in [0, 1], e.g. `{name}.astype(np.uint8)` or "
            f"`{name} / 255.0`."
        )
    check_finite(arr, name)
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def check_image_layout(img: np.ndarray, name: str) -> None:
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (1, 3, 4)):
        raise errors.InputShapeError(
            f"`{name}` must be an image [H, W] (grey) or [H, W, C] with C = 1, 3 or 4 "
            f"channels, e.g. RGB [H, W, 3]; got shape {shape_str(img.shape)}. For a batch, "
            "draw one image at a time or tile them with `grid` / `show_grid`."
        )
    check_not_empty(img, name)


def rgb(tile, name: str) -> np.ndarray:
    """A checked image ``[H, W]`` / ``[H, W, C]`` as float32 RGB ``[H, W, 3]`` in [0, 1]."""
    img = as_image(tile, name)
    check_image_layout(img, name)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = img.repeat(3, axis=-1)
    return img[..., :3]


def check_number(value, name: str, low: float, high: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.number)
        or not low <= value <= high
    ):
        raise errors.InvalidArgumentError(
            f"`{name}` must be a number in [{low:g}, {high:g}], got {value!r}."
        )
    return float(value)


def check_percentile(percentile) -> float:
    if (
        isinstance(percentile, bool)
        or not isinstance(percentile, int | float | np.number)
        or not 0 < percentile <= 100
    ):
        raise errors.InvalidArgumentError(
            f"`percentile` must be a number in (0, 100], got {percentile!r} (99.5 clips the "
            "brightest 0.5% of the pixels; 100 scales by the maximum)."
        )
    return float(percentile)


def check_choice(value, name: str, choices: Sequence[str], hint: str = "") -> str:
    if not isinstance(value, str) or value not in choices:
        raise errors.InvalidArgumentError(
            f"`{name}` must be one of {', '.join(repr(c) for c in choices)}, got {value!r}."
            + (f" {hint}" if hint else "")
        )
    return value
