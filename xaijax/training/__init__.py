"""Training for the model zoo and the coming families: a jitted optax step over any loss,
evaluation, orbax checkpoints, resume.

* :func:`create_train_state`, :func:`make_train_step` (jitted; a loss over the model's outputs,
  softmax cross-entropy by default; BatchNorm statistics and dropout keys as stated below),
  :func:`evaluate` (fixed-shape padded batches, eval mode).
* Losses, pure functions ``loss(outputs, labels)``: :func:`cross_entropy`,
  :func:`classification_loss` (the default: cross-entropy and accuracy),
  :func:`sigmoid_binary_cross_entropy` (multi-label attributes) and :func:`multitask`
  (a weighted sum over the heads of a model returning a dict).
* :func:`save_checkpoint` / :func:`restore_checkpoint` / :func:`restore_model_state`: atomic
  orbax checkpoints whose restore checks the tree against the model
  (:class:`xaijax.errors.CheckpointMismatchError`) and the bytes against CRC32 checksums
  (:class:`xaijax.errors.CorruptCheckpointError`).
* :func:`train`: deterministic, data-parallel over the available devices, with tqdm progress,
  periodic checkpoints, exact resume, and named errors for bad data or a loss that turns NaN;
  :func:`train_or_restore` caches finished runs.

Models with state or randomness (Flax Linen): the convention
-------------------------------------------------------------
:func:`create_train_state` keeps every variable collection besides ``"params"`` (BatchNorm's
``"batch_stats"``, ...) in ``TrainState.model_state`` (``"intermediates"``, which ``sow``
fills, is not state and is dropped). When the module's ``__call__`` takes an argument named
``train``, the module is called

* at initialisation: ``module.init(key, x, train=False)``;
* in a train step: ``module.apply({"params": params, **model_state}, x, train=True,
  mutable=sorted(model_state), rngs={"dropout": jax.random.fold_in(step_key, 0)})``, and the
  updated collections become the new ``model_state``;
* in evaluation: ``module.apply({"params": params, **model_state}, x, train=False)``, so
  BatchNorm uses its running averages (``nn.BatchNorm(use_running_average=not train)``) and
  dropout is off (``nn.Dropout(rate, deterministic=not train)``), as in Flax's examples.

A module without a ``train`` argument is called the same way without it. ``step_key`` is
``jax.random.fold_in(state.key, state.step)`` (``state.key`` is set by
:func:`create_train_state`), or the ``key`` passed to the step; stream ``i`` of
``make_train_step(..., rng_streams=("dropout",))`` gets ``jax.random.fold_in(step_key, i)``.
So a run is reproducible from its key, and no hidden global random state is used. A plain
function ``apply_fn(params, x) -> outputs`` works everywhere a module does, for models without
state.

Example:
    >>> import numpy as np
    >>> from xaijax import models, training
    >>> data = {"tokens": np.zeros((8, 64), np.int32), "label": np.zeros(8, np.int32)}
    >>> result = training.train(models.get_model("text1d", 2), data, input_key="tokens",
    ...                         steps=3, batch_size=4, progress=False)
    >>> result.step
    3

    EAT's multi-task objective (class cross-entropy + 0.5 x attribute BCE) over a model that
    returns ``{"class": [B, C], "attributes": [B, A]}``:

    >>> loss = training.multitask({
    ...     "class": (training.cross_entropy, 1.0),
    ...     "attributes": (training.sigmoid_binary_cross_entropy, 0.5),
    ... })
"""

from xaijax.training._checkpoint import restore_checkpoint, restore_model_state, save_checkpoint
from xaijax.training._loop import Data, TrainResult, train, train_or_restore
from xaijax.training._losses import (
    Loss,
    MultiTaskLoss,
    classification_loss,
    cross_entropy,
    multitask,
    sigmoid_binary_cross_entropy,
)
from xaijax.training._step import (
    TrainState,
    create_train_state,
    default_optimizer,
    evaluate,
    make_train_step,
)

__all__ = [
    "Data",
    "Loss",
    "MultiTaskLoss",
    "TrainResult",
    "TrainState",
    "classification_loss",
    "create_train_state",
    "cross_entropy",
    "default_optimizer",
    "evaluate",
    "make_train_step",
    "multitask",
    "restore_checkpoint",
    "restore_model_state",
    "save_checkpoint",
    "sigmoid_binary_cross_entropy",
    "train",
    "train_or_restore",
]
