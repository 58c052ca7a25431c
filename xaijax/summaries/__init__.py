"""Visual summaries (Godi et al., BMVC 2018, papers.md section 4, Stage C): the building blocks.

Descriptors and similarities:
  :func:`hog` (``skimage.feature.hog`` in JAX), :func:`crop_boxes`, :func:`box_descriptors`
  (HOG of resampled proposal boxes, Proposal Flow's descriptor), :func:`cosine_similarity`
  (clamped at 0; the offline substitute for whitened HOG), :func:`ssim` and
  :func:`pairwise_ssim` (``skimage.metrics.structural_similarity`` in JAX; the summaries'
  quality filter).

Clustering:
  :func:`affinity_propagation` (Frey & Dueck 2007, sklearn's updates and convergence rule, one
  ``lax.while_loop``) and :func:`summary_preference` (the code's ``S - max(S)``,
  ``p = 1.3 median(S)``).

Conventions: images ``[N, H, W]`` (grey) or ``[N, H, W, C]``; boxes ``(x1, y1, x2, y2)`` in
pixels with an exclusive end (``image[y1:y2, x1:x2]``), as the paper's MATLAB code orders them.
"""

from xaijax.summaries._affinity import (
    AffinityPropagationResult,
    affinity_propagation,
    summary_preference,
)
from xaijax.summaries._hog import box_descriptors, cosine_similarity, crop_boxes, hog, hog_size
from xaijax.summaries._ssim import pairwise_ssim, ssim

__all__ = [
    "AffinityPropagationResult",
    "affinity_propagation",
    "box_descriptors",
    "cosine_similarity",
    "crop_boxes",
    "hog",
    "hog_size",
    "pairwise_ssim",
    "ssim",
    "summary_preference",
]
