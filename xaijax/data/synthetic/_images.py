"""Procedural part-based images with pixel-exact ground truth (the xaijax synthetic benchmark).

Each image shows one object (optionally two) assembled from five parts. What a class looks like
is a row of a class-attribute matrix: for every part a primitive shape, a colour, a texture and a
relative size, with attribute values shared between classes (like CUB-200's 312 binary
attributes). Pose (position, scale, rotation), background and distractor shapes are random and
independent of the label, unless the spurious background cue is switched on for the train split.
"""

from __future__ import annotations

import colorsys
import functools

import numpy as np

from xaijax.data.synthetic import _common as c
from xaijax.data.synthetic._config import ImageConfig

#: Parts in output order (axis ``P`` of ``part_masks`` and ``keypoints``).
PART_NAMES = ("head", "body", "tail", "wings", "legs")
TEXTURE_NAMES = ("plain", "striped", "dotted")
SIZE_NAMES = ("small", "medium", "large")
_FACTORS = (
    ("shape", c.SHAPE_NAMES),
    ("color", c.COLOR_NAMES),
    ("texture", TEXTURE_NAMES),
    ("size", SIZE_NAMES),
)
_FACTOR_LEVELS = tuple(len(values) for _, values in _FACTORS)
_PER_PART = sum(_FACTOR_LEVELS)

#: Names of the binary attributes (columns of :func:`class_attribute_matrix` and of
#: ``d["attributes"]``), CUB-style: ``"<part>_<factor>::<value>"``, e.g. ``"head_color::red"``.
ATTRIBUTE_NAMES = tuple(
    f"{part}_{factor}::{value}"
    for part in PART_NAMES
    for factor, values in _FACTORS
    for value in values
)

_P = len(PART_NAMES)
_BODY = PART_NAMES.index("body")
# Body first, the other parts on top of it.
_DRAW_ORDER = (_BODY, 0, 2, 3, 4)
# Direction of each part from the body centre, in the object frame (also the part's own axis).
_PART_ANGLE = np.array([0.0, 0.0, np.pi, -np.pi / 2, np.pi / 2])
_PART_COS = np.cos(_PART_ANGLE)
_PART_SIN = np.sin(_PART_ANGLE)
_BASE_HALF = np.array([0.28, 0.42, 0.28, 0.28, 0.28])
_SIZE_MULT = np.array([0.8, 1.0, 1.2])
# How far the body reaches (in body half-sizes) towards each part (columns in PART_NAMES order;
# the body's own column is unused), per body shape (rows in SHAPE_NAMES order).
_BODY_REACH = np.array(
    [
        [1.0, 1.0, 1.0, 1.0, 1.0],  # disc
        [1.0, 1.0, 1.0, 0.55, 0.55],  # ellipse
        [1.0, 1.0, 0.5, 0.577, 0.577],  # triangle (vertex towards the head)
        [0.94, 1.0, 0.94, 0.32, 0.32],  # bar
        [1.0, 1.0, 1.0, 1.0, 1.0],  # ring
    ]
)
_OVERLAP = 0.45  # anchor distance = body reach + 0.45 part half-size: parts touch the body
_DARK = np.float32(0.3)  # texture marks are the part colour times this


@functools.lru_cache(maxsize=32)
def _class_table(num_classes: int, class_seed: int) -> np.ndarray:
    """int ``[C, P, 4]``: shape, colour, texture and size index of every part of every class.

    Classes are drawn greedily from a fixed generator and kept only if they differ from every
    earlier class in at least two part colours and five visible (shape/colour/texture) part
    factors; the thresholds relax only if no such class can be found.
    """
    rng = np.random.default_rng([class_seed, 0x5EED])
    levels = np.array(_FACTOR_LEVELS)
    rows = np.zeros((0, _P, 4), np.int64)
    need_color, need_visible, fails = 2, 5, 0
    while len(rows) < num_classes:
        cand = rng.integers(0, levels, size=(_P, 4))
        diff = rows != cand[None]
        ok = np.all(
            (diff[:, :, 1].sum(axis=1) >= need_color)
            & (diff[:, :, :3].sum(axis=(1, 2)) >= need_visible)
        )
        if ok:
            rows = np.concatenate([rows, cand[None]])
            fails = 0
        else:
            fails += 1
            if fails > 2000:
                need_color, need_visible, fails = (
                    max(0, need_color - 1),
                    max(1, need_visible - 1),
                    0,
                )
    return rows


