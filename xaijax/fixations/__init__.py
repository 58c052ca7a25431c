"""CNN Fixations: gradient-free backtracking of a prediction to the input, for any JAX model.

:func:`fixations` traces ``apply_fn`` for one example to a jaxpr and walks it backwards with one
rule per primitive (dense, convolution in 1-3 D, pooling, residual ``add``, ``concatenate``,
index bookkeeping, elementwise pass-through), carrying the discriminative neurons as boolean
masks, so the result is jittable and vmappable and no gradient is ever computed. Missing rules
are added with :func:`register_rule`. :func:`heatmap`, :func:`boxes`,
:func:`remove_outliers` and :func:`fixation_points` post-process the fixation maps as the
authors' code does; :func:`multi_crop` wraps an explainer in the authors' five-crop protocol
(:func:`crops_used` says which crops it explained).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xaijax.fixations import fixations, heatmap
    >>> apply_fn = lambda p, x: jnp.mean(x, axis=(1, 2)) @ p
    >>> x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
    >>> m = fixations(apply_fn)(jnp.ones((3, 4)), x)
    >>> m.shape, heatmap(m).shape
    ((2, 8, 8), (2, 8, 8))

Reference: Mopuri, Garg and Babu, "CNN Fixations: An unraveling approach to visualize the
discriminative image regions", IEEE TIP 28(5), 2019 (arXiv 1708.06670).
"""

from xaijax.fixations._crops import (
    CORNERS_AND_CENTRE,
    CROP_REDUCTIONS,
    CROP_SELECTIONS,
    crop_geometry,
    crops_used,
    multi_crop,
)
from xaijax.fixations._post import (
    BOX_RULES,
    boxes,
    fixation_points,
    heatmap,
    remove_outliers,
)
from xaijax.fixations._rules import (
    VARIANTS,
    Equation,
    Options,
    Rule,
    register_rule,
    supported_primitives,
)
from xaijax.fixations._walk import CHANNEL_REDUCTIONS, fixations

__all__ = [
    "BOX_RULES",
    "CHANNEL_REDUCTIONS",
    "CORNERS_AND_CENTRE",
    "CROP_REDUCTIONS",
    "CROP_SELECTIONS",
    "VARIANTS",
    "Equation",
    "Options",
    "Rule",
    "boxes",
    "crop_geometry",
    "crops_used",
    "fixation_points",
    "fixations",
    "heatmap",
    "multi_crop",
    "register_rule",
    "remove_outliers",
    "supported_primitives",
]
