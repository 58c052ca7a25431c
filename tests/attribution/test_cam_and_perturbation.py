"""Oracle tests for CAM, Grad-CAM (Linen and NNX), occlusion and RISE."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xaijax
from xaijax import errors


def test_cam_is_the_exact_decomposition_of_the_logit(cnn):
    model, params, apply_fn, x = cnn
    logits = apply_fn(params, x)
    for c in range(3):
        t = jnp.full((x.shape[0],), c, jnp.int32)
        maps = xaijax.cam(model, "features", upsample=False)(params, x, t)
        np.testing.assert_allclose(
            maps.mean(axis=(1, 2)) + params["head"]["bias"][c], logits[:, c], rtol=1e-5, atol=1e-5
        )
        # CAM weights are the head kernel column: M_c = sum_k w_kc A_k.
        _, acts = model.apply({"params": params}, x, capture_intermediates=True)
        feats = acts["intermediates"]["features"]["__call__"][0]
        np.testing.assert_allclose(
            maps,
            jnp.einsum("bhwk,k->bhw", feats, params["head"]["kernel"][:, c]),
            rtol=1e-5,
            atol=1e-6,
        )


def test_grad_cam_matches_its_formula(cnn):
    model, params, apply_fn, x = cnn
    t = jnp.array([0, 1, 2, 1])
    maps = xaijax.grad_cam(model, "features", upsample=False)(params, x, t)
    _, acts = model.apply({"params": params}, x, capture_intermediates=True)
    feats = acts["intermediates"]["features"]["__call__"][0]
    # GAP + dense head: dy/dA_ij = w_kc / (H W), so alpha_k = w_kc / (H W).
    w = params["head"]["kernel"][:, t].T / (feats.shape[1] * feats.shape[2])
    expected = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", feats, w))
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)
    up = xaijax.grad_cam(model, "features")(params, x, t)
    assert up.shape == x.shape[:3]


def test_grad_cam_all_negative_is_finite_zero(cnn):
    model, params, _, x = cnn
    neg = jax.tree_util.tree_map(lambda a: a, params)
    neg = {**params, "head": {**params["head"], "kernel": -jnp.abs(params["head"]["kernel"])}}
    maps = xaijax.grad_cam(model, "features")(neg, x, jnp.zeros(4, jnp.int32))
    assert np.isfinite(np.asarray(maps)).all() and float(maps.max()) == 0.0


def test_grad_cam_on_a_nested_layer_and_unknown_layer(cnn):
    model, params, _, x = cnn
    assert xaijax.grad_cam(model, "features/conv")(params, x).shape == (4, 10, 10)
    with pytest.raises(errors.UnknownLayerError, match="features/conv"):
        xaijax.grad_cam(model, "block9")(params, x)


def test_grad_cam_on_an_nnx_model_equals_linen_formula():
    class Block(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 5, (3, 3), rngs=rngs)

        def __call__(self, x):
            return jax.nn.relu(self.conv(x))

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.block = Block(rngs)
            self.head = nnx.Linear(5, 2, rngs=rngs)

        def __call__(self, x):
            return self.head(self.block(x).mean(axis=(1, 2)))

    net = Net(nnx.Rngs(0))
    model, state = xaijax.from_nnx(net)
    x = jax.random.uniform(jax.random.key(0), (2, 6, 6, 3))
    maps = xaijax.cam(model, "block", upsample=False)(state, x, jnp.array([0, 1]))
    feats = net.block(x)
    expected = jnp.einsum("bhwk,bk->bhw", feats, net.head.kernel[...][:, jnp.array([0, 1])].T)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.apply_fn(state, x), net(x), rtol=1e-6)
    # The layer explained is the one named (the Core v2 bug: an access opened at one layer and
    # a grad_cam naming another returned the first layer's map).
    inner = xaijax.grad_cam(model, "block/conv", relu=False, upsample=False)(state, x)
    outer = xaijax.grad_cam(model, "block", relu=False, upsample=False)(state, x)
    assert inner.shape == outer.shape == (2, 6, 6)
    assert not np.allclose(inner, outer)
    with pytest.raises(errors.UnknownLayerError, match="block/conv"):
        xaijax.grad_cam(model, "nope")
    with pytest.raises(errors.UnknownLayerError):
        xaijax.grad_cam(model, "")


def _region_model(p, x):
    """Logit 0 is the sum of the top-left 4x4 region; logit 1 is constant."""
    s = x[:, :4, :4, :].sum(axis=(1, 2, 3))
    return jnp.stack([s, jnp.zeros_like(s)], axis=1)


def test_occlusion_finds_exactly_the_region_the_model_reads():
    x = jnp.ones((2, 12, 12, 2))
    attr = xaijax.occlusion(_region_model, window=4, stride=4)(None, x, jnp.array([0, 0]))
    assert attr.shape == x.shape
    np.testing.assert_allclose(attr[:, :4, :4], 32.0)  # 4*4*2 pixels of value 1 removed
    np.testing.assert_allclose(attr[:, 4:], 0.0)
    np.testing.assert_allclose(attr[:, :, 4:], 0.0)


def test_occlusion_averages_overlapping_windows_like_captum():
    # 1D-like case: a model reading one pixel; window 2 stride 1 over 3 columns.
    def f(p, x):
        v = x[:, 0, 1, 0]
        return jnp.stack([v, -v], axis=1)

    x = jnp.full((1, 1, 3, 1), 2.0)
    attr = xaijax.occlusion(f, window=(1, 2), stride=1, chunk_size=1)(None, x, jnp.array([0]))
    # windows [0,1] and [1,2] both remove pixel 1 (drop 2); pixel 0 covered by the first only.
    np.testing.assert_allclose(attr[0, 0, :, 0], [2.0, 2.0, 2.0])


def test_rise_is_higher_where_the_model_looks():
    x = jnp.ones((1, 16, 16, 1))

    def f(p, x):
        s = (x[:, :8, :8, 0].mean(axis=(1, 2)) - 0.5) * 12.0
        return jnp.stack([s, jnp.zeros_like(s)], axis=1)

    sal = xaijax.rise(f, num_samples=256, cell_size=4, chunk_size=64)(
        None, x, jnp.array([0]), key=jax.random.key(0)
    )
    assert sal.shape == (1, 16, 16)
    assert float(sal[0, :8, :8].mean()) > float(sal[0, 8:, 8:].mean()) + 0.05
    again = xaijax.rise(f, num_samples=256, cell_size=4, chunk_size=100)(
        None, x, jnp.array([0]), key=jax.random.key(0)
    )
    np.testing.assert_allclose(sal, again, rtol=1e-5)  # chunking does not change the masks


def _captum_occlusion(w, x, window, stride):
    """A literal NumPy port of Captum's Occlusion on a linear model ``sum(w * x)`` (one image
    [H, W, C]): ``ceil((s - window) / stride) + 1`` windows per axis starting at multiples of the
    stride, the last one clipped at the border, attributions averaged over covering windows."""
    h, wd, _ = x.shape
    counts = [
        int(np.ceil((s - k) / st)) + 1 for s, k, st in zip((h, wd), window, stride, strict=True)
    ]
    total = np.zeros((h, wd))
    seen = np.zeros((h, wd))
    base = float(np.sum(w * x))
    for i in range(counts[0]):
        for j in range(counts[1]):
            mask = np.zeros((h, wd))
            y0, x0 = i * stride[0], j * stride[1]
            mask[y0 : y0 + window[0], x0 : x0 + window[1]] = 1.0  # NumPy clips at the border
            occluded = x * (1 - mask[..., None])
            total += (base - float(np.sum(w * occluded))) * mask
            seen += mask
    return np.where(seen > 0, total / np.maximum(seen, 1), 0.0)


def test_occlusion_with_a_stride_that_does_not_tile_matches_captum():
    # 8 columns, window 3, stride 2: Captum places windows at 0, 2, 4, 6 (the last clipped);
    # the landed code placed 3 and left column 7 at 0 (the Core v2 bug, window 30 / stride 16
    # at 224 px in the issue).
    rng = np.random.default_rng(0)
    w = rng.normal(size=(7, 8, 2)).astype(np.float32)
    x = rng.uniform(size=(1, 7, 8, 2)).astype(np.float32)

    def f(p, xx):
        s = jnp.sum(xx * p[None], axis=(1, 2, 3))
        return jnp.stack([s, -s], axis=1)

    attr = xaijax.occlusion(f, window=3, stride=2, chunk_size=5)(jnp.asarray(w), x, jnp.array([0]))
    expected = _captum_occlusion(w, x[0], (3, 3), (2, 2))
    np.testing.assert_allclose(attr[0, ..., 0], expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(np.asarray(attr[0, :, 7, 0])) > 0)  # the last column is covered
