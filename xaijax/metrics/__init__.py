"""Evaluation metrics for explanations: pure array code, batched and jittable.

Localisation (weakly supervised, against object masks or boxes):
  :func:`pointing_game`, :func:`energy_in_mask`, :func:`box_from_map` (CAM / Grad-CAM WSOL
  protocol), :func:`box_iou`, with the helpers :func:`boxes_to_mask`, :func:`boxes_from_mask`
  and :func:`reduce_channels`.

Faithfulness (need a model ``apply_fn(params, x) -> logits``):
  :func:`deletion_auc`, :func:`insertion_auc` (RISE causal metrics).

Similarity between maps (each ``[B, ...] x [B, ...] -> [B]``):
  :func:`spearman`, :func:`kendall` (tau-b), :func:`top_k_overlap`.

Sanity checks:
  :func:`cascading_randomization` (Adebayo et al. model-randomisation test).

Conventions: saliency maps are ``[B, H, W]`` floats; masks ``[B, H, W]`` bool; boxes
``(y0, x0, y1, x1)`` inclusive-exclusive (``map[y0:y1, x0:x1]``). Degenerate inputs (constant or
all-zero maps, empty masks) give finite values, never NaN. The metrics never import models or
data.
"""

from xaijax.metrics._boxes import (
    box_from_map,
    box_iou,
    boxes_from_mask,
    boxes_to_mask,
    connected_components,
    largest_component,
)
from xaijax.metrics._causal import (
    CausalCurve,
    deletion_auc,
    insertion_auc,
    rise_blur,
    rise_blur_kernel,
)
from xaijax.metrics._correlation import kendall, spearman, top_k_overlap
from xaijax.metrics._localisation import energy_in_mask, pointing_game, reduce_channels
from xaijax.metrics._randomization import RandomizationResult, cascading_randomization

__all__ = [
    "CausalCurve",
    "RandomizationResult",
    "box_from_map",
    "box_iou",
    "boxes_from_mask",
    "boxes_to_mask",
    "cascading_randomization",
    "connected_components",
    "deletion_auc",
    "energy_in_mask",
    "insertion_auc",
    "kendall",
    "largest_component",
    "pointing_game",
    "reduce_channels",
    "rise_blur",
    "rise_blur_kernel",
    "spearman",
    "top_k_overlap",
]
