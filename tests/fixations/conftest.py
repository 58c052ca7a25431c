"""Helpers for the CNN Fixations tests: run one backtracking rule on one traced equation."""

from __future__ import annotations

import itertools
import types

import jax
import numpy as np
import pytest
from jax.extend import core as jex_core

from xaijax.fixations import _rules


def _equation(fn, args, primitive, dependent, options, statistic=None, flattened=None):
    """The single ``primitive`` equation of ``jax.make_jaxpr(fn)(*args)`` as a rule sees it.

    The equation's operands must be ``fn``'s arguments (or literals); ``dependent`` lists, per
    argument of ``fn``, whether it counts as input-dependent.
    """
    closed = jax.make_jaxpr(fn)(*args)
    eqns = [e for e in closed.jaxpr.eqns if e.primitive.name == primitive]
    assert len(eqns) == 1, [e.primitive.name for e in closed.jaxpr.eqns]
    (eqn,) = eqns
    env = dict(zip(closed.jaxpr.invars, args, strict=True))
    dep_of = dict(zip(closed.jaxpr.invars, dependent, strict=True))
    in_values, deps = [], []
    for v in eqn.invars:
        if isinstance(v, jex_core.Literal):
            in_values.append(v.val)
            deps.append(False)
        else:
            in_values.append(env[v])
            deps.append(dep_of[v])
    out = eqn.primitive.bind(*in_values, **eqn.params)
    outs = tuple(out) if eqn.primitive.multiple_results else (out,)
    n = len(in_values)
    return _rules.Equation(
        primitive=primitive,
        params=dict(eqn.params),
        in_values=tuple(in_values),
        out_values=outs,
        dependent=tuple(deps),
        statistic=tuple(statistic or (False,) * n),
        flattened=tuple(flattened or (False,) * n),
        options=options,
    )


