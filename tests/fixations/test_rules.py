"""Each backtracking rule against a literal NumPy reference (the papers.md rule as loops)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from xaijax.fixations import Options


def random_mask(rng, shape, p=0.3):
    return jnp.asarray(rng.random(shape) < p)


# --- dense ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("volume", [False, True])
def test_dense_matches_reference(apply_rule, ref, rng, volume):
    a = rng.normal(size=(1, 12)).astype(np.float32)
    w = rng.normal(size=(12, 7)).astype(np.float32)
    om = random_mask(rng, (1, 7), 0.5)
    (ma, mw), _ = apply_rule(
        lambda a, w: a @ w,
        (a, w),
        "dot_general",
        om,
        dependent=(True, False),
        flattened=(volume, False),
    )
    assert mw is None
    np.testing.assert_array_equal(ma[0], ref.dense(a[0], w, np.asarray(om[0]), volume))


def test_dense_volume_positive_option_is_the_vector_rule(apply_rule, ref, rng):
    a = rng.normal(size=(1, 12)).astype(np.float32)
    w = rng.normal(size=(12, 7)).astype(np.float32)
    om = random_mask(rng, (1, 7), 0.5)
    (ma, _), _ = apply_rule(
        lambda a, w: a @ w,
        (a, w),
        "dot_general",
        om,
        dependent=(True, False),
        flattened=(True, False),
        options=Options(dense_volume="positive"),
    )
    np.testing.assert_array_equal(ma[0], ref.dense(a[0], w, np.asarray(om[0]), False))


def test_dense_general_dimension_numbers(apply_rule, ref, rng):
    """A dense layer applied per position ([1, T, E] x [E, F]) and weights on the left."""
    a = rng.normal(size=(1, 5, 6)).astype(np.float32)
    w = rng.normal(size=(6, 4)).astype(np.float32)
    om = random_mask(rng, (1, 5, 4), 0.4)
    (ma, _), _ = apply_rule(
        lambda a, w: jnp.einsum("bte,ef->btf", a, w),
        (a, w),
        "dot_general",
        om,
        dependent=(True, False),
    )
    expected = np.stack([ref.dense(a[0, t], w, np.asarray(om[0, t]), False) for t in range(5)])
    np.testing.assert_array_equal(ma[0], expected)
    # The activation on the right-hand side: logits^T = W^T a^T.
    (_, mb), _ = apply_rule(
        lambda w, a: jnp.einsum("fe,be->fb", w, a),
        (w.T.copy(), a[:, 0]),
        "dot_general",
        om[:, 0].T,
        dependent=(False, True),
    )
    np.testing.assert_array_equal(mb[0], ref.dense(a[0, 0], w, np.asarray(om[0, 0]), False))


# --- convolution ---------------------------------------------------------------------------------

CONV_CASES = [
    # (spatial, kernel, C_in, C_out, strides, padding, rhs_dil, lhs_dil, groups)
    ((9, 8), (3, 3), 4, 5, (1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1), 1),  # same 3x3
    ((11, 10), (5, 3), 3, 4, (2, 3), ((0, 0), (2, 1)), (1, 1), (1, 1), 1),  # strided, asymmetric
    ((10, 10), (3, 3), 4, 6, (1, 2), ((2, 2), (1, 1)), (2, 1), (1, 1), 2),  # dilated, grouped
    ((8, 7), (3, 3), 6, 6, (1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1), 6),  # depthwise
    ((5, 6), (3, 3), 3, 4, (1, 1), ((1, 2), (2, 1)), (1, 1), (2, 2), 1),  # transposed (lhs dil)
    ((13,), (4,), 5, 3, (2,), ((1, 2),), (1,), (1,), 1),  # 1-D
    ((4, 6, 5), (3, 3, 2), 2, 3, (1, 2, 1), ((1, 1), (1, 1), (0, 1)), (1, 1, 1), (1, 1, 1), 1),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_matches_reference(apply_rule, ref, rng, case):
    spatial, ks, c_in, c_out, strides, padding, rd, ld, groups = CONV_CASES[case]
    d = len(spatial)
    x = rng.normal(size=(1, *spatial, c_in)).astype(np.float32)
    w = rng.normal(size=(*ks, c_in // groups, c_out)).astype(np.float32)
    spec = "DHW"[3 - d :]
    dn = ("N" + spec + "C", spec + "IO", "N" + spec + "C")

    def conv(x, w):
        return lax.conv_general_dilated(
            x,
            w,
            strides,
            padding,
            lhs_dilation=ld,
            rhs_dilation=rd,
            dimension_numbers=dn,
            feature_group_count=groups,
        )

    out_shape = jax.eval_shape(conv, x, w).shape
    om = random_mask(rng, out_shape, 0.3)
    positions = ["official", "center", "argmax_contribution", "argmax_activation"]
    results, _ = apply_rule(
        conv,
        (x, w),
        "conv_general_dilated",
        om,
        dependent=(True, False),
        options=[Options(conv_position=p) for p in positions],
    )
    for position, (mx, mw) in zip(positions, results, strict=True):
        assert mw is None
        expected = ref.conv(x[0], w, np.asarray(om[0]), strides, padding, rd, ld, groups, position)
        np.testing.assert_array_equal(mx[0], expected, err_msg=position)


def test_conv_nchw_layout_matches_nhwc(apply_rule, ref, rng):
    """Dimension numbers are honoured: an NCHW/OIHW convolution gives the transposed answer."""
    x = rng.normal(size=(1, 3, 7, 6)).astype(np.float32)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    om = random_mask(rng, (1, 4, 4, 3), 0.4)

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)))

    (mx, _), _ = apply_rule(conv, (x, w), "conv_general_dilated", om, dependent=(True, False))
    expected = ref.conv(
        x[0].transpose(1, 2, 0),
        w.transpose(2, 3, 1, 0),
        np.asarray(om[0]).transpose(1, 2, 0),
        (2, 2),
        ((1, 1), (1, 1)),
        (1, 1),
        (1, 1),
        1,
        "official",
    )
    np.testing.assert_array_equal(mx[0], expected.transpose(2, 0, 1))


def test_conv_planted_filter_selects_its_channel(apply_rule):
    """Hand case: output channel 0 only looks at input channel 2 -> fixation in channel 2."""
    x = np.ones((1, 5, 5, 3), np.float32)
    w = np.zeros((3, 3, 3, 2), np.float32)
    w[:, :, 2, 0] = 1.0
    w[:, :, 0, 0] = -1.0
    om = jnp.zeros((1, 5, 5, 2), bool).at[0, 2, 3, 0].set(True)
    (mx, _), _ = apply_rule(
        lambda x, w: lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        ),
        (x, w),
        "conv_general_dilated",
        om,
        dependent=(True, False),
    )
    assert list(zip(*np.nonzero(mx[0]), strict=True)) == [(2, 3, 2)]


# --- pooling and reductions ----------------------------------------------------------------------

POOL_CASES = [
    ((1, 8, 8, 3), (1, 2, 2, 1), (1, 2, 2, 1), "VALID"),
    ((1, 7, 7, 2), (1, 3, 3, 1), (1, 2, 2, 1), "SAME"),
    ((1, 9, 3), (1, 3, 1), (1, 1, 1), "SAME"),
]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_reference(apply_rule, ref, rng, case, kind):
    shape, window, strides, pad = POOL_CASES[case]
    x = rng.normal(size=shape).astype(np.float32)
    init, op = (-jnp.inf, lax.max) if kind == "max" else (0.0, lax.add)
    prim = "reduce_window_max" if kind == "max" else "reduce_window_sum"

    def fn(x):
        return lax.reduce_window(x, init, op, window, strides, pad)

    out_shape = jax.eval_shape(fn, x).shape
    padding = lax.padtype_to_pads(shape, window, strides, pad)
    om = random_mask(rng, out_shape, 0.4)
    modes = ["argmax"] if kind == "max" else ["argmax", "positive"]
    results, _ = apply_rule(
        fn, (x,), prim, om, dependent=(True,), options=[Options(sum_pool=m) for m in modes]
    )
    for mode, (mx,) in zip(modes, results, strict=True):
        expected = ref.pool(x, np.asarray(om), window, strides, padding, mode)
        np.testing.assert_array_equal(mx, expected, err_msg=mode)


def test_max_pool_ties_go_to_first_element(apply_rule):
    x = np.zeros((1, 4, 4, 1), np.float32)
    om = jnp.ones((1, 2, 2, 1), bool)
    (mx,), _ = apply_rule(
        lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"),
        (x,),
        "reduce_window_max",
        om,
        dependent=(True,),
    )
    assert list(zip(*np.nonzero(mx[0, :, :, 0]), strict=True)) == [(0, 0), (0, 2), (2, 0), (2, 2)]


@pytest.mark.parametrize("mode", ["argmax", "positive"])
def test_global_average_pool_matches_reference(apply_rule, rng, mode):
    x = rng.normal(size=(1, 5, 6, 4)).astype(np.float32)
    om = jnp.asarray([[True, False, True, True]])
    (mx,), _ = apply_rule(
        lambda x: jnp.sum(x, axis=(1, 2)),
        (x,),
        "reduce_sum",
        om,
        dependent=(True,),
        options=Options(sum_pool=mode),
    )
    expected = np.zeros(x.shape, bool)
    for c in np.flatnonzero(np.asarray(om[0])):
        fmap = x[0, :, :, c]
        if mode == "argmax":  # papers.md 6(b).3: GAP treated like max pooling
            expected[(0, *np.unravel_index(np.argmax(fmap), fmap.shape), c)] = True
        else:
            expected[0, :, :, c] = fmap > 0
    np.testing.assert_array_equal(mx, expected)


def test_global_max_over_time(apply_rule, rng):
    x = rng.normal(size=(1, 9, 3)).astype(np.float32)
    om = jnp.asarray([[False, True, True]])
    (mx,), _ = apply_rule(lambda x: jnp.max(x, axis=1), (x,), "reduce_max", om, dependent=(True,))
    expected = np.zeros(x.shape, bool)
    for c in (1, 2):
        expected[0, np.argmax(x[0, :, c]), c] = True
    np.testing.assert_array_equal(mx, expected)


# --- junctions and elementwise -------------------------------------------------------------------


@pytest.mark.parametrize("residual", ["larger", "both"])
def test_residual_add_follows_larger_branch(apply_rule, rng, residual):
    skip = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    res = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    skip[0, 0, 0, 0] = res[0, 0, 0, 0]  # a tie goes to the first operand (skip >= residual)
    om = random_mask(rng, skip.shape, 0.5).at[0, 0, 0, 0].set(True)
    (ms, mr), _ = apply_rule(
        lambda s, r: s + r,
        (skip, res),
        "add",
        om,
        dependent=(True, True),
        options=Options(residual=residual),
    )
    om = np.asarray(om)
    if residual == "larger":
        np.testing.assert_array_equal(ms, om & (skip >= res))
        np.testing.assert_array_equal(mr, om & (skip < res))
    else:
        np.testing.assert_array_equal(ms, om)
        np.testing.assert_array_equal(mr, om)


def test_bias_add_and_relu_pass_through(apply_rule, rng):
    x = rng.normal(size=(1, 6)).astype(np.float32)
    b = rng.normal(size=(1, 6)).astype(np.float32)
    om = random_mask(rng, (1, 6), 0.5)
    (mx, mb), _ = apply_rule(lambda x, b: x + b, (x, b), "add", om, dependent=(True, False))
    np.testing.assert_array_equal(mx, np.asarray(om))
    assert mb is None
    (mx, _), _ = apply_rule(lambda x: jnp.maximum(x, 0.0), (x,), "max", om, dependent=(True,))
    np.testing.assert_array_equal(mx, np.asarray(om))


def test_statistic_operand_is_not_followed(apply_rule, rng):
    """Layer norm's ``x - mean``: the broadcast statistic gets nothing, x gets the whole set."""
    x = rng.normal(size=(1, 6)).astype(np.float32)
    mean = np.full((1, 6), 3.0, np.float32)  # larger than x: the residual rule would pick it
    om = random_mask(rng, (1, 6), 0.5)
    (mx, mm), _ = apply_rule(
        lambda x, m: x - m, (x, mean), "sub", om, dependent=(True, True), statistic=(False, True)
    )
    np.testing.assert_array_equal(mx, np.asarray(om))
    assert mm is None