def class_attribute_matrix(config: ImageConfig | None = None) -> np.ndarray:
    """The class-attribute matrix Φ of the synthetic image benchmark.

    Args:
      config: an :class:`ImageConfig` (only ``num_classes`` and ``class_seed`` matter); None
        for the defaults.

    Returns:
      float32 ``[C, A]`` of 0/1, ``A = len(ATTRIBUTE_NAMES)`` (5 parts x 19 values): row ``c``
      holds the attributes every complete object of class ``c`` shows.

    >>> from xaijax.data import synthetic
    >>> phi = synthetic.class_attribute_matrix()
    >>> phi.shape, float(phi.sum(axis=1)[0])
    ((10, 95), 20.0)
    """
    config = c.check_config(config, ImageConfig, "class_attribute_matrix")
    return _attributes(_class_table(config.num_classes, config.class_seed), np.ones((1, _P), bool))


def _attributes(table: np.ndarray, present: np.ndarray) -> np.ndarray:
    """One-hot attributes ``[n, A]`` of ``table`` ``[n, P, 4]``; absent parts give zeros."""
    n = table.shape[0]
    out = np.zeros((n, _P, _PER_PART), np.float32)
    offset = 0
    for f, lv in enumerate(_FACTOR_LEVELS):
        out[:, :, offset : offset + lv] = np.eye(lv, dtype=np.float32)[table[:, :, f]]
        offset += lv
    out *= present[:, :, None]
    return out.reshape(n, _P * _PER_PART)


@functools.lru_cache(maxsize=32)
def _class_geometry(num_classes: int, class_seed: int):
    """Per class: part half-sizes and anchor distances ``[C, P]``, normalised so that every
    pose of the object fits in the unit circle."""
    table = _class_table(num_classes, class_seed)
    half = _BASE_HALF[None] * _SIZE_MULT[table[:, :, 3]]
    reach = _BODY_REACH[table[:, _BODY, 0]] * half[:, _BODY : _BODY + 1]
    dist = reach + _OVERLAP * half
    dist[:, _BODY] = 0.0
    extent = np.max(dist + half, axis=1, keepdims=True)
    return (half / extent).astype(np.float32), (dist / extent).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _background_patterns(num_classes: int):
    """Per pattern ``k``: an RGB tint ``[C, 3]`` and a grating direction (cos, sin) ``[C, 2]``."""
    hues = [colorsys.hsv_to_rgb(k / num_classes, 1.0, 1.0) for k in range(num_classes)]
    tint = 0.10 * (np.array(hues) - np.mean(hues, axis=1, keepdims=True))
    ang = np.pi * np.arange(num_classes) / num_classes
    return tint.astype(np.float32), np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)


