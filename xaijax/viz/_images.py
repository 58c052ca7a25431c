"""Heatmaps, overlays and tile grids as NumPy arrays (no plotting dependency).

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

Colours
-------
Unsigned maps use a viridis-like sequential map (dark = 0, bright = the map's percentile);
signed maps (``signed=True``) a red-white-blue diverging map (``RdBu_r``-like) whose white centre
is 0, so -1, -0.5, 0, 0.5 and 1 get five different colours. Both are interpolated from anchors
sampled from matplotlib's maps of the same name, so these arrays look like :func:`show` figures.

Bad input (wrong rank, non-numeric or empty arrays, images and maps of different sizes, NaN or
Inf values, float images outside [0, 1]) raises a named error from :mod:`xaijax.errors` that
says what to change. NaN or Inf in a map is refused rather than drawn (it used to come out
black, looking like "no evidence"): a non-finite map means the explainer failed, and clean it
only on purpose, e.g. with ``np.nan_to_num``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xaijax import errors
from xaijax.viz import _checks
from xaijax.viz._checks import as_image, as_maps, check_not_empty, numeric, rgb, shape_str

#: Anchor colours (RGB in [0, 1]) of the colour maps the NumPy functions use, sampled evenly
#: from matplotlib's map of the same name and interpolated linearly in between.
COLORMAPS: dict[str, np.ndarray] = {
    "viridis": np.array(
        [
            [68, 1, 84],
            [71, 45, 123],
            [59, 82, 139],
            [44, 114, 142],
            [33, 145, 140],
            [40, 174, 128],
            [94, 201, 98],
            [173, 220, 48],
            [253, 231, 37],
        ],
        np.float32,
    )
    / 255.0,
    # Diverging: 0 (blue) .. 0.5 (white, the zero of a signed map) .. 1 (red).
    "RdBu_r": np.array(
        [
            [5, 48, 97],
            [32, 101, 171],
            [67, 147, 195],
            [144, 196, 221],
            [209, 229, 240],
            [247, 246, 246],
            [253, 219, 199],
            [243, 164, 129],
            [214, 96, 77],
            [177, 24, 43],
            [103, 0, 31],
        ],
        np.float32,
    )
    / 255.0,
}

#: How a map's sign is shown (Captum's ``sign``): ``"all"`` keeps the sign (diverging colours,
#: 0 at the centre), ``"positive"`` / ``"negative"`` show only that part (its magnitude),
#: ``"absolute"`` shows ``|map|``; ``"auto"`` is ``"all"`` if any value is negative, else
#: ``"positive"``.
SIGNS = ("auto", "all", "positive", "negative", "absolute")


def resolve_sign(sign: str, maps: Sequence[np.ndarray]) -> str:
    """``sign`` with ``"auto"`` resolved over all of ``maps`` together (one decision)."""
    _checks.check_choice(
        sign,
        "sign",
        SIGNS,
        "'all' keeps the sign (diverging colours centred at 0), 'positive' / 'negative' show "
        "one part, 'absolute' shows |map|, 'auto' picks 'all' for maps with negative values.",
    )
    if sign != "auto":
        return sign
    return "all" if any(float(np.min(m)) < 0 for m in maps) else "positive"


def scale_map(m: np.ndarray, mode: str, percentile: float) -> np.ndarray:
    """One map scaled for display as a whole: ``[-1, 1]`` for ``"all"``, else ``[0, 1]``.

    The divisor is the ``percentile`` of ``|m|`` (``"all"``, ``"absolute"``) or of the shown part
    (``"positive"``: ``max(m, 0)``; ``"negative"``: ``max(-m, 0)``); a map that is all zeros stays
    zero.
    """
    m = np.asarray(m, np.float32)
    if mode == "all":
        shown, low = m, -1.0
        magnitude = np.abs(m)
    else:
        shown = {
            "positive": np.maximum(m, 0),
            "negative": np.maximum(-m, 0),
            "absolute": np.abs(m),
        }[mode]
        magnitude, low = shown, 0.0
    s = float(np.percentile(magnitude, percentile))
    return np.clip(shown / (s if s > 0 else 1.0), low, 1.0).astype(np.float32)


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
    percentile = _checks.check_percentile(percentile)
    maps = as_maps(maps)
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


def colorize(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Maps values in [0, 1] ``[...]`` to RGB ``[..., 3]`` with a NumPy colour map.

    Values outside [0, 1] are clipped; an empty array gives an empty ``[..., 3]`` array.

    Args:
      values: any shape, real dtype; 0 and 1 are the ends of the colour map.
      cmap: ``"viridis"`` (sequential, dark to bright) or ``"RdBu_r"`` (diverging blue - white -
        red; 0.5, the zero of a signed map rescaled by ``(v + 1) / 2``, is white).

    Raises:
      InputDTypeError: a non-numeric array.
      NonFiniteInputError: NaN or Inf values.
      InvalidArgumentError: an unknown ``cmap``.

    Examples:
      >>> colorize(np.array([0.0, 1.0])).round(2)
      array([[0.27, 0.  , 0.33],
             [0.99, 0.91, 0.15]], dtype=float32)
      >>> colorize(np.array([0.5]), "RdBu_r").round(2)  # the centre of the diverging map
      array([[0.97, 0.96, 0.96]], dtype=float32)
    """
    _checks.check_choice(cmap, "cmap", tuple(COLORMAPS))
    anchors = COLORMAPS[cmap]
    arr = numeric(values, "values")
    _checks.check_finite(arr, "values")
    v = np.clip(arr.astype(np.float32), 0.0, 1.0) * (len(anchors) - 1)
    lo = np.floor(v).astype(int)
    hi = np.minimum(lo + 1, len(anchors) - 1)
    frac = (v - lo)[..., None]
    return (anchors[lo] * (1 - frac) + anchors[hi] * frac).astype(np.float32)


