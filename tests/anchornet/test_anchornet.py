"""AnchorNet: RF calculator, exact contributions, the explainer contract, patch selection."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import anchornet as an
from xaijax import errors

TINY = dict(widths=(4,) * 7, stem_width=4, features=8)


def _normal(shape, seed=0, dtype=np.float32):
    """NumPy draws: ``jax.random`` compiles threefry once per shape (~0.5 s each on CPU)."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(dtype))


def _variables(net, x, seed=1, dtype=None):
    """Random variables of ``net`` for inputs like ``x``, drawn with NumPy on the shapes of
    ``net.init`` (traced by ``eval_shape``: nothing compiles; XLA takes ~0.5 s per parameter to
    compile the initialisers). BatchNorm statistics are random too, so no BN is the identity."""
    rng = np.random.default_rng(seed)

    def draw(path, s):
        name = path[-1].key
        if name == "kernel":  # unit-variance activations: fan_in = all axes but the last
            a = rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1]))
        elif name == "embedding":
            a = rng.normal(size=s.shape)
        elif name in ("scale", "var"):
            a = rng.uniform(0.5, 1.5, size=s.shape)
        else:  # biases, BN means
            a = 0.1 * rng.normal(size=s.shape)
        return jnp.asarray(a, dtype or s.dtype)

    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(net.init, jax.random.key(0), x))


# --- receptive fields ---------------------------------------------------------------------------


def test_code_table_layer_list_and_jaxpr():
    net = an.anchornet(1000, **TINY)
    chain = net.layers()[0]
    progression = [an.receptive_field(chain[: i + 1]).rf[0] for i in range(len(chain))]
    assert progression == [3, 7, 15, 31, 47, 63, 79, 95]
    assert net.receptive_fields(224)[0] == an.ReceptiveField((95,), (8,), (0,), (17,), False)
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    v = jax.eval_shape(net.init, jax.random.key(0), x)
    rf = an.receptive_field(lambda p, xx: net.apply(p, xx, features_only=True)[0], x, v)
    assert (rf.rf, rf.jump, rf.offset, rf.size) == ((95, 95), (8, 8), (0, 0), (17, 17))
    assert rf.global_context  # Squeeze-Excitation
    local = an.anchornet(1000, se=False, **TINY)
    rf = an.receptive_field(lambda p, xx: local.apply(p, xx, features_only=True)[0], x, v)
    assert rf.rf == (95, 95) and not rf.global_context
    code = an.anchornet(1000)  # the code's widths: traced only, nothing compiles
    assert code.layers() == net.layers()
    v = jax.eval_shape(code.init, jax.random.key(0), x)
    rf = an.receptive_field(lambda p, xx: code.apply(p, xx, features_only=True)[0], x, v)
    assert (rf.rf, rf.jump, rf.offset, rf.size) == ((95, 95), (8, 8), (0, 0), (17, 17))


@pytest.fixture(scope="module")
def gradients():
    """Per crop: a two-branch net (RF 15 and 23, no SE), its receptive fields from the jaxpr and
    ``d(sum_k F_b[0, i, j, k]) / dx`` for every branch and location, both crops in one compile."""
    x = _normal((1, 31, 31, 3))
    nets = {
        c: an.anchornet_multi(2, rfs=(15, 23), width=3, stem_width=3, features=2, crop=c)
        for c in an.CROPS
    }
    vs = {c: _variables(net, x) for c, net in nets.items()}
    rfs = {
        c: an.receptive_field(lambda p, xx, n=net: n.apply(p, xx, features_only=True), x, vs[c])
        for c, net in nets.items()
    }

    def features(net, v):
        return lambda xx: tuple(f[0].sum(-1) for f in net.apply(v, xx, features_only=True))

    jac = jax.jit(lambda xx: {c: jax.jacrev(features(nets[c], vs[c]))(xx) for c in nets})(x)
    return {c: (rfs[c], [np.asarray(j) for j in jac[c]]) for c in nets}


@pytest.mark.parametrize("crop", an.CROPS)
def test_rf_is_the_support_of_the_gradient(gradients, crop):
    rfs, jac = gradients[crop]
    assert [r.rf for r in rfs] == [(15, 15), (23, 23)]
    assert [r.jump for r in rfs] == [(4, 4), (4, 4)] and [r.size for r in rfs] == [(5, 5), (3, 3)]
    for b, rf in enumerate(rfs):
        support = np.abs(jac[b][:, :, 0]).sum(-1) > 0  # [h, w, H, W], every location
        assert support.shape == rf.size + (31, 31)
        for i in range(rf.size[0]):
            for j in range(rf.size[1]):
                box = np.zeros((31, 31), bool)
                box[4 * i : 4 * i + rf.rf[0], 4 * j : 4 * j + rf.rf[1]] = True
                assert np.array_equal(support[i, j], box), (crop, b, i, j)  # inside, fills it


