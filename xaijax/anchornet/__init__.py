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

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xaijax import anchornet
    >>> anchornet.anchornet(1000).receptive_fields(224)[0].rf
    (95,)
"""

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
    "Contributions",
    "MBConv",
    "Patches",
    "ReceptiveField",
    "anchornet",
    "anchornet_multi",
    "anchornet_text",
    "contributions",
    "informative_patches",
    "receptive_field",
]
