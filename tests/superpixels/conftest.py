"""``host_reads``: the shapes of the jax arrays whose values were read on the host."""

from __future__ import annotations

import contextlib

import pytest
from jax._src import array as jax_array


@pytest.fixture
def host_reads(monkeypatch):
    """``with host_reads() as shapes: ...`` records the shape of every jax array whose value is
    read on the host (``np.asarray``, ``bool``, ``jax.device_get``...) inside the block.

    A single-device CPU array can be read through the buffer protocol without this hook, so use
    it on a batch sharded over several devices (``xaijax.shard_batch``): then every read of a
    value goes through ``ArrayImpl._value``.
    """
    original = jax_array.ArrayImpl._value
    shapes: list[tuple[int, ...]] = []
    active = [False]

    def spy(self):
        if active[0]:
            shapes.append(tuple(self.shape))
        return original.fget(self)

    monkeypatch.setattr(jax_array.ArrayImpl, "_value", property(spy))

    @contextlib.contextmanager
    def record():
        shapes.clear()
        active[0] = True
        try:
            yield shapes
        finally:
            active[0] = False

    return record
