"""Deletion / insertion against a literal NumPy port of the RISE evaluation loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import xaijax
from xaijax import errors
from xaijax.metrics import CausalCurve, deletion_auc, insertion_auc, rise_blur, rise_blur_kernel

B, H, W, C = 3, 6, 5, 2


def apply_fn(params, x):
    """Logits [w . x, 0]: class 0's probability is a known function of the pixels."""
    s = jnp.einsum("bhwc,hwc->b", x, params["w"])
    return jnp.stack([s, jnp.zeros_like(s)], axis=1)


#: RISE records the target class's softmax probability: the model explains probabilities.
prob_model = xaijax.model(apply_fn, score="probability")


def _softmax0(v):
    return 1.0 / (1.0 + np.exp(-v))


def _rise_reference(params, x, sal, target, step, start, finish):
    """The loop of eclique/RISE evaluation.py (CausalMetric.single_run) in NumPy, per example."""
    hw = H * W
    n_steps = (hw + step - 1) // step
    curves = []
    for i in range(x.shape[0]):
        order = np.flip(np.argsort(sal[i].reshape(hw)))
        cur = start[i].reshape(hw, C).copy()
        fin = finish[i].reshape(hw, C)
        scores = []
        for k in range(n_steps + 1):
            v = float(np.sum(cur.reshape(H, W, C) * params["w"]))
            p0 = _softmax0(v)
            scores.append(p0 if target[i] == 0 else 1 - p0)
            if k < n_steps:
                coords = order[step * k : step * (k + 1)]
                cur[coords] = fin[coords]
        curves.append(scores)
    curves = np.array(curves)
    auc = (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / n_steps
    return auc, curves


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(H, W, C)).astype(np.float32)}
    x = rng.normal(size=(B, H, W, C)).astype(np.float32)
    sal = rng.random((B, H, W)).astype(np.float32)  # continuous: no ties
    target = np.array([0, 1, 0], np.int32)
    return params, x, sal, target


