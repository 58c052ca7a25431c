"""Tests of the on-device data checks: exact detection, ragged chunks, one scalar to the host."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors
from xaijax.training import _checks

RULES = (_checks.Rule((), "class", 3),)
NAMES = {(): "label"}


def _data(n=10):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, size=n).astype(np.int32)


def _check(x, y, rules=RULES, chunk=4):
    _checks.check_arrays(x, y, rules, input_name="image", label_names=NAMES, chunk=chunk)


@pytest.mark.parametrize("where", [0, 5, 9])  # first chunk, middle, the ragged last chunk
def test_every_chunk_is_checked(where):
    x, y = _data()
    _check(x, y)  # clean data passes
    bad_y = y.copy()
    bad_y[where] = 3
    with pytest.raises(errors.TargetOutOfRangeError, match=r"`label`.*\[0, 3\)"):
        _check(x, bad_y)
    bad_x = x.copy()
    bad_x[where, 1] = -np.inf
    with pytest.raises(errors.NonFiniteInputError, match="`image`"):
        _check(bad_x, y)


def test_binary_labels_must_lie_in_unit_interval():
    x, _ = _data()
    rules = (_checks.Rule(("attributes",), "binary", 0),)
    good = {"attributes": np.full((10, 2), 0.5, np.float32)}
    _checks.check_arrays(x, good, rules, input_name="image", label_names={}, chunk=4)
    for value in (1.5, -0.1, np.nan):
        bad = {"attributes": good["attributes"].copy()}
        bad["attributes"][7, 1] = value
        with pytest.raises(errors.TargetOutOfRangeError, match=r"attributes.*\[0, 1\]"):
            _checks.check_arrays(x, bad, rules, input_name="image", label_names={}, chunk=4)


def test_device_data_is_checked_bringing_back_one_scalar(monkeypatch):
    x, y = _data()
    y[9] = 7
    x, y = jax.device_put(x), jax.device_put(y)
    # Every read of a jax array's value on the host (int(), bool(), float(), device_get,
    # tolist) goes through ArrayImpl._value: record the shapes read.
    array_type = type(jnp.zeros(()))
    value = array_type._value
    read = []

    def recording(self):
        read.append(self.shape)
        return value.fget(self)

    monkeypatch.setattr(array_type, "_value", property(recording))
    # On an accelerator, implicit device-to-host copies also raise under this guard (on CPU
    # arrays already live on the host and the guard does not fire).
    with jax.transfer_guard_device_to_host("disallow"):
        with pytest.raises(errors.TargetOutOfRangeError):
            _check(x, y)  # 3 chunks of 4
    assert read == [()]  # one scalar for the whole dataset
