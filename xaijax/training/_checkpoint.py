"""Orbax checkpoints of parameters (optimizer state, model state), checked on restore.

A checkpoint directory is managed by ``orbax.checkpoint.CheckpointManager``: one sub-directory
per step, written atomically (a temporary directory renamed when complete, so an interrupted
save never shadows the previous checkpoint), holding up to four items: ``params``,
``opt_state`` (training runs only), ``model_state`` (the variable collections besides
``"params"``, e.g. BatchNorm's ``batch_stats``; only for models that have them) and
``metadata`` (JSON: step, user metadata, CRC32 of every array). Restoring validates each tree
against the model (:class:`CheckpointMismatchError`) and the bytes against the CRCs
(:class:`CorruptCheckpointError`).
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from xaijax import _paths, errors
from xaijax.typing import Params, PyTree

ITEMS = ("params", "opt_state", "model_state", "metadata")
FORMAT = "xaijax-checkpoint-v1"


def path_str(path: tuple[Any, ...]) -> str:
    """``('block1', 'conv1', 'kernel')``-style key path as ``'block1/conv1/kernel'``."""
    parts = []
    for p in path:
        for attr in ("key", "name", "idx"):
            if hasattr(p, attr):
                parts.append(str(getattr(p, attr)))
                break
        else:
            parts.append(str(p))
    return "/".join(parts)


def _dtype(leaf: Any) -> np.dtype:
    return np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype


def _flat(tree: PyTree) -> dict[str, Any]:
    return {path_str(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def checksums(tree: PyTree) -> dict[str, str]:
    """CRC32 (hex) of every leaf's bytes, keyed by its path."""
    out = {}
    for k, leaf in _flat(tree).items():
        arr = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
        out[k] = format(zlib.crc32(arr.tobytes()), "08x")
    return out


def manager(
    directory: str | os.PathLike, *, max_to_keep: int | None = None, read_only: bool = False
) -> ocp.CheckpointManager:
    """An orbax ``CheckpointManager`` over ``directory`` with xaijax's items."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=not read_only,
        read_only=read_only,
        cleanup_tmp_directories=not read_only,  # leftovers of saves that were interrupted
        enable_async_checkpointing=False,
    )
    handlers = {
        "params": ocp.StandardCheckpointHandler(),
        "opt_state": ocp.StandardCheckpointHandler(),
        "model_state": ocp.StandardCheckpointHandler(),
        "metadata": ocp.JsonCheckpointHandler(),
    }
    return ocp.CheckpointManager(
        os.path.abspath(directory), options=options, item_handlers=handlers
    )


def _host(tree: PyTree) -> PyTree:
    """Single-device copies, so a checkpoint never records a multi-device sharding."""
    device = jax.devices()[0]
    return jax.tree.map(lambda a: jax.device_put(np.asarray(jax.device_get(a)), device), tree)


def write(
    mngr: ocp.CheckpointManager,
    step: int,
    params: Params,
    *,
    opt_state: PyTree | None = None,
    model_state: PyTree | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Saves one step (private: the public entry point is :func:`save_checkpoint`).

    ``model_state`` is saved only when it holds arrays (an empty ``{}`` is not an item).
    """
    params = _host(params)
    record = {
        "format": FORMAT,
        "step": int(step),
        "user": metadata or {},
        "crc32": {"params": checksums(params)},
    }
    items = {"params": ocp.args.StandardSave(params)}
    if opt_state is not None:
        opt_state = _host(opt_state)
        record["crc32"]["opt_state"] = checksums(opt_state)
        items["opt_state"] = ocp.args.StandardSave(opt_state)
    if model_state is not None and jax.tree.leaves(model_state):
        model_state = _host(model_state)
        record["crc32"]["model_state"] = checksums(model_state)
        items["model_state"] = ocp.args.StandardSave(model_state)
    items["metadata"] = ocp.args.JsonSave(record)
    mngr.save(int(step), args=ocp.args.Composite(**items), force=True)
    mngr.wait_until_finished()


