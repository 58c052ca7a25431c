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


@pytest.mark.parametrize("crop", ["bottom_right", "centred"])
def test_rf_is_the_support_of_the_gradient(crop):
    net = an.anchornet_multi(2, rfs=(15, 23), width=3, stem_width=3, features=2, crop=crop)
    x = jax.random.normal(jax.random.key(0), (1, 31, 31, 3))
    v = net.init(jax.random.key(1), x)
    rfs = an.receptive_field(lambda p, xx: net.apply(p, xx, features_only=True), x, v)
    assert [r.rf for r in rfs] == [(15, 15), (23, 23)] and rfs[0].jump == (4, 4)
    for b, rf in enumerate(rfs):
        for i, j in [(0, 0), (1, 2), (rf.size[0] - 1, rf.size[1] - 1)]:
            g = jax.grad(
                lambda xx, b=b, i=i, j=j: net.apply(v, xx, features_only=True)[b][0, i, j].sum()
            )(x)
            support = np.abs(np.asarray(g[0])).sum(-1) > 0
            box = np.zeros_like(support)
            box[4 * i : 4 * i + rf.rf[0], 4 * j : 4 * j + rf.rf[1]] = True
            assert np.array_equal(support, box), (crop, b, i, j)  # inside and fills it


def test_se_false_is_strictly_local():
    net = an.anchornet_multi(2, rfs=(15,), width=3, stem_width=3, features=2)
    x = jax.random.normal(jax.random.key(0), (1, 27, 27, 3))
    v = net.init(jax.random.key(1), x)
    y = x.at[:, 20:, :, :].set(5.0)  # rows outside location (0, 0)'s box [0, 14]
    f = lambda xx: net.apply(v, xx, features_only=True)[0][0, 0, 0]  # noqa: E731
    assert np.array_equal(np.asarray(f(x)), np.asarray(f(y)))


