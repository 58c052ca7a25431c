"""Tests of the losses over model outputs: NumPy oracles, the multi-task step, named errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xaijax import errors, training

B, C, A, D = 6, 4, 5, 3  # batch, classes, attributes, input features
LAM = 0.5


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_ce(logits, labels):
    return -np.mean(_log_softmax(logits)[np.arange(len(labels)), labels])


def _np_bce(logits, targets):
    p = 1 / (1 + np.exp(-logits))
    return -np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p))


@pytest.fixture
def two_head_problem():
    rng = np.random.default_rng(0)
    params = {
        "wc": jnp.asarray(rng.normal(size=(D, C)), jnp.float32),
        "wa": jnp.asarray(rng.normal(size=(D, A)), jnp.float32),
    }
    x = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
    labels = {
        "class": jnp.asarray(rng.integers(0, C, size=B), jnp.int32),
        "attributes": jnp.asarray(rng.integers(0, 2, size=(B, A)), jnp.float32),
    }
    return params, x, labels


def _two_heads(params, x):
    """A stateless two-head model (EAT's shape): class logits and attribute logits."""
    return {"class": x @ params["wc"], "attributes": x @ params["wa"]}


def test_cross_entropy_and_bce_match_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(B, C)).astype(np.float32)
    labels = rng.integers(0, C, size=B).astype(np.int32)
    np.testing.assert_allclose(
        training.cross_entropy(logits, labels), _np_ce(logits.astype(np.float64), labels), rtol=1e-5
    )
    loss, metrics = training.classification_loss(logits, labels)
    np.testing.assert_allclose(loss, _np_ce(logits.astype(np.float64), labels), rtol=1e-5)
    assert float(metrics["accuracy"]) == pytest.approx(np.mean(logits.argmax(1) == labels))

    attr_logits = rng.normal(size=(B, A)).astype(np.float32)
    targets = rng.integers(0, 2, size=(B, A))
    expected = _np_bce(attr_logits.astype(np.float64), targets)
    for t in (targets.astype(np.float32), targets.astype(bool), targets.astype(np.int32)):
        np.testing.assert_allclose(
            training.sigmoid_binary_cross_entropy(attr_logits, t), expected, rtol=1e-5
        )


def test_multitask_step_matches_numpy_and_trains_both_heads(two_head_problem):
    """One SGD step on CE + 0.5 x BCE of a linear two-head model, against float64 NumPy."""
    params, x, labels = two_head_problem
    loss = training.multitask(
        {
            "class": (training.cross_entropy, 1.0),
            "attributes": (training.sigmoid_binary_cross_entropy, LAM),
        }
    )
    tx = optax.sgd(0.5)
    state = training.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params)
    )
    new_state, metrics = training.make_train_step(_two_heads, tx, loss=loss)(state, x, labels)

    xn = np.asarray(x, np.float64)
    wc, wa = np.asarray(params["wc"], np.float64), np.asarray(params["wa"], np.float64)
    y, t = np.asarray(labels["class"]), np.asarray(labels["attributes"], np.float64)
    zc, za = xn @ wc, xn @ wa
    ce, bce = _np_ce(zc, y), _np_bce(za, t)
    np.testing.assert_allclose(metrics["loss"], ce + LAM * bce, rtol=1e-5)
    np.testing.assert_allclose(metrics["class/loss"], ce, rtol=1e-5)
    np.testing.assert_allclose(metrics["attributes/loss"], bce, rtol=1e-5)
    # Closed-form gradients: dCE/dzc = (softmax - onehot) / B, dBCE/dza = (sigmoid - t) / (B A).
    gc = xn.T @ ((np.exp(_log_softmax(zc)) - np.eye(C)[y]) / B)
    ga = xn.T @ ((1 / (1 + np.exp(-za)) - t) / (B * A))
    np.testing.assert_allclose(new_state.params["wc"], wc - 0.5 * gc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state.params["wa"], wa - 0.5 * LAM * ga, rtol=1e-5, atol=1e-6)
    # Gradients reached both heads.
    assert np.abs(np.asarray(new_state.params["wc"]) - wc).max() > 1e-3
    assert np.abs(np.asarray(new_state.params["wa"]) - wa).max() > 1e-3


