"""Value checks of training data, computed on the device: one scalar comes back, never a batch.

The rules come from the loss (:func:`label_rules`): :func:`~xaijax.training.cross_entropy`
labels must be class indices in ``[0, C)`` where ``C`` is the size of the head's last axis, and
:func:`~xaijax.training.sigmoid_binary_cross_entropy` labels must lie in ``[0, 1]``; floating
inputs must be finite. :func:`flags` folds every check into one int32 bit mask (bit 0: the
input, bit ``i + 1``: rule ``i``), so a check costs one jitted reduction and one scalar transfer.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import errors
from xaijax.training._losses import (
    Loss,
    MultiTaskLoss,
    classification_loss,
    cross_entropy,
    sigmoid_binary_cross_entropy,
)
from xaijax.typing import PyTree

_CLASS_LOSSES = (cross_entropy, classification_loss)
_BINARY_LOSSES = (sigmoid_binary_cross_entropy,)


class Rule(NamedTuple):
    """A value check of one labels array: ``kind`` ``"class"`` (``[0, num_classes)``) or
    ``"binary"`` (``[0, 1]``), at ``path`` inside the labels pytree."""

    path: tuple[Hashable, ...]
    kind: str
    num_classes: int


def label_rules(loss: Loss, outputs: PyTree, path: tuple[Hashable, ...] = ()) -> list[Rule]:
    """The label checks ``loss`` implies, given the (abstract) model outputs."""
    if isinstance(loss, MultiTaskLoss):
        rules = []
        for head, fn, _ in loss.terms:
            rules += label_rules(fn, outputs[head], (*path, head))
        return rules
    if any(loss is f for f in _CLASS_LOSSES):
        return [Rule(path, "class", int(outputs.shape[-1]))]
    if any(loss is f for f in _BINARY_LOSSES):
        return [Rule(path, "binary", 0)]
    return []


def pick(labels: PyTree, path: Sequence[Hashable]) -> Any:
    for p in path:
        labels = labels[p]
    return labels


@functools.partial(jax.jit, static_argnames=("rules",))
def flags(x: PyTree, labels: tuple, previous: jax.Array, *, rules: tuple[Rule, ...]) -> jax.Array:
    """``previous | bits``: bit 0 set when a floating leaf of ``x`` is not finite, bit ``i + 1``
    when ``labels[i]`` breaks ``rules[i]``."""
    code = previous
    finite = [
        jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(x) if jnp.issubdtype(a.dtype, jnp.inexact)
    ]
    if finite:
        code = code | jnp.where(jnp.stack(finite).all(), 0, 1)
    for i, (y, rule) in enumerate(zip(labels, rules, strict=True)):
        if rule.kind == "class":
            bad = jnp.any((y < 0) | (y >= rule.num_classes))
        else:
            bad = ~jnp.all((y >= 0) & (y <= 1))  # NaN fails too
        code = code | jnp.where(bad, 1 << (i + 1), 0)
    return code.astype(jnp.int32)


def _where(path: tuple[Hashable, ...], label_names: dict[tuple, str]) -> str:
    return label_names.get(path, "/".join(map(str, path)) or "labels")


def raise_for(
    code: int,
    rules: Sequence[Rule],
    *,
    input_name: str,
    label_names: dict[tuple, str],
    where: str,
) -> None:
    """Raises the named error for the first bit set in ``code`` (nothing when it is 0)."""
    if not code:
        return
    if code & 1:
        raise errors.NonFiniteInputError(
            f"`{input_name}` holds NaN or Inf values ({where}); training on them makes the "
            "loss NaN. Find them with `np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1))`"
            " and drop or repair those examples."
        )
    for i, rule in enumerate(rules):
        if not code & (1 << (i + 1)):
            continue
        name = _where(rule.path, label_names)
        if rule.kind == "class":
            c = rule.num_classes
            raise errors.TargetOutOfRangeError(
                f"Labels `{name}` hold class indices outside [0, {c}) ({where}), but the model's "
                f"head has {c} outputs: find them with `np.flatnonzero((y < 0) | (y >= {c}))`, "
                "then fix the labels or build the model with more classes."
            )
        raise errors.TargetOutOfRangeError(
            f"Labels `{name}` hold values outside [0, 1] or NaN ({where}), but "
            "`sigmoid_binary_cross_entropy` needs binary (or soft) targets in [0, 1]: map them "
            "there first."
        )


def check_arrays(
    x: Any,
    labels: PyTree,
    rules: Sequence[Rule],
    *,
    input_name: str,
    label_names: dict[tuple, str],
    chunk: int = 1024,
) -> None:
    """Checks a whole in-memory dataset (NumPy or device arrays) before training.

    Chunks of ``chunk`` examples (the last one filled up by repeating its last row, so there is
    one compilation) are reduced on the device into one int32 bit mask, and that scalar is the
    only thing brought back (an explicit ``jax.device_get``).
    """
    rules = tuple(rules)
    arrays = [x, *(pick(labels, r.path) for r in rules)]
    n = len(x)
    size = min(chunk, n)
    code = jnp.zeros((), jnp.int32)
    for start in range(0, n, size):
        if start + size <= n:
            parts = [a[start : start + size] for a in arrays]
        else:
            idx = np.minimum(np.arange(start, start + size), n - 1)
            parts = [a[idx] for a in arrays]
        code = flags(parts[0], tuple(parts[1:]), code, rules=rules)
    raise_for(
        int(jax.device_get(code)),
        rules,
        input_name=input_name,
        label_names=label_names,
        where="checked before training",
    )