#: How a channel map ``[..., C]`` is reduced to one value per pixel.
CHANNEL_REDUCTIONS = ("sum", "sum_abs", "mean", "max_abs", "l2")


def reduce_channels(m: np.ndarray, how: str) -> np.ndarray:
    """Collapses the last axis of a channel map (NumPy): ``sum`` (Captum's choice, signed),
    ``sum_abs``, ``mean``, ``max_abs`` or ``l2``."""
    _checks.check_choice(how, "channel_reduce", CHANNEL_REDUCTIONS)
    if how == "sum":
        return m.sum(axis=-1)
    if how == "sum_abs":
        return np.abs(m).sum(axis=-1)
    if how == "mean":
        return m.mean(axis=-1)
    if how == "max_abs":
        return np.abs(m).max(axis=-1)
    return np.sqrt((m * m).sum(axis=-1))


def heatmap(
    maps: np.ndarray,
    *,
    percentile: float = 99.5,
    signed: bool = False,
    batch_axis: bool | None = None,
    channel_reduce: str | None = None,
) -> np.ndarray:
    """Saliency maps to RGB heatmaps, each map scaled on its own.

    Args:
      maps: one map ``[H, W]`` (``[H, W, C]`` with ``batch_axis=False``) or a batch ``[B, H, W]``
        (``[B, H, W, C]``).
      percentile: the percentile of each map shown brightest, as in :func:`normalize`.
      signed: keep the sign: a diverging map (``"RdBu_r"``-like) with 0 white, -1 dark blue and
        1 dark red; otherwise negative values show as 0, the darkest colour of the sequential
        (viridis-like) map.
      batch_axis: whether axis 0 indexes maps; ``None`` reads rank 2 as one map and ranks 3 and
        4 as batches.
      channel_reduce: how channel maps ``[..., H, W, C]`` become ``[..., H, W]`` first:
        ``"sum_abs"`` (sum of ``|a|`` over channels), ``"sum"`` (signed sum, Captum's choice),
        ``"mean"``, ``"max_abs"`` or ``"l2"``; ``None``: ``"sum"`` when ``signed``, else
        ``"sum_abs"``.

    Returns:
      ``float32`` RGB ``[H, W, 3]`` or ``[B, H, W, 3]``.

    Raises:
      InputShapeError: a rank that is not one of the layouts above, or an empty map.
      InputDTypeError, NonFiniteInputError, InvalidArgumentError: as :func:`normalize`.

    Examples:
      >>> heatmap(np.arange(6.0).reshape(2, 3)).shape
      (2, 3, 3)
      >>> rgb = heatmap(np.array([[-1.0, -0.5, 0.0, 0.5, 1.0]]), signed=True, percentile=100)
      >>> len({tuple(c) for c in rgb[0].round(3)})  # five values, five colours
      5
    """
    arr = as_maps(maps)
    batched = _is_batched(arr.ndim, batch_axis, "maps")
    spatial_rank = arr.ndim - int(batched)
    if spatial_rank not in (2, 3):
        raise errors.InputShapeError(
            f"`maps` of shape {shape_str(arr.shape)} with batch_axis={batched} is not a map "
            "[H, W] / [H, W, C] or a batch [B, H, W] / [B, H, W, C]. Add a batch axis "
            "(`maps[None]`) or reshape it to one of these layouts."
        )
    if spatial_rank == 3:
        arr = reduce_channels(arr, channel_reduce or ("sum" if signed else "sum_abs"))
    n = normalize(arr, percentile=percentile, signed=signed, batch_axis=batched)
    if signed:
        return colorize((n + 1.0) / 2.0, "RdBu_r")
    return colorize(n)


