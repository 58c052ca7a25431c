"""Synthetic benchmark texts: a planted key n-gram is the only evidence for the label."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from xaijax import errors
from xaijax.data import synthetic

N = 1024


@pytest.fixture(scope="module")
def texts():
    return synthetic.make_texts(N, seed=0, split="train")


def test_shapes_dtypes_and_vocabulary(texts):
    assert texts["tokens"].shape == (N, 64) and texts["tokens"].dtype == np.int32
    assert texts["label"].dtype == np.int32 and texts["span"].dtype == np.int32
    assert texts["span_mask"].shape == (N, 64) and texts["span_mask"].dtype == np.bool_
    assert texts["tokens"].min() >= 2 and texts["tokens"].max() < 200  # 0 pad, 1 unknown unused
    counts = np.bincount(texts["label"], minlength=10)
    assert counts.max() - counts.min() <= 4


def test_deterministic_and_seeded():
    a = synthetic.make_texts(50, seed=1, split="validation")
    b = synthetic.make_texts(50, seed=1, split="validation")
    for key in a:
        assert a[key].tobytes() == b[key].tobytes()
    assert not np.array_equal(a["tokens"], synthetic.make_texts(50, seed=1)["tokens"])


def test_span_holds_the_class_key(texts):
    keys = synthetic.key_ngrams()
    start, end = texts["span"][:, 0], texts["span"][:, 1]
    np.testing.assert_array_equal(end - start, 3)
    assert start.min() == 0 and end.max() == 64  # spans reach both ends
    rows = np.arange(N)[:, None]
    np.testing.assert_array_equal(
        texts["tokens"][rows, start[:, None] + np.arange(3)], keys[texts["label"]]
    )
    pos = np.arange(64)[None]
    np.testing.assert_array_equal(
        texts["span_mask"], (pos >= start[:, None]) & (pos < end[:, None])
    )


def test_no_key_occurs_outside_the_span(texts):
    keys = synthetic.key_ngrams()
    win = sliding_window_view(texts["tokens"], 3, axis=1)  # [N, 62, 3]
    hits = (win[:, :, None, :] == keys[None, None]).all(-1)  # [N, 62, C]
    i, j, k = np.nonzero(hits)
    np.testing.assert_array_equal(i, np.arange(N))  # exactly one key per sequence...
    np.testing.assert_array_equal(j, texts["span"][:, 0])  # ...at the span...
    np.testing.assert_array_equal(k, texts["label"])  # ...and it is the label's key


def test_label_is_recoverable_from_the_span_only(texts):
    keys = synthetic.key_ngrams()
    # From the span: an exact lookup.
    rows = np.arange(N)[:, None]
    span = texts["tokens"][rows, texts["span"][:, :1] + np.arange(3)]
    lookup = {tuple(k): c for c, k in enumerate(keys.tolist())}
    assert [lookup[tuple(s)] for s in span.tolist()] == texts["label"].tolist()
    # Key tokens are shared between classes: no single token identifies a class.
    assert len(np.unique(keys)) < keys.size
    # Outside the span, a bag-of-tokens classifier is at chance level on held-out data.
    test = synthetic.make_texts(N, seed=0, split="test")

    def bag(d):
        t = np.where(d["span_mask"], 0, d["tokens"])
        return np.stack([np.bincount(r, minlength=200)[2:] for r in t]).astype(np.float64)

    counts = np.stack([bag(texts)[texts["label"] == c].sum(0) + 1.0 for c in range(10)])
    logp = np.log(counts / counts.sum(1, keepdims=True))
    acc_out = np.mean(np.argmax(bag(test) @ logp.T, axis=1) == test["label"])
    assert acc_out < 0.17, acc_out  # chance = 0.1

    # The same naive Bayes with the span kept is far above chance (sanity check of the probe).
    def full(d):
        return np.stack([np.bincount(r, minlength=200)[2:] for r in d["tokens"]]).astype(float)

    counts = np.stack([full(texts)[texts["label"] == c].sum(0) + 1.0 for c in range(10)])
    logp = np.log(counts / counts.sum(1, keepdims=True))
    assert np.mean(np.argmax(full(test) @ logp.T, axis=1) == test["label"]) > 0.3


@pytest.mark.parametrize("n", [2, 5])
def test_other_ngram_sizes(n):
    cfg = synthetic.TextConfig(ngram_size=n, seq_len=32, num_classes=6)
    d = synthetic.make_texts(64, config=cfg)
    keys = synthetic.key_ngrams(cfg)
    assert keys.shape == (6, n) and len({tuple(k) for k in keys.tolist()}) == 6
    rows = np.arange(64)[:, None]
    got = d["tokens"][rows, d["span"][:, :1] + np.arange(n)]
    np.testing.assert_array_equal(got, keys[d["label"]])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seq_len": 5},
        {"ngram_size": 0},
        {"num_classes": 1},
        {"vocab_size": 10},
        {"vocab_size": 20, "num_classes": 500},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(errors.InvalidArgumentError):
        synthetic.TextConfig(**kwargs)


def test_bad_arguments_raise():
    with pytest.raises(errors.InvalidArgumentError, match="num"):
        synthetic.make_texts(-1)
    with pytest.raises(errors.InvalidArgumentError, match="split"):
        synthetic.make_texts(3, split="dev")