def test_rise_blur_kernel_is_scipys_gkern():
    for size, sigma in ((11, 5.0), (5, 1.0), (7, 10.0)):
        impulse = np.zeros((size, size))
        impulse[size // 2, size // 2] = 1.0
        ref = ndimage.gaussian_filter(impulse, sigma)  # RISE's gkern(klen, nsig)
        np.testing.assert_allclose(rise_blur_kernel(size, sigma), ref, atol=1e-7)


def test_rise_blur_is_a_zero_padded_depthwise_convolution(problem):
    _, x, _, _ = problem
    k = rise_blur_kernel(5, 2.0)
    ref = np.stack(
        [
            np.stack([ndimage.correlate(x[b, ..., c], k, mode="constant") for c in range(C)], -1)
            for b in range(B)
        ]
    )
    np.testing.assert_allclose(rise_blur(x, 5, 2.0), ref, atol=1e-5)


@pytest.mark.parametrize(("step", "chunk_size"), [(4, 4), (7, 100)])
def test_deletion_matches_the_rise_loop(problem, step, chunk_size):
    params, x, sal, target = problem
    res = deletion_auc(
        prob_model, params, x, sal, target, step=step, chunk_size=chunk_size, return_curve=True
    )
    ref_auc, ref_curve = _rise_reference(params, x, sal, target, step, x, np.zeros_like(x))
    assert isinstance(res, CausalCurve)
    assert res.curve.shape == (B, -(-H * W // step) + 1)
    np.testing.assert_allclose(res.curve, ref_curve, atol=1e-5)
    np.testing.assert_allclose(res.auc, ref_auc, atol=1e-5)


def test_insertion_matches_the_rise_loop(problem):
    params, x, sal, target = problem
    res = insertion_auc(prob_model, params, x, sal, target, step=4, chunk_size=4, return_curve=True)
    blurred = np.asarray(rise_blur(x, 11, 5.0))
    ref_auc, ref_curve = _rise_reference(params, x, sal, target, 4, blurred, x)
    np.testing.assert_allclose(res.curve, ref_curve, atol=1e-5)
    np.testing.assert_allclose(res.auc, ref_auc, atol=1e-5)
    # the curve starts at the blurred image and ends at the original image
    p_end = np.asarray(jax.nn.softmax(apply_fn(params, x)))[np.arange(B), target]
    np.testing.assert_allclose(res.curve[:, -1], p_end, atol=1e-6)


def test_default_step_substrate_and_predicted_target(problem):
    params, x, sal, _ = problem
    predicted = np.asarray(jnp.argmax(apply_fn(params, x), -1))
    sub = np.array([0.5, -1.0], np.float32)  # a [C] colour
    res = deletion_auc(prob_model, params, x, sal, substrate=sub, return_curve=True)
    assert res.curve.shape == (B, H + 1)  # default step = W -> N = H steps
    finish = np.broadcast_to(sub, x.shape)
    ref_auc, ref_curve = _rise_reference(params, x, sal, predicted, W, x, finish)
    np.testing.assert_allclose(res.curve, ref_curve, atol=1e-5)
    np.testing.assert_allclose(res.auc, ref_auc, atol=1e-5)


def test_hand_computed_auc():
    # class-0 logit = sum of the top row of a 2x2 image of ones; most salient first
    params = {"w": np.array([[[1.0], [1.0]], [[0.0], [0.0]]], np.float32)}
    x = np.ones((1, 2, 2, 1), np.float32)
    sal = np.array([[[2.0, 1.0], [0.0, 0.0]]], np.float32)
    res = deletion_auc(prob_model, params, x, sal, np.array([0]), step=1, return_curve=True)
    p = [_softmax0(2.0), _softmax0(1.0), 0.5, 0.5, 0.5]
    np.testing.assert_allclose(res.curve[0], p, atol=1e-6)
    np.testing.assert_allclose(res.auc[0], (sum(p) - p[0] / 2 - p[-1] / 2) / 4, atol=1e-6)
    # the reversed ranking deletes the irrelevant row first: a higher (worse) deletion AUC
    worse = deletion_auc(prob_model, params, x, -sal, np.array([0]), step=1)
    assert float(worse[0]) > float(res.auc[0])


def test_batched_equals_per_example_and_no_recompile(problem, assert_no_recompile):
    params, x, sal, target = problem
    for metric in (deletion_auc, insertion_auc):
        full = assert_no_recompile(metric, apply_fn, params, x, sal, target, step=4, chunk_size=4)
        for i in (0, 2):
            one = metric(
                apply_fn,
                params,
                x[i : i + 1],
                sal[i : i + 1],
                target[i : i + 1],
                step=4,
                chunk_size=4,
            )
            np.testing.assert_allclose(one[0], full[i], atol=1e-6)


def test_works_under_jit(problem):
    params, x, sal, target = problem
    eager = deletion_auc(prob_model, params, x, sal, target, step=7, chunk_size=100)
    jitted = jax.jit(
        lambda p, x, s, t: deletion_auc(prob_model, p, x, s, t, step=7, chunk_size=100)
    )
    np.testing.assert_allclose(jitted(params, x, sal, target), eager, atol=1e-6)


def test_constant_and_zero_maps_give_finite_output(problem):
    params, x, _, target = problem
    for sal in (np.zeros((B, H, W), np.float32), np.full((B, H, W), 3.0, np.float32)):
        for metric in (deletion_auc, insertion_auc):
            auc = metric(prob_model, params, x, sal, target, step=7, chunk_size=100)
            assert np.all(np.isfinite(auc)) and np.all((auc >= 0) & (auc <= 1))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"saliency": np.zeros((B, H, W + 1), np.float32)}, errors.InputShapeError, "saliency"),
        ({"saliency": np.zeros((B, H, W, C), np.float32)}, errors.InputShapeError, "saliency"),
        ({"x": np.zeros((B, H, W), np.float32)}, errors.InputShapeError, "`x`"),
        ({"x": np.zeros((B, H, W, C), np.uint8)}, errors.InputDTypeError, "`x`"),
        ({"target": np.array([0, 2, 1])}, errors.TargetOutOfRangeError, "target"),
        ({"target": np.array([0, 1])}, errors.BatchMismatchError, "target"),
        ({"step": 0}, errors.InvalidArgumentError, "step"),
        ({"chunk_size": -1}, errors.InvalidArgumentError, "chunk_size"),
    ],
)
def test_bad_inputs_raise_named_errors(problem, kwargs, error, match):
    params, x, sal, target = problem
    args = {"x": x, "saliency": sal, "target": target, **kwargs}
    for metric in (deletion_auc, insertion_auc):
        with pytest.raises(error, match=match):
            metric(
                apply_fn,
                params,
                args["x"],
                args["saliency"],
                args["target"],
                **{k: v for k, v in kwargs.items() if k in ("step", "chunk_size")},
            )