def overlay(
    images: np.ndarray, maps: np.ndarray, alpha: float = 0.55, *, signed: bool = False
) -> np.ndarray:
    """Blends the heatmaps of ``maps`` over grey versions of ``images``.

    Args:
      images: one image ``[H, W, C]`` or a batch ``[B, H, W, C]`` (``C`` = 1 or 3), floats in
        [0, 1] or uint8.
      maps: the matching maps, ``images.shape[:-1]`` (channel maps: plus a trailing axis).
      alpha: weight of the heatmap, in [0, 1].
      signed: colour the maps with the diverging map of :func:`heatmap` (0 is white).

    Returns:
      ``float32`` RGB ``[H, W, 3]`` or ``[B, H, W, 3]``.

    Raises:
      InputShapeError: images that are not ``[H, W, C]`` / ``[B, H, W, C]``, or maps of
        another size.
      InputDTypeError, NonFiniteInputError: non-numeric or non-finite images or maps.
      InvalidArgumentError: ``alpha`` outside [0, 1], or float images outside [0, 1] (0..255
        or normalised images: divide by 255 / undo the normalisation first).

    Examples:
      >>> overlay(np.zeros((4, 5, 3)), np.ones((4, 5))).shape
      (4, 5, 3)
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise errors.InvalidArgumentError(f"`alpha` must be a number in [0, 1], got {alpha!r}.")
    img = as_image(images, "images")
    check_not_empty(img, "images")
    if img.ndim not in (3, 4) or img.shape[-1] not in (1, 3):
        raise errors.InputShapeError(
            f"`images` must be one image [H, W, C] or a batch [B, H, W, C] with C = 1 or 3, "
            f"got shape {shape_str(img.shape)}. Add the channel axis of a grey image with "
            "`images[..., None]`."
        )
    arr = as_maps(maps)
    spatial = img.shape[:-1]
    if arr.shape[: len(spatial)] != spatial or arr.ndim - len(spatial) not in (0, 1):
        raise errors.InputShapeError(
            f"`maps` of shape {shape_str(arr.shape)} does not match `images` of shape "
            f"{shape_str(img.shape)}: give one value per pixel, shape {shape_str(spatial)} "
            f"(or {shape_str(spatial)[:-1]}, C] for channel maps); resize the maps to the "
            "images first."
        )
    grey = img.mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    return (1 - alpha) * grey + alpha * heatmap(arr, batch_axis=img.ndim == 4, signed=signed)


def grid(rows: Sequence[Sequence[np.ndarray]], *, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tiles equally sized RGB (or grey) tiles ``[H, W(, C)]`` into one image, row by row.

    For a figure with titles and colour bars use :func:`show_grid`; this is the plain-array
    version (no matplotlib).

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
      InvalidArgumentError: ``pad < 0`` or ``scale < 1``, or a float tile outside [0, 1].

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
    tiles = [[rgb(t, f"tile ({i}, {j})") for j, t in enumerate(row)] for i, row in enumerate(rows)]
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