def test_max_of_two_branches_and_select(apply_rule, rng):
    a = rng.normal(size=(1, 8)).astype(np.float32)
    b = rng.normal(size=(1, 8)).astype(np.float32)
    om = jnp.ones((1, 8), bool)
    (ma, mb), _ = apply_rule(jnp.maximum, (a, b), "max", om, dependent=(True, True))
    np.testing.assert_array_equal(ma, a >= b)
    np.testing.assert_array_equal(mb, a < b)
    pred = a > 0
    (mp, mf, mt), _ = apply_rule(
        lambda p, f, t: lax.select_n(p, f, t),
        (pred, b, a),
        "select_n",
        om,
        dependent=(True, True, True),
    )
    assert mp is None
    np.testing.assert_array_equal(mt, pred)
    np.testing.assert_array_equal(mf, ~pred)


# --- index bookkeeping ---------------------------------------------------------------------------


def test_concatenate_routes_by_channel_range(apply_rule, rng):
    a = rng.normal(size=(1, 3, 3, 2)).astype(np.float32)
    b = rng.normal(size=(1, 3, 3, 4)).astype(np.float32)
    om = random_mask(rng, (1, 3, 3, 6), 0.5)
    (ma, mb), _ = apply_rule(
        lambda a, b: jnp.concatenate([a, b], axis=-1),
        (a, b),
        "concatenate",
        om,
        dependent=(True, True),
    )
    np.testing.assert_array_equal(ma, np.asarray(om)[..., :2])
    np.testing.assert_array_equal(mb, np.asarray(om)[..., 2:])


