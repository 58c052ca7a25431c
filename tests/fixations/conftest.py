"""Helpers for the CNN Fixations tests: run one backtracking rule on one traced equation."""

from __future__ import annotations

import itertools
import types

import jax
import jax.numpy as jnp
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
    (NumPy bool or None) computed under ``jit`` by the registered rule, and the equation.

    ``options`` may be a list of :class:`Options`: then a list of mask lists comes back, all
    computed in one compiled program (compiling is the slow part of these tests). Each is
    computed twice, without a bound (every output a point) and with the tightest bound the
    walker could give (the exact number of discriminative outputs: the mask is compacted);
    they must agree. The tests compare the masks with the NumPy references.
    """

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
        many = isinstance(options, list)
        option_list = options if many else [options or _rules.Options()]
        eqn = _equation(fn, args, primitive, dependent, option_list[0], statistic, flattened)
        out_masks = out_masks if isinstance(out_masks, tuple) else (out_masks,)
        for m, v in zip(out_masks, eqn.out_values, strict=True):
            assert m.shape == v.shape, (m.shape, v.shape)
        rule = _rules.lookup(primitive)
        bounds = tuple(int(np.sum(np.asarray(m))) for m in out_masks)

        def all_options(e_vals, om):
            results = []
            for opt in option_list:
                e = eqn._replace(in_values=e_vals, options=opt)
                results.append((rule(e, om), rule(e._replace(out_bounds=bounds), om)))
            return results

        results = []
        outputs = jax.jit(all_options)(eqn.in_values, out_masks)
        for dense, compact in outputs:
            for a, b in zip(dense, compact, strict=True):
                assert (a is None) == (b is None)
                if a is not None:
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            results.append([None if m is None else np.asarray(m) for m in dense])
        return (results if many else results[0]), eqn

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


@pytest.fixture(scope="session")
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
        else:  # arg-max contribution (PyTorch port) or activation (authors' ResNet) inside
            # the window, real elements only
            score = contrib if position == "argmax_contribution" else window
            per = score[..., cstar].copy()
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


@pytest.fixture(scope="session")
def ref():
    """NumPy references of the rules (masks in, masks out) and of the forward layers."""
    return types.SimpleNamespace(
        dense=ref_dense,
        conv=ref_conv,
        pool=ref_pool,
        gap=ref_gap,
        np_conv=np_conv,
        np_pool=np_pool,
        walk=ref_walk,
        rule=lambda *a: _ref_rule(*a),
    )


# --- a literal reference of the whole walk, over the same flat program -------------------------


def _ref_reduce(x, om, axes, mode):
    """Reductions over ``axes``: arg-max / arg-min / every positive input, per masked output."""
    keep = [d for d in range(x.ndim) if d not in axes]
    out = np.zeros(x.shape, bool)
    for idx in zip(*np.nonzero(om), strict=True):
        sl = [slice(None)] * x.ndim
        for d, i in zip(keep, idx, strict=True):
            sl[d] = i
        sub = x[tuple(sl)]
        if mode == "positive":
            hits = list(zip(*np.nonzero(sub > 0), strict=True))
        else:
            hits = [np.unravel_index(np.argmax(sub if mode == "max" else -sub), sub.shape)]
        for h in hits:
            full = list(sl)
            for d, i in zip(axes, h, strict=True):
                full[d] = i
            out[tuple(full)] = True
    return out


def _ref_rule(name, ins, oms, dep, params, flat, options):
    """The rule of one primitive in NumPy, written out per case; one mask or None per operand."""
    om = oms[0]
    n = len(ins)
    pass_all = [om if d else None for d in dep]
    if name in ("max", "min", "add", "sub") and all(dep[:2]):
        a, b = ins[0], ins[1]
        if name == "sub":
            b = -b
        first = a >= b if name != "min" else a <= b
        return [om & first, om & ~first]
    if name in (
        "max",
        "min",
        "add",
        "sub",
        "mul",
        "div",
        "convert_element_type",
        "neg",
        "exp",
        "logistic",
        "tanh",
        "integer_pow",
        "lt",
        "gt",
        "eq",
        "copy",
        "sqrt",
        "rsqrt",
    ):
        return pass_all
    if name == "select_n":
        which = np.broadcast_to(np.asarray(ins[0]).astype(int), om.shape)
        return [None] + [om & (which == i) if dep[i + 1] else None for i in range(n - 1)]
    if name in ("reshape", "squeeze"):
        return [om.reshape(ins[0].shape)] + [None] * (n - 1)
    if name == "transpose":
        return [om.transpose(np.argsort(params["permutation"]))]
    if name == "broadcast_in_dim":
        dims = tuple(params["broadcast_dimensions"])
        m = om.any(axis=tuple(d for d in range(om.ndim) if d not in dims))
        m = m.any(axis=tuple(i for i, s in enumerate(ins[0].shape) if s == 1), keepdims=True)
        return [np.broadcast_to(m, ins[0].shape).copy()] + [None] * (n - 1)
    if name == "concatenate":
        ax = params["dimension"]
        bounds = np.cumsum([0] + [v.shape[ax] for v in ins])
        return [
            np.take(om, range(bounds[i], bounds[i + 1]), axis=ax) if dep[i] else None
            for i in range(n)
        ]
    if name == "gather":  # token ids looking up an embedding table
        assert not dep[0] and dep[1]
        per = om.any(axis=tuple(params["dimension_numbers"].offset_dims))
        return [None, np.broadcast_to(per[..., None], ins[1].shape).copy()]
    if name in ("reduce_sum", "reduce_max", "reduce_min"):
        mode = {"reduce_max": "max", "reduce_min": "min"}.get(name)
        mode = mode or ("max" if options.sum_pool == "argmax" else "positive")
        return [_ref_reduce(np.asarray(ins[0], np.float64), om, tuple(params["axes"]), mode)]
    if name in ("reduce_window_max", "reduce_window_sum"):
        assert all(d == 1 for d in params["base_dilation"] + params["window_dilation"])
        positive = name == "reduce_window_sum" and options.sum_pool == "positive"
        return [
            ref_pool(
                np.asarray(ins[0]),
                om,
                params["window_dimensions"],
                params["window_strides"],
                params["padding"],
                "positive" if positive else "argmax",
            )
        ]
    if name == "dot_general":
        (lc, rc), (lb, rb) = params["dimension_numbers"]
        assert tuple(lc) == (1,) and tuple(rc) == (0,) and not lb and not dep[1]
        a, w = np.asarray(ins[0], np.float64), np.asarray(ins[1], np.float64)
        volume = flat[0] and options.dense_volume == "argmax"
        return [np.stack([ref_dense(a[i], w, om[i], volume) for i in range(a.shape[0])]), None]
    if name == "conv_general_dilated":
        dn = params["dimension_numbers"]
        lp = (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])
        rp = (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])
        op = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])
        x = np.asarray(ins[0], np.float64).transpose(lp)
        w = np.asarray(ins[1], np.float64).transpose(rp)
        omt = om.transpose(op)
        m = np.stack(
            [
                ref_conv(
                    x[i],
                    w,
                    omt[i],
                    params["window_strides"],
                    params["padding"],
                    params["rhs_dilation"],
                    params["lhs_dilation"],
                    params["feature_group_count"],
                    options.conv_position,
                )
                for i in range(x.shape[0])
            ]
        )
        return [m.transpose(np.argsort(lp)), None]
    raise NotImplementedError(f"no reference rule for {name}")


def ref_walk(apply_fn, params, x1, target=None, options=None):
    """The whole backtracking of one example ``x1 [1, ...]`` with the NumPy rules above, over
    the flat program the library builds (its static facts are reused, its rules are not)."""
    from xaijax.fixations import _program, _rules

    options = options or _rules.Options()
    leaves, treedef = jax.tree_util.tree_flatten(params)
    closed = jax.make_jaxpr(lambda lv, x: apply_fn(jax.tree_util.tree_unflatten(treedef, lv), x))(
        leaves, x1
    )
    prog = _program.build_program(closed)

    @jax.jit
    def forward(leaves, x1):
        values = _program.evaluate(prog, leaves, x1)
        return [jnp.zeros(()) if v is None else v for v in values]

    values = [np.asarray(v) for v in forward(leaves, x1)]
    out = prog.out_ids[0]
    logits = values[out]
    t = int(np.argmax(logits)) if target is None else int(target)
    masks = {out: np.zeros(logits.shape, bool)}
    masks[out][..., t] = True
    for st in reversed(prog.steps):
        dep = [isinstance(i, int) and prog.dependent[i] for i in st.inputs]
        oms = [masks.get(o) for o in st.outputs]
        if not any(dep) or all(m is None for m in oms):
            continue
        oms = [
            np.zeros(values[o].shape, bool) if m is None else m
            for m, o in zip(oms, st.outputs, strict=True)
        ]
        ins = [_program.read(values, i) for i in st.inputs]
        flat = [isinstance(i, int) and prog.flattened[i] for i in st.inputs]
        opts = options
        if options.conv_position == "official" and any(prog.residual_branch[o] for o in st.outputs):
            opts = options._replace(conv_position="argmax_activation")  # authors' ResNet rule
        res = _ref_rule(st.primitive.name, ins, oms, dep, st.params, flat, opts)
        for ref_, d, m in zip(st.inputs, dep, res, strict=True):
            if d and m is not None:
                m = np.broadcast_to(m, values[ref_].shape) if m.shape != values[ref_].shape else m
                masks[ref_] = masks[ref_] | m if ref_ in masks else m.copy()
    return masks.get(prog.arg_ids[-1], np.zeros(x1.shape, bool))