def _object_params(rng, cfg: ImageConfig, label, n: int, region) -> dict[str, np.ndarray]:
    """Pose and parts of one object per example; ``region`` = (y0, x0, height, width)."""
    size = cfg.image_size / (2 if cfg.two_objects else 1)
    if cfg.scale_choices is None:
        scale = rng.uniform(*cfg.scale_range, size=n)
    else:
        size_class = rng.integers(0, len(cfg.scale_choices), size=n)
        scale = np.asarray(cfg.scale_choices, np.float64)[size_class]
    theta = np.deg2rad(rng.uniform(-cfg.max_rotation, cfg.max_rotation, size=n))
    pos_u = rng.random((n, 2))
    missing_u = rng.random((n, _P))
    phase = rng.random((n, _P, 2))

    table = _class_table(cfg.num_classes, cfg.class_seed)[label]  # [n, P, 4]
    half_c, dist_c = _class_geometry(cfg.num_classes, cfg.class_seed)
    radius = scale * (size - 2.0) / 2.0  # pixels per unit of the normalised object frame
    y0, x0, height, width = region
    # Anywhere the unit circle stays 1 px inside the region.
    cy = y0 + radius + 1.0 + pos_u[:, 0] * np.maximum(height - 2.0 * (radius + 1.0), 0.0)
    cx = x0 + radius + 1.0 + pos_u[:, 1] * np.maximum(width - 2.0 * (radius + 1.0), 0.0)
    ct, st = np.cos(theta), np.sin(theta)
    pc = ct[:, None] * _PART_COS[None] - st[:, None] * _PART_SIN[None]  # part axis, image frame
    ps = st[:, None] * _PART_COS[None] + ct[:, None] * _PART_SIN[None]
    dist = dist_c[label] * radius[:, None]
    present = missing_u >= cfg.missing_part_prob
    present[:, _BODY] = True
    f32 = np.float32
    extra = {} if cfg.scale_choices is None else {"size_class": size_class.astype(np.int32)}
    return {
        **extra,
        "scale": scale.astype(f32),
        "part_cy": (cy[:, None] + dist * ps).astype(f32),
        "part_cx": (cx[:, None] + dist * pc).astype(f32),
        "part_cos": pc.astype(f32),
        "part_sin": ps.astype(f32),
        "part_half": (half_c[label] * radius[:, None]).astype(f32),
        "part_table": table.astype(np.int8),
        "part_drawn": present,
        "phase": phase.astype(f32),
    }


def sample_params(rng: np.random.Generator, cfg: ImageConfig, split: str, n: int):
    """All randomness of ``n`` images.

    Labels, background, distractors, layout and each object draw from their own child
    streams, so an option changes only what it is about: e.g. switching the spurious cue on
    changes the backgrounds and nothing else, and distractors do not move the objects.
    """
    C, S, D = cfg.num_classes, cfg.image_size, cfg.num_distractors
    r_label, r_bg, r_dist, r_layout, r_obj1, r_obj2 = rng.spawn(6)
    label = c.balanced_labels(r_label, C, n)
    label2 = (label + 1 + r_label.integers(0, C - 1, size=n)) % C
    pattern = r_bg.integers(0, C, size=n)
    spur_u = r_bg.random(n)
    if cfg.spurious_background and split == "train":
        pattern = np.where(spur_u < cfg.spurious_strength, label, pattern)
    level = r_bg.uniform(0.35, 0.6, size=n)
    grid = r_bg.uniform(-1.0, 1.0, size=(n, 3, 5, 5)) * 0.07
    grating_phase = r_bg.random(n)
    split_axis = r_layout.integers(0, 2, size=n)
    side = r_layout.integers(0, 2, size=n)

    if cfg.two_objects:
        # Object 1 in one half of the image (left/right or top/bottom), object 2 in the other.
        h = S / 2.0
        full = np.full(n, float(S))
        half = np.full(n, h)
        zero = np.zeros(n)
        by_x = split_axis == 0
        regions = []
        for off in (side * h, (1 - side) * h):
            regions.append(
                (
                    np.where(by_x, zero, off),
                    np.where(by_x, off, zero),
                    np.where(by_x, full, half),
                    np.where(by_x, half, full),
                )
            )
        r1, r2 = regions
    else:
        r1 = r2 = (0.0, 0.0, float(S), float(S))
    obj1 = _object_params(r_obj1, cfg, label, n, r1)
    obj2 = _object_params(r_obj2, cfg, label2, n, r2)
    tint, direction = _background_patterns(C)
    f32 = np.float32
    params = {
        "label": label.astype(np.int32),
        "pattern": pattern.astype(np.int32),
        "bg_color": (level[:, None] + tint[pattern]).astype(f32),
        "bg_grid": grid.astype(f32),
        "grating_dir": direction[pattern],
        "grating_phase": grating_phase.astype(f32),
        **c.sample_distractors(r_dist, n, D, S, (0.05, 0.09)),
    }
    params.update({f"o1_{k}": v for k, v in obj1.items()})
    if cfg.two_objects:
        params["label2"] = label2.astype(np.int32)
        params.update({f"o2_{k}": v for k, v in obj2.items()})
    return params


