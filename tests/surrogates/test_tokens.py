"""LIME and KernelSHAP over token ids [B, L]: token positions (or spans) as segments, switched-off
tokens replaced by a pad id.

Oracles: closed forms on an additive bag of tokens, brute-force Shapley values and a NumPy
LIME (perturb, cosine kernel, weighted ridge) on a non-additive model, and the planted key
n-gram of the synthetic texts for the zoo's trained text model.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors, models
from xaijax.data import synthetic
from xaijax.surrogates import kernel_shap, lime

PAD = 0  # the pad id of xaijax.data.synthetic texts (their tokens are >= 2)
VALUES = jnp.array([0.0, 1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 0.25])  # a score per token id


def bag(p, ids):
    """Additive: class 0 scores the sum of the tokens' values (the pad's value is 0)."""
    s = p[ids].sum(axis=1)
    return jnp.stack([s, -s], axis=1)


def product(p, ids):
    """Not additive: class 0 is prod(1 + value) over the tokens (the pad contributes 1)."""
    s = jnp.prod(1.0 + p[ids], axis=1)
    return jnp.stack([s, jnp.zeros_like(s)], axis=1)


IDS = jnp.array([[1, 2, 3, 4, 5, 6], [7, 7, 2, 1, 3, 5]], jnp.int32)
KEY = jax.random.key(0)


# --- closed forms and reference implementations -------------------------------------------------


def test_lime_recovers_an_additive_model_per_token_and_per_span():
    explain = lime(bag, num_segments=6, num_samples=200, fill=PAD, alpha=0.0)
    out = explain(VALUES, IDS, jnp.array([0, 1]), key=KEY)
    expected = VALUES[IDS] * jnp.array([1.0, -1.0])[:, None]
    np.testing.assert_allclose(out.coefficients, expected, atol=1e-4)
    # Spans: a label map [L] shared by the batch, one coefficient per span.
    spans = jnp.array([0, 0, 1, 1, 1, 2])
    by_span = lime(bag, num_segments=3, num_samples=200, fill=PAD, alpha=0.0)
    out = by_span(VALUES, IDS, jnp.array([0, 0]), segments=spans, key=KEY)
    sums = jnp.stack([VALUES[IDS][:, :2].sum(1), VALUES[IDS][:, 2:5].sum(1), VALUES[IDS][:, 5]], 1)
    np.testing.assert_allclose(out.coefficients, sums, atol=1e-4)


def _numpy_lime(ids, masks, fill, target, alpha=1.0, kernel_width=0.25):
    """lime_text's pipeline on given masks, in float64: remove, score, cosine kernel, ridge."""
    coefs = []
    for row in np.asarray(ids):
        perturbed = np.where(masks > 0, row[None], fill)
        y = np.asarray(product(VALUES, jnp.asarray(perturbed)))[:, target].astype(np.float64)
        z = masks.astype(np.float64)
        norms = np.linalg.norm(z, axis=1) * np.linalg.norm(z[0])
        d = 1.0 - np.where(norms > 0, z @ z[0] / np.maximum(norms, 1e-12), 0.0)
        w = np.sqrt(np.exp(-(d**2) / kernel_width**2))
        x_off = np.average(z, axis=0, weights=w)
        y_off = np.average(y, weights=w)
        zs = (z - x_off) * np.sqrt(w)[:, None]
        ys = (y - y_off) * np.sqrt(w)
        coefs.append(np.linalg.solve(zs.T @ zs + alpha * np.eye(z.shape[1]), zs.T @ ys))
    return np.stack(coefs)


def test_lime_matches_a_numpy_reference_on_shared_masks():
    rng = np.random.default_rng(0)
    masks = (rng.random((64, 6)) < 0.5).astype(np.float32)
    masks[0] = 1
    explain = lime(product, num_segments=6, num_samples=64, fill=PAD)
    out = explain(VALUES, IDS, jnp.array([0, 0]), masks=masks, key=KEY)
    np.testing.assert_allclose(
        out.coefficients, _numpy_lime(IDS, masks, PAD, 0), rtol=1e-3, atol=1e-3
    )


def _shapley(values_row):
    """Brute-force Shapley values of f(S) = prod_{i in S} (1 + v_i)."""
    n = len(values_row)
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for k in range(n):
            for s in itertools.combinations(others, k):
                w = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
                base = np.prod([1.0 + values_row[j] for j in s])
                phi[i] += w * base * values_row[i]
    return phi


