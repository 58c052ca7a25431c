"""Synthetic benchmark videos: the class is the motion, and the masks follow it."""

from __future__ import annotations

import numpy as np
import pytest

from xaijax import errors
from xaijax.data import synthetic

N, T, S = 160, 16, 32


@pytest.fixture(scope="module")
def clips():
    return synthetic.make_videos(N, seed=0, split="train")


def test_shapes_and_dtypes(clips):
    assert clips["video"].shape == (N, T, S, S, 3) and clips["video"].dtype == np.float32
    assert clips["label"].shape == (N,) and clips["label"].dtype == np.int32
    assert clips["object_mask"].shape == (N, T, S, S) and clips["object_mask"].dtype == np.bool_
    assert clips["box"].shape == (N, T, 4) and clips["keypoints"].shape == (N, T, 2)
    assert 0.0 <= clips["video"].min() and clips["video"].max() <= 1.0
    counts = np.bincount(clips["label"], minlength=10)
    assert counts.min() == 16 == counts.max()  # balanced in every prefix


def test_deterministic_and_seeded():
    a = synthetic.make_videos(6, seed=2)
    b = synthetic.make_videos(6, seed=2)
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    assert not np.array_equal(a["video"], synthetic.make_videos(6, seed=3)["video"])


def _centroids(mask):
    ys = np.arange(S)[:, None]
    xs = np.arange(S)[None, :]
    area = mask.sum(axis=(-2, -1))
    return (mask * ys).sum(axis=(-2, -1)) / area, (mask * xs).sum(axis=(-2, -1)) / area, area


def test_masks_follow_the_motion_of_each_class(clips):
    cy, cx, area = _centroids(clips["object_mask"])
    assert np.all(area > 10)  # the object is visible in every frame
    names = np.asarray(synthetic.MOTION_NAMES)[clips["label"]]
    dy, dx = cy[:, -1] - cy[:, 0], cx[:, -1] - cx[:, 0]
    ky, kx = clips["keypoints"][..., 0] - cy, clips["keypoints"][..., 1] - cx
    # Heading angle of the head around the centroid, unwrapped over frames.
    turn = np.diff(np.unwrap(np.arctan2(ky, kx), axis=1), axis=1).sum(axis=1)
    far = 0.2 * S
    for i, name in enumerate(names):
        if name == "right":
            assert dx[i] > far and abs(dy[i]) < 2, (i, dx[i], dy[i])
        elif name == "left":
            assert dx[i] < -far and abs(dy[i]) < 2
        elif name == "down":  # image y grows downwards
            assert dy[i] > far and abs(dx[i]) < 2
        elif name == "up":
            assert dy[i] < -far and abs(dx[i]) < 2
        elif name in ("rotate_cw", "rotate_ccw"):
            assert abs(dx[i]) < 2 and abs(dy[i]) < 2
            # Clockwise on screen = increasing angle in (x right, y down) coordinates.
            assert (turn[i] > 2.0) if name == "rotate_cw" else (turn[i] < -2.0), turn[i]
        elif name in ("grow", "shrink"):
            ratio = area[i, -1] / area[i, 0]
            assert (ratio > 2.0) if name == "grow" else (ratio < 0.5), ratio
        elif name in ("oscillate_h", "oscillate_v"):
            along = cx[i] if name == "oscillate_h" else cy[i]
            across = cy[i] if name == "oscillate_h" else cx[i]
            assert abs(along[-1] - along[0]) < 1.5  # back where it started
            assert np.ptp(along) > 0.3 * S and np.ptp(across) < 2


def test_masks_agree_with_pixels_and_the_background_is_static(clips):
    video, mask = clips["video"], clips["object_mask"]
    for i in range(0, N, 9):
        free = ~mask[i, 0] & ~mask[i, -1]
        np.testing.assert_array_equal(video[i, 0][free], video[i, -1][free])
        # Object pixels take one of the two object colours; they change where the object moves.
        obj = video[i][mask[i]]
        assert len(np.unique(obj, axis=0)) == 2
        moved = mask[i, 0] != mask[i, -1]
        if moved.any():
            assert np.all(np.any(video[i, 0][moved] != video[i, -1][moved], axis=-1))


def test_keypoints_and_boxes(clips):
    kp, mask = clips["keypoints"], clips["object_mask"]
    n, t = np.meshgrid(np.arange(N), np.arange(T), indexing="ij")
    assert np.all(mask[n, t, kp[..., 0].astype(int), kp[..., 1].astype(int)])
    for i in range(0, N, 11):
        ys, xs = np.nonzero(mask[i, 5])
        np.testing.assert_array_equal(
            clips["box"][i, 5], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
        )
    # The object never leaves the frame (1 px margin).
    assert clips["box"][..., :2].min() >= 1 and clips["box"][..., 2:].max() <= S - 1


def test_config_options():
    cfg = synthetic.VideoConfig(num_frames=8, image_size=24, num_classes=4, num_distractors=0)
    v = synthetic.make_videos(8, config=cfg)
    assert v["video"].shape == (8, 8, 24, 24, 3)
    assert set(v["label"].tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    "kwargs",
    [{"num_frames": 2}, {"image_size": 8}, {"num_classes": 11}, {"num_classes": 1}],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(errors.InvalidArgumentError):
        synthetic.VideoConfig(**kwargs)


def test_bad_arguments_raise():
    with pytest.raises(errors.InvalidArgumentError, match="num"):
        synthetic.make_videos(0)
    with pytest.raises(errors.InvalidArgumentError, match="config"):
        synthetic.make_videos(2, config=synthetic.ImageConfig())
