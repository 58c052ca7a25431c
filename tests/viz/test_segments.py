"""Superpixel boundaries, lime-style top-k segments and the segment figure."""

from __future__ import annotations

import numpy as np
import pytest

from xaijax import errors, viz

TWO = np.array([[0, 0, 0, 1, 1]] * 3)  # two segments, the border between columns 2 and 3


def test_boundaries_of_two_segments_mark_both_sides_of_the_border():
    expected = np.zeros((3, 5), bool)
    expected[:, 2:4] = True
    np.testing.assert_array_equal(viz.segment_boundaries(TWO), expected)
    np.testing.assert_array_equal(viz.segment_boundaries(np.zeros((3, 4), int)), False)
    # Leading axes are separate maps: no border between frame 0 and frame 1.
    clip = np.stack([np.zeros((3, 5), int), np.ones((3, 5), int)])
    np.testing.assert_array_equal(viz.segment_boundaries(clip), False)
    np.testing.assert_array_equal(viz.segment_boundaries(np.stack([TWO, 1 - TWO]))[1], expected)


def test_boundaries_match_scikit_image_thick_mode():
    segmentation = pytest.importorskip("skimage.segmentation")
    labels = np.random.default_rng(0).integers(0, 4, (9, 11))
    np.testing.assert_array_equal(
        viz.segment_boundaries(labels), segmentation.find_boundaries(labels, mode="thick")
    )


def test_boundaries_match_a_loop_reference():
    labels = np.random.default_rng(1).integers(0, 3, (6, 7))
    ref = np.zeros_like(labels, bool)
    for y in range(6):
        for x in range(7):
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < 6 and 0 <= xx < 7 and labels[yy, xx] != labels[y, x]:
                    ref[y, x] = True
    np.testing.assert_array_equal(viz.segment_boundaries(labels), ref)


def test_mark_boundaries_paints_only_the_border():
    out = viz.mark_boundaries(np.zeros((3, 5, 3)), TWO, color=(1, 0, 0))
    np.testing.assert_array_equal(out[:, 2:4], np.broadcast_to([1, 0, 0], (3, 2, 3)))
    np.testing.assert_array_equal(out[:, [0, 1, 4]], 0)


@pytest.mark.parametrize("colour", ["red", "#ff0000", "r", (1.0, 0.0, 0.0), [1, 0, 0]])
def test_boundary_colours_accept_matplotlib_names_like_rgb_triples(colour):
    image = np.zeros((3, 5, 3))
    expected = viz.mark_boundaries(image, TWO, color=(1, 0, 0))
    np.testing.assert_array_equal(viz.mark_boundaries(image, TWO, color=colour), expected)
    fig = viz.show_segments(image, TWO, boundary_color=colour)
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), expected)


def test_image_and_mask_keeps_the_top_k_like_lime():
    seg = np.array([[0, 1, 2, 3]] * 2)
    scores = np.array([0.5, -2.0, 1.0, 0.1])
    image = np.full((2, 4, 3), 0.5)
    _, mask = viz.image_and_mask(image, seg, scores, top_k=2)
    np.testing.assert_array_equal(mask[0], [1, 0, 1, 0])  # the two largest positive scores
    _, mask = viz.image_and_mask(image, seg, scores, top_k=2, positive_only=False)
    np.testing.assert_array_equal(mask[0], [0, -1, 1, 0])  # the two largest |scores|, signed
    hidden, mask = viz.image_and_mask(image, seg, scores, top_k=1, hide_rest=True)
    np.testing.assert_array_equal(hidden[0, :, 0], [0, 0, 0.5, 0])
    _, mask = viz.image_and_mask(image, seg, scores, top_k=4, min_weight=0.2)
    np.testing.assert_array_equal(mask[0], [1, 0, 1, 0])  # 0.1 is under min_weight


def test_show_segments_dims_all_but_the_top_k_and_outlines_them():
    seg = np.repeat(np.arange(4), 4).reshape(4, 4).T  # four vertical bands
    image = np.ones((4, 4, 3))
    fig = viz.show_segments(
        image, seg, np.array([0.1, -0.3, 0.9, 0.0]), top_k=1, boundary_color=None
    )
    rgb = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(rgb[:, [0, 1, 3]], 0.35)  # dimmed grey
    assert (rgb[:, 2].max(axis=-1) > 0.35).all()  # the kept band keeps its colours
    outlined = viz.show_segments(image, seg, np.array([0.1, -0.3, 0.9, 0.0]), top_k=1)
    rgb = outlined.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(rgb[:, 2], np.broadcast_to([1, 1, 0], (4, 3)))  # border colour
    plain = viz.show_segments(image, seg)
    assert len(plain.axes) == 1  # no scores: no colour bar


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: viz.segment_boundaries(np.full((2, 2), 0.5)), errors.SegmentMapError, "integer"),
        (lambda: viz.segment_boundaries(-np.ones((2, 2), int)), errors.SegmentMapError, "negative"),
        (lambda: viz.segment_boundaries(np.zeros(3, int)), errors.SegmentMapError, "[H, W]"),
        (lambda: viz.mark_boundaries(np.zeros((4, 5, 3)), TWO), errors.SegmentMapError, "[4, 5]"),
        (
            lambda: viz.mark_boundaries(np.zeros((3, 5, 3)), TWO, color=(2, 0, 0)),
            errors.InvalidArgumentError,
            "color",
        ),
        (
            lambda: viz.image_and_mask(np.zeros((3, 5)), TWO, np.ones(1)),
            errors.SegmentMapError,
            "label 1",
        ),
        (
            lambda: viz.image_and_mask(np.zeros((3, 5)), TWO, np.ones(2), top_k=0),
            errors.InvalidArgumentError,
            "top_k",
        ),
        (
            lambda: viz.show_segments(np.zeros((3, 4, 3)), TWO, np.ones(2)),
            errors.SegmentMapError,
            "not a label map of this image",
        ),
        (
            lambda: viz.show_segments(np.zeros((3, 5, 3)), TWO, np.ones((2, 2))),
            errors.InputShapeError,
            "[S]",
        ),
        (
            lambda: viz.show_segments(np.zeros((3, 5, 3)), TWO, top_k=2),
            errors.InvalidArgumentError,
            "scores",
        ),
        (
            lambda: viz.show_segments(np.zeros((3, 5, 3)), TWO, np.array([np.nan, 1.0])),
            errors.NonFiniteInputError,
            "NaN",
        ),
        (
            lambda: viz.mark_boundaries(np.zeros((3, 5, 3)), TWO, color="nocolour"),
            errors.InvalidArgumentError,
            "`color` must be a matplotlib colour name",
        ),
        (
            lambda: viz.show_segments(np.zeros((3, 5, 3)), TWO, boundary_color="nocolour"),
            errors.InvalidArgumentError,
            "`boundary_color`",
        ),
        (
            lambda: viz.show_segments(np.zeros((3, 5, 3)), TWO, boundary_color=(1, 0)),
            errors.InvalidArgumentError,
            "`boundary_color` must be an RGB triple",
        ),
        (
            lambda: viz.show_segments(np.zeros((3, 5, 3)), TWO, ax="x"),
            errors.InvalidArgumentError,
            "matplotlib Axes",
        ),
        (
            lambda: viz.mark_boundaries(np.full((3, 5, 3), 255.0), TWO),
            errors.InvalidArgumentError,
            "divide by 255",
        ),
        (
            lambda: viz.show_segments(np.full((3, 5, 3), -1.0), TWO),
            errors.InvalidArgumentError,
            "[0, 1]",
        ),
    ],
)
def test_bad_segment_inputs_raise_named_errors(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
