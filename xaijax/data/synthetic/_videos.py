"""Procedural motion clips: the class is how one object moves (synthetic benchmark)."""

from __future__ import annotations

import numpy as np

from xaijax.data.synthetic import _common as c

#: Motion classes in label order. Directions are in image coordinates (y grows downwards), so
#: ``rotate_cw`` turns the object clockwise as seen on screen. Translations cross 80-100% of the
#: room the object has (about half the frame side), rotations make three quarters of a turn,
#: ``grow``/``shrink`` scale 0.6 <-> 1.4, and the oscillations make one full period over the same
#: room (with a random initial direction).
MOTION_NAMES = (
    "right",
    "left",
    "down",
    "up",
    "rotate_cw",
    "rotate_ccw",
    "grow",
    "shrink",
    "oscillate_h",
    "oscillate_v",
)

_HEAD_DIST, _HEAD_RADIUS = 0.85, 0.4  # head disc, in units of the body half-length
_EXTENT = _HEAD_DIST + _HEAD_RADIUS


def sample_params(rng: np.random.Generator, cfg, split: str, n: int):
    """All randomness of ``n`` clips (see :func:`make_videos`)."""
    del split
    T, S, D = cfg.num_frames, cfg.image_size, cfg.num_distractors
    r_label, r_bg, r_dist, r_obj = rng.spawn(4)
    label = c.balanced_labels(r_label, cfg.num_classes, n)
    level = r_bg.uniform(0.35, 0.6, size=n)
    tint = r_bg.uniform(-0.05, 0.05, size=(n, 3))
    grid = r_bg.uniform(-1.0, 1.0, size=(n, 3, 4, 4)) * 0.08
    body_color = r_obj.integers(0, len(c.PALETTE), size=n)
    head_color = (body_color + 1 + r_obj.integers(0, len(c.PALETTE) - 1, size=n)) % len(c.PALETTE)
    half = r_obj.uniform(0.15, 0.19, size=n) * S
    theta0 = r_obj.uniform(0.0, 2.0 * np.pi, size=n)
    travel = r_obj.uniform(0.8, 1.0, size=n)
    sign = np.where(r_obj.random(n) < 0.5, -1.0, 1.0)
    pos_u = r_obj.random((n, 2))

    f = np.linspace(0.0, 1.0, T)[None, :]  # [1, T]
    zero = np.zeros((n, T))
    motion = np.asarray(MOTION_NAMES)[label][:, None]
    grow = 0.6 + 0.8 * f
    scale = np.select(
        [motion == "grow", motion == "shrink"], [grow, grow[:, ::-1]], np.ones((n, T))
    )
    # Room left for the centre once the whole object (and 1 px) stays inside every frame.
    reach = _EXTENT * half * scale.max(axis=1) + 1.0
    room = S - 2.0 * reach
    ramp = (travel * room)[:, None] * f
    wave = (0.5 * travel * room * sign)[:, None] * np.sin(2.0 * np.pi * f)
    off_x = np.select(
        [motion == "right", motion == "left", motion == "oscillate_h"], [ramp, -ramp, wave], zero
    )
    off_y = np.select(
        [motion == "down", motion == "up", motion == "oscillate_v"], [ramp, -ramp, wave], zero
    )
    turn = 1.5 * np.pi * f
    theta = theta0[:, None] + np.select(
        [motion == "rotate_cw", motion == "rotate_ccw"], [turn, -turn], zero
    )
    cy0 = reach - off_y.min(axis=1)
    cx0 = reach - off_x.min(axis=1)
    cy1 = S - reach - off_y.max(axis=1)
    cx1 = S - reach - off_x.max(axis=1)
    cy = (cy0 + pos_u[:, 0] * np.maximum(cy1 - cy0, 0.0))[:, None] + off_y
    cx = (cx0 + pos_u[:, 1] * np.maximum(cx1 - cx0, 0.0))[:, None] + off_x
    ct, st = np.cos(theta), np.sin(theta)
    length = half[:, None] * scale
    f32 = np.float32
    return {
        "label": label,
        "bg_color": (level[:, None] + tint).astype(f32),
        "bg_grid": grid.astype(f32),
        **c.sample_distractors(r_dist, n, D, S, (0.06, 0.1)),
        "body_color": c.PALETTE[body_color],
        "head_color": c.PALETTE[head_color],
        "cy": cy.astype(f32),
        "cx": cx.astype(f32),
        "cos": ct.astype(f32),
        "sin": st.astype(f32),
        "length": length.astype(f32),
        "head_y": (cy + _HEAD_DIST * length * st).astype(f32),
        "head_x": (cx + _HEAD_DIST * length * ct).astype(f32),
    }


def render(params: dict[str, np.ndarray], cfg) -> dict[str, np.ndarray]:
    """Renders sampled parameters to clips and per-frame ground truth (see :func:`make_videos`)."""
    T, S, D = cfg.num_frames, cfg.image_size, cfg.num_distractors
    n = params["label"].shape[0]
    ys = xs = c.pixel_grid(S)

    bg = c.smooth_noise(params["bg_grid"], S)
    bg += params["bg_color"][:, :, None, None]
    np.clip(bg, 0.0, 1.0, out=bg)
    bg = bg.transpose(0, 2, 3, 1)  # [n, S, S, 3]

    lut = np.zeros((n, D + 3, 3), np.float32)
    still = np.zeros((n, S, S), np.uint8)
    for j in range(D):
        p, q = c.local_coords(
            ys,
            xs,
            params["d_cy"][:, j],
            params["d_cx"][:, j],
            params["d_cos"][:, j],
            params["d_sin"][:, j],
            params["d_half"][:, j],
        )
        c.paint(still, c.shape_inside(params["d_shape"][:, j], p, q), np.uint8(1 + j))
        lut[:, 1 + j] = params["d_color"][:, j]
    lut[:, D + 1] = params["body_color"]
    lut[:, D + 2] = params["head_color"]

    code = np.repeat(still[:, None], T, axis=1)  # [n, T, S, S]
    length = params["length"]
    p, q = c.local_coords(ys, xs, params["cy"], params["cx"], params["cos"], params["sin"], length)
    body = c.shape_inside(np.full(n, 1), p, q)  # ellipse along the heading
    c.paint(code, body, np.uint8(D + 1))
    one = np.ones_like(length)
    hp, hq = c.local_coords(
        ys, xs, params["head_y"], params["head_x"], one, 0 * one, _HEAD_RADIUS * length
    )
    c.paint(code, c.shape_inside(np.full(n, 0), hp, hq), np.uint8(D + 2))

    flat = code.astype(np.intp) + (np.arange(n, dtype=np.intp) * lut.shape[1])[:, None, None, None]
    colors = np.take(lut.reshape(-1, 3), flat, axis=0)
    video = np.where((code == 0)[..., None], bg[:, None], colors)
    mask = code > D
    return {
        "video": video,
        "label": params["label"].astype(np.int32),
        "object_mask": mask,
        "box": c.tight_boxes(mask),
        "keypoints": np.stack([params["head_y"], params["head_x"]], axis=-1),
    }
