"""Rendering a visual summary (Godi et al., BMVC 2018, papers.md 4(b) Stage C step 8).

For every member (image ``n``, box ``b``): the heat mask binarised at ``> 1/255`` (the code's
rendering threshold, not the 128 of the clustering); the convex hull of its pixels inside the
box; the mask's connected components (8-connectivity, ``skimage.measure.label``'s default, by
the package's one implementation) that touch the box. The image is shown in colour inside the
union of the hull and those components and flat grey (64 / 255) elsewhere; the hull is outlined
in red and the components in cyan. The tiles are upscaled (nearest neighbour) before the
outlines are drawn, so that a one-pixel outline stays thin.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _validation as v
from xaijax import errors
from xaijax._components import label_foreground
from xaijax.summaries._summarize import Summary, _check_inputs

_label = jax.jit(jax.vmap(lambda m: label_foreground(m, "full")))


def _hull_fill(points: np.ndarray, height: int, width: int, scale: int) -> np.ndarray:
    """``[H * scale, W * scale]`` bool: upscaled pixel centres inside the convex hull of the
    unit squares of the pixels ``points`` (``[K, 2]`` rows, cols)."""
    from scipy.spatial import ConvexHull, QhullError  # scipy comes with jax

    corners = (points[:, None, :] + np.array([[0, 0], [0, 1], [1, 0], [1, 1]])[None]).reshape(-1, 2)
    ys = (np.arange(height * scale) + 0.5) / scale
    xs = (np.arange(width * scale) + 0.5) / scale
    grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1)  # [H', W', 2]
    try:
        eq = ConvexHull(corners.astype(np.float64)).equations  # [F, 3]: n . p + c <= 0 inside
    except QhullError:  # not reachable with unit squares; keep the box of the points
        lo, hi = corners.min(0), corners.max(0)
        return np.all((grid >= lo) & (grid <= hi), axis=-1)
    return np.all(grid @ eq[:, :2].T + eq[:, 2] <= 1e-9, axis=-1)


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` 4-neighbour steps of its outside (or the border)."""
    inner = mask
    for _ in range(width):
        pad = np.pad(inner, 1, constant_values=False)
        inner = inner & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return mask & ~inner


