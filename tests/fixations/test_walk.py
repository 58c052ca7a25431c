"""The walker end to end on small Flax models, against the authors' algorithm written in NumPy."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors
from xaijax.fixations import fixations

SAME3 = ((1, 1), (1, 1))


def relu(v):
    return np.maximum(v, 0.0)


def p_np(params, *path):
    node = params
    for k in path:
        node = node[k]
    return np.asarray(node, np.float64)


# --- models ---------------------------------------------------------------------------------------


class VGGLike(nn.Module):
    """conv - relu - max pool - conv - relu - flatten - dense - relu - dense."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="c1")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(5, (3, 3), name="c2")(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(8, name="d1")(x))
        return nn.Dense(3, name="d2")(x)


@pytest.fixture(scope="module")
def vgg_setup(ref, init):
    model = VGGLike()
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(3, 8, 8, 3)), jnp.float32)
    params = init(model, x, 0)

    def reference(xi, target=None, position="official"):
        w1, b1 = p_np(params, "c1", "kernel"), p_np(params, "c1", "bias")
        w2, b2 = p_np(params, "c2", "kernel"), p_np(params, "c2", "bias")
        w3, b3 = p_np(params, "d1", "kernel"), p_np(params, "d1", "bias")
        w4, b4 = p_np(params, "d2", "kernel"), p_np(params, "d2", "bias")
        a1 = relu(ref.np_conv(xi, w1, b1, (1, 1), SAME3))
        p1 = ref.np_pool(a1, (2, 2), (2, 2), ((0, 0), (0, 0)))
        a2 = relu(ref.np_conv(p1, w2, b2, (1, 1), SAME3))
        f = a2.reshape(-1)
        a3 = relu(f @ w3 + b3)
        logits = a3 @ w4 + b4
        t = int(np.argmax(logits)) if target is None else target
        m = np.zeros(3, bool)
        m[t] = True
        m = ref.dense(a3, w4, m, volume=False)  # fc <- fc: every positive contribution
        m = ref.dense(f, w3, m, volume=True)  # fc <- volume: single arg-max per neuron
        m = ref.conv(p1, w2, m.reshape(a2.shape), (1, 1), SAME3, (1, 1), (1, 1), 1, position)
        m = ref.pool(a1, m, (2, 2, 1), (2, 2, 1), ((0, 0),) * 3, "argmax")
        m = ref.conv(xi, w1, m, (1, 1), SAME3, (1, 1), (1, 1), 1, position)
        return m.any(-1), logits

    explain = fixations(lambda p, x: model.apply({"params": p}, x))  # shared: compiled once
    return model, params, x, reference, explain


