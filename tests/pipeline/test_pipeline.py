"""xaijax.pipeline: a source explained into a resumable store equals the explainer called on the
whole dataset; interruptions (an exception in the writer, SIGKILL) lose and repeat nothing;
named errors before work."""

from __future__ import annotations

import functools
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax.data import ArraySource
from xaijax.pipeline import _run, _store, explain_dataset, open_results

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
N, D, C = 21, 5, 3


def f(p, x):
    return jnp.tanh(x @ p)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    label = rng.integers(0, C, N).astype(np.int32)
    w = jnp.asarray(rng.normal(size=(D, C)).astype(np.float32))
    return ArraySource({"x": x, "label": label}), x, label, w


def test_the_store_equals_the_explainer_on_the_whole_dataset(data, tmp_path):
    src, x, _, w = data
    grad = xaijax.gradient(f)
    res = explain_dataset(grad, w, src, tmp_path / "s", batch_size=8, input_key="x")
    assert jax.device_count() == 4 and res.complete  # 3 batches over 4 devices, last padded
    np.testing.assert_array_equal(res.read("index"), np.arange(N))
    np.testing.assert_array_equal(res.read("target"), np.argmax(np.asarray(f(w, x)), -1))
    np.testing.assert_allclose(res.read("map"), np.asarray(grad(w, x)), rtol=1e-5, atol=1e-6)
    assert res["map"].shape == (N, D) and res["map"].chunk_layout.write_chunk.shape == (2, D)
    np.testing.assert_array_equal(res.read("map", [20, 3]), res.read("map")[[20, 3]])
    again = open_results(tmp_path / "s")
    assert again.manifest["explainer"] == "gradient" and again.manifest["source"]["len"] == N
    np.testing.assert_array_equal(again.example(20)["map"], res.read("map")[20])


def test_target_field_and_float16_maps(data, tmp_path):
    src, x, label, w = data
    ig = xaijax.integrated_gradients(f, steps=4)
    res = explain_dataset(
        ig, w, src, tmp_path / "s", batch_size=4, input_key="x", target_key="label", dtype="float16"
    )
    assert res["map"].dtype.numpy_dtype == np.float16
    np.testing.assert_array_equal(res.read("target"), label)
    ref = np.asarray(ig(w, x, label)).astype(np.float16)
    np.testing.assert_allclose(res.read("map").astype(np.float32), ref, rtol=1e-3, atol=1e-3)


def test_stochastic_results_come_from_the_example_index_not_the_batch(data, tmp_path):
    src, x, _, w = data
    sg = xaijax.smooth(xaijax.gradient(f), num_samples=3, chunk_size=3)
    key = jax.random.key(7)
    maps = [
        explain_dataset(sg, w, src, tmp_path / f"b{b}", batch_size=b, input_key="x", key=key)
        for b in (4, 8, 12)
    ]
    for m in maps[1:]:
        np.testing.assert_allclose(m.read("map"), maps[0].read("map"), rtol=1e-5, atol=1e-6)
    # the oracle: example i alone with the key fold_in(key, i)
    for i in (0, 13, 20):
        one = sg(w, x[i : i + 1], key=jax.random.fold_in(key, i))
        np.testing.assert_allclose(maps[0].read("map", i), np.asarray(one[0]), rtol=1e-5, atol=1e-6)
    with pytest.raises(xaijax.errors.MissingKeyError):
        explain_dataset(sg, w, src, tmp_path / "nokey", batch_size=4, input_key="x")


class Pair(NamedTuple):
    grad: jax.Array
    score: jax.Array


def test_a_namedtuple_result_is_one_array_per_field(data, tmp_path):
    src, x, _, w = data

    def both(params, xx, target):
        g = xaijax.gradient(f).run(params, xx, target)
        return Pair(g, f(params, xx)[jnp.arange(len(xx)), target])

    res = explain_dataset(
        xaijax.explainer(both, f), w, src, tmp_path / "s", batch_size=4, input_key="x"
    )
    tops = {"top_classes", "top_probabilities"}
    assert set(res.names) == {"index", "target", "grad", "score"} | tops
    np.testing.assert_allclose(res.read("score"), np.max(np.asarray(f(w, x)), -1), rtol=1e-6)