def save_checkpoint(
    directory: str | os.PathLike,
    params: Params,
    *,
    step: int,
    metadata: dict[str, Any] | None = None,
    model_state: PyTree | None = None,
) -> str:
    """Saves ``params`` as step ``step`` of the checkpoint directory ``directory``.

    The write is atomic (orbax writes a temporary directory and renames it when complete), and
    CRC32 checksums of every array go into the JSON metadata so that :func:`restore_checkpoint`
    detects corrupted bytes.

    Args:
      directory: checkpoint directory (created if missing); may already hold other steps.
      params: the parameter pytree.
      step: non-negative step number; must not already exist in ``directory``.
      metadata: optional JSON-serialisable dict stored beside the parameters.
      model_state: the model's other variable collections (``state.model_state``, e.g.
        ``{"batch_stats": ...}``), restored by :func:`restore_model_state`; ``None`` or ``{}``
        for a stateless model.

    Returns:
      The path of the written step directory.

    Raises:
      InvalidArgumentError: negative ``step``, a step that already exists, or metadata that is
        not JSON-serialisable.
      OutputPathError: ``directory`` cannot be created or written (e.g. it lies below a regular
        file or on a read-only file system); checked before anything is written.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> d = tempfile.mkdtemp()
      >>> _ = save_checkpoint(d, {"w": jnp.ones(3)}, step=0)
      >>> restore_checkpoint(d, {"w": jnp.zeros(3)})["w"].tolist()
      [1.0, 1.0, 1.0]
    """
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise errors.InvalidArgumentError(f"`step` must be a non-negative int, got {step!r}.")
    if metadata is not None:
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgumentError(
                f"`metadata` must be JSON-serialisable (str/int/float/bool/list/dict): {e}."
            ) from e
    _paths.check_writable_dir(directory, "directory", "the checkpoint")
    mngr = manager(directory)
    try:
        if int(step) in mngr.all_steps():
            raise errors.InvalidArgumentError(
                f"Step {int(step)} already exists in checkpoint directory {directory!s}: "
                "pass a new `step`, or delete that step's sub-directory first."
            )
        write(mngr, int(step), params, model_state=model_state, metadata=metadata)
    finally:
        mngr.close()
    return os.path.join(os.path.abspath(directory), str(int(step)))


def _corrupt(directory: Any, step: int, what: str, cause: BaseException | None = None):
    detail = f" ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})" if cause else ""
    return errors.CorruptCheckpointError(
        f"Checkpoint step {step} in {directory!s} cannot be read: {what}{detail}. It is "
        f"truncated, partly written or not an xaijax checkpoint: delete "
        f"{os.path.join(os.path.abspath(directory), str(step))} and restore an older step "
        "(`step=`) or re-train."
    )


def _saved_tree(mngr: ocp.CheckpointManager, step: int, item: str, directory: Any) -> PyTree:
    try:
        composite = mngr.item_metadata(step)
        meta = composite.get(item)
        tree = getattr(meta, "tree", meta)
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types
        raise _corrupt(directory, step, f"the '{item}' tree metadata is unreadable", e) from e
    if tree is None and item == "model_state":
        return None
    if tree is None and item == "opt_state":
        raise errors.CheckpointMismatchError(
            f"Checkpoint step {step} in {directory!s} holds parameters only (written by "
            "save_checkpoint), so training cannot resume from it: load it with "
            "`restore_checkpoint`, or train into a new `checkpoint_dir`."
        )
    if tree is None:
        raise _corrupt(directory, step, f"it has no '{item}' item")
    return tree


def _compare(saved: dict[str, Any], like: dict[str, Any], what: str, directory: Any) -> None:
    """Raises CheckpointMismatchError naming the first path where the trees differ."""
    for path in sorted(set(saved) | set(like)):
        if path not in saved:
            raise errors.CheckpointMismatchError(
                f"The checkpoint in {directory!s} does not match the model: {what} leaf "
                f"'{path}' (shape {list(np.shape(like[path]))}) is missing from the checkpoint. "
                "Restore into the model that wrote it (same class and fields), or re-train."
            )
        if path not in like:
            raise errors.CheckpointMismatchError(
                f"The checkpoint in {directory!s} does not match the model: it has {what} leaf "
                f"'{path}' (shape {list(saved[path].shape)}) that the model lacks. Restore into "
                "the model that wrote it (same class and fields), or re-train."
            )
        s, m = saved[path], like[path]
        if tuple(s.shape) != tuple(np.shape(m)) or np.dtype(s.dtype) != _dtype(m):
            raise errors.CheckpointMismatchError(
                f"The checkpoint in {directory!s} does not match the model: {what} leaf '{path}' "
                f"is {np.dtype(s.dtype).name}{list(s.shape)} in the checkpoint but "
                f"{_dtype(m).name}{list(np.shape(m))} in the model (different width or "
                "layout?). Restore into the model that wrote it, or re-train."
            )


