"""Real-dataset loaders, tested offline with tfds.testing.mock_data (nothing is downloaded)."""

from __future__ import annotations

import zlib

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from xaijax import errors
from xaijax.data import batches
from xaijax.data import tfds as xtfds


@pytest.fixture
def mock():
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


EXPECTED = {
    "cifar10": {"image": ((20, 20, 3), np.float32), "label": ((), np.int32)},
    "imagenet2012": {"image": ((20, 20, 3), np.float32), "label": ((), np.int32)},
    "caltech_birds2011": {
        "image": ((20, 20, 3), np.float32),
        "label": ((), np.int32),
        "object_mask": ((20, 20), np.bool_),
        "box": ((4,), np.float32),
    },
    "imdb_reviews": {
        "tokens": ((24,), np.int32),
        "label": ((), np.int32),
        "length": ((), np.int32),
    },
    "ucf101": {"video": ((5, 20, 20, 3), np.float32), "label": ((), np.int32)},
}


@pytest.mark.parametrize("name", sorted(xtfds.DATASETS))
def test_each_dataset_with_mock_data(name, mock, tmp_path):
    src = xtfds.source(
        name, split="train", data_dir=tmp_path, image_size=20, num_frames=5, seq_len=24
    )
    assert len(src) == 4
    for i in range(len(src)):
        ex = src[i]
        assert {k: (v.shape, v.dtype) for k, v in ex.items()} == EXPECTED[name]
    for key in ("image", "video"):
        if key in ex:
            assert 0.0 <= ex[key].min() and ex[key].max() <= 1.0
    if name == "caltech_birds2011":
        box = ex["box"]
        assert 0 <= box[0] <= box[2] <= 20 and 0 <= box[1] <= box[3] <= 20
    if name == "imdb_reviews":
        assert 0 <= ex["length"] <= 24 and np.all(ex["tokens"][ex["length"] :] == 0)
        assert np.all(ex["tokens"][: ex["length"]] >= 2)
    batch = next(batches(src, 3))
    assert batch["label"].shape == (3,)
    grain_batch = next(iter(grain.MapDataset.source(src).batch(2)))
    np.testing.assert_array_equal(grain_batch["label"], [src[0]["label"], src[1]["label"]])


def test_cifar10_at_native_size_is_the_raw_image(mock, tmp_path):
    raw = tfds.data_source("cifar10", split="test", data_dir=tmp_path)
    src = xtfds.source("cifar10", split="test", data_dir=tmp_path)  # default image_size = 32
    for i in range(len(src)):
        np.testing.assert_array_equal(src[i]["image"] * 255.0, raw[i]["image"].astype(np.float32))
        assert src[i]["label"] == raw[i]["label"]


def test_imdb_tokens_follow_the_documented_tokenizer(mock, tmp_path):
    raw = tfds.data_source("imdb_reviews", split="train", data_dir=tmp_path)
    src = xtfds.source("imdb_reviews", split="train", data_dir=tmp_path, seq_len=64, vocab_size=50)
    words = raw[0]["text"].split()
    assert len(words) > 0
    expected = [2 + zlib.crc32(w.lower().encode()) % 48 for w in words][:64]
    assert src[0]["tokens"][: len(expected)].tolist() == expected
    assert src[0]["length"] == len(expected)


def test_ucf101_subsamples_frames_uniformly(mock, tmp_path):
    raw = tfds.data_source("ucf101", split="test", data_dir=tmp_path)
    src = xtfds.source("ucf101", split="test", data_dir=tmp_path, image_size=256, num_frames=3)
    frames = raw[1]["video"]
    pick = np.round(np.linspace(0, len(frames) - 1, 3)).astype(int)
    np.testing.assert_array_equal(src[1]["video"] * 255.0, frames[pick].astype(np.float32))


