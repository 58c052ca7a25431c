"""Superpixel pooling, gradient-weighted superpixels and top-segment masks."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors
from xaijax.superpixels import REDUCTIONS, gws, superpixel_scores, top_segments_mask


def _numpy_scores(att: np.ndarray, seg: np.ndarray, reduce: str, num: int) -> np.ndarray:
    """Loop-over-segments reference."""
    out = np.zeros((att.shape[0], num))
    for b in range(att.shape[0]):
        for k in range(num):
            g = att[b][seg[b] == k]
            if g.size == 0:
                continue
            out[b, k] = {
                "mean": g.mean(),
                "sum": g.sum(),
                "max": g.max(),
                "abs_mean": np.abs(g).mean(),
                "positive_mean": np.maximum(g, 0).mean(),
            }[reduce]
    return out


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    att = rng.normal(size=(3, 6, 5, 3)).astype(np.float32)
    seg = rng.integers(0, 6, size=(3, 6, 5))
    seg[seg == 4] = 5  # label 4 is empty in every image
    return att, seg


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_scores_match_a_numpy_loop(case, reduce):
    att, seg = case
    got = np.asarray(superpixel_scores(att, seg, reduce, num_segments=7))
    np.testing.assert_allclose(got, _numpy_scores(att.sum(-1), seg, reduce, 7), atol=1e-5)
    assert np.all(got[:, 4] == 0) and np.all(got[:, 6] == 0)  # empty and padded segments


def test_channel_reductions_and_maps_without_channels(case):
    att, seg = case
    for how, ref in [
        ("mean", att.mean(-1)),
        ("max_abs", np.abs(att).max(-1)),
        ("l2", np.sqrt((att**2).sum(-1))),
    ]:
        got = superpixel_scores(att, seg, "mean", num_segments=6, channel_reduce=how)
        np.testing.assert_allclose(np.asarray(got), _numpy_scores(ref, seg, "mean", 6), atol=1e-5)
    plain = superpixel_scores(att[..., 0], seg[0], "sum", num_segments=6)  # shared, no channels
    np.testing.assert_allclose(
        np.asarray(plain), _numpy_scores(att[..., 0], np.stack([seg[0]] * 3), "sum", 6), atol=1e-5
    )


def test_video_supervoxels(case):
    rng = np.random.default_rng(1)
    att = rng.normal(size=(2, 3, 4, 4, 2)).astype(np.float32)
    seg = rng.integers(0, 5, size=(2, 3, 4, 4))
    got = superpixel_scores(att, seg, "abs_mean", num_segments=5, channel_reduce="sum")
    np.testing.assert_allclose(
        np.asarray(got), _numpy_scores(att.sum(-1), seg, "abs_mean", 5), atol=1e-5
    )


def test_jit_vmap_batched_and_no_recompile(case, assert_no_recompile):
    att, seg = case
    fn = jax.jit(lambda a, s: superpixel_scores(a, s, "mean", num_segments=6))
    batched = np.asarray(assert_no_recompile(fn, att, seg))
    single = np.asarray(fn(att[1:2], seg[1:2]))[0]
    np.testing.assert_allclose(batched[1], single, atol=1e-6)
    vm = jax.vmap(fn)(att[:, None], seg[:, None])[:, 0]
    np.testing.assert_allclose(np.asarray(vm), batched, atol=1e-6)
    # a new segment map of the same shape compiles nothing
    assert_no_recompile(fn, att, (seg + 1) % 6)


def _linear_model():
    """logit_k = sum_{h,w,c} x * W_k: its input gradient is W_k for every input."""
    w = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 4, 3)), jnp.float32)
    return (lambda params, x: jnp.einsum("bhwc,khwc->bk", x, params)), w


def test_gws_is_the_pooled_gradient():
    apply_fn, w = _linear_model()
    x = jnp.ones((2, 4, 4, 3))
    seg = np.repeat(np.arange(4), 4).reshape(4, 4)  # one segment per row
    target = jnp.array([0, 1])
    explain = gws(xaijax.gradient(apply_fn), "mean", num_segments=4)
    assert isinstance(explain, xaijax.Explainer) and explain.result == "segment_scores"
    got = explain(w, x, target, segments=seg)
    expected = np.asarray(w).sum(-1).mean(-1)[[0, 1]]  # [B, rows]
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
    # target=None explains the predicted class
    pred = np.argmax(np.asarray(apply_fn(w, x)), -1)
    auto = gws(xaijax.gradient(apply_fn), "sum", num_segments=4)(w, x, segments=seg)
    np.testing.assert_allclose(
        np.asarray(auto), np.asarray(w).sum(-1).sum(-1)[pred], rtol=1e-5, atol=1e-5
    )


def test_gws_composes_any_explainer_and_passes_keywords(assert_no_recompile):
    calls = {}

    def fn(params, x, target, *, key, scale=1.0):
        calls["key"] = key
        return x * scale

    model = lambda p, x: x.reshape(x.shape[0], -1)[:, :2]  # noqa: E731
    own = xaijax.explainer(fn, model, stochastic=True)
    x = jnp.asarray(np.random.default_rng(3).random((2, 3, 3, 1)), jnp.float32)
    seg = jnp.asarray(np.arange(9).reshape(3, 3) // 3)
    explain = gws(own, "max", num_segments=3)
    assert explain.stochastic and explain.inner is own
    got = explain(None, x, segments=seg, key=jax.random.key(0), scale=2.0)
    np.testing.assert_allclose(np.asarray(got), 2 * np.asarray(x)[..., 0].max(-1), atol=1e-6)
    assert calls["key"] is not None
    with pytest.raises(errors.MissingKeyError):
        explain(None, x, segments=seg)
    jitted = jax.jit(lambda p, xx, s, k: explain(p, xx, segments=s, key=k))
    np.testing.assert_allclose(
        np.asarray(assert_no_recompile(jitted, None, x, seg, jax.random.key(0))),
        np.asarray(x)[..., 0].max(-1),
    )


def test_gws_reads_jit_and_partial_of_an_explainer_and_refuses_a_lambda():
    apply_fn, w = _linear_model()
    x = jnp.asarray(np.random.default_rng(4).random((2, 4, 4, 3)), jnp.float32)
    seg = np.repeat(np.arange(4), 4).reshape(4, 4)
    target = jnp.array([1, 0])
    inner = xaijax.integrated_gradients(apply_fn, steps=4)
    base = jnp.full((1, 4, 4, 3), 0.25)
    reference = gws(inner, "sum", num_segments=4)(w, x, target, segments=seg, baseline=base)
    # the oracle: IG of a linear model is (x - baseline) * W_t, pooled by rows
    diff = (np.asarray(x) - 0.25) * np.asarray(w)[np.asarray(target)]
    np.testing.assert_allclose(np.asarray(reference), diff.sum(-1).sum(-1), rtol=1e-4, atol=1e-5)
    through_jit = gws(jax.jit(inner), "sum", num_segments=4)
    assert through_jit.inner is inner
    np.testing.assert_array_equal(
        np.asarray(through_jit(w, x, target, segments=seg, baseline=base)), np.asarray(reference)
    )
    bound = gws(functools.partial(inner, baseline=base), "sum", num_segments=4)
    np.testing.assert_array_equal(
        np.asarray(bound(w, x, target, segments=seg)), np.asarray(reference)
    )
    with pytest.raises(errors.NotAnExplainerError, match="xaijax.explainer"):
        gws(lambda p, xx, t=None: inner(p, xx, t), num_segments=4)
    with pytest.raises(errors.NotAnExplainerError):
        gws(functools.partial(inner, w), num_segments=4)  # positional arguments bound


def test_gws_of_a_stochastic_wrapper_equals_pooling_its_map():
    apply_fn, w = _linear_model()
    x = jnp.asarray(np.random.default_rng(5).random((2, 4, 4, 3)), jnp.float32)
    seg = np.repeat(np.arange(4), 4).reshape(4, 4)
    sg = xaijax.smooth(xaijax.gradient(apply_fn), num_samples=3)
    key = jax.random.key(1)
    got = gws(sg, "mean", num_segments=4)(w, x, segments=seg, key=key)
    expected = superpixel_scores(sg(w, x, key=key), seg, "mean", num_segments=4)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-6)


def test_gws_batched_jit_and_a_new_segment_count_compiles_nothing(compile_counter):
    apply_fn, w = _linear_model()
    x = jnp.asarray(np.random.default_rng(6).random((3, 4, 4, 3)), jnp.float32)
    rows = jnp.asarray(np.repeat(np.arange(4), 4).reshape(4, 4))  # 4 labels
    halves = jnp.asarray(np.repeat(np.arange(2), 8).reshape(4, 4) * 3)  # 2 labels: 0 and 3
    explain = gws(xaijax.gradient_x_input(apply_fn), "mean", num_segments=6)
    batched = explain(w, x, segments=rows)
    jax.block_until_ready(batched)
    with compile_counter() as n:
        other = explain(w, x, segments=halves)
        jax.block_until_ready(other)
    assert n.count == 0, f"a map with another number of segments compiled {n.count} time(s)"
    assert np.all(np.asarray(other)[:, [1, 2, 4, 5]] == 0)  # empty labels score 0
    assert np.all(np.asarray(batched)[:, 4:] == 0)
    for b in range(3):
        single = explain(w, x[b : b + 1], segments=rows)
        np.testing.assert_allclose(np.asarray(single)[0], np.asarray(batched)[b], atol=1e-6)
    jitted = jax.jit(lambda p, xx, s: explain(p, xx, segments=s))
    np.testing.assert_allclose(np.asarray(jitted(w, x, rows)), np.asarray(batched), atol=1e-6)
    jitted(w, x, rows)
    with compile_counter() as n:
        jax.block_until_ready(jitted(w, x, halves))
    assert n.count == 0


def test_value_checks_read_only_scalars_on_a_sharded_batch(host_reads):
    """Labels, NaN and target checks bring back one boolean each, never a batch or a map; a
    batch sharded over the 4 fake CPU devices stays sharded and gives the one-device result."""
    apply_fn, w = _linear_model()
    x = jnp.asarray(np.random.default_rng(7).random((4, 4, 4, 3)), jnp.float32)
    seg = jnp.asarray(np.broadcast_to(np.repeat(np.arange(4), 4).reshape(4, 4), (4, 4, 4)))
    target = jnp.array([0, 1, 1, 0])
    explain = gws(xaijax.gradient(apply_fn), num_segments=4)
    expected = explain(w, x, target, segments=seg)
    xs, segs, ts = xaijax.shard_batch((x, seg, target))
    with host_reads() as shapes:
        got = explain(w, xs, ts, segments=segs)
        pooled = superpixel_scores(xs, segs, num_segments=4)
        shown = top_segments_mask(segs, pooled, 2)
    assert shapes and all(s == () for s in shapes), shapes
    assert got.sharding.spec == xs.sharding.spec and len(got.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-6)
    assert np.asarray(shown).shape == (4, 4, 4)


def test_top_segments_mask_mirrors_lime_display():
    seg = np.array([[[0, 1, 2], [3, 4, 4]], [[0, 0, 1], [1, 2, 2]]])
    scores = jnp.array([[0.5, -3.0, 2.0, 0.1, 0.0, 9.0], [-1.0, -2.0, 0.0, 0.0, 0.0, 0.0]])
    top2 = np.asarray(top_segments_mask(seg, scores, k=2))
    # image 0: best positive segments are 2 and 0 (5 is empty); image 1: none is positive
    np.testing.assert_array_equal(top2[0], [[True, False, True], [False, False, False]])
    assert not top2[1].any()
    both = np.asarray(top_segments_mask(seg, scores, k=2, positive_only=False))
    np.testing.assert_array_equal(both[0], [[False, True, True], [False, False, False]])
    np.testing.assert_array_equal(both[1], [[True, True, True], [True, False, False]])
    everything = np.asarray(top_segments_mask(seg, scores, k=50, positive_only=False))
    np.testing.assert_array_equal(everything[0], [[True, True, True], [True, False, False]])


def test_degenerate_attributions_give_finite_scores():
    seg = np.array([[[0, 0], [1, 1]]])
    for att in (np.zeros((1, 2, 2, 3), np.float32), np.full((1, 2, 2, 3), -1.0, np.float32)):
        for reduce in REDUCTIONS:
            scores = superpixel_scores(att, seg, reduce, num_segments=2)
            assert np.all(np.isfinite(np.asarray(scores)))
        scores = superpixel_scores(att, seg, num_segments=2)
        assert not np.asarray(top_segments_mask(seg, scores, 1)).any()


def test_bad_inputs_raise_named_errors():
    att = np.zeros((2, 4, 4, 3), np.float32)
    good = np.arange(16).reshape(4, 4) % 3
    scores = functools.partial(superpixel_scores, num_segments=3)
    with pytest.raises(errors.SegmentMapError, match="shape"):
        scores(att, good[:3])
    with pytest.raises(errors.SegmentMapError, match="negative"):
        scores(att, good - 1)
    with pytest.raises(errors.SegmentMapError, match="integer"):
        scores(att, good.astype(np.float32))
    with pytest.raises(errors.SegmentMapError, match="1 segment"):
        scores(att, np.zeros((4, 4), np.int32))
    with pytest.raises(errors.SegmentMapError, match="num_segments"):
        scores(att, jnp.asarray(good + 1))  # label 3 >= num_segments, a device array
    with pytest.raises(errors.InvalidArgumentError, match="reduce"):
        scores(att, good, "median")
    with pytest.raises(errors.InvalidArgumentError, match="num_segments"):
        superpixel_scores(att, good, num_segments=None)
    with pytest.raises(errors.NonFiniteInputError, match="attributions"):
        scores(np.full_like(att, np.nan), good)
    apply_fn, w = _linear_model()
    grad = xaijax.gradient(apply_fn)
    with pytest.raises(errors.InvalidArgumentError, match="channel_reduce"):
        gws(grad, channel_reduce="min", num_segments=3)
    with pytest.raises(errors.InvalidArgumentError, match="map"):
        gws(gws(grad, num_segments=3), num_segments=3)  # segment scores are no pixel map
    for bad in (None, 0, 2.0, True):
        with pytest.raises(errors.InvalidArgumentError, match="num_segments"):
            gws(grad, num_segments=bad)
    explain = gws(grad, num_segments=3)
    x = jnp.ones((2, 4, 4, 3))
    with pytest.raises(errors.InvalidArgumentError, match="segments"):
        explain(w, x)
    with pytest.raises(errors.SegmentMapError, match="num_segments"):
        explain(w, x, segments=good + 1)
    with pytest.raises(errors.SegmentMapError, match="shape"):
        explain(w, x, segments=good[:3])
    with pytest.raises(errors.BatchMismatchError, match="scores"):
        top_segments_mask(np.stack([good] * 2), jnp.zeros((3, 3)), 1)
    with pytest.raises(errors.InvalidArgumentError, match="k"):
        top_segments_mask(np.stack([good] * 2), jnp.zeros((2, 3)), 0)
    with pytest.raises(errors.SegmentMapError, match="num_segments"):
        top_segments_mask(np.stack([good] * 2), jnp.zeros((2, 2)), 1)  # label 2 >= 2 scores
