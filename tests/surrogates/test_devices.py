"""LIME and KernelSHAP spread the model evaluations of a concrete batch over the CPU devices
(xaijax._devices), with the results of one device and no collective in the program."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import _devices
from xaijax.surrogates import _perturb, kernel_shap, lime

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        return nn.Dense(3)(jnp.mean(x, axis=(1, 2)))


@pytest.fixture(scope="module")
def setup():
    model = _Net()
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 3))
    params = model.init(jax.random.key(0), x)["params"]
    apply_fn = lambda p, xx: model.apply({"params": p}, xx)  # noqa: E731
    segments = jnp.broadcast_to(jnp.arange(64).reshape(8, 8) // 16, (4, 8, 8))  # 4 bands
    masks = jax.random.bernoulli(jax.random.key(2), 0.5, (4, 12, 4)).astype(jnp.float32)
    return params, apply_fn, x, segments, masks


@pytest.mark.parametrize("make", [lime, kernel_shap], ids=["lime", "kernel_shap"])
def test_spread_batch_equals_one_device(setup, make, monkeypatch):
    params, apply_fn, x, segments, masks = setup
    explain = make(apply_fn, num_samples=12, batch_size=8, output="logits", fill=0.0)
    seen = []
    collect = _devices.collect

    def spy(tree):
        seen.append(len(tree.sharding.device_set))
        return collect(tree)

    monkeypatch.setattr(_devices, "collect", spy)
    spread = explain(params, x, segments=segments, masks=masks)
    assert seen == [4]  # the model ran over the 4 CPU devices of tests/conftest.py
    xaijax.set_cpu_data_parallel(False)
    try:
        single = explain(params, x, segments=segments, masks=masks)
    finally:
        xaijax.set_cpu_data_parallel(True)
    assert seen == [4, 1]
    leaves = zip(jax.tree_util.tree_leaves(spread), jax.tree_util.tree_leaves(single), strict=True)
    for a, b in leaves:
        assert len(a.sharding.device_set) == 1
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_chunk_program_holds_no_collective(setup):
    params, apply_fn, x, segments, masks = setup
    sharding = _devices.batch_sharding(x.shape[0])
    args = [jax.device_put(a, sharding) for a in (x, x * 0, segments, jnp.arange(4) % 3, masks)]
    hlo = _perturb._outputs_jit.lower(apply_fn, "logits", params, *args).compile().as_text()
    found = [op for op in COLLECTIVES if op in hlo]
    assert not found, found