def test_the_explain_program_holds_no_collective(data):
    src, x, _, w = data
    mesh = _run._default_mesh()
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("batch",)))
    xs = jax.device_put(jnp.asarray(x[:8]), sharding)
    idx = jax.device_put(jnp.arange(8, dtype=jnp.int32), sharding)
    mask = jax.device_put(jnp.asarray(x[:8] > 0), sharding)  # top-k and metrics: per example
    cases = {
        "gradient": (xaijax.gradient(f), None),
        "integrated_gradients": (xaijax.integrated_gradients(f, steps=4), None),
        "smooth": (xaijax.smooth(xaijax.gradient(f), num_samples=2), jax.random.key(0)),
    }
    for name, (e, key) in cases.items():
        program = jax.jit(_run._program(e, False, 2, True), out_shardings=sharding)
        hlo = program.lower(w, xs, None, idx, key, mask).compile().as_text()
        found = [op for op in COLLECTIVES if op in hlo]
        assert not found, f"{name}: {found}"
        out, extras, status = program(w, xs, None, idx, key, mask)
        assert not np.asarray(status).any()  # the value check, made on the device
        assert len(out.sharding.device_set) == 4
        assert set(extras) == {
            "target",
            "top_classes",
            "top_probabilities",
            "energy_in_mask",
            "pointing_game",
        }


def test_an_exception_in_the_writer_mid_batch_loses_nothing(data, tmp_path, monkeypatch):
    src, _, _, w = data
    grad = xaijax.gradient(f)
    full = explain_dataset(grad, w, src, tmp_path / "full", batch_size=8, input_key="x")
    calls = []
    real = _run._write

    def failing(store, start, rows):
        calls.append(start)
        if sum(c >= 8 for c in calls) == 4:  # batch 1, after some of its chunks were written
            raise OSError("disk full (injected)")
        return real(store, start, rows)

    monkeypatch.setattr(_run, "_write", failing)
    with pytest.raises(OSError, match="injected"):
        explain_dataset(grad, w, src, tmp_path / "s", batch_size=8, input_key="x")
    assert _store.done_batches(str(tmp_path / "s"), 0) == {0}
    monkeypatch.setattr(_run, "_write", real)
    finished = []
    monkeypatch.setattr(_store, "mark_done", lambda p, pid, b: finished.append(b) or None)
    res = explain_dataset(grad, w, src, tmp_path / "s", batch_size=8, input_key="x")
    assert finished == [1, 2]  # only the missing batches ran
    for name in ("index", "target", "map"):
        np.testing.assert_array_equal(res.read(name), full.read(name))


