"""PNG files through pillow (arrays) or matplotlib (figures); the path is checked first."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from xaijax import errors
from xaijax.viz._checks import as_image, check_image_layout, check_positive, numeric, pillow


def _to_uint8(image) -> np.ndarray:
    """A checked ``[H, W, 3 or 4]`` uint8 image."""
    arr = numeric(image, "image")
    img = arr if arr.dtype == np.uint8 else as_image(arr, "image")
    check_image_layout(img, "image")
    if img.dtype != np.uint8:
        img = (img * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = img.repeat(3, axis=-1)
    return np.ascontiguousarray(img)


def _is_figure(obj: Any) -> bool:
    """A matplotlib Figure, recognised without importing matplotlib."""
    return type(obj).__module__.startswith("matplotlib") and hasattr(obj, "savefig")


def encode_png(image: np.ndarray) -> bytes:
    """Encodes an image as PNG bytes (with pillow).

    Args:
      image: ``[H, W]`` (grey), ``[H, W, 1]``, ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA);
        floats in [0, 1] (values further than 1e-3 outside it are an error: a 0..255 float
        image must be divided by 255 first), uint8 (0..255) or bool.

    Returns:
      The PNG file's bytes (RGB, or RGBA for 4 channels).

    Raises:
      InputShapeError: another layout, or an empty image.
      InputDTypeError: a non-numeric array, or integers other than uint8 (ambiguous range).
      InvalidArgumentError: a float image outside [0, 1].
      NonFiniteInputError: NaN or Inf values (they used to be written as black).
      MissingDependencyError: pillow is not installed (``pip install 'xaijax[viz]'``).

    Examples:
      >>> encode_png(np.zeros((2, 3, 3)))[:8]
      b'\\x89PNG\\r\\n\\x1a\\n'
    """
    img = _to_uint8(image)
    buffer = io.BytesIO()
    pillow().fromarray(img, "RGBA" if img.shape[-1] == 4 else "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _check_output_path(path) -> str:
    try:
        path = os.fspath(path)
    except TypeError as e:
        raise errors.InvalidArgumentError(
            f"`path` must be a string or os.PathLike, got {type(path).__name__}."
        ) from e
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise errors.OutputPathError(
            f"Cannot write the PNG to {path!r}: it is a directory. Give a file name inside it, "
            f"e.g. {os.path.join(path, 'figure.png')!r}."
        )
    if not os.path.isdir(directory):
        raise errors.OutputPathError(
            f"Cannot write the PNG to {path!r}: its directory {directory!r} does not exist or "
            "is not a directory. Create it first (`os.makedirs(directory, exist_ok=True)`) or "
            "choose another path."
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise errors.OutputPathError(
            f"Cannot write the PNG to {path!r}: the directory {directory!r} is not writable. "
            "Choose a writable directory."
        )
    return path


def save_png(path: str | os.PathLike, image: Any, *, dpi: float | None = None) -> None:
    """Writes an image array or a matplotlib figure to ``path`` as PNG.

    Arrays are encoded by pillow (layouts and dtypes as :func:`encode_png`); a figure (from
    :func:`show`, :func:`show_grid`, ...) is written by ``figure.savefig(path, dpi=dpi)`` with a
    tight bounding box. The image and the path are checked before anything is encoded or written.

    Args:
      path: the file to write (its directory must exist).
      image: an image ``[H, W(, C)]`` or a ``matplotlib.figure.Figure``.
      dpi: resolution of a figure in dots per inch, a finite number > 0 (default: the
        figure's own); ignored for arrays.

    Raises:
      OutputPathError: the directory of ``path`` is missing, is a file, or is not writable, or
        ``path`` is a directory (also an ``OSError``).
      InputShapeError, InputDTypeError, NonFiniteInputError, InvalidArgumentError: as
        :func:`encode_png`.
      InvalidArgumentError: ``dpi`` is not a finite number > 0.

    Examples:
      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "map.png")
      >>> save_png(path, np.zeros((2, 3, 3)))
      >>> os.path.getsize(path) > 0
      True
    """
    if dpi is not None:
        check_positive(dpi, "dpi")
    figure = _is_figure(image)
    img = None if figure else _to_uint8(image)
    path = _check_output_path(path)
    try:
        if figure:
            image.savefig(path, format="png", dpi=dpi or "figure", bbox_inches="tight")
        else:
            data = encode_png(img)
            with open(path, "wb") as f:
                f.write(data)
    except OSError as e:
        raise errors.OutputPathError(f"Cannot write the PNG to {path!r}: {e}.") from e