def _texture_marks(texture, p, q, half, phase, size: int) -> np.ndarray:
    """bool ``[n, S, S]``: where a part's texture is dark (stripes across the axis, or dots)."""
    dark = np.zeros(p.shape, bool)
    e = (slice(None), None, None)
    for tex in (1, 2):
        idx = np.flatnonzero(texture == tex)
        if idx.size == 0:
            continue
        every = idx.size == len(texture)
        pp, qq = (p, q) if every else (p[idx], q[idx])
        h, ph = half[idx][e], phase[idx]
        if tex == 1:
            t = pp * (h * np.float32(1.0 / max(4.0, size / 16.0))) + ph[:, 0][e]
            marks = (t - np.floor(t)) < 0.5
        else:
            k = h * np.float32(1.0 / max(5.0, size / 12.0))
            fu = pp * k + ph[:, 0][e]
            fv = qq * k + ph[:, 1][e]
            fu = fu - np.floor(fu) - np.float32(0.5)
            fv = fv - np.floor(fv) - np.float32(0.5)
            marks = fu * fu + fv * fv < np.float32(0.09)
        if every:
            return marks
        dark[idx] = marks
    return dark


def _draw_object(code, lut, o: dict[str, np.ndarray], first: int) -> None:
    """Paints one object into the uint8 code map ``[n, S, S]`` in place.

    Part ``p`` gets codes ``first + 2p`` (plain) and ``first + 2p + 1`` (texture mark), whose
    colours are written to ``lut`` ``[n, K, 3]``.
    """
    size = code.shape[-1]
    for part in _DRAW_ORDER:
        shape, color, texture = (o["part_table"][:, part, f] for f in range(3))
        lut[:, first + 2 * part] = c.PALETTE[color]
        lut[:, first + 2 * part + 1] = c.PALETTE[color] * _DARK
        idx = np.flatnonzero(o["part_drawn"][:, part])
        if idx.size == 0:
            continue
        half = o["part_half"][idx, part]
        cy, cx = o["part_cy"][idx, part], o["part_cx"][idx, part]
        rows, cols = c.windows(cy, cx, half, size)
        p, q = c.window_coords(
            rows, cols, cy, cx, o["part_cos"][idx, part], o["part_sin"][idx, part], half
        )
        inside = c.shape_inside(shape[idx], p, q)
        dark = _texture_marks(texture[idx], p, q, half, o["phase"][idx, part], size)
        c.paint_windows(
            code, idx, rows, cols, inside, np.uint8(first + 2 * part) + dark.view(np.uint8)
        )


def _part_map(code: np.ndarray, first: int) -> np.ndarray:
    """int16 ``[n, S, S]``: the part index of each pixel of the object coded from ``first``,
    -1 elsewhere."""
    rel = code.astype(np.int16) - np.int16(first)
    return np.where((rel >= 0) & (rel < 2 * _P), rel >> 1, np.int16(-1))


