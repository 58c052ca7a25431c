"""The store of a dataset-scale run: zarr v3 arrays through tensorstore, a JSON manifest and one
completion record per batch and process.

Layout of ``out/``::

    manifest.json          what was explained, with what (checked on resume); written last
    <name>/zarr.json, c/   one zarr v3 array [N, ...] per output, chunked along the example axis
    _done/p<P>/b<batch>    empty files: process P's rows of global batch <batch> are durable
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np

from xaijax import _paths, errors

MANIFEST = "manifest.json"
DONE = "_done"
FORMAT = "xaijax.pipeline/1"


def _ts():
    try:
        import tensorstore as ts  # installed with orbax-checkpoint
    except ImportError as e:
        raise errors.MissingDependencyError(
            "xaijax.pipeline writes its stores through tensorstore, which is not installed: "
            "`pip install 'xaijax[pipeline]'` (or `pip install tensorstore`)."
        ) from e
    return ts


def size_bytes(path: str) -> int:
    """Bytes of the files under ``path``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _spec(path: str) -> dict:
    return {"driver": "zarr3", "kvstore": {"driver": "file", "path": os.path.abspath(path)}}


def check_out(out: Any) -> str:
    """``out`` as a path where a store can be written, or :class:`OutputPathError` (no work
    starts before this check)."""
    path = _paths.check_writable_dir(out, "out", "the store")
    if not os.path.isdir(path) or os.path.exists(os.path.join(path, MANIFEST)):
        return path
    # Another process of the run may be probing ``out`` right now: its probe is not content.
    content = [n for n in os.listdir(path) if not n.startswith(_paths.PROBE_PREFIX)]
    if content and not os.path.isdir(os.path.join(path, DONE)):
        raise errors.OutputPathError(
            f"`out`={path!r} is a non-empty directory that is not an xaijax store (no "
            f"{MANIFEST}); nothing there is overwritten: give an empty or new directory."
        )
    return path


def fingerprint_arrays(leaves) -> str:
    """A hash of the shapes, dtypes and a sample of the values (up to 256 evenly spaced
    elements per array), cheap for large parameter trees."""
    h = hashlib.sha256()
    for a in leaves:
        a = np.asarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        flat = a.reshape(-1)
        if flat.size:
            sample = flat[np.linspace(0, flat.size - 1, min(flat.size, 256)).astype(np.int64)]
            h.update(np.ascontiguousarray(sample).tobytes())
    return h.hexdigest()[:32]


def jsonable(value: Any) -> Any:
    """Options as JSON: numbers, strings, lists; arrays by shape/dtype/fingerprint; the rest by
    ``repr``."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return {"array": list(np.shape(value)), "fingerprint": fingerprint_arrays([value])}
    if callable(value):
        return getattr(value, "__qualname__", getattr(value, "__name__", repr(value)))
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))  # no memory address: stable on resume


def read_manifest(path: str) -> dict | None:
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _differences(found: Any, wanted: Any, where: str) -> list[str]:
    """``"where: store has A, this run B"`` for each differing leaf (nested dicts by key)."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        out = []
        for k in sorted(set(found) | set(wanted)):
            out += _differences(found.get(k), wanted.get(k), f"{where}.{k}" if where else k)
        return out
    if found == wanted:
        return []

    def short(v):
        text = repr(v)
        return text if len(text) <= 80 else text[:77] + "..."

    return [f"{where}: store has {short(found)}, this run {short(wanted)}"]


def check_manifest(found: dict, wanted: dict, path: str) -> None:
    """:class:`ManifestMismatchError` naming every field where the store differs (nested fields
    by their dotted path, long values shortened)."""
    diff = _differences(found, wanted, "")
    if diff:
        lines = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise errors.ManifestMismatchError(
            f"The store at {path!r} was written by a different run ({lines}). Resuming would mix "
            "results: pass the same explainer, params, source and settings, or write to a new "
            "`out`, or pass `resume=False` to delete it and start again."
        )


def clear(path: str, manifest: dict) -> None:
    """Deletes what a store of ``manifest`` holds (its arrays, records and manifest)."""
    os.remove(os.path.join(path, MANIFEST))
    for name in list(manifest.get("arrays", {})) + [DONE]:
        shutil.rmtree(os.path.join(path, name), ignore_errors=True)


def create(path: str, manifest: dict) -> None:
    """Creates the arrays of ``manifest`` (replacing any), then the manifest itself, last."""
    ts = _ts()
    shutil.rmtree(os.path.join(path, DONE), ignore_errors=True)  # no record outlives its store
    os.makedirs(os.path.join(path, DONE), exist_ok=True)
    for name, a in manifest["arrays"].items():
        ts.open(
            _spec(os.path.join(path, name)),
            create=True,
            delete_existing=True,
            dtype=a["dtype"],
            shape=a["shape"],
            chunk_layout=ts.ChunkLayout(write_chunk_shape=a["chunks"]),
            fill_value=float(a["fill"]) if isinstance(a["fill"], str) else a["fill"],
        ).result()
    tmp = os.path.join(path, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(path, MANIFEST))