def test_vgg_like_matches_official_reference(vgg_setup):
    model, params, x, reference, explain = vgg_setup
    got = np.asarray(explain(params, x))
    logits = np.asarray(model.apply({"params": params}, x))
    for b in range(x.shape[0]):
        expected, ref_logits = reference(np.asarray(x[b], np.float64))
        np.testing.assert_allclose(ref_logits, logits[b], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(got[b], expected)
        assert got[b].any()


def test_vgg_like_every_target_and_pytorch_variant(vgg_setup):
    model, params, x, reference, _ = vgg_setup
    apply_fn = lambda p, x: model.apply({"params": p}, x)  # noqa: E731
    explain = fixations(apply_fn, conv_position="argmax_contribution")
    for t in range(3):
        got = np.asarray(explain(params, x[:1], jnp.array([t])))
        expected, _ = reference(np.asarray(x[0], np.float64), t, "argmax_contribution")
        np.testing.assert_array_equal(got[0], expected)


class ResidualGAP(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(4, (3, 3), name="c1")(x))
        r = nn.Conv(4, (3, 3), name="c2")(h)
        o = nn.relu(h + r)
        return nn.Dense(3, name="head")(jnp.mean(o, axis=(1, 2)))


@pytest.mark.parametrize("residual", ["larger", "both"])
def test_residual_block_matches_reference(ref, init, residual):
    model = ResidualGAP()
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 6, 6, 2)), jnp.float32)
    params = init(model, x, 4)
    got = np.asarray(
        fixations(lambda p, x: model.apply({"params": p}, x), residual=residual)(params, x)
    )
    w1, b1 = p_np(params, "c1", "kernel"), p_np(params, "c1", "bias")
    w2, b2 = p_np(params, "c2", "kernel"), p_np(params, "c2", "bias")
    wd, bd = p_np(params, "head", "kernel"), p_np(params, "head", "bias")
    for b in range(2):
        xi = np.asarray(x[b], np.float64)
        h = relu(ref.np_conv(xi, w1, b1, (1, 1), SAME3))
        r = ref.np_conv(h, w2, b2, (1, 1), SAME3)
        o = relu(h + r)
        g = o.mean((0, 1))
        m = np.zeros(3, bool)
        m[np.argmax(g @ wd + bd)] = True
        m = ref.gap(o, ref.dense(g, wd, m, volume=False))
        if residual == "larger":  # papers.md 6(b).6: skip >= residual -> follow the skip
            m_skip, m_res = m & (h >= r), m & (h < r)
        else:
            m_skip, m_res = m, m
        # c2 lies inside the residual branch: the authors' ResNet rule (6(b).6) moves to the
        # largest activation of the chosen channel in the window, not to the window centre.
        m_h = m_skip | ref.conv(h, w2, m_res, (1, 1), SAME3, (1, 1), (1, 1), 1, "argmax_activation")
        expected = ref.conv(xi, w1, m_h, (1, 1), SAME3, (1, 1), (1, 1), 1, "official")
        np.testing.assert_array_equal(got[b], expected.any(-1))


class InceptionLike(nn.Module):
    @nn.compact
    def __call__(self, x):
        a = nn.relu(nn.Conv(3, (3, 3), name="stem")(x))
        b1 = nn.relu(nn.Conv(2, (1, 1), name="b1")(a))
        b2 = nn.relu(nn.Conv(3, (3, 3), name="b2")(a))
        b3 = nn.max_pool(a, (3, 3), (1, 1), padding="SAME")
        cat = jnp.concatenate([b1, b2, b3], axis=-1)
        return nn.Dense(4, name="head")(jnp.mean(cat, axis=(1, 2)))


def test_inception_like_concat_matches_reference(ref, init):
    model = InceptionLike()
    x = jnp.asarray(np.random.default_rng(5).uniform(size=(2, 7, 7, 3)), jnp.float32)
    params = init(model, x, 6)
    got = np.asarray(fixations(lambda p, x: model.apply({"params": p}, x))(params, x))
    w = {k: (p_np(params, k, "kernel"), p_np(params, k, "bias")) for k in params}
    for b in range(2):
        xi = np.asarray(x[b], np.float64)
        a = relu(ref.np_conv(xi, *w["stem"], (1, 1), SAME3))
        b1 = relu(ref.np_conv(a, *w["b1"], (1, 1), ((0, 0), (0, 0))))
        b2 = relu(ref.np_conv(a, *w["b2"], (1, 1), SAME3))
        b3 = ref.np_pool(a, (3, 3), (1, 1), SAME3)
        cat = np.concatenate([b1, b2, b3], -1)
        g = cat.mean((0, 1))
        m = np.zeros(4, bool)
        m[np.argmax(g @ w["head"][0] + w["head"][1])] = True
        m = ref.gap(cat, ref.dense(g, w["head"][0], m, volume=False))
        m_a = ref.conv(
            a, w["b1"][0], m[..., :2], (1, 1), ((0, 0), (0, 0)), (1, 1), (1, 1), 1, "official"
        )
        m_a |= ref.conv(a, w["b2"][0], m[..., 2:5], (1, 1), SAME3, (1, 1), (1, 1), 1, "official")
        m_a |= ref.pool(a, m[..., 5:], (3, 3, 1), (1, 1, 1), (*SAME3, (0, 0)), "argmax")
        expected = ref.conv(xi, w["stem"][0], m_a, (1, 1), SAME3, (1, 1), (1, 1), 1, "official")
        np.testing.assert_array_equal(got[b], expected.any(-1))


