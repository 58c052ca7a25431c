"""Tests of save_checkpoint / restore_checkpoint: exact round trip and named errors."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors, models, training

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _params(widths=(4, 8), seed=0):
    """Random parameters with the tree of a small VGG (no compilation: eval_shape + NumPy)."""
    model = models.get_model("vgg", 3, widths=widths)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)


def _assert_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_bit_identical(tmp_path):
    params = _params()
    path = training.save_checkpoint(tmp_path, params, step=3, metadata={"note": "vgg"})
    assert os.path.isdir(path) and path.endswith("3")
    _assert_identical(training.restore_checkpoint(tmp_path, params), params)
    # Without a template: nested dicts holding the same bits.
    _assert_identical(training.restore_checkpoint(tmp_path), params)


def test_steps_are_selectable(tmp_path):
    a, b = _params(seed=1), _params(seed=2)
    training.save_checkpoint(tmp_path, a, step=1)
    training.save_checkpoint(tmp_path, b, step=2)
    _assert_identical(training.restore_checkpoint(tmp_path, a), b)  # latest
    _assert_identical(training.restore_checkpoint(tmp_path, a, step=1), a)
    with pytest.raises(errors.InvalidArgumentError, match=r"\[1, 2\]"):
        training.restore_checkpoint(tmp_path, a, step=7)
    with pytest.raises(errors.InvalidArgumentError, match="already exists"):
        training.save_checkpoint(tmp_path, a, step=2)
    _assert_identical(training.restore_checkpoint(tmp_path, a, step=2), b)  # not overwritten


def test_different_width_raises_mismatch_naming_path_and_shapes(tmp_path):
    training.save_checkpoint(tmp_path, _params(widths=(4, 8)), step=0)
    with pytest.raises(errors.CheckpointMismatchError) as e:
        training.restore_checkpoint(tmp_path, _params(widths=(4, 16)))
    msg = str(e.value)
    assert "block2/conv1/bias" in msg and "[8]" in msg and "[16]" in msg
    assert isinstance(e.value, ValueError)


def test_different_depth_raises_mismatch_naming_missing_leaf(tmp_path):
    training.save_checkpoint(tmp_path, _params(widths=(4, 8)), step=0)
    with pytest.raises(errors.CheckpointMismatchError, match="block3/conv1/bias.*missing"):
        training.restore_checkpoint(tmp_path, _params(widths=(4, 8, 8)))
    with pytest.raises(errors.CheckpointMismatchError, match="block2/conv1/bias.*lacks"):
        training.restore_checkpoint(tmp_path, _params(widths=(4,)))


def test_different_dtype_raises_mismatch(tmp_path):
    params = _params()
    training.save_checkpoint(tmp_path, params, step=0)
    like = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    with pytest.raises(errors.CheckpointMismatchError, match="float32.*bfloat16"):
        training.restore_checkpoint(tmp_path, like)


def _damage(path, item, damage):
    """Damages every OCDBT data file of one checkpoint item.

    The data files hold compressed values and b-tree nodes, some of them superseded and never
    read again, so one flipped byte or one cut file may legitimately change nothing (CI once
    hit such a byte). Every 97th byte of every data file is flipped (sizes intact: only
    checksums can notice), or every file is cut to half or emptied.
    """
    root = os.path.join(path, item)
    files = [
        os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if os.path.basename(d) == "d"
    ]
    assert files, f"no OCDBT data files under {root}"
    for target in files:
        data = bytearray(open(target, "rb").read())
        if damage == "flip":
            for i in range(7, len(data), 97):
                data[i] ^= 0xFF
        else:
            data = data[: len(data) // 2] if damage == "truncate" else b""
        with open(target, "wb") as f:
            f.write(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_array_data_raises_corrupt(tmp_path, damage):
    params = _params()
    path = training.save_checkpoint(tmp_path, params, step=5)
    _damage(path, "params", damage)
    with pytest.raises(errors.CorruptCheckpointError) as e:
        training.restore_checkpoint(tmp_path, params)
    assert path in str(e.value) and "delete" in str(e.value)


def test_damaged_metadata_raises_corrupt(tmp_path):
    params = _params()
    path = training.save_checkpoint(tmp_path, params, step=0)
    meta = os.path.join(path, "metadata", "metadata")
    with open(meta, "w") as f:
        f.write('{"format": ')
    with pytest.raises(errors.CorruptCheckpointError, match="metadata"):
        training.restore_checkpoint(tmp_path, params)
    with open(meta, "w") as f:
        json.dump({"hello": 1}, f)
    with pytest.raises(errors.CorruptCheckpointError, match="not an xaijax checkpoint"):
        training.restore_checkpoint(tmp_path, params)


def test_missing_or_empty_directory_raises_corrupt(tmp_path):
    with pytest.raises(errors.CorruptCheckpointError, match="No checkpoint directory"):
        training.restore_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.CorruptCheckpointError, match="No checkpoint found"):
        training.restore_checkpoint(tmp_path / "empty")


def test_save_argument_errors(tmp_path):
    params = _params()
    with pytest.raises(errors.InvalidArgumentError, match="JSON"):
        training.save_checkpoint(tmp_path, params, step=0, metadata={"f": object()})
    with pytest.raises(errors.InvalidArgumentError, match="step"):
        training.save_checkpoint(tmp_path, params, step=-1)


# Unwritable paths (the tests run as root, so chmod would not stop a write): a directory under
# /proc cannot be created, nor one below a regular file.
_UNWRITABLE = ["/proc/xaijax_nope/out", "file/out", "file"]


def _unwritable(tmp_path, which):
    (tmp_path / "file").write_text("x")
    return which if which.startswith("/") else tmp_path / which


@pytest.mark.parametrize("which", _UNWRITABLE)
def test_unwritable_directory_raises_output_path_error_before_writing(tmp_path, which):
    path = _unwritable(tmp_path, which)
    with pytest.raises(errors.OutputPathError, match="directory") as info:
        training.save_checkpoint(path, {"w": jnp.ones(2)}, step=1)
    assert str(path) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing was written


@pytest.mark.parametrize("which", _UNWRITABLE[:2])
def test_train_and_train_or_restore_check_the_directory_before_any_work(
    tmp_path, which, monkeypatch
):
    from xaijax.training import _loop

    monkeypatch.setattr(_loop, "_fingerprint", lambda *a: pytest.fail("work started"))
    monkeypatch.setattr(_loop, "_abstract_outputs", lambda *a: pytest.fail("work started"))
    path = _unwritable(tmp_path, which)
    data = {"tokens": np.zeros((4, 8), np.int32), "label": np.zeros(4, np.int32)}
    kw = dict(input_key="tokens", steps=1, batch_size=2, progress=False)
    model = models.get_model("text1d", 2)
    with pytest.raises(errors.OutputPathError, match="`cache_dir`"):
        training.train_or_restore("t", model, data, cache_dir=path, **kw)
    with pytest.raises(errors.OutputPathError, match="`checkpoint_dir`"):
        training.train(model, data, checkpoint_dir=path, **kw)


def _stats(features=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "batch_stats": {
            "BatchNorm_0": {
                "mean": jnp.asarray(rng.normal(size=features), jnp.float32),
                "var": jnp.asarray(rng.uniform(0.5, 2, size=features), jnp.float32),
            }
        }
    }


def test_model_state_round_trip_and_mismatch(tmp_path):
    params, stats = _params(), _stats()
    training.save_checkpoint(tmp_path, params, step=1, model_state=stats)
    _assert_identical(training.restore_model_state(tmp_path, stats), stats)
    _assert_identical(training.restore_model_state(tmp_path), stats)  # as saved
    _assert_identical(training.restore_checkpoint(tmp_path, params), params)  # params alone
    with pytest.raises(errors.CheckpointMismatchError) as e:
        training.restore_model_state(tmp_path, _stats(features=6))
    assert "batch_stats/BatchNorm_0/mean" in str(e.value) and "[6]" in str(e.value)
    with pytest.raises(errors.CheckpointMismatchError, match="lacks"):
        training.restore_model_state(tmp_path, {})
    # A parameters-only checkpoint has no model state.
    training.save_checkpoint(tmp_path / "plain", params, step=0)
    assert training.restore_model_state(tmp_path / "plain") == {}
    assert training.restore_model_state(tmp_path / "plain", {}) == {}
    with pytest.raises(errors.CheckpointMismatchError, match="holds no model state"):
        training.restore_model_state(tmp_path / "plain", stats)


def test_damaged_model_state_raises_corrupt(tmp_path):
    params, stats = _params(), _stats()
    path = training.save_checkpoint(tmp_path, params, step=0, model_state=stats)
    _damage(path, "model_state", "flip")
    with pytest.raises(errors.CorruptCheckpointError):
        training.restore_model_state(tmp_path, stats)
