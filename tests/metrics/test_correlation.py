"""Spearman, Kendall tau-b and top-k overlap against scipy.stats and hand-computed cases.

Most tests share the batch shape [4, 6, 6] so that the suite compiles each metric only a few times.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from xaijax import errors
from xaijax.metrics import kendall, spearman, top_k_overlap

SHAPE = (4, 6, 6)


def _tied_pairs(seed, levels=(2, 3, 5, 8)):
    rng = np.random.default_rng(seed)
    lv = np.array(levels)[:, None, None]
    a = np.floor(rng.random(SHAPE) * lv).astype(np.float32)  # many ties, more in early rows
    b = (a + np.floor(rng.random(SHAPE) * lv)).astype(np.float32)  # correlated, tied too
    return a, b


@pytest.mark.parametrize("seed", [0, 1])
def test_spearman_and_kendall_match_scipy_with_ties(seed):
    a, b = _tied_pairs(seed)
    a[3] = -a[3]  # a negative correlation too
    rho = np.asarray(spearman(a, b))
    tau = np.asarray(kendall(a, b))
    for i in range(SHAPE[0]):
        x, y = a[i].ravel(), b[i].ravel()
        np.testing.assert_allclose(rho[i], stats.spearmanr(x, y).statistic, atol=1e-5)
        np.testing.assert_allclose(tau[i], stats.kendalltau(x, y).statistic, atol=1e-5)
    assert rho[3] < 0 and tau[3] < 0


def test_continuous_data_and_a_64x64_map_match_scipy():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(2, 64, 64)).astype(np.float32)
    b = (a + rng.normal(size=(2, 64, 64))).astype(np.float32)
    b[1] = np.round(b[1])  # heavy ties in one map only
    a[1, :10] = 0.0
    a[1, 10:12] = -0.0  # signed zeros are ties
    tau = kendall(a, b)
    rho = spearman(a, b)
    for i in range(2):
        x, y = a[i].ravel(), b[i].ravel()
        np.testing.assert_allclose(tau[i], stats.kendalltau(x, y).statistic, atol=1e-5)
        np.testing.assert_allclose(rho[i], stats.spearmanr(x, y).statistic, atol=1e-5)


def test_hand_computed_values():
    # perfect agreement, perfect reversal, and a tie: a = [1,2,3], b = [1,1,2]
    a = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    b = np.array([[2.0, 5.0, 9.0], [3.0, 2.0, 1.0], [1.0, 1.0, 2.0]])
    # third row: nc = 2, nd = 0, n0 = 3, n1 = 0, n2 = 1 -> tau_b = 2 / sqrt(3 * 2)
    np.testing.assert_allclose(kendall(a, b), [1.0, -1.0, 2 / np.sqrt(6)], atol=1e-6)
    # ranks of b3 = [1.5, 1.5, 3] -> pearson([1,2,3], [1.5,1.5,3]) = sqrt(3)/2
    np.testing.assert_allclose(spearman(a, b), [1.0, -1.0, np.sqrt(3) / 2], atol=1e-6)


def test_constant_and_zero_maps_give_zero_not_nan():
    zeros = np.zeros(SHAPE, np.float32)
    b = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    for f in (spearman, kendall):
        np.testing.assert_array_equal(f(zeros, b), np.zeros(4))
        np.testing.assert_array_equal(f(zeros + 3.0, zeros), np.zeros(4))
    np.testing.assert_allclose(top_k_overlap(zeros, zeros, 3), np.ones(4))  # ties -> low indices


def test_integer_inputs_are_accepted():
    a, b = _tied_pairs(3)
    ai = a.astype(np.int32)
    np.testing.assert_allclose(spearman(ai, b), spearman(a, b), atol=1e-6)
    np.testing.assert_allclose(kendall(ai, b), kendall(a, b), atol=1e-6)


def test_top_k_overlap_hand_cases():
    a = np.zeros(SHAPE, np.float32)
    b = np.zeros(SHAPE, np.float32)
    a[:, 0, :5] = [9.0, 8.0, 7.0, 1.0, 0.5]
    b[0, 0, :5] = [0.0, 8.0, 9.0, 7.0, 1.0]
    b[1:, 0, :5] = [9.0, 8.0, 7.0, 1.0, 0.5]
    b[2, 5, 5] = 100.0  # example 2: b's maximum is elsewhere
    np.testing.assert_allclose(top_k_overlap(a, b, 1), [0.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(top_k_overlap(a, b, 2), [0.5, 1.0, 0.5, 1.0])  # {0,1} vs {2,1}
    np.testing.assert_allclose(top_k_overlap(a, b, 3), [2 / 3, 1.0, 2 / 3, 1.0])
    # ties at the k-th value go to the lower flat index: in example 0 the zero at index 0 of b
    # and the zero at index 5 of a complete the top 6 ({0..5} in both)
    np.testing.assert_allclose(top_k_overlap(a, b, 6), [1.0, 1.0, 5 / 6, 1.0])
    # reference: sets of lax.top_k indices
    for k in (1, 4, 36):
        _, ia = jax.lax.top_k(a.reshape(4, -1), k)
        _, ib = jax.lax.top_k(b.reshape(4, -1), k)
        ref = [len(set(x.tolist()) & set(y.tolist())) / k for x, y in zip(ia, ib, strict=True)]
        np.testing.assert_allclose(top_k_overlap(a, b, k), ref)


def test_batched_equals_per_example_jit_vmap_and_no_recompile(assert_no_recompile):
    a, b = _tied_pairs(11)
    for f in (spearman, kendall, lambda a, b: top_k_overlap(a, b, 5)):
        full = assert_no_recompile(f, a, b)
        # each row's value does not depend on its batch neighbours (same shape: no new compile)
        for i in (0, 3):
            alone = f(np.repeat(a[i : i + 1], 4, 0), np.repeat(b[i : i + 1], 4, 0))
            np.testing.assert_allclose(alone, np.full(4, full[i]), atol=1e-6)
    assert_no_recompile(top_k_overlap, a, b, 7)  # a new k compiles nothing either
    for f in (spearman, kendall):  # under the caller's jit
        np.testing.assert_allclose(assert_no_recompile(jax.jit(f), a, b), f(a, b), atol=1e-6)
    nested = jax.vmap(spearman)(jnp.stack([a, b]), jnp.stack([b, a]))
    np.testing.assert_allclose(nested, np.stack([spearman(a, b)] * 2), atol=1e-6)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.zeros(5), np.zeros(5)), errors.InputShapeError, "batch"),
        ((np.zeros((2, 5)), np.zeros((2, 6))), errors.InputShapeError, "same shape"),
        ((np.zeros((2, 5), bool), np.zeros((2, 5))), errors.InputDTypeError, "real"),
        ((np.full((2, 5), np.inf), np.zeros((2, 5))), errors.NonFiniteInputError, "`a`"),
    ],
)
def test_bad_inputs_raise_named_errors(args, error, match):
    for f in (spearman, kendall, lambda a, b: top_k_overlap(a, b, 1)):
        with pytest.raises(error, match=match):
            f(*args)


@pytest.mark.parametrize("k", [0, -2, 6, 1.5])
def test_bad_k(k):
    with pytest.raises(errors.InvalidArgumentError, match="`k`"):
        top_k_overlap(np.zeros((1, 5)), np.zeros((1, 5)), k)


def test_kendall_refuses_sizes_that_overflow_int32():
    big = np.zeros((1, 65537), np.float32)
    with pytest.raises(errors.InvalidArgumentError, match="int32"):
        kendall(big, big)
