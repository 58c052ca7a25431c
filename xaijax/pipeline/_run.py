"""``explain_dataset``: a random-access source explained into a resumable store, the batch laid
over every device of every process."""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from xaijax import _explainer, _model, errors
from xaijax import _validation as v
from xaijax.metrics import _localisation
from xaijax.pipeline import _peers, _store
from xaijax.typing import Params

_RESERVED = _explainer.STORE_EXTRAS


# --- data ----------------------------------------------------------------------------------


def _check_source(source: Any) -> int:
    if not hasattr(source, "__len__") or not hasattr(source, "__getitem__"):
        raise errors.InvalidArgumentError(
            "`source` must be a random-access source (len(source) and source[i] -> dict of "
            f"arrays: xaijax.data.synthetic.SyntheticSource, tfds.data_source, grain's "
            f"MapDataset...), got {type(source).__name__}."
        )
    n = len(source)
    if n == 0:
        raise errors.InvalidArgumentError("`source` is empty: there is nothing to explain.")
    return int(n)


def _read(source: Any, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Examples ``indices`` stacked: through ``get_batch`` when the source has it."""
    get_batch = getattr(source, "get_batch", None)
    if get_batch is not None:
        return {k: np.asarray(a) for k, a in get_batch([int(i) for i in indices]).items()}
    rows = [source[int(i)] for i in indices]
    if not isinstance(rows[0], Mapping):
        raise errors.InvalidArgumentError(
            f"`source[i]` must be a dict of arrays, got {type(rows[0]).__name__}."
        )
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


def _grain_rows(source, n: int, batches, threads: int, depth: int):
    """An iterator of this process's rows of each batch (dicts of stacked arrays), read example
    by example on ``threads`` host threads by grain, in the order of ``batches``."""
    try:
        import grain
    except ImportError as e:
        raise errors.MissingDependencyError(
            "`read_threads` > 0 reads through grain, which is not installed: `pip install grain` "
            "(or read on one thread with `read_threads=0`)."
        ) from e
    order = np.minimum(np.concatenate([idx for _, idx in batches]), n - 1)
    rows = len(batches[0][1]) if batches else 1

    def stack(examples):
        return {k: np.stack([np.asarray(x[k]) for x in examples]) for k in examples[0]}

    dataset = (
        grain.MapDataset.range(len(order))
        .map(lambda j: source[int(order[j])])
        .batch(rows, batch_fn=stack)
        .to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=depth * rows))
    )
    return iter(dataset)


def _pick_key(example: Mapping, name: str | None, what: str, required: bool) -> str | None:
    keys = list(example)
    if name is None:
        if not required:
            return None
        if len(keys) == 1:
            return keys[0]
        raise errors.InvalidArgumentError(
            f"The source's examples hold {keys}: say which one is the model's input with "
            f"`{what}=` (e.g. `{what}={keys[0]!r}`)."
        )
    if name not in example:
        raise errors.InvalidArgumentError(
            f"`{what}`={name!r} is not a field of the source's examples; they hold {keys}."
        )
    return name


class _Reader:
    """Reads the process's rows of each batch to do on a host thread, ``depth`` batches ahead
    of the devices (a bounded queue); the last partial batch is padded with its last example.

    With ``threads > 0`` the rows are read example by example on that many host threads by a
    grain ``MapDataset`` over this process's indices in the run's fixed order (for sources whose
    reads are slow: JPEG decoding in ``tfds.data_source``); else in one ``get_batch`` per batch
    when the source has it."""

    _END = object()

    def __init__(self, source, n, batch_size, blocks, todo, fields, depth, check=None, threads=0):
        self._check = check
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        batches = [
            (
                b,
                np.concatenate(
                    [np.arange(b * batch_size + s, b * batch_size + e) for s, e in blocks]
                ),
            )
            for b in todo
        ]
        rows = _grain_rows(source, n, batches, threads, depth) if threads else None
        args = (source, n, batches, fields, rows)
        self._thread = threading.Thread(target=self._work, args=args, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, source, n, batches, fields, rows):
        try:
            for b, idx in batches:
                data = _read(source, np.minimum(idx, n - 1)) if rows is None else next(rows)
                if self._check is not None:
                    self._check(np.minimum(idx, n - 1), data)
                if not self._put((b, idx, {k: data[k] for k in fields})):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._put(exc)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- compute -------------------------------------------------------------------------------


def _default_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("batch",), axis_types=(AxisType.Auto,))


def _floating(leaves) -> list:
    return [a for a in leaves if jnp.issubdtype(a.dtype, jnp.floating)]


def _scored_map(result):
    """The array the metrics score: the result itself, or the ``map`` field of a NamedTuple
    result (the masks family's ``MaskExplanation``); ``None`` when there is none."""
    if hasattr(result, "_fields"):
        return getattr(result, "map", None)
    return result


def _spatial(result, mask, name: str):
    """The map ``result`` as ``[B, 1, P]`` beside ``mask`` ``[B, 1, P]`` (channels of a map
    shaped like ``x`` reduced by the sum of ``|a|``), or ``None`` when they do not fit."""
    result = _scored_map(result)
    r, m = result.shape, mask.shape
    if r[1:] == m[1:]:
        s = result
    elif len(r) == len(m) + 1 and r[1:-1] == m[1:]:
        s = jnp.abs(result).sum(-1)
    else:
        return None
    flat = (s.shape[0], 1, -1)
    return s.reshape(flat).astype(jnp.float32), mask.reshape(flat).astype(bool)


def _program(
    e: _explainer.Explainer, has_target: bool, top_k: int, has_mask: bool, float16: bool = False
):
    """``f(params, x, target, index, key, mask) -> (result, extras, status)``.

    ``extras`` holds the resolved target, the ``top_k`` classes and probabilities (softmax of the
    head's logits) and, with ground-truth masks, the per-example localisation metrics.
    ``status`` ``[B]`` int32 is the value check, made on the device so that the host never scans
    the maps: bit ``2 l`` set where floating leaf ``l`` of the result holds NaN or Inf, bit
    ``2 l + 1`` where it overflows float16 (``float16``: the result is stored, and cast on the
    device, as float16).
    Stochastic explainers run example by example (``vmap``) with the key
    ``fold_in(key, index)``, so an example's result does not depend on the batch it is in."""
    bound = dict(e.bound)
    logits_model = e.model.with_score("logit")

    def f(params, x, target, index, key, mask):
        extras = {}
        if top_k or not has_target:
            logits = logits_model.scores(params, x)
            if not has_target:
                target = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            if top_k:
                probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
                classes = jax.lax.broadcasted_iota(jnp.int32, probs.shape, probs.ndim - 1)
                # A stable sort, not lax.top_k: XLA has no partitioning rule for TopK and would
                # gather the whole batch on every device.
                neg, classes = jax.lax.sort((-probs, classes), dimension=probs.ndim - 1)
                extras["top_classes"] = classes[..., :top_k]
                extras["top_probabilities"] = -neg[..., :top_k]
        extras["target"] = target
        if not e.stochastic:
            xx, tt, kw = e.prepare(params, x, target, dict(bound))
            result = e.run(params, xx, tt, **kw)
        else:

            def one(xi, ti, i):
                kw = {**bound, "key": jax.random.fold_in(key, i)}
                xx, tt, kw = e.prepare(params, xi[None], ti[None], kw)
                return jax.tree_util.tree_map(lambda a: a[0], e.run(params, xx, tt, **kw))

            result = jax.vmap(one)(x, target, index)
        if has_mask:
            s, m = _spatial(result, mask, e.result)
            extras["energy_in_mask"] = _localisation._energy_in_mask(s, m)
            extras["pointing_game"] = _localisation._pointing_game(s, m, 0.0)
        status = jnp.zeros(x.shape[0], jnp.int32)
        for i, leaf in enumerate(_floating(jax.tree_util.tree_leaves(result))):
            rows = leaf.reshape(leaf.shape[0], -1)
            status |= jnp.where(jnp.isfinite(rows).all(axis=1), 0, 1 << (2 * i))
            if float16:
                fits = (jnp.abs(rows) <= float(jnp.finfo(jnp.float16).max)).all(axis=1)
                status |= jnp.where(fits | ~jnp.isfinite(rows).all(axis=1), 0, 2 << (2 * i))
        if float16:
            result = jax.tree_util.tree_map(
                lambda a: a.astype(jnp.float16) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                result,
            )
        return result, extras, status

    return f


#: The jitted programs of the last few (explainer, settings, sharding), so another run of the
#: same explainer (a notebook's second store, a resumed run in the same process) compiles
#: nothing. Bounded: the programs hold their explainers and compiled executables alive.
_PROGRAMS: OrderedDict = OrderedDict()
_MAX_PROGRAMS = 8


def _compiled(e: _explainer.Explainer, f, flags: tuple, sharding: NamedSharding):
    key = (e, flags, sharding)  # explainers hash by identity
    if key not in _PROGRAMS:
        _PROGRAMS[key] = jax.jit(f, out_shardings=sharding)
        while len(_PROGRAMS) > _MAX_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    _PROGRAMS.move_to_end(key)
    return _PROGRAMS[key]


def _names(out_tree, result: str) -> list[str]:
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(out_tree)[0]]
    if len(paths) == 1 and not paths[0]:
        return [result]
    names = []
    for p in paths:
        parts = [str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in p]
        name = ".".join(parts)
        names.append(f"result.{name}" if name in _RESERVED else name)
    return names


def _replicate(tree, replicated: NamedSharding):
    """``tree`` on every device of the mesh; from host values when the mesh spans processes
    (``device_put`` cannot place a local jax array on other processes' devices)."""
    if replicated.is_fully_addressable:
        return jax.device_put(tree, replicated)

    def one(a):
        if jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key):
            data = one(jax.random.key_data(a))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, replicated, lambda i: host[i])

    return jax.tree_util.tree_map(one, tree)


