"""Data parallelism over the host's CPU cores, on by default.

XLA:CPU runs one device's convolutions on one core (on the project's 2-core machine, pinning
the process to one core did not slow a CNN's forward pass), so a batch on one CPU device leaves
the other cores idle. xaijax therefore gives JAX two CPU devices per core
(:data:`DEVICES_PER_CORE`) when it is imported before any JAX computation has run, and the
attribution explainers and SLIC (through :func:`per_device`: its while loops would otherwise
meet across devices) place a concrete input batch over those devices (``NamedSharding`` on
the batch axis, parameters replicated) before calling their jitted kernels. The kernels hold no
cross-example operation, so the partitioned programs contain no collective (checked by
tests/attribution/test_devices.py): each device explains its share of the batch. Results equal
the single-device ones up to float rounding, and come back on one device (:func:`collect`).

Nothing changes on an accelerator, inside ``jit``/``vmap`` (tracers are never moved), for a batch
the devices do not divide, for a batch the caller already placed on several devices, or for
parameters the caller committed to one device. Turn it off with the environment variable
``XAIJAX_CPU_DATA_PARALLEL=0`` (read at import) or :func:`set_cpu_data_parallel`; choose the
device count yourself with ``jax.config.update("jax_num_cpu_devices", n)`` before importing
xaijax (xaijax never overrides a count the user set, by config or ``XLA_FLAGS``).

Figures: ``experiments/bench/attribution.py`` (columns "1 dev" and "default").
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

_enabled = os.environ.get("XAIJAX_CPU_DATA_PARALLEL", "1") != "0"

#: CPU devices per usable core. Two beat one on every explainer of the Captum benchmark on the
#: 2-core machine (smaller per-device batches: e.g. gradient 162 vs 198 ms, Grad-CAM 50 vs 85 ms,
#: forward 45 vs 125 ms for a batch of 32; ``experiments/bench/attribution.py --worker 4`` and
#: ``--worker 0`` with one device per core, 2026-11-22).
DEVICES_PER_CORE = 2


def set_cpu_data_parallel(enabled: bool) -> None:
    """Turns the automatic placement of input batches over CPU devices on or off.

    Args:
      enabled: whether explainers spread a concrete batch over the local CPU devices.

    >>> import xaijax
    >>> xaijax.set_cpu_data_parallel(False)  # one device, as plain JAX
    >>> xaijax.set_cpu_data_parallel(True)
    """
    global _enabled
    _enabled = bool(enabled)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_cpu_devices() -> None:
    """Asks JAX for :data:`DEVICES_PER_CORE` CPU devices per usable core, unless too late or
    already chosen."""
    from jax._src import xla_bridge  # no public query for "backends initialised" yet

    if not _enabled or xla_bridge.backends_are_initialized():
        return
    if "JAX_NUM_CPU_DEVICES" in os.environ:
        return
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    if jax.config.jax_num_cpu_devices not in (-1, 1):  # set by the user
        return
    cores = _usable_cores()
    if cores > 1:
        jax.config.update("jax_num_cpu_devices", DEVICES_PER_CORE * cores)


_meshes: set[Mesh] = set()


@functools.cache
def _mesh(count: int) -> Mesh:
    devices = np.asarray(jax.local_devices()[:count])
    mesh = Mesh(devices, ("batch",), axis_types=(AxisType.Auto,))
    _meshes.add(mesh)
    return mesh


def batch_sharding(batch: int) -> NamedSharding | None:
    """The sharding that spreads ``batch`` examples over the local CPU devices, or ``None``.

    Uses the largest number of devices (at least 2) that divides ``batch``; ``None`` when
    disabled, on accelerators, or when no such number exists.
    """
    if not _enabled:
        return None
    devices = jax.local_devices()
    if devices[0].platform != "cpu" or len(devices) < 2:
        return None
    count = max((n for n in range(2, len(devices) + 1) if batch % n == 0), default=0)
    if count < 2:
        return None
    return NamedSharding(_mesh(count), PartitionSpec("batch"))


def _pinned(tree) -> bool:
    """Whether any array of ``tree`` was committed by the caller to a single device."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            if getattr(leaf, "committed", False) and len(leaf.sharding.device_set) == 1:
                return True
    return False


def place_batch(params, *arrays):
    """Spreads concrete ``[B, ...]`` arrays (``None`` passes) over the CPU devices.

    Returns ``arrays`` unchanged when any is traced, already spread over several devices, or
    when ``params`` are pinned to one device; see the module docstring.
    """
    present = [a for a in arrays if a is not None]
    if not present or any(isinstance(a, jax.core.Tracer) for a in present):
        return arrays
    if any(isinstance(a, jax.Array) and len(a.sharding.device_set) > 1 for a in present):
        return arrays
    sharding = batch_sharding(present[0].shape[0])
    if sharding is None or _pinned(params):
        return arrays
    return tuple(None if a is None else jax.device_put(a, sharding) for a in arrays)


def collect(tree):
    """Brings arrays that :func:`place_batch` spread back to one (uncommitted) device.

    Only arrays on xaijax's own batch meshes move; anything the caller sharded is left alone.
    On a CPU host this is a host-memory copy (about 1 ms for a [32, 64, 64, 3] float32 map).
    """

    def one(leaf):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, NamedSharding) and sharding.mesh in _meshes:
            if not isinstance(leaf, jax.core.Tracer):
                return jnp.asarray(np.asarray(leaf))
        return leaf

    return jax.tree_util.tree_map(one, tree)


def per_device(fn):
    """``fn`` over a batch, each device running it on its own share when the batch is spread.

    For kernels whose programs would otherwise need a collective although every example is
    independent: a ``vmap``-ed ``while_loop`` stops when *no* example wants another iteration,
    which over a spread batch is an all-reduce per iteration. Under ``shard_map`` each device
    loops over its own examples. ``fn`` maps ``[B, ...] -> [B, ...]`` with no cross-example
    operation; a batch that is not on one of xaijax's meshes goes to the plain ``jax.jit(fn)``.
    """
    plain = jax.jit(fn)

    @functools.cache
    def on(mesh: Mesh):
        spec = PartitionSpec("batch")
        return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False))

    def program(x):
        sharding = getattr(x, "sharding", None)
        if (
            isinstance(sharding, NamedSharding)
            and sharding.mesh in _meshes
            and not isinstance(x, jax.core.Tracer)
        ):
            return on(sharding.mesh)
        return plain

    def run(x):
        return program(x)(x)

    run.lower = lambda x: program(x).lower(x)  # the program ``run(x)`` runs, lowered
    return run
