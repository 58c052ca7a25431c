"""Losses over a model's outputs: pure functions ``loss(outputs, labels)`` and a multi-task sum.

A loss is any function ``loss(outputs, labels) -> scalar`` or ``-> (scalar, metrics)`` where
``outputs`` is whatever the model returns (an array, a tuple, a dict of heads) and ``labels`` is
whatever the batch's labels are (an array or a pytree); ``metrics`` is a dict of scalars that
the train step reports beside ``"loss"``. Shape and dtype mistakes are caught when the step is
traced (static checks), so they raise before any work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from xaijax import _validation, errors
from xaijax.typing import PyTree

#: ``loss(outputs, labels) -> scalar`` or ``-> (scalar, {name: scalar})``.
Loss = Callable[[PyTree, PyTree], Any]


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _check_logits_labels(logits: Any, labels: Any, loss: str) -> None:
    if not hasattr(logits, "shape") or not jnp.issubdtype(logits.dtype, jnp.floating):
        raise errors.InputDTypeError(
            f"`{loss}` needs floating logits, got {type(logits).__name__} "
            f"{getattr(logits, 'dtype', '')}: give it the model's logits array (pick the head "
            "first when the model returns several, e.g. with `multitask`)."
        )
    if logits.ndim < 1:
        raise errors.InputShapeError(f"`{loss}` needs logits with a class axis, got a scalar.")
    if not hasattr(labels, "shape"):
        raise errors.InputDTypeError(
            f"`{loss}` needs an array of labels, got {type(labels).__name__}: pick the labels "
            "of this head first (e.g. with `multitask`)."
        )


def _check_class_labels(logits: Any, labels: Any, loss: str) -> None:
    _check_logits_labels(logits, labels, loss)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise errors.InputDTypeError(
            f"`{loss}` needs integer class indices as labels, got dtype {labels.dtype}: pass "
            "`labels.astype(np.int32)` (for multi-label 0/1 targets use "
            "`sigmoid_binary_cross_entropy`)."
        )
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise errors.BatchMismatchError(
            f"`{loss}`: logits {_shape(logits.shape)} need labels of shape "
            f"{_shape(logits.shape[:-1])} (one class index per row), got {_shape(labels.shape)}."
        )


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``logits [B, C]`` against integer ``labels [B]``.

    .. math:: L = -\\frac{1}{B} \\sum_b \\log \\operatorname{softmax}(z_b)_{y_b}

    Any leading shape works (``logits [..., C]``, ``labels [...]``); the mean is over all of it.

    Args:
      logits: ``[B, C]`` floating class scores.
      labels: ``[B]`` integer class indices in ``[0, C)``. Concrete labels are checked
        (:class:`~xaijax.errors.TargetOutOfRangeError`); under ``jax.jit`` they are traced and
        cannot be checked, and an index out of range gives NaN there (``train`` checks the
        range before it starts).

    Returns:
      The mean loss, a float scalar.

    Raises:
      InputDTypeError: non-floating logits or non-integer labels (raised at trace time).
      BatchMismatchError: ``labels.shape != logits.shape[:-1]``.
      TargetOutOfRangeError: concrete labels outside ``[0, C)`` (not checked under jit).

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)  # log 4
      1.3863
    """
    _check_class_labels(logits, labels, "cross_entropy")
    # Concrete labels only (one boolean back from the device); under jit the range is the
    # caller's to check (``train`` checks it before it starts).
    _validation.check_target_in_range(labels, logits.shape[-1], "labels")
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def classification_loss(
    logits: jax.Array, labels: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """:func:`cross_entropy`, reporting top-1 accuracy as a metric: the default training loss.

    Args:
      logits: ``[B, C]`` floating class scores.
      labels: ``[B]`` integer class indices.

    Returns:
      ``(loss, {"accuracy": fraction of rows whose arg-max is the label})``.

    Example:
      >>> import jax.numpy as jnp
      >>> loss, metrics = classification_loss(jnp.eye(3), jnp.array([0, 1, 0]))
      >>> round(float(metrics["accuracy"]), 3)
      0.667
    """
    loss = cross_entropy(logits, labels)
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return loss, {"accuracy": accuracy}


def sigmoid_binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean sigmoid binary cross-entropy, for multi-label targets such as attributes.

    .. math:: L = -\\frac{1}{BA} \\sum_{b,a} y_{ba} \\log \\sigma(z_{ba})
              + (1 - y_{ba}) \\log (1 - \\sigma(z_{ba}))

    Args:
      logits: ``[B, A]`` floating scores, one independent binary decision per column.
      labels: ``[B, A]`` targets in ``[0, 1]`` (bool, 0/1 ints or soft float targets).

    Returns:
      The mean over every entry, a float scalar.

    Raises:
      InputDTypeError: non-floating logits (raised at trace time).
      BatchMismatchError: ``labels.shape != logits.shape``.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(sigmoid_binary_cross_entropy(jnp.zeros((2, 3)), jnp.ones((2, 3)))), 4)
      0.6931
    """
    _check_logits_labels(logits, labels, "sigmoid_binary_cross_entropy")
    if tuple(labels.shape) != tuple(logits.shape):
        raise errors.BatchMismatchError(
            f"`sigmoid_binary_cross_entropy`: logits {_shape(logits.shape)} need labels of the "
            f"same shape (one 0/1 target per logit), got {_shape(labels.shape)}."
        )
    labels = labels.astype(logits.dtype)
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()


def split_loss_value(value: Any, loss: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``loss(...)``'s result as ``(scalar, metrics)``; named error for anything else."""
    metrics: Any = {}
    if isinstance(value, tuple) and len(value) == 2:
        value, metrics = value
    name = getattr(loss, "__qualname__", type(loss).__name__)
    if (
        not hasattr(value, "shape")
        or value.shape != ()
        or not jnp.issubdtype(value.dtype, jnp.floating)
    ):
        raise errors.InvalidArgumentError(
            f"The loss {name} must return a float scalar (or `(scalar, dict_of_metrics)`), got "
            f"{getattr(value, 'dtype', type(value).__name__)}{list(getattr(value, 'shape', []))}: "
            "reduce it with `.mean()`."
        )
    if not isinstance(metrics, Mapping):
        raise errors.InvalidArgumentError(
            f"The loss {name} returned `(loss, {type(metrics).__name__})`: the second item must "
            "be a dict of scalar metrics."
        )
    return value, dict(metrics)