@pytest.fixture
def apply_rule():
    """``apply_rule(fn, args, primitive, out_mask, dependent=..., options=...)`` -> operand masks
    (NumPy bool or None), computed under ``jit`` by the registered rule."""

    def run(
        fn,
        args,
        primitive,
        out_masks,
        *,
        dependent,
        options=None,
        statistic=None,
        flattened=None,
    ):
        options = options or _rules.Options()
        eqn = _equation(fn, args, primitive, dependent, options, statistic, flattened)
        out_masks = out_masks if isinstance(out_masks, tuple) else (out_masks,)
        for m, v in zip(out_masks, eqn.out_values, strict=True):
            assert m.shape == v.shape, (m.shape, v.shape)
        rule = _rules.lookup(primitive)
        # Both the dense path (no bound) and the compact path (bound = the exact count, the
        # tightest the walker could give) run in one program and must agree.
        bounds = tuple(int(np.sum(np.asarray(m))) for m in out_masks)

        def both(e_vals, om):
            e = eqn._replace(in_values=e_vals)
            return rule(e, om), rule(e._replace(out_bounds=bounds), om)

        dense, compact = jax.jit(both)(eqn.in_values, out_masks)
        for a, b in zip(dense, compact, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        return [None if m is None else np.asarray(m) for m in dense], eqn

    return run


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def init_params(model, x, seed=0):
    """Random parameters for a Flax ``model`` without ``jax.random`` (whose kernels take seconds
    to compile on a loaded CPU): weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(path[-1])
        if "bias" in name:
            return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)
        fan_in = int(np.prod(leaf.shape[:-1])) if leaf.ndim > 1 else leaf.shape[0]
        if "embedding" in name:
            fan_in = 1
        return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture
def init():
    """``init(model, x, seed=0)`` -> parameters (see :func:`init_params`)."""
    return init_params


def ref_dense(a, w, om, volume):
    """``a [K]``, ``w [K, N]``, discriminative outputs ``om [N]``."""
    out = np.zeros(a.shape, bool)
    for i in np.flatnonzero(om):
        c = a * w[:, i]
        if volume:  # papers.md 6(b).2: single arg-max position
            out[np.argmax(c)] = True
        else:  # 6(b).1: every positive contribution
            out[c > 0] = True
    return out


def ref_conv(x, w, om, strides, padding, rhs_dil, lhs_dil, groups, position):
    """``x [*S, C]``, ``w [*K, C/G, O]`` (HWIO), ``om [*S', O]``; padding ``[(lo, hi)]``."""
    spatial, c_in = x.shape[:-1], x.shape[-1]
    ks, cg, o = w.shape[:-2], w.shape[-2], w.shape[-1]
    og = o // groups
    # Input dilated by lhs_dil (zeros between elements), then zero-padded.
    dil = [(n - 1) * ld + 1 for n, ld in zip(spatial, lhs_dil, strict=True)]
    xd = np.zeros((*dil, c_in))
    xd[tuple(slice(None, None, ld) for ld in lhs_dil)] = x
    xp = np.pad(xd, [*padding, (0, 0)])
    out = np.zeros(x.shape, bool)
    for idx in zip(*np.nonzero(om), strict=True):
        opos, c = idx[:-1], idx[-1]
        g = c // og
        sl = tuple(
            slice(q * s, q * s + (k - 1) * rd + 1, rd)
            for q, s, k, rd in zip(opos, strides, ks, rhs_dil, strict=True)
        )
        window = xp[sl + (slice(g * cg, (g + 1) * cg),)]  # [*K, C/G]
        contrib = window * w[..., c]
        cstar = int(np.argmax(contrib.reshape(-1, cg).sum(0)))
        if position == "official":  # (c*, S*y, S*x), clipped into the input
            pos = tuple(min(q * s, n - 1) for q, s, n in zip(opos, strides, spatial, strict=True))
        elif position == "center":
            pos = tuple(
                int(np.clip((q * s + (k - 1) // 2 * rd - lo) // ld, 0, n - 1))
                for q, s, k, rd, (lo, _), ld, n in zip(
                    opos, strides, ks, rhs_dil, padding, lhs_dil, spatial, strict=True
                )
            )
        else:  # PyTorch port: arg-max contribution inside the window, real elements only
            per = contrib[..., cstar].copy()
            for j in itertools.product(*[range(k) for k in ks]):
                q = [
                    p * s + jj * rd for p, s, jj, rd in zip(opos, strides, j, rhs_dil, strict=True)
                ]
                ok = all(
                    lo <= qq < lo + dd and (qq - lo) % ld == 0
                    for qq, (lo, _), dd, ld in zip(q, padding, dil, lhs_dil, strict=True)
                )
                if not ok:
                    per[j] = -np.inf
            j = np.unravel_index(np.argmax(per), per.shape)
            pos = tuple(
                (p * s + jj * rd - lo) // ld
                for p, s, jj, rd, (lo, _), ld in zip(
                    opos, strides, j, rhs_dil, padding, lhs_dil, strict=True
                )
            )
        out[pos + (g * cg + cstar,)] = True
    return out


def ref_pool(x, om, window, strides, padding, mode):
    """Pooling over all axes of ``x`` (window 1 on the others); ``mode``: argmax | positive."""
    xp = np.pad(x.astype(np.float64), padding, constant_values=-np.inf)
    out = np.zeros(x.shape, bool)
    for opos in zip(*np.nonzero(om), strict=True):
        sl = tuple(slice(q * s, q * s + k) for q, s, k in zip(opos, strides, window, strict=True))
        win = xp[sl]
        if mode == "argmax":
            chosen = [np.unravel_index(np.argmax(win), win.shape)]
        else:
            chosen = list(zip(*np.nonzero(win > 0), strict=True))
        for j in chosen:
            pos = tuple(
                q * s + jj - lo for q, s, jj, (lo, _) in zip(opos, strides, j, padding, strict=True)
            )
            out[pos] = True
    return out


def ref_gap(x, om, mode="argmax"):
    """Global average pooling ``x [*S, C] -> [C]`` (papers.md 6(b).3: as max pooling)."""
    out = np.zeros(x.shape, bool)
    for c in np.flatnonzero(om):
        fmap = x[..., c]
        if mode == "argmax":
            out[(*np.unravel_index(np.argmax(fmap), fmap.shape), c)] = True
        else:
            out[..., c] = fmap > 0
    return out


def np_conv(x, w, b, strides, padding, groups=1):
    """A literal convolution ``x [*S, C]``, ``w [*K, C/G, O]`` -> ``[*S', O]`` (float64)."""
    ks, cg, o = w.shape[:-2], w.shape[-2], w.shape[-1]
    og = o // groups
    xp = np.pad(x.astype(np.float64), [*padding, (0, 0)])
    out_shape = [
        (n + lo + hi - k) // s + 1
        for n, (lo, hi), k, s in zip(x.shape[:-1], padding, ks, strides, strict=True)
    ]
    out = np.zeros((*out_shape, o))
    for opos in itertools.product(*[range(n) for n in out_shape]):
        sl = tuple(slice(q * s, q * s + k) for q, s, k in zip(opos, strides, ks, strict=True))
        for c in range(o):
            g = c // og
            out[opos + (c,)] = np.sum(xp[sl + (slice(g * cg, (g + 1) * cg),)] * w[..., c])
    return out + b


def np_pool(x, window, strides, padding):
    """Max pooling of ``x [*S, C]`` over the spatial axes, ``-inf`` padding."""
    xp = np.pad(x.astype(np.float64), [*padding, (0, 0)], constant_values=-np.inf)
    out_shape = [
        (n + lo + hi - k) // s + 1
        for n, (lo, hi), k, s in zip(x.shape[:-1], padding, window, strides, strict=True)
    ]
    out = np.zeros((*out_shape, x.shape[-1]))
    for opos in itertools.product(*[range(n) for n in out_shape]):
        sl = tuple(slice(q * s, q * s + k) for q, s, k in zip(opos, strides, window, strict=True))
        out[opos] = xp[sl].reshape(-1, x.shape[-1]).max(0)
    return out


@pytest.fixture
def ref():
    """NumPy references of the rules (masks in, masks out) and of the forward layers."""
    return types.SimpleNamespace(
        dense=ref_dense,
        conv=ref_conv,
        pool=ref_pool,
        gap=ref_gap,
        np_conv=np_conv,
        np_pool=np_pool,
    )
