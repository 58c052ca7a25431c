"""Tests of the train state, the jitted train step and evaluation (closed-form oracles)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xaijax import errors, models, training


def _linear_apply(params, x):
    return x @ params["w"] + params["b"][None, :]


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def linear_problem():
    rng = np.random.default_rng(0)
    params = {
        "w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
    }
    x = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, size=8), jnp.int32)
    return params, x, y


def test_train_step_matches_closed_form_sgd(linear_problem):
    """One SGD step on softmax cross-entropy of a linear model, against NumPy (float64)."""
    params, x, y = linear_problem
    tx = optax.sgd(0.5)
    state = training.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params)
    )
    new_state, metrics = training.make_train_step(_linear_apply, tx)(state, x, y)

    xn, yn = np.asarray(x, np.float64), np.asarray(y)
    w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
    logits = xn @ w + b
    p = _softmax(logits)
    loss = -np.mean(np.log(p[np.arange(8), yn]))
    dlogits = (p - np.eye(3)[yn]) / 8
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(logits.argmax(1) == yn), rtol=1e-6)
    np.testing.assert_allclose(
        new_state.params["w"], w - 0.5 * xn.T @ dlogits, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        new_state.params["b"], b - 0.5 * dlogits.sum(0), rtol=1e-5, atol=1e-6
    )
    assert int(new_state.step) == 1
    # The input state is left untouched (no donation).
    np.testing.assert_array_equal(state.params["w"], params["w"])


def test_train_step_does_not_recompile(linear_problem, assert_no_recompile):
    params, x, y = linear_problem
    tx = optax.adam(1e-2)
    state = training.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params)
    )
    step = training.make_train_step(_linear_apply, tx)
    state2, _ = assert_no_recompile(step, state, x, y)
    # A new batch of the same shape and the updated state reuse the compilation too.
    assert_no_recompile(step, state2, x[::-1], y[::-1])


def test_cross_entropy_oracle(linear_problem):
    params, x, y = linear_problem
    logits = np.asarray(_linear_apply(params, x), np.float64)
    expected = -np.mean(np.log(_softmax(logits)[np.arange(8), np.asarray(y)]))
    np.testing.assert_allclose(
        training.cross_entropy(jnp.asarray(logits, jnp.float32), y), expected, rtol=1e-5
    )


def test_create_train_state_matches_model_init():
    model = models.get_model(
        "text1d", 3, vocab_size=16, embed_dim=4, widths=(4,), kernel_sizes=(3,)
    )
    x = jnp.zeros((2, 8), jnp.int32)
    key = jax.random.key(3, impl="rbg")
    tx = optax.adam(1e-3)
    state = training.create_train_state(model, x, key=key, optimizer=tx)
    expected = jax.jit(model.init)(key, x)["params"]
    assert int(state.step) == 0
    jax.tree.map(np.testing.assert_array_equal, state.params, expected)
    jax.tree.map(np.testing.assert_array_equal, state.opt_state, tx.init(expected))


def test_create_train_state_keeps_batch_stats_and_errors():
    class WithBatchNorm(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.BatchNorm(use_running_average=False)(x))

    # BatchNorm statistics used to be refused; they are now the state's model_state.
    state = training.create_train_state(WithBatchNorm(), jnp.zeros((2, 3)), key=jax.random.key(0))
    assert sorted(state.model_state) == ["batch_stats"]
    np.testing.assert_array_equal(state.model_state["batch_stats"]["BatchNorm_0"]["var"], 1.0)
    assert sorted(state.variables) == ["batch_stats", "params"]
    with pytest.raises(errors.MissingKeyError, match="key"):
        training.create_train_state(WithBatchNorm(), jnp.zeros((2, 3)), key=None)
    with pytest.raises(errors.InvalidArgumentError, match="flax.linen.Module"):
        training.create_train_state(_linear_apply, jnp.zeros((2, 3)), key=jax.random.key(0))


def test_default_optimizer_schedule_and_errors():
    tx = training.default_optimizer(1e-2, steps=100)
    assert training.default_optimizer(1e-2, steps=100) is tx  # cached: shared compilations
    params = {"w": jnp.zeros(())}
    state = tx.init(params)
    # Adam's first step moves by the learning rate; the warm-up starts at 0.
    updates, state = tx.update({"w": jnp.ones(())}, state, params)
    assert float(updates["w"]) == 0.0
    for _ in range(5):
        updates, state = tx.update({"w": jnp.ones(())}, state, params)
    np.testing.assert_allclose(-float(updates["w"]), 1e-2, rtol=1e-3)  # end of the 5-step warm-up
    with pytest.raises(errors.InvalidArgumentError, match="learning_rate"):
        training.default_optimizer(-1.0)
    with pytest.raises(errors.InvalidArgumentError, match="steps"):
        training.default_optimizer(1e-3, steps=0)


def test_evaluate_matches_numpy_with_padded_last_batch(compile_counter):
    rng = np.random.default_rng(1)
    params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.zeros(3)}
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=10).astype(np.int32)
    expected = np.mean((x @ np.asarray(params["w"])).argmax(1) == y)
    assert training.evaluate(_linear_apply, params, x, y, batch_size=4) == pytest.approx(expected)
    assert training.evaluate(_linear_apply, params, x, y, batch_size=64) == pytest.approx(expected)
    # Ragged datasets of other lengths reuse the compiled batch-of-4 function.
    with compile_counter() as n:
        acc = training.evaluate(_linear_apply, params, x[:7], y[:7], batch_size=4)
    assert n.count == 0
    assert acc == pytest.approx(np.mean((x[:7] @ np.asarray(params["w"])).argmax(1) == y[:7]))


def test_evaluate_errors():
    params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
    x = np.zeros((5, 4), np.float32)
    with pytest.raises(errors.BatchMismatchError, match="labels"):
        training.evaluate(_linear_apply, params, x, np.zeros(4, np.int32))
    with pytest.raises(errors.InputDTypeError, match="int32"):
        training.evaluate(_linear_apply, params, x, np.zeros(5, np.float32))
    with pytest.raises(errors.InvalidArgumentError, match="batch_size"):
        training.evaluate(_linear_apply, params, x, np.zeros(5, np.int32), batch_size=0)


# ---- Models with state (BatchNorm) and randomness (dropout): test-local Linen modules. ----

MOMENTUM, EPS = 0.9, 1e-5


class BatchNormNet(nn.Module):
    """BatchNorm on the input, then one dense layer: the running stats have a NumPy oracle."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM, epsilon=EPS)(x)
        return nn.Dense(3)(x)


class DropoutNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(3)(x)


class BatchNormDropoutNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(8)(x))
        x = nn.BatchNorm(use_running_average=not train, momentum=MOMENTUM)(x)
        x = nn.Dropout(0.25, deterministic=not train)(x)
        return nn.Dense(3)(x)


class AlwaysBatchStats(nn.Module):
    """No ``train`` argument: updates its statistics on every call, also in evaluation."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.BatchNorm(use_running_average=False)(x))


def _bn_numpy(x, mean, var, dense):
    z = (x - mean) / np.sqrt(var + EPS)  # BatchNorm's scale 1 and bias 0 at initialisation
    return z @ np.asarray(dense["kernel"], np.float64) + np.asarray(dense["bias"], np.float64)


def test_batchnorm_step_updates_running_stats_and_eval_uses_them(linear_problem):
    _, x, y = linear_problem
    x = x * 3.0 + 2.0  # a batch mean far from the initial running mean 0
    model = BatchNormNet()
    tx = optax.sgd(0.1)
    state = training.create_train_state(model, x, key=jax.random.key(0), optimizer=tx)
    new_state, metrics = training.make_train_step(model, tx)(state, x, y)

    xn = np.asarray(x, np.float64)
    mean, var = xn.mean(0), xn.var(0)  # Flax: biased batch variance
    stats = new_state.model_state["batch_stats"]["BatchNorm_0"]
    # Oracle: running = momentum * initial + (1 - momentum) * batch (initial mean 0, var 1).
    np.testing.assert_allclose(stats["mean"], MOMENTUM * 0 + (1 - MOMENTUM) * mean, rtol=1e-5)
    np.testing.assert_allclose(stats["var"], MOMENTUM * 1 + (1 - MOMENTUM) * var, rtol=1e-5)
    # The training loss used the batch statistics.
    dense = state.params["Dense_0"]
    logits = _bn_numpy(xn, mean, var, dense)
    expected = -np.mean(np.log(_softmax(logits)[np.arange(8), np.asarray(y)]))
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-4)
    # The input state is untouched.
    np.testing.assert_array_equal(state.model_state["batch_stats"]["BatchNorm_0"]["mean"], 0.0)

    # Evaluation uses the running averages: labels predicted with them give accuracy 1.
    dense = new_state.params["Dense_0"]
    running = _bn_numpy(xn, np.asarray(stats["mean"]), np.asarray(stats["var"]), dense).argmax(1)
    with_batch_stats = _bn_numpy(xn, mean, var, dense).argmax(1)
    assert (running != with_batch_stats).any()  # so batch statistics would score below 1
    acc = training.evaluate(
        model, new_state.params, x, running, model_state=new_state.model_state, batch_size=8
    )
    assert acc == 1.0
    with pytest.raises(errors.InvalidArgumentError, match="model_state"):
        training.evaluate(model, new_state.params, x, running)


def test_batchnorm_dropout_step_does_not_recompile(linear_problem, assert_no_recompile):
    _, x, y = linear_problem
    traces = []

    def counting_loss(logits, labels):
        traces.append(1)
        return training.cross_entropy(logits, labels)

    model = BatchNormDropoutNet()
    tx = optax.adam(1e-2)
    state = training.create_train_state(model, x, key=jax.random.key(0), optimizer=tx)
    step = training.make_train_step(model, tx, loss=counting_loss)
    state2, _ = assert_no_recompile(step, state, x, y)
    # The updated state (new batch stats, next step's key) and a new batch reuse it too.
    state3, _ = assert_no_recompile(step, state2, x[::-1], y[::-1])
    assert len(traces) == 1
    assert int(state3.step) == 2  # each check calls twice with the same state
    before = state.model_state["batch_stats"]["BatchNorm_0"]["mean"]
    after = state3.model_state["batch_stats"]["BatchNorm_0"]["mean"]
    assert np.abs(np.asarray(after) - np.asarray(before)).max() > 1e-3


def test_dropout_is_reproducible_from_the_key(linear_problem):
    _, x, y = linear_problem
    model = DropoutNet()
    tx = optax.sgd(0.5)
    step = training.make_train_step(model, tx)
    key = jax.random.key(0, impl="rbg")
    state = training.create_train_state(model, x, key=key, optimizer=tx)
    again = training.create_train_state(model, x, key=key, optimizer=tx)
    (a, ma), (b, mb) = step(state, x, y), step(again, x, y)
    np.testing.assert_array_equal(ma["loss"], mb["loss"])
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    # Another dropout key, same parameters: other units dropped, another loss.
    other = state.replace(key=jax.random.key(1, impl="rbg"))
    assert float(step(other, x, y)[1]["loss"]) != float(ma["loss"])
    # Step s draws from fold_in(state.key, s) (stream i: fold_in(., i)), or from `key=`.
    explicit = [
        float(step(state, x, y, key=jax.random.fold_in(state.key, s))[1]["loss"]) for s in (0, 0, 1)
    ]
    assert explicit[0] == explicit[1] == float(ma["loss"]) != explicit[2]
    _, m_next = step(a, x, y)  # step 1 of the run
    _, m_next_explicit = step(a, x, y, key=jax.random.fold_in(state.key, 1))
    assert float(m_next["loss"]) == float(m_next_explicit["loss"])
    # Evaluation is deterministic (dropout off) and needs no key.
    acc = training.evaluate(model, state.params, x, y)
    assert acc == training.evaluate(model, state.params, x, y)


def test_state_and_randomness_errors_are_named(linear_problem):
    params, x, y = linear_problem
    tx = optax.sgd(0.1)
    # A state without a key for a model that draws dropout masks.
    state = training.create_train_state(DropoutNet(), x, key=jax.random.key(0), optimizer=tx)
    with pytest.raises(errors.MissingKeyError, match="key="):
        training.make_train_step(DropoutNet(), tx)(state.replace(key=None), x, y)
    # Collections the plain apply_fn cannot use.
    bn = training.create_train_state(BatchNormNet(), x, key=jax.random.key(0), optimizer=tx)
    with pytest.raises(errors.InvalidArgumentError, match="Flax module itself"):
        training.make_train_step(_linear_apply, tx)(
            training.TrainState(
                step=bn.step,
                params=params,
                opt_state=tx.init(params),
                model_state=bn.model_state,
            ),
            x,
            y,
        )
    # A module that updates its statistics in evaluation: trains, but cannot be evaluated.
    model = AlwaysBatchStats()
    s = training.create_train_state(model, x, key=jax.random.key(0), optimizer=tx)
    s, _ = training.make_train_step(model, tx)(s, x, y)
    with pytest.raises(errors.InvalidArgumentError, match="use_running_average=not train"):
        training.evaluate(model, s.params, x, y, model_state=s.model_state)
    with pytest.raises(errors.InvalidArgumentError, match="rng_streams"):
        training.make_train_step(model, tx, rng_streams="dropout")


def test_evaluate_picks_a_head_of_dict_outputs(linear_problem):
    params, x, y = linear_problem

    def two_heads(p, x):
        return {"class": _linear_apply(p, x), "other": x}

    expected = training.evaluate(_linear_apply, params, x, y)
    assert training.evaluate(two_heads, params, x, y, head="class") == expected
    with pytest.raises(errors.InvalidArgumentError, match="head="):
        training.evaluate(two_heads, params, x, y)
    with pytest.raises(errors.InvalidArgumentError, match="'nope'"):
        training.evaluate(two_heads, params, x, y, head="nope")
