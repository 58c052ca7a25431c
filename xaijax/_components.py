"""Connected components on a regular n-D grid, in-graph (private; jittable and vmappable).

One implementation for the two callers: SLIC's connectivity enforcement labels the components
of a cluster map (``xaijax.segmentation``), and ``box_from_map`` keeps the largest foreground
blob of a thresholded saliency map (``xaijax.metrics``).

A component is a maximal set of elements with equal value, linked through ``"face"`` neighbours
(differing by one along one axis: 4-connectivity in 2-D, 6 in 3-D) or ``"full"`` neighbours
(any of the ``3^d - 1`` surrounding elements: 8 in 2-D, 26 in 3-D); it is labelled by the
smallest row-major flat index of its elements (what ``scipy.ndimage.label`` numbers in order of
first appearance). Every element starts with its own index and, until nothing changes:

* takes the minimum label over each run of equal values along every axis (a forward and a
  backward ``lax.scan`` per axis: a straight run of any length is settled in one sweep; on CPU
  an order of magnitude faster than an associative scan or ``cummin``);
* for ``"full"`` connectivity, the minimum over its diagonal neighbours of equal value;
* then the label of its label (pointer jumping: the label is the index of an element of the same
  component with a smaller or equal label).

Labels only decrease and stay indices of elements of the same component, so the loop stops at
the component minimum. Blob-like components converge in a few sweeps; a serpentine path needs
one sweep per turn at most. Measured on a loaded 2-core CPU (interleaved medians): foreground
labelling of 32 thresholded 224 x 224 maps 186 ms (4-connectivity) and 289 ms (8), against
1640 ms and 1660 ms for the neighbour-minimum propagation ``box_from_map`` used before; SLIC's
cluster maps as fast as before (23 ms for 8 images of 224 x 224), same labels everywhere.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from xaijax import errors
from xaijax.typing import Array

CONNECTIVITIES = ("face", "full")


def _run_min(lab: Array, values: Array, axis: int) -> Array:
    """Minimum of ``lab`` over every run of equal ``values`` along ``axis``."""
    lab_t = jnp.moveaxis(lab, axis, 0)
    val_t = jnp.moveaxis(values, axis, 0)

    def step(carry, xs):
        prev_lab, prev_val = carry
        value, v = xs
        value = jnp.where(v == prev_val, jnp.minimum(value, prev_lab), value)
        return (value, v), value

    # The first element of a sweep has no predecessor: the carry starts with a value it does
    # not have (its own value plus one, so no sentinel value is reserved).
    zeros = jnp.zeros(lab_t.shape[1:], lab.dtype)
    _, fwd = jax.lax.scan(step, (zeros, val_t[0] + 1), (lab_t, val_t))
    _, bwd = jax.lax.scan(step, (zeros, val_t[-1] + 1), (fwd, val_t), reverse=True)
    return jnp.moveaxis(bwd, 0, axis)


def _shifted(a: Array, offset: tuple[int, ...], fill) -> Array:
    """``a[i + offset]`` at every ``i`` (``fill`` outside the array)."""
    pad = [(max(-o, 0), max(o, 0)) for o in offset]
    padded = jnp.pad(a, pad, constant_values=fill)
    starts = [max(o, 0) for o in offset]
    return jax.lax.slice(padded, starts, [s + n for s, n in zip(starts, a.shape, strict=True)])


def label_components(values: Array, connectivity: str = "face") -> Array:
    """Labels the connected components of equal values of one n-D array.

    Args:
      values: ``[*spatial]`` integer or boolean array (one example; ``vmap`` for a batch).
      connectivity: ``"face"`` (4 in 2-D, 6 in 3-D) or ``"full"`` (8 in 2-D, 26 in 3-D).

    Returns:
      ``[*spatial]`` int32: each element gets the smallest row-major flat index of its component.

    Example:
      >>> import jax.numpy as jnp
      >>> label_components(jnp.array([[1, 1, 0], [0, 1, 0], [2, 0, 0]])).tolist()
      [[0, 0, 2], [3, 0, 2], [6, 2, 2]]
    """
    if connectivity not in CONNECTIVITIES:
        raise errors.InvalidArgumentError(
            f"`connectivity` must be one of {CONNECTIVITIES}, got {connectivity!r}."
        )
    values = values.astype(jnp.int32)
    n = values.size
    shape = values.shape
    index = jnp.arange(n, dtype=jnp.int32).reshape(shape)
    neighbours = None
    if connectivity == "full":
        # Flat index of every diagonal neighbour of equal value (n: none), computed once.
        diagonals = [
            o for o in itertools.product((-1, 0, 1), repeat=values.ndim) if sum(map(abs, o)) >= 2
        ]
        neighbours = jnp.stack(
            [
                jnp.where(_shifted(values, o, 0) == values, _shifted(index, o, n), n).reshape(-1)
                for o in diagonals
            ]
        )  # [D, n]

    def sweep(lab):
        for axis in range(values.ndim):
            lab = _run_min(lab, values, axis)
        flat = lab.reshape(-1)
        if neighbours is not None:
            padded = jnp.concatenate([flat, jnp.full((1,), n, flat.dtype)])
            flat = jnp.minimum(flat, jnp.min(padded[neighbours], axis=0))
        return flat[flat].reshape(shape)  # pointer jumping

    def body(state):
        lab, _ = state
        new = sweep(lab)
        return new, jnp.any(new != lab)

    lab, _ = jax.lax.while_loop(lambda state: state[1], body, (index, jnp.array(True)))
    return lab


def label_foreground(mask: Array, connectivity: str = "face") -> Array:
    """Labels the connected components of the True elements of one boolean n-D array.

    Args:
      mask: ``[*spatial]`` boolean (nonzero: foreground).
      connectivity: ``"face"`` or ``"full"`` (see :func:`label_components`).

    Returns:
      ``[*spatial]`` int32: each foreground element gets the smallest row-major flat index of its
      component; background elements get ``mask.size``.

    Example:
      >>> import jax.numpy as jnp
      >>> label_foreground(jnp.array([[1, 0, 1], [1, 0, 0]], bool)).tolist()
      [[0, 6, 2], [0, 6, 6]]
    """
    mask = mask.astype(bool)
    n = mask.size
    # Background elements get distinct values (-1 - index): each is its own component, settled
    # at once, so only the foreground needs sweeps.
    index = jnp.arange(n, dtype=jnp.int32).reshape(mask.shape)
    values = jnp.where(mask, 0, -1 - index)
    return jnp.where(mask, label_components(values, connectivity), n)


def largest_foreground(mask: Array, connectivity: str = "face") -> Array:
    """Boolean mask of the largest connected component of ``mask`` (empty if none); ties go to
    the component whose first element comes first in row-major order."""
    n = mask.size
    labels = label_foreground(mask, connectivity).reshape(n)
    sizes = jnp.zeros(n + 1, jnp.int32).at[labels].add(1)[:n]
    best = jnp.where(sizes == sizes.max(), jnp.arange(n, dtype=jnp.int32), n).min()
    return ((labels == best) & mask.reshape(n).astype(bool)).reshape(mask.shape)
