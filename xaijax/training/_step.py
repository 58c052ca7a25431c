"""Train state, the jitted optax train step and batched evaluation."""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from xaijax import _validation, errors
from xaijax.typing import ApplyFn, ArrayLike, Params, PRNGKey


class TrainState(struct.PyTreeNode):
    """What a training run carries from step to step (a pytree; no functions inside).

    Attributes:
      step: number of optimizer updates applied so far (int32 scalar).
      params: the model parameters (the ``"params"`` collection).
      opt_state: the optax optimizer state.
    """

    step: jax.Array
    params: Params
    opt_state: optax.OptState


@functools.lru_cache(maxsize=32)
def default_optimizer(
    learning_rate: float = 1e-3, steps: int | None = None
) -> optax.GradientTransformation:
    """Adam; with ``steps`` given, a 5 % linear warm-up then cosine decay to 1 % over ``steps``.

    Calls with equal arguments return the same object, so jitted steps built on it are reused.

    Args:
      learning_rate: peak learning rate.
      steps: total number of updates of the run, or ``None`` for a constant rate.

    Returns:
      An ``optax.GradientTransformation``.

    Example:
      >>> tx = default_optimizer(1e-3, steps=1000)
    """
    if not (isinstance(learning_rate, int | float) and learning_rate > 0):
        raise errors.InvalidArgumentError(
            f"`learning_rate` must be a positive number, got {learning_rate!r}."
        )
    if steps is None:
        return optax.adam(learning_rate)
    steps = _validation.check_positive_int(steps, "steps")
    warmup = max(1, steps // 20)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup, max(steps, warmup + 1), end_value=learning_rate * 0.01
    )
    return optax.adam(schedule)


def create_train_state(
    model: nn.Module,
    example_input: ArrayLike,
    *,
    key: PRNGKey,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
) -> TrainState:
    """Initialises a model's parameters and the optimizer state.

    Args:
      model: a stateless Flax Linen module (only a ``"params"`` collection).
      example_input: a batch of the model's input (only its shape and dtype matter).
      key: PRNG key for the parameter initialisation. Tip: on CPU an ``impl="rbg"`` key
        (``jax.random.key(0, impl="rbg")``) compiles the initialisers several times faster than
        the default threefry key.
      optimizer: optax transformation; defaults to ``optax.adam(learning_rate)``. Pass the same
        object to :func:`make_train_step`.
      learning_rate: used only when ``optimizer`` is ``None``.

    Returns:
      A :class:`TrainState` at step 0.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax import models
      >>> state = create_train_state(
      ...     models.get_model("text1d", 2), jnp.zeros((1, 64), jnp.int32), key=jax.random.key(0))
      >>> int(state.step)
      0
    """
    key = _validation.check_key(key)
    if optimizer is None:
        optimizer = default_optimizer(learning_rate)
    variables = jax.jit(model.init)(key, jnp.asarray(example_input))
    extra = sorted(set(variables) - {"params"})
    if extra:
        raise errors.InvalidArgumentError(
            f"`model` has variable collections {extra} besides 'params'; xaijax trains stateless "
            "models only: drop BatchNorm/dropout (use LayerNorm/GroupNorm or no norm)."
        )
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params)
    )


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``logits [B, C]`` against integer ``labels [B]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_train_step(
    apply_fn: ApplyFn, optimizer: optax.GradientTransformation
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds the jitted step ``step(state, x, labels) -> (new_state, metrics)``.

    One optax update on the mean softmax cross-entropy of ``apply_fn(params, x)`` against
    ``labels``. ``metrics`` holds the batch ``"loss"`` and ``"accuracy"`` computed before the
    update. Same-shaped batches reuse one compilation; the state is not donated, so the caller
    may keep the old one.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [B, C]``.
      optimizer: the optax transformation whose state is ``state.opt_state``.

    Returns:
      The jitted step function.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from xaijax import models
      >>> model = models.get_model("text1d", 2)
      >>> tx = optax.adam(1e-3)
      >>> x, y = jnp.zeros((4, 64), jnp.int32), jnp.zeros((4,), jnp.int32)
      >>> state = create_train_state(model, x, key=jax.random.key(0), optimizer=tx)
      >>> state, metrics = make_train_step(models.apply_fn(model), tx)(state, x, y)
      >>> int(state.step)
      1
    """

    def loss_fn(params: Params, x: jax.Array, labels: jax.Array):
        logits = apply_fn(params, x)
        return cross_entropy(logits, labels), logits

    def step(state: TrainState, x: jax.Array, labels: jax.Array):
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, x, labels)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, {"loss": loss, "accuracy": accuracy}

    return jax.jit(step)


def _count_correct(
    apply_fn: ApplyFn, params: Params, x: jax.Array, labels: jax.Array, valid: jax.Array
) -> jax.Array:
    predictions = jnp.argmax(apply_fn(params, x), axis=-1)
    return jnp.sum(jnp.where(valid, predictions == labels, False))


_count_correct_jit = jax.jit(_count_correct, static_argnums=0)


def evaluate(
    apply_fn: ApplyFn,
    params: Params,
    inputs: ArrayLike,
    labels: ArrayLike,
    *,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy of ``apply_fn`` on a whole dataset, in fixed-shape batches.

    The last, partial batch is padded to ``batch_size`` and masked (as in big_vision), so a
    dataset of any length compiles the model once.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [B, C]``.
      params: the model parameters.
      inputs: ``[N, ...]`` model inputs (numpy or jax).
      labels: ``[N]`` integer class labels.
      batch_size: examples per jitted call.

    Returns:
      The fraction of correctly classified examples, a Python float in [0, 1].

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax import models
      >>> model = models.get_model("text1d", 2)
      >>> x = jnp.zeros((5, 64), jnp.int32)
      >>> params = model.init(jax.random.key(0), x)["params"]
      >>> 0.0 <= evaluate(models.apply_fn(model), params, x, jnp.zeros(5, jnp.int32)) <= 1.0
      True
    """
    batch_size = _validation.check_positive_int(batch_size, "batch_size")
    inputs = np.asarray(inputs)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != inputs.shape[0]:
        raise errors.BatchMismatchError(
            f"`labels` must be a vector with one entry per input: inputs have "
            f"{inputs.shape[0]} examples, labels have shape {list(labels.shape)}."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise errors.InputDTypeError(
            f"`labels` must be integer class indices, got dtype {labels.dtype}: pass "
            "`labels.astype(np.int32)`."
        )
    n = inputs.shape[0]
    if n == 0:
        raise errors.InputShapeError("`inputs` is empty: evaluate at least one example.")
    size = min(batch_size, n)
    correct = 0
    for start in range(0, n, size):
        xb, yb = inputs[start : start + size], labels[start : start + size].astype(np.int32)
        valid = np.ones(size, bool)
        if xb.shape[0] < size:
            pad = size - xb.shape[0]
            valid[size - pad :] = False
            xb = np.concatenate([xb, np.repeat(xb[:1], pad, axis=0)])
            yb = np.concatenate([yb, np.repeat(yb[:1], pad, axis=0)])
        correct += int(_count_correct_jit(apply_fn, params, xb, yb, valid))
    return correct / n