@dataclasses.dataclass(frozen=True)
class MultiTaskLoss:
    """A weighted sum of losses, each over one head of the outputs and the labels of that head.

    Built by :func:`multitask`; callable as ``loss(outputs, labels) -> (total, metrics)``. It is
    a value that exposes what it was built from (``terms``), so checks can read each head's loss.

    Attributes:
      terms: ``((head, loss, weight), ...)`` in the order given.
    """

    terms: tuple[tuple[Hashable, Loss, float], ...]

    def __call__(self, outputs: PyTree, labels: PyTree) -> tuple[jax.Array, dict[str, jax.Array]]:
        total = None
        metrics: dict[str, jax.Array] = {}
        for head, loss, weight in self.terms:
            value, aux = split_loss_value(
                loss(_pick(outputs, head, "outputs"), _pick(labels, head, "labels")), loss
            )
            metrics[f"{head}/loss"] = value
            metrics.update({f"{head}/{k}": v for k, v in aux.items()})
            total = weight * value if total is None else total + weight * value
        return total, metrics


def _pick(tree: Any, head: Hashable, what: str) -> Any:
    try:
        return tree[head]
    except (KeyError, IndexError, TypeError) as e:
        keys = sorted(map(repr, tree)) if isinstance(tree, Mapping) else type(tree).__name__
        raise errors.InvalidArgumentError(
            f"`multitask` has a term for head {head!r}, but the {what} have no such entry "
            f"({keys}): return a dict from the model and give the labels as a dict with the "
            "same keys."
        ) from e


def multitask(terms: Mapping[Hashable, Loss | tuple[Loss, float]]) -> MultiTaskLoss:
    """A multi-task loss: ``sum_k weight_k * loss_k(outputs[k], labels[k])``.

    Each term picks its head from the model's outputs and its labels from the batch's labels by
    the same key (dict keys, or positions for tuple outputs). The step reports the total as
    ``"loss"`` and each term, unweighted, as ``"<key>/loss"`` (plus the term's own metrics as
    ``"<key>/<name>"``).

    Args:
      terms: ``{key: loss}`` (weight 1) or ``{key: (loss, weight)}``.

    Returns:
      A :class:`MultiTaskLoss`, usable as ``loss=`` of :func:`make_train_step` and
      :func:`train`.

    Example:
      EAT's objective, class cross-entropy plus 0.5 x attribute BCE, over a model returning
      ``{"class": [B, C], "attributes": [B, A]}``:

      >>> import jax.numpy as jnp
      >>> loss = multitask({"class": (cross_entropy, 1.0),
      ...                   "attributes": (sigmoid_binary_cross_entropy, 0.5)})
      >>> outputs = {"class": jnp.zeros((2, 4)), "attributes": jnp.zeros((2, 3))}
      >>> labels = {"class": jnp.array([0, 1]), "attributes": jnp.ones((2, 3))}
      >>> total, metrics = loss(outputs, labels)
      >>> round(float(total), 4), sorted(metrics)  # log 4 + 0.5 log 2
      (1.7329, ['attributes/loss', 'class/loss'])

    References:
      Kendall, Gal and Cipolla, "Multi-task learning using uncertainty to weigh losses for
      scene geometry and semantics", CVPR 2018 (fixed weights are its baseline).
    """
    if not isinstance(terms, Mapping) or not terms:
        raise errors.InvalidArgumentError(
            f"`multitask` needs a non-empty dict {{head: loss or (loss, weight)}}, got {terms!r}."
        )
    out = []
    for head, term in terms.items():
        loss, weight = term if isinstance(term, tuple) else (term, 1.0)
        if not callable(loss):
            raise errors.InvalidArgumentError(
                f"`multitask` term {head!r}: {loss!r} is not a loss function "
                "`loss(outputs, labels)`."
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
            raise errors.InvalidArgumentError(
                f"`multitask` term {head!r}: the weight must be a non-negative number, got "
                f"{weight!r}."
            )
        out.append((head, loss, float(weight)))
    return MultiTaskLoss(tuple(out))


def describe(loss: Loss) -> str:
    """A stable, readable name of a loss (used in checkpoint configs and cache keys)."""
    if isinstance(loss, MultiTaskLoss):
        inner = ", ".join(f"{h!r}: ({describe(fn)}, {w!r})" for h, fn, w in loss.terms)
        return f"multitask({{{inner}}})"
    module = getattr(loss, "__module__", None) or type(loss).__module__
    name = getattr(loss, "__qualname__", None) or type(loss).__qualname__
    return f"{module}.{name}"
