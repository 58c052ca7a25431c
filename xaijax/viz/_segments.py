"""Superpixel boundaries and top-k segments (NumPy), in the manner of lime and scikit-image.

:func:`segment_boundaries` marks the pixels whose label differs from a 4-neighbour (both sides of
each border, scikit-image's ``find_boundaries(mode="thick")``); :func:`mark_boundaries` paints
them on an image; :func:`image_and_mask` keeps the ``top_k`` segments of a per-segment score
vector (LIME coefficients, GWS scores), like lime's ``get_image_and_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xaijax import errors
from xaijax.viz._checks import as_maps, numeric, rgb, rgb_color, shape_str


def check_segments(segments, name: str = "segments", shape: tuple | None = None) -> np.ndarray:
    """An integer label map (``[..., H, W]``), labels >= 0, matching ``shape`` if given."""
    arr = numeric(segments, name)
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)):
            if np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
        if not np.issubdtype(arr.dtype, np.integer):
            raise errors.SegmentMapError(
                f"`{name}` must hold integer segment labels, got dtype {arr.dtype} with "
                "non-integer values. Pass the label map of a segmenter "
                "(e.g. `xaijax.segmentation.slic`), `segments.astype(np.int32)`."
            )
    if arr.ndim < 2 or arr.size == 0:
        raise errors.SegmentMapError(
            f"`{name}` must be a non-empty label map [H, W] (one integer label per pixel), got "
            f"shape {shape_str(arr.shape)}."
        )
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise errors.SegmentMapError(
            f"`{name}` of shape {shape_str(arr.shape)} is not a label map of this image: it "
            f"needs one label per pixel, shape {shape_str(shape)}. Segment this image (not "
            "another one or a resized copy), or resize the labels with nearest-neighbour "
            "interpolation."
        )
    if arr.min() < 0:
        raise errors.SegmentMapError(
            f"`{name}` holds negative labels (min {int(arr.min())}); labels must be in "
            "[0, num_segments)."
        )
    return arr.astype(np.int64)


def segment_boundaries(segments: np.ndarray) -> np.ndarray:
    """Boolean map of the pixels on a border between two segments (NumPy).

    A pixel is a boundary pixel when one of its 4-neighbours (up, down, left, right) has another
    label, so both sides of every border are marked (scikit-image's
    ``find_boundaries(segments, mode="thick")``). Leading axes (a batch ``[B, H, W]`` or a clip
    ``[T, H, W]``) are separate maps: borders are only looked for along the last two axes.

    Args:
      segments: integer labels ``[..., H, W]``.

    Returns:
      ``bool`` array shaped like ``segments``.

    Raises:
      SegmentMapError: a non-integer, negative or empty label map.

    Examples:
      >>> import numpy as np
      >>> two = np.array([[0, 0, 1, 1]] * 2)
      >>> segment_boundaries(two).astype(int)
      array([[0, 1, 1, 0],
             [0, 1, 1, 0]])
    """
    s = check_segments(segments)
    out = np.zeros(s.shape, bool)
    dy = s[..., 1:, :] != s[..., :-1, :]
    dx = s[..., :, 1:] != s[..., :, :-1]
    out[..., 1:, :] |= dy
    out[..., :-1, :] |= dy
    out[..., :, 1:] |= dx
    out[..., :, :-1] |= dx
    return out


def mark_boundaries(
    image: np.ndarray, segments: np.ndarray, *, color: Sequence[float] | str = (1.0, 1.0, 0.0)
) -> np.ndarray:
    """Paints the segment borders of ``segments`` on ``image`` (scikit-image's
    ``mark_boundaries``, thick borders).

    Args:
      image: ``[H, W]`` or ``[H, W, C]`` (``C`` = 1, 3 or 4), floats in [0, 1] or uint8.
      segments: integer labels ``[H, W]`` of this image.
      color: colour of the border pixels: an RGB triple in [0, 1], or a matplotlib colour name
        or hex string (``"yellow"``, ``"#ffff00"``; read with matplotlib, imported only then).

    Returns:
      ``float32`` RGB ``[H, W, 3]``.

    Raises:
      SegmentMapError: labels that are not integers, negative, or not shaped ``[H, W]``.
      InputShapeError, InputDTypeError, NonFiniteInputError: a bad image.
      InvalidArgumentError: a float image outside [0, 1], or ``color`` not a colour.

    Examples:
      >>> out = mark_boundaries(np.zeros((2, 4, 3)), np.array([[0, 0, 1, 1]] * 2))
      >>> out[0, :, 0].tolist()
      [0.0, 1.0, 1.0, 0.0]
    """
    img = rgb(image, "image")
    s = check_segments(segments, shape=img.shape[:2])
    out = img.copy()
    out[segment_boundaries(s)] = rgb_color(color, "color")
    return out


def check_scores(scores, segments: np.ndarray, name: str = "scores") -> np.ndarray:
    """Per-segment scores ``[S]`` covering every label of ``segments``."""
    sc = as_maps(scores, name)
    if sc.ndim != 1:
        raise errors.InputShapeError(
            f"`{name}` must be one score per segment, shape [S], got {shape_str(sc.shape)}. "
            "For a batch, draw one example at a time (`scores[i]`, `segments[i]`)."
        )
    top = int(segments.max())
    if top >= sc.shape[0]:
        raise errors.SegmentMapError(
            f"`segments` uses label {top} but `{name}` has only {sc.shape[0]} entries (labels "
            f"0..{sc.shape[0] - 1}): the label map does not belong to these scores. Pass the "
            "segments the scores were computed on."
        )
    return sc


def image_and_mask(
    image: np.ndarray,
    segments: np.ndarray,
    scores: np.ndarray,
    *,
    top_k: int = 5,
    positive_only: bool = True,
    hide_rest: bool = False,
    min_weight: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``top_k`` segments of per-segment scores, as lime's ``get_image_and_mask``.

    Segments are ranked by score (``positive_only``: only scores above ``min_weight`` count) or
    by ``|score|`` (else; then only ``|score| > min_weight``), and the best ``top_k`` are kept.

    Args:
      image: ``[H, W]`` or ``[H, W, C]``, floats in [0, 1] or uint8.
      segments: integer labels ``[H, W]`` of this image, in ``[0, S)``.
      scores: ``[S]``, e.g. LIME's ``coefficients[i]`` or GWS scores of one example.
      top_k: how many segments to keep (at most).
      positive_only: keep only segments with positive evidence.
      hide_rest: black out the pixels outside the kept segments.
      min_weight: the score (``|score|``) a kept segment must exceed.

    Returns:
      ``(image, mask)``: the RGB image ``[H, W, 3]`` (``float32``; rest hidden if asked) and an
      ``int8`` mask ``[H, W]``: 1 on kept segments with a positive score, -1 on kept segments
      with a negative score (only when ``positive_only=False``), 0 elsewhere.

    Raises:
      SegmentMapError: labels that do not fit the image or the scores.
      InvalidArgumentError: ``top_k < 1``.

    Examples:
      >>> seg = np.array([[0, 1], [2, 2]])
      >>> _, mask = image_and_mask(np.ones((2, 2, 3)), seg, np.array([0.5, -2.0, 1.0]), top_k=1)
      >>> mask.tolist()
      [[0, 0], [1, 1]]
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise errors.InvalidArgumentError(f"`top_k` must be an integer >= 1, got {top_k!r}.")
    img = rgb(image, "image")
    s = check_segments(segments, shape=img.shape[:2])
    sc = check_scores(scores, s)
    present = np.zeros(sc.shape[0], bool)
    present[np.unique(s)] = True
    key = sc if positive_only else np.abs(sc)
    eligible = present & (key > min_weight)
    order = [i for i in np.argsort(-key, kind="stable") if eligible[i]][:top_k]
    sign = np.zeros(sc.shape[0], np.int8)
    sign[order] = np.where(sc[order] > 0, 1, -1)
    mask = sign[s]
    out = img * (mask != 0)[..., None] if hide_rest else img.copy()
    return out.astype(np.float32), mask