def test_manifest_mismatch_is_a_named_error_and_resume_false_starts_again(data, tmp_path):
    src, _, _, w = data
    out = tmp_path / "s"
    explain_dataset(xaijax.gradient(f), w, src, out, batch_size=8, input_key="x")
    with pytest.raises(xaijax.errors.ManifestMismatchError, match="params_fingerprint"):
        explain_dataset(xaijax.gradient(f), w + 1, src, out, batch_size=8, input_key="x")
    ig = xaijax.integrated_gradients(f, steps=4)
    with pytest.raises(xaijax.errors.ManifestMismatchError, match="explainer.*options"):
        explain_dataset(ig, w, src, out, batch_size=8, input_key="x")
    sm = xaijax.smooth(xaijax.integrated_gradients(f, steps=4), num_samples=2)
    explain_dataset(sm, w, src, tmp_path / "sm", batch_size=8, input_key="x", key=jax.random.key(0))
    sm8 = xaijax.smooth(xaijax.integrated_gradients(f, steps=8), num_samples=2)
    steps = "inner.options.steps: store has 4, this run 8"  # wrapped options, by their path
    with pytest.raises(xaijax.errors.ManifestMismatchError, match=steps):
        explain_dataset(
            sm8, w, src, tmp_path / "sm", batch_size=8, input_key="x", key=jax.random.key(0)
        )
    # Another method on the same store: the differing fields by name, in a short message.
    with pytest.raises(xaijax.errors.ManifestMismatchError) as e:
        explain_dataset(ig, w, src, out, batch_size=8, input_key="x", top_k=0)
    assert "arrays.top_classes: store has {" in str(e.value) and len(str(e.value)) < 1200
    with pytest.raises(xaijax.errors.ManifestMismatchError, match="key_fingerprint"):
        explain_dataset(
            sm, w, src, tmp_path / "sm", batch_size=8, input_key="x", key=jax.random.key(1)
        )
    with pytest.raises(ValueError, match="batch_size"):  # also a ValueError
        explain_dataset(xaijax.gradient(f), w, src, out, batch_size=4, input_key="x")
    res = explain_dataset(ig, w, src, out, batch_size=8, input_key="x", resume=False)
    assert res.manifest["explainer"] == "integrated_gradients" and res.complete


def test_bad_outputs_and_arguments_are_named_errors_before_work(data, tmp_path, monkeypatch):
    src, _, _, w = data
    grad = xaijax.gradient(f)
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(_run, "_program", lambda *a: pytest.fail("work started"))
    with pytest.raises(xaijax.errors.OutputPathError, match="regular file"):
        explain_dataset(grad, w, src, tmp_path / "file" / "out", batch_size=8, input_key="x")
    with pytest.raises(xaijax.errors.OutputPathError, match="existing file"):
        explain_dataset(grad, w, src, tmp_path / "file", batch_size=8, input_key="x")
    # A directory that cannot be made (/proc, even for root): named, not a FileNotFoundError.
    with pytest.raises(xaijax.errors.OutputPathError, match="/proc/xaijax_nope/out"):
        explain_dataset(grad, w, src, "/proc/xaijax_nope/out", batch_size=8, input_key="x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(xaijax.errors.OutputPathError, match="not an xaijax store"):
        explain_dataset(grad, w, src, tmp_path / "other", batch_size=8, input_key="x")
    bad = [
        ({"batch_size": 6}, "multiple of the 4 devices"),
        ({"batch_size": 8, "dtype": "bfloat16"}, "dtype"),
        ({"batch_size": 8}, "input_key"),  # two fields, none named
        ({"batch_size": 8, "input_key": "img"}, "not a field"),
        ({"batch_size": 8, "input_key": "x", "key": jax.random.key(0)}, "deterministic"),
    ]
    for kwargs, match in bad:
        with pytest.raises(xaijax.errors.InvalidArgumentError, match=match):
            explain_dataset(grad, w, src, tmp_path / "new", **kwargs)
    with pytest.raises(xaijax.errors.NotAnExplainerError):
        explain_dataset(f, w, src, tmp_path / "new", batch_size=8, input_key="x")
    with pytest.raises(xaijax.errors.OutputPathError, match="no xaijax store"):
        open_results(tmp_path / "other")
    assert not (tmp_path / "new").exists()


def _image_model(p, x):
    return x.reshape(x.shape[0], -1) @ p


@pytest.fixture(scope="module")
def images():
    """4 tiny images [4, 8, 8, 1] and a linear model's weights [64, C]."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 8, 8, 1)).astype(np.float32)
    w = jnp.asarray(rng.normal(size=(64, C)).astype(np.float32))
    return ArraySource({"x": x}), w


_WRAPPERS = {
    "jit": jax.jit,
    "partial": functools.partial,
    "lambda": lambda e: lambda p, x, t=None: e(p, x, t),
}


@pytest.mark.parametrize("wrap", list(_WRAPPERS))
def test_a_wrapped_explainer_writes_the_same_store_or_a_named_error(images, tmp_path, wrap):
    src, w = images
    e = xaijax.gradient(_image_model)
    wrapped = _WRAPPERS[wrap](e)
    if wrap == "lambda":  # a bare function does not say which model it explains
        with pytest.raises(xaijax.errors.NotAnExplainerError, match="xaijax.explainer"):
            explain_dataset(wrapped, w, src, tmp_path / "w", batch_size=4, progress=False)
        assert not (tmp_path / "w").exists()
        return
    ref = explain_dataset(e, w, src, tmp_path / "e", batch_size=4, progress=False)
    res = explain_dataset(wrapped, w, src, tmp_path / "w", batch_size=4, progress=False)
    assert res.complete and res.manifest["explainer"] == ref.manifest["explainer"]
    for name in ("index", "target", "map", "top_classes", "top_probabilities"):
        np.testing.assert_array_equal(res.read(name), ref.read(name), err_msg=name)


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    import jax.numpy as jnp, numpy as np, xaijax
    from xaijax.data import ArraySource
    from xaijax.pipeline import _run, _store, explain_dataset

    out, log, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    w = jnp.asarray(rng.normal(size=(4, 3)).astype(np.float32))

    writes = []
    real_write = _run._write
    def write(store, start, rows):
        writes.append(start)
        future = real_write(store, start, rows)
        if len(writes) == kill_at:  # SIGKILL with this write (and others) in flight
            os.kill(os.getpid(), signal.SIGKILL)
        return future
    _run._write = write

    real_mark = _store.mark_done
    def mark(path, pid, b):
        real_mark(path, pid, b)
        with open(log, "a") as f:
            f.write(f"{b}\\n")
    _store.mark_done = mark
    explain = xaijax.smooth(xaijax.gradient(lambda p, v: v @ p), num_samples=2)
    explain_dataset(explain, w, ArraySource({"x": x}), out, batch_size=8, key=jax.random.key(3))
    print("finished", flush=True)
    """
)


