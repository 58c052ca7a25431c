"""LIME: recovery of a model linear in the segments, agreement with a NumPy port of the
reference algorithm (papers.md 1.2) on shared sample masks, transformations and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors
from xaijax.surrogates import fill_image, lime, sample_masks

# --- a NumPy port of lime_image / lime_base (marcotcr/lime), float64 -------------------------


def _ridge(x, y, w, alpha):
    """sklearn.linear_model.Ridge(alpha, fit_intercept=True).fit(x, y, sample_weight=w)."""
    x_off = np.average(x, axis=0, weights=w)
    y_off = np.average(y, weights=w)
    xs = (x - x_off) * np.sqrt(w)[:, None]
    ys = (y - y_off) * np.sqrt(w)
    coef = np.linalg.solve(xs.T @ xs + alpha * np.eye(x.shape[1]), xs.T @ ys)
    return coef, y_off - x_off @ coef


def _r2(x, y, w, coef, intercept):
    """sklearn.metrics.r2_score(y, x @ coef + intercept, sample_weight=w)."""
    num = np.sum(w * (y - x @ coef - intercept) ** 2)
    den = np.sum(w * (y - np.average(y, weights=w)) ** 2)
    return 1 - num / den


def _forward_selection(data, labels, weights, num_features):
    used = []
    for _ in range(min(num_features, data.shape[1])):
        best, max_ = 0, -1e8
        for f in range(data.shape[1]):
            if f in used:
                continue
            coef, b = _ridge(data[:, used + [f]], labels, weights, 0.0)
            score = _r2(data[:, used + [f]], labels, weights, coef, b)
            if score > max_:
                best, max_ = f, score
        used.append(best)
    return np.array(used)


def _select(data, labels, weights, num_features, method):
    if method == "auto":
        method = "forward_selection" if num_features <= 6 else "highest_weights"
    if method == "none":
        return np.arange(data.shape[1])
    if method == "forward_selection":
        return _forward_selection(data, labels, weights, num_features)
    coef, _ = _ridge(data, labels, weights, 0.01)
    order = sorted(range(data.shape[1]), key=lambda f: -abs(coef[f] * data[0, f]))
    return np.array(order[:num_features])


def lime_reference(
    image,
    segments,
    classifier_fn,
    data,
    label,
    *,
    hide_color=None,
    kernel_width=0.25,
    num_features=100000,
    feature_selection="auto",
):
    """``LimeImageExplainer.explain_instance`` for one label, with the samples ``data`` given."""
    fudged = image.copy()
    if hide_color is None:
        for s in np.unique(segments):
            fudged[segments == s] = image[segments == s].mean(0)
    else:
        fudged[:] = hide_color
    imgs = []
    for row in data:
        temp = image.copy()
        mask = np.zeros(segments.shape, bool)
        for z in np.where(row == 0)[0]:
            mask[segments == z] = True
        temp[mask] = fudged[mask]
        imgs.append(temp)
    labels = classifier_fn(np.array(imgs))[:, label]
    norms = np.linalg.norm(data, axis=1) * np.linalg.norm(data[0])
    sim = np.where(norms > 0, data @ data[0] / np.where(norms > 0, norms, 1), 0)
    distances = np.clip(1 - sim, 0, 2)
    weights = np.sqrt(np.exp(-(distances**2) / kernel_width**2))
    used = _select(data, labels, weights, num_features, feature_selection)
    coef, intercept = _ridge(data[:, used], labels, weights, 1.0)
    score = _r2(data[:, used], labels, weights, coef, intercept)
    local_pred = intercept + data[0, used] @ coef
    full = np.zeros(data.shape[1])
    full[used] = coef
    return full, intercept, score, local_pred, used


# --- fixtures --------------------------------------------------------------------------------


def _mlp():
    rng = np.random.default_rng(0)
    params = {
        "w1": jnp.asarray(rng.normal(size=(8 * 8 * 3, 16)) / 4, jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(16, 3)), jnp.float32),
    }

    def apply_fn(p, x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ p["w1"]) @ p["w2"]

    return apply_fn, params


@pytest.fixture(scope="module")
def setup():
    apply_fn, params = _mlp()
    rng = np.random.default_rng(1)
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    seg = (np.arange(8)[:, None] // 4) * 3 + np.minimum(np.arange(8)[None, :] // 3, 2)  # 6 cells
    seg = np.stack([seg, seg.T])
    masks = np.asarray(sample_masks(jax.random.key(3), 300, 6))
    return apply_fn, params, x, seg, masks


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # lime_image defaults: mean fill, auto -> highest_weights over all 6 features
        {"feature_selection": "auto", "num_features": 3, "fill": 0.0},  # -> forward selection
        {"feature_selection": "highest_weights", "num_features": 2},
    ],
)
def test_matches_numpy_port_of_reference_lime_on_shared_masks(setup, kwargs):
    apply_fn, params, x, seg, masks = setup
    # lime's classifier_fn returns probabilities: the model's score="probability" is its setting
    explain = lime(xaijax.model(apply_fn, score="probability"), num_segments=6, **kwargs)
    assert isinstance(explain, xaijax.Explainer) and explain.result == "surrogate"
    out = explain(params, x, jnp.array([2, 0]), segments=seg, masks=masks, key=jax.random.key(0))
    clf = jax.jit(lambda xx: jax.nn.softmax(apply_fn(params, xx)))
    classifier_fn = lambda imgs: np.asarray(clf(jnp.asarray(imgs, jnp.float32)), np.float64)  # noqa: E731
    for b, label in enumerate([2, 0]):
        coef, intercept, score, local, used = lime_reference(
            x[b].astype(np.float64),
            seg[b],
            classifier_fn,
            masks.astype(np.float64),
            label,
            hide_color=kwargs.get("fill"),
            num_features=kwargs.get("num_features", 100000),
            feature_selection=kwargs.get("feature_selection", "auto"),
        )
        assert set(np.nonzero(np.asarray(out.selected[b]))[0]) == set(used.tolist())
        np.testing.assert_allclose(np.asarray(out.coefficients[b]), coef, atol=1e-5)
        np.testing.assert_allclose(float(out.intercept[b]), intercept, atol=1e-5)
        np.testing.assert_allclose(float(out.score[b]), score, atol=1e-5)
        np.testing.assert_allclose(float(out.local_prediction[b]), local, atol=1e-5)


def _segment_linear_model(spatial, num_seg, seg, betas):
    """logit_1 = sum_k betas[k] * (mean of segment k's pixels) for inputs filled with 0."""
    w = np.zeros((2, *spatial, 1), np.float32)
    for k in range(num_seg):
        w[1][seg == k] = betas[k] / np.sum(seg == k)
    return (lambda p, x: jnp.einsum("b...c,k...c->bk", x, p)), jnp.asarray(w)


def test_recovers_a_model_linear_in_the_segments():
    seg = (np.arange(6)[:, None] // 2) * 2 + (np.arange(6)[None, :] // 3)  # 6 segments
    betas = np.array([1.5, -2.0, 0.25, 3.0, 0.0, -0.75])
    apply_fn, w = _segment_linear_model((6, 6), 6, seg, betas)
    explain = lime(apply_fn, num_segments=6, num_samples=64, fill=0.0, alpha=0.0)  # logits
    out = explain(w, jnp.ones((1, 6, 6, 1)), jnp.array([1]), segments=seg, key=jax.random.key(0))
    np.testing.assert_allclose(np.asarray(out.coefficients)[0], betas, atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.intercept), [0.0], atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.score), [1.0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.local_prediction), [betas.sum()], atol=1e-4)


