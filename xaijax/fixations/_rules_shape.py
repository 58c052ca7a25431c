"""Backtracking rules of index bookkeeping: reshapes, transposes, broadcasts, slices, pads,
concatenations and gathers move the mask back to where each element came from.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from xaijax.fixations import _masks as mk
from xaijax.fixations._registry import Equation, _register, _register_points
from xaijax.typing import Array


@_register_points("reshape", "squeeze")
def reshape(eqn: Equation, out_masks: tuple[mk.Mask, ...]) -> list[mk.Mask | None]:
    """Reshapes move no value: the mask is reshaped back."""
    (mask,) = out_masks
    shape = tuple(jnp.shape(eqn.in_values[0]))
    if isinstance(mask, mk.Points):  # row-major flat indices do not change
        return mk.only_first(eqn, mk.Points(mask.index, mask.valid, shape))
    return mk.only_first(eqn, mask.reshape(shape))


@_register("transpose")
def transpose(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The mask is transposed back."""
    inv = tuple(int(i) for i in np.argsort(eqn.params["permutation"]))
    return mk.only_first(eqn, jnp.transpose(out_masks[0], inv))


@_register("rev")
def rev(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The mask is reversed back."""
    return mk.only_first(eqn, lax.rev(out_masks[0], tuple(eqn.params["dimensions"])))


@_register("broadcast_in_dim")
def broadcast_in_dim(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """An operand element is discriminative if any of its copies is."""
    (mask,) = out_masks
    shape = jnp.shape(eqn.in_values[0])
    dims = tuple(eqn.params["broadcast_dimensions"])
    mask = jnp.any(mask, axis=tuple(d for d in range(mask.ndim) if d not in dims))
    return mk.only_first(eqn, mk.unbroadcast(mask, shape))


@_register("concatenate")
def concatenate(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """Routes by range along the concatenated axis (Inception branches, DenseNet features)."""
    (mask,) = out_masks
    axis = eqn.params["dimension"]
    sizes = [jnp.shape(v)[axis] for v in eqn.in_values]
    bounds = np.cumsum([0] + sizes)
    parts = [
        lax.slice_in_dim(mask, int(bounds[i]), int(bounds[i + 1]), axis=axis)
        for i in range(len(sizes))
    ]
    return mk.to_dependent(eqn, parts)


@_register("split")
def split(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The pieces' masks are concatenated back."""
    return mk.only_first(eqn, jnp.concatenate(out_masks, axis=eqn.params["axis"]))


@_register("slice")
def slice_(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The mask is placed back at the sliced positions."""
    (mask,) = out_masks
    shape = jnp.shape(eqn.in_values[0])
    start = eqn.params["start_indices"]
    strides = eqn.params["strides"] or (1,) * len(shape)
    config = []
    for n, s0, st, o in zip(shape, start, strides, mask.shape, strict=True):
        covered = s0 + (o - 1) * st + 1 if o > 0 else s0
        config.append((int(s0), int(n - covered), int(st - 1)))
    return mk.only_first(eqn, lax.pad(mask, jnp.array(False), config))


@_register("pad")
def pad(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The padding is cut away again (padding values are constants, not followed)."""
    (mask,) = out_masks
    config = eqn.params["padding_config"]
    unpad = [(-int(lo), -int(hi), 0) for lo, hi, _ in config]
    m = lax.pad(mask, jnp.array(False), unpad)
    m = lax.slice(m, (0,) * m.ndim, m.shape, tuple(int(i) + 1 for _, _, i in config))
    return mk.to_dependent(eqn, [m, None])


@_register("dynamic_slice")
def dynamic_slice(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """The mask is written back at the (clamped) start indices."""
    operand, *starts = eqn.in_values
    m = lax.dynamic_update_slice(jnp.zeros(jnp.shape(operand), bool), out_masks[0], starts)
    return mk.only_first(eqn, m)


@_register("dynamic_update_slice")
def dynamic_update_slice(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """mk.Points inside the update follow the update, the others the operand."""
    (mask,) = out_masks
    operand, update, *starts = eqn.in_values
    upd = jnp.shape(update)
    into_operand = lax.dynamic_update_slice(mask, jnp.zeros(upd, bool), starts)
    into_update = lax.dynamic_slice(mask, starts, upd)
    return mk.to_dependent(eqn, [into_operand, into_update] + [None] * len(starts))


@_register("gather")
def gather(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
    """Embedding lookups and fancy indexing.

    Into the operand (gathered activations): the mask is scattered back to where each element
    was read. Into the indices (token ids looking up an embedding table): an index is
    discriminative if any element of the slice it selected is.
    """
    (mask,) = out_masks
    operand, indices = eqn.in_values
    dn = eqn.params["dimension_numbers"]
    into_operand = into_indices = None
    if eqn.dependent[0]:
        scatter_dn = lax.ScatterDimensionNumbers(
            update_window_dims=dn.offset_dims,
            inserted_window_dims=dn.collapsed_slice_dims,
            scatter_dims_to_operand_dims=dn.start_index_map,
            operand_batching_dims=dn.operand_batching_dims,
            scatter_indices_batching_dims=dn.start_indices_batching_dims,
        )
        hits = lax.scatter_add(
            jnp.zeros(jnp.shape(operand), jnp.int32),
            indices,
            mask.astype(jnp.int32),
            scatter_dn,
            mode=eqn.params["mode"],
        )
        into_operand = hits > 0
    if eqn.dependent[1]:
        per_index = jnp.any(mask, axis=tuple(dn.offset_dims))
        into_indices = jnp.broadcast_to(per_index[..., None], jnp.shape(indices))
    return mk.to_dependent(eqn, [into_operand, into_indices])