@pytest.mark.parametrize(
    "fn, prim",
    [
        (lambda x: x.reshape(1, -1), "reshape"),
        (lambda x: jnp.transpose(x, (0, 3, 1, 2)), "transpose"),
        (lambda x: x[:, 1:4:2, ::2], "slice"),
        (lambda x: lax.pad(x, 0.0, ((0, 0, 0), (1, 2, 1), (0, -1, 0), (2, 0, 0))), "pad"),
        (lambda x: x[:, ::-1], "rev"),
        (lambda x: lax.dynamic_slice(x, (0, 1, 2, 0), (1, 2, 2, 2)), "dynamic_slice"),
    ],
)
def test_index_bookkeeping_inverts_the_move(apply_rule, rng, fn, prim):
    """Marking output element i marks exactly the input element it was copied from."""
    x = np.arange(1 * 5 * 4 * 2, dtype=np.float32).reshape(1, 5, 4, 2) + 1.0
    out = np.asarray(fn(jnp.asarray(x)))
    om = random_mask(rng, out.shape, 0.5)
    (mx, *_), _ = apply_rule(fn, (x,), prim, om, dependent=(True,) * 1)
    expected = np.isin(x, out[np.asarray(om)])  # values are unique ids of the input elements
    np.testing.assert_array_equal(mx, expected)


