"""EAT's multi-task loss against NumPy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import eat, errors


def _np_ce(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean()


def _np_sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


@pytest.fixture
def batch(phi):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)) * 2
    att = rng.normal(size=(5, 6)) * 3
    labels = rng.integers(0, 4, size=5)
    att_true = (rng.random((5, 6)) < 0.5).astype(np.float32)
    return logits, att, labels, att_true


@pytest.mark.parametrize("weight", [0.0, 0.5, 2.0])
def test_image_level_bce(batch, weight):
    logits, att, labels, att_true = batch
    loss = eat.eat_loss(weight)
    total, metrics = loss(
        {"class": jnp.asarray(logits), "attributes": jnp.asarray(att)},
        {"class": jnp.asarray(labels), "attributes": jnp.asarray(att_true)},
    )
    p = _np_sigmoid(att)
    bce = -(att_true * np.log(p) + (1 - att_true) * np.log(1 - p)).mean()
    np.testing.assert_allclose(metrics["attributes/loss"], bce, rtol=1e-5)
    np.testing.assert_allclose(total, _np_ce(logits, labels) + weight * bce, rtol=1e-5)
    acc = (logits.argmax(1) == labels).mean()
    np.testing.assert_allclose(metrics["class/accuracy"], acc)


def test_class_level_mse(batch, phi):
    logits, att, labels, _ = batch
    loss = eat.eat_loss(0.7, supervision="class", class_attribute=phi)
    out = {"class": jnp.asarray(logits), "attributes": jnp.asarray(att)}
    total, metrics = loss(out, {"class": jnp.asarray(labels), "attributes": jnp.asarray(labels)})
    mse = ((_np_sigmoid(att) - phi[labels]) ** 2).mean()
    np.testing.assert_allclose(metrics["attributes/loss"], mse, rtol=1e-5)
    np.testing.assert_allclose(total, _np_ce(logits, labels) + 0.7 * mse, rtol=1e-5)


def test_loss_errors(phi):
    with pytest.raises(errors.InvalidArgumentError, match="weight"):
        eat.eat_loss(-1.0)
    with pytest.raises(errors.InvalidArgumentError, match="supervision"):
        eat.eat_loss(supervision="pixel")
    with pytest.raises(errors.InvalidArgumentError, match="class_attribute"):
        eat.eat_loss(supervision="class")
    with pytest.raises(errors.InvalidArgumentError, match=r"\[0, 1\]"):
        eat.eat_loss(supervision="class", class_attribute=phi * 2)
    mse = eat.ClassAttributeMSE(tuple(map(tuple, phi.tolist())))
    with pytest.raises(errors.BatchMismatchError, match="label"):
        mse(jnp.zeros((2, 6)), jnp.zeros((2, 6), jnp.int32))
    with pytest.raises(errors.InputShapeError, match=r"\[B, 6\]"):
        mse(jnp.zeros((2, 5)), jnp.zeros(2, jnp.int32))
