"""Heatmaps, overlays, figure grids and PNG files with NumPy only (no plotting dependency).

One map or a batch of maps
--------------------------
A saliency map is ``[H, W]`` (or ``[H, W, C]`` with a channel axis); a batch of them is
``[B, H, W]`` (``[B, H, W, C]``). :func:`normalize` and :func:`heatmap` scale *each map* to its own
range, so they must know whether axis 0 indexes maps. ``batch_axis`` says it explicitly; left at
``None`` it is read from the rank:

==========  =============================  ==================================
rank        ``normalize``                  ``heatmap``
==========  =============================  ==================================
1, 2        one map                        ``[H, W]``: one map (rank 1 refused)
3           a batch ``[B, H, W]``          a batch ``[B, H, W]``
4           a batch ``[B, H, W, C]``       a batch ``[B, H, W, C]``
other       pass ``batch_axis``            refused
==========  =============================  ==================================

so one ``[H, W, C]`` channel map needs ``batch_axis=False``. :func:`overlay` reads the layout
from its images (``[H, W, 3]`` or ``[B, H, W, 3]``), which always carry a channel axis.

Bad input (wrong rank, non-numeric or empty arrays, images and maps of different sizes, NaN or
Inf values, an output directory that cannot be written) raises a named error from
:mod:`xaijax.errors` that says what to change. NaN or Inf in a map is refused rather than drawn
(it used to come out black, looking like "no evidence"): a non-finite map means the explainer
failed, and clean it only on purpose, e.g. with ``np.nan_to_num``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from xaijax import errors

# 9 anchor colours of a perceptually ordered dark-to-bright map (viridis-like), interpolated.
_ANCHORS = (
    np.array(
        [
            [68, 1, 84],
            [71, 44, 122],
            [59, 81, 139],
            [44, 113, 142],
            [33, 144, 141],
            [39, 173, 129],
            [92, 200, 99],
            [170, 220, 50],
            [253, 231, 37],
        ],
        np.float32,
    )
    / 255.0
)


def _shape_str(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _numeric(a, name: str) -> np.ndarray:
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


def _check_finite(arr: np.ndarray, name: str) -> None:
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


def _check_not_empty(arr: np.ndarray, name: str) -> None:
    if arr.size == 0:
        raise errors.InputShapeError(
            f"`{name}` is empty (shape {_shape_str(arr.shape)}): there is nothing to draw. "
            "Check the slicing that produced it."
        )


def _as_maps(maps, name: str = "maps") -> np.ndarray:
    """Finite, non-empty float32 maps."""
    arr = _numeric(maps, name)
    _check_finite(arr, name)
    _check_not_empty(arr, name)
    return arr.astype(np.float32)


def _as_image(image, name: str) -> np.ndarray:
    """An image as float32 in [0, 1]: uint8 is 0..255, bool is 0/1, floats are clipped."""
    arr = _numeric(image, name)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.integer):
        raise errors.InputDTypeError(
            f"`{name}` has integer dtype {arr.dtype}, whose range is ambiguous: pass uint8 "
            f"(0..255) or floats in [0, 1], e.g. `{name}.astype(np.uint8)` or "
            f"`{name} / 255.0`."
        )
    _check_finite(arr, name)
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def _is_batched(ndim: int, batch_axis: bool | None, name: str) -> bool:
    if batch_axis is not None and not isinstance(batch_axis, bool):
        raise errors.InvalidArgumentError(
            f"`batch_axis` must be True, False or None, got {batch_axis!r}."
        )
    if ndim == 0:
        raise errors.InputShapeError(
            f"`{name}` has rank 0 (a scalar); pass a map [H, W] or a batch of maps [B, H, W]."
        )
    if batch_axis is None:
        if ndim > 4:
            raise errors.InputShapeError(
                f"`{name}` has rank {ndim}: say whether axis 0 indexes maps with "
                "`batch_axis=True` (each map scaled on its own) or `batch_axis=False` (the whole "
                "array is one map)."
            )
        return ndim >= 3
    if batch_axis and ndim < 2:
        raise errors.InputShapeError(
            f"`{name}` has rank {ndim} but `batch_axis=True` needs a batch of maps [B, ...] "
            f"(rank >= 2); for one map use `batch_axis=False`."
        )
    return batch_axis


def _check_percentile(percentile) -> float:
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


def normalize(
    maps: np.ndarray,
    *,
    percentile: float = 99.5,
    signed: bool = False,
    batch_axis: bool | None = None,
) -> np.ndarray:
    """Scales each map to [0, 1] (or [-1, 1] when ``signed``) for display.

    Each map is divided by the given percentile of its values (of ``|map|`` when ``signed``,
    of its positive part otherwise, where negative evidence shows as 0) and clipped. A map that
    is all zeros stays zero (no NaN).

    Args:
      maps: one map (``[H, W]``, ``[N]``, ...) or a batch of maps ``[B, ...]``; any real dtype.
      percentile: the percentile in (0, 100] mapped to 1.
      signed: keep the sign (``[-1, 1]``) instead of showing only the positive part.
      batch_axis: ``True``: axis 0 indexes maps, each scaled on its own; ``False``: the whole
        array is one map; ``None``: one map for rank 1 and 2, a batch for rank 3 and 4 (see the
        module docstring), other ranks must say.

    Returns:
      ``float32`` array shaped like ``maps``.

    Raises:
      InputShapeError: a scalar, an empty array, or rank > 4 without ``batch_axis``.
      InputDTypeError: a non-numeric array.
      NonFiniteInputError: NaN or Inf values.
      InvalidArgumentError: ``percentile`` outside (0, 100].

    Examples:
      >>> import numpy as np
      >>> m = np.array([[0.0, 1.0], [2.0, 4.0]])
      >>> normalize(m, percentile=100)  # one map: scaled by its maximum, 4
      array([[0.  , 0.25],
             [0.5 , 1.  ]], dtype=float32)
      >>> normalize(m, percentile=100, batch_axis=True)  # two 1-D maps, each by its own maximum
      array([[0. , 1. ],
             [0.5, 1. ]], dtype=float32)
    """
    percentile = _check_percentile(percentile)
    maps = _as_maps(maps)
    batched = _is_batched(maps.ndim, batch_axis, "maps")
    rows = maps.shape[0] if batched else 1
    shape = (rows,) + (1,) * (maps.ndim - 1) if batched else (1,) * maps.ndim

    def per_map(values: np.ndarray) -> np.ndarray:
        scale = np.percentile(values.reshape(rows, -1), percentile, axis=1)
        return np.where(scale > 0, scale, 1.0).reshape(shape)

    if signed:
        return np.clip(maps / per_map(np.abs(maps)), -1.0, 1.0).astype(np.float32)
    pos = np.maximum(maps, 0.0)
    return np.clip(pos / per_map(pos), 0.0, 1.0).astype(np.float32)


def colorize(values: np.ndarray) -> np.ndarray:
    """Maps values in [0, 1] ``[...]`` to RGB ``[..., 3]`` with a viridis-like colour map.

    Values outside [0, 1] are clipped; an empty array gives an empty ``[..., 3]`` array.

    Raises:
      InputDTypeError: a non-numeric array.
      NonFiniteInputError: NaN or Inf values.

    Examples:
      >>> colorize(np.array([0.0, 1.0])).round(2)
      array([[0.27, 0.  , 0.33],
             [0.99, 0.91, 0.15]], dtype=float32)
    """
    arr = _numeric(values, "values")
    _check_finite(arr, "values")
    v = np.clip(arr.astype(np.float32), 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(int)
    hi = np.minimum(lo + 1, len(_ANCHORS) - 1)
    frac = (v - lo)[..., None]
    return (_ANCHORS[lo] * (1 - frac) + _ANCHORS[hi] * frac).astype(np.float32)


def heatmap(
    maps: np.ndarray,
    *,
    percentile: float = 99.5,
    signed: bool = False,
    batch_axis: bool | None = None,
) -> np.ndarray:
    """Saliency maps to RGB heatmaps, each map scaled on its own.

    Channel maps (``[..., H, W, C]``) are first reduced by the sum of ``|.|`` over channels.

    Args:
      maps: one map ``[H, W]`` (``[H, W, C]`` with ``batch_axis=False``) or a batch ``[B, H, W]``
        (``[B, H, W, C]``).
      percentile: the percentile of each map shown brightest, as in :func:`normalize`.
      signed: as in :func:`normalize` (negative values then show as 0, the darkest colour).
      batch_axis: whether axis 0 indexes maps; ``None`` reads rank 2 as one map and ranks 3 and
        4 as batches.

    Returns:
      ``float32`` RGB ``[H, W, 3]`` or ``[B, H, W, 3]``.

    Raises:
      InputShapeError: a rank that is not one of the layouts above, or an empty map.
      InputDTypeError, NonFiniteInputError, InvalidArgumentError: as :func:`normalize`.

    Examples:
      >>> heatmap(np.arange(6.0).reshape(2, 3)).shape
      (2, 3, 3)
    """
    arr = _as_maps(maps)
    batched = _is_batched(arr.ndim, batch_axis, "maps")
    spatial_rank = arr.ndim - int(batched)
    if spatial_rank not in (2, 3):
        raise errors.InputShapeError(
            f"`maps` of shape {_shape_str(arr.shape)} with batch_axis={batched} is not a map "
            "[H, W] / [H, W, C] or a batch [B, H, W] / [B, H, W, C]. Add a batch axis "
            "(`maps[None]`) or reshape it to one of these layouts."
        )
    if spatial_rank == 3:
        arr = np.abs(arr).sum(axis=-1)
    return colorize(normalize(arr, percentile=percentile, signed=signed, batch_axis=batched))


def overlay(images: np.ndarray, maps: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blends the heatmaps of ``maps`` over grey versions of ``images``.

    Args:
      images: one image ``[H, W, C]`` or a batch ``[B, H, W, C]`` (``C`` = 1 or 3), floats in
        [0, 1] or uint8.
      maps: the matching maps, ``images.shape[:-1]`` (channel maps: plus a trailing axis).
      alpha: weight of the heatmap, in [0, 1].

    Returns:
      ``float32`` RGB ``[H, W, 3]`` or ``[B, H, W, 3]``.

    Raises:
      InputShapeError: images that are not ``[H, W, C]`` / ``[B, H, W, C]``, or maps of
        another size.
      InputDTypeError, NonFiniteInputError: non-numeric or non-finite images or maps.
      InvalidArgumentError: ``alpha`` outside [0, 1].

    Examples:
      >>> overlay(np.zeros((4, 5, 3)), np.ones((4, 5))).shape
      (4, 5, 3)
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise errors.InvalidArgumentError(f"`alpha` must be a number in [0, 1], got {alpha!r}.")
    img = _as_image(images, "images")
    _check_not_empty(img, "images")
    if img.ndim not in (3, 4) or img.shape[-1] not in (1, 3):
        raise errors.InputShapeError(
            f"`images` must be one image [H, W, C] or a batch [B, H, W, C] with C = 1 or 3, "
            f"got shape {_shape_str(img.shape)}. Add the channel axis of a grey image with "
            "`images[..., None]`."
        )
    arr = _as_maps(maps)
    spatial = img.shape[:-1]
    if arr.shape[: len(spatial)] != spatial or arr.ndim - len(spatial) not in (0, 1):
        raise errors.InputShapeError(
            f"`maps` of shape {_shape_str(arr.shape)} does not match `images` of shape "
            f"{_shape_str(img.shape)}: give one value per pixel, shape {_shape_str(spatial)} "
            f"(or {_shape_str(spatial)[:-1]}, C] for channel maps); resize the maps to the "
            "images first."
        )
    grey = img.mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    return (1 - alpha) * grey + alpha * heatmap(arr, batch_axis=img.ndim == 4)


def grid(rows: Sequence[Sequence[np.ndarray]], *, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tiles equally sized RGB (or grey) tiles ``[H, W(, C)]`` into one image, row by row.

    Args:
      rows: rows of tiles (a row is a list of tiles or an array ``[N, H, W, C]``); a tile is
        ``[H, W]`` or ``[H, W, C]`` (``C`` = 1, 3 or 4, alpha dropped), floats in [0, 1], uint8
        or bool. Rows may differ in length (and be empty); the background is white.
      pad: white pixels between and around tiles.
      scale: integer upscaling of the result (nearest neighbour).

    Returns:
      ``float32`` RGB image.

    Raises:
      InputShapeError: no tile at all, a tile of another rank, channel count or size.
      InputDTypeError, NonFiniteInputError: a non-numeric or non-finite tile.
      InvalidArgumentError: ``pad < 0`` or ``scale < 1``.

    Examples:
      >>> grid([[np.zeros((2, 2)), np.ones((2, 2, 3))]], pad=1).shape
      (4, 7, 3)
    """
    for value, name, low in ((pad, "pad", 0), (scale, "scale", 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise errors.InvalidArgumentError(
                f"`{name}` must be an integer >= {low}, got {value!r}."
            )

    def is_row(r) -> bool:  # a list of tiles, or an array of tiles [N, H, W, C]
        if isinstance(r, np.ndarray) or hasattr(r, "__array__"):
            return np.ndim(r) == 4
        return isinstance(r, Sequence) and not isinstance(r, str | bytes)

    if isinstance(rows, str | bytes | np.ndarray) or not hasattr(rows, "__iter__"):
        rows = [rows]  # reported below as not a list of rows
    rows = list(rows)
    if not all(map(is_row, rows)):
        raise errors.InputShapeError(
            "`rows` must be a list of rows, each a list of tiles (or an array of tiles "
            "[N, H, W, C]), e.g. `[[a, b], [c, d]]`; for one row of tiles write `[[a, b]]`."
        )
    tiles = [[_rgb(t, f"tile ({i}, {j})") for j, t in enumerate(row)] for i, row in enumerate(rows)]
    first = next((t for row in tiles for t in row), None)
    if first is None:
        raise errors.InputShapeError(
            "`rows` holds no tile: pass at least one image, e.g. `grid([[image]])`."
        )
    h, w = first.shape[:2]
    ncols = max(len(r) for r in tiles)
    out = np.ones((len(tiles) * (h + pad) + pad, ncols * (w + pad) + pad, 3), np.float32)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            if tile.shape[:2] != (h, w):
                raise errors.InputShapeError(
                    f"grid tiles must share one size; tile ({i}, {j}) is {tile.shape[:2]}, "
                    f"expected {(h, w)}."
                )
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = tile
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    return out


def _check_image_layout(img: np.ndarray, name: str) -> None:
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (1, 3, 4)):
        raise errors.InputShapeError(
            f"`{name}` must be an image [H, W] (grey) or [H, W, C] with C = 1, 3 or 4 "
            f"channels, e.g. RGB [H, W, 3]; got shape {_shape_str(img.shape)}. For a batch, "
            "draw one image at a time or tile them with `grid`."
        )
    _check_not_empty(img, name)


def _rgb(tile, name: str) -> np.ndarray:
    img = _as_image(tile, name)
    _check_image_layout(img, name)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = img.repeat(3, axis=-1)
    return img[..., :3]


def _to_uint8(image) -> np.ndarray:
    """A checked ``[H, W, 3 or 4]`` uint8 image."""
    arr = _numeric(image, "image")
    img = arr if arr.dtype == np.uint8 else _as_image(arr, "image")
    _check_image_layout(img, "image")
    if img.dtype != np.uint8:
        img = (img * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = img.repeat(3, axis=-1)
    return np.ascontiguousarray(img)


def _encode(img: np.ndarray) -> bytes:
    h, w, c = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    colour_type = 6 if c == 4 else 2  # RGBA or RGB, 8 bits per sample
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def encode_png(image: np.ndarray) -> bytes:
    """Encodes an image as PNG bytes.

    Args:
      image: ``[H, W]`` (grey), ``[H, W, 1]``, ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA);
        floats in [0, 1] (clipped), uint8 (0..255) or bool.

    Returns:
      The PNG file's bytes (RGB, or RGBA for 4 channels).

    Raises:
      InputShapeError: another layout, or an empty image.
      InputDTypeError: a non-numeric array, or integers other than uint8 (ambiguous range).
      NonFiniteInputError: NaN or Inf values (they used to be written as black).

    Examples:
      >>> encode_png(np.zeros((2, 3, 3)))[:8]
      b'\\x89PNG\\r\\n\\x1a\\n'
    """
    return _encode(_to_uint8(image))


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


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes an image to ``path`` as PNG (layouts and dtypes as :func:`encode_png`).

    The image and the path are checked before anything is encoded or written.

    Raises:
      OutputPathError: the directory of ``path`` is missing, is a file, or is not writable, or
        ``path`` is a directory (also an ``OSError``).
      InputShapeError, InputDTypeError, NonFiniteInputError: as :func:`encode_png`.

    Examples:
      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "map.png")
      >>> save_png(path, np.zeros((2, 3, 3)))
      >>> os.path.getsize(path) > 0
      True
    """
    img = _to_uint8(image)
    path = _check_output_path(path)
    data = encode_png(img)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise errors.OutputPathError(f"Cannot write the PNG to {path!r}: {e}.") from e