class TextCNN(nn.Module):
    @nn.compact
    def __call__(self, ids):
        e = nn.Embed(20, 4, name="embed")(ids)
        z = nn.relu(nn.Conv(5, (3,), name="conv")(e))
        return nn.Dense(3, name="head")(jnp.max(z, axis=1))


def test_text_cnn_with_embedding_matches_reference(ref, init):
    model = TextCNN()
    ids = jnp.asarray(np.random.default_rng(7).integers(0, 20, size=(3, 9)), jnp.int32)
    params = init(model, ids, 8)
    got = np.asarray(fixations(lambda p, x: model.apply({"params": p}, x))(params, ids))
    assert got.shape == (3, 9) and got.dtype == bool
    table = p_np(params, "embed", "embedding")
    wc, bc = p_np(params, "conv", "kernel"), p_np(params, "conv", "bias")
    wd, bd = p_np(params, "head", "kernel"), p_np(params, "head", "bias")
    for b in range(3):
        e = table[np.asarray(ids[b])]
        z = relu(ref.np_conv(e, wc, bc, (1,), ((1, 1),)))
        g = z.max(0)
        m = np.zeros(3, bool)
        m[np.argmax(g @ wd + bd)] = True
        m = ref.dense(g, wd, m, volume=False)
        m_z = np.zeros(z.shape, bool)
        for c in np.flatnonzero(m):
            m_z[np.argmax(z[:, c]), c] = True
        m_e = ref.conv(e, wc, m_z, (1,), ((1, 1),), (1,), (1,), 1, "official")
        np.testing.assert_array_equal(got[b], m_e.any(-1))


