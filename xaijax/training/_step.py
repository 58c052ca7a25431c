"""Train state, the jitted optax train step over any loss, and batched evaluation.

The convention for Linen modules with state (BatchNorm) or randomness (dropout) is stated in
the docstring of :mod:`xaijax.training`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from xaijax import _validation, errors
from xaijax.training._losses import Loss, classification_loss, split_loss_value
from xaijax.typing import ApplyFn, ArrayLike, Params, PRNGKey, PyTree

# The dropout key of a state is fold_in(init key, this): "drop" in ASCII.
_DROPOUT_SALT = 0x64726F70
#: Collections that are outputs of a call, not state carried between steps.
_NOT_STATE = ("params", "intermediates")


class TrainState(struct.PyTreeNode):
    """What a training run carries from step to step (a pytree; no functions inside).

    Attributes:
      step: number of optimizer updates applied so far (int32 scalar).
      params: the model parameters (the ``"params"`` collection).
      opt_state: the optax optimizer state.
      model_state: the other variable collections, e.g. ``{"batch_stats": ...}`` for
        BatchNorm; ``{}`` for a stateless model.
      key: the run's PRNG key (dropout); step ``s`` uses ``jax.random.fold_in(key, s)``.
        ``None``: the model draws no random numbers in training (or the step is given a
        ``key``).
    """

    step: jax.Array
    params: Params
    opt_state: optax.OptState
    model_state: PyTree = struct.field(default_factory=dict)
    key: jax.Array | None = None

    @property
    def variables(self) -> dict[str, PyTree]:
        """``{"params": params, **model_state}``, what ``module.apply`` takes."""
        return {"params": self.params, **self.model_state}


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


def takes_train(module: nn.Module) -> bool:
    """Whether the module's ``__call__`` has a ``train`` argument (see the module docstring)."""
    try:
        return "train" in inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return False


class ModelFns(NamedTuple):
    """The pure functions a module or ``apply_fn`` gives training and evaluation.

    Attributes:
      train: ``train(params, model_state, x, rngs) -> (outputs, new_model_state)``.
      eval: ``eval(params, model_state, x) -> outputs``.
    """

    train: Callable[[Params, PyTree, jax.Array, dict | None], tuple[PyTree, PyTree]]
    eval: Callable[[Params, PyTree, jax.Array], PyTree]


def _call(module: nn.Module, variables: dict, x: jax.Array, *, training: bool, **kwargs):
    """``module.apply`` with Flax's errors about state and randomness turned into named ones."""
    name = type(module).__name__
    try:
        return module.apply(variables, x, **kwargs)
    except flax.errors.InvalidRngError as e:
        if training:
            raise errors.MissingKeyError(
                f"{name} draws random numbers in training (dropout?) but the step has no key: "
                "build the state with `create_train_state` (it stores one), or pass `key=` to "
                f"the step. Flax said: {str(e).splitlines()[0]}"
            ) from e
        raise errors.InvalidArgumentError(
            f"{name} draws random numbers in evaluation: give its __call__ a `train: bool` "
            "argument and switch dropout off when it is False "
            "(`nn.Dropout(rate, deterministic=not train)`)."
        ) from e
    except flax.errors.ModifyScopeVariableError as e:
        raise errors.InvalidArgumentError(
            f"{name} updates its variables in evaluation ({str(e).splitlines()[0]}): give its "
            "__call__ a `train: bool` argument and use "
            "`nn.BatchNorm(use_running_average=not train)`."
        ) from e
    except flax.errors.ScopeCollectionNotFound as e:
        raise errors.InvalidArgumentError(
            f"{name} needs variable collections besides 'params' ({str(e).splitlines()[0]}): "
            "pass `model_state=state.model_state` (e.g. BatchNorm's 'batch_stats')."
        ) from e


def _module_fns(module: nn.Module) -> ModelFns:
    flag = {"train": True} if takes_train(module) else {}
    off = {"train": False} if flag else {}

    def train(params, model_state, x, rngs):
        variables = {"params": params, **model_state}
        if not model_state:
            return _call(module, variables, x, training=True, rngs=rngs, **flag), model_state
        outputs, updated = _call(
            module, variables, x, training=True, rngs=rngs, mutable=sorted(model_state), **flag
        )
        # Same container types as the input state, so the next step reuses the compilation.
        new_state = jax.tree.unflatten(
            jax.tree.structure(model_state),
            jax.tree.leaves({k: updated[k] for k in model_state}),
        )
        return outputs, new_state

    def eval(params, model_state, x):
        return _call(module, {"params": params, **model_state}, x, training=False, **off)

    return ModelFns(train, eval)


