"""Heatmaps, overlays, figure grids and PNG files with NumPy only (no plotting dependency)."""

from __future__ import annotations

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


def normalize(maps: np.ndarray, *, percentile: float = 99.5, signed: bool = False) -> np.ndarray:
    """Scales each map of a batch ``[B, ...]`` to [0, 1] (or [-1, 1] when ``signed``).

    Values are clipped at the given percentile of ``|map|``; a map that is all zeros stays zero
    (no NaN).
    """
    maps = np.asarray(maps, np.float32)
    flat = np.abs(maps.reshape(maps.shape[0], -1))
    scale = np.percentile(flat, percentile, axis=1) if flat.shape[1] else np.ones(len(maps))
    scale = np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (maps.ndim - 1))
    if signed:
        return np.clip(maps / scale, -1.0, 1.0)
    pos = np.maximum(maps, 0.0)  # unsigned display: negative evidence shows as zero
    hi = np.percentile(pos.reshape(pos.shape[0], -1), percentile, axis=1).reshape(scale.shape)
    return np.clip(pos / np.where(hi > 0, hi, 1.0), 0.0, 1.0)


def colorize(values: np.ndarray) -> np.ndarray:
    """Maps values in [0, 1] ``[...]`` to RGB ``[..., 3]`` with a viridis-like colour map."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(int)
    hi = np.minimum(lo + 1, len(_ANCHORS) - 1)
    frac = (v - lo)[..., None]
    return _ANCHORS[lo] * (1 - frac) + _ANCHORS[hi] * frac


def heatmap(maps: np.ndarray, **kwargs) -> np.ndarray:
    """Saliency maps ``[B, H, W]`` (or ``[B, H, W, C]``, reduced by sum of ``|.|``) to RGB."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 4:
        maps = np.abs(maps).sum(axis=-1)
    return colorize(normalize(maps, **kwargs))


def overlay(images: np.ndarray, maps: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blends heatmaps of ``maps`` over grey versions of ``images`` ``[B, H, W, 3]``."""
    images = np.asarray(images, np.float32)
    grey = images.mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    return (1 - alpha) * grey + alpha * heatmap(maps)


def grid(rows: Sequence[Sequence[np.ndarray]], *, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tiles equally sized RGB (or grey) tiles ``[H, W(, 3)]`` into one image, row by row."""
    tiles = [[_rgb(t) for t in row] for row in rows]
    h, w = tiles[0][0].shape[:2]
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


def _rgb(tile: np.ndarray) -> np.ndarray:
    tile = np.asarray(tile, np.float32)
    if tile.ndim == 2:
        tile = tile[..., None].repeat(3, axis=-1)
    return np.clip(tile[..., :3], 0.0, 1.0)


def encode_png(image: np.ndarray) -> bytes:
    """Encodes an RGB image ``[H, W, 3]`` in [0, 1] (or uint8) as PNG bytes."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None].repeat(3, axis=-1)
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y, :, :3].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def save_png(path: str, image: np.ndarray) -> None:
    """Writes an RGB image ``[H, W, 3]`` to ``path`` as PNG."""
    with open(path, "wb") as f:
        f.write(encode_png(image))