def open_arrays(path: str, names) -> dict:
    ts = _ts()
    return {n: ts.open(_spec(os.path.join(path, n)), open=True).result() for n in names}


def done_path(path: str, process: int, batch: int) -> str:
    return os.path.join(path, DONE, f"p{process}", f"b{batch:09d}")


def done_batches(path: str, process: int) -> set[int]:
    """The global batches whose rows of ``process`` are recorded durable."""
    d = os.path.join(path, DONE, f"p{process}")
    if not os.path.isdir(d):
        return set()
    return {int(f[1:]) for f in os.listdir(d) if f.startswith("b") and f[1:].isdigit()}


def mark_done(path: str, process: int, batch: int) -> None:
    """The completion record of ``batch``: only called once its writes are committed."""
    p = done_path(path, process, batch)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.fsync(fd)
    os.close(fd)


class Results:
    """A store opened lazily: ``results["map"]`` is a tensorstore array ``[N, ...]`` read only
    where indexed (``np.asarray(results["map"][10:20])`` or ``results.read("map", idx)``).

    Attributes:
      path: the store's directory.
      manifest: the run's manifest (explainer, options, fingerprints, arrays).
      names: the arrays held (``"index"``, ``"target"`` and one per output).
      stats: the timings of the run that returned it (``seconds``, ``examples``,
        ``data_wait_s`` and ``writer_wait_s`` of the main thread, ``device_wait_s`` and
        ``write_s`` of the writer thread); empty when opened later.
    """

    def __init__(self, path: str):
        path = os.path.abspath(os.fspath(path))
        manifest = read_manifest(path)
        if manifest is None:
            raise errors.OutputPathError(
                f"{path!r} holds no xaijax store ({MANIFEST} is missing): give the `out` "
                "directory of an `explain_dataset` run."
            )
        self.path = path
        self.manifest = manifest
        self.names = tuple(manifest["arrays"])
        self._arrays = open_arrays(path, self.names)
        self.stats: dict[str, float] = {}

    def __len__(self) -> int:
        return int(self.manifest["source"]["len"])

    def __getitem__(self, name: str):
        if name not in self._arrays:
            raise KeyError(f"no array {name!r} in the store; it holds {list(self.names)}")
        return self._arrays[name]

    def read(self, name: str, index=slice(None)) -> np.ndarray:
        """``results[name][index]`` read into NumPy (``index``: int, slice or int array)."""
        if isinstance(index, list | tuple | np.ndarray):
            index = np.asarray(index, np.int64)
        return np.asarray(self[name][index].read().result())

    def example(self, i: int) -> dict[str, np.ndarray]:
        """Every array at example ``i``."""
        return {n: self.read(n, int(i)) for n in self.names}

    def summary(self) -> dict[str, float]:
        """Means over the examples written: ``energy_in_mask`` and ``pointing_game`` (with a
        ``mask_key``) and ``accuracy`` (top class equal to the target field, with a
        ``target_key`` and ``top_k``); empty when the store holds none of them."""
        written = self.read("index") >= 0
        out = {}
        if not written.any():
            return out
        if self.manifest.get("target_key") and "top_classes" in self.names:
            top = self.read("top_classes")[written, 0]
            out["accuracy"] = float(np.mean(top == self.read("target")[written]))
        for name in ("energy_in_mask", "pointing_game"):
            if name in self.names:
                out[name] = float(np.mean(self.read(name)[written]))
        return out

    @property
    def complete(self) -> bool:
        """Whether every batch of every process is recorded done."""
        m = self.manifest
        need = set(range(int(m["num_batches"])))
        return all(done_batches(self.path, p) >= need for p in range(int(m["process_count"])))

    def __repr__(self) -> str:
        return f"Results({self.path!r}, {self.manifest['explainer']}, arrays={list(self.names)})"


def open_results(out: str | os.PathLike) -> Results:
    """Opens the store an :func:`explain_dataset` run wrote, lazily.

    Args:
      out: the run's ``out`` directory.

    Returns:
      A :class:`Results`: ``results["map"]`` (or the result's field names for NamedTuple
      results), ``results["target"]`` and ``results["index"]`` are tensorstore arrays ``[N, ...]``
      indexed by example; nothing is read until indexed. ``index`` holds ``-1`` where an example
      has not been written yet.

    Raises:
      OutputPathError: ``out`` holds no store.

    Example:
      >>> # res = xaijax.pipeline.open_results("maps.zarr"); res.read("map", slice(0, 8))
    """
    return Results(out)
