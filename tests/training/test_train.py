"""Tests of train / train_or_restore: learning, determinism, checkpoints and exact resume."""

from __future__ import annotations

import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
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


# ---- Float-input models with state, several heads, and bad data (test-local modules). ----


class _BatchNormMLP(nn.Module):
    features: int = 8

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(self.features)(x))
        x = nn.BatchNorm(use_running_average=not train, momentum=0.8)(x)
        x = nn.Dropout(0.1, deterministic=not train)(x)
        return nn.Dense(3)(x)


class _StatsOnly(nn.Module):
    """Dense layers around a BatchNorm without parameters: only ``batch_stats``."""

    norm: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(4)(x)
        if self.norm:
            x = nn.BatchNorm(use_running_average=not train, use_scale=False, use_bias=False)(x)
        return nn.Dense(3)(x)


class _TwoHeads(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(8)(x))
        return {"class": nn.Dense(3, name="cls")(h), "attributes": nn.Dense(2, name="attr")(h)}


def _toy_vectors(n, seed=0):
    """Label c: feature c is +3; two binary attributes: label == 0, label == 2."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n).astype(np.int32)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    x[np.arange(n), labels] += 3.0
    attributes = np.stack([labels == 0, labels == 2], 1).astype(np.float32)
    return {"image": x, "label": labels, "attributes": attributes}


VKW = dict(batch_size=8, learning_rate=1e-2, progress=False)


def _first_step_with(index, n, batch_size=8, seed=0):
    batches = _loop._Batches(n, batch_size, seed)
    return next(s + 1 for s in range(100) if index in batches.indices(s))


def test_batchnorm_model_trains_resumes_exactly_and_matches_data_parallel(tmp_path):
    data, test = _toy_vectors(64), _toy_vectors(100, seed=1)
    ref = training.train(_BatchNormMLP(), data, steps=STEPS, eval_data=test, **VKW)
    init = training.create_train_state(_BatchNormMLP(), data["image"][:1], key=jax.random.key(0))
    assert jax.tree.structure(ref.model_state) == jax.tree.structure(init.model_state)
    assert np.abs(np.asarray(ref.model_state["batch_stats"]["BatchNorm_0"]["mean"])).max() > 0.01
    assert np.isfinite(ref.losses).all()
    assert ref.eval_accuracy == training.evaluate(
        _BatchNormMLP(), ref.params, test["image"], test["label"], model_state=ref.model_state
    )
    assert sorted(ref.variables) == ["batch_stats", "params"]
    # Data parallel (4 devices; BatchNorm sees the whole batch) agrees with one device.
    single = training.train(_BatchNormMLP(), data, steps=STEPS, data_parallel=False, **VKW)
    for a, b in zip(jax.tree.leaves(ref.variables), jax.tree.leaves(single.variables), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    def interrupt(step, metrics):
        if step == 5:
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        training.train(
            _BatchNormMLP(), data, steps=STEPS, checkpoint_dir=run, checkpoint_every=3,
            callback=interrupt, **VKW,
        )  # fmt: skip
    resumed = training.train(_BatchNormMLP(), data, steps=STEPS, checkpoint_dir=run, **VKW)
    assert resumed.resumed_from == 5
    _same_params(resumed.variables, ref.variables)  # parameters and running statistics
    np.testing.assert_array_equal(resumed.losses, ref.losses)
    stats = training.restore_model_state(run, ref.model_state)
    _same_params(stats, ref.model_state)


def test_resuming_without_or_with_unexpected_model_state_raises_mismatch(tmp_path):
    data = _toy_vectors(32)
    training.train(_StatsOnly(norm=True), data, steps=2, checkpoint_dir=tmp_path / "bn", **VKW)
    training.train(_StatsOnly(norm=False), data, steps=2, checkpoint_dir=tmp_path / "no", **VKW)
    # Same parameter trees: only the model state tells the runs apart.
    with pytest.raises(errors.CheckpointMismatchError, match="model state.*lacks"):
        training.train(_StatsOnly(norm=False), data, steps=4, checkpoint_dir=tmp_path / "bn", **VKW)
    with pytest.raises(errors.CheckpointMismatchError, match="holds no model state"):
        training.train(_StatsOnly(norm=True), data, steps=4, checkpoint_dir=tmp_path / "no", **VKW)


def test_multitask_training_with_a_label_key_per_head():
    data = _toy_vectors(64)
    loss = training.multitask(
        {
            "class": training.classification_loss,
            "attributes": (training.sigmoid_binary_cross_entropy, 0.5),
        }
    )
    seen = []
    result = training.train(
        _TwoHeads(), data, steps=40, loss=loss,
        label_key={"class": "label", "attributes": "attributes"},
        callback=lambda step, metrics: seen.append(metrics), **VKW,
    )  # fmt: skip
    assert sorted(seen[0]) == ["attributes/loss", "class/accuracy", "class/loss", "loss"]
    for m in (seen[0], seen[-1]):
        np.testing.assert_allclose(
            m["loss"], m["class/loss"] + 0.5 * m["attributes/loss"], rtol=1e-5
        )
    assert seen[-1]["attributes/loss"] < 0.5 * seen[0]["attributes/loss"]
    assert seen[-1]["class/loss"] < 0.5 * seen[0]["class/loss"]
    acc = training.evaluate(_TwoHeads(), result.params, data["image"], data["label"], head="class")
    assert acc > 0.6  # chance: 1/3
    with pytest.raises(errors.InvalidArgumentError, match="head="):
        training.train(
            _TwoHeads(), data, steps=2, loss=loss, eval_data=data,
            label_key={"class": "label", "attributes": "attributes"}, **VKW,
        )  # fmt: skip


def test_bad_labels_and_images_raise_before_any_step():
    calls = []
    kw = dict(VKW, steps=4, callback=lambda *a: calls.append(a))
    data = _toy_vectors(32)
    bad = {**data, "label": data["label"].copy()}
    bad["label"][17] = 3  # the model has 3 classes
    with pytest.raises(errors.TargetOutOfRangeError, match=r"`label`.*\[0, 3\)"):
        training.train(_BatchNormMLP(), bad, **kw)
    bad["label"][17] = -1
    with pytest.raises(errors.TargetOutOfRangeError, match=r"\[0, 3\)"):
        training.train(_BatchNormMLP(), bad, **kw)
    nan = {**data, "image": data["image"].copy()}
    nan["image"][30, 2] = np.nan
    with pytest.raises(errors.NonFiniteInputError, match="`image`.*before training"):
        training.train(_BatchNormMLP(), nan, **kw)
    attrs = {**data, "attributes": data["attributes"] * 2}
    loss = training.multitask(
        {"class": training.cross_entropy, "attributes": training.sigmoid_binary_cross_entropy}
    )
    with pytest.raises(errors.TargetOutOfRangeError, match=r"`attributes`.*\[0, 1\]"):
        training.train(
            _TwoHeads(), attrs, loss=loss,
            label_key={"class": "label", "attributes": "attributes"}, **kw,
        )  # fmt: skip
    # Static mistakes (float labels for cross-entropy) raise from tracing the loss.
    floats = {**data, "label": data["label"].astype(np.float32)}
    with pytest.raises(errors.InputDTypeError, match="integer class indices"):
        training.train(_BatchNormMLP(), floats, **kw)
    assert calls == []


def test_bad_example_in_a_source_is_named_with_its_step():
    data = _toy_vectors(32)
    data["image"][13, 0] = np.inf
    source = [{k: v[i] for k, v in data.items()} for i in range(32)]
    expected = _first_step_with(13, 32)
    calls = []
    with pytest.raises(errors.NonFiniteInputError, match=f"batch of step {expected}"):
        training.train(
            _BatchNormMLP(), source, steps=STEPS, callback=lambda s, m: calls.append(s), **VKW
        )
    assert calls == list(range(1, expected))  # stopped before reporting the bad step


def _nan_when_label_2(logits, labels):
    """Cross-entropy, NaN on any batch holding a label 2 (a loss undefined on some batches)."""
    ce = training.cross_entropy(logits, labels)
    return jnp.where(jnp.any(labels == 2), jnp.nan, ce)


def test_nan_loss_stops_training_naming_the_step(tmp_path):
    data = _toy_vectors(32)
    data["label"] = np.where(data["label"] == 2, 1, data["label"]).astype(np.int32)
    index = int(_loop._Batches(32, 8, 0).indices(2)[0])  # first drawn at step 3
    data["label"][index] = 2
    expected = _first_step_with(index, 32)
    assert expected == 3
    with pytest.raises(errors.NonFiniteLossError, match=f"nan at step {expected} "):
        training.train(
            _BatchNormMLP(), data, steps=STEPS, loss=_nan_when_label_2,
            checkpoint_dir=tmp_path, checkpoint_every=1, **VKW,
        )  # fmt: skip
    # Checkpoints stop before the NaN step.
    assert max(int(d) for d in os.listdir(tmp_path)) == expected - 1
    # Without checkpoints or callbacks the loop reads the losses only at the end: same error.
    with pytest.raises(errors.NonFiniteLossError, match=f"step {expected} "):
        training.train(
            _BatchNormMLP(), data, steps=STEPS, loss=_nan_when_label_2, data_parallel=False,
            **VKW,
        )  # fmt: skip
