"""Devices are the caller's choice: an explicit opt-in for CPU devices, and batches the caller
shards.

Importing xaijax changes nothing in JAX's configuration and moves no data. On a multi-core CPU
host, XLA:CPU runs one device's convolutions on one core, so a batch on one CPU device leaves the
other cores idle; to use them:

1. before JAX starts (before any computation), ask for several CPU devices with
   :func:`use_cpu_devices` (it raises :class:`~xaijax.errors.DevicesAlreadyStartedError`
   afterwards, as ``chex.set_n_cpu_devices`` does);
2. shard the batch over them (:func:`shard_batch`, or your own ``NamedSharding`` with the batch
   axis over a mesh axis). Every explainer runs on a sharded batch with no collective in its
   program (each device explains its own examples) and returns results sharded the same way.

The same holds on accelerators and across hosts: the caller's mesh decides. :func:`per_device`
is the mechanism for kernels whose vmapped ``while_loop`` would otherwise meet across devices
(an all-reduce per iteration): under ``shard_map`` each device loops over its own share.

Figures: ``experiments/bench/attribution.py`` (one device, and the opt-in with a sharded batch).
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from xaijax import errors

#: CPU devices per usable core asked by :func:`use_cpu_devices` when no count is given. Two beat
#: one on every explainer of the Captum benchmark on the 2-core machine (smaller per-device
#: batches; ``experiments/bench/attribution.py``).
DEVICES_PER_CORE = 2


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge  # no public query for "backends initialised" yet

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - future JAX
        return False


def use_cpu_devices(count: int | None = None) -> int:
    """Asks JAX for ``count`` CPU devices (default: two per usable core). Opt-in, explicit.

    Call it before JAX runs anything (right after the imports). Then shard batches over the
    devices (:func:`shard_batch`) to use every core.

    Args:
      count: number of CPU devices; ``None`` means :data:`DEVICES_PER_CORE` per usable core.

    Returns:
      The device count asked for.

    Raises:
      DevicesAlreadyStartedError: JAX has already started its backends (the count is fixed
        then: restart the process, or call this first).

    Example (in a fresh process)::

      import xaijax
      xaijax.use_cpu_devices()            # before any JAX computation
      x = xaijax.shard_batch(images)      # the batch over all devices
      maps = xaijax.gradient(model)(params, x)
    """
    if count is None:
        count = DEVICES_PER_CORE * _usable_cores()
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        raise errors.InvalidArgumentError(f"`count` must be a positive integer, got {count!r}.")
    if _backends_started():
        raise errors.DevicesAlreadyStartedError(
            f"JAX has already started with {jax.local_device_count()} device(s), so the CPU "
            "device count can no longer change. Call `xaijax.use_cpu_devices()` before any JAX "
            "computation (right after the imports), or set the environment variable "
            f"JAX_NUM_CPU_DEVICES={int(count)} before starting Python."
        )
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError as e:  # JAX's own "too late" check
        raise errors.DevicesAlreadyStartedError(
            f"JAX refused to change the CPU device count ({e}). Call "
            "`xaijax.use_cpu_devices()` before any JAX computation."
        ) from e
    return int(count)


@functools.cache
def _batch_mesh(devices: tuple) -> Mesh:
    return Mesh(np.asarray(devices), ("batch",), axis_types=(AxisType.Auto,))


def shard_batch(tree, devices=None):
    """Puts the leading (batch) axis of every array of ``tree`` over ``devices``.

    Uses the largest number of the devices (default: all local devices) that divides the batch,
    on a one-axis mesh named ``"batch"`` (``AxisType.Auto``). Explainers given such a batch run
    with no collective and return results sharded the same way.

    Args:
      tree: an array ``[B, ...]`` or a pytree of them (same ``B``).
      devices: a sequence of devices; ``None`` means ``jax.local_devices()``.

    Returns:
      ``tree`` with every leaf placed with ``NamedSharding(mesh, P("batch"))``.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return tree
    batch = int(np.shape(leaves[0])[0])
    devices = tuple(jax.local_devices() if devices is None else devices)
    count = max((n for n in range(1, len(devices) + 1) if batch % n == 0), default=1)
    sharding = NamedSharding(_batch_mesh(devices[:count]), PartitionSpec("batch"))
    return jax.tree_util.tree_map(lambda a: jax.device_put(a, sharding), tree)


def batch_axis_sharding(x) -> NamedSharding | None:
    """The caller's ``NamedSharding`` of a concrete ``x`` when it splits only the batch axis."""
    if isinstance(x, jax.core.Tracer):
        return None
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, NamedSharding) or len(sharding.device_set) < 2:
        return None
    spec = tuple(sharding.spec) + (None,) * (np.ndim(x) - len(sharding.spec))
    if spec[0] is None or any(s is not None for s in spec[1:]):
        return None
    return sharding


def per_device(fn):
    """``fn`` over a batch, each device running it on its own share when the batch is sharded.

    For kernels whose programs would otherwise need a collective although every example is
    independent: a ``vmap``-ed ``while_loop`` stops when *no* example wants another iteration,
    which over a sharded batch is an all-reduce per iteration. Under ``shard_map`` each device
    loops over its own examples. ``fn`` maps ``[B, ...] -> [B, ...]`` with no cross-example
    operation; a batch not sharded along its first axis goes to the plain ``jax.jit(fn)``.
    """
    plain = jax.jit(fn)

    @functools.cache
    def on(mesh: Mesh, axis):
        spec = PartitionSpec(axis)
        return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False))

    def program(x):
        sharding = batch_axis_sharding(x)
        if sharding is None:
            return plain
        return on(sharding.mesh, sharding.spec[0])

    def run(x):
        return program(x)(x)

    run.lowered = lambda x: program(x).lower(x)  # the program ``run(x)`` runs, lowered
    return run
