"""Mask optimisation: deletion masks learned per image, batched and jitted with optax.

* :func:`smooth_mask`: the smooth mask of Visual Summaries (A1: low resolution, upsampled and
  blurred with the code's straight-through gradient, presets ``"bmvc"`` and ``"arxiv_v1"``);
* :func:`crisp_mask`: its crisp full-resolution mask (A2: initialised from the smooth one, with
  a LASSO term pushing it to binary);
* :func:`superpixel_mask`: the optional superpixel mask (A3: one variable per superpixel,
  initialised from the smooth mask);
* :func:`meaningful_perturbation`: Fong & Vedaldi's deletion game with random jitter (the
  baseline Visual Summaries builds on);
* :func:`salient_regions`: the top connected regions of a heat mask, ranked by the drop when only
  each is replaced by the null image (Stage B).

Each returns an :class:`xaijax.Explainer` with result ``"mask"``: a :class:`MaskExplanation`
whose ``map`` ``[B, H, W]`` is the saliency map (the code's heat mask ``1 - M`` normalised:
bright = deleted = salient), ``mask`` the mask ``M`` (1 keep), and per-image statistics (target,
masked and blurred probabilities, drop, normalised score). One call is one jitted program: a
``lax.scan`` over iterations of a per-image kernel lifted by ``vmap`` (each image has its own
optimiser state). The regularisers are public for tests and for losses of your own.
"""

from xaijax.masks._optimize import (
    INITS,
    PRESETS,
    MaskExplanation,
    circular_init,
    crisp_mask,
    meaningful_perturbation,
    smooth_mask,
    straight_through_blur,
    superpixel_mask,
)
from xaijax.masks._regions import SalientRegions, salient_regions
from xaijax.masks._regularizers import l1_loss, lasso_loss, tv_loss

__all__ = [
    "INITS",
    "PRESETS",
    "SalientRegions",
    "MaskExplanation",
    "circular_init",
    "crisp_mask",
    "l1_loss",
    "lasso_loss",
    "meaningful_perturbation",
    "salient_regions",
    "smooth_mask",
    "straight_through_blur",
    "superpixel_mask",
    "tv_loss",
]
