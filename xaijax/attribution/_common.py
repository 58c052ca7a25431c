"""Shared plumbing of the attribution family: input gradients, targets, chunked accumulation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from xaijax import _validation as v
from xaijax._model import Model
from xaijax.typing import Array


def input_gradient(model: Model, params, x: Array, target: Array | None) -> Array:
    """d score[b, target[b]] / d x[b] for the whole batch with one forward and one backward pass.

    ``score`` is the model's explained score (its logits by default). Examples must be
    independent in the model (no batch statistics), which is what makes the gradient of the
    summed scores equal to the per-example gradients. Where an example's scores are not finite
    its gradient is NaN (a finite gradient of a NaN score would be a plausible, wrong map).
    """
    scores, pullback = jax.vjp(lambda xx: model.scores(params, xx), x)
    t = resolve(scores, target)
    cotangent = jax.nn.one_hot(t, scores.shape[-1], dtype=scores.dtype)
    (grad,) = pullback(cotangent)
    finite = jnp.all(jnp.isfinite(scores), axis=-1)
    return jnp.where(broadcast_like(finite, grad), grad, jnp.nan)


def resolve(scores: Array, target: Array | None) -> Array:
    """``target`` or, when ``None``, the arg-max class of ``scores`` ([B] int32)."""
    if target is None:
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)
    return target


def select(scores: Array, target: Array) -> Array:
    """``scores[b, target[b]]`` for each example: ``[B]``."""
    return jnp.take_along_axis(scores, target[:, None], axis=1)[:, 0]


def broadcast_like(values: Array, x: Array) -> Array:
    """Reshapes per-example ``[B]`` values to ``[B, 1, ..., 1]`` so they broadcast against ``x``."""
    return values.reshape(values.shape + (1,) * (x.ndim - values.ndim))


#: Under an outer ``jit``, up to this many chunks are unrolled into one straight-line program;
#: more go to a ``lax.fori_loop``. XLA:CPU ran IG's chunks 4-7x slower inside a while loop than
#: unrolled (zoo VGG, 32 images, 16 steps: 14.9 s looped vs 1.7 s unrolled for 4 chunks, 9.7 s
#: vs 2.5 s for 16 chunks; ``experiments/bench/ig_jit.py``).
UNROLL_LIMIT = 32


def chunked_sum(
    chunk_fn: Callable[..., Any],
    num_chunks: int,
    args: tuple,
    *,
    jitted_chunk: Callable[..., Any] | None = None,
) -> Any:
    """``sum_i chunk_fn(i, *args)`` over ``i < num_chunks``, with memory bounded by one chunk.

    Eagerly (concrete inputs) it runs a Python loop over one jitted chunk function, which
    compiles once. Under an outer ``jit``/``vmap`` (traced inputs) it unrolls up to
    :data:`UNROLL_LIMIT` chunks, each chunk's inputs tied to the running sum by an
    ``optimization_barrier`` so XLA runs them one after another (memory of one chunk), and
    uses ``lax.fori_loop`` beyond that.
    """
    concrete = all(v.is_concrete(a) for a in jax.tree_util.tree_leaves(args))
    if num_chunks == 1:
        return (jitted_chunk or chunk_fn)(jnp.int32(0), *args) if concrete else chunk_fn(0, *args)
    if concrete and jitted_chunk is not None:
        total = jitted_chunk(jnp.int32(0), *args)
        for i in range(1, num_chunks):
            total = _tree_add(total, jitted_chunk(jnp.int32(i), *args))
        return total
    if num_chunks <= UNROLL_LIMIT:
        leaves, treedef = jax.tree_util.tree_flatten(args)
        arrays = [i for i, a in enumerate(leaves) if isinstance(a, jax.Array)]
        total = chunk_fn(jnp.int32(0), *args)
        for i in range(1, num_chunks):
            tied, total = jax.lax.optimization_barrier(([leaves[j] for j in arrays], total))
            now = list(leaves)
            for j, a in zip(arrays, tied, strict=True):
                now[j] = a
            step = chunk_fn(jnp.int32(i), *jax.tree_util.tree_unflatten(treedef, now))
            total = jax.tree_util.tree_map(jnp.add, total, step)
        return total
    first = chunk_fn(jnp.int32(0), *args)

    def body(i, acc):
        return jax.tree_util.tree_map(jnp.add, acc, chunk_fn(i, *args))

    return jax.lax.fori_loop(1, num_chunks, body, first)


@jax.jit
def _tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)
