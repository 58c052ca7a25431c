"""AnchorNet (papers.md section 2): logits that are exact sums of patch contributions.

A no-padding CNN whose class score is a linear spatial aggregation, so every output location
maps to one known input box (its receptive field) and its contribution to each logit is exact.

* :func:`receptive_field`: RF size, jump and offset per output location, from a layer list or a
  function's jaxpr; refuses padded layers (:class:`~xaijax.errors.PaddedLayerError`).
* :class:`AnchorNet` (single- or multi-branch images; :func:`anchornet` is the code's RF-95
  network, :func:`anchornet_multi` chooses branch RFs) and :class:`AnchorNetText`
  (:func:`anchornet_text`, 1-D convolutions over token embeddings), Flax Linen with BatchNorm.
* :func:`contributions`: the explainer of per-location contributions, location and pixel maps.
* :func:`informative_patches`: greedy IoU-suppressed top-k patches per branch, merged.
* :func:`crop_patches`, :func:`resize_full`, :func:`early_exit_cascade`, :func:`stage_flops`,
  :func:`cascade_table`: patch-based inference, the code's early-exit cascade and its
  accuracy-vs-FLOPs table.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xaijax import anchornet
    >>> anchornet.anchornet(1000).receptive_fields(224)[0].rf
    (95,)
"""

from xaijax.anchornet._cascade import (
    CascadeResult,
    cascade_table,
    crop_patches,
    early_exit_cascade,
    exit_stages,
    resize_full,
    stage_flops,
)
from xaijax.anchornet._contrib import Contributions, contributions
from xaijax.anchornet._nets import (
    CODE_BLOCKS,
    CROPS,
    AnchorNet,
    AnchorNetText,
    MBConv,
    anchornet,
    anchornet_multi,
    anchornet_text,
)
from xaijax.anchornet._patches import Patches, informative_patches
from xaijax.anchornet._rf import ReceptiveField, receptive_field

__all__ = [
    "CODE_BLOCKS",
    "CROPS",
    "AnchorNet",
    "AnchorNetText",
    "CascadeResult",
    "Contributions",
    "MBConv",
    "Patches",
    "ReceptiveField",
    "anchornet",
    "anchornet_multi",
    "anchornet_text",
    "cascade_table",
    "contributions",
    "crop_patches",
    "early_exit_cascade",
    "exit_stages",
    "informative_patches",
    "receptive_field",
    "resize_full",
    "stage_flops",
]