def test_multitask_over_tuple_outputs_and_term_metrics(two_head_problem):
    params, x, labels = two_head_problem
    outputs = _two_heads(params, x)
    by_key = training.multitask(
        {"class": training.classification_loss, "attributes": training.sigmoid_binary_cross_entropy}
    )
    by_position = training.multitask(
        {0: training.classification_loss, 1: training.sigmoid_binary_cross_entropy}
    )
    total, metrics = by_key(outputs, labels)
    total_t, _ = by_position(
        (outputs["class"], outputs["attributes"]), (labels["class"], labels["attributes"])
    )
    np.testing.assert_allclose(total, total_t, rtol=1e-6)
    assert sorted(metrics) == ["attributes/loss", "class/accuracy", "class/loss"]
    np.testing.assert_allclose(total, metrics["class/loss"] + metrics["attributes/loss"], rtol=1e-6)
    assert by_key.terms[0] == ("class", training.classification_loss, 1.0)


def test_loss_errors_are_named(two_head_problem):
    params, x, labels = two_head_problem
    logits = jnp.zeros((B, C))
    with pytest.raises(errors.InputDTypeError, match="astype"):
        training.cross_entropy(logits, jnp.zeros(B, jnp.float32))
    with pytest.raises(errors.BatchMismatchError, match=r"\[6\]"):
        training.cross_entropy(logits, jnp.zeros((B, 1), jnp.int32))
    with pytest.raises(errors.BatchMismatchError, match="same shape"):
        training.sigmoid_binary_cross_entropy(logits, jnp.zeros((B, C + 1)))
    with pytest.raises(errors.InputDTypeError, match="pick the head"):
        training.cross_entropy({"class": logits}, jnp.zeros(B, jnp.int32))
    with pytest.raises(errors.InvalidArgumentError, match="non-empty"):
        training.multitask({})
    with pytest.raises(errors.InvalidArgumentError, match="non-negative"):
        training.multitask({"class": (training.cross_entropy, -1.0)})
    with pytest.raises(errors.InvalidArgumentError, match="not a loss"):
        training.multitask({"class": (3, 1.0)})
    with pytest.raises(errors.InvalidArgumentError, match="'attrs'"):
        training.multitask({"attrs": training.sigmoid_binary_cross_entropy})(
            _two_heads(params, x), labels
        )
    # A loss that does not reduce to a scalar: named at trace time, inside the step.
    tx = optax.sgd(0.1)
    state = training.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params)
    )

    def vector_loss(outputs, labels):
        return optax.sigmoid_binary_cross_entropy(outputs["attributes"], labels)

    step = training.make_train_step(_two_heads, tx, loss=vector_loss)
    with pytest.raises(errors.InvalidArgumentError, match="scalar"):
        step(state, x, labels["attributes"])
    with pytest.raises(errors.InvalidArgumentError, match="loss"):
        training.make_train_step(_two_heads, tx, loss="ce")


def test_cross_entropy_refuses_concrete_labels_out_of_range_and_leaves_jit_alone():
    logits = jnp.zeros((2, 3))
    with pytest.raises(errors.TargetOutOfRangeError, match=r"index 5.*\[0, 3\)"):
        training.cross_entropy(logits, jnp.array([0, 5]))
    with pytest.raises(errors.TargetOutOfRangeError, match="negative"):
        training.classification_loss(logits, np.array([-1, 0]))
    # Under jit the labels are traced: no check, optax's NaN (documented in the docstring).
    assert np.isnan(float(jax.jit(training.cross_entropy)(logits, jnp.array([0, 5]))))
    assert float(training.cross_entropy(logits, jnp.array([0, 2]))) == pytest.approx(np.log(3))