def test_padded_layers_are_refused_by_name():
    class Padded(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(2, (3, 3), padding="VALID", name="ok")(x)
            return nn.Conv(2, (3, 3), padding="SAME", name="padded_conv")(x)

    x = jnp.zeros((1, 9, 9, 3))
    v = Padded().init(jax.random.key(0), x)
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
    v = net.init(jax.random.key(0), jnp.zeros((1, 23, 23, 3)))
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


@pytest.mark.parametrize("branches", [1, 3])
def test_logit_is_sum_plus_bias_in_float64_image(branches):
    with jax.enable_x64(True):
        net, size = _image_net(branches)
        x = jax.random.normal(jax.random.key(0), (2, size, size + 8, 3), jnp.float64)
        v = net.init(jax.random.key(1), x)
        v = jax.tree.map(lambda a: a.astype(jnp.float64), v)
        out = an.contributions(net)(v, x)
        logits = net.apply(v, x)
        assert out.contributions.dtype == jnp.float64
        total = out.contributions.sum(axis=(1, 2, 3)) + out.bias
        np.testing.assert_allclose(total, logits, rtol=0, atol=1e-10)
        assert out.contributions.shape[:2] == (2, branches)
        np.testing.assert_array_equal(out.target, jnp.argmax(logits, -1))
        # padded locations of smaller grids hold zeros
        assert np.all(np.asarray(out.contributions)[~np.asarray(out.valid)] == 0)


def test_logit_is_sum_plus_bias_in_float64_text():
    with jax.enable_x64(True):
        net = an.anchornet_text(3, vocab_size=30, rfs=(1, 4, 5), width=4, features=4)
        tokens = jax.random.randint(jax.random.key(0), (3, 12), 0, 30)
        v = net.init(jax.random.key(1), tokens)
        v = jax.tree.map(lambda a: a.astype(jnp.float64), v)
        out = an.contributions(net)(v, tokens, jnp.array([0, 1, 2]))
        total = out.contributions.sum(axis=(1, 2)) + out.bias
        np.testing.assert_allclose(total, net.apply(v, tokens), rtol=0, atol=1e-10)
        assert out.location_map.shape == (3, 3, 12) and out.map.shape == (3, 12)
        np.testing.assert_array_equal(out.valid[0].sum(-1), [12, 9, 8])


def test_pixel_map_averages_over_covering_boxes():
    net = an.anchornet_multi(2, rfs=(15,), width=3, stem_width=3, features=2)
    x = jax.random.normal(jax.random.key(0), (1, 24, 20, 3))
    v = net.init(jax.random.key(1), x)
    out = an.contributions(net)(v, x, jnp.array([1]))
    loc = np.asarray(out.location_map[0, 0])  # [3, 2] at jump 4, RF 15
    total, count = np.zeros((24, 20)), np.zeros((24, 20))
    for i in range(loc.shape[0]):
        for j in range(loc.shape[1]):
            total[4 * i : 4 * i + 15, 4 * j : 4 * j + 15] += loc[i, j]
            count[4 * i : 4 * i + 15, 4 * j : 4 * j + 15] += 1
    expected = np.where(count > 0, total / np.maximum(count, 1), 0)
    np.testing.assert_allclose(out.map[0], expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(out.location_map, out.contributions[..., 1], rtol=0, atol=0)


def test_explainer_contract(assert_no_recompile):
    net = an.anchornet_multi(3, rfs=(15, 23), width=3, stem_width=3, features=4, se=True)
    x = jax.random.normal(jax.random.key(0), (4, 27, 27, 3))
    v = net.init(jax.random.key(1), x)
    explain = an.contributions(net)
    t = jnp.array([0, 2, 1, 0])
    eager = assert_no_recompile(explain, v, x, t)
    jitted = jax.jit(lambda p, xx, tt: explain(p, xx, tt))(v, x, t)
    single = [explain(v, x[i : i + 1], t[i : i + 1]) for i in range(4)]
    vm = jax.vmap(lambda xx, tt: explain(v, xx, tt))(x.reshape(2, 2, 27, 27, 3), t.reshape(2, 2))
    for k, a in enumerate(eager):
        np.testing.assert_allclose(a, jitted[k], rtol=2e-5, atol=1e-7)
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


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 1.0])
def test_patches_match_the_code_loop(thr):
    rng = np.random.default_rng(0)
    maps = rng.permutation(2 * 6 * 5).reshape(2, 1, 6, 5).astype(np.float32)  # no ties
    maps[1, 0, 2, 2] = 1000.0
    got = jax.jit(lambda m: an.informative_patches(m, rf=9, jump=2, topk=4, iou_threshold=thr))(
        maps
    )
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
    p = an.informative_patches(maps, rf=(5, 9), jump=2, topk=2, iou_threshold=1.0, valid=valid)
    assert p.branch[0].tolist() == [0, 1, 1, 0]
    np.testing.assert_allclose(p.scores[0], [1.0, 1.0, 0.9, 0.4])
    assert p.boxes[0, 2].tolist() == [0, 4, 8, 12]
    spans = an.informative_patches(jnp.array([[[0.0, 3.0, 1.0, 2.0]]]), rf=3, jump=1, topk=2)
    assert spans.boxes[0].tolist() == [[1, 3], [3, 5]]


def test_patch_argument_errors():
    maps = jnp.zeros((1, 1, 3, 3))
    with pytest.raises(errors.InvalidArgumentError, match="topk"):
        an.informative_patches(maps, rf=3, jump=1, topk=0)
    for thr in (-0.1, 1.5):
        with pytest.raises(errors.InvalidArgumentError, match="iou_threshold"):
            an.informative_patches(maps, rf=3, jump=1, iou_threshold=thr)
    with pytest.raises(errors.InvalidArgumentError, match="branches"):
        an.informative_patches(maps, rf=(3, 5), jump=1)
