"""Backtracking rule of convolutions (``conv_general_dilated``, 1-3 spatial dimensions, strides,
padding, dilations, feature groups), on the compact list of discriminative outputs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors
from xaijax.fixations import _masks as mk
from xaijax.fixations._registry import Equation, _register_points
from xaijax.typing import Array


def _conv_points(
    x: Array,
    w: Array,
    pos: Array,
    d: Array,
    ok: Array,
    out_spatial: tuple[int, ...],
    *,
    strides: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    lhs_dilation: tuple[int, ...],
    rhs_dilation: tuple[int, ...],
    position: str,
) -> tuple[Array, Array]:
    """Convolution rule for one image ``x [*S, C]`` on a list of discriminative outputs (flat
    spatial position ``pos``, channel ``d``, ``ok``, each ``[N]``, over ``[*out_spatial, O]``):
    the flat index into ``x`` each one goes to, and whether it goes anywhere."""
    spatial, c = x.shape[:-1], x.shape[-1]
    kshape, cg, o = w.shape[:-2], w.shape[-2], w.shape[-1]
    og = o // (c // cg)
    kt = mk.numel(kshape)
    coords = mk.unravel(pos, out_spatial)
    flat, valid = mk.window_points(
        coords, spatial, kshape, strides, padding, lhs_dilation, rhs_dilation
    )
    group = mk.div(d, og)
    window = mk.take_rows(mk.as_float(x).reshape(-1, c), flat)  # [N, K, C]: whole rows
    if cg != c:
        window = window.reshape(*flat.shape, c // cg, cg)
        window = jnp.take_along_axis(window, group[:, None, None, None], axis=2)[:, :, 0]
    window = window * valid[..., None]  # padding reads zero
    weights = mk.take_rows(jnp.moveaxis(mk.as_float(w).reshape(kt, cg, o), -1, 0), d)  # [N, K, C/G]
    contrib = window * weights
    cstar = mk.argmax(mk.sum_small(contrib, 1), 1)  # [N]
    strides_in = np.cumprod((1,) + tuple(spatial[::-1]))[:-1][::-1]
    if position in ("argmax_contribution", "argmax_activation"):
        # Channel c* of every window element, read by scalar gathers (padding is masked out).
        channel = (group * cg + cstar)[:, None]
        per_k = mk.take_rows(mk.as_float(x).reshape(-1), flat * c + channel)  # [N, K]
        if position == "argmax_contribution":
            k_index = jnp.arange(kt, dtype=jnp.int32)[None, :] * (cg * o)
            wflat = mk.as_float(w).reshape(-1)  # [K, C/G, O] row-major
            per_k = per_k * mk.take_rows(wflat, k_index + (cstar * o + d)[:, None])
        best = mk.argmax(jnp.where(valid, per_k, -jnp.inf), 1)
        where = mk.pick(flat, best)
        ok = ok & jnp.any(valid, axis=1)
    else:
        where = jnp.zeros_like(pos)
        for a, (n, k, s, (lo, _), ld, rd) in enumerate(
            zip(spatial, kshape, strides, padding, lhs_dilation, rhs_dilation, strict=True)
        ):
            oi = coords[a] * s
            if position == "center":
                oi = mk.div(mk.clamp(oi + ((k - 1) // 2) * rd - lo, 0, (n - 1) * ld), ld)
            where = where + mk.clamp(oi, 0, n - 1) * int(strides_in[a])
    return where * c + group * cg + cstar, ok


@_register_points("conv_general_dilated")
def conv_general_dilated(eqn: Equation, out_masks: tuple[mk.Mask, ...]) -> list[mk.Mask | None]:
    """Convolutions in any number of spatial dimensions, with strides, padding, dilations and
    feature groups (depthwise too): per discriminative output ``(c, y, x)`` the input channel
    ``c*`` of largest summed contribution over the window (``papers.md`` 6(b).4), at the
    position chosen by ``conv_position``. Only the input (not the kernel) is followed."""
    p = eqn.params
    if p["batch_group_count"] != 1:
        raise errors.UnsupportedPrimitiveError(
            "CNN Fixations has no rule for `conv_general_dilated` with batch_group_count="
            f"{p['batch_group_count']} (a weight-gradient convolution). Register one with "
            "`xaijax.fixations.register_rule('conv_general_dilated', rule)`."
        )
    if not eqn.dependent[0]:
        return [None, None]
    lhs, rhs = eqn.in_values
    dn = p["dimension_numbers"]
    lperm = (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])
    rperm = (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])
    operm = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])
    d = lhs.ndim - 2
    geometry = dict(
        strides=tuple(p["window_strides"]),
        padding=tuple(tuple(int(v) for v in pr) for pr in p["padding"]),
        lhs_dilation=tuple(p["lhs_dilation"] or (1,) * d),
        rhs_dilation=tuple(p["rhs_dilation"] or (1,) * d),
        position=eqn.options.conv_position,
    )
    if geometry["position"] == "official" and eqn.residual_branch:
        geometry["position"] = "argmax_activation"  # the authors' ResNet rule, 6(b).6
    mask = out_masks[0]
    capacity = mk.numel(mask.shape)
    if eqn.out_bounds:
        capacity = min(capacity, eqn.out_bounds[0])
    if lperm == tuple(range(lhs.ndim)) and operm == lperm and lhs.shape[0] == 1:
        # Channels last, one example (the walker's case): points in, points out.
        target, ok = _conv_mask_points(lhs[0], jnp.transpose(rhs, rperm), mask, capacity, geometry)
        return [mk.Points(target, ok, tuple(lhs.shape)), None]
    # Another layout or several examples: each example's mask as points, the result dense.
    x, w = jnp.transpose(lhs, lperm), jnp.transpose(rhs, rperm)
    om = jnp.transpose(mk.dense(mask), operm)

    def one(x, om):
        target, ok = _conv_mask_points(x, w, om[None], min(capacity, om.size), geometry)
        return mk.mark(x.size, target, ok).reshape(x.shape)

    if x.shape[0] == 1:  # no inner vmap, whose batched gathers and scatters are slow on CPU
        m = one(x[0], om[0])[None]
    else:
        m = jax.vmap(one)(x, om)
    return [jnp.transpose(m, tuple(int(i) for i in np.argsort(lperm))), None]


def _conv_mask_points(
    x: Array, w: Array, mask: mk.Mask, capacity: int, geometry: dict[str, Any]
) -> tuple[Array, Array]:
    """:func:`_conv_points` for a mask over ``[1, *S', O]`` given as an array or points."""
    pts = mk.to_points(mask, capacity)
    o = mask.shape[-1]
    return _conv_points(
        x, w, mk.div(pts.index, o), mk.rem(pts.index, o), pts.valid, tuple(mask.shape[1:-1]),
        **geometry,
    )  # fmt: skip
