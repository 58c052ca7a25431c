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
    access, state = xaijax.nnx_layer(net, "block")
    x = jax.random.uniform(jax.random.key(0), (2, 6, 6, 3))
    maps = xaijax.cam(access, "block", upsample=False)(state, x, jnp.array([0, 1]))
    feats = net.block(x)
    expected = jnp.einsum("bhwk,bk->bhw", feats, net.head.kernel[...][:, jnp.array([0, 1])].T)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    apply_fn, params = xaijax.from_nnx(net)
    np.testing.assert_allclose(apply_fn(params, x), net(x), rtol=1e-6)
    assert xaijax.grad_cam(xaijax.nnx_layer(net, "block/conv")[0], "block/conv")(
        state, x
    ).shape == (2, 6, 6)
    with pytest.raises(errors.UnknownLayerError, match="block/conv"):
        xaijax.nnx_layer(net, "nope")


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
    attr = xaijax.occlusion(f, window=(1, 2), stride=1, batch_size=1)(None, x, jnp.array([0]))
    # windows [0,1] and [1,2] both remove pixel 1 (drop 2); pixel 0 covered by the first only.
    np.testing.assert_allclose(attr[0, 0, :, 0], [2.0, 2.0, 2.0])


def test_rise_is_higher_where_the_model_looks():
    x = jnp.ones((1, 16, 16, 1))

    def f(p, x):
        s = (x[:, :8, :8, 0].mean(axis=(1, 2)) - 0.5) * 12.0
        return jnp.stack([s, jnp.zeros_like(s)], axis=1)

    sal = xaijax.rise(f, masks=256, cell_size=4, batch_size=64)(
        None, x, jnp.array([0]), key=jax.random.key(0)
    )
    assert sal.shape == (1, 16, 16)
    assert float(sal[0, :8, :8].mean()) > float(sal[0, 8:, 8:].mean()) + 0.05
    again = xaijax.rise(f, masks=256, cell_size=4, batch_size=100)(
        None, x, jnp.array([0]), key=jax.random.key(0)
    )
    np.testing.assert_allclose(sal, again, rtol=1e-5)  # chunking does not change the masks
