"""The training loop: deterministic batches, periodic checkpoints, resume, progress bars."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from xaijax import _validation, errors
from xaijax.models._common import apply_fn as _apply_fn
from xaijax.training import _checkpoint
from xaijax.training._step import (
    TrainState,
    create_train_state,
    default_optimizer,
    evaluate,
    make_train_step,
)
from xaijax.typing import Params

#: Either a dict of equally long arrays (``{"image": [N, ...], "label": [N]}``) or a random
#: access source (``len(source)`` and ``source[i] -> {"image": ..., "label": ...}``, e.g.
#: ``tfds.data_source`` or a grain ``MapDataset``).
Data = Mapping[str, Any] | Any


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
      params: the trained parameters (on the default device).
      losses: ``[step]`` float32 training loss of every step run so far, including steps run
        before a resume (read back from the checkpoint).
      step: the number of optimizer updates behind ``params``.
      eval_accuracy: top-1 accuracy on ``eval_data``, or ``None`` when none was given.
      resumed_from: the checkpoint step training resumed from, or ``None`` for a fresh run.
      seconds: wall-clock seconds of this call (init, training, checkpoints, evaluation).
      checkpoint_dir: the checkpoint directory, or ``None``.
    """

    params: Params
    losses: np.ndarray
    step: int
    eval_accuracy: float | None
    resumed_from: int | None
    seconds: float
    checkpoint_dir: str | None


def _num_examples(data: Data, keys: tuple[str, str]) -> int:
    if isinstance(data, Mapping):
        for k in keys:
            if k not in data:
                raise errors.InvalidArgumentError(
                    f"The data has no key {k!r} (it has {sorted(data)}): pass "
                    f"`input_key=`/`label_key=` naming the model input and the labels."
                )
        n = {k: len(data[k]) for k in keys}
        if len(set(n.values())) != 1:
            raise errors.BatchMismatchError(
                f"The data arrays differ in length: {n}; give one label per example."
            )
        return n[keys[0]]
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise errors.InvalidArgumentError(
            f"Training data must be a dict of arrays or a random-access source (len() and "
            f"[i] -> dict), got {type(data).__name__}."
        )
    return len(data)


def _gather(data: Data, idx: np.ndarray, keys: tuple[str, str]) -> tuple[np.ndarray, ...]:
    if isinstance(data, Mapping):
        return tuple(np.asarray(data[k])[idx] for k in keys)
    examples = [data[int(i)] for i in idx]
    return tuple(np.stack([np.asarray(e[k]) for e in examples]) for k in keys)


