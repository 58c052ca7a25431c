"""Training for the model zoo: a jitted optax step, evaluation, orbax checkpoints, resume.

* :func:`create_train_state`, :func:`make_train_step` (jitted, softmax cross-entropy),
  :func:`evaluate` (fixed-shape padded batches).
* :func:`save_checkpoint` / :func:`restore_checkpoint`: atomic orbax checkpoints whose restore
  checks the tree against the model (:class:`xaijax.errors.CheckpointMismatchError`) and the bytes
  against CRC32 checksums (:class:`xaijax.errors.CorruptCheckpointError`).
* :func:`train`: deterministic, data-parallel over the available devices, with tqdm progress,
  periodic checkpoints and exact resume; :func:`train_or_restore` caches finished runs.

Example:
    >>> import numpy as np
    >>> from xaijax import models, training
    >>> data = {"tokens": np.zeros((8, 64), np.int32), "label": np.zeros(8, np.int32)}
    >>> result = training.train(models.get_model("text1d", 2), data, input_key="tokens",
    ...                         steps=3, batch_size=4, progress=False)
    >>> result.step
    3
"""

from xaijax.training._checkpoint import restore_checkpoint, save_checkpoint
from xaijax.training._loop import Data, TrainResult, train, train_or_restore
from xaijax.training._step import (
    TrainState,
    create_train_state,
    cross_entropy,
    default_optimizer,
    evaluate,
    make_train_step,
)

__all__ = [
    "Data",
    "TrainResult",
    "TrainState",
    "create_train_state",
    "cross_entropy",
    "default_optimizer",
    "evaluate",
    "make_train_step",
    "restore_checkpoint",
    "save_checkpoint",
    "train",
    "train_or_restore",
]
