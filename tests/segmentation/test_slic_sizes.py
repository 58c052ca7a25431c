"""SLIC on degenerate input sizes: a named error before any work, or a sensible result."""

from __future__ import annotations

import numpy as np
import pytest

from xaijax import errors
from xaijax.segmentation import slic


@pytest.mark.parametrize(
    "shape",
    [(1, 0, 0, 3), (1, 0, 8, 3), (2, 8, 0, 3), (1, 0, 8, 8, 3), (1, 4, 8, 0, 3)],
)
def test_zero_sized_spatial_axes_raise_a_named_error(shape):
    with pytest.raises(errors.InputShapeError, match="spatial") as info:
        slic(4)(np.zeros(shape, np.float32))
    assert "[" + ", ".join(map(str, shape)) + "]" in str(info.value)


def test_zero_channels_raise_a_named_error():
    with pytest.raises(errors.InputShapeError, match="channel"):
        slic(4, convert_to_lab=False)(np.zeros((1, 8, 8, 0), np.float32))


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (2, 1, 1, 1), (1, 1, 1, 1, 3)])
def test_a_single_pixel_is_one_segment(shape):
    labels = np.asarray(slic(4)(np.random.default_rng(0).uniform(size=shape).astype(np.float32)))
    np.testing.assert_array_equal(labels, np.zeros(shape[:-1], np.int32))


def test_a_single_row_and_an_empty_batch():
    # A 1 x 12 strip of two colours: two contiguous segments split at the colour edge.
    x = np.zeros((1, 1, 12, 3), np.float32)
    x[..., 6:, 0] = 1.0
    labels = np.asarray(slic(2, compactness=0.1)(x))[0, 0]
    np.testing.assert_array_equal(labels, [0] * 6 + [1] * 6)
    assert slic(4)(np.zeros((0, 8, 8, 3), np.float32)).shape == (0, 8, 8)
