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
            "3 logits",
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
            lambda: xaijax.rise(apply_fn, masks=4)(params, x, t),
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
        (
            "logits shape",
            lambda: xaijax.gradient(lambda p, xx: xx)(None, x),
            errors.InputShapeError,
            "logits",
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
