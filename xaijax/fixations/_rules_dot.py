"""Backtracking rule of dense layers (``dot_general``): every input of positive contribution, or
the single position of largest contribution on a flattened volume.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from xaijax.fixations import _masks as mk
from xaijax.fixations._registry import Equation, _register
from xaijax.typing import Array


def _dense_positive(a: Array, w: Array, om: Array) -> Array:
    """``[B, M, K] x [B, K, N]``, out mask ``[B, M, N]`` -> ``[B, M, K]``: ``a_k * w_kn > 0`` for
    some masked ``n``."""
    o = om.astype(jnp.float32)
    pos = jnp.einsum("bmn,bkn->bmk", o, (w > 0).astype(jnp.float32)) > 0
    neg = jnp.einsum("bmn,bkn->bmk", o, (w < 0).astype(jnp.float32)) > 0
    return ((a > 0) & pos) | ((a < 0) & neg)


def _dense_argmax(a: Array, w: Array, om: Array) -> Array:
    """Per masked ``(m, n)`` the single ``k`` of largest ``a_mk * w_kn`` (first on ties)."""
    contrib = mk.as_float(a)[:, :, :, None] * mk.as_float(w)[:, None, :, :]
    best = jnp.argmax(contrib, axis=2)  # [B, M, N]
    k = a.shape[-1]
    hit = mk.one_hot(best, k) & om[..., None]  # [B, M, N, K]
    return jnp.any(hit, axis=2)


@_register("dot_general")
def dot_general(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """Dense layers (any ``dot_general``): the inputs of positive contribution ``a * w > 0`` to a
    discriminative output (``papers.md`` 6(b).1). When the input is a flattened spatial volume,
    only the single position of largest contribution (6(b).2, ``dense_volume="argmax"``)."""
    (mask,) = out_masks
    lhs, rhs = eqn.in_values
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lc, rc, lb, rb = (tuple(int(d) for d in t) for t in (lc, rc, lb, rb))
    lf = tuple(d for d in range(lhs.ndim) if d not in lc + lb)
    rf = tuple(d for d in range(rhs.ndim) if d not in rc + rb)

    def prod(shape, dims):
        return int(np.prod([shape[d] for d in dims], dtype=np.int64))

    nb, nm, nk, nn_ = (
        prod(lhs.shape, lb),
        prod(lhs.shape, lf),
        prod(lhs.shape, lc),
        prod(rhs.shape, rf),
    )
    lperm, rperm = lb + lf + lc, rb + rc + rf
    a = jnp.transpose(lhs, lperm).reshape(nb, nm, nk)
    w = jnp.transpose(rhs, rperm).reshape(nb, nk, nn_)
    om = mask.reshape(nb, nm, nn_)

    def rule(flat: bool):
        vol = flat and eqn.options.dense_volume == "argmax"
        return _dense_argmax if vol else _dense_positive

    def back(m, shape, perm):
        m = m.reshape(tuple(shape[d] for d in perm))
        return jnp.transpose(m, tuple(int(i) for i in np.argsort(perm)))

    out: list[Array | None] = [None, None]
    if eqn.dependent[0]:
        out[0] = back(rule(eqn.flattened[0])(a, w, om), lhs.shape, lperm)
    if eqn.dependent[1]:
        wt, at, omt = (jnp.swapaxes(t, 1, 2) for t in (w, a, om))
        m = jnp.swapaxes(rule(eqn.flattened[1])(wt, at, omt), 1, 2)
        out[1] = back(m, rhs.shape, rperm)
    return out
