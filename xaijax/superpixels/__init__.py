"""Superpixel explanations: pixel attributions pooled over segments (gradient-weighted superpixels).

:func:`superpixel_scores` pools any attribution map over a segment map by segment sums;
:func:`gws` wraps any map :class:`xaijax.Explainer` (e.g. from :mod:`xaijax.attribution`) into
one that scores segments;
:func:`top_segments_mask` renders the best regions the way LIME displays its explanations.
"""

from xaijax.superpixels._gws import gws
from xaijax.superpixels._pooling import (
    CHANNEL_REDUCTIONS,
    REDUCTIONS,
    superpixel_scores,
    top_segments_mask,
)

__all__ = [
    "CHANNEL_REDUCTIONS",
    "REDUCTIONS",
    "gws",
    "superpixel_scores",
    "top_segments_mask",
]
