"""Gradient-weighted superpixels (GWS): any pixel explainer pooled over segments."""

from __future__ import annotations

from typing import Any

import jax

from xaijax import errors
from xaijax._explainer import RESULTS, Explainer, as_explainer, options
from xaijax._validation import check_choice
from xaijax.superpixels._pooling import (
    CHANNEL_REDUCTIONS,
    REDUCTIONS,
    _has_channels,
    _scores,
)
from xaijax.superpixels._segments import check_num_segments, check_segments


def gws(
    explainer: Any,
    reduce: str = "mean",
    *,
    num_segments: int,
    channel_reduce: str = "sum",
) -> Explainer:
    """Gradient-weighted superpixels: scores regions by pooling a pixel explainer over them.

    GWS replaces LIME's 1,000 perturbed forward passes by one pixel attribution map (one
    backward pass for the vanilla gradient, ``m`` for IG or SmoothGrad) averaged over each
    superpixel, which approximates LIME's region ranking at a fraction of the cost. Any
    :class:`~xaijax.Explainer` whose result is a map (``gradient``, ``gradient_x_input``,
    ``integrated_gradients``, ``smooth(...)``, ``grad_cam``, or a function of your own wrapped
    with :func:`xaijax.explainer`) composes; it explains its own model's score. Segments are
    passed at call time, so one ``gws`` serves any segmentation (``slic``, ``grid``,
    scikit-image's ``quickshift``...) with labels in ``[0, num_segments)``, and videos with
    supervoxels; a map with another number of labels compiles nothing new.

    Args:
      explainer: the pixel explainer: an :class:`~xaijax.Explainer`, ``jax.jit`` of one or
        ``functools.partial`` of one with keywords (the same results); a bare function raises
        :class:`~xaijax.errors.NotAnExplainerError` (wrap it with :func:`xaijax.explainer`).
        Its output is ``[B, *spatial, C]`` or ``[B, *spatial]``.
      reduce: pooling rule, one of :data:`~xaijax.superpixels.REDUCTIONS` (``mean`` = average
        gradient, the SWAG/GWS rule).
      num_segments: the static number of segment labels ``S`` (required; e.g. ``num_segments``
        of :func:`~xaijax.segmentation.slic`).
      channel_reduce: how channels are collapsed before pooling: ``sum`` for signed methods,
        ``max_abs`` for magnitude methods, ``mean`` or ``l2``.

    Returns:
      An :class:`~xaijax.Explainer` (result ``"segment_scores"``)
      ``explain(params, x, target=None, *, segments, **kwargs) -> [B, S]``; ``segments`` is an
      integer map ``[B, *spatial]`` (or ``[*spatial]`` shared by the batch) and ``kwargs`` (e.g.
      ``key=`` for a stochastic explainer, ``baseline=`` for IG) go to ``explainer``. Empty
      segments score 0.

    Raises:
      NotAnExplainerError: ``explainer`` is not an explainer.
      InvalidArgumentError: ``explainer`` does not return a map (e.g. a surrogate).
      SegmentMapError: (when called) a segment map of the wrong shape, with negative,
        non-integer labels, labels ``>= num_segments``, or one segment only.
      InvalidArgumentError: an unknown ``reduce``/``channel_reduce``, no ``num_segments``, or a
        call without ``segments``.

    Examples:
      >>> import jax.numpy as jnp, xaijax
      >>> apply_fn = lambda w, x: jnp.einsum("bhwc,khwc->bk", x, w)
      >>> w = jnp.stack([jnp.ones((2, 2, 1)), jnp.arange(4.0).reshape(2, 2, 1)])
      >>> seg = jnp.array([[0, 0], [1, 1]])
      >>> explain = gws(xaijax.gradient(apply_fn), num_segments=2)
      >>> explain(w, jnp.ones((1, 2, 2, 1)), jnp.array([1]), segments=seg)
      Array([[0.5, 2.5]], dtype=float32)

    References:
      Hartley, Sidorov, Willis, Marshall, "Gradient Weighted Superpixels for Interpretability in
      CNNs", BMVC-W 2019, arXiv 1908.08997; Hartley et al., "SWAG: Superpixels Weighted by
      Average Gradients for Explanations of CNNs", WACV 2021.
    """
    inner = as_explainer(explainer, "gws")
    if inner.result not in ("map", "spatial_map"):
        raise errors.InvalidArgumentError(
            f"gws pools a pixel map, but `{inner.name}` returns {RESULTS[inner.result]}: pass "
            "an explainer whose result is a map (gradient, integrated_gradients, grad_cam...)."
        )
    check_choice(reduce, "reduce", REDUCTIONS)
    check_choice(channel_reduce, "channel_reduce", CHANNEL_REDUCTIONS)
    num = check_num_segments(num_segments, "gws")
    bound = dict(inner.bound)

    def check(params, x, target, kwargs):
        kwargs = dict(kwargs)
        if kwargs.get("segments") is None:
            raise errors.InvalidArgumentError(
                "gws needs the segment map of each call: `explain(params, x, segments=...)`, "
                f"integer labels in [0, {num}) shaped [B, *spatial] or [*spatial]."
            )
        segments = kwargs.pop("segments")
        rest = {**bound, **kwargs}
        if inner.check is not None:
            x, target, rest = inner.check(params, x, target, rest)
        # [B, *spatial, C] inputs; [B, L] (token ids, features) have no channel axis
        segs = check_segments(segments, x, num, channel_axis=x.ndim > 2)
        return x, target, {**rest, "segments": segs}

    def run(params, x, target=None, *, segments, **kwargs) -> jax.Array:
        attributions = inner.run(params, x, target, **{**bound, **kwargs})
        has_channels = _has_channels(tuple(segments.shape), tuple(attributions.shape))
        return _scores(attributions, segments, reduce, num, channel_reduce, has_channels)

    return Explainer(
        name=f"gws({inner.name})",
        model=inner.model,
        run=run,
        result="segment_scores",
        options=options(reduce=reduce, num_segments=num, channel_reduce=channel_reduce),
        inner=inner,
        stochastic=inner.stochastic,
        integer_inputs=inner.integer_inputs,
        min_rank=inner.min_rank,
        check=check,
    )
