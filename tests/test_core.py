"""The Core v2 contract: the model type, the explainer type, wrappers, checks, names, import."""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors

KEY = jax.random.key(3)


class TwoHeads(nn.Module):
    """A CNN with a class head and an attribute head on the same features."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(6, (3, 3), name="features")(x))
        pooled = h.mean(axis=(1, 2))
        return {
            "class": nn.Dense(3, name="cls")(pooled),
            "attributes": nn.Dense(5, name="att")(pooled),
        }


@pytest.fixture(scope="module")
def two_heads():
    net = TwoHeads()
    x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3))
    params = net.init(jax.random.key(1), x)["params"]
    return net, params, x


@pytest.mark.parametrize("head", ["class", "attributes"])
def test_a_two_head_model_is_explained_on_either_head(two_heads, head):
    net, params, x = two_heads
    model = xaijax.from_linen(net, head=head)
    single = lambda p, xx: net.apply({"params": p}, xx)[head]  # noqa: E731
    t = jnp.array([0, 2, 1])
    for make in (
        xaijax.gradient,
        lambda m: xaijax.integrated_gradients(m, steps=4, chunk_size=2),
        lambda m: xaijax.occlusion(m, window=4, stride=4),
    ):
        np.testing.assert_allclose(
            make(model)(params, x, t), make(single)(params, x, t), rtol=1e-6, atol=1e-7
        )
    cam = xaijax.grad_cam(model, "features")(params, x, t)
    # Grad-CAM on one head equals the formula on that head's dense weights: the layer's output
    # A is the conv before the ReLU, d score / d A = W[:, t] / (H W) where A > 0.
    act = nn.Conv(6, (3, 3)).apply({"params": params["features"]}, x)  # [B, H, W, 6]
    dense = params["cls" if head == "class" else "att"]["kernel"]  # [6, C]
    grads = (act > 0) * dense[:, t].T[:, None, None, :] / (8 * 8)
    alpha = grads.mean(axis=(1, 2))
    expected = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", act, alpha))
    np.testing.assert_allclose(cam, expected, rtol=1e-4, atol=1e-6)


def test_the_score_is_what_is_explained(two_heads):
    net, params, x = two_heads
    logits_fn = lambda p, xx: net.apply({"params": p}, xx)["class"]  # noqa: E731
    t = jnp.array([0, 1, 2])
    prob = xaijax.from_linen(net, head="class", score="probability")
    got = xaijax.gradient(prob)(params, x, t)
    want = jax.grad(lambda xx: jnp.sum(jax.nn.softmax(logits_fn(params, xx))[jnp.arange(3), t]))(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    logp = xaijax.model(logits_fn, score="log_probability")
    got = xaijax.gradient(logp)(params, x, t)
    want = jax.grad(
        lambda xx: jnp.sum(jax.nn.log_softmax(logits_fn(params, xx))[jnp.arange(3), t])
    )(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    custom = xaijax.model(logits_fn, score=lambda s: 2.0 * s)
    np.testing.assert_allclose(
        xaijax.gradient(custom)(params, x, t),
        2.0 * xaijax.gradient(logits_fn)(params, x, t),
        rtol=1e-6,
    )
    with pytest.raises(errors.InvalidArgumentError, match="score"):
        xaijax.model(logits_fn, score="softmax")


def test_an_explainer_records_what_it_was_built_from():
    f = lambda p, x: x @ p  # noqa: E731
    ig = xaijax.integrated_gradients(f, steps=8, chunk_size=4)
    assert isinstance(ig, xaijax.Explainer) and ig.name == "integrated_gradients"
    assert ig.model.apply_fn is f and ig.model.score == "logit"
    assert dict(ig.options)["steps"] == 8 and ig.result == "map"
    sg = xaijax.smooth(ig, num_samples=2)
    assert sg.inner is ig and sg.model is ig.model and sg.stochastic
    assert "smooth(integrated_gradients)" in repr(sg)
    assert set(xaijax.RESULTS) >= {"map", "spatial_map", "segment_scores", "surrogate"}


def _linear():
    w = jax.random.normal(jax.random.key(5), (6, 2))
    x = jax.random.normal(jax.random.key(6), (4, 6))
    return w, (lambda p, xx: xx @ p), x


def test_smooth_reads_jit_and_partial_and_refuses_a_bare_function():
    """Wrapping the inner never changes the result silently: identical, or a named error. On a
    two-class linear model `smooth(g)` explains the clean prediction; the landed code gave
    each noisy copy its own arg-max when the inner was wrapped (0.981 instead of 1.0)."""
    w, f, x = _linear()
    g = xaijax.gradient(f)
    plain = xaijax.smooth(g, num_samples=8, noise=2.0)(w, x, key=KEY)
    for wrapped in (jax.jit(g), functools.partial(g)):
        again = xaijax.smooth(wrapped, num_samples=8, noise=2.0)(w, x, key=KEY)
        np.testing.assert_array_equal(np.asarray(again), np.asarray(plain))
    predicted = jnp.argmax(x @ w, axis=1)
    np.testing.assert_allclose(plain, w[:, predicted].T, rtol=1e-6)  # the clean class only
    for bare in (lambda p, xx, t=None: g(p, xx, t), jax.jit(lambda p, xx, t=None: g(p, xx, t))):
        with pytest.raises(errors.NotAnExplainerError, match="xaijax.explainer"):
            xaijax.smooth(bare)
    with pytest.raises(errors.NotAnExplainerError, match="positional"):
        xaijax.smooth(functools.partial(g, w))
    # A partial binding a per-call keyword is read through too.
    ig = xaijax.integrated_gradients(f, steps=4)
    base = jnp.ones_like(x)
    bound = xaijax.smooth(functools.partial(ig, baseline=base), num_samples=3)(w, x, key=KEY)
    direct = xaijax.smooth(ig, num_samples=3)(w, x, key=KEY, baseline=base)
    np.testing.assert_array_equal(np.asarray(bound), np.asarray(direct))


def test_the_documented_adapter_makes_a_function_composable():
    w, f, x = _linear()

    def my_gradient(params, xx, target):
        def score(v):
            return jnp.sum((v @ params)[jnp.arange(v.shape[0]), target])

        return jax.grad(score)(xx)

    mine = xaijax.explainer(my_gradient, f, name="my_gradient")
    built_in = xaijax.smooth(xaijax.gradient(f), num_samples=4, noise=1.0)(w, x, key=KEY)
    adapted = xaijax.smooth(mine, num_samples=4, noise=1.0)(w, x, key=KEY)
    np.testing.assert_allclose(adapted, built_in, rtol=1e-6)
    assert xaijax.superpixels.gws(mine, num_segments=2).inner is mine


def test_checked_keeps_value_checks_under_jit():
    w, f, x = _linear()
    fn = jax.jit(xaijax.checked(xaijax.gradient(f)))
    err, out = fn(w, x)
    assert err.get() is None
    np.testing.assert_allclose(out, xaijax.gradient(f)(w, x), rtol=1e-6)
    err, _ = fn(w, x.at[0, 0].set(jnp.nan))
    assert "NaN" in err.get()
    err, _ = fn(w, x, jnp.array([0, 1, 5, 0]))
    assert "class index" in err.get()
    with pytest.raises(Exception, match="NaN"):
        fn(w, x.at[0, 0].set(jnp.inf))[0].throw()


@pytest.mark.parametrize("chunk_size", [None, 2, 1])
def test_jitted_ig_equals_eager_ig(chunk_size, monkeypatch):
    """Under the caller's jit the chunks are unrolled (up to UNROLL_LIMIT) or looped: both equal
    the eager Python loop."""
    from xaijax.attribution import _common

    w = jax.random.normal(jax.random.key(7), (12, 3))
    f = lambda p, xx: jnp.tanh(xx.reshape(xx.shape[0], -1) @ p)  # noqa: E731
    x = jax.random.normal(jax.random.key(8), (2, 2, 3, 2))
    ig = xaijax.integrated_gradients(f, steps=6, chunk_size=chunk_size)
    eager = ig(w, x)
    np.testing.assert_allclose(jax.jit(ig)(w, x), eager, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(_common, "UNROLL_LIMIT", 1)  # the fori_loop path
    np.testing.assert_allclose(
        jax.jit(xaijax.integrated_gradients(f, steps=6, chunk_size=chunk_size))(w, x),
        eager,
        rtol=1e-5,
        atol=1e-6,
    )


def test_nnx_model_through_from_nnx():
    from flax import nnx

    model, params = xaijax.from_nnx(nnx.Linear(4, 3, rngs=nnx.Rngs(0)))
    x = jnp.ones((2, 4))
    kernel = np.asarray(params["kernel"][...])
    np.testing.assert_allclose(
        xaijax.gradient(model)(params, x, jnp.array([0, 2])), kernel[:, [0, 2]].T, rtol=1e-6
    )
    with pytest.raises(errors.InvalidArgumentError, match="from_nnx"):
        xaijax.gradient(nnx.Linear(4, 3, rngs=nnx.Rngs(0)))


#: Names that the Core v2 convention replaced (README, "The contract"): none may come back.
RETIRED = {
    "samples": "num_samples",
    "masks": "num_samples",
    "batch_size": "chunk_size",
    "n_segments": "approx_segments",
    "max_segments": "num_segments",
    "num_labels": "num_segments",
    "abs_max": "max_abs",
    "apply_fn": "model",
}


def _public_factories():
    import xaijax.anchornet as an
    import xaijax.fixations as fx
    import xaijax.masks as ms
    import xaijax.metrics as mt
    import xaijax.segmentation as sg
    import xaijax.summaries as sm
    import xaijax.superpixels as sp
    import xaijax.surrogates as su

    for mod in (xaijax, xaijax.attribution, an, fx, ms, mt, sg, sm, sp, su):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                yield f"{mod.__name__}.{name}", obj


def test_one_name_per_idea_in_every_public_signature():
    offenders = []
    for qualname, fn in _public_factories():
        for param in inspect.signature(fn).parameters:
            if param in RETIRED and not (qualname == "xaijax.model" and param == "apply_fn"):
                offenders.append(f"{qualname}({param}=...) -> {RETIRED[param]}")
    assert not offenders, offenders


def test_import_is_light_and_changes_nothing():
    code = (
        "import sys, jax\n"
        "before = (jax.config.jax_num_cpu_devices, jax.config.jax_enable_x64)\n"
        "import xaijax\n"
        "after = (jax.config.jax_num_cpu_devices, jax.config.jax_enable_x64)\n"
        "heavy = [m for m in ('tensorflow_datasets', 'pyarrow', 'orbax', 'optax', 'grain', "
        "'PIL', 'matplotlib', 'xaijax.data', 'xaijax.models', 'xaijax.training') "
        "if m in sys.modules]\n"
        "from jax._src import xla_bridge\n"
        "print(before == after, heavy, xla_bridge.backends_are_initialized())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "True [] False"  # no backend started either
    lazy = subprocess.run(
        [sys.executable, "-c", "import xaijax; print(xaijax.training.__name__)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert lazy.stdout.strip() == "xaijax.training"


def _dense_apply(p, xx):
    return xx.reshape(xx.shape[0], -1) @ p["dense"]["kernel"] + p["dense"]["bias"][None]


_IMAGES = jax.random.uniform(jax.random.key(7), (2, 8, 8, 1))
_SEGMENTS = jnp.broadcast_to(
    (jnp.arange(8)[:, None] // 4) * 2 + jnp.arange(8)[None] // 4, (2, 8, 8)
)
# One call per wrapper: (params, inner explainer) -> a pytree of arrays to compare exactly.
# `xaijax.smooth` is covered (jit, partial and the same lambda) by
# test_smooth_reads_jit_and_partial_and_refuses_a_bare_function above.
_WRAPPERS = {
    "gws": lambda p, e: xaijax.superpixels.gws(e, num_segments=4)(p, _IMAGES, segments=_SEGMENTS),
    "multi_crop": lambda p, e: xaijax.fixations.multi_crop(e, select="all")(p, _IMAGES),
    "cascading_randomization": lambda p, e: (
        xaijax.metrics.cascading_randomization(e, p, _IMAGES, key=KEY).similarity
    ),
    "checked": lambda p, e: xaijax.checked(e)(p, _IMAGES)[1],
}


@pytest.mark.parametrize("wrapper", sorted(_WRAPPERS))
def test_every_wrapper_reads_jit_and_partial_identically_and_refuses_a_lambda(wrapper):
    """The Core v2 wrapper contract for the other wrappers that read an inner explainer: jax.jit
    and functools.partial of it give the identical result; a lambda around it (which names no
    model) raises NotAnExplainerError, never a different result."""
    rng = np.random.default_rng(0)
    params = {
        "dense": {
            "kernel": jnp.asarray(rng.normal(size=(64, 3)), jnp.float32),
            "bias": jnp.zeros(3, jnp.float32),
        }
    }
    e = xaijax.gradient(_dense_apply)
    call = _WRAPPERS[wrapper]
    want = jax.tree_util.tree_map(np.asarray, call(params, e))
    for wrapped in (jax.jit(e), functools.partial(e)):
        got = jax.tree_util.tree_map(np.asarray, call(params, wrapped))
        jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)
    with pytest.raises(errors.NotAnExplainerError, match="xaijax.explainer"):
        call(params, lambda p, x, t=None: e(p, x, t))


def test_value_checks_of_constants_captured_inside_a_callers_jit_still_run():
    """A concrete array closed over inside a caller's `jit` is checked (eagerly), not turned
    into a tracer that `bool` cannot read (TracerBoolConversionError before `fetch`)."""
    from xaijax import _validation, errors, segmentation

    bad = jnp.array([1.0, jnp.nan])
    good = jnp.array([1.0, 2.0])
    segments = jnp.zeros((1, 4, 4), jnp.int32).at[0, :, 2:].set(5)
    target = jnp.array([0, 7])

    def inside_jit(check):
        return jax.jit(lambda y: (check(), y + 1)[1])(1.0)

    assert inside_jit(lambda: _validation.check_finite(good, "c")) == 2.0
    with pytest.raises(errors.NonFiniteInputError):
        inside_jit(lambda: _validation.check_finite(bad, "c"))
    with pytest.raises(errors.TargetOutOfRangeError):
        inside_jit(lambda: _validation.check_target_in_range(target, 3))
    with pytest.raises(errors.SegmentMapError):
        inside_jit(lambda: segmentation.validate_segments(segments, num_segments=3))
