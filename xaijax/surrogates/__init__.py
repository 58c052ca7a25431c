"""Surrogate-model explainers over segments: LIME and KernelSHAP, batched on the accelerator.

Both factories return an :class:`xaijax.Explainer` (result ``"surrogate"``: a NamedTuple,
:class:`LimeExplanation` or :class:`KernelShapExplanation`). They evaluate the model's explained
score (``xaijax.Model.score``: logits by default, probabilities with
``xaijax.model(apply_fn, score="probability")``) on masked copies of the input (segments
switched off are filled with their mean colour, a blur or a constant; switched-off tokens of
integer token ids ``[B, L]`` are replaced by a pad or mask id), ``chunk_size`` copies of each
example per model call, and fit their linear surrogate in closed form. They work on image
superpixels, video supervoxels and token positions (or spans) alike, over a static number of
segment labels ``num_segments``.
"""

from xaijax.surrogates._kernel_shap import KernelShapExplanation, kernel_shap, shapley_kernel
from xaijax.surrogates._lime import FEATURE_SELECTIONS, LimeExplanation, lime, sample_masks
from xaijax.surrogates._perturb import fill_image

__all__ = [
    "FEATURE_SELECTIONS",
    "KernelShapExplanation",
    "LimeExplanation",
    "fill_image",
    "kernel_shap",
    "lime",
    "sample_masks",
    "shapley_kernel",
]
