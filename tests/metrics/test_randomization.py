"""Cascading model-randomisation (Adebayo et al.) on tiny linear models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors
from xaijax.metrics import RandomizationResult, cascading_randomization, kendall, spearman

D, K = 64, 3


def _linear_params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "dense": {
            "kernel": jnp.asarray(rng.normal(size=(D, K)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=(K,)), jnp.float32),
        }
    }


def linear_apply(params, x):
    return x.reshape(x.shape[0], -1) @ params["dense"]["kernel"] + params["dense"]["bias"][None]


@jax.jit
def gradient_explain(params, x, target):
    """Input gradient of the target logit: for a linear model, the target column of the kernel."""

    def score(x):
        logits = linear_apply(params, x)
        return jnp.take_along_axis(logits, target[:, None], axis=1).sum()

    return jax.grad(score)(x)


#: The same function as an explainer of the linear model (what the metric takes).
grad_explainer = xaijax.explainer(gradient_explain, linear_apply)


def test_gradient_of_a_linear_model_fails_to_survive_randomisation():
    params = _linear_params()
    x = jnp.ones((4, 8, 8))
    target = jnp.array([0, 1, 2, 0])
    res = cascading_randomization(grad_explainer, params, x, target, key=jax.random.key(0))
    assert isinstance(res, RandomizationResult)
    assert res.layers == ["dense"] and res.similarity.shape == (1, 4)
    # oracle: after re-initialisation the map is |W'[:, t]|, an independent Gaussian column,
    # while the original is |W[:, t]|: Spearman over 64 values is ~N(0, 1/8)
    assert np.all(np.abs(np.asarray(res.similarity)) < 0.4)
    # examples with the same target share the same maps, hence the same similarity
    np.testing.assert_allclose(res.similarity[0, 0], res.similarity[0, 3])
    # an explanation that ignores the weights passes "perfectly": similarity exactly 1
    ignore = cascading_randomization(
        xaijax.explainer(lambda p, x, t: x * 2.0 + 1.0, linear_apply),
        params,
        x + jnp.arange(64.0).reshape(1, 8, 8),
        target,
        key=jax.random.key(0),
    )
    np.testing.assert_allclose(ignore.similarity, 1.0, atol=1e-6)


def test_cascade_is_cumulative_from_the_output_and_reinitialises_as_documented():
    rng = np.random.default_rng(1)

    def layer(std):  # same structure and shapes in every layer: one compile of the re-init
        return {
            "kernel": jnp.asarray(rng.normal(0, std, (200, 100)), jnp.float32),
            "bias": jnp.ones((100,)),
            "scale": jnp.ones((100,)),  # std 0: re-drawn with its RMS (1) instead
            "step": jnp.array(7, jnp.int32),
        }

    params = {"conv": layer(0.5), "norm": layer(1.0), "head": layer(3.0)}
    seen = []

    def recording_explain(p, x, target):
        seen.append(p)
        return x

    def no_similarity(a, b):
        return jnp.zeros(a.shape[0])

    recording = xaijax.explainer(recording_explain, lambda p, x: jnp.zeros((x.shape[0], 2)))
    res = cascading_randomization(
        recording,
        params,
        jnp.ones((2, 4)),
        key=jax.random.key(3),
        similarity=no_similarity,
    )
    assert res.layers == ["head", "norm", "conv"]  # default: reverse insertion order
    assert res.similarity.shape == (3, 2)
    original, step0, step1, step2 = seen
    assert original is params
    # step 0: only the head changed
    assert not np.allclose(step0["head"]["kernel"], params["head"]["kernel"])
    for name in ("norm", "conv"):
        for leaf in ("kernel", "scale"):
            np.testing.assert_array_equal(step0[name][leaf], params[name][leaf])
    # step 1: head kept its randomised values, norm randomised too, conv untouched
    np.testing.assert_array_equal(step1["head"]["kernel"], step0["head"]["kernel"])
    assert not np.allclose(step1["norm"]["kernel"], params["norm"]["kernel"])
    np.testing.assert_array_equal(step1["conv"]["kernel"], params["conv"]["kernel"])
    # step 2: everything randomised, each layer with its own noise
    assert not np.allclose(step2["conv"]["kernel"], params["conv"]["kernel"])
    assert not np.allclose(step2["conv"]["kernel"] / 0.5, step2["head"]["kernel"] / 3.0)
    for name, std in (("conv", 0.5), ("norm", 1.0), ("head", 3.0)):
        new, old = step2[name], params[name]
        np.testing.assert_array_equal(new["bias"], 0.0)  # biases -> 0
        np.testing.assert_array_equal(new["step"], 7)  # integer leaves kept
        assert new["kernel"].shape == old["kernel"].shape
        assert new["kernel"].dtype == old["kernel"].dtype
        # Gaussian noise with the leaf's own std (RMS when the std is 0)
        np.testing.assert_allclose(np.std(new["kernel"]), np.std(old["kernel"]), rtol=0.05)
        assert abs(float(np.mean(new["kernel"]))) < 0.05 * std
        np.testing.assert_allclose(np.std(new["scale"]), 1.0, rtol=0.25)
    # same key -> same randomisation
    seen.clear()
    cascading_randomization(
        recording,
        params,
        jnp.ones((2, 4)),
        key=jax.random.key(3),
        layers=["head"],
        similarity=no_similarity,
    )
    np.testing.assert_array_equal(seen[1]["head"]["kernel"], step0["head"]["kernel"])


def test_linen_variables_dict_and_custom_similarity():
    inner = _linear_params()
    variables = {"params": inner}

    def explain(p, x, target):
        return gradient_explain(p["params"], x, target)

    x = jnp.ones((2, 8, 8))
    target = jnp.array([0, 1])
    on_variables = xaijax.explainer(explain, lambda v, x: linear_apply(v["params"], x))
    res = cascading_randomization(
        on_variables,
        variables,
        x,
        target,
        key=jax.random.key(0),
        similarity=kendall,
        absolute=False,
    )
    assert res.layers == ["dense"]
    flat = cascading_randomization(
        grad_explainer,
        inner,
        x,
        target,
        key=jax.random.key(0),
        similarity=kendall,
        absolute=False,
    )
    np.testing.assert_allclose(res.similarity, flat.similarity)
    ref = kendall(
        gradient_explain(inner, x, target),
        gradient_explain({"dense": {"kernel": jnp.zeros((D, K)), "bias": jnp.zeros(K)}}, x, target),
    )
    assert ref.shape == (2,)  # sanity of the helper itself: a zero map gives 0, not NaN
    np.testing.assert_array_equal(ref, 0.0)


def test_errors():
    params = _linear_params()
    x = jnp.ones((2, 8, 8))
    with pytest.raises(errors.UnknownLayerError, match=r"\['dense'\]") as info:
        cascading_randomization(
            grad_explainer, params, x, key=jax.random.key(0), layers=["Dense_0"]
        )
    assert "Dense_0" in str(info.value)
    with pytest.raises(errors.MissingKeyError, match="key"):
        cascading_randomization(grad_explainer, params, x, key=None)
    with pytest.raises(errors.InvalidArgumentError, match="layers"):
        cascading_randomization(grad_explainer, params, x, key=jax.random.key(0), layers="dense")
    with pytest.raises(errors.InvalidArgumentError, match="empty"):
        cascading_randomization(grad_explainer, params, x, key=jax.random.key(0), layers=[])
    with pytest.raises(errors.InvalidArgumentError, match="params"):
        cascading_randomization(grad_explainer, [1.0], x, key=jax.random.key(0))


def test_spearman_is_the_default_similarity():
    params = _linear_params()
    x = jnp.ones((2, 8, 8))
    target = jnp.array([0, 1])
    a = cascading_randomization(grad_explainer, params, x, target, key=jax.random.key(5))
    b = cascading_randomization(
        grad_explainer,
        params,
        x,
        target,
        key=jax.random.key(5),
        similarity=spearman,
        absolute=True,
    )
    np.testing.assert_array_equal(a.similarity, b.similarity)


def test_with_the_library_gradient_explainer():
    from xaijax.attribution import gradient  # lazily: metrics itself never imports attribution

    params = _linear_params(2)
    x = jnp.ones((4, 8, 8))
    target = jnp.array([0, 1, 2, 0])
    res = cascading_randomization(gradient(linear_apply), params, x, target, key=jax.random.key(0))
    ours = cascading_randomization(grad_explainer, params, x, target, key=jax.random.key(0))
    np.testing.assert_allclose(res.similarity, ours.similarity, atol=1e-6)
    assert np.all(np.abs(np.asarray(res.similarity)) < 0.4)


def test_takes_an_explainer_through_jit_and_partial_and_refuses_a_bare_function():
    """jax.jit and functools.partial of an explainer give the identical result; a bare function
    (which names no model) raises NotAnExplainerError, before any work."""
    import functools

    params = _linear_params(3)
    x = jnp.ones((2, 8, 8))
    target = jnp.array([0, 2])
    want = cascading_randomization(grad_explainer, params, x, target, key=jax.random.key(1))
    for wrapped in (jax.jit(grad_explainer), functools.partial(grad_explainer)):
        got = cascading_randomization(wrapped, params, x, target, key=jax.random.key(1))
        assert got.layers == want.layers
        np.testing.assert_array_equal(got.similarity, want.similarity)
    for bare in (gradient_explain, lambda p, x, t: gradient_explain(p, x, t)):
        with pytest.raises(errors.NotAnExplainerError, match="xaijax.explainer"):
            cascading_randomization(bare, params, x, target, key=jax.random.key(1))


def test_inputs_are_checked_once_and_nan_maps_raise():
    params = _linear_params()
    x = jnp.ones((2, 8, 8))
    key = jax.random.key(0)
    with pytest.raises(errors.NonFiniteInputError):
        cascading_randomization(grad_explainer, params, x.at[0, 0, 0].set(jnp.nan), key=key)
    with pytest.raises(errors.TargetOutOfRangeError):
        cascading_randomization(grad_explainer, params, x, jnp.array([0, K]), key=key)
    with pytest.raises(errors.InvalidKeyError):
        cascading_randomization(grad_explainer, params, x, key=jnp.array([1.0, 2.0]))

    def nan_after_randomising(p, xx, t):  # finite for the original weights only
        same = jnp.all(p["dense"]["kernel"] == params["dense"]["kernel"])
        return jnp.where(same, xx, jnp.nan)

    nan_explainer = xaijax.explainer(nan_after_randomising, linear_apply)
    with pytest.raises(errors.NonFiniteOutputError, match=r"\['dense'\]"):
        cascading_randomization(nan_explainer, params, x, key=key)


def test_a_stochastic_explainer_gets_the_same_key_at_every_step():
    """smooth(gradient) of a model that ignores the weights: the same noise at every step, so
    the maps are identical and the similarity is exactly 1 (a fresh key per step would not)."""
    params = _linear_params()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8)), jnp.float32)

    def quadratic(p, xx):  # independent of the weights; its gradient 2x sees the noise
        s = jnp.sum(xx.reshape(xx.shape[0], -1) ** 2, axis=1)
        return jnp.stack([s, -s], axis=1)

    sg = xaijax.smooth(xaijax.gradient(quadratic), num_samples=2, noise=0.5)
    res = cascading_randomization(sg, params, x, jnp.array([0, 1]), key=jax.random.key(0))
    np.testing.assert_allclose(res.similarity, 1.0, atol=1e-6)
    with pytest.raises(errors.MissingKeyError):
        cascading_randomization(sg, params, x, key=None)
