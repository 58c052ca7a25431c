"""The visual-summaries assembly (Stage C): each step against a NumPy port, then end to end."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors
from xaijax.summaries import Summary, lom_confidence, render_summary, summarize
from xaijax.summaries._summarize import (
    _chunks,
    _members,
    _pair_step,
    _prune,
    _quality,
    _salient_proposals,
    _schedule,
)

# ------------------------------------------------------------------------------------------
# NumPy ports.


def salient_oracle(boxes, valid, heat, threshold, share):
    out = np.zeros(valid.shape, bool)
    for n in range(boxes.shape[0]):
        for p, (x1, y1, x2, y2) in enumerate(boxes[n]):
            region = heat[n, y1 : y2 + 1, x1 : x2 + 1] > threshold
            out[n, p] = valid[n, p] and region.mean() > share
    return out


def prune_oracle(boxes, score, valid, same_region, scale_factor):
    """Greedy: by decreasing score (ties by index), keep a box unless redundant with a kept one."""
    order = sorted(np.flatnonzero(valid), key=lambda i: (-score[i], i))
    area = lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1)  # noqa: E731
    kept = []
    for i in order:
        redundant = False
        for j in kept:
            a, b = boxes[i], boxes[j]
            iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
            ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
            inter = max(iw, 0) * max(ih, 0)
            small, large = min(area(a), area(b)), max(area(a), area(b))
            if inter / small >= same_region and large / small < scale_factor:
                redundant = True
        if not redundant:
            kept.append(i)
    out = np.zeros(len(boxes), bool)
    out[kept] = True
    return out


def iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(iw, 0) * max(ih, 0)
    area = lambda q: (q[2] - q[0] + 1) * (q[3] - q[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def random_boxes(rng, n, p, size):
    x1 = rng.integers(0, size - 4, (n, p))
    y1 = rng.integers(0, size - 4, (n, p))
    x2 = np.minimum(x1 + rng.integers(3, size // 2, (n, p)), size - 1)
    y2 = np.minimum(y1 + rng.integers(3, size // 2, (n, p)), size - 1)
    return np.stack([x1, y1, x2, y2], -1).astype(np.int32)


# ------------------------------------------------------------------------------------------
# Steps.


def test_salient_proposals_match_numpy():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 3, 40, 24)
    boxes[0, 0] = [0, 0, 23, 23]
    valid = rng.random((3, 40)) > 0.2
    heat = (rng.random((3, 24, 24)) ** 0.3).astype(np.float32)
    heat[:, 4:20, 4:20] = 1.0
    for threshold, share in ((128 / 255, 0.75), (0.9, 0.5)):
        got = _salient_proposals(jnp.asarray(boxes), jnp.asarray(valid), jnp.asarray(heat),
                                 mask_threshold=threshold, valid_threshold=share)  # fmt: skip
        want = salient_oracle(boxes, valid, heat, threshold, share)
        np.testing.assert_array_equal(np.asarray(got), want)
        assert 0 < want.sum() < want.size


def test_salient_share_is_strict():
    # A box with exactly 75 % salient pixels is not valid ("more than 75 %").
    heat = np.zeros((1, 8, 8), np.float32)
    heat[0, :, :3] = 1.0
    boxes = jnp.array([[[0, 0, 3, 7], [0, 0, 2, 7], [0, 0, 4, 7]]], jnp.int32)
    got = _salient_proposals(boxes, jnp.ones((1, 3), bool), jnp.asarray(heat),
                             mask_threshold=0.5, valid_threshold=0.75)  # fmt: skip
    assert np.asarray(got).tolist() == [[False, True, False]]


def test_prune_hand_made_boxes():
    boxes = np.array(
        [
            [0, 0, 9, 9],  # 100 px
            [0, 0, 9, 4],  # 50 px inside box 0: area ratio exactly 2 -> not redundant with it
            [5, 0, 14, 9],  # overlap 50/100 = 0.5 with box 0 -> redundant with it
            [0, 0, 8, 8],  # 81 px inside box 0 -> redundant with it, higher score
            [30, 30, 39, 39],  # far away
            [31, 31, 39, 39],  # redundant with box 4 but not valid
        ],
        np.int32,
    )
    score = np.array([0.5, 0.1, 0.2, 0.9, 0.3, 1.0], np.float32)
    valid = np.array([True, True, True, True, True, False])
    got = _prune(jnp.asarray(boxes)[None], jnp.asarray(score)[None], jnp.asarray(valid)[None],
                 same_region=0.5, scale_factor=2.0)[0]  # fmt: skip
    want = prune_oracle(boxes, score, valid, 0.5, 2.0)
    np.testing.assert_array_equal(np.asarray(got), want)
    # Box 3 (best) suppresses box 0 (overlap 1, ratio 100/81) and box 1 (overlap 45/50, ratio
    # 81/50); box 2 overlaps box 3 by 36/81 < 0.5 and box 1 (not kept) only: it stays although
    # redundant with box 0, which box 3 removed first. Box 5 is not valid.
    assert want.tolist() == [False, False, True, True, True, False]


@pytest.mark.parametrize("same_region, scale_factor", [(0.5, 2.0), (0.3, 4.0), (0.8, 1.5)])
def test_prune_random_boxes_match_numpy(same_region, scale_factor):
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 4, 30, 32)
    score = rng.random((4, 30)).astype(np.float32)
    score[:, :4] = 0.5  # ties are broken by index
    valid = rng.random((4, 30)) > 0.2
    got = np.asarray(_prune(jnp.asarray(boxes), jnp.asarray(score), jnp.asarray(valid),
                            same_region=same_region, scale_factor=scale_factor))  # fmt: skip
    for n in range(4):
        want = prune_oracle(boxes[n], score[n], valid[n], same_region, scale_factor)
        np.testing.assert_array_equal(got[n], want)


@pytest.mark.parametrize("n", [2, 3, 6, 7])
def test_schedule_covers_every_pair_once_and_images_once_per_round(n):
    rounds = _schedule(n)
    pairs = [p for r in rounds for p in r]
    assert sorted(pairs) == sorted((i, j) for i in range(n) for j in range(i, n))
    for r in rounds:
        seen = [x for a, b in r for x in ({a, b} if a != b else {a})]
        assert len(seen) == len(set(seen))
    chunks, c = _chunks(n, 2)
    assert all(len(ch) <= c <= 2 for ch in chunks)
    assert sorted(p for ch in chunks for p in ch) == sorted(pairs)


def test_pair_step_matches_lom_of_every_pair():
    """Scores and salient blocks from chunked, padded rounds equal brute-force LOM."""
    rng = np.random.default_rng(2)
    n, p, d = 5, 12, 8
    boxes = random_boxes(rng, n, p, 32)
    pvalid = np.ones((n, p), bool)
    pvalid[:, -2:] = False
    desc = rng.random((n, p, d)).astype(np.float32) - 0.3
    unit = desc / np.linalg.norm(desc, axis=-1, keepdims=True)
    vidx = np.stack([rng.permutation(p - 2)[:4] for _ in range(n)]).astype(np.int32)
    lom = {
        "iterations": 20, "aspect_threshold": 2.0, "iou_threshold": 0.0, "xy_weight": 0.05,
        "scale_weight": 0.3, "init": (1.0, 1.0, 1.0), "eps": 2.220446049250313e-16,
        "clamp": True, "inclusive": True, "sequential": True,
    }  # fmt: skip
    top_similar = 7
    score, blocks = _pair_step(jnp.asarray(unit), jnp.asarray(boxes), jnp.asarray(pvalid),
                               jnp.asarray(vidx), top_similar=top_similar, chunk_size=2,
                               lom=lom)  # fmt: skip
    conf = {}
    for i in range(n):
        for j in range(i, n):
            sim = np.maximum(unit[i] @ unit[j].T, 0.0)
            c = np.asarray(lom_confidence(boxes[i], boxes[j], sim, valid_a=pvalid[i],
                                          valid_b=pvalid[j]))  # fmt: skip
            conf[i, j] = c
            conf[j, i] = c.T if i != j else c
    want_score = np.zeros((n, p))
    for i in range(n):
        row = np.concatenate([conf[i, j][:, pvalid[j]] for j in range(n) if j != i], axis=1)
        want_score[i] = np.mean(np.sort(row, axis=1)[:, ::-1][:, :top_similar], axis=1)
    np.testing.assert_allclose(np.asarray(score), want_score, rtol=1e-5, atol=1e-6)
    blocks = np.asarray(blocks)
    for i in range(n):
        for j in range(n):
            want = conf[i, j][np.ix_(vidx[i], vidx[j])]
            np.testing.assert_allclose(blocks[i, j], want, rtol=1e-5, atol=1e-6)


def test_members_one_per_image_top_k_and_exemplar_image_dropped():
    #            points: 0  1  2  3  4  5  6  7
    image_of = np.array([0, 0, 1, 1, 2, 3, 4, 0])
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    sim = np.zeros((8, 8))
    # Similarities to exemplar 1 (image 0) of cluster 0's other points.
    sim[[0, 2, 3, 4, 5], 1] = [0.99, 0.3, 0.5, 0.4, 0.1]
    sim[6, 7] = 0.7
    got = _members(sim, labels, np.array([1, 7]), image_of, top_members=3)
    # Cluster 0: exemplar 1; point 0 shares its image (dropped); image 1 -> point 3 (0.5 > 0.3);
    # then point 4 (0.4); point 5 cut by top_members = 3.
    assert got[0].tolist() == [1, 3, 4]
    assert got[1].tolist() == [7, 6]
    assert _members(sim, labels, np.array([1, 7]), image_of, top_members=10)[0].tolist() == [
        1, 3, 4, 5,
    ]  # fmt: skip


def test_quality_filter_rules():
    def block(values):
        m = np.array(values, np.float64)
        return m + m.T - np.diag(np.diag(m)) + np.eye(len(m)) * (1 - np.diag(m))

    ssim = np.zeros((3, 4, 4))
    # Cluster 0: off-diagonal 0.8, 0.8, 0.8, 0.2, 0.2, 0.2 -> median 0.5.
    ssim[0] = block([[1, 0.8, 0.8, 0.8], [0, 1, 0.2, 0.2], [0, 0, 1, 0.2], [0, 0, 0, 1]])
    # Cluster 1: three members, all 0.6 -> median 0.6.
    ssim[1, :3, :3] = block([[1, 0.6, 0.6], [0, 1, 0.6], [0, 0, 1]])
    # Cluster 2: one member -> no median, rejected.
    counts = np.array([4, 3, 1])
    med, accepted, kept, ref = _quality(ssim, counts, cluster_ssim=0.9, member_ssim=0.6)
    assert med[0] == pytest.approx(0.5) and med[1] == pytest.approx(0.6) and np.isnan(med[2])
    assert ref == pytest.approx(0.55)
    # 0.5 < 0.9 * 0.55 = 0.495? No: 0.5 >= 0.495 -> accepted; 0.6 accepted; 2 rejected.
    assert accepted.tolist() == [True, True, False]
    # Cluster 0: member 0 has 0/3 values below 0.55 -> kept; members 1-3 have 2/3 >= 0.6 -> not.
    assert kept[0].tolist() == [True, False, False, False]
    assert kept[1].tolist() == [True, True, True, False]
    assert not kept[2].any()
    _, accepted, _, _ = _quality(ssim, counts, cluster_ssim=0.95, member_ssim=0.6)
    assert accepted.tolist() == [False, True, False]  # 0.5 < 0.95 * 0.55
    _, _, kept, _ = _quality(ssim, counts, cluster_ssim=0.9, member_ssim=0.7)
    assert kept[0].tolist() == [True, True, True, True]  # 2/3 < 0.7


# ------------------------------------------------------------------------------------------
# End to end.

SIDE = 24


def planted(n, seed, size=64):
    """``n`` images of clutter, each with the same ring-and-corner pattern at a grid position.

    Positions are multiples of 8 (so one 24-pixel sliding proposal frames the pattern exactly)
    at least 8 pixels from the border; ``heat`` is 1 on the pattern.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE] + 0.5
    r = np.hypot(yy - SIDE / 2, xx - SIDE / 2)
    pattern = np.where(((r > SIDE / 5) & (r < SIDE / 3))[..., None], 0.1, [0.95, 0.85, 0.1])
    pattern[: SIDE // 4, : SIDE // 4] = [0.8, 0.1, 0.1]
    grid = [(a, b) for a in range(8, size - SIDE - 7, 8) for b in range(8, size - SIDE - 7, 8)]
    images, heat, boxes = [], [], []
    for _ in range(n):
        img = rng.uniform(0.35, 0.55, (size, size, 3))
        for _ in range(5):
            h, w = rng.integers(6, 16, 2)
            y, x = rng.integers(0, size - 16, 2)
            img[y : y + h, x : x + w] = rng.uniform(0, 1, 3)
        y, x = grid[rng.integers(len(grid))]
        img[y : y + SIDE, x : x + SIDE] = pattern
        hm = np.zeros((size, size))
        hm[y : y + SIDE, x : x + SIDE] = 1.0
        images.append(img)
        heat.append(hm)
        boxes.append((x, y, x + SIDE - 1, y + SIDE - 1))
    return (
        jnp.asarray(np.stack(images), jnp.float32),
        jnp.asarray(np.stack(heat), jnp.float32),
        np.array(boxes),
    )


OPTS = dict(num_proposals=100, proposal_options=dict(approx_segments=(25, 50),
                                                     window_fractions=(0.375,)))  # fmt: skip


def test_end_to_end_planted_pattern_is_one_summary():
    images, heat, gt = planted(6, seed=2)
    result = summarize(images, heat, **OPTS)
    assert result.boxes.shape == (6, 100, 4) and result.salient.shape == (6, 100)
    assert result.kept.sum() == len(result.kept_image) == result.similarity.shape[0]
    assert not (result.kept & ~result.salient).any()
    assert result.converged and result.accepted
    assert set(result.seconds) == {"proposals", "descriptors", "lom", "prune", "affinity",
                                   "filter"}  # fmt: skip
    covers = [
        sum(iou(b, gt[i]) >= 0.5 for i, b in zip(s.member_images, s.member_boxes, strict=True))
        for s in result.accepted
    ]
    assert max(covers) >= 5  # the pattern in (nearly) every one of the 6 images
    for s in result.clusters:
        assert len(set(s.member_images.tolist())) == len(s.member_images)  # one box per image
        assert s.member_images[0] == s.image and (s.member_boxes[0] == s.box).all()
        assert np.all(np.diff(s.member_similarity[1:]) <= 0)
        assert s.member_ssim.shape == (len(s.member_images),) * 2
        if not s.accepted:
            assert not s.member_kept.any()
    accepted_meds = [s.median_ssim for s in result.accepted]
    assert min(accepted_meds) >= 0.9 * result.reference_ssim


def test_no_salient_proposal_warns_and_gives_no_summary():
    images, heat, _ = planted(3, seed=0)
    with pytest.warns(RuntimeWarning, match="no proposal .* salient"):
        result = summarize(images, jnp.zeros_like(heat), **OPTS)
    assert result.clusters == () and result.accepted == ()
    assert not result.salient.any() and result.similarity.shape == (0, 0)


@pytest.mark.parametrize(
    "images, heat, kwargs, error",
    [
        (np.zeros((1, 16, 16, 3), np.float32), np.zeros((1, 16, 16), np.float32), {},
         errors.InputShapeError),
        (np.zeros((2, 16, 16), np.float32), np.zeros((2, 16, 16), np.float32), {},
         errors.InputShapeError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 15), np.float32), {},
         errors.InputShapeError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((3, 16, 16), np.float32), {},
         errors.InputShapeError),
        (np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 16, 16), np.float32), {},
         errors.InputDTypeError),
        (np.full((2, 16, 16, 3), 255.0, np.float32), np.zeros((2, 16, 16), np.float32), {},
         errors.InvalidArgumentError),
        (np.full((2, 16, 16, 3), np.nan, np.float32), np.zeros((2, 16, 16), np.float32), {},
         errors.NonFiniteInputError),
        ("not an image", np.zeros((2, 16, 16), np.float32), {}, errors.InputShapeError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.float32),
         {"valid_threshold": 1.0}, errors.InvalidArgumentError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.float32),
         {"scale_factor": 1.0}, errors.InvalidArgumentError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.float32),
         {"top_members": 1}, errors.InvalidArgumentError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.float32),
         {"damping": 1.0}, errors.InvalidArgumentError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.float32),
         {"chunk_size": 0}, errors.InvalidArgumentError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.float32),
         {"ssim_size": 5}, errors.InvalidArgumentError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.float32),
         {"lom_options": {"nope": 1}}, errors.InvalidArgumentError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.float32),
         {"lom_options": {"xy_weight": -1.0}}, errors.InvalidArgumentError),
        (np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 16, 16), np.float32),
         {"proposal_options": {"num_proposals": 3}}, errors.InvalidArgumentError),
    ],
)  # fmt: skip
def test_named_errors_before_work(images, heat, kwargs, error):
    with pytest.raises(error):
        summarize(images, heat, **kwargs)


