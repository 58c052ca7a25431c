"""Every attribution transform behaves like a JAX transform.

For each explainer: eager == jit, batched == per-example, vmap over an extra leading axis ==
a loop, a second same-shaped call compiles nothing, and degenerate inputs stay finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax

KEY = jax.random.key(7)


def _explainers(model, apply_fn):
    return {
        "gradient": (xaijax.gradient(apply_fn), {}),
        "gradient_x_input": (xaijax.gradient_x_input(apply_fn), {}),
        "integrated_gradients": (xaijax.integrated_gradients(apply_fn, steps=6, chunk_size=4), {}),
        "smooth": (
            xaijax.smooth(xaijax.gradient(apply_fn), num_samples=3, chunk_size=2),
            {"key": KEY},
        ),
        "guided_backprop": (xaijax.guided_backprop(apply_fn), {}),
        "grad_cam": (xaijax.grad_cam(model, "features"), {}),
        "cam": (xaijax.cam(model, "features"), {}),
        "occlusion": (xaijax.occlusion(apply_fn, window=4, stride=3, chunk_size=3), {}),
        "rise": (xaijax.rise(apply_fn, num_samples=8, cell_size=4, chunk_size=3), {"key": KEY}),
    }


NAMES = [
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "smooth",
    "guided_backprop",
    "grad_cam",
    "cam",
    "occlusion",
    "rise",
]


@pytest.fixture(scope="module")
def explainers(cnn):
    model, _, apply_fn, _ = cnn
    return _explainers(model, apply_fn)


@pytest.mark.parametrize("name", NAMES)
def test_jit_batch_vmap_and_no_recompile(name, explainers, cnn, assert_no_recompile):
    _, params, _, x = cnn
    explain, kw = explainers[name]
    t = jnp.array([0, 2, 1, 0])
    eager = assert_no_recompile(explain, params, x, t, **kw)
    jitted = jax.jit(lambda p, xx, tt: explain(p, xx, tt, **kw))(params, x, t)
    np.testing.assert_allclose(eager, jitted, rtol=2e-4, atol=1e-6)
    single = jnp.concatenate([explain(params, x[i : i + 1], t[i : i + 1], **kw) for i in range(2)])
    np.testing.assert_allclose(eager[:2], single, rtol=2e-4, atol=1e-6)
    stacked = jnp.stack([x[:2], x[2:]])
    vm = jax.vmap(lambda xx, tt: explain(params, xx, tt, **kw))(stacked, t.reshape(2, 2))
    np.testing.assert_allclose(vm.reshape(eager.shape), eager, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_degenerate_inputs_stay_finite(name, explainers, cnn):
    _, params, _, x = cnn
    explain, kw = explainers[name]
    zero_params = jax.tree_util.tree_map(jnp.zeros_like, params)  # zero gradient everywhere
    for p, inp in [(params, jnp.full_like(x, 0.5)), (zero_params, x), (params, jnp.zeros_like(x))]:
        out = explain(p, inp, None, **kw)
        assert np.isfinite(np.asarray(out)).all(), name
