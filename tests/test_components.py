"""The one n-D connected-components implementation (xaijax._components) against scipy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from xaijax import _components, errors


def _structure(ndim: int, connectivity: str) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, ndim if connectivity == "full" else 1)


def _reference(values: np.ndarray, connectivity: str) -> np.ndarray:
    """Per element, the smallest flat index of its component (scipy labels each value apart)."""
    out = np.full(values.shape, -1, np.int64)
    flat_index = np.arange(values.size).reshape(values.shape)
    for value in np.unique(values):
        lab, k = ndimage.label(values == value, structure=_structure(values.ndim, connectivity))
        for c in range(1, k + 1):
            out[lab == c] = flat_index[lab == c].min()
    assert np.all(out >= 0)
    return out


def _serpentine(shape: tuple[int, ...]) -> np.ndarray:
    """A path winding through every row (of every plane): the worst case for propagation."""
    fg = np.zeros(shape, bool)
    planes = fg.reshape(-1, *shape[-2:])
    h, w = shape[-2:]
    for z, plane in enumerate(planes):
        plane[::2] = True
        for r in range(1, h, 2):
            plane[r, w - 1 if (r // 2 + z) % 2 == 0 else 0] = True
    if len(shape) == 3:  # planes joined through one pixel each
        planes[1:, 0, 0] = False
        planes[1:, h - 1, w - 1] = False
        planes[1:, 0, 0] = planes[1:, 0, 1] = True
    return fg


@pytest.mark.parametrize("connectivity", ["face", "full"])
@pytest.mark.parametrize("shape", [(13, 15), (3, 9, 9)], ids=["2d", "3d"])
def test_components_match_scipy(shape, connectivity):
    """Random maps of 2 and 5 values, an empty, a full and a serpentine map, 2-D and 3-D, both
    connectivities: the labels of equal-value components, and of the foreground (``map > 0``)
    with its largest component, equal scipy's (one compiled program per case)."""
    rng = np.random.default_rng(len(shape))
    batch = np.stack(
        [
            *(rng.integers(0, 2, size=shape) for _ in range(3)),
            *(rng.integers(0, 5, size=shape) for _ in range(2)),
            np.zeros(shape, int),
            np.ones(shape, int),
            _serpentine(shape),
        ]
    ).astype(np.int32)

    def one(v):
        return (
            _components.label_components(v, connectivity),
            _components.label_foreground(v > 0, connectivity),
            _components.largest_foreground(v > 0, connectivity),
        )

    got = [np.asarray(a) for a in jax.jit(jax.vmap(one))(batch)]
    n = int(np.prod(shape))
    for v, labels, fg_labels, largest in zip(batch, *got, strict=True):
        np.testing.assert_array_equal(labels, _reference(v, connectivity))
        m = v > 0
        np.testing.assert_array_equal(fg_labels, np.where(m, _reference(m, connectivity), n))
        ref, k = ndimage.label(m, structure=_structure(m.ndim, connectivity))
        if k == 0:
            assert not largest.any()
            continue
        sizes = np.bincount(ref.ravel(), minlength=k + 1)[1:]
        first = [np.flatnonzero(ref.ravel() == c + 1).min() for c in range(k)]
        best = min(range(k), key=lambda c: (-sizes[c], first[c]))  # ties: first in row-major
        np.testing.assert_array_equal(largest, ref == best + 1)
    assert ndimage.label(batch[-1])[1] == 1  # the serpentine is one component


def test_unknown_connectivity_is_a_named_error():
    with pytest.raises(errors.InvalidArgumentError, match="connectivity"):
        _components.label_components(jnp.zeros((2, 2), jnp.int32), "diagonal")
