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
        import matplotlib.axes
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


#: How far a float image may stray outside [0, 1] (rounding) before it is an error.
IMAGE_RANGE_TOLERANCE = 1e-3


def check_image_range(arr: np.ndarray, name: str) -> None:
    """A float image must lie in [0, 1] (within :data:`IMAGE_RANGE_TOLERANCE`): an image on the
    0..255 scale, or a normalised one, would otherwise be clipped to white / black silently."""
    if not np.issubdtype(arr.dtype, np.floating) or arr.size == 0:
        return
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -IMAGE_RANGE_TOLERANCE or hi > 1.0 + IMAGE_RANGE_TOLERANCE:
        raise errors.InvalidArgumentError(
            f"`{name}`: viz expects float images in [0, 1]; got range [{lo:.4g}, {hi:.4g}]. "
            f"For 0..255 images divide by 255 (`{name} / 255.0`) or pass uint8; for normalised "
            "images undo the normalisation (`x * std + mean`)."
        )


def as_image(image, name: str) -> np.ndarray:
    """An image as float32 in [0, 1]: uint8 is 0..255, bool is 0/1, floats must lie in [0, 1]
    (values within 1e-3 outside it, rounding, are clipped)."""
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
    check_image_range(arr, name)
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


def check_positive(value, name: str) -> float:
    """A finite number > 0 (a size in inches, a resolution, a font size)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    if not ok or not (np.isfinite(value) and value > 0):
        raise errors.InvalidArgumentError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return float(value)


def check_texts(values, name: str, per: str, *, allow_str: bool = False) -> list:
    """Titles or labels: a list (or tuple, array) of strings, one per ``per``; with
    ``allow_str`` one string is a list of one. Numbers and None entries are accepted (drawn with
    ``str`` / left blank); the caller checks the length."""
    if allow_str and isinstance(values, str):
        return [values]
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        single = " (or one string when there is one)" if allow_str else ""
        raise errors.InvalidArgumentError(
            f"`{name}` must be a list of strings, one per {per}{single}, got {values!r} of type "
            f"{type(values).__name__}."
        )
    values = list(values)
    for i, v in enumerate(values):
        if not (v is None or isinstance(v, str | int | float | np.number)):
            raise errors.InvalidArgumentError(
                f"`{name}[{i}]` must be a string, got {v!r} of type {type(v).__name__}: give "
                f"one string per {per}."
            )
    return values


def check_ax(ax, name: str = "ax") -> None:
    """None or a matplotlib ``Axes`` (matplotlib imported here)."""
    if ax is None:
        return
    mpl = matplotlib()
    if not isinstance(ax, mpl.axes.Axes):
        raise errors.InvalidArgumentError(
            f"`{name}` must be a matplotlib Axes to draw into (e.g. `fig.subplots()` or "
            f"`axes[i, j]`), or None for a new figure; got {ax!r} of type {type(ax).__name__}."
        )


def check_mpl_color(color, name: str) -> None:
    """Any matplotlib colour (name, hex, RGB(A) tuple); matplotlib imported here."""
    mpl = matplotlib()
    if not mpl.colors.is_color_like(color):
        raise errors.InvalidArgumentError(
            f"`{name}` must be a matplotlib colour, e.g. 'yellow', '#ffcc00' or (1, 0.8, 0), "
            f"got {color!r}."
        )


def rgb_color(color, name: str = "color") -> np.ndarray:
    """A colour as float32 RGB ``[3]`` in [0, 1]: an RGB triple, or (read by matplotlib, imported
    only then) a colour name or hex string such as ``"red"`` / ``"#ff0000"``."""
    if isinstance(color, str):
        try:
            import matplotlib.colors as mcolors
        except ImportError as e:
            raise errors.MissingDependencyError(
                f"`{name}`={color!r} is a colour name, which needs matplotlib to read ({e}): pass "
                f"an RGB triple in [0, 1] such as (1, 1, 0), or install the viz extra: "
                f"`{INSTALL}`."
            ) from e
        try:
            return np.asarray(mcolors.to_rgb(color), np.float32)
        except ValueError as e:
            raise errors.InvalidArgumentError(
                f"`{name}` must be a matplotlib colour name or hex string (e.g. 'yellow', "
                f"'#ffff00') or an RGB triple in [0, 1] such as (1, 1, 0), got {color!r}."
            ) from e
    try:
        c = np.asarray(color, np.float32)
    except (TypeError, ValueError):
        c = None
    if c is None or c.shape != (3,) or not np.all((c >= 0) & (c <= 1)):
        raise errors.InvalidArgumentError(
            f"`{name}` must be an RGB triple in [0, 1], e.g. (1, 1, 0) for yellow (or a colour "
            f"name such as 'yellow'), got {color!r}."
        )
    return c
