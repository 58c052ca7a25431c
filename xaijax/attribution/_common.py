"""Shared plumbing of the attribution family: argument checks, targets, chunked accumulation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _devices
from xaijax import _validation as v
from xaijax.typing import ApplyFn, Array


def shape_key(tree) -> tuple:
    """A hashable key from the structure, shapes and dtypes of a pytree."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (treedef, tuple((tuple(np.shape(a)), str(getattr(a, "dtype", type(a)))) for a in leaves))


class ModelSpec:
    """Caches ``jax.eval_shape`` of a model by input shapes (validates logits and targets)."""

    def __init__(self, apply_fn: ApplyFn):
        self.apply_fn = apply_fn
        self._cache: dict[tuple, Any] = {}

    def logits_shape(self, params, x) -> tuple[int, ...]:
        key = shape_key((params, x))
        if key not in self._cache:
            out = jax.eval_shape(self.apply_fn, params, x)
            self._cache[key] = tuple(out.shape)
        return self._cache[key]


def check_inputs(
    spec: ModelSpec | None,
    params,
    x,
    target,
    *,
    allow_integer: bool = False,
) -> tuple[Array, Array | None]:
    """Validates ``x`` (batch, float, finite) and ``target`` against the model's logits."""
    if allow_integer and hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.integer):
        if x.ndim < 1:
            v.check_floating(x, "x", min_rank=1)
        x = jnp.asarray(x)
    else:
        x = v.check_floating(x, "x", min_rank=2, layout="[B, ...] (a batch)")
    target = v.check_target(target, x.shape[0])
    if spec is not None:
        shape = spec.logits_shape(params, x)
        v.check_logits(jax.ShapeDtypeStruct(shape, jnp.float32), x.shape[0])
        v.check_target_in_range(target, shape[1])
    # On a multi-core CPU host, spread the batch over the CPU devices (xaijax._devices).
    x, target = _devices.place_batch(params, x, target)
    return x, target


def resolve_target(logits: Array, target: Array | None) -> Array:
    """``target`` or, when ``None``, the arg-max class of ``logits`` ([B] int32)."""
    if target is None:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return target


def predicted_class(apply_fn: ApplyFn, params, x) -> Array:
    """The arg-max class of ``apply_fn(params, x)``."""
    return jnp.argmax(apply_fn(params, x), axis=-1).astype(jnp.int32)


def select(logits: Array, target: Array) -> Array:
    """``logits[b, target[b]]`` for each example: ``[B]``."""
    return jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]


def input_gradient(apply_fn: ApplyFn, params, x: Array, target: Array | None) -> Array:
    """d logits[b, target[b]] / d x[b] for the whole batch with one forward and one backward pass.

    Examples must be independent in the model (no batch statistics), which is what makes the
    summed-logit gradient equal to the per-example gradients.
    """
    logits, pullback = jax.vjp(lambda xx: apply_fn(params, xx), x)
    t = resolve_target(logits, target)
    cotangent = jax.nn.one_hot(t, logits.shape[-1], dtype=logits.dtype)
    (grad,) = pullback(cotangent)
    return grad


def broadcast_like(values: Array, x: Array) -> Array:
    """Reshapes per-example ``[B]`` values to ``[B, 1, ..., 1]`` so they broadcast against ``x``."""
    return values.reshape(values.shape + (1,) * (x.ndim - values.ndim))


def chunked_sum(
    chunk_fn: Callable[..., Any],
    num_chunks: int,
    args: tuple,
    *,
    jitted_chunk: Callable[..., Any] | None = None,
) -> Any:
    """``sum_i chunk_fn(i, *args)`` over ``i < num_chunks``, with memory bounded by one chunk.

    Eagerly (concrete inputs) it runs a Python loop over one jitted chunk function, which
    compiles once and was measured fastest on CPU (``../shared/env-notes.md`` section 6: a
    ``lax.map``/``scan`` over the same chunks ran ~4x slower there). Under an outer
    ``jit``/``vmap`` (traced inputs) it uses ``lax.fori_loop``, which keeps memory bounded
    inside one program.
    """
    concrete = all(v.is_concrete(a) for a in jax.tree_util.tree_leaves(args))
    if num_chunks == 1:
        return (jitted_chunk or chunk_fn)(jnp.int32(0), *args) if concrete else chunk_fn(0, *args)
    if concrete and jitted_chunk is not None:
        total = jitted_chunk(jnp.int32(0), *args)
        for i in range(1, num_chunks):
            total = _tree_add(total, jitted_chunk(jnp.int32(i), *args))
        return total
    first = chunk_fn(jnp.int32(0), *args)

    def body(i, acc):
        return jax.tree_util.tree_map(jnp.add, acc, chunk_fn(i, *args))

    return jax.lax.fori_loop(1, num_chunks, body, first)


@jax.jit
def _tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def attach(explain: Callable, **attrs) -> Callable:
    """Records what an explainer was built from (``explain.apply_fn``...), for wrappers.

    The returned explainer also brings a batch that :func:`check_inputs` spread over the CPU
    devices back to one device, so what follows runs as plain single-device JAX.
    """

    @functools.wraps(explain)
    def explainer(*args, **kwargs):
        return _devices.collect(explain(*args, **kwargs))

    for k, val in attrs.items():
        setattr(explainer, k, val)
    return explainer


def wraps(inner: Callable) -> Callable:
    return functools.wraps(inner, assigned=("__module__", "__name__", "__qualname__", "__doc__"))
