"""Boxes: rasterisation, tight boxes, IoU and the WSOL largest-component box."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from xaijax import errors
from xaijax.metrics import (
    box_from_map,
    box_iou,
    boxes_from_mask,
    boxes_to_mask,
    connected_components,
    largest_component,
)


def test_boxes_to_mask_single_and_union():
    m = boxes_to_mask(np.array([[1, 0, 3, 2]]), 4, 3)
    ref = np.zeros((1, 4, 3), bool)
    ref[0, 1:3, 0:2] = True
    np.testing.assert_array_equal(m, ref)
    multi = np.array([[[0, 0, 1, 1], [2, 2, 4, 3], [0, 0, 0, 0]]])  # last one: padding
    m = boxes_to_mask(multi, 4, 3)
    ref = np.zeros((1, 4, 3), bool)
    ref[0, 0, 0] = True
    ref[0, 2:4, 2] = True
    np.testing.assert_array_equal(m, ref)


def test_boxes_from_mask_round_trip_and_empty():
    boxes = np.array([[1, 2, 4, 7], [0, 0, 5, 8], [4, 7, 5, 8]])
    np.testing.assert_array_equal(boxes_from_mask(boxes_to_mask(boxes, 5, 8)), boxes)
    np.testing.assert_array_equal(boxes_from_mask(np.zeros((2, 3, 3), bool)), np.zeros((2, 4)))


def test_box_iou_known_values():
    a = np.array(
        [[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 2, 2], [0, 0, 0, 0], [5, 5, 3, 3]]
    )
    b = np.array(
        [[0, 0, 2, 2], [2, 2, 4, 4], [0, 0, 2, 4], [1, 1, 3, 3], [0, 0, 0, 0], [0, 0, 9, 9]]
    )
    # identical, touching corners, contained half, 1/7 overlap, two empty boxes, inverted box
    np.testing.assert_allclose(box_iou(a, b), [1.0, 0.0, 0.5, 1 / 7, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(box_iou(b, a), box_iou(a, b))  # symmetric
    np.testing.assert_allclose(box_iou(a.astype(np.float32) + 0.5, b + 0.5), box_iou(a, b))
    multi = box_iou(np.repeat(a[:, None], 2, 1), np.stack([b, a], 1))
    assert multi.shape == (6, 2)
    np.testing.assert_allclose(multi[:, 1], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0])


# box_from_map tests share the [2, 10, 12] shape so the suite compiles it only a few times.
SHAPE = (2, 10, 12)


def test_box_from_map_keeps_the_largest_of_two_blobs():
    s = np.zeros(SHAPE, np.float32)
    s[0, 1:3, 1:3] = 1.0  # 4 pixels, brightest
    s[0, 5:9, 6:11] = 0.5  # 20 pixels: the largest component wins, not the maximum
    s[1, 0:2, 0:2] = 0.3  # example 1: the other way round
    s[1, 7:8, 0:12] = 0.9
    np.testing.assert_array_equal(box_from_map(s), [[5, 6, 9, 11], [7, 0, 8, 12]])
    # with a threshold above 0.5 only the bright blob survives in example 0
    np.testing.assert_array_equal(box_from_map(s, threshold=0.6)[0], [1, 1, 3, 3])
    # two blobs of equal size: the one whose first pixel comes first in row-major order
    s = np.zeros(SHAPE, np.float32)
    s[:, 6:8, 1:3] = 1.0
    s[:, 2:4, 8:10] = 1.0
    np.testing.assert_array_equal(box_from_map(s), [[2, 8, 4, 10]] * 2)


def test_box_from_map_connectivity_and_threshold_modes():
    s = np.zeros(SHAPE, np.float32)
    for i in range(4):  # a diagonal line of 4 pixels and a 2-pixel bar
        s[:, i, i] = 1.0
    s[:, 5, 4:6] = 1.0
    np.testing.assert_array_equal(box_from_map(s, connectivity=8), [[0, 0, 4, 4]] * 2)
    np.testing.assert_array_equal(box_from_map(s, connectivity=4), [[5, 4, 6, 6]] * 2)
    # raw threshold: values are compared as they are
    s2 = np.full(SHAPE, 10.0, np.float32)
    s2[:, 0, 1:3] = 13.0
    s2[:, 9, :] = 12.0
    np.testing.assert_array_equal(
        box_from_map(s2, threshold=11.0, relative=False), [[9, 0, 10, 12]] * 2
    )
    np.testing.assert_array_equal(
        box_from_map(s2, threshold=12.5, relative=False), [[0, 1, 1, 3]] * 2
    )


def test_box_from_map_degenerate_maps_give_the_empty_box():
    for pair in ((0.0, 3.0), (-1.0, 1e-30)):  # zero, constant, negative and tiny constant maps
        s = np.stack([np.full(SHAPE[1:], v, np.float32) for v in pair])
        np.testing.assert_array_equal(box_from_map(s), np.zeros((2, 4)))
    s = np.zeros(SHAPE, np.float32)
    s[:, 3, 3] = 1.0
    np.testing.assert_array_equal(box_from_map(s, threshold=1.0), np.zeros((2, 4)))


def test_box_from_map_batched_equals_per_example_jit_and_scipy(assert_no_recompile):
    rng = np.random.default_rng(3)
    s = ndimage.gaussian_filter(rng.normal(size=(4, 20, 24)), (0, 2, 2)).astype(np.float32)
    boxes = assert_no_recompile(box_from_map, s, threshold=0.5)
    for i in range(4):  # each row alone (repeated to the same shape: no new compile)
        np.testing.assert_array_equal(
            box_from_map(np.repeat(s[i : i + 1], 4, 0), threshold=0.5),
            np.repeat(boxes[i : i + 1], 4, 0),
        )
    jitted = jax.jit(lambda s: box_from_map(s, threshold=0.5))
    np.testing.assert_array_equal(assert_no_recompile(jitted, s), boxes)
    # reference: scipy labelling, largest component, tight box
    for i in range(4):
        n = (s[i] - s[i].min()) / (s[i].max() - s[i].min())
        lab, k = ndimage.label(n > 0.5)
        sizes = ndimage.sum_labels(np.ones_like(lab), lab, range(1, k + 1))
        ys, xs = np.nonzero(lab == 1 + int(np.argmax(sizes)))
        np.testing.assert_array_equal(boxes[i], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


@pytest.mark.parametrize("connectivity", [4, 8])
def test_connected_components_match_scipy(connectivity):
    rng = np.random.default_rng(4)
    fg = rng.random((8, 15, 17)) < 0.55
    structure = np.ones((3, 3)) if connectivity == 8 else None
    both = jax.jit(
        jax.vmap(
            lambda f: (connected_components(f, connectivity), largest_component(f, connectivity))
        )
    )
    labels, largest = both(fg)  # one compile per connectivity
    for i in range(8):
        ref, k = ndimage.label(fg[i], structure=structure)
        lab = np.asarray(labels[i])
        assert np.all(lab[~fg[i]] == 15 * 17)
        # same partition: a bijection between our labels and scipy's on the foreground
        pairs = set(zip(lab[fg[i]].tolist(), ref[fg[i]].tolist(), strict=True))
        assert len(pairs) == k == len(np.unique(lab[fg[i]]))
        # each label is the smallest flat index of its component
        for value in np.unique(lab[fg[i]]):
            assert value == np.flatnonzero(lab.ravel() == value).min()
        sizes = np.bincount(ref.ravel())[1:]
        assert largest[i].sum() == sizes.max()


def test_connected_components_long_snake():
    # a serpentine path: the worst case for plain label propagation
    fg = np.zeros((21, 21), bool)
    fg[::2] = True
    for r in range(1, 21, 2):
        fg[r, 20 if (r // 2) % 2 == 0 else 0] = True
    lab = connected_components(jnp.asarray(fg))
    assert np.all(np.asarray(lab)[fg] == 0)


@pytest.mark.parametrize(
    ("fn", "args", "error", "match"),
    [
        (box_from_map, (np.zeros((4, 4), np.float32),), errors.InputShapeError, "saliency"),
        (box_from_map, (np.zeros((1, 4, 4), np.int32),), errors.InputDTypeError, "saliency"),
        (box_iou, (np.zeros((2, 4)), np.zeros((3, 4))), errors.InputShapeError, "same shape"),
        (box_iou, (np.zeros((2, 5)), np.zeros((2, 5))), errors.InputShapeError, "y0, x0"),
        (boxes_to_mask, (np.zeros((2, 3)), 4, 4), errors.InputShapeError, "boxes"),
        (boxes_to_mask, (np.zeros((2, 4)), 0, 4), errors.InvalidArgumentError, "height"),
        (boxes_from_mask, (np.zeros((4, 4), bool),), errors.InputShapeError, "mask"),
    ],
)
def test_bad_inputs_raise_named_errors(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)


def test_bad_box_from_map_options():
    s = np.ones((1, 3, 3), np.float32)
    with pytest.raises(errors.InvalidArgumentError, match="threshold"):
        box_from_map(s, threshold=1.5)
    with pytest.raises(errors.InvalidArgumentError, match="connectivity"):
        box_from_map(s, connectivity=6)
