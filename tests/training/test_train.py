"""Tests of train / train_or_restore: learning, determinism, checkpoints and exact resume."""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np
import optax
import pytest

from xaijax import errors, models, training
from xaijax.training import _loop

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

STEPS = 8  # every run below uses this many steps, so they share one compiled step


def _tiny(widths=(8,)):
    return models.get_model(
        "text1d", 3, vocab_size=16, embed_dim=8, widths=widths, kernel_sizes=(3,) * len(widths)
    )


def _toy_texts(n, seed=0):
    """Label c in {0, 1, 2} is the token c, planted 4 times among tokens drawn from [3, 16)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, 16, size=(n, 12)).astype(np.int32)
    labels = rng.integers(0, 3, size=n).astype(np.int32)
    for _ in range(4):
        tokens[np.arange(n), rng.integers(0, 12, size=n)] = labels
    return {"tokens": tokens, "label": labels}


KW = dict(input_key="tokens", batch_size=8, learning_rate=1e-2, progress=False)


def _same_params(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_short_training_lowers_the_loss():
    data = _toy_texts(256)
    result = training.train(_tiny(), data, steps=80, eval_data=_toy_texts(200, seed=1), **KW)
    assert result.step == 80 and result.losses.shape == (80,)
    assert np.isfinite(result.losses).all()
    assert result.losses[:5].mean() > 1.0  # about ln 3 at the start
    assert result.losses[-10:].mean() < 0.5 * result.losses[:5].mean()
    assert result.eval_accuracy >= 0.85
    assert result.resumed_from is None and result.checkpoint_dir is None


def test_batches_are_deterministic_epoch_permutations():
    b = _loop._Batches(n=10, batch_size=4, seed=7)
    idx = np.concatenate([b.indices(s) for s in range(5)])  # 20 positions = 2 epochs
    np.testing.assert_array_equal(idx[:10], np.random.default_rng([7, 0]).permutation(10))
    np.testing.assert_array_equal(idx[10:], np.random.default_rng([7, 1]).permutation(10))
    # Any step's batch is computable on its own (what exact resume relies on).
    np.testing.assert_array_equal(_loop._Batches(10, 4, 7).indices(3), idx[12:16])


def test_runs_are_deterministic_and_sources_equal_dicts():
    data = _toy_texts(64)
    a = training.train(_tiny(), data, steps=STEPS, **KW)
    b = training.train(_tiny(), data, steps=STEPS, **KW)
    _same_params(a.params, b.params)
    source = [{"tokens": t, "label": y} for t, y in zip(data["tokens"], data["label"], strict=True)]
    c = training.train(_tiny(), source, steps=STEPS, **KW)
    _same_params(a.params, c.params)
    np.testing.assert_array_equal(a.losses, c.losses)


def test_data_parallel_matches_one_device():
    assert jax.device_count() == 4  # tests/conftest.py
    data = _toy_texts(64)
    sharded = training.train(_tiny(), data, steps=STEPS, **KW)
    single = training.train(_tiny(), data, steps=STEPS, data_parallel=False, **KW)
    for x, y in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(single.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert all(len(p.devices()) == 1 for p in jax.tree.leaves(sharded.params))


def test_interrupted_training_resumes_exactly(tmp_path):
    data = _toy_texts(64)
    ref = training.train(
        _tiny(), data, steps=STEPS, checkpoint_dir=tmp_path / "ref", checkpoint_every=3, **KW
    )
    assert sorted(int(d) for d in os.listdir(tmp_path / "ref")) == [6, 8]  # max_to_keep=2

    def interrupt(step, metrics):
        assert np.isfinite(metrics["loss"])
        if step == 5:
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        training.train(
            _tiny(), data, steps=STEPS, checkpoint_dir=run, checkpoint_every=3,
            callback=interrupt, **KW,
        )  # fmt: skip
    assert sorted(int(d) for d in os.listdir(run)) == [3, 5]  # periodic + saved on interrupt
    killed = tmp_path / "killed"  # as if killed before the interrupt save: only step 3
    shutil.copytree(run, killed)
    shutil.rmtree(killed / "5")

    for directory, start in ((run, 5), (killed, 3)):
        resumed = training.train(
            _tiny(), data, steps=STEPS, checkpoint_dir=directory, checkpoint_every=3, **KW
        )
        assert resumed.resumed_from == start and resumed.step == STEPS
        _same_params(resumed.params, ref.params)
        np.testing.assert_array_equal(resumed.losses, ref.losses)

    # A finished run is restored without training; its checkpoints are plain checkpoints.
    calls = []
    again = training.train(
        _tiny(), data, steps=STEPS, checkpoint_dir=run, callback=lambda *a: calls.append(a), **KW
    )
    assert again.resumed_from == STEPS and calls == []
    _same_params(again.params, ref.params)
    _same_params(training.restore_checkpoint(run, ref.params), ref.params)


def test_resuming_with_other_settings_or_model_raises_mismatch(tmp_path):
    data = _toy_texts(64)
    training.train(_tiny(), data, steps=STEPS, checkpoint_dir=tmp_path, **KW)
    with pytest.raises(errors.CheckpointMismatchError, match="batch_size=8.*batch_size=4"):
        training.train(
            _tiny(), data, steps=STEPS, checkpoint_dir=tmp_path, **{**KW, "batch_size": 4}
        )
    with pytest.raises(errors.CheckpointMismatchError, match=r"block1/conv/bias.*\[8\].*\[6\]"):
        training.train(_tiny(widths=(6,)), data, steps=STEPS, checkpoint_dir=tmp_path, **KW)


def test_train_or_restore_caches_by_configuration(tmp_path):
    data = _toy_texts(64)
    kw = dict(KW, steps=STEPS, cache_dir=tmp_path)
    first = training.train_or_restore("tiny", _tiny(), data, **kw)
    assert first.resumed_from is None and os.path.basename(first.checkpoint_dir).startswith("tiny-")
    second = training.train_or_restore("tiny", _tiny(), data, **kw)
    assert second.resumed_from == STEPS and second.checkpoint_dir == first.checkpoint_dir
    _same_params(first.params, second.params)
    # Other data (or settings, or model fields) -> another cache entry.
    other = training.train_or_restore("tiny", _tiny(), _toy_texts(64, seed=5), **kw)
    assert other.checkpoint_dir != first.checkpoint_dir
    with pytest.raises(errors.InvalidArgumentError, match="optimizer"):
        training.train_or_restore("tiny", _tiny(), data, optimizer=optax.sgd(0.1), **kw)
    with pytest.raises(errors.InvalidArgumentError, match="cache_dir"):
        training.train_or_restore("tiny", _tiny(), data, checkpoint_dir=tmp_path, **kw)


def test_bad_arguments_raise_named_errors():
    data = _toy_texts(16)
    with pytest.raises(errors.InvalidArgumentError, match="steps"):
        training.train(_tiny(), data, steps=0, **KW)
    with pytest.raises(errors.InvalidArgumentError, match="batch_size"):
        training.train(_tiny(), data, steps=1, **{**KW, "batch_size": -2})
    with pytest.raises(errors.InvalidArgumentError, match="seed"):
        training.train(_tiny(), data, steps=1, seed=-1, **KW)
    with pytest.raises(errors.InvalidArgumentError, match="'image'"):
        training.train(_tiny(), data, steps=1, **{**KW, "input_key": "image"})
    with pytest.raises(errors.BatchMismatchError, match="length"):
        training.train(_tiny(), {**data, "label": data["label"][:5]}, steps=1, **KW)
    with pytest.raises(errors.InvalidArgumentError, match="random-access"):
        training.train(_tiny(), 42, steps=1, **KW)


def test_params_only_checkpoint_cannot_resume_training(tmp_path):
    data = _toy_texts(16)
    result = training.train(_tiny(), data, steps=STEPS, **KW)
    training.save_checkpoint(tmp_path, result.params, step=2)
    with pytest.raises(errors.CheckpointMismatchError, match="parameters only"):
        training.train(_tiny(), data, steps=STEPS, checkpoint_dir=tmp_path, **KW)
