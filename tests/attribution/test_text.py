"""Attribution to a named layer (`xaijax.at_layer`): per-token scores of text models.

Oracles: a bag-of-embeddings model whose every attribution is closed form, and the zoo's text
model trained on the synthetic key n-gram task, where the planted span is the ground truth and
the zero-embedding / pad-sequence scores are computed by the model itself with other params or
inputs (not through the layer access).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors
from xaijax.data import synthetic

NUM_CLASSES = 10
PAD = 0  # the pad id of xaijax.data.synthetic texts (their tokens are >= 2)


@pytest.fixture(scope="module")
def test_texts():
    return synthetic.make_texts(200, seed=0, split="test")


def _hit_rate(scores, span_mask) -> float:
    """Share of sequences whose arg-max token lies in the planted key span."""
    top = np.asarray(scores).argmax(axis=1)
    return float(np.mean(np.asarray(span_mask)[np.arange(len(top)), top]))


# --- closed forms on a bag of embeddings --------------------------------------------------------


class Bag(nn.Module):
    """logits = Dense(mean over tokens of Embed(ids)): linear in the embeddings."""

    @nn.compact
    def __call__(self, ids):
        return nn.Dense(3, name="head")(nn.Embed(12, 5, name="embed")(ids).mean(axis=1))


@pytest.fixture(scope="module")
def bag():
    net = Bag()
    ids = jnp.array([[1, 2, 3, 4, 0, 5], [6, 6, 7, 8, 9, 11]], jnp.int32)
    params = net.init(jax.random.key(0), ids)["params"]
    emb = params["embed"]["embedding"][ids]  # [B, L, D]
    w = params["head"]["kernel"]  # [D, C]
    target = jnp.array([2, 0])
    # Each token's exact share of the target logit: (E[id] . W[:, t]) / L.
    share = jnp.einsum("bld,db->bl", emb, w[:, target]) / ids.shape[1]
    grad = jnp.broadcast_to(w[:, target].T[:, None, :] / ids.shape[1], emb.shape)  # [B, L, D]
    return xaijax.from_linen(net), params, ids, target, share, grad, emb


def test_linear_model_closed_forms(bag):
    m, params, ids, target, share, grad, emb = bag
    ig = xaijax.at_layer(xaijax.integrated_gradients, m, "embed")
    np.testing.assert_allclose(ig(params, ids, target), share, atol=1e-5)
    gxi = xaijax.at_layer(xaijax.gradient_x_input, m, "embed")
    np.testing.assert_allclose(gxi(params, ids, target), share, atol=1e-5)
    full = xaijax.at_layer(xaijax.gradient, m, "embed", reduce=None)(params, ids, target)
    assert full.shape == emb.shape
    np.testing.assert_allclose(full, grad, atol=1e-6)
    mean = xaijax.at_layer(xaijax.gradient, m, "embed", reduce="mean")(params, ids, target)
    np.testing.assert_allclose(mean, grad.mean(-1), atol=1e-6)
    # SmoothGrad of a linear model: the gradient itself, whatever the noise.
    sg = xaijax.at_layer(lambda mm: xaijax.smooth(xaijax.gradient(mm), num_samples=4), m, "embed")
    np.testing.assert_allclose(
        sg(params, ids, target, key=jax.random.key(0)), grad.sum(-1), atol=1e-5
    )
    # Occlusion zeroes one embedding row per window: the drop is the token's share, reported
    # once per token (reduce="auto" averages the copies over the embedding axis).
    occ = xaijax.at_layer(lambda mm: xaijax.occlusion(mm, window=1, stride=1), m, "embed")
    np.testing.assert_allclose(occ(params, ids, target), share, atol=1e-5)


def test_baseline_input_is_the_activation_of_those_ids(bag):
    m, params, ids, target, share, _, emb = bag
    pad_emb = params["embed"]["embedding"][PAD]
    expected = (
        share
        - jnp.einsum("d,db->b", pad_emb, params["head"]["kernel"][:, target])[:, None]
        / ids.shape[1]
    )
    ig = xaijax.at_layer(xaijax.integrated_gradients, m, "embed", baseline_input=PAD)
    np.testing.assert_allclose(ig(params, ids, target), expected, atol=1e-5)
    plain = xaijax.at_layer(xaijax.integrated_gradients, m, "embed")
    np.testing.assert_allclose(
        plain(params, ids, target, baseline_input=jnp.full(ids.shape[1:], PAD)),
        expected,
        atol=1e-5,
    )
    # The activation-space baseline goes to IG as its own `baseline`.
    np.testing.assert_allclose(
        plain(params, ids, target, baseline=jnp.broadcast_to(pad_emb, emb.shape)),
        expected,
        atol=1e-5,
    )


def test_nnx_model_through_its_layer_access():
    from flax import nnx

    class NnxBag(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(12, 5, rngs=rngs)
            self.head = nnx.Linear(5, 3, rngs=rngs)

        def __call__(self, ids):
            return self.head(self.embed(ids).mean(axis=1))

    m, state = xaijax.from_nnx(NnxBag(nnx.Rngs(0)))
    ids = jnp.array([[1, 2, 3, 0], [4, 4, 5, 6]])
    scores = xaijax.at_layer(xaijax.integrated_gradients, m, "embed")(state, ids, jnp.array([2, 1]))
    emb = state["embed"]["embedding"][...][ids]
    w = state["head"]["kernel"][...][:, jnp.array([2, 1])]
    np.testing.assert_allclose(scores, jnp.einsum("bld,db->bl", emb, w) / 4, atol=1e-5)
    with pytest.raises(errors.UnknownLayerError, match="'embed'"):
        xaijax.at_layer(xaijax.integrated_gradients, m, "emb")  # NNX: at construction


def test_result_kinds_and_options(bag):
    m = bag[0]
    e = xaijax.at_layer(xaijax.integrated_gradients, m, "embed")
    assert e.result == "spatial_map" and e.integer_inputs and not e.stochastic
    assert e.inner.name == "integrated_gradients"
    assert dict(e.options)["layer"] == "embed"
    assert xaijax.at_layer(xaijax.gradient, m, "embed", reduce=None).result == "layer_map"
    assert "layer_map" in xaijax.RESULTS
    sg = xaijax.at_layer(lambda mm: xaijax.smooth(xaijax.gradient(mm)), m, "embed")
    assert sg.stochastic


# --- the zoo's text model -------------------------------------------------------------------------


def test_ig_on_embeddings_finds_the_key_ngram(text_model, test_texts):
    net, params = text_model
    m = xaijax.from_linen(net)
    x = jnp.asarray(test_texts["tokens"])
    y = jnp.asarray(test_texts["label"])
    assert float(jnp.mean(jnp.argmax(m.scores(params, x), -1) == y)) >= 0.95
    ig = xaijax.at_layer(lambda mm: xaijax.integrated_gradients(mm, steps=32), m, "embed")
    scores = ig(params, x, y)
    assert scores.shape == x.shape
    rate = _hit_rate(scores, test_texts["span_mask"])
    print(f"IG on embeddings: key n-gram holds the top token in {rate:.1%} of 200 sequences")
    assert rate >= 0.9


@pytest.mark.parametrize(
    "method",
    [
        xaijax.gradient_x_input,
        lambda mm: xaijax.smooth(xaijax.gradient_x_input(mm), num_samples=8),
        lambda mm: xaijax.occlusion(mm, window=1, stride=1, chunk_size=64),
    ],
    ids=["gradient_x_input", "smooth", "occlusion"],
)
def test_other_methods_on_embeddings_find_the_key(text_model, test_texts, method):
    net, params = text_model
    x = jnp.asarray(test_texts["tokens"][:64])
    e = xaijax.at_layer(method, xaijax.from_linen(net), "embed")
    kw = {"key": jax.random.key(0)} if e.stochastic else {}
    scores = e(params, x, jnp.asarray(test_texts["label"][:64]), **kw)
    assert scores.shape == x.shape
    assert _hit_rate(scores, test_texts["span_mask"][:64]) >= 0.9


def test_ig_completeness_on_the_embedding_path(text_model, test_texts):
    net, params = text_model
    m = xaijax.from_linen(net)
    x = jnp.asarray(test_texts["tokens"][:16])
    t = jnp.asarray(test_texts["label"][:16])
    rows = jnp.arange(len(t))

    def score(p, ids):
        return net.apply({"params": p}, ids)[rows, t]

    ig = xaijax.at_layer(lambda mm: xaijax.integrated_gradients(mm, steps=64), m, "embed")
    # Zero baseline activation = every token's embedding zeroed (other params, same model).
    zero_emb = {**params, "embed": {"embedding": jnp.zeros_like(params["embed"]["embedding"])}}
    gap = score(params, x) - score(zero_emb, x)
    total = ig(params, x, t).sum(axis=1)
    np.testing.assert_allclose(total, gap, rtol=0.01, atol=0.005 * float(jnp.abs(gap).max()))
    # Pad baseline: the activation of an all-pad sequence.
    pad_ig = xaijax.at_layer(
        lambda mm: xaijax.integrated_gradients(mm, steps=64), m, "embed", baseline_input=PAD
    )
    gap = score(params, x) - score(params, jnp.full_like(x, PAD))
    total = pad_ig(params, x, t).sum(axis=1)
    np.testing.assert_allclose(total, gap, rtol=0.01, atol=0.005 * float(jnp.abs(gap).max()))


def test_batched_equals_per_example_jit_and_no_recompile(
    text_model, test_texts, assert_no_recompile
):
    net, params = text_model
    x = jnp.asarray(test_texts["tokens"][:4])
    ig = xaijax.at_layer(
        lambda mm: xaijax.integrated_gradients(mm, steps=8), xaijax.from_linen(net), "embed"
    )
    batched = assert_no_recompile(ig, params, x)
    single = jnp.concatenate([ig(params, x[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    jitted = jax.jit(ig)
    np.testing.assert_allclose(jitted(params, x), batched, rtol=1e-4, atol=1e-5)
    assert_no_recompile(jitted, params, x)


# --- bad input ------------------------------------------------------------------------------------


def test_token_ids_to_a_float_method_point_to_the_layer_route(bag):
    m, params, ids = bag[:3]
    with pytest.raises(errors.InputDTypeError, match="at_layer") as info:
        xaijax.integrated_gradients(m)(params, ids)
    assert "uint8" not in str(info.value)
    with pytest.raises(errors.InputDTypeError, match="at_layer"):
        xaijax.occlusion(m)(params, ids)  # before its own rank check: the advice fits
    with pytest.raises(errors.InputDTypeError, match="uint8 images"):
        xaijax.gradient(m)(params, jnp.zeros((2, 4, 4, 3), jnp.uint8))


def test_bad_layer_and_arguments(bag):
    m, params, ids, target = bag[:4]
    with pytest.raises(errors.UnknownLayerError, match="'embed'"):
        xaijax.at_layer(xaijax.integrated_gradients, m, "embedding")(params, ids)
    with pytest.raises(errors.InvalidArgumentError, match="named layers"):
        xaijax.at_layer(xaijax.gradient, lambda p, x: x, "embed")
    with pytest.raises(errors.InvalidArgumentError, match="factory"):
        xaijax.at_layer(xaijax.integrated_gradients(m), m, "embed")
    with pytest.raises(errors.InvalidArgumentError, match="surrogates.lime"):
        xaijax.at_layer(lambda mm: xaijax.surrogates.lime(mm, num_segments=4), m, "embed")
    with pytest.raises(errors.InvalidArgumentError, match="reduce"):
        xaijax.at_layer(xaijax.gradient, m, "embed", reduce="max")
    with pytest.raises(errors.InvalidArgumentError, match="baseline_input"):
        xaijax.at_layer(xaijax.gradient, m, "embed", baseline_input=PAD)
    ig = xaijax.at_layer(xaijax.integrated_gradients, m, "embed")
    with pytest.raises(errors.InputDTypeError, match="token ids"):
        ig(params, ids, target, baseline_input=0.5)
    with pytest.raises(errors.InvalidArgumentError, match="negative"):
        ig(params, ids, target, baseline_input=-1)
    with pytest.raises(errors.InputShapeError, match="broadcast"):
        ig(params, ids, target, baseline_input=jnp.zeros((3,), jnp.int32))
    with pytest.raises(errors.InvalidArgumentError, match="not both"):
        ig(params, ids, target, baseline_input=0, baseline="zero")
    sg = xaijax.at_layer(lambda mm: xaijax.smooth(xaijax.gradient(mm)), m, "embed")
    with pytest.raises(errors.MissingKeyError):
        sg(params, ids, target)
    occ = xaijax.at_layer(lambda mm: xaijax.occlusion(mm, window=9), m, "embed")
    with pytest.raises(errors.InvalidArgumentError, match="window"):
        occ(params, ids, target)  # L = 6 tokens: the inner explainer's own check runs