# ------------------------------------------------------------------------------------------
# Rendering.


def test_render_summary_hull_components_and_grey():
    h = w = 16
    images = jnp.full((2, h, w, 3), 0.5)
    heat = np.zeros((2, h, w), np.float32)
    # Image 0: an L inside the box (its hull adds the missing corner) whose foot leaves the box
    # (the component touches the box: shown whole), a blob just above the box, connected to
    # nothing in it, and a far blob: both stay grey.
    heat[0, 4:10, 4] = 1.0
    heat[0, 9, 4:13] = 1.0
    heat[0, 2:4, 8:10] = 0.5
    heat[0, 13:15, 13:15] = 1.0
    heat[1, 5:8, 5:8] = 2 / 255  # above the rendering threshold 1/255
    box = np.array([4, 4, 9, 9])
    s = Summary(0, box, np.array([0, 1]), np.stack([box, box]), np.ones(2, np.float32),
                np.ones((2, 2), np.float32), np.array([True, False]), 1.0, True)  # fmt: skip
    img = render_summary(images, jnp.asarray(heat), s, kept_only=False, scale=1, pad=2)
    assert img.shape == (h, 2 * w + 2, 3) and img.dtype == np.float32
    t0, t1 = img[:, :w], img[:, w + 2 :]
    grey, red, cyan = 64 / 255, [1, 0, 0], [0, 1, 1]
    np.testing.assert_allclose(img[:, w : w + 2], 1.0)  # the gap
    np.testing.assert_allclose(t0[14, 14], grey)  # the far blob is not shown
    np.testing.assert_allclose(t0[0, 0], grey)
    # The hull of the L is the triangle (4,4)-(4,9)-(9,9) of pixels: its outline is red and
    # (6, 5) lies inside the hull but not in the mask: shown in colour.
    np.testing.assert_allclose(t0[6, 5], 0.5)
    np.testing.assert_allclose(t0[4, 4], red)
    np.testing.assert_allclose(t0[5, 8], grey)  # outside the triangle
    np.testing.assert_allclose(t0[2, 8], grey)
    np.testing.assert_allclose(t0[9, 12], cyan)  # the L's foot outside the box
    np.testing.assert_allclose(t1[6, 6], 0.5)  # inside the small square, shown
    np.testing.assert_allclose(t1[5, 5], red)  # hull outline drawn over the component's
    only_kept = render_summary(images, jnp.asarray(heat), s, scale=2)
    assert only_kept.shape == (2 * h, 2 * w, 3)
    rejected = s._replace(member_kept=np.array([False, False]))
    with pytest.raises(errors.InvalidArgumentError, match="kept_only=False"):
        render_summary(images, jnp.asarray(heat), rejected)
    with pytest.raises(errors.InvalidArgumentError, match="outside"):
        render_summary(images, jnp.asarray(heat), s._replace(member_images=np.array([0, 5])),
                       kept_only=False)  # fmt: skip
