"""Test configuration shared by the whole suite.

* Strict numerics: implicit rank promotion is an error (the classic saliency bug is a [B, H, W]
  map broadcast against [B, H, W, C] images).
* Four fake CPU devices, so sharded code paths run in CI on a machine without accelerators.
* ``compile_counter``: counts XLA compilations, to assert a second same-shaped call compiles
  nothing.
* ``host_reads``: the shapes of the jax arrays whose values were read on the host.
"""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402
from jax._src import array as jax_array  # noqa: E402

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles: list[str] = []


def _listener(name, duration, **kwargs):
    del duration, kwargs
    if name == _COMPILE_EVENT:
        _compiles.append(name)


jax.monitoring.register_event_duration_secs_listener(_listener)


class CompileCounter:
    """``with counter() as n: ...`` then ``n.count`` is the number of XLA compilations inside."""

    count: int = 0

    @contextlib.contextmanager
    def __call__(self):
        start = len(_compiles)
        result = CompileCounter()
        try:
            yield result
        finally:
            result.count = len(_compiles) - start


@pytest.fixture
def compile_counter() -> CompileCounter:
    return CompileCounter()


@pytest.fixture
def assert_no_recompile(compile_counter):
    """``assert_no_recompile(fn, *args, **kw)``: calls twice; the second call compiles nothing."""

    def check(fn, *args, **kwargs):
        first = fn(*args, **kwargs)
        jax.block_until_ready(first)
        with compile_counter() as n:
            second = fn(*args, **kwargs)
            jax.block_until_ready(second)
        assert n.count == 0, f"second same-shaped call compiled {n.count} time(s)"
        return second

    return check


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


@pytest.fixture(scope="session")
def text_model():
    """``(net, params)``: the zoo's text model trained as experiments/train_zoo.py does (400
    steps of batch 64 on 4000 synthetic sequences, ~5 s), shared by the text tests."""
    from xaijax import models, training
    from xaijax.data import synthetic

    data = synthetic.make_texts(4000, seed=0, split="train")
    net = models.get_model("text1d", 10)
    result = training.train(
        net,
        {"tokens": data["tokens"], "label": data["label"]},
        input_key="tokens",
        steps=400,
        batch_size=64,
        learning_rate=3e-3,
        seed=0,
        progress=False,
    )
    return net, result.params