def test_bad_substrate_and_blur(problem):
    params, x, sal, target = problem
    with pytest.raises(errors.InputShapeError, match="substrate"):
        deletion_auc(apply_fn, params, x, sal, target, substrate=np.zeros(3, np.float32))
    with pytest.raises(errors.InvalidArgumentError, match="blur_size"):
        insertion_auc(apply_fn, params, x, sal, target, blur_size=10)
    with pytest.raises(errors.InvalidArgumentError, match="blur_sigma"):
        insertion_auc(apply_fn, params, x, sal, target, blur_sigma=0.0)
    with pytest.raises(errors.InvalidArgumentError, match="blur_sigma"):  # NaN was accepted
        insertion_auc(apply_fn, params, x, sal, target, blur_sigma=float("nan"))


def test_the_score_is_the_models_explained_score(problem):
    """No softmax of its own: a bare apply_fn records its logits (the curve is w . x_i of the
    RISE loop's images), log-probabilities are the log of the probabilities, and a head of a
    dict of outputs is read as the model says."""
    params, x, sal, target = problem
    probs = deletion_auc(prob_model, params, x, sal, target, step=4, return_curve=True)
    logits = deletion_auc(apply_fn, params, x, sal, target, step=4, return_curve=True)
    logp = deletion_auc(
        xaijax.model(apply_fn, score="log_probability"),
        params,
        x,
        sal,
        target,
        step=4,
        return_curve=True,
    )
    np.testing.assert_allclose(logp.curve, np.log(probs.curve), atol=1e-5)
    # class 0's logit is v = w . x and class 1's is 0; the reference records sigmoid(+-v)
    v = np.log(probs.curve[0]) - np.log1p(-probs.curve[0])  # example 0 has target 0
    np.testing.assert_allclose(logits.curve[0], v, atol=1e-4)
    np.testing.assert_allclose(logits.curve[1], 0.0, atol=0)  # example 1 explains class 1
    heads = xaijax.model(
        lambda p, xx: {"aux": -apply_fn(p, xx), "cls": apply_fn(p, xx)}, head="cls"
    )
    for metric in (deletion_auc, insertion_auc):
        np.testing.assert_array_equal(
            metric(heads, params, x, sal, target, step=4),
            metric(apply_fn, params, x, sal, target, step=4),
        )


def test_nan_scores_raise_a_named_error(problem):
    params, x, sal, target = problem

    def nan_model(p, xx):
        return apply_fn(p, xx) * jnp.nan

    for metric in (deletion_auc, insertion_auc):
        with pytest.raises(errors.NonFiniteOutputError, match="scores"):
            metric(nan_model, params, x, sal, target, step=7)
        with pytest.raises(errors.NonFiniteOutputError):
            metric(nan_model, params, x, sal, step=7)  # the predicted class of NaN scores


def test_bad_models_raise_named_errors(problem):
    params, x, sal, target = problem
    with pytest.raises(errors.ModelOutputError, match="head"):
        deletion_auc(lambda p, xx: (apply_fn(p, xx), xx), params, x, sal, target)
    with pytest.raises(errors.ModelOutputError):
        insertion_auc(lambda p, xx: xx, params, x, sal, target)
    with pytest.raises(errors.ModelCallError):
        deletion_auc(apply_fn, {"v": params["w"]}, x, sal, target)
    with pytest.raises(errors.InvalidArgumentError, match="model"):
        deletion_auc(None, params, x, sal, target)
    with pytest.raises(errors.NonFiniteInputError, match="substrate"):
        deletion_auc(apply_fn, params, x, sal, target, substrate=np.float32(np.nan))
