"""Proposal Flow LOM against a line-by-line NumPy port of ``algorithms/LOM.m``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors
from xaijax.summaries._flow import MATLAB_EPS, lom_confidence, lom_confidence_batched


def lom_oracle(
    boxes_a, boxes_b, similarity, *, aspect=True, sequential=True, iou_threshold=0.0, extra=1
):
    """A straightforward port of Ham et al.'s ``LOM.m`` (float64, loops), from ``wVoteFull``.

    ``box2frame``: centre ``((x1 + x2) / 2, (y1 + y2) / 2)``, half extents ``x2 - xc``,
    ``y2 - yc``; ``bboxOverlapRatio`` on ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]``.
    """
    ba = np.asarray(boxes_a, np.float64).T  # [4, P] as the code's columns
    bb = np.asarray(boxes_b, np.float64).T

    def frame(b):
        xc, yc = (b[2] + b[0]) / 2, (b[3] + b[1]) / 2
        return np.stack([xc, yc, b[2] - xc, np.zeros_like(xc), np.zeros_like(xc), b[3] - yc])

    fa, fb = frame(ba), frame(bb)
    a_train = fa[2] / fa[5]
    a_test = fb[2] / fb[5]
    w_vote = np.maximum(np.asarray(similarity, np.float64), 0)
    n_a, n_b = ba.shape[1], bb.shape[1]
    valid = np.ones((n_a, n_b), bool)
    if aspect:
        for j in range(n_a):
            ok = (a_test / a_train[j] < 2.0) & (a_test / a_train[j] > 1 / 2.0)
            valid[j, ~ok] = False
    conf = np.where(valid, w_vote, 0.0)
    off_x = np.zeros((n_a, n_b))
    off_y = np.zeros((n_a, n_b))
    off_s = np.zeros((n_a, n_b))
    for i in range(n_a):
        off_x[i] = fa[0, i] - fb[0]
        off_y[i] = fa[1, i] - fb[1]
        off_s[i] = (fa[2, i] * fa[5, i]) / (fb[2] * fb[5])
    # bboxOverlapRatio(..., 'Union') on inclusive boxes
    xywh = np.stack([ba[0], ba[1], ba[2] - ba[0] + extra, ba[3] - ba[1] + extra])
    iou = np.zeros((n_a, n_a))
    for p in range(n_a):
        for q in range(n_a):
            iw = min(xywh[0, p] + xywh[2, p], xywh[0, q] + xywh[2, q]) - max(xywh[0, p], xywh[0, q])
            ih = min(xywh[1, p] + xywh[3, p], xywh[1, q] + xywh[3, q]) - max(xywh[1, p], xywh[1, q])
            inter = max(iw, 0) * max(ih, 0)
            union = xywh[2, p] * xywh[3, p] + xywh[2, q] * xywh[3, q] - inter
            iou[p, q] = inter / union
    neigh = iou > iou_threshold
    source = conf.copy()
    for i in range(n_a):
        read = conf if sequential else source
        idx = np.flatnonzero(neigh[i])
        local = read[idx]
        matching_conf = local.max(axis=1)
        matching_idx = local.argmax(axis=1)
        global_conf = read.max(axis=1)
        lo = np.stack(
            [
                off_x[idx, matching_idx],
                off_y[idx, matching_idx],
                off_s[idx, matching_idx],
            ]
        )
        mu = np.ones(3)
        for _ in range(20):
            dist = np.sqrt((lo - mu[:, None]) ** 2) + MATLAB_EPS
            mu = np.sum(lo / dist, axis=1) / np.sum(1 / dist, axis=1)
        aff_xy = np.sqrt((off_x[i] - mu[0]) ** 2 + (off_y[i] - mu[1]) ** 2)
        aff_s = off_s[i] - mu[2]
        aff = np.exp(-0.05 * aff_xy - 0.3 * np.abs(aff_s))
        conf[i] = read[i] * aff * (matching_conf.sum() / global_conf.sum())
    return conf


def random_boxes(rng, n, size=64, min_side=3):
    x1 = rng.integers(0, size - min_side, n)
    y1 = rng.integers(0, size - min_side, n)
    w = rng.integers(min_side, size // 2, n)
    h = rng.integers(min_side, size // 2, n)
    return np.stack([x1, y1, np.minimum(x1 + w, size - 1), np.minimum(y1 + h, size - 1)], 1)


@pytest.mark.parametrize("seed,n_a,n_b", [(0, 6, 6), (1, 12, 9), (2, 20, 20), (3, 16, 11)])
def test_matches_numpy_port(seed, n_a, n_b):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, n_a), random_boxes(rng, n_b)
    sim = rng.uniform(-0.2, 1.0, (n_a, n_b)).astype(np.float32)
    got = np.asarray(lom_confidence(a, b, sim))
    want = lom_oracle(a, b, sim)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32


def test_float_boxes_and_no_aspect_filter():
    rng = np.random.default_rng(7)
    a = random_boxes(rng, 10).astype(np.float32) + rng.uniform(0, 0.5, (10, 4)).astype(np.float32)
    b = random_boxes(rng, 8).astype(np.float32)
    sim = rng.uniform(0, 1, (10, 8)).astype(np.float32)
    got = lom_confidence(a, b, sim, aspect_threshold=None)
    np.testing.assert_allclose(got, lom_oracle(a, b, sim, aspect=False), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("iou_threshold,inclusive", [(0.3, True), (0.0, False)])
def test_neighbourhood_options(iou_threshold, inclusive):
    rng = np.random.default_rng(11)
    a, b = random_boxes(rng, 14), random_boxes(rng, 10)
    sim = rng.uniform(0, 1, (14, 10)).astype(np.float32)
    got = lom_confidence(a, b, sim, iou_threshold=iou_threshold, inclusive=inclusive)
    want = lom_oracle(a, b, sim, iou_threshold=iou_threshold, extra=int(inclusive))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    default = lom_confidence(a, b, sim)
    assert np.max(np.abs(np.asarray(got) - np.asarray(default))) > 1e-4  # the option matters


def test_in_order_updates_matter_and_are_reproduced():
    """Nested, overlapping boxes: row 1 reads row 0 after its update, so the order shows."""
    a = np.array([[0, 0, 19, 19], [2, 2, 21, 21], [4, 4, 23, 23], [30, 30, 49, 49]])
    b = np.array([[0, 0, 19, 19], [40, 40, 59, 59], [3, 3, 22, 22], [10, 10, 29, 29]])
    sim = np.array(
        [
            [0.50, 0.90, 0.10, 0.20],
            [0.80, 0.85, 0.30, 0.10],
            [0.20, 0.70, 0.75, 0.40],
            [0.10, 0.30, 0.20, 0.90],
        ],
        np.float32,
    )
    seq = np.asarray(lom_confidence(a, b, sim))
    par = np.asarray(lom_confidence(a, b, sim, sequential=False))
    np.testing.assert_allclose(seq, lom_oracle(a, b, sim), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(par, lom_oracle(a, b, sim, sequential=False), rtol=1e-5, atol=1e-7)
    # Row 0 is the same either way; a later row differs by far more than the tolerance.
    np.testing.assert_allclose(seq[0], par[0], rtol=1e-6)
    assert np.max(np.abs(seq - par)) > 1e-2


def test_padding_boxes_take_no_part():
    rng = np.random.default_rng(4)
    a, b = random_boxes(rng, 8), random_boxes(rng, 7)
    sim = rng.uniform(0, 1, (8, 7)).astype(np.float32)
    want = lom_oracle(a, b, sim)
    pad_a = np.concatenate([a, random_boxes(rng, 3)])
    pad_b = np.concatenate([b[:4], random_boxes(rng, 2), b[4:]])
    pad_sim = np.full((11, 9), 5.0, np.float32)
    pad_sim[:8, :4] = sim[:, :4]
    pad_sim[:8, 6:] = sim[:, 4:]
    valid_a = np.arange(11) < 8
    valid_b = np.array([True] * 4 + [False] * 2 + [True] * 3)
    got = np.asarray(lom_confidence(pad_a, pad_b, pad_sim, valid_a=valid_a, valid_b=valid_b))
    np.testing.assert_allclose(got[:8][:, valid_b], want, rtol=1e-5, atol=1e-6)
    assert np.all(got[8:] == 0) and np.all(got[:, ~valid_b] == 0)


def test_all_zero_similarity_gives_zeros_not_nan():
    a = np.array([[0, 0, 9, 9], [5, 5, 14, 14]])
    got = lom_confidence(a, a, jnp.zeros((2, 2)))
    assert np.all(np.asarray(got) == 0)


def test_batched_equals_per_pair_and_jit():
    rng = np.random.default_rng(5)
    a = np.stack([random_boxes(rng, 9) for _ in range(3)])
    b = np.stack([random_boxes(rng, 9) for _ in range(3)])
    sim = rng.uniform(0, 1, (3, 9, 9)).astype(np.float32)
    got = lom_confidence_batched(a, b, sim)
    for n in range(3):
        np.testing.assert_allclose(got[n], lom_oracle(a[n], b[n], sim[n]), rtol=1e-5, atol=1e-6)
    jitted = jax.jit(lambda x, y, s: lom_confidence(x, y, s))
    np.testing.assert_allclose(jitted(a[0], b[0], sim[0]), got[0], rtol=1e-6)


def test_named_errors():
    a = np.array([[0, 0, 9, 9], [5, 5, 14, 14]])
    sim = np.ones((2, 2), np.float32)
    with pytest.raises(errors.InputShapeError, match="boxes_a"):
        lom_confidence(a[:, :3], a, sim)
    with pytest.raises(errors.InputShapeError, match="similarity"):
        lom_confidence(a, a, np.ones((2, 3), np.float32))
    with pytest.raises(errors.InputDTypeError, match="similarity"):
        lom_confidence(a, a, np.ones((2, 2), np.int32))
    with pytest.raises(errors.NonFiniteInputError):
        lom_confidence(a, a, np.array([[1, np.nan], [0, 1]], np.float32))
    with pytest.raises(errors.InvalidArgumentError, match="iterations"):
        lom_confidence(a, a, sim, iterations=0)
    with pytest.raises(errors.InvalidArgumentError, match="aspect_threshold"):
        lom_confidence(a, a, sim, aspect_threshold=0.5)
    with pytest.raises(errors.InvalidArgumentError, match="init"):
        lom_confidence(a, a, sim, init=(1.0, 1.0))
    with pytest.raises(errors.InputShapeError, match="valid_a"):
        lom_confidence(a, a, sim, valid_a=np.ones(3, bool))
    with pytest.raises(errors.BatchMismatchError):
        lom_confidence_batched(a[None], np.stack([a, a]), np.ones((1, 2, 2), np.float32))
