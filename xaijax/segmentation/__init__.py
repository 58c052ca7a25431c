"""Segmentation on the accelerator: SLIC superpixels/supervoxels, grids, external segment maps.

Every segmenter is a factory returning ``segment(x)`` that maps a batch of images
``[B, H, W, C]`` to ``int32`` labels ``[B, H, W]`` (or videos ``[B, T, H, W, C]`` to
``[B, T, H, W]``), with labels bounded by a static number of segments so that per-segment
arrays downstream (superpixel scores, LIME coefficients) have the fixed shape ``[B, S]``.

Segment maps made elsewhere (for example scikit-image's ``quickshift``, LIME's default) are
accepted as integer arrays and checked by :func:`validate_segments`.
"""

from xaijax.segmentation._color import rgb_to_lab
from xaijax.segmentation._grid import grid
from xaijax.segmentation._maps import (
    num_segments,
    relabel_contiguous,
    segment_sizes,
    validate_segments,
)
from xaijax.segmentation._slic import slic

__all__ = [
    "grid",
    "num_segments",
    "relabel_contiguous",
    "rgb_to_lab",
    "segment_sizes",
    "slic",
    "validate_segments",
]