def test_se_false_is_strictly_local():
    net = an.anchornet_multi(2, rfs=(15,), width=3, stem_width=3, features=2)
    x = _normal((1, 27, 27, 3))
    v = _variables(net, x)
    y = x.at[:, 20:, :, :].set(5.0)  # rows outside location (0, 0)'s box [0, 14]
    f = jax.jit(lambda xx: net.apply(v, xx, features_only=True)[0][0, 0, 0])
    assert np.array_equal(np.asarray(f(x)), np.asarray(f(y)))


def test_padded_layers_are_refused_by_name():
    class Padded(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(2, (3, 3), padding="VALID", name="ok")(x)
            return nn.Conv(2, (3, 3), padding="SAME", name="padded_conv")(x)

    x = jnp.zeros((1, 9, 9, 3))
    v = jax.eval_shape(Padded().init, jax.random.key(0), x)  # traced, not run
    with pytest.raises(errors.PaddedLayerError, match="padded_conv"):
        an.receptive_field(lambda p, xx: Padded().apply(p, xx), x, v)
    with pytest.raises(errors.PaddedLayerError, match="layer 1"):
        an.receptive_field([(3, 1, 0), (3, 1, 1)])
    pool = lambda xx: nn.max_pool(xx, (2, 2), strides=(2, 2), padding="SAME")  # noqa: E731
    with pytest.raises(errors.PaddedLayerError):
        an.receptive_field(pool, jnp.zeros((1, 5, 5, 1)))
    rf = an.receptive_field(lambda xx: nn.avg_pool(xx, (2, 2), strides=(2, 2)), x)
    assert rf.rf == (2, 2) and rf.jump == (2, 2) and rf.size == (4, 4)


def test_small_input_and_bad_rfs_are_named_errors():
    with pytest.raises(errors.InputShapeError, match="smaller than"):
        an.receptive_field([(3, 2)] * 3, 10)
    net = an.anchornet_multi(2, rfs=(23,), width=3, stem_width=3, features=2)
    v = _variables(net, jnp.zeros((1, 23, 23, 3)))
    with pytest.raises(errors.InputShapeError, match="receptive field"):
        an.contributions(net)(v, jnp.zeros((1, 20, 20, 3)))
    with pytest.raises(errors.InvalidArgumentError, match="7 \\+ 8 n"):
        an.anchornet_multi(2, rfs=(20,))
    with pytest.raises(errors.InvalidArgumentError):
        an.anchornet_text(2, rfs=(0,))


# --- contributions ------------------------------------------------------------------------------


def _image_net(branches):
    if branches == 1:
        return an.anchornet(3, **TINY), 95
    return an.anchornet_multi(3, rfs=(15, 23, 31), width=3, stem_width=3, features=4, se=True), 35


@pytest.fixture(scope="module")
def float64_images():
    """Per branch count: the explainer's output and the logits in float64 on images of the
    smallest height (the width adds a location), both nets in one compile."""
    with jax.enable_x64(True):
        nets, data = {}, {}
        for branches in (1, 3):
            net, size = _image_net(branches)
            x = _normal((2, size, size + 8, 3), dtype=np.float64)
            nets[branches] = (net, an.contributions(net))
            data[branches] = (_variables(net, x, dtype=jnp.float64), x)

        def run(data):  # the explainer's eager path is the contract test's
            return {b: (nets[b][1](*data[b]), nets[b][0].apply(*data[b])) for b in nets}

        out = jax.jit(run)(data)
        return jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("branches", [1, 3])
def test_logit_is_sum_plus_bias_in_float64_image(float64_images, branches):
    out, logits = float64_images[branches]
    assert out.contributions.dtype == np.float64 and logits.dtype == np.float64
    total = out.contributions.sum(axis=(1, 2, 3)) + out.bias
    np.testing.assert_allclose(total, logits, rtol=0, atol=1e-10)
    assert np.abs(logits).max() > 1e-3  # not trivially 0 == 0
    assert out.contributions.shape[:2] == (2, branches)
    np.testing.assert_array_equal(out.target, np.argmax(logits, -1))
    # padded locations of smaller grids hold zeros
    assert np.all(out.contributions[~out.valid] == 0)


def test_logit_is_sum_plus_bias_in_float64_text():
    with jax.enable_x64(True):
        net = an.anchornet_text(3, vocab_size=30, rfs=(1, 4, 5), width=4, features=4)
        tokens = jnp.asarray(np.random.default_rng(0).integers(0, 30, (3, 12)), jnp.int32)
        v = _variables(net, tokens, dtype=jnp.float64)
        explain = an.contributions(net)
        out, logits = jax.jit(lambda p, t: (explain(p, t, jnp.array([0, 1, 2])), net.apply(p, t)))(
            v, tokens
        )
        assert out.contributions.dtype == jnp.float64
        total = out.contributions.sum(axis=(1, 2)) + out.bias
        np.testing.assert_allclose(total, logits, rtol=0, atol=1e-10)
        assert out.location_map.shape == (3, 3, 12) and out.map.shape == (3, 12)
        np.testing.assert_array_equal(out.valid[0].sum(-1), [12, 9, 8])


@pytest.fixture(scope="module")
def multi():
    """A 3-class net with two branches (RF 15 and 23, 4x3 and 2x1 locations at 28x24 px, the
    last row and column outside every box) and Squeeze-Excitation, its variables, a batch, its
    explainer and the explainer jitted: the compiled functions are shared by the tests below."""
    net = an.anchornet_multi(3, rfs=(15, 23), width=3, stem_width=3, features=4, se=True)
    x = _normal((4, 28, 24, 3))
    explain = an.contributions(net)
    return _variables(net, x), x, explain, jax.jit(explain)


def test_pixel_map_averages_over_covering_boxes(multi):
    v, x, explain, _ = multi
    out = explain(v, x[2:3], jnp.array([1]))  # the contract test's single-image compiles
    assert out.location_map.shape == (1, 2, 4, 3)
    np.testing.assert_array_equal(out.valid[0, 1], [[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    for b, (rf, grid) in enumerate([(15, (4, 3)), (23, (2, 1))]):
        loc = np.asarray(out.location_map[0, b])  # jump 4
        total, count = np.zeros((28, 24)), np.zeros((28, 24))
        for i in range(grid[0]):
            for j in range(grid[1]):
                total[4 * i : 4 * i + rf, 4 * j : 4 * j + rf] += loc[i, j]
                count[4 * i : 4 * i + rf, 4 * j : 4 * j + rf] += 1
        assert count[-1].sum() == count[:, -1].sum() == 0  # the uncovered row and column
        expected = np.where(count > 0, total / np.maximum(count, 1), 0)
        np.testing.assert_allclose(out.pixel_maps[0, b], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.map, out.pixel_maps.sum(1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.location_map, out.contributions[..., 1], rtol=0, atol=0)


def test_explainer_contract(multi, assert_no_recompile, compile_counter):
    v, x, explain, jitted = multi
    t = jnp.array([0, 2, 1, 0])
    with compile_counter() as n:
        jax.block_until_ready(explain(v, x, t))
    assert n.count <= 3  # value checks, the run, the output check: not one compile per op
    eager = assert_no_recompile(explain, v, x, t)
    batch = jitted(v, x, t)
    single = [explain(v, x[i : i + 1], t[i : i + 1]) for i in range(4)]
    vm = jax.vmap(lambda xx, tt: explain(v, xx, tt))(
        x.reshape((2, 2) + x.shape[1:]), t.reshape(2, 2)
    )
    assert len(eager) == 7 and eager.target.tolist() == t.tolist()
    for k, a in enumerate(eager):
        np.testing.assert_allclose(a, batch[k], rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(a, jnp.concatenate([s[k] for s in single]), rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(a, vm[k].reshape(a.shape), rtol=2e-5, atol=1e-7)
    assert explain.result == "contributions"


# --- informative patches ------------------------------------------------------------------------


def _code_loop(cam, rf, jump, topk, thr):
    """A NumPy port of the code's loop (papers.md 2(b).4, 2(f).5), inclusive coordinates."""
    h, w = cam.shape
    order = np.argsort(-cam.reshape(-1), kind="stable")
    boxes = []
    for i, idx in enumerate(order):
        r, c = divmod(int(idx), w)
        box = [c * jump, r * jump, c * jump + rf - 1, r * jump + rf - 1]
        if i == 0:  # the code's no-op test: compares the flat index to 0
            pass
        keep = True
        for b in boxes:
            iw = max(0, min(box[2], b[2]) - max(box[0], b[0]) + 1)
            ih = max(0, min(box[3], b[3]) - max(box[1], b[1]) + 1)
            inter = iw * ih
            iou = inter / (rf * rf + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)
            if iou > thr:
                keep = False
        if keep:
            boxes.append(box)
        if len(boxes) == topk:
            break
    return boxes


THRESHOLDS = (0.0, 0.3, 0.5, 1.0)


@pytest.fixture(scope="module")
def code_loop_case():
    """Two 6x5 maps (no ties; the second with one dominant location) and their patches at every
    threshold, from one jitted function (one compile instead of one per threshold)."""
    rng = np.random.default_rng(0)
    maps = rng.permutation(2 * 6 * 5).reshape(2, 1, 6, 5).astype(np.float32)
    maps[1, 0, 2, 2] = 1000.0
    run = jax.jit(
        lambda m: [
            an.informative_patches(m, rf=9, jump=2, topk=4, iou_threshold=thr) for thr in THRESHOLDS
        ]
    )
    return maps, dict(zip(THRESHOLDS, run(maps), strict=True))


@pytest.mark.parametrize("thr", THRESHOLDS)
def test_patches_match_the_code_loop(code_loop_case, thr):
    maps, results = code_loop_case
    got = results[thr]
    for b in range(2):
        expected = _code_loop(maps[b, 0], 9, 2, 4, thr)
        n = int(got.valid[b].sum())
        assert got.boxes[b, :n].tolist() == expected
        assert np.all(np.diff(np.asarray(got.scores[b, :n])) <= 0)
    assert float(got.scores[1, 0]) == 1.0 and got.boxes[1, 0].tolist() == [4, 4, 12, 12]


def test_patches_merge_branches_by_normalised_score_and_spans():
    maps = np.zeros((1, 2, 4, 4), np.float32)
    maps[0, 0, 1, 1], maps[0, 0, 3, 3] = 10.0, 4.0  # normalised 1.0, 0.4
    maps[0, 1, 0, 2], maps[0, 1, 2, 0] = 2.0, 1.8  # normalised 1.0, 0.9
    valid = np.ones_like(maps, bool)
    valid[0, 1, 3, :] = False
    spans = jnp.array([[[0.0, 3.0, 1.0, 2.0]]])
    p, spans = jax.jit(  # one compile
        lambda m, ok, sp: (
            an.informative_patches(m, rf=(5, 9), jump=2, topk=2, iou_threshold=1.0, valid=ok),
            an.informative_patches(sp, rf=3, jump=1, topk=2),
        )
    )(maps, valid, spans)
    assert p.branch[0].tolist() == [0, 1, 1, 0]
    np.testing.assert_allclose(p.scores[0], [1.0, 1.0, 0.9, 0.4])
    assert p.boxes[0, 2].tolist() == [0, 4, 8, 12]
    assert spans.boxes[0].tolist() == [[1, 3], [3, 5]]
    # merge="raw" compares the location scores across branches: 10, 4, 2, 1.8
    raw = an.informative_patches(
        maps, rf=(5, 9), jump=2, topk=2, iou_threshold=1.0, valid=valid, merge="raw"
    )
    assert raw.branch[0].tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(raw.raw_scores[0], [10.0, 4.0, 2.0, 1.8])
    np.testing.assert_allclose(raw.scores[0], [1.0, 0.4, 1.0, 0.9])


def test_patch_argument_errors():
    maps = jnp.zeros((1, 1, 3, 3))
    with pytest.raises(errors.InvalidArgumentError, match="topk"):
        an.informative_patches(maps, rf=3, jump=1, topk=0)
    for thr in (-0.1, 1.5):
        with pytest.raises(errors.InvalidArgumentError, match="iou_threshold"):
            an.informative_patches(maps, rf=3, jump=1, iou_threshold=thr)
    with pytest.raises(errors.InvalidArgumentError, match="branches"):
        an.informative_patches(maps, rf=(3, 5), jump=1)
    with pytest.raises(errors.InvalidArgumentError, match="merge"):
        an.informative_patches(maps, rf=3, jump=1, merge="max")


def test_bad_sizes_fail_at_construction_and_nan_maps_are_named_errors():
    for build in (
        lambda: an.anchornet(0),
        lambda: an.anchornet(3, features=-1),
        lambda: an.anchornet(3, crop="top"),
        lambda: an.anchornet_multi(0, rfs=(15,)),
        lambda: an.anchornet_multi(2, rfs=(15,), width=0),
        lambda: an.anchornet_text(0),
        lambda: an.AnchorNet(0),
        lambda: an.AnchorNetText(2, embed_dim=0),
    ):
        with pytest.raises(errors.InvalidArgumentError, match="positive integer|crop"):
            build()
    with pytest.raises(errors.NonFiniteInputError, match="location_maps"):
        an.informative_patches(jnp.full((1, 4, 4), jnp.nan), rf=3, jump=1)  # the audit's call
    with pytest.raises(errors.NonFiniteInputError, match="location_maps"):
        an.informative_patches(jnp.zeros((1, 1, 3, 3)).at[0, 0, 1, 1].set(jnp.inf), rf=3, jump=1)
