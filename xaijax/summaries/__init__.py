"""Visual summaries (Godi et al., BMVC 2018, papers.md section 4, Stage C): the building blocks.

Descriptors and similarities:
  :func:`hog` (``skimage.feature.hog`` in JAX), :func:`crop_boxes`, :func:`box_descriptors`
  (HOG of resampled proposal boxes, Proposal Flow's descriptor), :func:`cosine_similarity`
  (clamped at 0; the offline substitute for whitened HOG), :func:`ssim` and
  :func:`pairwise_ssim` (``skimage.metrics.structural_similarity`` in JAX; the summaries'
  quality filter).

Proposals and semantic flow:
  :func:`proposals` (a documented substitute for Selective Search: boxes of greedy merges of
  SLIC superpixels at several scales, then multi-scale sliding boxes; 500 per image) and
  :func:`lom_confidence` / :func:`lom_confidence_batched` (Proposal Flow's local offset
  matching, Ham et al. CVPR 2016, with the MATLAB code's in-place row order).

Clustering:
  :func:`affinity_propagation` (Frey & Dueck 2007, sklearn's updates and convergence rule, one
  ``lax.while_loop``) and :func:`summary_preference` (the code's ``S - max(S)``,
  ``p = 1.3 median(S)``).

Assembly:
  :func:`summarize` (Stage C steps 1-7 for one class: proposals, descriptors, LOM over every
  pair of images, salient proposals, redundancy pruning, affinity propagation, members and the
  SSIM quality filter) -> :class:`SummaryResult` of :class:`Summary` clusters, and
  :func:`render_summary` (step 8: the members greyed outside the hull of their salient mask).

Conventions: images ``[N, H, W]`` (grey) or ``[N, H, W, C]``; boxes ``(x1, y1, x2, y2)`` in
pixels, as the paper's MATLAB code orders them. :func:`proposals` and :func:`lom_confidence`
use inclusive ends (Selective Search and Proposal Flow's convention, ``w = x2 - x1 + 1`` in the
IoU); :func:`crop_boxes` and :func:`box_descriptors` exclusive ends (``image[y1:y2, x1:x2]``):
pass proposals to them as ``boxes + [0, 0, 1, 1]``. (``xaijax.metrics`` boxes are
``(y0, x0, y1, x1)``, exclusive.)
"""

from xaijax.summaries._affinity import (
    AffinityPropagationResult,
    affinity_propagation,
    summary_preference,
)
from xaijax.summaries._flow import lom_confidence, lom_confidence_batched
from xaijax.summaries._hog import box_descriptors, cosine_similarity, crop_boxes, hog, hog_size
from xaijax.summaries._proposals import Proposals, proposals
from xaijax.summaries._render import render_summary
from xaijax.summaries._ssim import pairwise_ssim, ssim
from xaijax.summaries._summarize import Summary, SummaryResult, summarize

__all__ = [
    "AffinityPropagationResult",
    "Proposals",
    "Summary",
    "SummaryResult",
    "affinity_propagation",
    "box_descriptors",
    "cosine_similarity",
    "crop_boxes",
    "hog",
    "hog_size",
    "lom_confidence",
    "lom_confidence_batched",
    "pairwise_ssim",
    "proposals",
    "render_summary",
    "ssim",
    "summarize",
    "summary_preference",
]