def test_broadcast_marks_the_source(apply_rule):
    v = np.arange(3, dtype=np.float32).reshape(1, 1, 3)
    om = jnp.zeros((1, 4, 3), bool).at[0, 2, 1].set(True)
    (mv,), _ = apply_rule(
        lambda v: jnp.broadcast_to(v, (1, 4, 3)), (v,), "broadcast_in_dim", om, dependent=(True,)
    )
    np.testing.assert_array_equal(mv, np.array([[[False, True, False]]]))


def test_embedding_lookup_marks_tokens(apply_rule, rng):
    """Token ids looking up a table: a token is fixated if any of its embedding units is."""
    table = rng.normal(size=(10, 4)).astype(np.float32)
    ids = np.array([[3, 1, 3, 7, 0]], np.int32)
    om = jnp.zeros((1, 5, 4), bool).at[0, 1, 2].set(True).at[0, 3, 0].set(True)
    dn = lax.GatherDimensionNumbers(
        offset_dims=(2,), collapsed_slice_dims=(0,), start_index_map=(0,)
    )
    (mt, mi), _ = apply_rule(
        lambda t, i: lax.gather(t, i, dn, slice_sizes=(1, 4), mode="promise_in_bounds"),
        (table, ids[..., None]),
        "gather",
        om,
        dependent=(False, True),
    )
    assert mt is None
    np.testing.assert_array_equal(mi, [[[False], [True], [False], [True], [False]]])


