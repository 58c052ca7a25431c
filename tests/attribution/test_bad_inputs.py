"""Bad input raises a named xaijax error whose message names the argument and the fix."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors


def _cases(model, params, apply_fn, x):
    grad = xaijax.gradient(apply_fn)
    t = jnp.zeros(4, jnp.int32)
    nan = x.at[0, 0, 0, 0].set(jnp.nan)
    return [
        ("rank", lambda: grad(params, x[0, 0, 0]), errors.InputShapeError, "`x`"),
        (
            "integer image",
            lambda: grad(params, (x * 255).astype(jnp.uint8)),
            errors.InputDTypeError,
            "astype",
        ),
        ("NaN", lambda: grad(params, nan), errors.NonFiniteInputError, "NaN"),
        (
            "Inf",
            lambda: xaijax.integrated_gradients(apply_fn)(params, x.at[1].set(jnp.inf)),
            errors.NonFiniteInputError,
            "Inf",
        ),
        (
            "target too large",
            lambda: grad(params, x, jnp.array([0, 1, 2, 3])),
            errors.TargetOutOfRangeError,
            "3 scores",
        ),
        (
            "negative target",
            lambda: grad(params, x, jnp.array([0, -1, 0, 0])),
            errors.TargetOutOfRangeError,
            "negative",
        ),
        ("float target", lambda: grad(params, x, jnp.zeros(4)), errors.InputDTypeError, "integer"),
        (
            "target batch",
            lambda: grad(params, x, jnp.zeros(3, jnp.int32)),
            errors.BatchMismatchError,
            "batch of 4",
        ),
        (
            "target rank",
            lambda: grad(params, x, jnp.zeros((4, 1), jnp.int32)),
            errors.InputShapeError,
            "vector",
        ),
        (
            "unknown layer",
            lambda: xaijax.grad_cam(model, "conv9")(params, x),
            errors.UnknownLayerError,
            "conv1",
        ),
        ("missing key", lambda: xaijax.smooth(grad)(params, x, t), errors.MissingKeyError, "key="),
        (
            "rise key",
            lambda: xaijax.rise(apply_fn, num_samples=4)(params, x, t),
            errors.MissingKeyError,
            "key",
        ),
        (
            "steps",
            lambda: xaijax.integrated_gradients(apply_fn, steps=0),
            errors.InvalidArgumentError,
            "steps",
        ),
        (
            "method",
            lambda: xaijax.integrated_gradients(apply_fn, method="simpson"),
            errors.InvalidArgumentError,
            "method",
        ),
        (
            "baseline name",
            lambda: xaijax.integrated_gradients(apply_fn, baseline="noise"),
            errors.InvalidArgumentError,
            "baseline",
        ),
        (
            "baseline shape",
            lambda: xaijax.integrated_gradients(apply_fn, steps=2)(
                params, x, t, baseline=jnp.zeros((3, 3))
            ),
            errors.InputShapeError,
            "baseline",
        ),
        (
            "smooth kind",
            lambda: xaijax.smooth(grad, kind="meangrad"),
            errors.InvalidArgumentError,
            "kind",
        ),
        (
            "occlusion window",
            lambda: xaijax.occlusion(apply_fn, window=50)(params, x, t),
            errors.InvalidArgumentError,
            "window",
        ),
        ("rise p", lambda: xaijax.rise(apply_fn, p=1.5), errors.InvalidArgumentError, "`p`"),
        # Occlusion's window and stride are refused when the explainer is built (no call).
        (
            "occlusion stride 0",
            lambda: xaijax.occlusion(apply_fn, window=2, stride=0),
            errors.InvalidArgumentError,
            "`stride`",
        ),
        (
            "occlusion window (2, 0)",
            lambda: xaijax.occlusion(apply_fn, window=(2, 0)),
            errors.InvalidArgumentError,
            "`window`",
        ),
        (
            "occlusion window True",
            lambda: xaijax.occlusion(apply_fn, window=True),
            errors.InvalidArgumentError,
            "`window`",
        ),
        (
            "occlusion chunk_size 0",
            lambda: xaijax.occlusion(apply_fn, chunk_size=0),
            errors.InvalidArgumentError,
            "`chunk_size`",
        ),
        (
            "rise cell_size 0",
            lambda: xaijax.rise(apply_fn, cell_size=0),
            errors.InvalidArgumentError,
            "`cell_size`",
        ),
        (
            "rise chunk_size -1",
            lambda: xaijax.rise(apply_fn, chunk_size=-1),
            errors.InvalidArgumentError,
            "`chunk_size`",
        ),
        (
            "occlusion stride of another rank",
            lambda: xaijax.occlusion(apply_fn, window=2, stride=(1, 1, 1))(params, x, t),
            errors.InvalidArgumentError,
            "spatial axes",
        ),
        (
            "logits shape",
            lambda: xaijax.gradient(lambda p, xx: xx)(None, x),
            errors.ModelOutputError,
            "[B, C]",
        ),
        (
            "model returns a tuple",
            lambda: xaijax.gradient(lambda p, xx: (apply_fn(p, xx), apply_fn(p, xx)))(params, x),
            errors.ModelOutputError,
            "head=",
        ),
        (
            "model returns a dict",
            lambda: xaijax.gradient(lambda p, xx: {"a": apply_fn(p, xx)})(params, x),
            errors.ModelOutputError,
            "head=",
        ),
        (
            "head that is not there",
            lambda: xaijax.gradient(xaijax.model(lambda p, xx: {"a": apply_fn(p, xx)}, head="b"))(
                params, x
            ),
            errors.ModelOutputError,
            "head='b'",
        ),
        (
            "params of another model",
            lambda: grad({"conv1": params["conv1"]}, x),
            errors.ModelCallError,
            "params",
        ),
        ("unbatched image", lambda: grad(params, x[0]), errors.ModelCallError, "x[None]"),
        (
            "int key",
            lambda: xaijax.smooth(grad)(params, x, t, key=3),
            errors.InvalidKeyError,
            "key",
        ),
        (
            "float array key",
            lambda: xaijax.smooth(grad)(params, x, t, key=jnp.zeros(2)),
            errors.InvalidKeyError,
            "PRNGKey",
        ),
        (
            "key to a deterministic explainer",
            lambda: grad(params, x, t, key=jax.random.key(0)),
            errors.InvalidArgumentError,
            "no `key`",
        ),
        (
            "empty batch",
            lambda: xaijax.smooth(grad)(params, x[:0], key=jax.random.key(0)),
            errors.InputShapeError,
            "empty",
        ),
        (
            "negative noise",
            lambda: xaijax.smooth(grad, noise=-0.1),
            errors.InvalidArgumentError,
            "noise",
        ),
        (
            "NaN noise",
            lambda: xaijax.smooth(grad, noise=float("nan")),
            errors.InvalidArgumentError,
            "noise",
        ),
        (
            "NaN fill",
            lambda: xaijax.occlusion(apply_fn, fill=float("nan")),
            errors.InvalidArgumentError,
            "fill",
        ),
        (
            "non-spatial layer",
            lambda: xaijax.grad_cam(model, "head")(params, x),
            errors.InvalidArgumentError,
            "spatial",
        ),
        ("empty layer name", lambda: xaijax.cam(model, ""), errors.UnknownLayerError, "layer"),
        (
            "bare function to smooth",
            lambda: xaijax.smooth(lambda p, xx, tt=None: grad(p, xx, tt)),
            errors.NotAnExplainerError,
            "xaijax.explainer",
        ),
    ]


def test_each_bad_input_raises_a_named_error(cnn):
    model, params, apply_fn, x = cnn
    cases = _cases(model, params, apply_fn, x)
    assert len(cases) >= 15
    for name, call, exc, fragment in cases:
        with pytest.raises(exc, match=None) as info:
            call()
        assert isinstance(info.value, errors.XaijaxError), name
        assert fragment in str(info.value), (name, str(info.value))


def test_errors_are_also_builtin_exceptions():
    assert issubclass(errors.InputShapeError, ValueError)
    assert issubclass(errors.InputDTypeError, TypeError)
    assert issubclass(errors.UnknownLayerError, LookupError)


def test_checks_do_not_break_tracing(cnn):
    # Value checks are skipped on tracers, shape checks still run.
    _, params, apply_fn, x = cnn
    out = jax.jit(lambda xx: xaijax.gradient(apply_fn)(params, xx))(x)
    assert np.isfinite(np.asarray(out)).all()
    with pytest.raises(errors.InputShapeError):
        jax.jit(lambda xx: xaijax.gradient(apply_fn)(params, xx))(x[0, 0, 0])


def _nan_model(p, x):
    s = jnp.sum(x, axis=(1, 2, 3)) * p
    return jnp.stack([s, jnp.log(-jnp.abs(s) - 1.0)], axis=1)  # class 1 is NaN everywhere


@pytest.mark.parametrize(
    "make",
    [
        lambda f: xaijax.gradient(f),
        lambda f: xaijax.occlusion(f, window=2),
        lambda f: xaijax.integrated_gradients(f, steps=4),
    ],
    ids=["gradient", "occlusion", "integrated_gradients"],
)
def test_a_model_with_nan_scores_raises_instead_of_returning_a_map(make):
    x = jnp.ones((2, 4, 4, 1))
    with pytest.raises(errors.NonFiniteOutputError, match="not finite"):
        make(_nan_model)(jnp.float32(1.0), x, jnp.array([1, 1]))


def test_ig_with_nan_scores_only_at_the_input_is_not_a_finite_map():
    # The model is finite along the whole path but NaN at x itself (alpha = 1 is never a
    # Gauss-Legendre node): the landed code returned a finite map of a meaningless integral.
    def f(p, x):
        s = jnp.sum(x, axis=(1, 2, 3))
        bad = jnp.where(s >= 16.0 - 1e-3, jnp.nan, s)
        return jnp.stack([bad, -bad], axis=1)

    ig = xaijax.integrated_gradients(f, steps=8)
    x = jnp.ones((1, 4, 4, 1))
    with pytest.raises(errors.NonFiniteOutputError):
        ig(None, x, jnp.array([0]))
    assert np.isnan(np.asarray(jax.jit(ig)(None, x, jnp.array([0])))).all()  # under jit: NaN


def test_batchnorm_model_given_only_params_gets_a_named_error():
    import flax.linen as nn

    class BN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(4, (3, 3), name="conv")(x)
            x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn")(x))
            return nn.Dense(2, name="head")(x.mean(axis=(1, 2)))

    net = BN()
    x = jnp.ones((2, 6, 6, 3))
    variables = net.init(jax.random.key(0), x)
    for layer in ("conv", "convv"):  # a misspelt layer too: the model call fails first
        with pytest.raises(errors.ModelCallError, match="batch_stats"):
            xaijax.grad_cam(net, layer)(variables["params"], x)
    maps = xaijax.grad_cam(net, "conv")(variables, x)  # the whole variables dict works
    assert maps.shape == (2, 6, 6)
    with pytest.raises(errors.UnknownLayerError, match="conv"):
        xaijax.grad_cam(net, "convv")(variables, x)