def _global(parts, sharding, shape, devices):
    arrays = [jax.device_put(p, d) for p, d in zip(parts, devices, strict=True)]
    return jax.make_array_from_single_device_arrays(shape, sharding, arrays)


# --- the run -------------------------------------------------------------------------------


def explain_dataset(
    explainer: Any,
    params: Params,
    source: Any,
    out: str | os.PathLike,
    *,
    batch_size: int,
    input_key: str | None = None,
    target_key: str | None = None,
    mesh: Mesh | None = None,
    key: jax.Array | None = None,
    dtype: str = "float32",
    resume: bool = True,
    prefetch: int = 2,
    progress: bool = True,
    top_k: int = 5,
    mask_key: str | None = None,
    read_threads: int = 0,
) -> _store.Results:
    """Explains every example of ``source`` into a resumable zarr v3 store at ``out``.

    Each global batch of ``batch_size`` consecutive examples is laid over every device of
    ``mesh`` (its batch axis split over all mesh axes; every process reads only the rows of its
    own devices, on a host thread ``prefetch`` batches ahead) and explained by one jitted
    program with no collective. Every process writes the rows of its devices through
    tensorstore (chunks of ``batch_size / devices`` examples, so no two processes share a
    chunk), waits until they are committed, and only then records the batch as done; a restart
    with ``resume=True`` runs only the batches not recorded. The last batch is padded with
    copies of the last example and the padding is never written. Stochastic explainers get
    the key ``jax.random.fold_in(key, i)`` for example ``i``, so their results do not depend on
    the batch size, the device or process count, or interruptions.

    Args:
      explainer: an :class:`xaijax.Explainer` (or ``jax.jit``/``functools.partial`` of one).
      params: the model's parameters (the same on every process).
      source: a random-access source: ``len(source)`` and ``source[i]`` -> a dict of arrays
        (``get_batch(indices)`` is used when present).
      out: the store's directory (created; an existing store is resumed).
      batch_size: examples per global batch ``B``; a multiple of the mesh's device count.
      input_key: the field of the examples given to the model as ``x``; may be omitted when
        the examples have one field.
      target_key: the field holding the class to explain (``[B]`` ints); ``None``: the class
        of highest score.
      mesh: the devices to use (all of its devices hold the batch axis); ``None``: all devices
        of all processes.
      key: the PRNG key of a stochastic explainer (required then, refused otherwise).
      dtype: ``"float32"`` or ``"float16"``: how floating outputs are stored.
      resume: continue the store at ``out`` (its manifest must match this run); ``False``
        deletes an existing store there first.
      prefetch: batches read ahead of the devices (>= 1).
      progress: on process 0, a tqdm bar of examples (examples/s, ETA) and a closing line on
        stderr (examples, seconds, examples/s, store size, the metrics' means).
      top_k: how many of the most probable classes (softmax of the head's logits) to store per
        example (``"top_classes"``, ``"top_probabilities"``); ``0``: none.
      mask_key: a field of ground-truth masks (``[B, *spatial]`` of the map, nonzero = object);
        when given, every example's ``"energy_in_mask"`` and ``"pointing_game"`` (the
        :mod:`xaijax.metrics` definitions, no tolerance) are stored too. Maps shaped like
        ``x`` are reduced over their channel axis by the sum of ``|a|`` first.
      read_threads: ``0``: the process's rows of a batch are read on one host thread, in one
        ``source.get_batch`` call when the source has it; ``> 0``: example by example on that
        many threads through grain (a ``MapDataset`` over the process's indices in the run's
        order), for sources whose per-example reads are slow (image decoding).

    Returns:
      :func:`open_results` of the store: arrays ``[N, ...]`` named ``"index"`` (the example
      index; ``-1`` where not written), ``"target"`` (the class explained), ``"top_classes"``
      and ``"top_probabilities"`` (``[N, k]``), ``"energy_in_mask"`` and ``"pointing_game"``
      (with ``mask_key``) and the result's name (``explainer.result``, e.g. ``"map"``), or one
      per field of a NamedTuple result. Its ``stats`` hold this run's timings (seconds the
      main thread waited for data and for the writer thread, and the writer for the devices
      and writing).

    Raises:
      OutputPathError: ``out`` cannot be written (checked before any work).
      ManifestMismatchError: the store at ``out`` was written by a different run.
      InvalidArgumentError: a bad ``batch_size``, ``dtype``, ``top_k``, field name or mask,
        or a source with fewer examples than the mesh has devices.
      MissingKeyError / InvalidKeyError: a stochastic explainer without one key.
      PeerProcessError: another process of a multi-process run failed (its error is named);
        the failing process raises its own error, and every process keeps its recorded batches.
      Any error the explainer's boundary checks raise on the first batch.

    Example:
      >>> import jax.numpy as jnp, numpy as np, xaijax
      >>> from xaijax.data import ArraySource
      >>> src = ArraySource({"x": np.ones((10, 3), np.float32)})
      >>> import tempfile, os; out = os.path.join(tempfile.mkdtemp(), "maps")
      >>> res = xaijax.pipeline.explain_dataset(
      ...     xaijax.gradient(lambda p, x: x @ p), jnp.eye(3), src, out, batch_size=4,
      ...     progress=False)
      >>> res.read("map", slice(0, 2)).tolist(), res.read("target").tolist()[:3]
      ([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [0, 0, 0])
    """
    e = _explainer.as_explainer(explainer, "explain_dataset")
    path = _store.check_out(out)
    _store._ts()  # MissingDependencyError before any work
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise errors.InvalidArgumentError(
            f"`batch_size` must be a positive integer, got {batch_size!r}."
        )
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch <= 0:
        raise errors.InvalidArgumentError(
            f"`prefetch` must be a positive integer, got {prefetch!r}."
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise errors.InvalidArgumentError(
            f"`top_k` must be a non-negative integer (0: store no class probabilities), got "
            f"{top_k!r}."
        )
    if isinstance(read_threads, bool) or not isinstance(read_threads, int) or read_threads < 0:
        raise errors.InvalidArgumentError(
            f"`read_threads` must be a non-negative integer (0: one reader thread), got "
            f"{read_threads!r}."
        )
    if dtype not in ("float32", "float16"):
        raise errors.InvalidArgumentError(
            f"`dtype` must be 'float32' or 'float16' (how maps are stored), got {dtype!r}."
        )
    n = _check_source(source)
    mesh = _default_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh):
        raise errors.InvalidArgumentError(
            f"`mesh` must be a jax.sharding.Mesh or None, got {type(mesh).__name__}."
        )
    num_devices = int(mesh.devices.size)
    if n < num_devices:
        raise errors.InvalidArgumentError(
            f"`source` holds {n} examples, fewer than the {num_devices} devices of the mesh: "
            f"pass a mesh of at most {n} devices (e.g. `mesh=jax.sharding.Mesh("
            f"np.asarray(jax.devices()[:{n}]), ('batch',))`) or explain them with a plain call."
        )
    if batch_size % num_devices:
        raise errors.InvalidArgumentError(
            f"`batch_size`={batch_size} must be a multiple of the {num_devices} devices of the "
            f"mesh (each device explains batch_size / devices examples): use e.g. "
            f"{num_devices * max(1, round(batch_size / num_devices))}."
        )
    if e.stochastic:
        key = v.check_key(key)
    elif key is not None:
        raise errors.InvalidArgumentError(
            f"`{e.name}` is deterministic and takes no `key`: drop it."
        )

    sharding = NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
    replicated = NamedSharding(mesh, PartitionSpec())
    pid, pcount = jax.process_index(), jax.process_count()
    # The rows [start, stop) of a global batch that each of this process's devices holds.
    index_map = sharding.addressable_devices_indices_map((batch_size,))
    local = sorted((sl[0].start or 0, sl[0].stop or batch_size, d) for d, sl in index_map.items())
    blocks = [(s, t) for s, t, _ in local]
    devices = [d for _, _, d in local]
    num_batches = math.ceil(n / batch_size)

    # Checks before any work: field names, then the explainer's boundary checks on real data.
    first = _read(source, np.minimum(np.arange(*blocks[0]), n - 1))
    input_key = _pick_key(first, input_key, "input_key", True)
    target_key = _pick_key(first, target_key, "target_key", False)
    mask_key = _pick_key(first, mask_key, "mask_key", False)
    fields = [input_key] + [k for k in (target_key, mask_key) if k]
    kwargs = {"key": key} if e.stochastic else {}
    x0 = first[input_key]
    t0 = first[target_key] if target_key else None
    e.prepare(params, x0, t0, {**dict(e.bound), **kwargs})

    num_classes = _model.num_classes(e.model, params, jnp.asarray(x0))
    k = min(top_k, num_classes)
    gshape = (batch_size, *x0.shape[1:])
    x_sds = jax.ShapeDtypeStruct(gshape, x0.dtype)
    t_sds = jax.ShapeDtypeStruct((batch_size,), np.int32) if target_key else None
    i_sds = jax.ShapeDtypeStruct((batch_size,), np.int32)
    m_sds = None
    if mask_key:
        m0 = first[mask_key]
        m_sds = jax.ShapeDtypeStruct((batch_size, *m0.shape[1:]), m0.dtype)
        plain = _program(e, target_key is not None, k, False)
        r_shape, _, _ = jax.eval_shape(plain, params, x_sds, t_sds, i_sds, key, None)
        _check_mask_fits(e, r_shape, m0, mask_key)
    f = _program(e, target_key is not None, k, mask_key is not None, dtype == "float16")
    out_shape, extra_shapes, _ = jax.eval_shape(f, params, x_sds, t_sds, i_sds, key, m_sds)
    leaves, _ = jax.tree_util.tree_flatten(out_shape)
    names = _names(out_shape, e.result)
    for name, leaf in zip(names, leaves, strict=True):
        if leaf.ndim == 0 or leaf.shape[0] != batch_size:
            raise errors.InvalidArgumentError(
                f"`{e.name}` returns {name!r} of shape {list(leaf.shape)}, without one row per "
                "example: only per-example results can be stored."
            )
    rows = batch_size // num_devices

    def spec(shape, dt, store_dtype=dtype):
        dt = np.dtype(dt)
        if jnp.issubdtype(dt, jnp.floating):
            dt, fill = np.dtype(store_dtype), "NaN"  # JSON-safe; created as float("nan")
        else:
            fill = False if dt == np.bool_ else 0
        return {
            "shape": [n, *shape[1:]],
            "dtype": dt.name,
            "chunks": [rows, *shape[1:]],
            "fill": fill,
        }

    arrays = {"index": {"shape": [n], "dtype": "int64", "chunks": [rows], "fill": -1}}
    for name, leaf in extra_shapes.items():  # probabilities and metrics stay float32
        arrays[name] = spec(leaf.shape, leaf.dtype, "float32")
    for name, leaf in zip(names, leaves, strict=True):
        arrays[name] = spec(leaf.shape, leaf.dtype)
    probe = np.unique(np.array([0, n // 2, n - 1]))
    manifest = {
        "format": _store.FORMAT,
        "xaijax_version": _version(),
        "explainer": e.name,
        "result": e.result,
        "options": _store.jsonable(dict(e.options)),
        "bound": _store.jsonable(dict(e.bound)),
        "inner": _describe(e.inner),
        "params_fingerprint": _store.fingerprint_arrays(jax.tree_util.tree_leaves(params)),
        "key_fingerprint": (
            _store.fingerprint_arrays([jax.random.key_data(key)]) if e.stochastic else None
        ),
        "source": {
            "type": type(source).__qualname__,
            "len": n,
            "fingerprint": _store.fingerprint_arrays(
                [a for _, a in sorted(_read(source, probe).items())]
            ),
        },
        "input_key": input_key,
        "target_key": target_key,
        "mask_key": mask_key,
        "top_k": k,
        "batch_size": batch_size,
        "num_batches": num_batches,
        "devices": num_devices,
        "process_count": pcount,
        "dtype": dtype,
        "arrays": arrays,
    }

    peers = _peers.Peers(path)
    try:
        existing = _store.read_manifest(path)
        if existing is not None and resume:
            _store.check_manifest(existing, manifest, path)
        peers.barrier("checked")
        if pid == 0 and (existing is None or not resume):
            if existing is not None:
                _store.clear(path, existing)
            os.makedirs(path, exist_ok=True)
            _store.create(path, manifest)
        peers.barrier("created")
        stores = _store.open_arrays(path, arrays)

        done = np.zeros(num_batches, bool)
        done[sorted(b for b in _store.done_batches(path, pid) if b < num_batches)] = True
        everyone = peers.gather("done", "".join("1" if d else "0" for d in done))
        done = np.all([[c == "1" for c in d] for d in everyone], axis=0)
        todo = [int(b) for b in np.flatnonzero(~done)]

        program = _compiled(
            e, f, (target_key is not None, k, mask_key is not None, dtype), sharding
        )
        params_g = _replicate(params, replicated)
        key_g = _replicate(key, replicated) if e.stochastic else None
        sizes = {b: min(batch_size, n - b * batch_size) for b in todo}
        bar = _bar(progress and pid == 0, n, n - sum(sizes.values()), e.name)
        started = time.perf_counter()
        stats = {"data_wait_s": 0.0, "writer_wait_s": 0.0, "device_wait_s": 0.0, "write_s": 0.0}

        def check(idx, data):  # on the reader thread: every batch, on the host
            x = data[input_key]
            if jnp.issubdtype(x.dtype, jnp.inexact):
                ok = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
                if not ok.all():
                    raise errors.NonFiniteInputError(
                        f"`source` examples {idx[~ok][:8].tolist()} hold NaN or Inf in "
                        f"{input_key!r}: fix or drop them (e.g. a filtered source)."
                    )
            if target_key:
                t = data[target_key]
                bad = (t < 0) | (t >= num_classes)
                if bad.any():
                    raise errors.TargetOutOfRangeError(
                        f"`source` examples {idx[bad][:8].tolist()} have {target_key!r} = "
                        f"{t[bad][:8].tolist()}, outside the model's {num_classes} classes "
                        f"[0, {num_classes})."
                    )

        reader = _Reader(source, n, batch_size, blocks, todo, fields, prefetch, check, read_threads)
        writer = _Writer(
            path, pid, stores, names, n, batch_size, stats, lambda b: bar.update(sizes[b])
        )
        batches = iter(reader)

        def put(data, key, shape, dtype=None):
            a = data[key] if dtype is None else data[key].astype(dtype)
            return _global([a[p] for p in parts], sharding, shape, devices)

        try:
            while True:
                t0 = time.perf_counter()
                try:
                    b, idx, data = next(batches)
                except StopIteration:
                    break
                finally:
                    stats["data_wait_s"] += time.perf_counter() - t0
                parts = np.split(np.arange(len(idx)), np.cumsum([t - s for s, t in blocks])[:-1])
                xg = put(data, input_key, gshape)
                tg = put(data, target_key, (batch_size,), np.int32) if target_key else None
                mg = put(data, mask_key, m_sds.shape) if mask_key else None
                ig = _global(
                    [idx[p].astype(np.int32) for p in parts], sharding, (batch_size,), devices
                )
                # Dispatched, not computed: the writer thread waits for it while we go on.
                writer.submit(b, program(params_g, xg, tg, ig, key_g, mg))
                peers.check()
            writer.finish()
        except BaseException:
            writer.salvage()  # keep every batch already computed whose writes succeed
            raise
        finally:
            reader.close()
            bar.close()
        peers.barrier("finished")
        results = _store.Results(path)
        seconds = time.perf_counter() - started
        results.stats = {"seconds": seconds, "examples": sum(sizes.values()), **stats}
        if progress and pid == 0:
            done_now = sum(sizes.values())
            summary = results.summary()
            means = "".join(f"; {k} {v:.3f}" for k, v in summary.items())
            print(
                f"explain_dataset: {done_now} examples explained in {seconds:.1f} s "
                f"({done_now / max(seconds, 1e-9):.1f} examples/s; {n - done_now} were already "
                f"done); waited {stats['data_wait_s']:.1f} s for data and "
                f"{stats['writer_wait_s']:.1f} s for the writer, which waited "
                f"{stats['device_wait_s']:.1f} s for the devices and wrote for "
                f"{stats['write_s']:.1f} s; "
                f"store {path} ({_store.size_bytes(path) / 2**20:.1f} MiB){means}",
                file=sys.stderr,
            )
        return results
    except BaseException as exc:
        peers.fail(exc)  # the other processes raise PeerProcessError naming it
        raise


def _check_mask_fits(e, r_shape, m0: np.ndarray, mask_key: str) -> None:
    r_shape = _scored_map(r_shape)
    if not isinstance(r_shape, jax.ShapeDtypeStruct):
        raise errors.InvalidArgumentError(
            f"`mask_key` scores maps, but `{e.name}` returns a {e.result} result with no "
            "single map (no `map` field): drop `mask_key`, or explain with a method that "
            "returns a map."
        )
    m = (len(m0), *m0.shape[1:])
    r = (len(m0), *r_shape.shape[1:])
    if r[1:] != m[1:] and not (len(r) == len(m) + 1 and r[1:-1] == m[1:]):
        raise errors.InvalidArgumentError(
            f"The masks in {mask_key!r} are {list(m0.shape[1:])} per example but `{e.name}` "
            f"returns {list(r_shape.shape[1:])} per example: give masks of the map's spatial "
            "shape (the map's shape without its channel axis)."
        )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(show: bool, total: int, initial: int, name: str):
    """A tqdm bar of examples (examples/s, ETA), or nothing when hidden or tqdm is missing."""
    if not show:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, unit="ex", desc=f"explain {name}", dynamic_ncols=True)


class _Writer:
    """Writes the rows of this process's devices of each computed batch (never the padding)
    through tensorstore on its own host thread, up to ``depth`` batches of writes in flight, and
    records a batch done only once every one of its writes is committed. The main thread only
    dispatches: :meth:`submit` hands over a batch's (not yet computed) results."""

    def __init__(self, path, pid, stores, names, n, batch_size, stats, on_done, depth=4, queued=2):
        self.path, self.pid, self.stores, self.names = path, pid, stores, names
        self.n, self.batch_size, self.stats, self.on_done = n, batch_size, stats, on_done
        self.depth = depth
        self.inflight: deque = deque()  # (batch, write futures), oldest first
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queued)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def submit(self, b: int, outs) -> None:
        """Queues batch ``b`` for writing; raises the writer thread's error, if any."""
        t0 = time.perf_counter()
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put((b, outs), timeout=0.05)
                break
            except queue.Full:
                continue
        self.stats["writer_wait_s"] += time.perf_counter() - t0

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # after an error nothing more is written
            try:
                self.issue(*item)
            except BaseException as exc:  # noqa: BLE001 - raised on the main thread
                self.error = exc

    def _join(self) -> None:
        """Lets the thread write every batch already queued, then stops it."""
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.05)
                break
            except queue.Full:
                continue
        self._thread.join()

    def finish(self) -> None:
        """Waits until every submitted batch is written and recorded; raises the writer's
        error."""
        self._join()
        if self.error is not None:
            raise self.error
        self.drain()

    def issue(self, b: int, outs) -> None:
        """Waits for batch ``b``'s results, checks them and starts their writes."""
        result, extras, status = outs
        t0 = time.perf_counter()
        jax.block_until_ready(outs)
        self.stats["device_wait_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        leaves = jax.tree_util.tree_leaves(result)
        self._check(
            b, status, [n for n, a in zip(self.names, leaves, strict=True) if _floating([a])]
        )
        columns = list(extras.items()) + list(zip(self.names, leaves, strict=True))
        rows = []  # (store name, first global row, data) of this process's devices
        starts = set()
        for name, arr in columns:
            for start, valid, data in self._rows(b, arr):
                g0 = b * self.batch_size + start
                rows.append(
                    (name, g0, data.astype(self.stores[name].dtype.numpy_dtype, copy=False))
                )
                if (start, valid) not in starts:
                    starts.add((start, valid))
                    rows.append(("index", g0, np.arange(g0, g0 + valid)))
        futures = [_write(self.stores[name], g0, data) for name, g0, data in rows]
        self.inflight.append((b, futures))
        self.stats["write_s"] += time.perf_counter() - t0
        self.retire(keep=self.depth)

    def _rows(self, b: int, arr):
        """``(first row in the batch, valid rows, data)`` of each of this process's shards of
        ``arr``, the padding cut off."""
        for shard in arr.addressable_shards:
            sl = shard.index[0]
            start, stop = sl.start or 0, sl.stop or self.batch_size
            valid = min(stop, self.n - b * self.batch_size) - start
            if valid > 0:
                yield start, valid, np.asarray(shard.data)[:valid]

    def _check(self, b: int, status, checked: list[str]) -> None:
        """:class:`NonFiniteOutputError` for the examples the device flagged (nothing of the
        batch is written then)."""
        for start, _, codes in self._rows(b, status):
            if not codes.any():
                continue
            first = b * self.batch_size + start
            for i, name in enumerate(checked):
                for bit, overflow in ((1 << (2 * i), False), (2 << (2 * i), True)):
                    bad = first + np.flatnonzero(codes & bit)
                    if bad.size:
                        _non_finite(name, bad, overflow)

    def retire(self, keep: int) -> None:
        """Records every batch at the front whose writes are committed, waiting for the oldest
        ones until at most ``keep`` batches are in flight."""
        while self.inflight:
            b, futures = self.inflight[0]
            if len(self.inflight) <= keep and not all(f.commit.done() for f in futures):
                return
            t0 = time.perf_counter()
            for fut in futures:
                fut.commit.result()
            _store.mark_done(self.path, self.pid, b)
            self.inflight.popleft()
            self.stats["write_s"] += time.perf_counter() - t0
            self.on_done(b)

    def drain(self) -> None:
        self.retire(keep=0)

    def salvage(self) -> None:
        """After an error: writes the batches already computed and queued (unless the writer
        failed), and records those whose writes all succeed, in order."""
        self._join()
        try:
            self.drain()
        except Exception:  # noqa: BLE001 - the caller re-raises the first error
            pass


def _non_finite(name: str, bad: np.ndarray, overflow: bool) -> None:
    if overflow:
        raise errors.NonFiniteOutputError(
            f"`{name}` of examples {bad[:8].tolist()} overflows float16 (|value| > 65504): "
            "store it with `dtype='float32'`."
        )
    raise errors.NonFiniteOutputError(
        f"The explainer produced NaN or Inf in `{name}` for examples {bad[:8].tolist()} (the "
        "model's scores or their gradients are not finite there); nothing of this batch was "
        "recorded. Check those inputs, e.g. with `explainer(params, x[i:i+1])`."
    )


def _write(store, start: int, data: np.ndarray):
    """One write of rows ``[start, start + len(data))`` (a future; a seam for tests)."""
    return store[start : start + len(data)].write(data)


def _describe(e: _explainer.Explainer | None) -> dict | None:
    """The wrapped explainers' names and options (``smooth(integrated_gradients)``'s steps)."""
    if e is None:
        return None
    return {
        "name": e.name,
        "options": _store.jsonable(dict(e.options)),
        "bound": _store.jsonable(dict(e.bound)),
        "inner": _describe(e.inner),
    }


def _version() -> str:
    import xaijax

    return xaijax.__version__