def test_gather_of_activations_scatters_back(apply_rule, rng):
    x = rng.normal(size=(1, 6)).astype(np.float32)
    idx = np.array([[4], [0], [4]], np.int32)
    om = jnp.asarray([[True, False, False]])
    dn = lax.GatherDimensionNumbers(
        offset_dims=(0,), collapsed_slice_dims=(1,), start_index_map=(1,)
    )
    (mx, mi), _ = apply_rule(
        lambda x, i: lax.gather(x, i, dn, slice_sizes=(1, 1), mode="promise_in_bounds"),
        (x, idx),
        "gather",
        om,
        dependent=(True, False),
    )
    np.testing.assert_array_equal(mx, [[False, False, False, False, True, False]])
    assert mi is None


# --- masks as points (the form the walker passes between the costly rules) -----------------------


CONV_POSITIONS = ["official", "center", "argmax_contribution", "argmax_activation"]


def as_points(rng, om, extra=5):
    """``om`` as :class:`_rules.Points` in scrambled order, with repeated points and invalid
    entries (pointing anywhere): the set is all that may count."""
    from xaijax.fixations import _rules

    om = np.asarray(om)
    true = np.flatnonzero(om)
    repeats = rng.choice(true, size=min(extra, true.size), replace=True)
    junk = rng.integers(0, om.size, size=extra)
    index = np.concatenate([true, repeats, junk]).astype(np.int32)
    valid = np.concatenate([np.ones(true.size + repeats.size, bool), np.zeros(extra, bool)])
    order = rng.permutation(index.size)
    return _rules.Points(jnp.asarray(index[order]), jnp.asarray(valid[order]), om.shape)


def points_rules(eqns, points, bounds):
    """The walker's rule of each equation (all of one primitive) on a points mask, for each
    bound, in one compiled program; masks out made dense."""
    from xaijax.fixations import _rules

    rule = _rules.walk_rule(eqns[0].primitive)

    def run(in_values, index, valid):
        p = _rules.Points(index, valid, points.shape)
        out = []
        for e in eqns:
            for b in bounds:
                masks = rule(e._replace(in_values=in_values, out_bounds=(b,)), (p,))
                out.append([None if m is None else _rules.dense(m) for m in masks])
        return out

    out = jax.jit(run)(eqns[0].in_values, points.index, points.valid)
    return [[None if m is None else np.asarray(m) for m in masks] for masks in out]