class Restored(NamedTuple):
    """What :func:`read` returns; ``opt_state`` / ``model_state`` are ``None`` when not read."""

    params: Params | None
    opt_state: PyTree | None
    model_state: PyTree | None
    record: dict[str, Any]


_NOT_READ = object()


def read(
    mngr: ocp.CheckpointManager,
    directory: Any,
    step: int,
    *,
    like_params: Params | None | object = _NOT_READ,
    like_opt_state: PyTree | None = None,
    like_model_state: PyTree | None | object = _NOT_READ,
) -> Restored:
    """Restores and verifies one step (private; see :func:`restore_checkpoint`).

    An item is read when its ``like_*`` argument is given (``None``: whatever tree was saved;
    ``like_opt_state=None`` means "do not read"). ``like_model_state={}`` (a stateless model)
    requires the checkpoint to hold no model state, and a non-empty one requires it to hold
    that tree.
    """
    try:
        record = mngr.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))[
            "metadata"
        ]
    except Exception as e:  # noqa: BLE001
        raise _corrupt(directory, step, "its JSON metadata is unreadable", e) from e
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise _corrupt(directory, step, "its metadata is not xaijax's")

    device = jax.devices()[0]
    sharding = jax.sharding.SingleDeviceSharding(device)
    wanted: dict[str, PyTree] = {}
    if like_params is not _NOT_READ:
        wanted["params"] = like_params
    if like_opt_state is not None:
        wanted["opt_state"] = like_opt_state
    model_state_out: PyTree | None = None
    if like_model_state is not _NOT_READ:
        saved_state = _saved_tree(mngr, step, "model_state", directory)
        has_like = like_model_state is not None and bool(jax.tree.leaves(like_model_state))
        if saved_state is None and has_like:
            raise errors.CheckpointMismatchError(
                f"The checkpoint step {step} in {directory!s} holds no model state, but the "
                f"model has variable collections {sorted(like_model_state)} besides 'params' "
                "(BatchNorm statistics?): restore into the model that wrote it, or re-train."
            )
        if saved_state is not None and like_model_state is not None and not has_like:
            raise errors.CheckpointMismatchError(
                f"The checkpoint step {step} in {directory!s} holds model state "
                f"{sorted(saved_state)} (e.g. BatchNorm statistics) that the model lacks: "
                "restore into the model that wrote it, or re-train."
            )
        if saved_state is None:
            model_state_out = {}
        else:
            wanted["model_state"] = like_model_state
    targets: dict[str, PyTree] = {}
    for item, like in wanted.items():
        saved = _saved_tree(mngr, step, item, directory)
        if like is None:
            targets[item] = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), saved
            )
            continue
        _compare(_flat(saved), _flat(like), item, directory)
        targets[item] = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(np.shape(a), _dtype(a), sharding=sharding), like
        )
    restored: dict[str, PyTree] = {}
    if targets:
        try:
            restored = mngr.restore(
                step,
                args=ocp.args.Composite(
                    **{k: ocp.args.StandardRestore(v) for k, v in targets.items()}
                ),
            )
        except Exception as e:  # noqa: BLE001
            raise _corrupt(directory, step, "its array data is unreadable", e) from e
    out: dict[str, PyTree] = {}
    for item in targets:
        tree = restored[item]
        like = wanted[item]
        if like is not None:
            # Same container types as the model's tree (e.g. optax NamedTuples).
            by_path = _flat(tree)
            tree = jax.tree.unflatten(jax.tree.structure(like), [by_path[k] for k in _flat(like)])
        expected = record.get("crc32", {}).get(item)
        if expected is None:
            raise _corrupt(directory, step, f"its metadata has no checksums for '{item}'")
        actual = checksums(tree)
        for path in sorted(set(expected) | set(actual)):
            if expected.get(path) != actual.get(path):
                raise _corrupt(directory, step, f"'{item}/{path}' does not match its checksum")
        out[item] = tree
    return Restored(
        params=out.get("params"),
        opt_state=out.get("opt_state"),
        model_state=out.get("model_state", model_state_out),
        record=record,
    )