def test_resize_image_center_crop_and_squash():
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, 32:] = 255  # left half black, right half white
    out = xtfds.resize_image(img, 32)  # shorter side already 32: a pure centre crop
    np.testing.assert_array_equal(out[:, :16], 0.0)
    np.testing.assert_array_equal(out[:, 16:], 1.0)
    sq = xtfds.resize_image(img, 16, crop="squash")
    assert sq.shape == (16, 16, 3)
    np.testing.assert_allclose(sq[:, :7], 0.0, atol=1e-6)
    np.testing.assert_allclose(sq[:, 9:], 1.0, atol=1e-6)
    half = xtfds.resize_image(np.full((40, 60), 51, np.uint8), 20)  # grey, one channel
    assert half.shape == (20, 20, 3)
    np.testing.assert_allclose(half, 0.2, atol=1e-6)
    # Shrinking is low-pass filtered: a 1-pixel checkerboard becomes flat grey.
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    np.testing.assert_allclose(xtfds.resize_image(board, 16), 0.5, atol=0.02)


def test_mask_and_box_follow_the_crop():
    image = np.zeros((100, 200, 3), np.uint8)
    mask = np.zeros((100, 200, 1), np.uint8)
    mask[20:60, 100:150] = 255
    ex = {
        "image": image,
        "label": 7,
        "segmentation_mask": mask,
        "bbox": np.array([0.2, 0.5, 0.6, 0.75]),
    }
    src = xtfds.from_data_source([ex], "image", image_size=50)
    out = src[0]
    # Scale 0.5 -> 50 x 100, then the central 50 x 50 (columns 25..75).
    np.testing.assert_allclose(out["box"], [10.0, 25.0, 30.0, 50.0])
    ys, xs = np.nonzero(out["object_mask"])
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (10, 30, 25, 50)
    assert out["label"] == 7 and out["label"].dtype == np.int32


def test_stored_videos_decode_to_frame_lists():
    frames = [np.full((8, 8, 3), 25 * k, np.uint8) for k in range(10)]
    src = xtfds.from_data_source(
        [{"video": frames, "label": 1}], "video", image_size=8, num_frames=4
    )
    values = src[0]["video"][:, 0, 0, 0] * 255.0
    np.testing.assert_allclose(values, [0, 75, 150, 225])  # frames round(linspace(0, 9, 4))


def test_tokenize_and_vocab():
    vocab = xtfds.build_vocab(["The film, the FILM!", "a film"], vocab_size=4)
    assert vocab == {"film": 2, "the": 3}
    ids, n = xtfds.tokenize("The<br />unknown film", seq_len=5, vocab=vocab)
    assert ids.tolist() == [3, 1, 2, 0, 0] and n == 3
    ids, n = xtfds.tokenize(b"don't stop", seq_len=1, vocab_size=10)
    assert n == 1 and ids.tolist() == [2 + zlib.crc32(b"don't") % 8]


def test_unknown_dataset_name_raises():
    with pytest.raises(errors.InvalidArgumentError, match="mnist"):
        xtfds.source("mnist")
    with pytest.raises(errors.InvalidArgumentError):
        xtfds.source(3)


def test_missing_data_dir_raises(tmp_path):
    with pytest.raises(errors.InvalidArgumentError, match="data_dir"):
        xtfds.source("cifar10", data_dir=tmp_path / "nowhere")


def test_unprepared_dataset_raises_instead_of_downloading(tmp_path):
    with pytest.raises(errors.InvalidArgumentError, match="tfds build cifar10"):
        xtfds.source("cifar10", split="train", data_dir=tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [{"image_size": 0}, {"crop": "random"}, {"seq_len": -1}, {"vocab_size": 2}, {"num_frames": 0}],
)
def test_bad_options_raise(kwargs, tmp_path):
    name = "imdb_reviews" if set(kwargs) & {"seq_len", "vocab_size"} else "ucf101"
    with pytest.raises(errors.InvalidArgumentError):
        xtfds.source(name, data_dir=tmp_path, **kwargs)


def test_bad_vocab_raises():
    with pytest.raises(errors.InvalidArgumentError, match="vocab"):
        xtfds.from_data_source([], "text", vocab={"a": 0}, vocab_size=10)
    with pytest.raises(errors.InvalidArgumentError, match="kind"):
        xtfds.from_data_source([], "audio")
