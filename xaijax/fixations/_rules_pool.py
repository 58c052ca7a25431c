"""Backtracking rules of pooling and reductions: each discriminative output goes to the arg-max
of its window (max pooling; average pooling by the authors' rule) or to every positive input.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from xaijax.fixations import _masks as mk
from xaijax.fixations._registry import Equation, _register_points
from xaijax.typing import Array


def _keep_argmax(x: Array, mask: mk.Mask, axes: Sequence[int], mode: str) -> mk.Mask:
    """Per masked output of a reduction over ``axes``: its arg-max (``mode="max"``), arg-min
    (``"min"``), as one point per output, or every positive input (``"positive"``)."""
    axes = tuple(int(a) % x.ndim for a in axes)
    keep = tuple(d for d in range(x.ndim) if d not in axes)
    k = int(np.prod([x.shape[d] for d in axes], dtype=np.int64))
    om = mk.dense(mask).reshape(-1)
    if mode != "positive" and axes and axes == tuple(range(axes[0], axes[0] + len(axes))):
        # Contiguous axes (global pooling): [pre, k, post], arg-max over the middle axis.
        pre = mk.numel(x.shape[: axes[0]])
        post = mk.numel(x.shape[axes[-1] + 1 :])
        x3 = x.reshape(pre, k, post)
        best = mk.argmax(x3 if mode == "max" else -mk.as_float(x3), 1).reshape(-1)  # [pre * post]
        base = (np.arange(pre)[:, None] * (k * post) + np.arange(post)[None, :]).reshape(-1)
        index = jnp.asarray(base, jnp.int32) + best * jnp.int32(post)
        return mk.Points(index, om, tuple(x.shape))
    perm = keep + axes
    xt = jnp.transpose(x, perm).reshape(-1, k)
    if mode == "positive":
        m = om[:, None] & (xt > 0)
        m = m.reshape(tuple(x.shape[d] for d in perm))
        return jnp.transpose(m, tuple(int(i) for i in np.argsort(perm)))
    score = xt if mode == "max" else -mk.as_float(xt)
    best = mk.argmax(score, 1)  # [R]
    strides_in = np.cumprod((1,) + tuple(x.shape[::-1]))[:-1][::-1]
    base = np.zeros(xt.shape[0], np.int64)  # flat index of each output's first input
    if keep:
        rows = np.unravel_index(np.arange(xt.shape[0]), [x.shape[d] for d in keep])
        for r, d in zip(rows, keep, strict=True):
            base = base + r * int(strides_in[d])
    index = jnp.asarray(base, jnp.int32)
    for coord, d in zip(mk.unravel(best, [x.shape[d] for d in axes]), axes, strict=True):
        index = index + coord * int(strides_in[d])
    return mk.Points(index, om, tuple(x.shape))


@_register_points("reduce_max", "reduce_min", "reduce_sum", "argmax", "argmin")
def reduce(eqn: Equation, out_masks: tuple[mk.Mask, ...]) -> list[mk.Mask | None]:
    """Reductions over axes. Max (min): the arg-max (arg-min) input, first on ties. Sum, hence
    global average pooling (``mean`` is ``reduce_sum`` then a division): the arg-max input as
    for max pooling (authors' code, ``sum_pool="argmax"``) or every positive input."""
    x = eqn.in_values[0]
    p = eqn.primitive
    mode = {"reduce_max": "max", "argmax": "max", "reduce_min": "min", "argmin": "min"}.get(p)
    if mode is None:
        mode = "max" if eqn.options.sum_pool == "argmax" else "positive"
    return mk.only_first(eqn, _keep_argmax(x, out_masks[0], eqn.params["axes"], mode))


@_register_points("reduce_window_max", "reduce_window_min", "reduce_window_sum")
def reduce_window(eqn: Equation, out_masks: tuple[mk.Mask, ...]) -> list[mk.Mask | None]:
    """Max pooling: each discriminative output goes to the arg-max of its window (first on ties;
    padding never wins). Average pooling: the same (authors), or every positive element of the
    window (``sum_pool="positive"``)."""
    x = eqn.in_values[0]
    p = eqn.params
    geometry = (
        tuple(p["window_dimensions"]),
        tuple(p["window_strides"]),
        tuple(tuple(int(v) for v in pr) for pr in p["padding"]),
        tuple(p["base_dilation"]),
        tuple(p["window_dilation"]),
    )
    if eqn.primitive == "reduce_window_min":
        x = -mk.as_float(x)
    positive = eqn.primitive == "reduce_window_sum" and eqn.options.sum_pool == "positive"
    mask = out_masks[0]
    capacity = mk.numel(mask.shape)
    if eqn.out_bounds:
        capacity = min(capacity, eqn.out_bounds[0])
    # The window of each discriminative output only.
    pts = mk.to_points(mask, capacity)
    coords = mk.unravel(pts.index, mask.shape)
    flat, valid = mk.window_points(coords, x.shape, *geometry)
    vals = mk.take_rows(x.reshape(-1), flat)
    if positive:
        keep = pts.valid[:, None] & valid & (vals > 0)
        m = mk.Points(flat.reshape(-1), keep.reshape(-1), tuple(x.shape))
    else:
        best = mk.argmax(jnp.where(valid, vals, mk.lowest(vals.dtype)), 1)
        index = mk.pick(flat, best)
        m = mk.Points(index, pts.valid & jnp.any(valid, axis=1), tuple(x.shape))
    return mk.only_first(eqn, m)