def render_summary(
    images: jax.typing.ArrayLike,
    heat: jax.typing.ArrayLike,
    summary: Summary,
    *,
    kept_only: bool = True,
    threshold: float = 1 / 255,
    grey: float = 64 / 255,
    scale: int = 4,
    pad: int = 4,
    line_width: int | None = None,
    hull_colour: tuple[float, float, float] = (1.0, 0.0, 0.0),
    mask_colour: tuple[float, float, float] = (0.0, 1.0, 1.0),
) -> np.ndarray:
    """One row of tiles showing a summary's members, as the paper's figures (step 8).

    Args:
      images: ``[N, H, W, 3]`` the images given to :func:`~xaijax.summaries.summarize`.
      heat: ``[N, H, W]`` their heat masks.
      summary: one :class:`~xaijax.summaries.Summary` of its result.
      kept_only: show only the members kept by the quality filter (True) or all.
      threshold: the mask is binarised at ``heat > threshold`` for this rendering (1 / 255).
      grey: value of the pixels outside the hull and the touching components (64 / 255).
      scale: integer upscaling of each tile (nearest neighbour) before outlines are drawn.
      pad: white pixels between tiles.
      line_width: outline width in output pixels; ``None`` = ``max(1, scale // 2)``.
      hull_colour: RGB outline of the convex hull (red).
      mask_colour: RGB outline of the mask components touching the box (cyan).

    Returns:
      ``[H * scale, M * W * scale + (M - 1) * pad, 3]`` float32 RGB in ``[0, 1]``, ``M`` the
      members shown (exemplar first); save it with ``xaijax.viz.save_png(path, image)``.

    Raises:
      InputShapeError, InputDTypeError, NonFiniteInputError: as :func:`summarize`.
      InvalidArgumentError: a bad option, a member image or box outside ``images``, or
        ``kept_only`` on a summary without kept members (a rejected cluster).

    Example:
      >>> import numpy as np, jax.numpy as jnp
      >>> from xaijax.summaries import Summary, render_summary
      >>> x = jnp.full((2, 16, 16, 3), 0.5)
      >>> heat = jnp.zeros((2, 16, 16)).at[:, 4:10, 4:10].set(1.0)
      >>> box = np.array([4, 4, 9, 9])
      >>> s = Summary(0, box, np.array([0, 1]), np.stack([box, box]), np.ones(2),
      ...             np.ones((2, 2)), np.array([True, True]), 1.0, True)
      >>> render_summary(x, heat, s, scale=2, pad=1).shape
      (32, 65, 3)
    """
    images, heat = _check_inputs(images, heat, min_images=1)
    threshold = float(v.check_number(threshold, "threshold"))
    grey = float(v.check_number(grey, "grey"))
    scale = v.check_positive_int(scale, "scale")
    if isinstance(pad, bool) or not isinstance(pad, int | np.integer) or pad < 0:
        raise errors.InvalidArgumentError(f"`pad` must be an int >= 0, got {pad!r}.")
    line_width = max(1, scale // 2) if line_width is None else line_width
    line_width = v.check_positive_int(line_width, "line_width")
    colours = []
    for name, c in (("hull_colour", hull_colour), ("mask_colour", mask_colour)):
        c = np.asarray(c, np.float32)
        if c.shape != (3,) or not np.all((c >= 0) & (c <= 1)):
            raise errors.InvalidArgumentError(f"`{name}` must be 3 values in [0, 1], got {c}.")
        colours.append(c)
    n, h, w = images.shape[:3]
    which = np.asarray(summary.member_kept, bool) if kept_only else None
    if which is not None and not which.any():
        raise errors.InvalidArgumentError(
            "The summary has no member kept by the quality filter (a rejected cluster); pass "
            "`kept_only=False` to render all its members."
        )
    idx = np.asarray(summary.member_images, np.int64)
    boxes = np.asarray(summary.member_boxes, np.int64).reshape(-1, 4)
    if which is not None:
        idx, boxes = idx[which], boxes[which]
    bad = (idx < 0) | (idx >= n) | (boxes[:, :2] < 0).any(1) | (boxes[:, 2] >= w)
    bad |= (boxes[:, 3] >= h) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        raise errors.InvalidArgumentError(
            f"Member {int(np.flatnonzero(bad)[0])} (image, box) is outside the {n} images of "
            f"{h} x {w} pixels: render a summary with the images it was computed from."
        )
    binary = np.asarray(heat)[idx] > threshold  # [M, H, W]
    labels = np.asarray(_label(jnp.asarray(binary)))
    rgb = np.asarray(images, np.float32)[idx]
    tiles = []
    for m, (x1, y1, x2, y2) in enumerate(boxes):
        inbox = np.zeros((h, w), bool)
        inbox[y1 : y2 + 1, x1 : x2 + 1] = True
        inside = binary[m] & inbox
        touching = np.unique(labels[m][inside])
        comps = np.isin(labels[m], touching) & binary[m]
        up = lambda a: np.repeat(np.repeat(a, scale, 0), scale, 1)  # noqa: E731
        if inside.any():
            hull = _hull_fill(np.argwhere(inside), h, w, scale)
        else:
            hull = np.zeros((h * scale, w * scale), bool)
        comps_up = up(comps)
        show = hull | comps_up
        tile = np.where(show[..., None], up(rgb[m]), np.float32(grey))
        tile[_outline(comps_up, line_width)] = colours[1]
        tile[_outline(hull, line_width)] = colours[0]
        tiles.append(tile)
    gap = np.ones((h * scale, pad, 3), np.float32)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    return np.concatenate(row, axis=1).astype(np.float32)


__all__ = ["render_summary"]