class Video3D(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(
            nn.Conv(3, (3, 3, 3), strides=(1, 2, 2), padding=((1, 1), (1, 1), (1, 1)), name="c")(x)
        )
        return nn.Dense(2, name="head")(jnp.mean(x, axis=(1, 2, 3)))


def test_3d_conv_matches_reference(ref, init):
    model = Video3D()
    x = jnp.asarray(np.random.default_rng(9).uniform(size=(2, 4, 6, 6, 2)), jnp.float32)
    params = init(model, x, 10)
    got = np.asarray(fixations(lambda p, x: model.apply({"params": p}, x))(params, x))
    assert got.shape == (2, 4, 6, 6)
    wc, bc = p_np(params, "c", "kernel"), p_np(params, "c", "bias")
    wd, bd = p_np(params, "head", "kernel"), p_np(params, "head", "bias")
    pad = ((1, 1),) * 3
    for b in range(2):
        xi = np.asarray(x[b], np.float64)
        a = relu(ref.np_conv(xi, wc, bc, (1, 2, 2), pad))
        g = a.mean((0, 1, 2))
        m = np.zeros(2, bool)
        m[np.argmax(g @ wd + bd)] = True
        m = ref.gap(a, ref.dense(g, wd, m, volume=False))
        expected = ref.conv(xi, wc, m, (1, 2, 2), pad, (1, 1, 1), (1, 1, 1), 1, "official")
        np.testing.assert_array_equal(got[b], expected.any(-1))


# --- properties of the explainer ---------------------------------------------------------------


def test_jit_wrapped_model_batch_and_no_recompile(vgg_setup, assert_no_recompile):
    model, params, x, _, plain = vgg_setup
    jitted_model = fixations(jax.jit(lambda p, x: model.apply({"params": p}, x)))
    batched = np.asarray(plain(params, x))
    np.testing.assert_array_equal(np.asarray(jitted_model(params, x)), batched)
    per_example = np.stack([np.asarray(plain(params, x[i : i + 1]))[0] for i in range(3)])
    np.testing.assert_array_equal(per_example, batched)
    # Wrapped by the caller in jit and vmap.
    np.testing.assert_array_equal(np.asarray(jax.jit(plain)(params, x)), batched)
    vm = jax.vmap(plain, in_axes=(None, 0))(params, x[:, None])
    np.testing.assert_array_equal(np.asarray(vm)[:, 0], batched)
    assert_no_recompile(plain, params, x)


def test_target_none_is_the_predicted_class(vgg_setup):
    model, params, x, _, explain = vgg_setup
    pred = jnp.argmax(model.apply({"params": params}, x), axis=-1)
    np.testing.assert_array_equal(explain(params, x), explain(params, x, pred))
    other = (pred + 1) % 3
    assert not np.array_equal(explain(params, x, other), explain(params, x, pred))


def test_channel_reduction_modes(vgg_setup):
    model, params, x, _, explain = vgg_setup
    apply_fn = lambda p, x: model.apply({"params": p}, x)  # noqa: E731
    full = np.asarray(fixations(apply_fn, channel_reduction="none")(params, x))
    counts = np.asarray(fixations(apply_fn, channel_reduction="count")(params, x))
    anym = np.asarray(explain(params, x))
    assert full.shape == x.shape and counts.dtype == np.int32
    np.testing.assert_array_equal(counts, full.sum(-1))
    np.testing.assert_array_equal(anym, full.any(-1))


def test_no_gradient_is_computed(vgg_setup, monkeypatch, init):
    """No VJP/transpose machinery runs, and the program holds no transposed forward op."""
    from jax._src.interpreters import ad

    model, params, x, _, _ = vgg_setup

    class StridedNet(nn.Module):  # a strided conv: its transpose would be an lhs-dilated conv
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3), strides=(2, 2), name="c")(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
            return nn.Dense(3, name="d")(x.reshape(x.shape[0], -1))

    net = StridedNet()
    p2 = init(net, x, 0)
    explain = fixations(lambda p, x: net.apply({"params": p}, x))

    def forbidden(*args, **kwargs):
        raise AssertionError("a gradient / transpose was computed")

    for name in ("backward_pass", "linear_transpose", "vjp", "jvp", "linearize"):
        if hasattr(ad, name):
            monkeypatch.setattr(ad, name, forbidden)
    for name in ("vjp", "grad", "value_and_grad", "jvp", "linearize", "linear_transpose"):
        monkeypatch.setattr(jax, name, forbidden)
    jaxpr = jax.make_jaxpr(lambda p, x: explain(p, x))(p2, x)
    assert np.asarray(explain(p2, x)).any()

    def prims(j, acc):
        for e in j.eqns:
            acc.append(e)
            for v in e.params.values():
                if isinstance(v, jax.extend.core.ClosedJaxpr):
                    prims(v.jaxpr, acc)
        return acc

    eqns = prims(jaxpr.jaxpr, [])
    names = {e.primitive.name for e in eqns}
    assert "select_and_scatter_add" not in names and "select_and_gather_add" not in names
    assert not any(n.endswith("_transpose") for n in names), names
    for e in eqns:
        if e.primitive.name == "conv_general_dilated":
            assert tuple(e.params["lhs_dilation"]) == (1, 1)  # no transposed convolution
            assert e.params["batch_group_count"] == 1  # no weight-gradient convolution


def test_randomised_weights_change_the_fixations(vgg_setup, init):
    model, params, x, _, explain = vgg_setup
    other = init(model, x, 123)
    a, b = np.asarray(explain(params, x)), np.asarray(explain(other, x))
    assert (a != b).any(axis=(1, 2)).all()


def test_degenerate_inputs_give_valid_maps(vgg_setup):
    model, params, x, _, explain = vgg_setup
    for xx in (jnp.zeros_like(x), jnp.full_like(x, 1e30)):
        m = np.asarray(explain(params, xx))
        assert m.dtype == bool and m.shape == (3, 8, 8)
    zero_params = jax.tree_util.tree_map(jnp.zeros_like, params)
    assert np.asarray(explain(zero_params, x)).shape == (3, 8, 8)


def test_model_without_path_to_input_gives_empty_map():
    explain = fixations(lambda p, x: jnp.broadcast_to(p, (x.shape[0], 3)))
    m = np.asarray(explain(jnp.arange(3.0), jnp.ones((2, 4, 4, 1))))
    assert m.shape == (2, 4, 4) and not m.any()


# --- errors ---------------------------------------------------------------------------------------


def test_unsupported_primitive_names_it_and_register_rule_fixes_it():
    from jax.extend.core import Primitive
    from jax.interpreters import batching, mlir

    double = Primitive("xaijax_test_double")
    double.def_impl(lambda x: 2 * x)
    double.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))
    batching.primitive_batchers[double] = lambda args, dims: (double.bind(*args), dims[0])
    mlir.register_lowering(double, mlir.lower_fun(lambda x: 2 * x, multiple_results=False))

    def apply_fn(w, x):
        return jnp.mean(double.bind(x), axis=(1, 2)) @ w

    w = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 5, 5, 2)), jnp.float32)
    explain = fixations(apply_fn)
    with pytest.raises(errors.UnsupportedPrimitiveError, match="xaijax_test_double") as e:
        explain(w, x)
    assert "register_rule" in str(e.value)

    from xaijax.fixations import register_rule

    register_rule(double, lambda eqn, om: [om[0]])
    got = np.asarray(fixations(apply_fn)(w, x))
    expected = np.asarray(fixations(lambda w, x: jnp.mean(2 * x, axis=(1, 2)) @ w)(w, x))
    np.testing.assert_array_equal(got, expected)


