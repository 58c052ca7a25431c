"""Random access to the synthetic splits, grain interop and the NumPy batcher."""

from __future__ import annotations

import pickle

import grain
import numpy as np
import pytest

from xaijax import errors
from xaijax.data import ArraySource, batches, synthetic


def _equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].tobytes() == b[key].tobytes(), key


@pytest.mark.parametrize(
    ("kind", "make", "config"),
    [
        ("images", synthetic.make_images, synthetic.ImageConfig(image_size=32, two_objects=False)),
        (
            "images",
            synthetic.make_images,
            synthetic.ImageConfig(two_objects=True, missing_part_prob=0.3),
        ),
        ("videos", synthetic.make_videos, synthetic.VideoConfig(image_size=16, num_frames=6)),
        ("texts", synthetic.make_texts, None),
    ],
)
def test_source_matches_make_for_every_index(kind, make, config):
    num = 40
    full = make(num, seed=7, split="validation", config=config)
    src = synthetic.SyntheticSource(kind, split="validation", num=num, seed=7, config=config)
    assert len(src) == num
    for i in range(num):
        _equal(src[i], {k: v[i] for k, v in full.items()})
    _equal(src[-1], src[num - 1])


def test_source_across_chunks_and_batched_reads():
    num = 600
    full = synthetic.make_images(num, seed=1)
    src = synthetic.SyntheticSource("images", num=num, seed=1)
    idx = [599, 0, 256, 255, 300, 0]
    _equal(src.get_batch(idx), {k: v[idx] for k, v in full.items()})
    for got, i in zip(src._getitems(idx), idx, strict=True):
        _equal(got, {k: v[i] for k, v in full.items()})


def test_source_bad_input():
    with pytest.raises(errors.InvalidArgumentError, match="kind"):
        synthetic.SyntheticSource("audio")
    with pytest.raises(errors.InvalidArgumentError, match="num"):
        synthetic.SyntheticSource("images", num=0)
    with pytest.raises(errors.InvalidArgumentError, match="config"):
        synthetic.SyntheticSource("texts", config=synthetic.ImageConfig())
    src = synthetic.SyntheticSource("texts", num=5)
    with pytest.raises(IndexError):
        src[5]
    with pytest.raises(IndexError):
        src[-6]
    with pytest.raises(TypeError):
        src[1.0]


def test_source_pickles_without_its_cache():
    src = synthetic.SyntheticSource("texts", num=300, seed=4)
    first = src[299]
    clone = pickle.loads(pickle.dumps(src))
    assert clone._chunks == {}
    _equal(clone[299], first)


def test_grain_reads_the_source():
    src = synthetic.SyntheticSource(
        "images", num=20, seed=2, config=synthetic.ImageConfig(image_size=32)
    )
    ds = grain.MapDataset.source(src).batch(8)
    got = list(ds)
    assert len(got) == 3 and got[-1]["image"].shape == (4, 32, 32, 3)
    full = synthetic.make_images(20, seed=2, config=synthetic.ImageConfig(image_size=32))
    _equal(got[0], {k: v[:8] for k, v in full.items()})
    shuffled = next(iter(grain.MapDataset.source(src).shuffle(seed=0).batch(20)))
    assert sorted(shuffled["label"].tolist()) == sorted(full["label"].tolist())


def test_batches_in_order_cover_every_example():
    data = {"x": np.arange(10) * 2, "y": np.arange(10)[:, None] * np.ones((1, 3))}
    got = list(batches(data, 4))
    assert [b["x"].tolist() for b in got] == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]
    assert got[0]["y"].shape == (4, 3)
    assert [len(b["x"]) for b in batches(data, 4, drop_remainder=True)] == [4, 4]
    two = list(batches(data, 4, num_epochs=2))
    assert [len(b["x"]) for b in two] == [4, 4, 2, 4, 4, 2]  # batches never straddle epochs


def test_batches_shuffle_is_deterministic_and_reshuffles_per_epoch():
    data = {"i": np.arange(50)}
    a = [b["i"] for b in batches(data, 10, shuffle_seed=3, num_epochs=2)]
    b = [b["i"] for b in batches(data, 10, shuffle_seed=3, num_epochs=2)]
    c = [b["i"] for b in batches(data, 10, shuffle_seed=4, num_epochs=2)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    first, second = np.concatenate(a[:5]), np.concatenate(a[5:])
    np.testing.assert_array_equal(np.sort(first), np.arange(50))
    np.testing.assert_array_equal(np.sort(second), np.arange(50))
    assert not np.array_equal(first, second) and not np.array_equal(first, np.arange(50))
    assert not np.array_equal(first, np.concatenate(c[:5]))


def test_batches_forever_and_over_any_source():
    class Plain:  # no get_batch: read example by example and stacked
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"v": np.full(2, i), "nested": {"w": np.int32(i)}}

    it = batches(Plain(), 2, num_epochs=None)
    got = [next(it) for _ in range(5)]
    assert [b["v"][:, 0].tolist() for b in got] == [[0, 1], [2], [0, 1], [2], [0, 1]]
    assert got[0]["nested"]["w"].tolist() == [0, 1]


def test_batches_over_a_synthetic_source_match_make():
    src = synthetic.SyntheticSource(
        "videos", num=10, seed=0, config=synthetic.VideoConfig(image_size=16)
    )
    full = synthetic.make_videos(10, seed=0, config=synthetic.VideoConfig(image_size=16))
    got = list(batches(src, 4, shuffle_seed=1))
    order = np.random.default_rng([1, 0]).permutation(10)
    for j, b in enumerate(got):
        idx = order[4 * j : 4 * j + 4]
        _equal(b, {k: v[idx] for k, v in full.items()})


def test_array_source():
    src = ArraySource({"a": np.arange(6), "b": np.ones((6, 2))})
    assert len(src) == 6 and src[-1]["a"] == 5
    with pytest.raises(errors.InvalidArgumentError):
        ArraySource({"a": np.arange(6), "b": np.ones(5)})
    with pytest.raises(errors.InvalidArgumentError):
        ArraySource({})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": 2.0},
        {"batch_size": 2, "num_epochs": 0},
        {"batch_size": 2, "shuffle_seed": -1},
        {"batch_size": 20, "drop_remainder": True},
    ],
)
def test_batches_bad_input_raises_eagerly(kwargs):
    with pytest.raises(errors.InvalidArgumentError):
        batches({"x": np.arange(5)}, **kwargs)  # raised at the call, not at first next()


def test_batches_rejects_non_sources():
    with pytest.raises(errors.InvalidArgumentError, match="source"):
        batches(42, 2)