def _apply_fn_fns(apply_fn: ApplyFn) -> ModelFns:
    def stateless(model_state):
        if model_state:
            raise errors.InvalidArgumentError(
                f"The state holds variable collections {sorted(model_state)}, but the model is "
                "a plain `apply_fn(params, x)` that cannot use them: pass the Flax module "
                "itself (to `make_train_step` / `evaluate`)."
            )

    def train(params, model_state, x, rngs):
        del rngs
        stateless(model_state)
        return apply_fn(params, x), model_state

    def eval(params, model_state, x):
        stateless(model_state)
        return apply_fn(params, x)

    return ModelFns(train, eval)


def _build_fns(model: nn.Module | ApplyFn) -> ModelFns:
    from xaijax._model import Model

    if isinstance(model, nn.Module):
        return _module_fns(model)
    if isinstance(model, Model):  # an xaijax.Model trains through its apply_fn (all heads)
        return _apply_fn_fns(model.apply_fn)
    if callable(model):
        return _apply_fn_fns(model)
    raise errors.InvalidArgumentError(
        f"`model` must be a flax.linen.Module, an xaijax.Model or a function "
        f"`apply_fn(params, x)`, got "
        f"{type(model).__name__}."
    )


@functools.lru_cache(maxsize=64)
def _cached_fns(model: nn.Module | ApplyFn) -> ModelFns:
    return _build_fns(model)


def model_fns(model: nn.Module | ApplyFn) -> ModelFns:
    """The :class:`ModelFns` of a module or ``apply_fn``; equal (hashable) models share them, so
    jit caches keyed on them are reused."""
    try:
        return _cached_fns(model)
    except TypeError:  # unhashable fields
        return _build_fns(model)


@functools.lru_cache(maxsize=64)
def _init_fn(model: nn.Module):
    if takes_train(model):
        return jax.jit(functools.partial(model.init, train=False))
    return jax.jit(model.init)


def create_train_state(
    model: nn.Module,
    example_input: ArrayLike,
    *,
    key: PRNGKey,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
) -> TrainState:
    """Initialises a model's variables, the optimizer state and the run's dropout key.

    Args:
      model: a Flax Linen module. Collections besides ``"params"`` (BatchNorm statistics) go
        to ``model_state``; a ``train`` argument of ``__call__`` is set to ``False`` for the
        initialisation (see the module docstring for the convention).
      example_input: a batch of the model's input (only its shape and dtype matter).
      key: PRNG key. The parameters are ``model.init(key, ...)["params"]``; the dropout key is
        ``jax.random.fold_in(key, 0x64726F70)``. Tip: on CPU an ``impl="rbg"`` key
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
      >>> int(state.step), state.model_state
      (0, {})
    """
    key = _validation.check_key(key)
    if not isinstance(model, nn.Module):
        raise errors.InvalidArgumentError(
            f"`model` must be a flax.linen.Module, got {type(model).__name__}: build one with "
            "`xaijax.models.get_model(name, num_classes)`."
        )
    if optimizer is None:
        optimizer = default_optimizer(learning_rate)
    try:
        init = _init_fn(model)
    except TypeError:  # unhashable fields
        init = _init_fn.__wrapped__(model)
    variables = init(key, jnp.asarray(example_input))
    if "params" not in variables:
        raise errors.InvalidArgumentError(
            f"{type(model).__name__} has no parameters (its variables are {sorted(variables)}): "
            "there is nothing to train."
        )
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k not in _NOT_STATE}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        model_state=model_state,
        key=jax.random.fold_in(key, _DROPOUT_SALT),
    )


