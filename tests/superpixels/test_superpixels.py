"""Superpixel pooling, gradient-weighted superpixels and top-segment masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
        got = superpixel_scores(att, seg, "mean", channel_reduce=how)
        np.testing.assert_allclose(np.asarray(got), _numpy_scores(ref, seg, "mean", 6), atol=1e-5)
    plain = superpixel_scores(att[..., 0], seg[0], "sum")  # shared map, no channel axis
    np.testing.assert_allclose(
        np.asarray(plain), _numpy_scores(att[..., 0], np.stack([seg[0]] * 3), "sum", 6), atol=1e-5
    )


def test_video_supervoxels(case):
    rng = np.random.default_rng(1)
    att = rng.normal(size=(2, 3, 4, 4, 2)).astype(np.float32)
    seg = rng.integers(0, 5, size=(2, 3, 4, 4))
    got = superpixel_scores(att, seg, "abs_mean", channel_reduce="sum")
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
    from xaijax.attribution import gradient

    apply_fn, w = _linear_model()
    x = jnp.ones((2, 4, 4, 3))
    seg = np.repeat(np.arange(4), 4).reshape(4, 4)  # one segment per row
    target = jnp.array([0, 1])
    got = gws(gradient(apply_fn), "mean")(w, x, target, segments=seg)
    expected = np.asarray(w).sum(-1).mean(-1)[[0, 1]]  # [B, rows]
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
    # target=None explains the predicted class
    pred = np.argmax(np.asarray(apply_fn(w, x)), -1)
    auto = gws(gradient(apply_fn), "sum")(w, x, segments=seg)
    np.testing.assert_allclose(
        np.asarray(auto), np.asarray(w).sum(-1).sum(-1)[pred], rtol=1e-5, atol=1e-5
    )


def test_gws_composes_any_explainer_and_passes_keywords(assert_no_recompile):
    calls = {}

    def explainer(params, x, target=None, *, key=None, scale=1.0):
        calls["key"] = key
        return x * scale

    x = jnp.asarray(np.random.default_rng(3).random((2, 3, 3, 1)), jnp.float32)
    seg = jnp.asarray(np.arange(9).reshape(3, 3) // 3)
    explain = gws(explainer, "max", num_segments=3)
    got = explain(None, x, segments=seg, key=jax.random.key(0), scale=2.0)
    np.testing.assert_allclose(np.asarray(got), 2 * np.asarray(x)[..., 0].max(-1), atol=1e-6)
    assert calls["key"] is not None
    jitted = jax.jit(lambda p, xx, s: explain(p, xx, segments=s))
    np.testing.assert_allclose(
        np.asarray(assert_no_recompile(jitted, None, x, seg)), np.asarray(x)[..., 0].max(-1)
    )


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
            assert np.all(np.isfinite(np.asarray(superpixel_scores(att, seg, reduce))))
        assert not np.asarray(top_segments_mask(seg, superpixel_scores(att, seg), 1)).any()


def test_bad_inputs_raise_named_errors():
    att = np.zeros((2, 4, 4, 3), np.float32)
    good = np.arange(16).reshape(4, 4) % 3
    with pytest.raises(errors.SegmentMapError, match="shape"):
        superpixel_scores(att, good[:3])
    with pytest.raises(errors.SegmentMapError, match="negative"):
        superpixel_scores(att, good - 1)
    with pytest.raises(errors.SegmentMapError, match="integer"):
        superpixel_scores(att, good.astype(np.float32))
    with pytest.raises(errors.SegmentMapError, match="1 segment"):
        superpixel_scores(att, np.zeros((4, 4), np.int32))
    with pytest.raises(errors.InvalidArgumentError, match="reduce"):
        superpixel_scores(att, good, "median")
    with pytest.raises(errors.InvalidArgumentError, match="channel_reduce"):
        gws(lambda p, x, t=None: x, channel_reduce="min")
    with pytest.raises(errors.InvalidArgumentError, match="num_segments"):
        jax.jit(lambda a, s: superpixel_scores(a, s))(att, good)
    with pytest.raises(errors.BatchMismatchError, match="scores"):
        top_segments_mask(np.stack([good] * 2), jnp.zeros((3, 3)), 1)
    with pytest.raises(errors.InvalidArgumentError, match="k"):
        top_segments_mask(np.stack([good] * 2), jnp.zeros((2, 3)), 0)
