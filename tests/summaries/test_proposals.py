"""Proposals: SLIC hierarchies plus sliding boxes, static-shaped, deterministic, batched."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors
from xaijax.summaries._proposals import Proposals, _sliding_boxes, proposals

# One configuration for most tests, so they share one compilation.
OPTS = {"num_proposals": 60, "approx_segments": (9, 16)}


def planted(batch=2, size=32, square=(6, 10, 12)):
    """Grey images with one single-colour square ``(x0, y0, side)``; its inclusive box."""
    x0, y0, side = square
    rng = np.random.default_rng(0)
    img = np.full((batch, size, size, 3), 0.5, np.float32)
    for b in range(batch):
        img[b, y0 : y0 + side, x0 : x0 + side] = rng.uniform(0, 1, 3) * [1, 0.2, 0.2]
    return jnp.asarray(img), np.array([x0, y0, x0 + side - 1, y0 + side - 1])


def iou_inclusive(boxes, box):
    lo = np.maximum(boxes[:, :2], box[:2])
    hi = np.minimum(boxes[:, 2:], box[2:])
    inter = np.prod(np.clip(hi - lo + 1, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2] + 1, axis=-1)  # noqa: E731
    return inter / (area(boxes) + area(box) - inter)


@pytest.fixture(scope="module")
def result():
    x, box = planted()
    return x, box, proposals(x, **OPTS)


def test_shapes_dtypes_and_boxes_inside(result):
    x, _, p = result
    assert isinstance(p, Proposals)
    assert p.boxes.shape == (2, 60, 4) and p.boxes.dtype == jnp.int32
    assert p.valid.shape == (2, 60) and p.valid.dtype == jnp.bool_
    boxes, valid = np.asarray(p.boxes), np.asarray(p.valid)
    b = boxes[valid]
    assert valid.all()  # 32 x 32 gives more than 60 distinct candidates
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] < x.shape[2]).all() and (b[:, 3] < x.shape[1]).all()
    assert (b[:, 2] - b[:, 0] + 1 >= 4).all() and (b[:, 3] - b[:, 1] + 1 >= 4).all()
    for n in range(2):  # no duplicates
        assert len({tuple(r) for r in boxes[n][valid[n]]}) == valid[n].sum()
    # The whole image tops the hierarchy.
    np.testing.assert_array_equal(boxes[:, 0], [[0, 0, 31, 31]] * 2)


def test_planted_square_is_proposed(result):
    _, box, p = result
    for n in range(2):
        b = np.asarray(p.boxes[n])[np.asarray(p.valid[n])]
        assert iou_inclusive(b, box).max() >= 0.9


def test_planted_square_off_the_window_grid():
    """A square no sliding box fits must come from the superpixel hierarchy."""
    x, box = planted(batch=2, size=32, square=(5, 13, 11))
    windows = _sliding_boxes(32, 32, (1.0, 0.75, 0.5, 0.375, 0.25), (1.0, 2.0, 0.5), 1 / 3, 4)
    assert iou_inclusive(windows, box).max() < 0.9
    p = proposals(x, **OPTS)
    for n in range(2):
        b = np.asarray(p.boxes[n])[np.asarray(p.valid[n])]
        assert iou_inclusive(b, box).max() >= 0.9


def test_deterministic_and_batched_equals_single(result):
    x, _, p = result
    again = proposals(x, **OPTS)
    np.testing.assert_array_equal(again.boxes, p.boxes)
    np.testing.assert_array_equal(again.valid, p.valid)
    # Each example is its own: reversing the batch reverses the result (same shape, no compile).
    flipped = proposals(x[::-1], **OPTS)
    np.testing.assert_array_equal(flipped.boxes, p.boxes[::-1])
    assert not np.array_equal(p.boxes[0], p.boxes[1])


# A small configuration (one scale, one window) that yields fewer boxes than asked.
SMALL = {
    "num_proposals": 40,
    "approx_segments": (4,),
    "window_fractions": (1.0,),
    "window_aspects": (1.0,),
}


def small_images():
    return jnp.zeros((1, 8, 8, 1)).at[0, 2:6, 1:5].set(1.0)


def test_padding_when_fewer_boxes_than_asked():
    p = proposals(small_images(), **SMALL)
    valid = np.asarray(p.valid[0])
    n = valid.sum()
    assert 0 < n < 40 and valid[:n].all() and not valid[n:].any()
    assert (np.asarray(p.boxes[0])[n:] == 0).all()


def test_jit_gives_the_same_boxes():
    x = small_images()
    jitted = jax.jit(lambda im: proposals(im, **SMALL))(x)
    eager = proposals(x, **SMALL)
    np.testing.assert_array_equal(jitted.boxes, eager.boxes)
    np.testing.assert_array_equal(jitted.valid, eager.valid)


def test_sliding_boxes_cover_the_image_edges():
    w = _sliding_boxes(20, 30, (0.5,), (1.0,), 0.5, 4)
    assert w[:, 2].max() == 29 and w[:, 3].max() == 19 and w[:, :2].min() == 0


def test_named_errors():
    x = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(errors.InputShapeError, match="images"):
        proposals(x[0])
    with pytest.raises(errors.InputShapeError, match="too small"):
        proposals(jnp.zeros((1, 3, 16, 3)))
    with pytest.raises(errors.InputDTypeError):
        proposals(jnp.zeros((1, 16, 16, 3), jnp.uint8))
    with pytest.raises(errors.NonFiniteInputError):
        proposals(x.at[0, 0, 0, 0].set(jnp.nan))
    with pytest.raises(errors.InvalidArgumentError, match="num_proposals"):
        proposals(x, num_proposals=0)
    with pytest.raises(errors.InvalidArgumentError, match="approx_segments"):
        proposals(x, approx_segments=())
    with pytest.raises(errors.InvalidArgumentError, match="window_fractions"):
        proposals(x, window_fractions=(1.5,))
    with pytest.raises(errors.InvalidArgumentError, match="colour_weight"):
        proposals(x, colour_weight=-1.0)