def test_control_flow_is_reported_as_unsupported():
    def apply_fn(w, x):
        h = jax.lax.while_loop(lambda h: h[0, 0] < 0, jnp.tanh, jnp.mean(x, axis=(1, 2)))
        return h @ w

    with pytest.raises(errors.UnsupportedPrimitiveError, match="while"):
        fixations(apply_fn)(jnp.ones((2, 3)), jnp.ones((1, 4, 4, 2)))


def test_bad_arguments_raise_named_errors(vgg_setup):
    model, params, x, _, explain = vgg_setup
    with pytest.raises(errors.NonFiniteInputError, match="`x`"):
        explain(params, x.at[0, 0, 0, 0].set(jnp.nan))
    with pytest.raises(errors.TargetOutOfRangeError, match="class index 3"):
        explain(params, x, jnp.array([0, 1, 3]))
    with pytest.raises(errors.BatchMismatchError, match="target"):
        explain(params, x, jnp.array([0, 1]))
    with pytest.raises(errors.InputShapeError, match="batch"):
        explain(params, x[0, 0, 0])
    with pytest.raises(errors.InputDTypeError, match="floating"):
        explain(params, x > 0.5)
    with pytest.raises(errors.InvalidArgumentError, match="variant"):
        fixations(lambda p, x: x, variant="caffe")
    with pytest.raises(errors.InvalidArgumentError, match="conv_position"):
        fixations(lambda p, x: x, conv_position="corner")
    with pytest.raises(errors.InvalidArgumentError, match="channel_reduction"):
        fixations(lambda p, x: x, channel_reduction="sum")
    with pytest.raises(errors.InvalidArgumentError, match="apply_fn"):
        fixations(None)
    # The model's output is checked once, from eval_shape, before any tracing of the walk.
    with pytest.raises(errors.ModelOutputError, match=r"\[B, C\]"):
        fixations(lambda p, x: x)(params, x)
    with pytest.raises(errors.ModelOutputError, match="head"):
        fixations(lambda p, x: (model.apply({"params": p}, x), x))(params, x)
    with pytest.raises(errors.InvalidArgumentError, match="score"):
        fixations(xaijax.model(lambda p, x: x, score=jax.nn.sigmoid))
    from xaijax.fixations import register_rule, supported_primitives

    with pytest.raises(errors.InvalidArgumentError, match="primitive"):
        register_rule(3, lambda eqn, om: [])
    with pytest.raises(errors.InvalidArgumentError, match="rule"):
        register_rule("my_prim", "not a function")
    assert {"conv_general_dilated", "dot_general", "reduce_window_max", "concatenate"} <= set(
        supported_primitives()
    )