class _Batches:
    """Deterministic random batches: epoch ``e`` is ``default_rng([seed, e]).permutation(N)``.

    Batch ``s`` holds positions ``s * B .. s * B + B - 1`` of the concatenated epochs, so the
    batch of any step is known without replaying earlier ones (exact resume).
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        pos = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, offsets = np.divmod(pos, self.n)
        return np.concatenate([self._perm(int(e))[offsets[epochs == e]] for e in np.unique(epochs)])


def _shardings(batch_size: int):
    n = jax.device_count()
    if n <= 1 or batch_size % n:
        return None, None
    mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    P = jax.sharding.PartitionSpec
    return (
        jax.sharding.NamedSharding(mesh, P("data")),
        jax.sharding.NamedSharding(mesh, P()),
    )


def _train_step(model: nn.Module, optimizer: optax.GradientTransformation):
    try:
        return _cached_train_step(model, optimizer)
    except TypeError:  # unhashable model
        return make_train_step(_apply_fn(model), optimizer)


@functools.lru_cache(maxsize=16)
def _cached_train_step(model: nn.Module, optimizer: optax.GradientTransformation):
    # One jitted step per (model, optimizer): repeated or resumed runs compile nothing new.
    return make_train_step(_apply_fn(model), optimizer)


def _check_config(saved: dict[str, Any], config: dict[str, Any], directory: str) -> None:
    for k, v in config.items():
        if saved.get(k) != v:
            raise errors.CheckpointMismatchError(
                f"The checkpoints in {directory} were written by a run with {k}={saved.get(k)!r}, "
                f"but this run has {k}={v!r}: resume with the same settings, or pass a new "
                "`checkpoint_dir`."
            )


def train(
    model: nn.Module,
    train_data: Data,
    *,
    input_key: str = "image",
    label_key: str = "label",
    steps: int,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    optimizer: optax.GradientTransformation | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    max_to_keep: int = 2,
    eval_data: Data | None = None,
    eval_batch_size: int = 256,
    progress: bool = True,
    data_parallel: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Trains a stateless Flax classifier with softmax cross-entropy; resumable.

    Batches are drawn without replacement within each epoch from a permutation seeded by
    ``(seed, epoch)``, parameters are initialised from ``jax.random.key(seed, impl="rbg")``
    (much faster to compile on CPU than threefry), so a run is deterministic on a given machine
    and JAX version. With more than one JAX device and ``batch_size`` divisible by their number,
    each batch is split over the devices (data parallel, replicated parameters), which keeps
    several CPU cores busy.

    With ``checkpoint_dir``, parameters, optimizer state and the loss history are saved every
    ``checkpoint_every`` steps, at the end and when the run is interrupted (``KeyboardInterrupt``),
    keeping the ``max_to_keep`` latest; a later call with the same directory resumes from the
    latest checkpoint and yields exactly the parameters of an uninterrupted run. A directory
    whose latest step is already ``>= steps`` is restored without training.

    Args:
      model: a stateless ``flax.linen.Module`` returning logits ``[B, C]``.
      train_data: dict of arrays (``{input_key: [N, ...], label_key: [N]}``) or a random-access
        source of such example dicts.
      input_key: the model input's key (``"image"``, ``"video"`` or ``"tokens"``).
      label_key: the integer labels' key.
      steps: total number of optimizer updates (counting those before a resume).
      batch_size: examples per update.
      learning_rate: peak rate of the default optimizer (Adam, 5 % warm-up, cosine decay).
      seed: seeds the initialisation and the batch order.
      optimizer: an optax transformation replacing the default one.
      checkpoint_dir: directory for orbax checkpoints, or ``None`` for none.
      checkpoint_every: steps between checkpoints.
      max_to_keep: number of checkpoints kept.
      eval_data: optional held-out data (same keys) for the final accuracy.
      eval_batch_size: batch size of the evaluation.
      progress: show a tqdm progress bar.
      data_parallel: split each batch over all JAX devices when there are several and they
        divide ``batch_size`` (results agree with one device up to float rounding).
      callback: ``callback(step, {"loss": ..., "accuracy": ...})`` after every update (floats).

    Returns:
      A :class:`TrainResult`.

    Raises:
      InvalidArgumentError: bad hyperparameters or data keys.
      CheckpointMismatchError: ``checkpoint_dir`` holds a run of another model or settings.
      CorruptCheckpointError: its latest checkpoint cannot be read.

    Example:
      >>> import numpy as np
      >>> from xaijax import models
      >>> data = {"tokens": np.zeros((8, 64), np.int32), "label": np.zeros(8, np.int32)}
      >>> result = train(models.get_model("text1d", 2), data, input_key="tokens", steps=2,
      ...                batch_size=4, progress=False)
      >>> result.step, result.losses.shape
      (2, (2,))
    """
    start_time = time.perf_counter()
    steps = _validation.check_positive_int(steps, "steps")
    batch_size = _validation.check_positive_int(batch_size, "batch_size")
    checkpoint_every = _validation.check_positive_int(checkpoint_every, "checkpoint_every")
    max_to_keep = _validation.check_positive_int(max_to_keep, "max_to_keep")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise errors.InvalidArgumentError(f"`seed` must be a non-negative int, got {seed!r}.")
    keys = (input_key, label_key)
    n = _num_examples(train_data, keys)
    if n == 0:
        raise errors.InvalidArgumentError("`train_data` is empty: give at least one example.")
    if optimizer is None:
        optimizer = default_optimizer(learning_rate, steps)
    config = {
        "input_key": input_key,
        "label_key": label_key,
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "seed": int(seed),
    }

    example, _ = _gather(train_data, np.arange(1), keys)
    # An "rbg" key: XLA:CPU compiles the initialisers ~5x faster than with threefry.
    key = jax.random.key(seed, impl="rbg")
    state = create_train_state(model, example, key=key, optimizer=optimizer)
    losses: list[Any] = []
    resumed_from = None
    mngr = None
    directory = None
    if checkpoint_dir is not None:
        directory = os.path.abspath(checkpoint_dir)
        mngr = _checkpoint.manager(directory, max_to_keep=max_to_keep)
        latest = mngr.latest_step()
        if latest is not None:
            params, opt_state, record = _checkpoint.read(
                mngr,
                directory,
                latest,
                like_params=state.params,
                like_opt_state=state.opt_state,
            )
            saved = record["user"]
            _check_config(saved.get("config", {}), config, directory)
            state = TrainState(step=state.step + latest, params=params, opt_state=opt_state)
            losses = list(np.asarray(saved.get("losses", []), np.float32)[:latest])
            resumed_from = int(latest)

    batch_sharding, replicated = _shardings(batch_size) if data_parallel else (None, None)
    if replicated is not None:
        state = jax.device_put(state, replicated)
    step_fn = _train_step(model, optimizer)
    batches = _Batches(n, batch_size, int(seed))
    start = int(state.step)
    saved_at = start

    def save(step: int) -> None:
        nonlocal saved_at
        if mngr is None or step == saved_at or step in mngr.all_steps():
            return
        history = [float(v) for v in jax.device_get(losses)]
        losses[:] = history
        _checkpoint.write(
            mngr,
            step,
            state.params,
            opt_state=state.opt_state,
            metadata={"config": config, "steps": steps, "losses": history},
        )
        saved_at = step

    bar = tqdm(
        total=steps,
        initial=min(start, steps),
        disable=not progress,
        desc=f"train {type(model).__name__}",
        dynamic_ncols=True,
    )
    try:
        for step in range(start, steps):
            x, y = _gather(train_data, batches.indices(step), keys)
            y = y.astype(np.int32)
            if batch_sharding is not None:
                x, y = jax.device_put((x, y), batch_sharding)
            state, metrics = step_fn(state, x, y)
            if batch_sharding is not None:
                # XLA:CPU collectives can deadlock when several multi-device steps are queued
                # (one device runs ahead into the next step's all-reduce): one step at a time.
                jax.block_until_ready(metrics)
            losses.append(metrics["loss"])
            if callback is not None:
                callback(step + 1, {k: float(v) for k, v in metrics.items()})
            bar.update(1)
            if progress and (step + 1) % 25 == 0:
                bar.set_postfix(loss=f"{float(metrics['loss']):.4f}")
            if (step + 1) % checkpoint_every == 0:
                save(step + 1)
        save(int(state.step))
    except KeyboardInterrupt:
        save(int(state.step))
        raise
    finally:
        bar.close()
        if mngr is not None:
            mngr.close()

    params = jax.device_put(jax.device_get(state.params), jax.devices()[0])
    history = np.asarray([float(v) for v in jax.device_get(losses)], np.float32)
    accuracy = None
    if eval_data is not None:
        m = _num_examples(eval_data, keys)
        xs, ys = _gather(eval_data, np.arange(m), keys)
        accuracy = evaluate(_apply_fn(model), params, xs, ys, batch_size=eval_batch_size)
    return TrainResult(
        params=params,
        losses=history,
        step=int(state.step),
        eval_accuracy=accuracy,
        resumed_from=resumed_from,
        seconds=time.perf_counter() - start_time,
        checkpoint_dir=directory,
    )


