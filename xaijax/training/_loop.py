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
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from xaijax import _paths, _validation, errors
from xaijax.training import _checkpoint, _checks
from xaijax.training._losses import Loss, MultiTaskLoss, classification_loss, describe
from xaijax.training._step import (
    _init_fn,
    create_train_state,
    default_optimizer,
    evaluate,
    make_train_step,
    model_fns,
)
from xaijax.typing import Params, PyTree

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
      model_state: the model's other variable collections (BatchNorm's
        ``{"batch_stats": ...}``), ``{}`` for a stateless model.
    """

    params: Params
    losses: np.ndarray
    step: int
    eval_accuracy: float | None
    resumed_from: int | None
    seconds: float
    checkpoint_dir: str | None
    model_state: PyTree = None

    @property
    def variables(self) -> dict[str, PyTree]:
        """``{"params": params, **model_state}``, what ``module.apply`` takes."""
        return {"params": self.params, **(self.model_state or {})}


class _Labels(NamedTuple):
    """Where the labels come from: ``data_keys`` of the data, assembled into the labels pytree
    (one array for a ``label_key`` string, a dict for a ``{head: data_key}`` mapping)."""

    data_keys: tuple[str, ...]
    heads: tuple[str, ...] | None

    def tree(self, arrays: tuple[Any, ...]) -> PyTree:
        return arrays[0] if self.heads is None else dict(zip(self.heads, arrays, strict=True))

    def build(self, arrays: tuple[np.ndarray, ...]) -> PyTree:
        """The labels of a batch, integer ones as int32 and floating ones as float32."""
        return self.tree(tuple(_label_dtype(a) for a in arrays))

    def names(self) -> dict[tuple, str]:
        if self.heads is None:
            return {(): self.data_keys[0]}
        return {(h,): k for h, k in zip(self.heads, self.data_keys, strict=True)}


def _labels_spec(label_key: Any) -> _Labels:
    if isinstance(label_key, str):
        return _Labels((label_key,), None)
    if (
        isinstance(label_key, Mapping)
        and label_key
        and all(isinstance(k, str) and isinstance(v, str) for k, v in label_key.items())
    ):
        return _Labels(tuple(label_key.values()), tuple(label_key))
    raise errors.InvalidArgumentError(
        f"`label_key` must name the labels in the data (a str), or map each head of a "
        f"multi-task loss to its data key ({{'class': 'label', 'attributes': 'attrs'}}), got "
        f"{label_key!r}."
    )


def _label_dtype(a: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int32)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    return a


def _num_examples(data: Data, keys: tuple[str, ...]) -> int:
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


def _gather(data: Data, idx: np.ndarray, keys: tuple[str, ...]) -> tuple[np.ndarray, ...]:
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


def _train_step(model: nn.Module, optimizer: optax.GradientTransformation, loss: Loss):
    try:
        return _cached_train_step(model, optimizer, loss)
    except TypeError:  # unhashable model or loss
        return make_train_step(model, optimizer, loss=loss)


@functools.lru_cache(maxsize=16)
def _cached_train_step(model: nn.Module, optimizer: optax.GradientTransformation, loss: Loss):
    # One jitted step per (model, optimizer, loss): repeated or resumed runs compile nothing new.
    return make_train_step(model, optimizer, loss=loss)


def _check_config(saved: dict[str, Any], config: dict[str, Any], directory: str) -> None:
    for k, v in config.items():
        if saved.get(k) != v:
            raise errors.CheckpointMismatchError(
                f"The checkpoints in {directory} were written by a run with {k}={saved.get(k)!r}, "
                f"but this run has {k}={v!r}: resume with the same settings, or pass a new "
                "`checkpoint_dir`."
            )


def _abstract_outputs(model: nn.Module, key: jax.Array, example: np.ndarray) -> PyTree:
    """The model's outputs on ``example`` as ``ShapeDtypeStruct``s (tracing only, no compile)."""
    try:
        init = _init_fn(model)
    except TypeError:
        init = _init_fn.__wrapped__(model)
    variables = jax.eval_shape(init, key, example)
    params = variables.get("params", {})
    model_state = {k: v for k, v in variables.items() if k not in ("params", "intermediates")}
    return jax.eval_shape(model_fns(model).eval, params, model_state, example)


