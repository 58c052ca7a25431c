"""Grid segments and segment maps: validation of external maps, relabelling, sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors
from xaijax.segmentation import (
    grid,
    num_segments,
    relabel_contiguous,
    segment_sizes,
    validate_segments,
)


def test_grid_labels_by_hand():
    labels = np.asarray(grid(2, 3)(np.zeros((2, 4, 6, 3), np.float32)))
    expected = np.array(
        [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5], [3, 3, 4, 4, 5, 5]]
    )
    np.testing.assert_array_equal(labels, np.stack([expected, expected]))
    # Uneven sizes: 5 rows into 2 cells -> rows 0-2 and 3-4 (y * 2 // 5).
    np.testing.assert_array_equal(
        np.asarray(grid(2, 1)(np.zeros((1, 5, 1, 1), np.float32)))[0, :, 0], [0, 0, 0, 1, 1]
    )


def test_grid_video_blocks_and_jit():
    segment = grid(2, 2, num_frames=2)
    x = jnp.zeros((1, 4, 2, 2, 3))
    labels = np.asarray(jax.jit(segment)(x))[0]
    np.testing.assert_array_equal(labels[:, 0, 0], [0, 0, 4, 4])
    np.testing.assert_array_equal(labels[3], [[4, 5], [6, 7]])
    with pytest.raises(errors.InvalidArgumentError, match="more cells"):
        grid(5)(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(errors.InvalidArgumentError, match="num_rows"):
        grid(0)


def test_validate_accepts_shared_and_batched_maps():
    x = np.zeros((2, 3, 4, 3), np.float32)
    shared = np.arange(12).reshape(3, 4) % 3
    out = validate_segments(shared, x)
    assert out.dtype == jnp.int32 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(np.asarray(out)[1], shared)
    video = np.zeros((1, 2, 3, 4, 3), np.float32)
    assert validate_segments(np.stack([shared, shared])[None], video).shape == (1, 2, 3, 4)
    # Non-contiguous labels are fine (empty labels are just empty segments).
    validate_segments(np.where(shared == 1, 7, shared), x, num_segments=8)


@pytest.mark.parametrize(
    "segments, kwargs, words",
    [
        (np.zeros((2, 3, 5), np.int32), {}, "shape [2, 3, 5]"),  # wrong shape
        (np.zeros((3, 3, 4), np.int32), {}, "one label per pixel"),  # wrong batch
        (np.arange(24.0).reshape(2, 3, 4) % 3, {}, "astype(jnp.int32)"),  # float labels
        (np.ones((2, 3, 4), bool), {}, "integer labels"),  # bool labels
        (np.arange(24).reshape(2, 3, 4) - 1, {}, "negative label"),
        (np.zeros((2, 3, 4), np.int32), {}, "1 segment"),  # one segment only
        (np.arange(24).reshape(2, 3, 4) % 5, {"num_segments": 4}, "num_segments"),
    ],
)
def test_validate_rejects_bad_maps_with_a_named_error(segments, kwargs, words):
    x = np.zeros((2, 3, 4, 3), np.float32)
    with pytest.raises(errors.SegmentMapError, match="segments") as info:
        validate_segments(segments, x, **kwargs)
    assert words in str(info.value)


def test_value_checks_are_skipped_under_jit():
    # Inside jit the labels are unknown: shape checks still run, value checks cannot.
    x = jnp.zeros((1, 2, 2, 3))
    out = jax.jit(lambda s: validate_segments(s, x))(jnp.zeros((1, 2, 2), jnp.int32))
    assert out.shape == (1, 2, 2)
    with pytest.raises(errors.SegmentMapError):
        jax.jit(lambda s: validate_segments(s, x))(jnp.zeros((1, 3, 2), jnp.int32))


def test_relabel_contiguous_raster_order_and_sizes():
    seg = np.array([[[7, 7, 2], [9, 2, 2]], [[1, 1, 1], [1, 1, 0]]])
    out = np.asarray(relabel_contiguous(seg))
    np.testing.assert_array_equal(out, [[[0, 0, 1], [2, 1, 1]], [[0, 0, 0], [0, 0, 1]]])
    np.testing.assert_array_equal(
        np.asarray(jax.jit(relabel_contiguous, static_argnums=1)(seg, 10)), out
    )
    np.testing.assert_array_equal(
        np.asarray(segment_sizes(seg, 10)),
        [[0, 0, 3, 0, 0, 0, 0, 2, 0, 1], [1, 5, 0, 0, 0, 0, 0, 0, 0, 0]],
    )
    assert num_segments(seg) == 10
    with pytest.raises(errors.InvalidArgumentError, match="num_segments"):
        jax.jit(num_segments)(jnp.asarray(seg))


# --- labels outside [0, S) (issue 10: dropped or mislabelled silently) --------------------------


@pytest.mark.parametrize(
    "bad, words",
    [(np.array([[[0, 5], [1, 1]]]), "label 5"), (np.array([[[0, -1], [1, 1]]]), "label -1")],
)
def test_segment_sizes_rejects_labels_outside_the_count(bad, words):
    with pytest.raises(errors.SegmentMapError, match="num_segments") as info:
        segment_sizes(bad, 2)
    assert words in str(info.value)
    # Concrete jax arrays are checked too; inside jit the labels are unknown and out-of-range
    # ones are dropped (documented), so the sizes of the valid labels still come out.
    with pytest.raises(errors.SegmentMapError):
        segment_sizes(jnp.asarray(bad), 2)
    traced = jax.jit(segment_sizes, static_argnums=1)(jnp.asarray(bad), 2)
    np.testing.assert_array_equal(np.asarray(traced), [[1, 2]])
    with pytest.raises(errors.SegmentMapError, match="integer"):
        segment_sizes(np.zeros((1, 2, 2), np.float32), 2)
    with pytest.raises(errors.InvalidArgumentError, match="num_segments"):
        segment_sizes(np.zeros((1, 2, 2), np.int32), 0)


def test_relabel_contiguous_rejects_negative_and_too_large_labels():
    negative = np.array([[[-1, 2], [-1, 1]]])
    with pytest.raises(errors.SegmentMapError, match="negative") as info:
        relabel_contiguous(negative)
    assert "label -1" in str(info.value)
    with pytest.raises(errors.SegmentMapError, match="negative"):
        relabel_contiguous(jnp.asarray(negative), 3)
    with pytest.raises(errors.SegmentMapError, match="num_segments"):
        relabel_contiguous(np.array([[[0, 3], [1, 1]]]), 3)
    with pytest.raises(errors.SegmentMapError, match="integer"):
        relabel_contiguous(np.zeros((1, 2, 2), np.float32))
    # Valid labels are still relabelled in raster order, eagerly and under jit.
    ok = np.array([[[5, 2], [5, 1]]])
    np.testing.assert_array_equal(np.asarray(relabel_contiguous(ok)), [[[0, 1], [0, 2]]])
    jitted = jax.jit(relabel_contiguous, static_argnums=1)(jnp.asarray(ok), 6)
    np.testing.assert_array_equal(np.asarray(jitted), [[[0, 1], [0, 2]]])
