"""Regular grid segments (square patches, or space-time blocks for video)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from xaijax import errors
from xaijax._validation import check_positive_int


def grid(
    num_rows: int = 8, num_cols: int | None = None, *, num_frames: int = 1
) -> Callable[[jax.typing.ArrayLike], jax.Array]:
    """Segments every image into a ``num_rows x num_cols`` grid of near-equal rectangles.

    Pixel ``(y, x)`` of an ``H x W`` image gets label ``(y * num_rows // H) * num_cols +
    x * num_cols // W``. Videos are cut into ``num_frames`` equal spans of time as well, giving
    ``num_frames * num_rows * num_cols`` space-time blocks (label ``t * num_frames // T`` times
    ``num_rows * num_cols`` plus the spatial label).

    Args:
      num_rows: cells along the height.
      num_cols: cells along the width (defaults to ``num_rows``).
      num_frames: cells along time (videos only).

    Returns:
      ``segment(x)``: ``[B, H, W, C] -> [B, H, W]`` or ``[B, T, H, W, C] -> [B, T, H, W]``
      ``int32`` labels in ``[0, num_frames * num_rows * num_cols)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> grid(2)(jnp.zeros((1, 4, 4, 3)))[0]
      Array([[0, 0, 1, 1],
             [0, 0, 1, 1],
             [2, 2, 3, 3],
             [2, 2, 3, 3]], dtype=int32)
    """
    num_rows = check_positive_int(num_rows, "num_rows")
    num_cols = check_positive_int(num_rows if num_cols is None else num_cols, "num_cols")
    num_frames = check_positive_int(num_frames, "num_frames")

    def segment(x: jax.typing.ArrayLike) -> jax.Array:
        shape = tuple(jnp.shape(x))
        if len(shape) not in (4, 5):
            raise errors.InputShapeError(
                f"`x` must be images [B, H, W, C] or videos [B, T, H, W, C], got shape {shape}."
            )
        spatial = shape[1:-1]
        h, w = spatial[-2:]
        if num_rows > h or num_cols > w or (len(spatial) == 3 and num_frames > spatial[0]):
            raise errors.InvalidArgumentError(
                f"The grid ({num_frames} x {num_rows} x {num_cols}) has more cells than the "
                f"input has pixels along an axis (spatial shape {spatial}): use fewer cells."
            )
        rows = jnp.arange(h, dtype=jnp.int32) * num_rows // h
        cols = jnp.arange(w, dtype=jnp.int32) * num_cols // w
        labels = rows[:, None] * num_cols + cols[None, :]
        if len(spatial) == 3:
            t = spatial[0]
            frames = jnp.arange(t, dtype=jnp.int32) * num_frames // t
            labels = frames[:, None, None] * (num_rows * num_cols) + labels[None]
        return jnp.broadcast_to(labels, (shape[0], *spatial))

    return segment