@pytest.mark.parametrize("variant", ["official", "pytorch"])
def test_compact_masks_carried_between_rules(ref, init, variant):
    """Masks travel between the costly rules as lists of points (merged at the forks of two
    residual blocks, deduplicated and cut to the static bound): the walk equals the literal
    reference, for the authors' rules and the port's."""
    from xaijax import models
    from xaijax.fixations import VARIANTS

    model = models.get_model("resnet", 5, stem_features=4, widths=(8, 8), strides=(1, 2))
    x = jnp.asarray(np.random.default_rng(5).uniform(size=(2, 8, 8, 3)), jnp.float32)
    params = init(model, x, 5)
    apply_fn = models.apply_fn(model)
    got = np.asarray(fixations(apply_fn, variant=variant, channel_reduction="none")(params, x))
    for b in range(x.shape[0]):
        expected = ref.walk(apply_fn, params, x[b : b + 1], options=VARIANTS[variant])[0]
        np.testing.assert_array_equal(got[b], expected)
        assert got[b].any()


def test_registered_rule_replaces_builtin_and_sees_boolean_arrays():
    """A rule registered for a primitive that has a built-in rule wins, and is given boolean
    arrays even where the built-in rules hand masks on as points (after the global pooling)."""
    from xaijax.fixations import _rules, register_rule

    seen = []

    def tanh_rule(eqn, out_masks):
        seen.append(type(out_masks[0]))
        assert out_masks[0].dtype == jnp.bool_ and out_masks[0].shape == eqn.in_values[0].shape
        return [jnp.zeros_like(out_masks[0])]  # follows nothing: an empty map

    def apply_fn(w, x):
        return jnp.mean(jnp.tanh(x), axis=(1, 2)) @ w

    w = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 5, 5, 2)), jnp.float32)
    assert np.asarray(fixations(apply_fn)(w, x)).any()
    register_rule("tanh", tanh_rule)
    try:
        got = np.asarray(fixations(apply_fn)(w, x))
    finally:
        _rules._USER.pop("tanh")
    assert seen and all(t is not _rules.Points for t in seen)
    assert not got.any()


# --- the Core v2 contract -------------------------------------------------------------------------


def test_returns_an_explainer_recording_its_options(vgg_setup):
    model, params, x, _, explain = vgg_setup
    assert isinstance(explain, xaijax.Explainer)
    assert explain.name == "fixations" and explain.result == "spatial_map"
    assert explain.integer_inputs and not explain.stochastic
    opts = dict(explain.options)
    assert opts["variant"] == "official" and opts["channel_reduction"] == "any"
    assert opts["conv_position"] == "official" and opts["residual"] == "larger"
    none = fixations(explain.model, variant="pytorch", channel_reduction="none")
    assert none.result == "map" and dict(none.options)["conv_position"] == "argmax_contribution"


def test_linen_module_model_and_heads_and_probability_scores(vgg_setup):
    """A Linen module, a Model, a head picked out of a dict of outputs, and the probability and
    log-probability scores all backtrack from the same class neuron (the authors start before
    the softmax), so they give the bare apply_fn's fixations."""
    model, params, x, _, explain = vgg_setup
    expected = np.asarray(explain(params, x))
    t = jnp.array([2, 0, 1])
    expected_t = np.asarray(explain(params, x, t))
    two_heads = xaijax.model(
        lambda p, x: {"aux": -model.apply({"params": p}, x), "cls": model.apply({"params": p}, x)},
        head="cls",
    )
    for m in (
        model,
        xaijax.from_linen(model),
        xaijax.from_linen(model, score="probability"),
        xaijax.from_linen(model, score="log_probability"),
        two_heads,
    ):
        got = fixations(m)
        np.testing.assert_array_equal(np.asarray(got(params, x)), expected)
        np.testing.assert_array_equal(np.asarray(got(params, x, t)), expected_t)
    # The other head is another model: the class -logit is walked back, not the first head.
    aux = fixations(two_heads.with_head("aux"))(params, x)
    assert not np.array_equal(np.asarray(aux), expected)
