"""KernelSHAP over segments: efficiency, exact Shapley values on small games, transformations."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors
from xaijax.surrogates import kernel_shap, shapley_kernel

KEY = jax.random.key(0)


def _game_model():
    """A non-additive model of 4 segments: pairwise products and a squared term of segment sums."""

    def apply_fn(p, x):
        s = jnp.einsum("bhwc,khw->bk", x, p)  # [B, 4] per-segment sums
        logit = s[:, 0] * s[:, 1] + 0.5 * s[:, 2] ** 2 - s[:, 3] + s[:, 1] * s[:, 2] * s[:, 3]
        return jnp.stack([jnp.zeros_like(logit), logit], -1)

    seg = np.repeat(np.arange(4), 4).reshape(4, 4)  # one segment per row
    onehot = np.stack([(seg == k).astype(np.float32) for k in range(4)])
    return apply_fn, jnp.asarray(onehot), seg


def _exact_shapley(value_fn, m):
    """Brute-force Shapley values of a game over ``m`` players."""
    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for r in range(m):
            for coal in itertools.combinations(others, r):
                w = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                z = np.zeros(m)
                z[list(coal)] = 1
                z_i = z.copy()
                z_i[i] = 1
                phi[i] += w * (value_fn(z_i) - value_fn(z))
    return phi


def test_shapley_kernel_closed_form():
    m = 5
    sizes = jnp.arange(6)
    expected = [0.0] + [(m - 1) / (math.comb(m, k) * k * (m - k)) for k in range(1, 5)] + [0.0]
    np.testing.assert_allclose(np.asarray(shapley_kernel(sizes, m)), expected, rtol=1e-5)


@pytest.fixture(scope="module")
def game():
    apply_fn, params, seg = _game_model()
    x = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.0, (2, 4, 4, 1)), jnp.float32)
    return apply_fn, params, seg, x


def test_exact_shapley_values_when_coalitions_fit(game):
    apply_fn, params, seg, x = game
    explain = kernel_shap(apply_fn, num_segments=4, num_samples=20, fill=0.0)  # logits
    assert isinstance(explain, xaijax.Explainer) and explain.result == "surrogate"
    out = explain(params, x, jnp.array([1, 1]), segments=seg, key=jax.random.key(0))
    for b in range(2):
        xb = np.asarray(x[b, ..., 0])

        def value(z, xb=xb):
            img = np.where(z[seg] > 0, xb, 0.0)[None, ..., None]
            return float(apply_fn(params, jnp.asarray(img, jnp.float32))[0, 1])

        np.testing.assert_allclose(np.asarray(out.values[b]), _exact_shapley(value, 4), atol=1e-4)
    # The same with all 14 proper coalitions supplied as masks (weighted by the kernel).
    coalitions = np.array([z for z in itertools.product([0, 1], repeat=4) if 0 < sum(z) < 4])
    ext = kernel_shap(apply_fn, num_segments=4, fill=0.0)(
        params, x, jnp.array([1, 1]), segments=seg, masks=coalitions, key=jax.random.key(1)
    )
    np.testing.assert_allclose(np.asarray(ext.values), np.asarray(out.values), atol=1e-4)


def test_efficiency_batching_jit_and_no_recompile_when_sampling(game, assert_no_recompile):
    apply_fn, params, _, x = game
    seg8 = np.arange(16).reshape(4, 4) // 2  # 8 segments: 254 coalitions > 32 samples
    explain = kernel_shap(apply_fn, num_samples=32, chunk_size=16, num_segments=8)  # 3 chunks
    key = jax.random.key(3)
    batched = assert_no_recompile(explain, params, x, segments=seg8, key=key)
    total = np.asarray(batched.values).sum(-1)
    np.testing.assert_allclose(
        total, np.asarray(batched.prediction - batched.base_value), atol=1e-5
    )
    # Example 1 does not depend on its neighbour: swap the neighbour, same shapes, same result.
    other = explain(params, jnp.stack([x[1], x[1]]), segments=seg8, key=key)
    np.testing.assert_allclose(other.values[1], batched.values[1], atol=1e-6)
    np.testing.assert_allclose(other.values[0], batched.values[1], atol=1e-6)
    traced = jax.jit(lambda p, xx, s, k: explain(p, xx, segments=s, key=k))(params, x, seg8, key)
    np.testing.assert_allclose(np.asarray(traced.values), np.asarray(batched.values), atol=1e-5)


def test_a_map_with_another_segment_count_compiles_nothing(game, compile_counter):
    apply_fn, params, _, x = game
    explain = kernel_shap(apply_fn, num_samples=32, num_segments=8)
    key = jax.random.key(3)
    seg8 = np.arange(16).reshape(4, 4) // 2  # 8 labels: sampled coalitions
    jax.block_until_ready(explain(params, x, segments=seg8, key=key))
    seg3 = np.minimum(seg8, 2) * 3  # 3 labels (0, 3, 6): every coalition enumerated
    with compile_counter() as n:
        out = explain(params, x, segments=seg3, key=key)
        jax.block_until_ready(out)
    assert n.count == 0, f"a map with another number of segments compiled {n.count} time(s)"
    values = np.asarray(out.values)
    assert np.all(values[:, [1, 2, 4, 5, 7]] == 0)
    np.testing.assert_allclose(
        values.sum(-1), np.asarray(out.prediction - out.base_value), rtol=1e-5, atol=1e-5
    )


def test_probability_scores_come_from_the_model(game):
    apply_fn, params, seg, x = game
    explain = kernel_shap(
        xaijax.model(apply_fn, score="probability"), num_segments=4, num_samples=20, fill=0.0
    )
    out = explain(params, x, jnp.array([1, 1]), segments=seg, key=jax.random.key(0))
    probs = np.asarray(jax.nn.softmax(apply_fn(params, x), -1))[:, 1]
    np.testing.assert_allclose(np.asarray(out.prediction), probs, rtol=1e-5)
    for b in range(2):
        xb = np.asarray(x[b, ..., 0])

        def value(z, xb=xb):
            img = np.where(z[seg] > 0, xb, 0.0)[None, ..., None]
            return float(jax.nn.softmax(apply_fn(params, jnp.asarray(img, jnp.float32)))[0, 1])

        np.testing.assert_allclose(np.asarray(out.values[b]), _exact_shapley(value, 4), atol=1e-5)


def test_sharded_batch_reads_only_scalars(game, host_reads):
    apply_fn, params, seg, x = game
    x4 = jnp.concatenate([x, x[::-1]])
    explain = kernel_shap(apply_fn, num_samples=20, num_segments=4)
    key = jax.random.key(0)
    expected = explain(params, x4, segments=seg, key=key)
    xs = xaijax.shard_batch(x4)
    with host_reads() as shapes:
        got = explain(params, xs, segments=seg, key=key)
    assert shapes and all(s == () for s in shapes), shapes
    assert len(got.values.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(got.values), np.asarray(expected.values), atol=1e-5)


def test_a_model_with_nan_scores_raises_a_named_error(game):
    apply_fn, params, seg, x = game
    nan_model = lambda p, xx: apply_fn(p, xx) * jnp.nan  # noqa: E731
    with pytest.raises(errors.NonFiniteOutputError, match="kernel_shap"):
        kernel_shap(nan_model, num_segments=4, num_samples=20)(
            params, x, segments=seg, key=jax.random.key(0)
        )


def test_additive_model_is_recovered_from_sampled_coalitions():
    seg = np.arange(16).reshape(4, 4) // 2
    betas = jnp.asarray(np.linspace(-1, 2, 8), jnp.float32)
    additive = lambda p, xx: jnp.stack(  # noqa: E731
        [jnp.zeros(xx.shape[0]), jnp.einsum("bhwc,hw->b", xx, p)], -1
    )
    weights = jnp.asarray(np.asarray(betas)[seg] / 2, jnp.float32)
    lin = kernel_shap(additive, num_segments=8, num_samples=40, fill=0.0)(
        weights, jnp.ones((1, 4, 4, 1)), jnp.array([1]), segments=seg, key=jax.random.key(2)
    )
    np.testing.assert_allclose(np.asarray(lin.values)[0], np.asarray(betas), atol=1e-4)


def test_bad_inputs_raise_named_errors(game):
    apply_fn, params, seg, x = game
    explain = kernel_shap(apply_fn, num_segments=4, num_samples=20)
    key = jax.random.key(0)
    with pytest.raises(errors.SegmentMapError, match="1 segment"):
        explain(params, x, segments=np.zeros((4, 4), np.int32), key=key)
    with pytest.raises(errors.SegmentMapError, match="shape"):
        explain(params, x, segments=np.zeros((3, 4), np.int32), key=key)
    with pytest.raises(errors.SegmentMapError, match="num_segments"):
        explain(params, x, segments=seg + 1, key=key)
    with pytest.raises(errors.InvalidArgumentError, match="num_samples"):
        kernel_shap(apply_fn, num_segments=16, num_samples=12)(
            params, x, segments=np.arange(16).reshape(4, 4), key=key
        )
    with pytest.raises(errors.MissingKeyError):
        explain(params, x, segments=seg)
    with pytest.raises(errors.InputShapeError, match="masks"):
        explain(params, x, segments=seg, masks=np.ones((5, 3)), key=key)
    for kwargs, name in [
        ({"blur_sigma": -1.0}, "blur_sigma"),
        ({"fill": float("inf")}, "fill"),
        ({"chunk_size": 1.5}, "chunk_size"),
        ({"num_samples": -3}, "num_samples"),
        ({"paired": "yes"}, "paired"),
        ({"num_segments": 0}, "num_segments"),
    ]:
        with pytest.raises(errors.InvalidArgumentError, match=name):
            kernel_shap(apply_fn, **{"num_segments": 4, **kwargs})


# --- how replayed coalitions are weighted (issue 10: kernel-drawn masks counted the kernel twice)


def _pixel_game(m: int, seed: int = 0):
    """A non-additive game of ``m`` one-pixel segments, as a model and as a NumPy set function."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(size=m)
    pairs = np.triu(rng.normal(size=(m, m)), 1)

    def apply_fn(p, x):
        s = x.reshape(x.shape[0], -1)  # [B, m]: pixel k is segment k (fill 0 switches it off)
        logit = s @ beta + jnp.einsum("bi,ij,bj->b", s, pairs, s) + 2.0 * jnp.prod(s[:, :3], -1)
        return jnp.stack([jnp.zeros_like(logit), logit], -1)

    x = rng.uniform(0.5, 1.5, (1, 1, m, 1)).astype(np.float32)
    xs = x.reshape(m).astype(np.float64)

    def value(z):  # z [N, m] of 0/1 -> [N]
        s = z * xs
        return s @ beta + np.einsum("bi,ij,bj->b", s, pairs, s) + 2.0 * np.prod(s[:, :3], -1)

    return apply_fn, jnp.asarray(x), np.arange(m).reshape(1, m), value