def test_kernel_shap_gives_exact_shapley_values_per_token():
    ids = IDS[:, :5]  # 2^5 - 2 = 30 coalitions: enumerated exactly
    explain = kernel_shap(product, num_segments=5, num_samples=64, fill=PAD)
    out = explain(VALUES, ids, jnp.array([0, 0]), key=KEY)
    expected = np.stack([_shapley(np.asarray(VALUES[r], np.float64)) for r in ids])
    np.testing.assert_allclose(out.values, expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(out.base_value, 1.0, atol=1e-6)  # all pad: the empty product


def test_batched_equals_per_example_jit_and_no_recompile(assert_no_recompile):
    for explain, field in (
        (lime(product, num_segments=6, num_samples=100, fill=PAD), "coefficients"),
        (kernel_shap(product, num_segments=6, num_samples=100, fill=PAD), "values"),
    ):
        batched = getattr(assert_no_recompile(explain, VALUES, IDS, key=KEY), field)
        single = jnp.concatenate(
            [getattr(explain(VALUES, IDS[i : i + 1], key=KEY), field) for i in range(2)]
        )
        np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
        jitted = jax.jit(explain)
        out = getattr(assert_no_recompile(jitted, VALUES, IDS, key=KEY), field)
        np.testing.assert_allclose(out, batched, rtol=1e-4, atol=1e-5)


# --- the zoo's text model -------------------------------------------------------------------------


def test_token_lime_and_kernel_shap_find_the_key_ngram(text_model):
    net, params = text_model
    apply_fn = models.apply_fn(net)
    texts = synthetic.make_texts(100, seed=0, split="test")
    x, y = jnp.asarray(texts["tokens"]), jnp.asarray(texts["label"])
    rows = np.arange(len(y))
    rates = {}
    for name, explain, field in (
        ("LIME", lime(apply_fn, num_segments=64, num_samples=300, fill=PAD), "coefficients"),
        ("KernelSHAP", kernel_shap(apply_fn, num_segments=64, num_samples=300, fill=PAD), "values"),
    ):
        scores = getattr(explain(params, x, y, key=KEY), field)
        assert scores.shape == x.shape
        rates[name] = float(np.mean(texts["span_mask"][rows, np.asarray(scores).argmax(1)]))
    print(f"key n-gram holds the top token: {rates} of 100 sequences")
    assert rates["LIME"] >= 0.9 and rates["KernelSHAP"] >= 0.9


# --- bad input ------------------------------------------------------------------------------------


def test_float_tokens_are_named(text_model):
    net, params = text_model
    apply_fn = models.apply_fn(net)
    x = jnp.asarray(synthetic.make_texts(2, seed=0, split="test")["tokens"])
    with pytest.raises(errors.InputDTypeError, match="integer token ids"):
        lime(apply_fn, num_segments=64, fill=PAD)(params, x.astype(jnp.float32), key=KEY)
    # A model that would take floats: the explainer's own check says what to do.
    floats = lambda p, xx: jnp.stack([xx.sum(1), -xx.sum(1)], 1)  # noqa: E731
    with pytest.raises(errors.InputDTypeError, match="astype\\(jnp.int32\\)"):
        lime(floats, num_segments=6, fill=PAD)(None, IDS.astype(jnp.float32), key=KEY)
    with pytest.raises(errors.InputDTypeError, match="astype\\(jnp.int32\\)"):
        kernel_shap(floats, num_segments=6, fill=PAD)(None, IDS.astype(jnp.float32), key=KEY)


@pytest.mark.parametrize("factory", [lime, kernel_shap], ids=["lime", "kernel_shap"])
def test_bad_token_arguments(factory):
    def call(x=IDS, **kw):
        opts = dict(num_segments=6, num_samples=100, fill=PAD)
        opts.update(kw.pop("opts", {}))
        return factory(bag, **opts)(VALUES, x, key=KEY, **kw)

    with pytest.raises(errors.InvalidArgumentError, match="not a token id"):
        call(opts={"fill": -1})
    with pytest.raises(errors.InvalidArgumentError, match="vocab_size"):
        factory(bag, num_segments=6, fill=8, vocab_size=8)
    with pytest.raises(errors.InvalidArgumentError, match="outside \\[0, 8\\)"):
        call(IDS.at[0, 0].set(9), opts={"vocab_size": 8})
    with pytest.raises(errors.InvalidArgumentError, match="pad or mask id"):
        call(opts={"fill": "mean"})
    with pytest.raises(errors.InvalidArgumentError, match="pad or mask id"):
        call(opts={"fill": 0.5})
    with pytest.raises(errors.InvalidArgumentError, match="num_segments=6"):
        call(opts={"num_segments": 4})
    with pytest.raises(errors.InvalidArgumentError, match="more samples"):
        call(opts={"num_samples": 5})
    with pytest.raises(errors.SegmentMapError, match="labels|num_segments"):
        call(segments=jnp.array([0, 1, 2, 3, 4, 9]))
    with pytest.raises(errors.SegmentMapError, match="shape"):
        call(segments=jnp.zeros((7,), jnp.int32))
    image = lambda p, xx: jnp.stack([xx.sum((1, 2, 3)), -xx.sum((1, 2, 3))], 1) * 1.0  # noqa: E731
    with pytest.raises(errors.InputShapeError, match="uint8"):
        factory(image, num_segments=6, fill=PAD)(None, jnp.zeros((2, 4, 4, 3), jnp.uint8), key=KEY)