def _child(out, log, kill_at=0):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-c", _CHILD, str(out), str(log), str(kill_at)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sigkill_at_random_points_loses_and_repeats_nothing(tmp_path):
    """64 examples, batches of 8 over 2 devices: 10 writes per batch (index, target, top classes,
    top probabilities, map on each device), up to 4 batches in flight. Five runs SIGKILL
    themselves at a random write before the last one of the batches left to do (writes in
    flight, records pending); each next run resumes, the sixth finishes."""
    rng = random.Random(0)
    out, log = tmp_path / "s", tmp_path / "log"
    progress = []
    for _ in range(5):
        left = 8 - len(_store.done_batches(str(out), 0)) if out.exists() else 8
        run = _child(out, log, kill_at=rng.randint(1, 10 * left - 1))
        assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
        progress.append(len(_store.done_batches(str(out), 0)))
    assert progress == sorted(progress) and 0 < progress[-1] < 8, progress
    last = _child(out, log)
    assert last.returncode == 0 and "finished" in last.stdout, last.stderr[-3000:]
    # no batch ran again once recorded (a kill between a record and its log line could drop a
    # line, never add one); every batch is recorded
    done = [int(b) for b in log.read_text().split()]
    assert len(done) == len(set(done)) and set(done) <= set(range(8)), done
    res = open_results(out)
    assert res.complete and _store.done_batches(str(out), 0) == set(range(8))
    np.testing.assert_array_equal(res.read("index"), np.arange(64))
    ref = _child(tmp_path / "ref", tmp_path / "reflog")  # uninterrupted, a fresh process
    assert ref.returncode == 0, ref.stderr[-3000:]
    expect = open_results(tmp_path / "ref")
    assert res.names == expect.names
    for name in res.names:
        np.testing.assert_array_equal(res.read(name), expect.read(name))


def _two_processes(script: str, out, timeout: float):
    """Runs ``script`` as processes 0 and 1 of a ``jax.distributed`` run on 127.0.0.1 (argv:
    process id, port, ``out``); returns the processes and their (stdout, stderr)."""
    import socket

    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(sys.path))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i), str(port), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return procs, results