def _read_step(directory: str | os.PathLike, step: int | None, **like: Any) -> Restored:
    """Opens ``directory`` read-only and reads step ``step`` (the latest when ``None``)."""
    if not os.path.isdir(directory):
        raise errors.CorruptCheckpointError(
            f"No checkpoint directory at {directory!s}: check the path, or train and save first."
        )
    try:
        mngr = manager(directory, read_only=True)
    except Exception as e:  # noqa: BLE001
        raise errors.CorruptCheckpointError(
            f"{directory!s} is not a readable checkpoint directory ({e}): check the path."
        ) from e
    try:
        steps = list(mngr.all_steps())
        if not steps:
            raise errors.CorruptCheckpointError(
                f"No checkpoint found in {directory!s} (no completed step sub-directory): "
                "check the path, or train and save first."
            )
        if step is None:
            step = max(steps)
        elif step not in steps:
            raise errors.InvalidArgumentError(
                f"`step` {step!r} is not in {directory!s}; available steps: {sorted(steps)}."
            )
        return read(mngr, directory, int(step), **like)
    finally:
        mngr.close()


def restore_checkpoint(
    directory: str | os.PathLike, like_params: Params | None = None, *, step: int | None = None
) -> Params:
    """Restores the parameters saved in ``directory`` (the latest step by default).

    Args:
      directory: a checkpoint directory written by :func:`save_checkpoint` or
        :func:`xaijax.training.train`.
      like_params: parameters of the model to restore into (e.g. from ``model.init``): the
        checkpoint's tree (paths, shapes, dtypes) must match it exactly, and the result has its
        container types. ``None`` restores whatever tree was saved, as nested dicts.
      step: which step to restore; ``None`` for the latest.

    Returns:
      The parameter pytree, bit-identical to what was saved, on the default device. A model
      with BatchNorm also needs :func:`restore_model_state`.

    Raises:
      CheckpointMismatchError: the saved tree differs from ``like_params``; the message names
        the first differing path and both shapes.
      CorruptCheckpointError: no checkpoint in ``directory``, or its files are truncated,
        corrupted (checksum mismatch) or not an xaijax checkpoint.
      InvalidArgumentError: ``step`` is not in the directory (the message lists those that are).

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> d = tempfile.mkdtemp()
      >>> _ = save_checkpoint(d, {"w": jnp.arange(3.0)}, step=5)
      >>> restore_checkpoint(d)["w"].tolist()
      [0.0, 1.0, 2.0]
    """
    return _read_step(directory, step, like_params=like_params).params


def restore_model_state(
    directory: str | os.PathLike,
    like_model_state: PyTree | None = None,
    *,
    step: int | None = None,
) -> PyTree:
    """Restores the model state (e.g. BatchNorm's ``batch_stats``) saved in ``directory``.

    Together with :func:`restore_checkpoint` this gives the variables of a stateful model:
    ``{"params": params, **model_state}``.

    Args:
      directory: a checkpoint directory written by :func:`save_checkpoint` (with
        ``model_state=``) or :func:`xaijax.training.train`.
      like_model_state: the model's collections to restore into (``state.model_state``): the
        saved tree must match it exactly; ``{}`` requires a checkpoint without model state.
        ``None`` restores whatever was saved (``{}`` when nothing was).
      step: which step to restore; ``None`` for the latest.

    Returns:
      The collections as saved, e.g. ``{"batch_stats": {...}}``; ``{}`` for a stateless model.

    Raises:
      CheckpointMismatchError: the saved collections differ from ``like_model_state``, or one
        of them has some and the other none.
      CorruptCheckpointError: as :func:`restore_checkpoint`.
      InvalidArgumentError: as :func:`restore_checkpoint`.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> d = tempfile.mkdtemp()
      >>> stats = {"batch_stats": {"mean": jnp.zeros(2), "var": jnp.ones(2)}}
      >>> _ = save_checkpoint(d, {"w": jnp.ones(2)}, step=0, model_state=stats)
      >>> restore_model_state(d)["batch_stats"]["var"].tolist()
      [1.0, 1.0]
    """
    return _read_step(directory, step, like_model_state=like_model_state).model_state