@pytest.mark.parametrize("case", [0, 1, 2])
def test_conv_on_points_matches_reference(apply_rule, ref, rng, case):
    """Points in (repeats, junk, a list longer than the bound: deduplicated and cut to the
    bound) give the NumPy reference's masks for every conv_position, as a boolean mask in does;
    the output is points too."""
    from xaijax.fixations import _rules

    spatial, ks, c_in, c_out, strides, padding, rd, ld, groups = CONV_CASES[case]
    x = rng.normal(size=(1, *spatial, c_in)).astype(np.float32)
    w = rng.normal(size=(*ks, c_in // groups, c_out)).astype(np.float32)
    dn = ("NHWC", "HWIO", "NHWC")

    def conv(x, w):
        return lax.conv_general_dilated(
            x, w, strides, padding, lhs_dilation=ld, rhs_dilation=rd,
            dimension_numbers=dn, feature_group_count=groups,
        )  # fmt: skip

    om = random_mask(rng, jax.eval_shape(conv, x, w).shape, 0.2)
    bound = int(np.sum(np.asarray(om)))
    points = as_points(rng, om)
    options = [Options(conv_position=p) for p in CONV_POSITIONS]
    expected, eqn = apply_rule(
        conv, (x, w), "conv_general_dilated", om, dependent=(True, False), options=options
    )
    eqns = [eqn._replace(options=o) for o in options]
    bounds = (bound, points.index.shape[0])  # cut to the bound / kept as it is
    got = points_rules(eqns, points, bounds)
    for i, (position, (mx, _)) in enumerate(zip(CONV_POSITIONS, expected, strict=True)):
        reference = ref.conv(x[0], w, np.asarray(om[0]), strides, padding, rd, ld, groups, position)
        np.testing.assert_array_equal(mx[0], reference, err_msg=position)
        for j, b in enumerate(bounds):
            gx, gw = got[i * len(bounds) + j]
            assert gw is None
            np.testing.assert_array_equal(gx[0], reference, err_msg=f"{position}, bound {b}")
    e = eqn._replace(out_bounds=(bound,))
    out = jax.eval_shape(
        lambda i, v: _rules.walk_rule(e.primitive)(e, (_rules.Points(i, v, om.shape),))[0],
        points.index,
        points.valid,
    )
    assert isinstance(out, _rules.Points) and len(out.shape) == x.ndim


@pytest.mark.parametrize(
    "fn, prim, n_args",
    [
        (lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME"),
         "reduce_window_max", 1),
        (lambda x: jnp.sum(x, axis=(1, 2)), "reduce_sum", 1),
        (lambda x: jnp.max(x, axis=(1, 3)), "reduce_max", 1),  # axes not contiguous
        (lambda x: jnp.min(x, axis=2), "reduce_min", 1),
        (lambda a, b: a + b, "add", 2),  # residual junction: the larger branch
        (lambda a, b: jnp.maximum(a, b), "max", 2),
        (lambda x: jnp.tanh(x), "tanh", 1),
        (lambda x: x.reshape(1, 6, -1), "reshape", 1),
    ],
)  # fmt: skip
def test_other_rules_on_points_match_reference(apply_rule, ref, rng, fn, prim, n_args):
    """Points in give the NumPy reference's masks, as a boolean mask in does."""
    args = tuple(rng.normal(size=(1, 6, 5, 4)).astype(np.float32) for _ in range(n_args))
    args[-1][0, 0, 0, :2] = args[0][0, 0, 0, :2]  # ties between operands
    out_shape = jax.eval_shape(fn, *args).shape
    om = random_mask(rng, out_shape, 0.3).at[(0,) * len(out_shape)].set(True)
    expected, eqn = apply_rule(fn, args, prim, om, dependent=(True,) * n_args)
    (got,) = points_rules([eqn], as_points(rng, om), [int(np.sum(np.asarray(om)))])
    reference = ref.rule(
        prim,
        [np.asarray(v) for v in eqn.in_values],
        [np.asarray(om)],
        list(eqn.dependent),
        eqn.params,
        list(eqn.flattened),
        eqn.options,
    )
    assert len(got) == len(expected) == len(reference)
    for g, e, r in zip(got, expected, reference, strict=True):
        assert (g is None) == (e is None) == (r is None)
        if r is not None:
            np.testing.assert_array_equal(e, r)
            np.testing.assert_array_equal(g, r)
            assert r.any()