def _all_coalitions(m: int) -> np.ndarray:
    return np.array(list(itertools.product([0, 1], repeat=m)), np.float64)


def _brute_force_shapley(value, m: int) -> np.ndarray:
    """phi_i = sum over S without i of |S|! (m - |S| - 1)! / m! (v(S + i) - v(S)), vectorised."""
    z = _all_coalitions(m)
    v = value(z)
    size = z.sum(1).astype(int)
    phi = np.zeros(m)
    for i in range(m):
        without = z[:, i] == 0
        with_i = z[without].copy()
        with_i[:, i] = 1
        w = np.array([math.factorial(k) * math.factorial(m - k - 1) for k in size[without]])
        phi[i] = np.sum(w / math.factorial(m) * (value(with_i) - v[without]))
    return phi


def _kernel_draws(m: int, n: int, seed: int) -> np.ndarray:
    """Coalitions drawn from the Shapley kernel distribution, as shap's and Captum's samplers do:
    a size k in 1..m-1 with probability proportional to (m - 1) / (k (m - k)), then a uniform
    subset of that size."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, m)
    p = (m - 1) / (k * (m - k))
    sizes = rng.choice(k, size=n, p=p / p.sum())
    order = np.argsort(rng.uniform(size=(n, m)), axis=1)
    return (np.argsort(order, axis=1) < sizes[:, None]).astype(np.float32)


def test_replayed_masks_are_weighted_as_the_caller_says():
    m = 6
    apply_fn, x, seg, value = _pixel_game(m)
    exact = _brute_force_shapley(value, m)
    explain = kernel_shap(apply_fn, num_segments=m, fill=0.0)
    t = jnp.array([1])
    z = _all_coalitions(m)[1:-1].astype(np.float32)  # the 2^m - 2 proper coalitions
    # Oracle 1: exact enumeration with kernel weights gives the exact Shapley values.
    for weights in ("kernel", None):
        kw = {} if weights is None else {"mask_weights": weights}
        out = explain(None, x, t, segments=seg, masks=z, key=KEY, **kw)  # "kernel" is the default
        np.testing.assert_allclose(np.asarray(out.values)[0], exact, atol=2e-4)
    kernel = np.asarray(shapley_kernel(jnp.asarray(z.sum(1)), m))
    out = explain(None, x, t, segments=seg, masks=z, key=KEY, mask_weights=kernel)
    np.testing.assert_allclose(np.asarray(out.values)[0], exact, atol=2e-4)
    # Weighting by the kernel twice (what replayed kernel-drawn masks used to get) is another
    # estimator: its limit misses the Shapley values of this non-additive game.
    twice = explain(None, x, t, segments=seg, masks=z, key=KEY, mask_weights=kernel**2)
    assert np.abs(np.asarray(twice.values)[0] - exact).max() > 0.05
    # Oracle 2: masks drawn from the kernel distribution with uniform weights converge to the
    # exact values; the same draws weighted by the kernel again stay off.
    drawn = _kernel_draws(m, 20000, seed=0)
    uniform = explain(None, x, t, segments=seg, masks=drawn, key=KEY, mask_weights="uniform")
    err_uniform = np.abs(np.asarray(uniform.values)[0] - exact).max()
    doubled = explain(None, x, t, segments=seg, masks=drawn, key=KEY, mask_weights="kernel")
    err_doubled = np.abs(np.asarray(doubled.values)[0] - exact).max()
    assert err_uniform < 0.03 and err_doubled > 2 * err_uniform, (err_uniform, err_doubled)
    # Per-example weights [B, N] and bad weights.
    per_example = explain(None, x, t, segments=seg, masks=z, key=KEY, mask_weights=kernel[None])
    np.testing.assert_allclose(np.asarray(per_example.values)[0], exact, atol=2e-4)
    for bad, words in [
        ("shap", "mask_weights"),
        (kernel[:-1], "[61]"),
        (-kernel, "non-negative"),
        (np.full_like(kernel, np.nan), "non-negative"),
    ]:
        with pytest.raises(errors.XaijaxError, match="mask_weights") as info:
            explain(None, x, t, segments=seg, masks=z, key=KEY, mask_weights=bad)
        assert words in str(info.value)
    with pytest.raises(errors.InvalidArgumentError, match="masks"):
        explain(None, x, t, segments=seg, key=jax.random.key(0), mask_weights="uniform")


def test_own_sampler_converges_to_exact_shapley_values():
    # xaijax's own sampler draws sizes from the kernel and weights every draw 1 (no double
    # counting): on a 10-player non-additive game it converges to the brute-force values.
    m = 10
    apply_fn, x, seg, value = _pixel_game(m, seed=1)
    exact = _brute_force_shapley(value, m)
    out = kernel_shap(apply_fn, num_segments=m, num_samples=1000, fill=0.0, chunk_size=1000)(
        None, x, jnp.array([1]), segments=seg, key=jax.random.key(0)
    )
    err = np.abs(np.asarray(out.values)[0] - exact).max()
    assert err < 0.05 * np.abs(exact).max(), (err, np.abs(exact).max())
