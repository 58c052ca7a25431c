"""Devices are the caller's choice (xaijax._devices): import changes nothing, the opt-in asks
before JAX starts, and explainers on a batch the caller sharded equal the one-device result
with no collective in their programs."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


def _explainers(model, apply_fn):
    grad = xaijax.gradient(apply_fn)
    return {
        "gradient": (grad, {}),
        "gradient_x_input": (xaijax.gradient_x_input(apply_fn), {}),
        "integrated_gradients": (xaijax.integrated_gradients(apply_fn, steps=4, chunk_size=2), {}),
        "smooth": (xaijax.smooth(grad, num_samples=4, chunk_size=2), {"key": jax.random.key(0)}),
        "guided_backprop": (xaijax.guided_backprop(apply_fn), {}),
        "grad_cam": (xaijax.grad_cam(model, "features"), {}),
        "cam": (xaijax.cam(model, "features"), {}),
        "occlusion": (xaijax.occlusion(apply_fn, window=4, stride=3, chunk_size=3), {}),
        "rise": (
            xaijax.rise(apply_fn, num_samples=8, cell_size=4, chunk_size=4),
            {"key": jax.random.key(1)},
        ),
    }


def test_shard_batch_uses_the_largest_dividing_device_count():
    assert jax.local_device_count() == 4  # tests/conftest.py
    assert len(xaijax.shard_batch(jnp.zeros((8, 2))).sharding.device_set) == 4
    assert len(xaijax.shard_batch(jnp.zeros((6, 2))).sharding.device_set) == 3
    assert len(xaijax.shard_batch(jnp.zeros((5, 2))).sharding.device_set) == 1


@pytest.mark.parametrize(
    "name",
    [
        "gradient",
        "gradient_x_input",
        "integrated_gradients",
        "smooth",
        "guided_backprop",
        "grad_cam",
        "cam",
        "occlusion",
        "rise",
    ],
)
def test_sharded_batch_equals_one_device_and_stays_sharded(name, cnn):
    model, params, apply_fn, x = cnn
    explain, kwargs = _explainers(model, apply_fn)[name]
    target = jnp.array([0, 1, 2, 1])
    xs, ts = xaijax.shard_batch((x, target))
    assert len(xs.sharding.device_set) == 4
    sharded = explain(params, xs, ts, **kwargs)
    assert len(sharded.sharding.device_set) == 4  # the caller's sharding is kept
    single = explain(params, x, target, **kwargs)
    assert len(single.sharding.device_set) == 1  # and nothing moves an unsharded batch
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), rtol=1e-5, atol=1e-6)


def test_programs_on_a_sharded_batch_hold_no_collective(cnn):
    """A collective would make the device threads meet; on an oversubscribed CPU XLA aborts
    the process when one of them is late (40 s rendezvous). Each example is explained alone,
    so a program over a sharded batch must need none."""
    model, params, apply_fn, x = cnn
    xs, ts = xaijax.shard_batch((x, jnp.array([0, 1, 2, 1])))
    for name, (explain, kwargs) in _explainers(model, apply_fn).items():
        hlo = (
            jax.jit(lambda p, xx, t, explain=explain, kwargs=kwargs: explain(p, xx, t, **kwargs))
            .lower(params, xs, ts)
            .compile()
            .as_text()
        )
        found = [op for op in COLLECTIVES if op in hlo]
        assert not found, f"{name}: {found}"


def _python(code: str, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run(
        [sys.executable, "-c", code], env={**env, **env_extra}, capture_output=True, text=True
    )


def test_import_changes_nothing_in_jax():
    out = _python(
        "import jax; before = jax.config.jax_num_cpu_devices; import xaijax; "
        "print(before == jax.config.jax_num_cpu_devices, len(jax.devices()))"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["True", "1"]
    explicit = _python(
        "import jax; jax.config.update('jax_num_cpu_devices', 1); import xaijax; "
        "print(len(jax.devices()), jax.local_device_count())"
    )
    assert explicit.returncode == 0, explicit.stderr[-2000:]
    assert explicit.stdout.split()[-2:] == ["1", "1"]


def test_the_opt_in_asks_before_jax_starts_and_raises_after():
    ok = _python("import xaijax, jax; xaijax.use_cpu_devices(3); print(len(jax.devices()))")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.split()[-1] == "3"
    late = _python(
        "import jax, jax.numpy as jnp, xaijax; jnp.zeros(1).block_until_ready()\n"
        "try:\n    xaijax.use_cpu_devices(3)\n"
        "except xaijax.errors.DevicesAlreadyStartedError as e:\n    print('named', e)"
    )
    assert late.returncode == 0, late.stderr[-2000:]
    assert late.stdout.startswith("named") and "before any JAX computation" in late.stdout


def test_value_checks_move_only_a_scalar_to_the_host(cnn):
    """The NaN/target checks run on the device: with implicit device-to-host transfers
    disallowed, an eager call still works (only explicit one-element `device_get`s of the
    check's boolean happen), and a NaN is still reported by name."""
    _, params, apply_fn, x = cnn
    grad = xaijax.gradient(apply_fn)
    grad(params, x, jnp.array([0, 1, 2, 1]))  # compile outside the guard
    sizes: list[int] = []
    real_get = jax.device_get

    def spy(tree):
        sizes.extend(int(np.size(a)) for a in jax.tree_util.tree_leaves(tree))
        return real_get(tree)

    jax.device_get = spy
    try:
        with jax.transfer_guard_device_to_host("disallow"):
            out = grad(params, x, jnp.array([0, 1, 2, 1]))
            with pytest.raises(xaijax.errors.NonFiniteInputError):
                grad(params, x.at[0, 0, 0, 0].set(jnp.nan))
    finally:
        jax.device_get = real_get
    assert out.shape == x.shape
    assert sizes and max(sizes) == 1, sizes  # booleans and one count, never the batch
