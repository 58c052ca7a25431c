"""Surrogate-model explainers over segments: LIME and KernelSHAP, batched on the accelerator.

Both evaluate the model on masked copies of the input (segments switched off are filled with
their mean colour, a blur or a constant), chunked over samples and vmapped over examples, and
fit their linear surrogate in closed form. They work on image superpixels and on video
supervoxels alike.
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