def _fingerprint(data: Data, keys: tuple[str, str]) -> dict[str, Any]:
    if isinstance(data, Mapping):
        out = {}
        for k in keys:
            a = np.ascontiguousarray(np.asarray(data[k]))
            out[k] = [list(a.shape), a.dtype.name, format(zlib.crc32(a.tobytes()), "08x")]
        return out
    n = len(data)
    first, last = data[0], data[n - 1]
    crc = zlib.crc32(b"".join(np.asarray(e[k]).tobytes() for e in (first, last) for k in keys))
    return {"type": type(data).__name__, "len": n, "crc": format(crc, "08x")}


def train_or_restore(
    name: str,
    model: nn.Module,
    data: Data,
    *,
    cache_dir: str | os.PathLike = "out/checkpoints",
    **train_kwargs: Any,
) -> TrainResult:
    """Returns a cached trained model when one exists for this exact configuration, else trains.

    The cache entry ``cache_dir/<name>-<hash>`` is keyed by the model's fields, the training
    settings and a checksum of the data; it is also the run's checkpoint directory, so an
    interrupted run resumes where it stopped and a finished one is only restored (and, with
    ``eval_data``, evaluated).

    Args:
      name: a readable prefix for the cache entry (e.g. ``"vgg"``).
      model: the model to train.
      data: the training data, as for :func:`train`.
      cache_dir: root directory of the cache.
      **train_kwargs: the keyword arguments of :func:`train` (``steps`` is required;
        ``checkpoint_dir`` is chosen here).

    Returns:
      A :class:`TrainResult`; ``resumed_from == steps`` means it came from the cache.

    Example:
      >>> import tempfile, numpy as np
      >>> from xaijax import models
      >>> data = {"tokens": np.zeros((8, 64), np.int32), "label": np.zeros(8, np.int32)}
      >>> d = tempfile.mkdtemp()
      >>> kw = dict(input_key="tokens", steps=2, batch_size=4, progress=False, cache_dir=d)
      >>> first = train_or_restore("demo", models.get_model("text1d", 2), data, **kw)
      >>> train_or_restore("demo", models.get_model("text1d", 2), data, **kw).resumed_from
      2
    """
    if "checkpoint_dir" in train_kwargs:
        raise errors.InvalidArgumentError(
            "train_or_restore chooses the checkpoint directory itself: pass `cache_dir=` "
            "instead of `checkpoint_dir=`."
        )
    if "steps" not in train_kwargs:
        raise errors.InvalidArgumentError("train_or_restore needs `steps=`.")
    keys = (train_kwargs.get("input_key", "image"), train_kwargs.get("label_key", "label"))
    _num_examples(data, keys)
    if train_kwargs.get("optimizer") is not None:
        raise errors.InvalidArgumentError(
            "train_or_restore cannot fingerprint a custom `optimizer` (optax transformations "
            "hold functions): use the default one (set `learning_rate=`), or call `train` with "
            "your own `checkpoint_dir`."
        )
    settings = {
        k: v
        for k, v in sorted(train_kwargs.items())
        if k not in ("eval_data", "eval_batch_size", "progress", "callback", "optimizer")
    }
    key = json.dumps(
        {"model": repr(model), "train": settings, "data": _fingerprint(data, keys)},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    directory = os.path.join(os.fspath(cache_dir), f"{name}-{digest}")
    return train(model, data, checkpoint_dir=directory, **train_kwargs)
