"""Oracle tests for gradient, gradient x input, IG, SmoothGrad and guided backprop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax.attribution import quadrature


def test_gradient_of_linear_model_is_the_weight_column(linear):
    w, apply_fn, x = linear
    target = jnp.array([0, 1, 2, 3, 0])
    attr = xaijax.gradient(apply_fn)(w, x, target)
    expected = w.T[target].reshape(x.shape)
    np.testing.assert_allclose(attr, expected, rtol=1e-6)


def test_gradient_x_input_of_linear_model(linear):
    w, apply_fn, x = linear
    target = jnp.array([3, 2, 1, 0, 3])
    attr = xaijax.gradient_x_input(apply_fn)(w, x, target)
    np.testing.assert_allclose(attr, x * w.T[target].reshape(x.shape), rtol=1e-5, atol=1e-6)


def test_target_none_is_the_predicted_class(cnn):
    _, params, apply_fn, x = cnn
    pred = jnp.argmax(apply_fn(params, x), -1)
    explain = xaijax.gradient(apply_fn)
    np.testing.assert_allclose(explain(params, x), explain(params, x, pred), rtol=1e-6)


@pytest.mark.parametrize(
    "method",
    ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"],
)
def test_quadrature_integrates_polynomials(method):
    alphas, w = quadrature(method, 64)
    assert np.isclose(w.sum(), 1.0)
    # Error bounds for integral_0^1 3a^2 da: O(1/n) for left/right sums, O(1/n^2) otherwise.
    tol = {"gausslegendre": 1e-12, "riemann_left": 1.6 / 64, "riemann_right": 1.6 / 64}.get(
        method, 1e-3
    )
    assert abs(np.sum(w * 3 * alphas**2) - 1.0) < tol


def test_quadrature_matches_captum_grid():
    # Captum: riemann_left alphas = linspace(0, 1 - 1/n, n); trapezoid weights 1/(2(n-1)) at ends.
    a, w = quadrature("riemann_left", 4)
    np.testing.assert_allclose(a, [0, 0.25, 0.5, 0.75])
    a, w = quadrature("riemann_trapezoid", 5)
    np.testing.assert_allclose(w, [0.125, 0.25, 0.25, 0.25, 0.125])


def test_ig_is_exact_on_a_cubic():
    # f_0(x) = sum x^3 with a zero baseline: attr_i = x_i^3 (Gauss-Legendre is exact here).
    def apply_fn(p, x):
        s = jnp.sum(x.reshape(x.shape[0], -1) ** 3, axis=1)
        return jnp.stack([s, -s], axis=1)

    x = jnp.array([[1.0, -2.0, 0.5]])
    attr = xaijax.integrated_gradients(apply_fn, steps=8)(None, x, jnp.array([0]))
    np.testing.assert_allclose(attr, x**3, rtol=1e-5)


def test_ig_completeness_on_a_small_cnn(cnn):
    _, params, apply_fn, x = cnn
    target = jnp.array([0, 1, 2, 0])
    ig = xaijax.integrated_gradients(apply_fn, steps=64, chunk_size=16)
    attr = ig(params, x, target)
    delta = xaijax.convergence_delta(apply_fn, params, x, attr, target)
    logits = apply_fn(params, x)
    gap = (
        jnp.take_along_axis(logits, target[:, None], 1)[:, 0]
        - jnp.take_along_axis(apply_fn(params, jnp.zeros_like(x)), target[:, None], 1)[:, 0]
    )
    assert np.all(np.abs(delta) <= 1e-3 * np.abs(gap) + 1e-6), (delta, gap)


def test_ig_chunking_does_not_change_the_result(cnn):
    _, params, apply_fn, x = cnn
    full = xaijax.integrated_gradients(apply_fn, steps=10)(params, x)
    chunked = xaijax.integrated_gradients(apply_fn, steps=10, chunk_size=3)(params, x)
    np.testing.assert_allclose(full, chunked, rtol=1e-4, atol=1e-6)


def test_ig_baselines(cnn):
    _, params, apply_fn, x = cnn
    t = jnp.array([1, 1, 1, 1])
    zero = xaijax.integrated_gradients(apply_fn, steps=8)(params, x, t)
    given = xaijax.integrated_gradients(apply_fn, steps=8, baseline=jnp.zeros((1,) + x.shape[1:]))(
        params, x, t
    )
    np.testing.assert_allclose(zero, given, rtol=1e-5, atol=1e-7)
    shifted = xaijax.integrated_gradients(apply_fn, steps=8)(params, x, t, baseline=x)
    np.testing.assert_allclose(shifted, 0.0, atol=1e-7)  # baseline == input: nothing to attribute
    blur = xaijax.integrated_gradients(apply_fn, steps=32, baseline="blur", blur_sigma=1.0)
    attr = blur(params, x, t)
    x0 = xaijax.integrated_gradients(apply_fn, steps=2, baseline=lambda z: z * 0.5)
    assert np.isfinite(np.asarray(attr)).all() and x0(params, x, t).shape == x.shape


def test_smoothgrad_of_linear_model_is_exact(linear):
    w, apply_fn, x = linear
    t = jnp.array([0, 1, 2, 3, 0])
    key = jax.random.key(0)
    grad = w.T[t].reshape(x.shape)
    sg = xaijax.smooth(xaijax.gradient(apply_fn), num_samples=5, chunk_size=2)(w, x, t, key=key)
    np.testing.assert_allclose(sg, grad, rtol=1e-5)
    sq = xaijax.smooth(xaijax.gradient(apply_fn), num_samples=5, kind="squaregrad")(
        w, x, t, key=key
    )
    np.testing.assert_allclose(sq, grad**2, rtol=1e-5)
    var = xaijax.smooth(xaijax.gradient(apply_fn), num_samples=5, kind="vargrad")(w, x, t, key=key)
    np.testing.assert_allclose(var, 0.0, atol=1e-5)


def test_smoothgrad_noise_is_keyed_and_matches_a_manual_average(cnn):
    _, params, apply_fn, x = cnn
    t = jnp.array([0, 1, 2, 0])
    key = jax.random.key(3)
    sg = xaijax.smooth(xaijax.gradient(apply_fn), num_samples=3, noise=0.1)
    a1, a2 = sg(params, x, t, key=key), sg(params, x, t, key=key)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, sg(params, x, t, key=jax.random.key(4)))
    # Manual reference: the same noise draws, averaged by hand.
    span = (x.reshape(4, -1).max(1) - x.reshape(4, -1).min(1)).reshape(4, 1, 1, 1)
    grad = xaijax.gradient(apply_fn)
    ref = (
        sum(
            grad(
                params,
                x + 0.1 * span * jax.random.normal(jax.random.fold_in(key, j), x.shape[1:])[None],
                t,
            )
            for j in range(3)
        )
        / 3
    )
    np.testing.assert_allclose(a1, ref, rtol=1e-4, atol=1e-6)


def test_smooth_composes_with_integrated_gradients(linear):
    # Linear model, zero baseline: IG(x') = x' * w, so SmoothGrad-over-IG is the mean of
    # (x + sigma eps_j) * w over the same noise draws.
    w, apply_fn, x = linear
    t = jnp.array([0, 1, 2, 3, 0])
    key = jax.random.key(0)
    sig = xaijax.smooth(xaijax.integrated_gradients(apply_fn, steps=4), num_samples=3, noise=0.2)
    attr = sig(w, x, t, key=key)
    span = (x.reshape(5, -1).max(1) - x.reshape(5, -1).min(1)).reshape(5, 1, 1, 1)
    noisy = [
        x + 0.2 * span * jax.random.normal(jax.random.fold_in(key, j), x.shape[1:])[None]
        for j in range(3)
    ]
    expected = sum(n * w.T[t].reshape(x.shape) for n in noisy) / 3
    np.testing.assert_allclose(attr, expected, rtol=1e-4, atol=1e-5)


def test_guided_backprop_equals_gradient_without_relu(cnn):
    model, params, _, x = cnn
    tanh = type(model)(activation="tanh")
    apply_fn = lambda p, xx: tanh.apply({"params": p}, xx)  # noqa: E731
    t = jnp.array([2, 1, 0, 2])
    np.testing.assert_allclose(
        xaijax.guided_backprop(apply_fn)(params, x, t),
        xaijax.gradient(apply_fn)(params, x, t),
        rtol=1e-6,
    )
    relu_fn = lambda p, xx: model.apply({"params": p}, xx)  # noqa: E731
    guided = xaijax.guided_backprop(relu_fn)(params, x, t)
    assert not np.allclose(guided, xaijax.gradient(relu_fn)(params, x, t))


def test_guided_backprop_follows_its_rule():
    # f(x) = v . relu(W x): guided grad = W^T [(Wx > 0) & (v > 0)] v ; plain grad drops (v > 0).
    key = jax.random.key(0)
    w1 = jax.random.normal(key, (3, 6))
    v = jnp.array([[1.0], [-1.0], [0.5], [2.0], [-0.3], [0.7]])

    def apply_fn(p, x):
        h = jax.nn.relu(x @ p[0])
        return jnp.concatenate([h @ p[1], jnp.zeros((x.shape[0], 1))], axis=1)

    x = jax.random.normal(jax.random.key(1), (4, 3))
    attr = xaijax.guided_backprop(apply_fn)((w1, v), x, jnp.zeros(4, jnp.int32))
    pre = np.asarray(x @ w1)
    gate = (pre > 0) & (np.asarray(v[:, 0]) > 0)[None]
    expected = (gate * np.asarray(v[:, 0])[None]) @ np.asarray(w1).T
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)


def test_float64_ig_integrates_with_float64_nodes():
    """Under jax_enable_x64 the Gauss-Legendre nodes and weights are float64: IG of a cubic
    (16 nodes integrate its quadratic gradient exactly) meets completeness to float64 rounding.
    The landed code cast them to float32 (error ~1e-7 here, 9.5e-3 against Captum on a
    ResNet-style CNN)."""
    with jax.enable_x64(True):
        f = lambda p, x: jnp.stack([jnp.sum(x**3, axis=1), jnp.zeros(x.shape[0])], axis=1)  # noqa: E731
        x = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, (2, 5)), jnp.float64)
        attr = xaijax.integrated_gradients(f, steps=16)(None, x, jnp.array([0, 0]))
        assert attr.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(attr), np.asarray(x) ** 3, rtol=1e-12)