_PROCESS = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid,
        initialization_timeout=60,
    )
    import jax.numpy as jnp, numpy as np, xaijax
    from xaijax.data import ArraySource
    from xaijax.pipeline import _store, explain_dataset
    real = _store.mark_done
    def mark(path, pid, b):
        real(path, pid, b)
        print("done", b, flush=True)
    _store.mark_done = mark
    rng = np.random.default_rng(0)
    x = rng.normal(size=(21, 5)).astype(np.float32)
    w = jnp.asarray(rng.normal(size=(5, 3)).astype(np.float32))
    sg = xaijax.smooth(xaijax.gradient(lambda p, v: jnp.tanh(v @ p)), num_samples=3)
    res = explain_dataset(sg, w, ArraySource({"x": x}), out, batch_size=8, key=jax.random.key(7))
    print("ok", jax.process_index(), jax.device_count(), res.complete, flush=True)
    jax.distributed.shutdown()
    """
)


def test_two_processes_write_one_store_equal_to_one_process(tmp_path):
    """2 processes x 2 CPU devices (jax.distributed on 127.0.0.1) against this process's 4
    devices: the same store, a stochastic explainer included."""
    out = tmp_path / "two"

    def run_both():
        procs, results = _two_processes(_PROCESS, out, timeout=180)
        for i, (p, (stdout, stderr)) in enumerate(zip(procs, results, strict=True)):
            assert p.returncode == 0, stderr[-3000:]
            assert f"ok {i} 4 True" in stdout
        return [sorted(int(w) for w in re.findall(r"done (\d+)", o)) for o, _ in results]

    assert run_both() == [[0, 1, 2], [0, 1, 2]]
    # process 1's record of batch 1 lost: both processes agree to run batch 1 (and only it)
    os.remove(_store.done_path(str(out), 1, 1))
    assert run_both() == [[1], [1]]
    two = open_results(out)
    assert two.manifest["process_count"] == 2
    assert all(_store.done_batches(str(out), p) == {0, 1, 2} for p in (0, 1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(21, 5)).astype(np.float32)
    w = jnp.asarray(rng.normal(size=(5, 3)).astype(np.float32))
    sg = xaijax.smooth(xaijax.gradient(lambda p, v: jnp.tanh(v @ p)), num_samples=3)
    one = explain_dataset(
        sg, w, ArraySource({"x": x}), tmp_path / "one", batch_size=8, key=jax.random.key(7)
    )
    np.testing.assert_array_equal(two.read("index"), np.arange(21))
    np.testing.assert_array_equal(two.read("target"), one.read("target"))
    np.testing.assert_allclose(two.read("map"), one.read("map"), rtol=1e-6, atol=1e-7)


_FAILING = textwrap.dedent(
    """
    import sys, time
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid,
        initialization_timeout=60,
    )
    import jax.numpy as jnp, numpy as np, xaijax
    from xaijax.data import ArraySource
    from xaijax.pipeline import explain_dataset
    x = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    x[49, 0] = np.nan  # batch 6, rows 48-51: process 0's devices
    w = jnp.ones((5, 3))
    start = time.perf_counter()
    try:
        explain_dataset(xaijax.gradient(lambda p, v: jnp.tanh(v @ p)), w, ArraySource({"x": x}),
                        out, batch_size=8, progress=False)
    except Exception as e:
        print("raised", type(e).__name__, str(e), flush=True)
    print("seconds", time.perf_counter() - start, flush=True)
    """
)


def test_a_process_that_fails_stops_the_others_with_its_error(tmp_path):
    """Process 0 meets a NaN in its rows of batch 6: it raises the named error, and process 1,
    instead of waiting at the closing barrier until the coordination service times out,
    raises PeerProcessError naming it; the batches recorded before are kept."""
    out = tmp_path / "s"
    _, results = _two_processes(_FAILING, out, timeout=120)
    (out0, err0), (out1, err1) = results
    assert "raised NonFiniteInputError" in out0 and "[49]" in out0, err0[-2000:]
    assert "raised PeerProcessError" in out1, err1[-2000:]
    assert "process 0: NonFiniteInputError" in out1 and "[49]" in out1
    for text in (out0, out1):
        assert float(re.search(r"seconds ([\d.]+)", text).group(1)) < 30
    assert _store.done_batches(str(out), 0) >= {0, 1, 2, 3, 4}  # recorded before the failure
    assert 6 not in _store.done_batches(str(out), 0) and not open_results(out).complete


def test_non_finite_or_overflowing_maps_are_named_errors_and_not_recorded(data, tmp_path):
    src, x, _, w = data
    big = xaijax.gradient(lambda p, v: 1e6 * (v @ p))
    with pytest.raises(xaijax.errors.NonFiniteOutputError, match="float32"):
        explain_dataset(big, w, src, tmp_path / "h", batch_size=8, input_key="x", dtype="float16")
    assert _store.done_batches(str(tmp_path / "h"), 0) == set()
    # an example whose gradient is NaN (sqrt at 0), found after the first batch
    xs = x.copy()
    xs[17] = 0.0
    root = xaijax.gradient(lambda p, v: jnp.sqrt(jnp.sum(v * v, -1, keepdims=True)) + v @ p)
    with pytest.raises(xaijax.errors.NonFiniteOutputError, match=r"examples \[17\]"):
        explain_dataset(root, w, ArraySource({"x": xs}), tmp_path / "n", batch_size=8)
    assert _store.done_batches(str(tmp_path / "n"), 0) == {0, 1}


def test_a_source_smaller_than_the_device_count_is_a_named_error(data, tmp_path):
    src, x, _, w = data
    small = ArraySource({"x": x[:3]})
    with pytest.raises(xaijax.errors.InvalidArgumentError, match="3 examples, fewer than the 4"):
        explain_dataset(xaijax.gradient(f), w, small, tmp_path / "s", batch_size=4)
    assert not os.path.exists(tmp_path / "s")  # before any work
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:3]), ("batch",))  # what it advises
    res = explain_dataset(xaijax.gradient(f), w, small, tmp_path / "s", batch_size=3, mesh=mesh)
    ref = np.asarray(xaijax.gradient(f)(w, x[:3]))
    np.testing.assert_allclose(res.read("map"), ref, rtol=1e-5, atol=1e-6)


def test_top_k_probabilities_and_per_example_metrics_against_numpy(data, tmp_path, capsys):
    src, x, label, w = data
    mask = np.abs(x) > 0.5
    source = ArraySource({"x": x, "label": label, "mask": mask})
    grad = xaijax.gradient(f)
    res = explain_dataset(
        grad,
        w,
        source,
        tmp_path / "s",
        batch_size=8,
        input_key="x",
        target_key="label",
        mask_key="mask",
        top_k=2,
    )
    logits = np.asarray(f(w, x), np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    order = np.argsort(-p, axis=-1)[:, :2]
    np.testing.assert_array_equal(res.read("top_classes"), order)
    np.testing.assert_allclose(
        res.read("top_probabilities"), np.take_along_axis(p, order, -1), rtol=1e-5
    )
    g = np.asarray(grad(w, x, jnp.asarray(label)))
    pos = np.maximum(g, 0)
    energy = np.where(mask, pos, 0).sum(-1) / np.where(pos.sum(-1) > 0, pos.sum(-1), 1)
    np.testing.assert_allclose(res.read("energy_in_mask"), energy, rtol=1e-5, atol=1e-7)
    hits = mask[np.arange(N), np.argmax(g, -1)]
    np.testing.assert_array_equal(res.read("pointing_game"), hits)
    summary = res.summary()
    assert summary["accuracy"] == pytest.approx(np.mean(order[:, 0] == label))
    assert summary["pointing_game"] == pytest.approx(hits.mean())
    assert f"pointing_game {hits.mean():.3f}" in capsys.readouterr().err
    assert set(res.stats) >= {"seconds", "data_wait_s", "device_wait_s", "write_s"}
    # top_k above the number of classes stores them all; 0 stores none.
    res = explain_dataset(grad, w, source, tmp_path / "t", batch_size=8, input_key="x", top_k=9)
    assert res["top_classes"].shape == (N, C) and res.manifest["top_k"] == C
    res = explain_dataset(grad, w, source, tmp_path / "u", batch_size=8, input_key="x", top_k=0)
    assert "top_classes" not in res.names and res.summary() == {}


def test_a_second_run_of_the_same_explainer_compiles_nothing(data, tmp_path):
    src, x, _, w = data
    grad = xaijax.gradient(f)
    first = explain_dataset(grad, w, src, tmp_path / "a", batch_size=8, input_key="x")
    second = explain_dataset(grad, w, src, tmp_path / "b", batch_size=8, input_key="x")
    (programs,) = [p for (e, *_), p in _run._PROGRAMS.items() if e is grad]
    assert programs._cache_size() == 1
    np.testing.assert_array_equal(first.read("map"), second.read("map"))
    explain_dataset(grad, w, src, tmp_path / "c", batch_size=4, input_key="x")  # new shape
    assert programs._cache_size() == 2


def test_mask_explanations_are_stored_by_field_and_scored_by_their_map(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((6, 16, 16, 3)).astype(np.float32)
    truth = np.zeros((6, 16, 16), bool)
    truth[:, 4:12, 4:12] = True
    w = jnp.asarray(rng.normal(size=(16 * 16 * 3, 3)).astype(np.float32))

    def linear(p, x):
        return x.reshape(len(x), -1) @ p

    e = xaijax.masks.smooth_mask(linear, iterations=3)
    res = explain_dataset(
        e,
        w,
        ArraySource({"image": images, "truth": truth}),
        tmp_path / "s",
        batch_size=4,
        input_key="image",
        mask_key="truth",
        progress=False,
    )
    direct = e(w, jnp.asarray(images))
    for field in ("map", "mask", "drop"):
        np.testing.assert_allclose(res.read(field), np.asarray(getattr(direct, field)), atol=1e-5)
    expect = np.asarray(xaijax.metrics.energy_in_mask(direct.map, jnp.asarray(truth)))
    np.testing.assert_allclose(res.read("energy_in_mask"), expect, atol=1e-5)


def test_bad_masks_and_top_k_are_named_errors_before_work(data, tmp_path):
    src, x, label, w = data
    grad = xaijax.gradient(f)
    bad = ArraySource({"x": x, "mask": np.ones((N, D + 1), bool)})
    with pytest.raises(xaijax.errors.InvalidArgumentError, match=r"masks in 'mask' are \[6\]"):
        explain_dataset(grad, w, bad, tmp_path / "s", batch_size=4, input_key="x", mask_key="mask")
    with pytest.raises(xaijax.errors.InvalidArgumentError, match="'nope' is not a field"):
        explain_dataset(grad, w, bad, tmp_path / "s", batch_size=4, input_key="x", mask_key="nope")
    for k in (-1, 1.5, True):
        with pytest.raises(xaijax.errors.InvalidArgumentError, match="top_k"):
            explain_dataset(grad, w, src, tmp_path / "s", batch_size=4, input_key="x", top_k=k)

    def pair(params, xx, target):
        return Pair(grad.run(params, xx, target), xx[:, 0])

    ok = ArraySource({"x": x, "mask": x > 0})
    with pytest.raises(xaijax.errors.InvalidArgumentError, match="scores maps"):
        explain_dataset(
            xaijax.explainer(pair, f),
            w,
            ok,
            tmp_path / "s",
            batch_size=4,
            input_key="x",
            mask_key="mask",
        )
    assert not os.path.exists(tmp_path / "s")


def test_a_grain_source_on_the_callers_mesh_with_a_closing_line(data, tmp_path, capsys):
    grain = pytest.importorskip("grain")
    src, x, _, w = data
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("data",))
    ds = grain.MapDataset.source(src)
    res = explain_dataset(
        xaijax.gradient(f), w, ds, tmp_path / "s", batch_size=6, input_key="x", mesh=mesh
    )
    assert res.manifest["devices"] == 2 and res["map"].chunk_layout.write_chunk.shape == (3, D)
    np.testing.assert_allclose(
        res.read("map"), np.asarray(xaijax.gradient(f)(w, x)), rtol=1e-5, atol=1e-6
    )
    assert f"{N} examples explained in" in capsys.readouterr().err
    again = explain_dataset(
        xaijax.gradient(f), w, ds, tmp_path / "s", batch_size=6, input_key="x", mesh=mesh
    )
    assert again.complete and "0 examples explained in" in capsys.readouterr().err


def test_reads_on_grain_threads_equal_one_reader_thread(data, tmp_path):
    pytest.importorskip("grain")
    src, x, label, w = data
    source = ArraySource({"x": x, "label": label})
    ig = xaijax.integrated_gradients(f, steps=4)
    kw = dict(batch_size=8, input_key="x", target_key="label", progress=False)
    one = explain_dataset(ig, w, source, tmp_path / "one", **kw)
    # Threads, with batch 1 already recorded: the threads read exactly the batches left.
    os.makedirs(tmp_path / "many")
    explain_dataset(ig, w, source, tmp_path / "many", **kw)
    for b in (0, 2):
        os.remove(_store.done_path(str(tmp_path / "many"), 0, b))
    many = explain_dataset(ig, w, source, tmp_path / "many", read_threads=4, **kw)
    for name in one.names:
        np.testing.assert_array_equal(many.read(name), one.read(name))
    bad = ArraySource({"x": np.where(np.arange(N)[:, None] == 17, np.nan, x), "label": label})
    with pytest.raises(xaijax.errors.NonFiniteInputError, match=r"\[17\]"):
        explain_dataset(ig, w, bad, tmp_path / "bad", read_threads=2, **kw)
    with pytest.raises(xaijax.errors.InvalidArgumentError, match="read_threads"):
        explain_dataset(ig, w, source, tmp_path / "x", read_threads=-1, **kw)


def test_bad_values_in_later_batches_are_named_errors(data, tmp_path):
    src, x, label, w = data
    xs, ys = x.copy(), label.copy()
    xs[18, 2] = np.nan
    with pytest.raises(xaijax.errors.NonFiniteInputError, match=r"\[18\]"):
        explain_dataset(xaijax.gradient(f), w, ArraySource({"x": xs}), tmp_path / "a", batch_size=8)
    ys[13] = C
    with pytest.raises(xaijax.errors.TargetOutOfRangeError, match=r"\[13\]"):
        explain_dataset(
            xaijax.gradient(f),
            w,
            ArraySource({"x": x, "y": ys}),
            tmp_path / "b",
            batch_size=8,
            input_key="x",
            target_key="y",
        )
    assert _store.done_batches(str(tmp_path / "b"), 0) == {0}


def test_a_store_recreated_after_an_interrupted_clear_keeps_no_old_record(data, tmp_path):
    src, _, _, w = data
    out = tmp_path / "s"
    explain_dataset(xaijax.gradient(f), w, src, out, batch_size=8, input_key="x")
    os.remove(out / "manifest.json")  # as if killed inside clear() (the manifest goes first)
    ig = xaijax.integrated_gradients(f, steps=2)
    ran = []
    real = _store.mark_done
    try:
        _store.mark_done = lambda p, pid, b: ran.append(b) or real(p, pid, b)
        res = explain_dataset(ig, w, src, out, batch_size=8, input_key="x")
    finally:
        _store.mark_done = real
    assert ran == [0, 1, 2] and res.manifest["explainer"] == "integrated_gradients"