def make_train_step(
    model: nn.Module | ApplyFn,
    optimizer: optax.GradientTransformation,
    *,
    loss: Loss = classification_loss,
    rng_streams: Sequence[str] = ("dropout",),
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """Builds the jitted step ``step(state, x, labels, key=None) -> (new_state, metrics)``.

    One optax update on ``loss(outputs, labels)``, where ``outputs`` is what the model returns
    on ``x`` in training mode (an array, a tuple or a dict of heads) and ``labels`` any pytree
    the loss understands. ``metrics`` holds the batch ``"loss"`` and whatever the loss reports
    (the default reports ``"accuracy"``), computed before the update; a BatchNorm model's
    ``model_state`` is updated with the batch statistics. Same-shaped batches reuse one
    compilation; the state is not donated, so the caller may keep the old one.

    Args:
      model: a Flax Linen module (state and dropout as in the module docstring), or a function
        ``apply_fn(params, x) -> outputs`` for a model without state.
      optimizer: the optax transformation whose state is ``state.opt_state``.
      loss: ``loss(outputs, labels) -> scalar`` or ``(scalar, dict_of_metrics)``; the default,
        :func:`classification_loss`, is softmax cross-entropy on ``[B, C]`` logits and integer
        labels ``[B]``. See :func:`multitask` for several heads.
      rng_streams: the Flax RNG streams the model draws from in training; stream ``i`` gets
        ``jax.random.fold_in(step_key, i)``.

    Returns:
      The jitted step. ``step_key`` is the step's ``key`` argument when given, else
      ``jax.random.fold_in(state.key, state.step)``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from xaijax import models
      >>> model = models.get_model("text1d", 2)
      >>> tx = optax.adam(1e-3)
      >>> x, y = jnp.zeros((4, 64), jnp.int32), jnp.zeros((4,), jnp.int32)
      >>> state = create_train_state(model, x, key=jax.random.key(0), optimizer=tx)
      >>> state, metrics = make_train_step(model, tx)(state, x, y)
      >>> int(state.step), sorted(metrics)
      (1, ['accuracy', 'loss'])
    """
    fns = model_fns(model)
    if not callable(loss):
        raise errors.InvalidArgumentError(
            f"`loss` must be a function `loss(outputs, labels)`, got {type(loss).__name__}."
        )
    if isinstance(rng_streams, str) or not all(isinstance(s, str) for s in rng_streams):
        raise errors.InvalidArgumentError(
            f"`rng_streams` must be a sequence of stream names such as ('dropout',), got "
            f"{rng_streams!r}."
        )
    streams = tuple(rng_streams)

    def step(state: TrainState, x: jax.Array, labels: PyTree, key: jax.Array | None = None):
        if key is None and state.key is not None:
            key = jax.random.fold_in(state.key, state.step)
        rngs = None
        if key is not None and streams:
            rngs = {s: jax.random.fold_in(key, i) for i, s in enumerate(streams)}

        def objective(params):
            outputs, model_state = fns.train(params, state.model_state, x, rngs)
            value, metrics = split_loss_value(loss(outputs, labels), loss)
            return value, (metrics, model_state)

        (value, (metrics, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state
        )
        return new_state, {**metrics, "loss": value}

    return jax.jit(step)


def _class_scores(outputs: PyTree, head: Hashable | None) -> jax.Array:
    if head is not None:
        try:
            outputs = outputs[head]
        except (KeyError, IndexError, TypeError) as e:
            raise errors.InvalidArgumentError(
                f"`head={head!r}` is not an entry of the model's outputs "
                f"({type(outputs).__name__}): name the class-logits head."
            ) from e
    if not hasattr(outputs, "ndim") or outputs.ndim != 2:
        what = (
            f"shape {list(outputs.shape)}" if hasattr(outputs, "shape") else type(outputs).__name__
        )
        raise errors.InvalidArgumentError(
            f"`evaluate` needs class logits [B, C] from the model, got {what}: pass `head=` "
            "naming the class-logits entry when the model returns several heads."
        )
    return outputs


def _count_correct(
    eval_fn: Callable,
    head: Hashable | None,
    params: Params,
    model_state: PyTree,
    x: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
) -> jax.Array:
    predictions = jnp.argmax(_class_scores(eval_fn(params, model_state, x), head), axis=-1)
    return jnp.sum(jnp.where(valid, predictions == labels, False))


_count_correct_jit = jax.jit(_count_correct, static_argnums=(0, 1))


def evaluate(
    model: nn.Module | ApplyFn,
    params: Params,
    inputs: ArrayLike,
    labels: ArrayLike,
    *,
    batch_size: int = 256,
    model_state: PyTree | None = None,
    head: Hashable | None = None,
) -> float:
    """Top-1 accuracy of a model on a whole dataset, in fixed-shape batches, in eval mode.

    The last, partial batch is padded to ``batch_size`` and masked (as in big_vision), so a
    dataset of any length compiles the model once. A module is called in evaluation mode
    (``train=False``: BatchNorm uses the running averages in ``model_state``, dropout is off).

    Args:
      model: a Flax Linen module, or ``apply_fn(params, x) -> outputs`` for a stateless model.
      params: the model parameters.
      inputs: ``[N, ...]`` model inputs (numpy or jax).
      labels: ``[N]`` integer class labels.
      batch_size: examples per jitted call.
      model_state: the module's other collections (``state.model_state``, e.g. BatchNorm's
        ``{"batch_stats": ...}``); ``None`` for a stateless model.
      head: the entry of the outputs holding the class logits ``[B, C]`` (a dict key or tuple
        position) when the model returns several heads; ``None`` when it returns the logits.

    Returns:
      The fraction of correctly classified examples, a Python float in [0, 1].

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax import models
      >>> model = models.get_model("text1d", 2)
      >>> x = jnp.zeros((5, 64), jnp.int32)
      >>> params = model.init(jax.random.key(0), x)["params"]
      >>> 0.0 <= evaluate(model, params, x, jnp.zeros(5, jnp.int32)) <= 1.0
      True
    """
    batch_size = _validation.check_positive_int(batch_size, "batch_size")
    fns = model_fns(model)
    model_state = {} if model_state is None else model_state
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
        correct += int(_count_correct_jit(fns.eval, head, params, model_state, xb, yb, valid))
    return correct / n