def test_recovers_linear_supervoxels_in_video():
    t_idx, y_idx = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    seg2 = (t_idx // 2) * 2 + (y_idx // 2)
    seg = np.broadcast_to(seg2[:, :, None], (4, 4, 3))  # supervoxels: 2 in time x 2 in y
    betas = np.array([2.0, -1.0, 0.5, 4.0])
    apply_fn, w = _segment_linear_model((4, 4, 3), 4, seg, betas)
    explain = lime(apply_fn, num_segments=4, num_samples=32, fill=0.0, alpha=0.0)
    x = jnp.ones((1, 4, 4, 3, 1))
    out = explain(w, x, jnp.array([1]), segments=seg[None], key=jax.random.key(1))
    np.testing.assert_allclose(np.asarray(out.coefficients)[0], betas, atol=1e-4)


def test_batched_equals_per_example_jit_and_no_recompile(setup, assert_no_recompile):
    apply_fn, params, x, seg, _ = setup
    explain = lime(apply_fn, num_samples=96, chunk_size=40, num_segments=6)  # 3 chunks, padded
    key = jax.random.key(7)
    batched = assert_no_recompile(explain, params, x, segments=seg, key=key)
    # Example 0 does not depend on its neighbour: swap the neighbour, same shapes, same result.
    other = explain(params, np.stack([x[0], x[1][::-1]]), segments=seg, key=key)
    for a, b in zip(other, batched, strict=True):
        np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[0], atol=1e-6)
    assert not np.allclose(other.coefficients[1], batched.coefficients[1])
    jitted = jax.jit(lambda p, xx, s, k: explain(p, xx, segments=s, key=k))
    traced = jitted(params, x, seg, key)  # lax.map over chunks inside one program
    for a, b in zip(traced, batched, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    mapped = jax.vmap(lambda xx: explain(params, xx, segments=seg, key=key))(x[None])
    np.testing.assert_allclose(mapped.coefficients[0], batched.coefficients, atol=1e-5)
    # chunk_size counts samples per example: one chunk of all 96 gives the same fit
    whole = lime(apply_fn, num_samples=96, chunk_size=None, num_segments=6)
    for a, b in zip(whole(params, x, segments=seg, key=key), batched, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_a_map_with_another_segment_count_compiles_nothing(setup, compile_counter):
    apply_fn, params, x, seg, _ = setup
    explain = lime(apply_fn, num_samples=64, num_segments=8)
    key = jax.random.key(1)
    first = explain(params, x, segments=seg, key=key)  # 6 labels of 8
    jax.block_until_ready(first)
    fewer = np.where(seg >= 3, 7, seg)  # 4 labels: 0, 1, 2, 7
    with compile_counter() as n:
        out = explain(params, x, segments=fewer, key=key)
        jax.block_until_ready(out)
    assert n.count == 0, f"a map with another number of segments compiled {n.count} time(s)"
    coef = np.asarray(out.coefficients)
    assert np.all(coef[:, 3:7] == 0) and np.any(coef[:, 7] != 0)  # empty labels score 0


def test_sharded_batch_reads_only_scalars(setup, host_reads):
    apply_fn, params, _, _, _ = setup
    x = np.random.default_rng(2).random((4, 8, 8, 3)).astype(np.float32)
    seg = np.broadcast_to(np.arange(64).reshape(8, 8) // 16, (4, 8, 8))
    explain = lime(apply_fn, num_samples=32, num_segments=4)
    key = jax.random.key(0)
    expected = explain(params, x, segments=seg, key=key)
    xs, segs = xaijax.shard_batch((jnp.asarray(x), jnp.asarray(seg)))
    with host_reads() as shapes:
        got = explain(params, xs, segments=segs, key=key)
    assert shapes and all(s == () for s in shapes), shapes
    assert len(got.coefficients.sharding.device_set) == 4
    np.testing.assert_allclose(
        np.asarray(got.coefficients), np.asarray(expected.coefficients), atol=1e-5
    )


def test_fill_images():
    from xaijax.surrogates._perturb import fill_image

    seg = jnp.asarray(np.repeat(np.arange(4), 4).reshape(1, 4, 4))
    x = jnp.asarray(np.random.default_rng(4).random((1, 4, 4, 3)), jnp.float32)
    mean = np.asarray(fill_image(x, seg, 4, "mean", 1.0))
    np.testing.assert_allclose(mean[0, 2], np.broadcast_to(np.asarray(x)[0, 2].mean(0), (4, 3)))
    np.testing.assert_allclose(np.asarray(fill_image(x, seg, 4, 0.25, 1.0)), 0.25)
    # Blur: a row-normalised Gaussian keeps constants and spreads a delta symmetrically.
    const = jnp.full((1, 2, 9, 9, 1), 0.7)  # a video: each frame blurred on its own
    np.testing.assert_allclose(np.asarray(fill_image(const, seg, 4, "blur", 1.5)), 0.7, rtol=1e-6)
    delta = jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0)
    blurred = np.asarray(fill_image(delta, seg, 4, "blur", 1.0))[0, ..., 0]
    d = np.arange(9)[:, None] - np.arange(9)[None, :]
    k = np.exp(-0.5 * d**2) * (np.abs(d) <= 3)
    k /= k.sum(1, keepdims=True)  # truncated at 3 sigma, renormalised at the borders
    np.testing.assert_allclose(blurred, np.outer(k[:, 4], k[:, 4]), atol=1e-6)


def test_sample_masks_and_fill_image_name_bad_arguments():
    key = jax.random.key(0)
    seg = jnp.asarray(np.repeat(np.arange(4), 4).reshape(1, 4, 4))
    x = jnp.ones((1, 4, 4, 3))
    cases = [
        (lambda: sample_masks(key, -1, 4), errors.InvalidArgumentError, "num_samples"),
        (lambda: sample_masks(key, 0, 4), errors.InvalidArgumentError, "num_samples"),
        (lambda: sample_masks(key, 3, 0), errors.InvalidArgumentError, "num_segments"),
        (lambda: sample_masks(3, 3, 4), errors.InvalidKeyError, "key"),
        (lambda: fill_image(x, seg, 0), errors.InvalidArgumentError, "num_segments"),
        (lambda: fill_image(x, seg, 2), errors.SegmentMapError, "num_segments"),
        (lambda: fill_image(x, seg[:, :2], 4), errors.SegmentMapError, "shape"),
        (lambda: fill_image(x, seg, 4, float("inf")), errors.InvalidArgumentError, "fill"),
        (lambda: fill_image(x, seg, 4, "blur", 0.0), errors.InvalidArgumentError, "blur_sigma"),
        (lambda: fill_image(x[0, 0], seg, 4), errors.InputShapeError, "rank"),
    ]
    for call, exc, fragment in cases:
        with pytest.raises(exc, match=fragment):
            call()
    np.testing.assert_array_equal(np.asarray(sample_masks(key, 1, 3)), np.ones((1, 3)))


def test_degenerate_model_gives_finite_zero_coefficients():
    seg = np.repeat(np.arange(4), 4).reshape(4, 4)
    x = jnp.asarray(np.random.default_rng(4).random((1, 4, 4, 3)), jnp.float32)
    constant = xaijax.model(lambda p, xx: jnp.zeros((xx.shape[0], 3)), score="probability")
    explain = lime(constant, num_segments=4, num_samples=16, fill="blur")
    out = explain(None, x, segments=seg, key=jax.random.key(0))
    np.testing.assert_allclose(np.asarray(out.coefficients), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.score), 1.0)  # a constant is fitted exactly
    np.testing.assert_allclose(np.asarray(out.local_prediction), 1 / 3, rtol=1e-6)


def test_a_model_with_nan_scores_raises_a_named_error(setup):
    apply_fn, params, x, seg, _ = setup
    nan_model = lambda p, xx: apply_fn(p, xx) * jnp.nan  # noqa: E731
    with pytest.raises(errors.NonFiniteOutputError, match="lime"):
        lime(nan_model, num_segments=6, num_samples=16)(
            params, x, jnp.array([0, 1]), segments=seg, key=jax.random.key(0)
        )


def test_bad_inputs_raise_named_errors(setup):
    apply_fn, params, x, seg, masks = setup
    explain = lime(apply_fn, num_segments=6, num_samples=300)
    key = jax.random.key(0)
    with pytest.raises(errors.SegmentMapError, match="shape"):
        explain(params, x, segments=seg[:, :4], key=key)
    with pytest.raises(errors.SegmentMapError, match="negative"):
        explain(params, x, segments=seg - 1, key=key)
    with pytest.raises(errors.SegmentMapError, match="integer"):
        explain(params, x, segments=seg.astype(np.float32), key=key)
    with pytest.raises(errors.SegmentMapError, match="1 segment"):
        explain(params, x, segments=np.zeros_like(seg), key=key)
    with pytest.raises(errors.SegmentMapError, match="num_segments"):
        explain(params, x, segments=seg + 1, key=key)  # label 6 >= num_segments
    with pytest.raises(errors.InvalidArgumentError, match="segments"):
        explain(params, x, key=key)
    many = np.arange(64).reshape(8, 8)
    with pytest.raises(errors.InvalidArgumentError, match="num_samples"):
        lime(apply_fn, num_segments=64, num_samples=50)(params, x, segments=many, key=key)
    with pytest.raises(errors.MissingKeyError, match="key"):
        explain(params, x, segments=seg)
    with pytest.raises(errors.InvalidKeyError, match="key"):
        explain(params, x, segments=seg, key=3)
    with pytest.raises(errors.InputShapeError, match="masks"):
        explain(params, x, segments=seg, masks=masks[:, :5], key=key)
    with pytest.raises(errors.InvalidArgumentError, match="masks"):
        explain(params, x, segments=seg, masks=masks * 2, key=key)
    with pytest.raises(errors.InvalidArgumentError, match="kernel_width"):
        explain(params, x, segments=seg, key=key, kernel_width=0.5)  # a factory option
    with pytest.raises(errors.TargetOutOfRangeError, match="target"):
        explain(params, x, jnp.array([0, 3]), segments=seg, key=key)
    for kwargs, name in [
        ({"feature_selection": "lasso_path"}, "feature_selection"),
        ({"fill": "noise"}, "fill"),
        ({"fill": float("nan")}, "fill"),
        ({"kernel_width": 0.0}, "kernel_width"),
        ({"alpha": -1.0}, "alpha"),
        ({"blur_sigma": float("nan")}, "blur_sigma"),
        ({"num_samples": 0}, "num_samples"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"num_features": 0}, "num_features"),
        ({"num_segments": None}, "num_segments"),
    ]:
        with pytest.raises(errors.InvalidArgumentError, match=name):
            lime(apply_fn, **{"num_segments": 6, **kwargs})