def _keypoints(part_masks, present, cy, cx) -> np.ndarray:
    """The pixel holding each part's centre if it shows the part, else the part pixel whose
    centre is nearest; (-1, -1) for absent parts. float32 ``[n, P, 2]`` (pixel centres)."""
    n, P, S, _ = part_masks.shape
    iy = np.clip(np.floor(cy).astype(np.int64), 0, S - 1)
    ix = np.clip(np.floor(cx).astype(np.int64), 0, S - 1)
    hit = part_masks[np.arange(n)[:, None], np.arange(P)[None, :], iy, ix]
    kp = np.stack([iy, ix], axis=-1).astype(np.float32)
    miss = np.argwhere(present & ~hit)
    if len(miss):
        i, j = miss[:, 0], miss[:, 1]
        g = c.pixel_grid(S)
        dy = g[None, :] - cy[i, j][:, None]
        dx = g[None, :] - cx[i, j][:, None]
        d2 = (dy * dy)[:, :, None] + (dx * dx)[:, None, :]
        d2 = np.where(part_masks[i, j], d2, np.float32(np.inf)).reshape(len(i), S * S)
        flat = np.argmin(d2, axis=-1)
        kp[i, j] = np.stack([flat // S, flat % S], axis=-1).astype(np.float32)
    kp += np.float32(0.5)
    return np.where(present[..., None], kp, np.float32(-1.0))


def render(params: dict[str, np.ndarray], cfg: ImageConfig) -> dict[str, np.ndarray]:
    """Renders sampled parameters to images and ground truth (see :func:`make_images`)."""
    S, D = cfg.image_size, cfg.num_distractors
    n = params["label"].shape[0]
    ys = xs = c.pixel_grid(S)
    e = (slice(None), None, None)

    # Background (channels first for the smooth noise, then channels last): base colour
    # (+ pattern tint) + smooth colour noise + an oriented grating.
    gd = params["grating_dir"]
    t = (xs[None, None, :] * gd[:, 0][e] + ys[None, :, None] * gd[:, 1][e]) * np.float32(6.0 / S)
    grating = (c.triangle_wave(t + params["grating_phase"][e]) - np.float32(0.5)) * np.float32(0.12)
    bg = c.smooth_noise(params["bg_grid"], S)
    bg += params["bg_color"][:, :, None, None]
    bg += grating[:, None]
    np.clip(bg, 0.0, 1.0, out=bg)
    bg = bg.transpose(0, 2, 3, 1)

    # Shapes are painted as codes into a uint8 map, then looked up in a per-example colour
    # table: 0 = background, 1..D = distractors, then two codes per part and object.
    first1 = 1 + D
    first2 = first1 + 2 * _P
    lut = np.zeros((n, first2 + 2 * _P, 3), np.float32)
    code = np.zeros((n, S, S), np.uint8)
    every = np.arange(n)
    for j in range(D):
        cy, cx, half = params["d_cy"][:, j], params["d_cx"][:, j], params["d_half"][:, j]
        rows, cols = c.windows(cy, cx, half, S)
        p, q = c.window_coords(
            rows, cols, cy, cx, params["d_cos"][:, j], params["d_sin"][:, j], half
        )
        inside = c.shape_inside(params["d_shape"][:, j], p, q)
        c.paint_windows(code, every, rows, cols, inside, np.uint8(1 + j))
        lut[:, 1 + j] = params["d_color"][:, j]
    o1 = {k[3:]: v for k, v in params.items() if k.startswith("o1_")}
    _draw_object(code, lut, o1, first1)
    if cfg.two_objects:
        o2 = {k[3:]: v for k, v in params.items() if k.startswith("o2_")}
        _draw_object(code, lut, o2, first2)
    flat = code.astype(np.intp) + (np.arange(n, dtype=np.intp) * lut.shape[1])[:, None, None]
    colors = np.take(lut.reshape(-1, 3), flat, axis=0)
    img = np.where((code == 0)[..., None], bg, colors)

    parts = _part_map(code, first1)
    part_masks = parts[:, None] == np.arange(_P, dtype=np.int16)[None, :, None, None]
    object_mask = parts >= 0
    present = o1["part_drawn"] & part_masks.any(axis=(2, 3))
    out = {
        "image": img,
        "label": params["label"],
        "object_mask": object_mask,
        "part_masks": part_masks,
        "part_present": present,
        "box": c.tight_boxes(object_mask),
        "attributes": _attributes(o1["part_table"].astype(np.int64), present),
        "keypoints": _keypoints(part_masks, present, o1["part_cy"], o1["part_cx"]),
        "background_pattern": params["pattern"],
        "scale": o1["scale"],
    }
    if cfg.scale_choices is not None:
        out["size_class"] = o1["size_class"]
    if cfg.two_objects:
        mask2 = _part_map(code, first2) >= 0
        out["label2"] = params["label2"]
        out["object_mask2"] = mask2
        out["box2"] = c.tight_boxes(mask2)
    return out
