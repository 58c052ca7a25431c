"""Shared machinery of the procedural benchmark: seeding, chunking, checks and rasterisation.

Every generator works in two stages:

1. ``sample_params(rng, config, split, n)`` draws *all* the randomness of one chunk of
   :data:`CHUNK_SIZE` examples into small per-example parameter arrays. The generator of a chunk
   is keyed by ``(seed, split, kind, chunk index)``, so any chunk can be made on its own.
2. ``render(params, config)`` turns parameters into arrays with element-wise arithmetic only
   (no transcendental functions, no reductions across pixels that could depend on the memory
   layout). An example therefore renders to the same bytes alone or inside any batch, which is
   what lets :class:`SyntheticSource` render one index at a time and still agree bit for bit with
   ``make_*``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xaijax import errors

#: Examples per independently seeded chunk. Fixed: changing it changes every generated example.
CHUNK_SIZE = 256

SPLITS = ("train", "validation", "test")
_SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
KINDS = ("images", "videos", "texts")
_KIND_IDS = {"images": 1, "videos": 2, "texts": 3}

#: The primitive shapes parts and distractors are made of (part-local unit frame).
SHAPE_NAMES = ("disc", "ellipse", "triangle", "bar", "ring")

#: Saturated part colours (the class palette), RGB in [0, 1].
COLOR_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
PALETTE = np.array(
    [
        [0.90, 0.12, 0.12],
        [1.00, 0.55, 0.05],
        [0.98, 0.92, 0.15],
        [0.15, 0.75, 0.20],
        [0.10, 0.85, 0.90],
        [0.15, 0.30, 0.95],
        [0.60, 0.20, 0.85],
        [1.00, 0.50, 0.75],
    ],
    np.float32,
)

#: Muted colours for distractor shapes; disjoint from the class palette so that distractors
#: never look like a part (they carry no class information either way: they are drawn
#: independently of the label).
DISTRACTOR_PALETTE = np.array(
    [
        [0.50, 0.50, 0.50],
        [0.45, 0.30, 0.20],
        [0.45, 0.45, 0.20],
        [0.30, 0.35, 0.45],
        [0.72, 0.62, 0.45],
        [0.18, 0.18, 0.18],
        [0.85, 0.85, 0.80],
    ],
    np.float32,
)


def check_split(split) -> str:
    if split not in _SPLIT_IDS:
        raise errors.InvalidArgumentError(
            f"`split` must be one of {list(SPLITS)}, got {split!r}. Each split has its own seeds; "
            "the spurious background cue, when enabled, is only planted in 'train'."
        )
    return split


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise errors.InvalidArgumentError(
            f"`seed` must be a non-negative integer, got {seed!r}. Same seed -> identical data."
        )
    return int(seed)


def check_num(num) -> int:
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num <= 0:
        raise errors.InvalidArgumentError(
            f"`num` must be a positive integer number of examples, got {num!r}."
        )
    return int(num)


def check_config(config, cls: type, func: str):
    if config is None:
        return cls()
    if not isinstance(config, cls):
        raise errors.InvalidArgumentError(
            f"`config` of `{func}` must be a synthetic.{cls.__name__} (or None for the defaults), "
            f"got {type(config).__name__}."
        )
    return config


def chunk_rng(seed: int, split: str, kind: str, chunk: int) -> np.random.Generator:
    """The generator of one chunk, keyed by ``(seed, split, kind, chunk)`` (PCG64)."""
    entropy = [int(seed), _SPLIT_IDS[split], _KIND_IDS[kind], int(chunk)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


Params = dict[str, np.ndarray]


def take(params: Params, idx) -> Params:
    """Selects examples ``idx`` (an int array or a slice) of a parameter dict."""
    return {k: v[idx] for k, v in params.items()}


def concat(params: list[Params]) -> Params:
    return {k: np.concatenate([p[k] for p in params]) for k in params[0]}


def generate(
    kind: str,
    num: int,
    seed: int,
    split: str,
    config,
    sample_params: Callable[..., Params],
    render: Callable[..., dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Samples the parameters of every chunk needed for ``num`` examples and renders them."""
    out: dict[str, np.ndarray] = {}
    for chunk in range(-(-num // CHUNK_SIZE)):
        params = sample_params(chunk_rng(seed, split, kind, chunk), config, split, CHUNK_SIZE)
        lo = chunk * CHUNK_SIZE
        count = min(CHUNK_SIZE, num - lo)
        part = render(take(params, slice(0, count)), config)
        if not out:
            if count == num:
                return part
            out = {k: np.empty((num, *v.shape[1:]), v.dtype) for k, v in part.items()}
        for k, v in part.items():
            out[k][lo : lo + count] = v
    return out


def balanced_labels(rng: np.random.Generator, num_classes: int, n: int) -> np.ndarray:
    """Labels in consecutive blocks of ``C``, each a random permutation of the classes, so
    every prefix of a chunk holds each class ``floor(m / C)`` or ``ceil(m / C)`` times."""
    blocks = -(-n // num_classes)
    return np.argsort(rng.random((blocks, num_classes)), axis=1).ravel()[:n].astype(np.int32)


def sample_distractors(
    rng: np.random.Generator, n: int, count: int, size: int, half_range: tuple[float, float]
) -> Params:
    """Shape, colour, centre, half-size (a ``half_range`` fraction of ``size``) and angle of
    ``count`` distractors in each of ``n`` examples, drawn from ``rng`` in that order."""
    shape = rng.integers(0, len(SHAPE_NAMES), size=(n, count))
    color = rng.integers(0, len(DISTRACTOR_PALETTE), size=(n, count))
    pos = rng.random((n, count, 2)) * size
    half = rng.uniform(half_range[0], half_range[1], size=(n, count)) * size
    ang = rng.uniform(0.0, 2.0 * np.pi, size=(n, count))
    f32 = np.float32
    return {
        "d_shape": shape.astype(np.int8),
        "d_color": DISTRACTOR_PALETTE[color],
        "d_cy": pos[..., 0].astype(f32),
        "d_cx": pos[..., 1].astype(f32),
        "d_half": half.astype(f32),
        "d_cos": np.cos(ang).astype(f32),
        "d_sin": np.sin(ang).astype(f32),
    }


# --------------------------------------------------------------------------------------------
# Rasterisation (element-wise arithmetic only; see the module docstring).
# --------------------------------------------------------------------------------------------


def pixel_grid(size: int) -> np.ndarray:
    """Pixel-centre coordinates ``0.5, 1.5, ...`` (float32 ``[size]``)."""
    return np.arange(size, dtype=np.float32) + np.float32(0.5)


def _disc(p, q):
    return p * p + q * q <= 1.0


def _ellipse(p, q):
    return p * p + (q * q) * np.float32(1.0 / 0.55**2) <= 1.0


_S3 = np.float32(np.sqrt(3.0) / 2.0)


def _triangle(p, q):
    # Equilateral, circumradius 1, one vertex pointing along +p.
    a = np.float32(0.5) * p
    b = _S3 * q
    return (p >= -0.5) & (a - b <= 0.5) & (a + b <= 0.5)


def _bar(p, q):
    return (np.abs(p) <= 1.0) & (np.abs(q) <= 0.32)


def _ring(p, q):
    r2 = p * p + q * q
    return (r2 <= 1.0) & (r2 >= np.float32(0.55**2))


_SHAPE_FNS = (_disc, _ellipse, _triangle, _bar, _ring)


def shape_inside(shape_ids: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Inside test of the primitive ``shape_ids[i]`` at local coordinates ``p[i], q[i]``.

    Args:
      shape_ids: int ``[n]`` indices into :data:`SHAPE_NAMES`.
      p: float32 ``[n, ...]`` coordinate along the part axis, in units of the part half-size.
      q: float32 ``[n, ...]`` coordinate across the part axis.

    Returns:
      bool ``[n, ...]``.
    """
    out = np.zeros(p.shape, bool)
    for s, fn in enumerate(_SHAPE_FNS):
        idx = np.flatnonzero(shape_ids == s)
        if idx.size == len(shape_ids):
            return fn(p, q)
        if idx.size:
            out[idx] = fn(p[idx], q[idx])
    return out


def local_coords(
    ys: np.ndarray,
    xs: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    half: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in a rotated, scaled frame centred at ``(cy, cx)``.

    Args:
      ys, xs: float32 pixel-centre coordinates, ``[S]`` each.
      cy, cx, cos, sin, half: float32 ``[n, ...]`` (any trailing axes, e.g. frames); ``cos``/
        ``sin`` give the frame's axis direction in image coordinates (x right, y down) and
        ``half`` the length of one frame unit in pixels.

    Returns:
      ``(p, q)``, float32 ``[n, ..., S, S]``: ``p`` along the axis, ``q`` across it.
    """
    e = (..., None, None)
    dy = ys[:, None] - cy[e]
    dx = xs[None, :] - cx[e]
    inv = np.float32(1.0) / half[e]
    c = cos[e] * inv
    s = sin[e] * inv
    return dx * c + dy * s, dy * c - dx * s


def windows(cy: np.ndarray, cx: np.ndarray, reach: np.ndarray, size: int):
    """Square pixel windows ``[n, W]`` (rows, columns) holding the discs of radius ``reach``
    around ``(cy, cx)`` (clipped to the image), so that shapes are rasterised only near them.

    Returns:
      ``(rows, cols)``, int64 ``[n, W]`` with one ``W`` (<= ``size``) for all examples.
    """
    w = min(size, int(np.ceil(2.0 * float(reach.max()) + 3.0)))
    oy = np.clip(np.floor(cy - reach - 1.0).astype(np.int64), 0, size - w)
    ox = np.clip(np.floor(cx - reach - 1.0).astype(np.int64), 0, size - w)
    r = np.arange(w)
    return oy[:, None] + r, ox[:, None] + r


def window_coords(rows, cols, cy, cx, cos, sin, half) -> tuple[np.ndarray, np.ndarray]:
    """:func:`local_coords` over per-example windows (``rows``/``cols`` int ``[n, W]``).

    Pixel ``(i, j)`` gets exactly the values it gets on the full grid.
    """
    e = (slice(None), None, None)
    ys = rows.astype(np.float32) + np.float32(0.5)
    xs = cols.astype(np.float32) + np.float32(0.5)
    dy = ys[:, :, None] - cy[e]
    dx = xs[:, None, :] - cx[e]
    inv = np.float32(1.0) / half[e]
    c = cos[e] * inv
    s = sin[e] * inv
    return dx * c + dy * s, dy * c - dx * s


def paint_windows(code: np.ndarray, idx, rows, cols, inside, value) -> None:
    """``code[idx]`` restricted to the windows ``rows x cols`` gets ``value`` where ``inside``."""
    size = code.shape[-1]
    flat = (idx[:, None, None] * size + rows[:, :, None]) * size + cols[:, None, :]
    view = code.reshape(-1)
    sub = np.take(view, flat)
    paint(sub, inside, value)
    view[flat] = sub


def smooth_noise(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of coarse grids, channels first: ``[n, C, g, g] -> [n, C, S, S]``."""
    g = grid.shape[-1]
    t = pixel_grid(size) * np.float32((g - 1) / size)
    i0 = np.minimum(np.floor(t).astype(np.int64), g - 2)
    w = t - i0.astype(np.float32)
    a = np.take(grid, i0, axis=-2)
    rows = a + (np.take(grid, i0 + 1, axis=-2) - a) * w[:, None]  # [n, C, S, g]
    a = np.take(rows, i0, axis=-1)
    return a + (np.take(rows, i0 + 1, axis=-1) - a) * w[None, :]


def triangle_wave(t: np.ndarray) -> np.ndarray:
    """A period-1 triangle wave in ``[0, 1]`` (a sine without the transcendental)."""
    return np.abs(np.float32(2.0) * (t - np.floor(t)) - np.float32(1.0))


def paint(code: np.ndarray, inside: np.ndarray, value) -> None:
    """``code[inside] = value`` on uint8 maps, as wrap-around arithmetic (faster than masking)."""
    code += inside.view(np.uint8) * (value - code)


def tight_boxes(mask: np.ndarray) -> np.ndarray:
    """Tight boxes ``(y0, x0, y1, x1)`` (``y1``/``x1`` exclusive) of masks ``[..., H, W]``.

    Empty masks give ``(0, 0, 0, 0)``.
    """
    h, w = mask.shape[-2:]
    rows = mask.any(axis=-1)
    cols = mask.any(axis=-2)
    y0 = np.argmax(rows, axis=-1)
    y1 = h - np.argmax(rows[..., ::-1], axis=-1)
    x0 = np.argmax(cols, axis=-1)
    x1 = w - np.argmax(cols[..., ::-1], axis=-1)
    box = np.stack([y0, x0, y1, x1], axis=-1).astype(np.float32)
    return np.where(rows.any(axis=-1)[..., None], box, np.float32(0.0))
