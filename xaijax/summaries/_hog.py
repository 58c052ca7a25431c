"""HOG descriptors in JAX (Dalal & Triggs 2005), as ``skimage.feature.hog`` computes them.

Cells: ``pixels_per_cell`` blocks from the top-left corner (pixels beyond the last whole cell are
dropped); gradients by central differences ``[-1, 0, 1]`` with zero gradient on the image border;
unsigned orientations in ``[0, 180)`` degrees, hard-binned (no interpolation) into
``orientations`` bins; cell histograms are the *mean* gradient magnitude per bin; blocks of
``cells_per_block`` cells slide by one cell and are normalised with ``eps = 1e-5``. For colour
images each pixel uses the channel with the largest gradient magnitude (skimage's
``channel_axis=-1``). Features are ordered ``[block_row, block_col, cell_row, cell_col, bin]``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _validation as v
from xaijax import errors
from xaijax.typing import Array, ArrayLike

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
_EPS = 1e-5


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise errors.InvalidArgumentError(
            f"`{name}` must be a positive int or a pair (rows, cols) of them, got {value!r}."
        ) from None
    return v.check_positive_int(a, name), v.check_positive_int(b, name)


def _check_images(images, name: str) -> Array:
    images = v.as_array(images, name)
    if images.ndim not in (3, 4):
        raise errors.InputShapeError(
            f"`{name}` must be a batch of grey [N, H, W] or colour [N, H, W, C] images, got "
            f"shape {v._shape_str(images.shape)}. For one image add a batch axis: `{name}[None]`."
        )
    if not v.is_real(images.dtype):
        raise errors.InputDTypeError(
            f"`{name}` must hold real numbers, got dtype {images.dtype}; cast it to float32."
        )
    v.check_finite(images, name)
    images = jnp.asarray(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        images = images.astype(jnp.float32)
    return images


def _gradients(x: Array) -> tuple[Array, Array]:
    """Central differences of ``[..., H, W]`` with zeros on the first/last row and column."""
    g_row = jnp.zeros_like(x).at[..., 1:-1, :].set(x[..., 2:, :] - x[..., :-2, :])
    g_col = jnp.zeros_like(x).at[..., :, 1:-1].set(x[..., :, 2:] - x[..., :, :-2])
    return g_row, g_col


def _bin_edges(orientations: int) -> np.ndarray:
    # skimage's Cython compares with single-precision bounds float(180/n) * i.
    step = np.float32(180.0 / orientations)
    return (step * np.arange(orientations + 1, dtype=np.float32)).astype(np.float32)


def _hog_one(image: Array, orientations, cell, block, block_norm, transform_sqrt) -> Array:
    """HOG of one image ``[H, W, C]`` -> ``[D]``."""
    if transform_sqrt:
        image = jnp.sqrt(image)
    g_row, g_col = _gradients(jnp.moveaxis(image, -1, 0))  # [C, H, W]
    if image.shape[-1] > 1:
        pick = jnp.argmax(jnp.hypot(g_row, g_col), axis=0)[None]
        g_row = jnp.take_along_axis(g_row, pick, axis=0)
        g_col = jnp.take_along_axis(g_col, pick, axis=0)
    g_row, g_col = g_row[0], g_col[0]
    magnitude = jnp.hypot(g_row, g_col)
    angle = jnp.mod(jnp.rad2deg(jnp.arctan2(g_row, g_col)), 180.0)
    edges = jnp.asarray(_bin_edges(orientations))
    in_bin = (angle[..., None] >= edges[None, None, :-1]) & (
        angle[..., None] < edges[None, None, 1:]
    )
    weighted = jnp.where(in_bin, magnitude[..., None], 0.0)
    (c_row, c_col), (b_row, b_col) = cell, block
    n_row, n_col = image.shape[0] // c_row, image.shape[1] // c_col
    weighted = weighted[: n_row * c_row, : n_col * c_col]
    hist = weighted.reshape(n_row, c_row, n_col, c_col, orientations).mean(axis=(1, 3))
    nb_row, nb_col = n_row - b_row + 1, n_col - b_col + 1
    blocks = jnp.stack(
        [
            jnp.stack([hist[i : i + nb_row, j : j + nb_col] for j in range(b_col)], axis=2)
            for i in range(b_row)
        ],
        axis=2,
    )  # [nb_row, nb_col, b_row, b_col, O]
    axes = (2, 3, 4)
    if block_norm == "L1":
        out = blocks / (jnp.sum(jnp.abs(blocks), axes, keepdims=True) + _EPS)
    elif block_norm == "L1-sqrt":
        out = jnp.sqrt(blocks / (jnp.sum(jnp.abs(blocks), axes, keepdims=True) + _EPS))
    else:
        out = blocks / jnp.sqrt(jnp.sum(blocks**2, axes, keepdims=True) + _EPS**2)
        if block_norm == "L2-Hys":
            out = jnp.minimum(out, 0.2)
            out = out / jnp.sqrt(jnp.sum(out**2, axes, keepdims=True) + _EPS**2)
    return out.reshape(-1)


def hog_size(
    shape: tuple[int, int],
    *,
    orientations: int = 9,
    pixels_per_cell: int | tuple[int, int] = (8, 8),
    cells_per_block: int | tuple[int, int] = (3, 3),
) -> int:
    """The length ``D`` of :func:`hog`'s descriptor for images of spatial ``shape`` ``(H, W)``.

    Example:
        >>> hog_size((64, 64), cells_per_block=(2, 2))
        1764
    """
    cell = _pair(pixels_per_cell, "pixels_per_cell")
    block = _pair(cells_per_block, "cells_per_block")
    nb_row = shape[0] // cell[0] - block[0] + 1
    nb_col = shape[1] // cell[1] - block[1] + 1
    if nb_row <= 0 or nb_col <= 0:
        raise errors.InputShapeError(
            f"Images of {shape[0]} x {shape[1]} pixels are too small for HOG with "
            f"pixels_per_cell={cell} and cells_per_block={block}: they need at least "
            f"{block[0] * cell[0]} x {block[1] * cell[1]} pixels. Use larger images or smaller "
            "cells/blocks."
        )
    return nb_row * nb_col * block[0] * block[1] * orientations


def hog(
    images: ArrayLike,
    *,
    orientations: int = 9,
    pixels_per_cell: int | tuple[int, int] = (8, 8),
    cells_per_block: int | tuple[int, int] = (3, 3),
    block_norm: str = "L2-Hys",
    transform_sqrt: bool = False,
) -> Array:
    """Histograms of oriented gradients of a batch of images, ``skimage.feature.hog``'s values.

    Same cells, orientation bins, block layout and normalisation as ``skimage.feature.hog`` with
    ``feature_vector=True`` (and ``channel_axis=-1`` for colour images: each pixel takes the
    gradient of its channel of largest gradient magnitude). Jittable and vmappable; the batch is
    vectorised, never looped.

    Args:
      images: grey ``[N, H, W]`` or colour ``[N, H, W, C]`` images (any real dtype; integers are
        cast to float32). A rank-3 array is always a batch of grey images.
      orientations: number of unsigned orientation bins over ``[0, 180)`` degrees.
      pixels_per_cell: cell size ``(rows, cols)`` in pixels (or one int for both).
      cells_per_block: block size ``(rows, cols)`` in cells; blocks slide by one cell.
      block_norm: ``"L1"``, ``"L1-sqrt"``, ``"L2"`` or ``"L2-Hys"`` (L2, clip at 0.2, L2 again).
      transform_sqrt: apply ``sqrt`` to the images first (power-law compression; needs
        non-negative images).

    Returns:
      ``[N, D]`` descriptors, ``D = hog_size((H, W), ...)``, ordered
      ``[block_row, block_col, cell_row, cell_col, orientation]`` like skimage.

    Raises:
      InputShapeError: ``images`` is not rank 3 or 4, or smaller than one block.
      InvalidArgumentError: a non-positive size or an unknown ``block_norm``.

    Example:
        >>> import jax.numpy as jnp
        >>> from xaijax.summaries import hog
        >>> hog(jnp.zeros((2, 64, 64, 3)), cells_per_block=(2, 2)).shape
        (2, 1764)

    References:
      Dalal & Triggs, "Histograms of oriented gradients for human detection", CVPR 2005;
      scikit-image ``skimage.feature.hog``.
    """
    images = _check_images(images, "images")
    orientations = v.check_positive_int(orientations, "orientations")
    cell = _pair(pixels_per_cell, "pixels_per_cell")
    block = _pair(cells_per_block, "cells_per_block")
    v.check_choice(block_norm, "block_norm", BLOCK_NORMS)
    hog_size(images.shape[1:3], orientations=orientations, pixels_per_cell=cell,
             cells_per_block=block)  # fmt: skip
    return _hog_batch(images, orientations, cell, block, block_norm, bool(transform_sqrt))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _hog_batch(images, orientations, cell, block, block_norm, transform_sqrt) -> Array:
    if images.ndim == 3:
        images = images[..., None]
    return jax.vmap(lambda im: _hog_one(im, orientations, cell, block, block_norm, transform_sqrt))(
        images
    )


def _check_boxes(boxes, images: Array) -> Array:
    boxes = v.as_array(boxes, "boxes")
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or boxes.shape[0] != images.shape[0]:
        raise errors.InputShapeError(
            f"`boxes` must be [N, P, 4] rows (x1, y1, x2, y2) with N = {images.shape[0]} (the "
            f"number of images), got shape {v._shape_str(boxes.shape)}."
        )
    if not v.is_real(boxes.dtype):
        raise errors.InputDTypeError(f"`boxes` must hold numbers, got dtype {boxes.dtype}.")
    return jnp.asarray(boxes, images.dtype)


def crop_boxes(
    images: ArrayLike,
    boxes: ArrayLike,
    *,
    size: int | tuple[int, int] = (64, 64),
    antialias: bool = True,
) -> Array:
    """Crops every box of every image and resamples it bilinearly to ``size``.

    Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates with an exclusive end: the integer
    box ``(x1, y1, x2, y2)`` covers ``image[y1:y2, x1:x2]`` (the continuous region
    ``[x1, x2) x [y1, y2)`` where pixel ``k`` spans ``[k, k + 1)``). Fractional boxes are allowed;
    sizes under one pixel are taken as one pixel. Samples use half-pixel centres and read the
    image beyond the box (clamped at the image border), as ``jax.image.scale_and_translate``
    does; a box of exactly ``size`` pixels at integer coordinates is copied unchanged.

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, C]``.
      boxes: ``[N, P, 4]`` boxes per image (P the same for every image; pad with any box).
      size: output ``(rows, cols)`` per crop.
      antialias: widen the bilinear kernel when shrinking (like MATLAB's ``imresize`` and
        ``jax.image.resize``); ``False`` gives plain bilinear sampling.

    Returns:
      ``[N, P, rows, cols(, C)]`` crops.

    Example:
        >>> import jax.numpy as jnp
        >>> crops = crop_boxes(jnp.ones((2, 32, 32)), jnp.array([[[0, 0, 16, 8]]] * 2), size=8)
        >>> crops.shape
        (2, 1, 8, 8)
    """
    images = _check_images(images, "images")
    rows, cols = _pair(size, "size")
    boxes = _check_boxes(boxes, images)
    return _crop_batch(images, boxes, (rows, cols), bool(antialias))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _crop_batch(images, boxes, size, antialias) -> Array:
    rows, cols = size
    grey = images.ndim == 3
    if grey:
        images = images[..., None]

    def one(image, box):
        x1, y1, x2, y2 = box[0], box[1], box[2], box[3]
        sy = rows / jnp.maximum(y2 - y1, 1.0)
        sx = cols / jnp.maximum(x2 - x1, 1.0)
        return jax.image.scale_and_translate(
            image,
            (rows, cols, image.shape[-1]),
            (0, 1),
            jnp.stack([sy, sx]),
            jnp.stack([-y1 * sy, -x1 * sx]),
            method="linear",
            antialias=antialias,
            precision=jax.lax.Precision.HIGHEST,
        )

    crops = jax.vmap(jax.vmap(one, in_axes=(None, 0)))(images, boxes)
    return crops[..., 0] if grey else crops


def box_descriptors(
    images: ArrayLike,
    boxes: ArrayLike,
    *,
    size: int | tuple[int, int] = (64, 64),
    antialias: bool = True,
    orientations: int = 9,
    pixels_per_cell: int | tuple[int, int] = (8, 8),
    cells_per_block: int | tuple[int, int] = (2, 2),
    block_norm: str = "L2-Hys",
    chunk_size: int | None = None,
) -> Array:
    """HOG descriptors of boxes: each box cropped, resampled to ``size``, then :func:`hog`.

    The defaults follow the Proposal Flow code of the visual-summaries paper (papers.md 1.4:
    every box resampled to 8 x 8 cells of 8 pixels) with Dalal & Triggs' 2 x 2-cell blocks,
    giving 1764-d descriptors (the code's Felzenszwalb HOG has 31 x 64 = 1984). Boxes follow
    :func:`crop_boxes` (``(x1, y1, x2, y2)``, exclusive end).

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, C]``.
      boxes: ``[N, P, 4]``.
      size, antialias: see :func:`crop_boxes`.
      orientations, pixels_per_cell, cells_per_block, block_norm: see :func:`hog`.
      chunk_size: images processed at once (``jax.lax.map``), to bound memory for many
        images; ``None`` = all at once.

    Returns:
      ``[N, P, D]`` descriptors.

    Example:
        >>> import jax.numpy as jnp
        >>> boxes = jnp.array([[[0, 0, 32, 32], [8, 8, 40, 24]]])
        >>> box_descriptors(jnp.ones((1, 48, 48)), boxes).shape
        (1, 2, 1764)

    References:
      Ham et al., "Proposal Flow", CVPR 2016; Dalal & Triggs, CVPR 2005.
    """
    images = _check_images(images, "images")
    rows, cols = _pair(size, "size")
    hog_size((rows, cols), orientations=orientations, pixels_per_cell=pixels_per_cell,
             cells_per_block=cells_per_block)  # fmt: skip
    if chunk_size is not None:
        v.check_positive_int(chunk_size, "chunk_size")
    boxes = _check_boxes(boxes, images)

    opts = (
        v.check_positive_int(orientations, "orientations"),
        _pair(pixels_per_cell, "pixels_per_cell"),
        _pair(cells_per_block, "cells_per_block"),
        v.check_choice(block_norm, "block_norm", BLOCK_NORMS),
    )
    return _box_descriptors(images, boxes, (rows, cols), bool(antialias), opts, chunk_size)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _box_descriptors(images, boxes, size, antialias, opts, chunk_size) -> Array:
    def per_image(args):
        image, image_boxes = args
        crops = _crop_batch(image[None], image_boxes[None], size, antialias)[0]
        return _hog_batch(crops, *opts, False)

    return jax.lax.map(per_image, (images, boxes), batch_size=chunk_size)


def cosine_similarity(a: ArrayLike, b: ArrayLike, *, clamp: bool = True) -> Array:
    """Cosine similarities between two sets of descriptors, clamped at 0.

    The offline substitute for Proposal Flow's whitened-HOG appearance similarity
    ``max(0, <A_i, B_k>)`` (papers.md 1.4 step 2: the background statistics are an external
    asset). Zero vectors have similarity 0 to everything (never NaN).

    Args:
      a: ``[..., P, D]``.
      b: ``[..., Q, D]`` (same ``D``; leading axes of the same rank that broadcast, e.g.
        ``a[:, None]`` and ``b[None]`` for every pair of images).
      clamp: clamp negative similarities to 0 (the paper's ``max(0, .)``).

    Returns:
      ``[..., P, Q]`` similarities in ``[0, 1]`` (``[-1, 1]`` without ``clamp``).

    Example:
        >>> import jax.numpy as jnp
        >>> cosine_similarity(jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0], [-1.0, 0.0]]))
        Array([[0.70710677, 0.        ]], dtype=float32)
    """
    a = v.check_floating(v.as_array(a, "a"), "a", min_rank=2, layout="[..., P, D]")
    b = v.check_floating(v.as_array(b, "b"), "b", min_rank=2, layout="[..., Q, D]")
    try:
        ok = a.ndim == b.ndim and a.shape[-1] == b.shape[-1]
        ok = ok and np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) is not None
    except ValueError:
        ok = False
    if not ok:
        raise errors.InputShapeError(
            f"`a` [..., P, D] and `b` [..., Q, D] must share D and have leading axes of the "
            f"same rank that broadcast, got {v._shape_str(a.shape)} and "
            f"{v._shape_str(b.shape)}. For all image pairs use `a[:, None]` and `b[None]`."
        )
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    na = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    nb = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    sim = jnp.einsum("...pd,...qd->...pq", na, nb, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(sim, 0.0) if clamp else sim