def train(
    model: nn.Module,
    train_data: Data,
    *,
    input_key: str = "image",
    label_key: str | Mapping[str, str] = "label",
    steps: int,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    optimizer: optax.GradientTransformation | None = None,
    loss: Loss | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    max_to_keep: int = 2,
    eval_data: Data | None = None,
    eval_batch_size: int = 256,
    progress: bool = True,
    data_parallel: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Trains a Flax model on a loss over its outputs (cross-entropy by default); resumable.

    Batches are drawn without replacement within each epoch from a permutation seeded by
    ``(seed, epoch)``, parameters are initialised from ``jax.random.key(seed, impl="rbg")``
    (much faster to compile on CPU than threefry), and dropout draws from that key folded with
    the step, so a run is deterministic on a given machine and JAX version. A model with
    BatchNorm (or any variable collection besides ``"params"``) is trained and evaluated as
    :mod:`xaijax.training` documents (a ``train`` argument of ``__call__``); its statistics are
    checkpointed and returned in ``model_state``. With more than one JAX device and
    ``batch_size`` divisible by their number, each batch is split over the devices (data
    parallel, replicated parameters; BatchNorm still sees the whole batch), which keeps several
    CPU cores busy.

    Before the first update the loss is traced on an example batch (shape and dtype mistakes
    raise), and in-memory data is checked on the device (one scalar comes back): floating inputs
    must be finite, cross-entropy labels must be class indices in ``[0, C)`` for the head's
    ``C`` outputs, binary cross-entropy labels must lie in ``[0, 1]``. A random-access source is
    checked batch by batch on the device and, like a loss that turns NaN or Inf, reported with
    the step when the loop next reads its losses (progress bar, callback, checkpoint, end of the
    run): no host synchronisation is added per step, and no checkpoint is written after it.

    With ``checkpoint_dir``, parameters, optimizer state, model state and the loss history are
    saved every ``checkpoint_every`` steps, at the end and when the run is interrupted
    (``KeyboardInterrupt``), keeping the ``max_to_keep`` latest; a later call with the same
    directory resumes from the latest checkpoint and yields exactly the parameters of an
    uninterrupted run. A directory whose latest step is already ``>= steps`` is restored
    without training.

    Args:
      model: a ``flax.linen.Module``.
      train_data: dict of arrays (``{input_key: [N, ...], label_key: [N]}``) or a random-access
        source of such example dicts.
      input_key: the model input's key (``"image"``, ``"video"`` or ``"tokens"``).
      label_key: the labels' key; for a :func:`multitask` loss, a dict mapping each head to its
        data key (``{"class": "label", "attributes": "attributes"}``). Integer labels are
        passed as int32, floating ones as float32.
      steps: total number of optimizer updates (counting those before a resume).
      batch_size: examples per update.
      learning_rate: peak rate of the default optimizer (Adam, 5 % warm-up, cosine decay).
      seed: seeds the initialisation, the dropout keys and the batch order.
      optimizer: an optax transformation replacing the default one.
      loss: ``loss(outputs, labels)`` as for :func:`make_train_step`; ``None`` for
        :func:`classification_loss` (softmax cross-entropy on ``[B, C]`` logits).
      checkpoint_dir: directory for orbax checkpoints, or ``None`` for none.
      checkpoint_every: steps between checkpoints.
      max_to_keep: number of checkpoints kept.
      eval_data: optional held-out data (same keys) for the final accuracy; needs a model
        returning ``[B, C]`` logits and a ``label_key`` string.
      eval_batch_size: batch size of the evaluation.
      progress: show a tqdm progress bar.
      data_parallel: split each batch over all JAX devices when there are several and they
        divide ``batch_size`` (results agree with one device up to float rounding).
      callback: ``callback(step, metrics)`` after every update, with the step's metrics as
        floats (``{"loss": ..., "accuracy": ...}`` for the default loss).

    Returns:
      A :class:`TrainResult`.

    Raises:
      InvalidArgumentError: bad hyperparameters or data keys.
      NonFiniteInputError: NaN or Inf in the inputs.
      TargetOutOfRangeError: labels out of range for the model's head.
      NonFiniteLossError: the loss became NaN or Inf; the message names the step.
      CheckpointMismatchError: ``checkpoint_dir`` holds a run of another model or settings.
      CorruptCheckpointError: its latest checkpoint cannot be read.
      OutputPathError: ``checkpoint_dir`` cannot be created or written (checked before any
        work).

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
    if not isinstance(model, nn.Module):
        raise errors.InvalidArgumentError(
            f"`model` must be a flax.linen.Module, got {type(model).__name__}."
        )
    if loss is not None and not callable(loss):
        raise errors.InvalidArgumentError(
            f"`loss` must be a function `loss(outputs, labels)`, got {type(loss).__name__}."
        )
    if checkpoint_dir is not None:
        _paths.check_writable_dir(checkpoint_dir, "checkpoint_dir", "the checkpoints")
    spec = _labels_spec(label_key)
    keys = (input_key, *spec.data_keys)
    n = _num_examples(train_data, keys)
    if n == 0:
        raise errors.InvalidArgumentError("`train_data` is empty: give at least one example.")
    if optimizer is None:
        optimizer = default_optimizer(learning_rate, steps)
    config = {
        "input_key": input_key,
        "label_key": label_key if isinstance(label_key, str) else dict(label_key),
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "seed": int(seed),
    }
    if loss is not None:
        config["loss"] = describe(loss)  # only when given: older checkpoints still resume
    loss = classification_loss if loss is None else loss

    example_x, *example_y = _gather(train_data, np.arange(1), keys)
    # An "rbg" key: XLA:CPU compiles the initialisers ~5x faster than with threefry.
    key = jax.random.key(seed, impl="rbg")
    # Static checks before any work: the loss traced on abstract outputs and one example.
    outputs = _abstract_outputs(model, key, example_x)
    jax.eval_shape(loss, outputs, spec.build(tuple(example_y)))
    if eval_data is not None and (spec.heads is not None or getattr(outputs, "ndim", 0) != 2):
        raise errors.InvalidArgumentError(
            "`eval_data` needs a model returning class logits [B, C] and a `label_key` string; "
            "for several heads, call `evaluate(model, result.params, x, y, head=..., "
            "model_state=result.model_state)` after training."
        )
    rules = tuple(_checks.label_rules(loss, outputs))
    label_names = spec.names()

    mngr = None
    directory = None
    try:
        latest = None
        if checkpoint_dir is not None:
            directory = os.path.abspath(checkpoint_dir)
            mngr = _checkpoint.manager(directory, max_to_keep=max_to_keep)
            latest = mngr.latest_step()
        finished = latest is not None and latest >= steps
        if isinstance(train_data, Mapping) and not finished:
            _checks.check_arrays(
                train_data[input_key],
                spec.tree(tuple(train_data[k] for k in spec.data_keys)),
                rules,
                input_name=input_key,
                label_names=label_names,
            )
        state = create_train_state(model, example_x, key=key, optimizer=optimizer)
        losses: list[Any] = []
        resumed_from = None
        if latest is not None:
            restored = _checkpoint.read(
                mngr,
                directory,
                latest,
                like_params=state.params,
                like_opt_state=state.opt_state,
                like_model_state=state.model_state,
            )
            saved = restored.record["user"]
            _check_config(saved.get("config", {}), config, directory)
            state = state.replace(
                step=state.step + latest,
                params=restored.params,
                opt_state=restored.opt_state,
                model_state=restored.model_state,
            )
            losses = list(np.asarray(saved.get("losses", []), np.float32)[:latest])
            resumed_from = int(latest)
        state = _run(
            model,
            state,
            train_data,
            n=n,
            keys=keys,
            spec=spec,
            rules=rules,
            label_names=label_names,
            steps=steps,
            batch_size=batch_size,
            seed=int(seed),
            optimizer=optimizer,
            loss=loss,
            losses=losses,
            mngr=mngr,
            config=config,
            checkpoint_every=checkpoint_every,
            progress=progress,
            data_parallel=data_parallel,
            callback=callback,
        )
    finally:
        if mngr is not None:
            mngr.close()

    device = jax.devices()[0]
    params = jax.device_put(jax.device_get(state.params), device)
    model_state = jax.device_put(jax.device_get(state.model_state), device)
    history = np.asarray([float(v) for v in jax.device_get(losses)], np.float32)
    accuracy = None
    if eval_data is not None:
        m = _num_examples(eval_data, keys)
        xs, ys = _gather(eval_data, np.arange(m), keys)
        accuracy = evaluate(
            model, params, xs, ys, batch_size=eval_batch_size, model_state=model_state
        )
    return TrainResult(
        params=params,
        losses=history,
        step=int(state.step),
        eval_accuracy=accuracy,
        resumed_from=resumed_from,
        seconds=time.perf_counter() - start_time,
        checkpoint_dir=directory,
        model_state=model_state,
    )


def _run(
    model: nn.Module,
    state: Any,
    train_data: Data,
    *,
    n: int,
    keys: tuple[str, ...],
    spec: _Labels,
    rules: tuple[_checks.Rule, ...],
    label_names: dict[tuple, str],
    steps: int,
    batch_size: int,
    seed: int,
    optimizer: optax.GradientTransformation,
    loss: Loss,
    losses: list[Any],
    mngr: Any,
    config: dict[str, Any],
    checkpoint_every: int,
    progress: bool,
    data_parallel: bool,
    callback: Callable[[int, dict[str, float]], None] | None,
):
    """The update loop of :func:`train`; ``losses`` (one entry per step, index = step - 1) is
    extended in place and the final state returned."""
    batch_sharding, replicated = _shardings(batch_size) if data_parallel else (None, None)
    if replicated is not None:
        state = jax.device_put(state, replicated)
    step_fn = _train_step(model, optimizer, loss)
    batches = _Batches(n, batch_size, seed)
    start = int(state.step)
    saved_at = start
    checked = start  # the losses (and batch flags) of steps < checked were found finite / valid
    # A random-access source is checked batch by batch on the device (flags[s - start] for the
    # batch of step s), read back with the losses.
    per_batch = not isinstance(train_data, Mapping)
    flags: list[jax.Array] = []
    zero = jnp.zeros((), jnp.int32)

    def inspect(upto: int) -> None:
        """Reads back the losses (and batch flags) of steps [checked, upto); raises on the
        first bad one. Called only where the loop already waits for the device."""
        nonlocal checked
        if upto <= checked:
            return
        values = np.asarray(jax.device_get(losses[checked:upto]), np.float32)
        codes = jax.device_get(flags[checked - start : upto - start]) if per_batch else None
        for s in range(checked, upto):
            if codes is not None:
                _checks.raise_for(
                    int(codes[s - checked]),
                    rules,
                    input_name=keys[0],
                    label_names=label_names,
                    where=f"in the batch of step {s + 1}",
                )
            value = values[s - checked]
            if not np.isfinite(value):
                raise errors.NonFiniteLossError(
                    f"The training loss is {value} at step {s + 1} (of {steps}), on inputs "
                    "that passed the checks: the model diverged, or the loss is undefined "
                    "there. Lower the learning rate, clip the gradients "
                    "(`optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))`), or check "
                    "the loss function (a log of 0? a division by 0?). No checkpoint was "
                    f"written after step {saved_at}."
                )
        checked = upto

    def save(step: int) -> None:
        nonlocal saved_at
        if mngr is None or step == saved_at or step in mngr.all_steps():
            return
        inspect(step)
        history = [float(v) for v in jax.device_get(losses)]
        losses[:] = history
        _checkpoint.write(
            mngr,
            step,
            state.params,
            opt_state=state.opt_state,
            model_state=state.model_state,
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
            x, *ys = _gather(train_data, batches.indices(step), keys)
            y = spec.build(tuple(ys))
            if batch_sharding is not None:
                x, y = jax.device_put((x, y), batch_sharding)
            if per_batch:
                label_arrays = tuple(_checks.pick(y, r.path) for r in rules)
                flags.append(_checks.flags(x, label_arrays, zero, rules=rules))
            state, metrics = step_fn(state, x, y)
            losses.append(metrics["loss"])
            if batch_sharding is not None:
                # XLA:CPU collectives can deadlock when several multi-device steps are queued
                # (one device runs ahead into the next step's all-reduce): one step at a time.
                jax.block_until_ready(metrics)
                inspect(step + 1)
            if callback is not None:
                inspect(step + 1)
                callback(step + 1, {k: float(v) for k, v in metrics.items()})
            bar.update(1)
            if progress and (step + 1) % 25 == 0:
                inspect(step + 1)
                bar.set_postfix(loss=f"{float(metrics['loss']):.4f}")
            if (step + 1) % checkpoint_every == 0:
                save(step + 1)
        inspect(int(state.step))
        save(int(state.step))
    except KeyboardInterrupt:
        save(int(state.step))
        raise
    finally:
        bar.close()
    return state


def _fingerprint(data: Data, keys: tuple[str, ...]) -> dict[str, Any]:
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

    Raises:
      OutputPathError: ``cache_dir`` cannot be created or written (checked before any work).
      InvalidArgumentError: ``checkpoint_dir=``, a missing ``steps=``, a lambda loss or a custom
        optimizer (none of them can key the cache); and every error of :func:`train`.

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
    _paths.check_writable_dir(cache_dir, "cache_dir", "the trained model")
    spec = _labels_spec(train_kwargs.get("label_key", "label"))
    keys = (train_kwargs.get("input_key", "image"), *spec.data_keys)
    _num_examples(data, keys)
    loss = train_kwargs.get("loss")
    if loss is not None and any(
        "<" in describe(fn) for fn in _loss_functions(loss)
    ):  # "<lambda>", "<locals>": two of them would share a cache entry
        raise errors.InvalidArgumentError(
            f"train_or_restore names the cache entry after the loss, and {describe(loss)} is a "
            "lambda or a local function (not a stable name): define the loss at module level, "
            "or call `train` with your own `checkpoint_dir`."
        )
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
    if loss is not None:
        settings["loss"] = describe(loss)
    key = json.dumps(
        {"model": repr(model), "train": settings, "data": _fingerprint(data, keys)},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    directory = os.path.join(os.fspath(cache_dir), f"{name}-{digest}")
    return train(model, data, checkpoint_dir=directory, **train_kwargs)


def _loss_functions(loss: Loss) -> list[Loss]:
    if isinstance(loss, MultiTaskLoss):
        return [f for _, fn, _ in loss.terms for f in _loss_functions(fn)]
    return [loss]
