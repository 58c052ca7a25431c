"""Data parallelism over CPU devices (xaijax._devices): placement, equality, no collectives."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import _devices

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


@pytest.fixture
def serial():
    """Runs the body with automatic placement off, restoring it afterwards."""
    xaijax.set_cpu_data_parallel(False)
    yield
    xaijax.set_cpu_data_parallel(True)


def _explainers(model, apply_fn):
    grad = xaijax.gradient(apply_fn)
    return {
        "gradient": (grad, {}),
        "gradient_x_input": (xaijax.gradient_x_input(apply_fn), {}),
        "integrated_gradients": (xaijax.integrated_gradients(apply_fn, steps=4, batch_size=2), {}),
        "smooth": (xaijax.smooth(grad, samples=4, batch_size=2), {"key": jax.random.key(0)}),
        "guided_backprop": (xaijax.guided_backprop(apply_fn), {}),
        "grad_cam": (xaijax.grad_cam(model, "features"), {}),
        "cam": (xaijax.cam(model, "features"), {}),
        "occlusion": (xaijax.occlusion(apply_fn, window=4, stride=3, batch_size=3), {}),
        "rise": (
            xaijax.rise(apply_fn, masks=8, cell_size=4, batch_size=4),
            {"key": jax.random.key(1)},
        ),
    }


def test_batch_sharding_uses_the_largest_dividing_device_count():
    assert jax.local_device_count() == 4  # tests/conftest.py
    assert len(_devices.batch_sharding(8).device_set) == 4
    assert len(_devices.batch_sharding(6).device_set) == 3
    assert len(_devices.batch_sharding(2).device_set) == 2
    assert _devices.batch_sharding(1) is None
    assert _devices.batch_sharding(5) is None  # only 5 itself divides 5, and 5 > 4 devices


def test_disabled_means_no_placement(serial):
    assert _devices.batch_sharding(8) is None


@pytest.mark.parametrize(
    "name",
    [
        "gradient",
        "integrated_gradients",
        "smooth",
        "grad_cam",
        "occlusion",
        "rise",
        "gradient_x_input",
        "guided_backprop",
        "cam",
    ],
)
def test_spread_batch_equals_one_device(cnn, name, monkeypatch):
    model, params, apply_fn, x = cnn
    explain, kwargs = _explainers(model, apply_fn)[name]
    target = jnp.array([0, 1, 2, 1])
    seen = []
    collect = _devices.collect

    def spy(tree):
        if not isinstance(tree, jax.core.Tracer):  # wrapped explainers run traced inside
            seen.append(len(tree.sharding.device_set))
        return collect(tree)

    monkeypatch.setattr(_devices, "collect", spy)
    spread = explain(params, x, target, **kwargs)
    assert seen[-1] == 4  # computed over the 4 CPU devices of tests/conftest.py...
    assert len(spread.sharding.device_set) == 1  # ...and handed back on one
    xaijax.set_cpu_data_parallel(False)
    try:
        single = explain(params, x, target, **kwargs)
    finally:
        xaijax.set_cpu_data_parallel(True)
    assert len(single.sharding.device_set) == 1
    np.testing.assert_allclose(np.asarray(spread), np.asarray(single), rtol=1e-5, atol=1e-6)


def test_partitioned_programs_hold_no_collective(cnn):
    """A collective would make the device threads meet; on an oversubscribed CPU XLA aborts
    the process when one of them is late (40 s rendezvous). Each example is explained alone,
    so a program over a spread batch must need none."""
    model, params, apply_fn, x = cnn
    sharding = _devices.batch_sharding(x.shape[0])
    xs = jax.device_put(x, sharding)
    ts = jax.device_put(jnp.array([0, 1, 2, 1]), sharding)
    for name, (explain, kwargs) in _explainers(model, apply_fn).items():
        hlo = (
            jax.jit(lambda p, xx, t, explain=explain, kwargs=kwargs: explain(p, xx, t, **kwargs))
            .lower(params, xs, ts)
            .compile()
            .as_text()
        )
        found = [op for op in COLLECTIVES if op in hlo]
        assert not found, f"{name}: {found}"


def test_traced_and_pinned_inputs_are_left_alone(cnn):
    model, params, apply_fn, x = cnn
    grad = xaijax.gradient(apply_fn)
    pinned = jax.device_put(params, jax.devices()[1])
    out = grad(pinned, x)
    assert out.sharding.device_set == {jax.devices()[1]}
    traced = jax.jit(grad)(params, x)  # the caller's jit decides placement
    assert len(traced.sharding.device_set) == 1
    mine = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    xs = jax.device_put(x, jax.sharding.NamedSharding(mine, jax.sharding.PartitionSpec("data")))
    kept = grad(params, xs)  # the caller's own sharding is kept, in and out
    assert kept.sharding.device_set == xs.sharding.device_set


def test_import_gives_cpu_devices_per_core_unless_told_otherwise():
    code = "import xaijax, jax; print(jax.local_device_count())"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["JAX_PLATFORMS"] = "cpu"
    cores = len(os.sched_getaffinity(0))
    run = lambda extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True
    )
    on = run({})
    assert on.returncode == 0, on.stderr[-2000:]
    assert int(on.stdout.split()[-1]) == _devices.DEVICES_PER_CORE * cores
    off = run({"XAIJAX_CPU_DATA_PARALLEL": "0"})
    assert int(off.stdout.split()[-1]) == 1
    chosen = run({"JAX_NUM_CPU_DEVICES": "3"})
    assert int(chosen.stdout.split()[-1]) == 3
