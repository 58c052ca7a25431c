"""Affinity propagation against scikit-learn's AffinityPropagation(affinity="precomputed").

scikit-learn adds tiny noise (eps * S + 100 tiny) * N(0, 1) to S; xaijax adds none by default.
Two kinds of tests: (1) well-separated clusters, where the noise cannot matter, compared as is
(exemplar sets and labels); (2) exact replication, where scikit-learn's own noise (drawn as it
draws it: RandomState(0).standard_normal) is added to S beforehand and the run is in float64.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

from xaijax import errors
from xaijax.summaries import affinity_propagation, summary_preference

SK = dict(affinity="precomputed", damping=0.9, max_iter=1000, convergence_iter=100)


def _blobs(n, k, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10, size=(k, 2))
    x = centers[rng.integers(0, k, n)] + rng.normal(size=(n, 2))
    return -((x[:, None] - x[None]) ** 2).sum(-1)


def _sklearn(s, preference, **opts):
    cluster = pytest.importorskip("sklearn.cluster")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cluster.AffinityPropagation(
            **{**SK, **opts}, preference=preference, random_state=0
        ).fit(s)


@pytest.mark.parametrize(
    ("n", "k", "seed", "pref"),
    # One size (one compilation); several cluster counts and preferences.
    [(40, 3, 0, None), (40, 4, 1, "min"), (40, 5, 2, None), (40, 3, 3, "q10"), (40, 6, 4, "x2")],
)
def test_same_exemplars_and_labels_as_sklearn(n, k, seed, pref):
    s = _blobs(n, k, seed)
    p = {None: None, "min": s.min(), "q10": np.quantile(s, 0.1), "x2": 2 * np.median(s)}[pref]
    ref = _sklearn(s, p)
    ours = affinity_propagation(s.astype(np.float32), preference=p)
    m = int(ours.n_clusters)
    np.testing.assert_array_equal(ours.exemplars[:m], ref.cluster_centers_indices_)
    np.testing.assert_array_equal(ours.exemplars[m:], -1)
    np.testing.assert_array_equal(ours.labels, ref.labels_)
    np.testing.assert_array_equal(np.flatnonzero(ours.is_exemplar), ref.cluster_centers_indices_)
    assert bool(ours.converged) and abs(int(ours.n_iter) - ref.n_iter_) <= 2


def _sklearn_noise(s, preference):
    """S with the preference on its diagonal and scikit-learn's noise, as it draws it."""
    s = s.copy()
    np.fill_diagonal(s, preference)
    z = np.random.RandomState(0).standard_normal(size=s.shape)
    return s + (np.finfo(s.dtype).eps * s + np.finfo(s.dtype).tiny * 100) * z


def test_reproduces_a_sklearn_run_with_ties_exactly_in_float64():
    # A 4 x 4 grid: many exactly tied similarities, so the noise decides.
    g = np.stack(np.meshgrid(np.arange(4.0), np.arange(4.0)), -1).reshape(-1, 2)
    s = -((g[:, None] - g[None]) ** 2).sum(-1)
    p = np.median(s)
    ref = _sklearn(s, p)
    with jax.enable_x64(True):
        noisy = _sklearn_noise(s, p)
        ours = affinity_propagation(noisy, preference=np.diagonal(noisy).copy())
        m = int(ours.n_clusters)
        np.testing.assert_array_equal(ours.exemplars[:m], ref.cluster_centers_indices_)
        np.testing.assert_array_equal(ours.labels, ref.labels_)
        assert int(ours.n_iter) == ref.n_iter_


def test_non_convergence_warns_flags_and_matches_sklearn():
    s = _blobs(40, 3, 5)
    ref = _sklearn(s, None, max_iter=60)  # convergence is only checked from iteration 100
    with pytest.warns(RuntimeWarning, match="did not converge"):
        ours = affinity_propagation(s.astype(np.float32), max_iter=60)
    assert not bool(ours.converged) and int(ours.n_iter) == 60 == ref.n_iter_
    np.testing.assert_array_equal(ours.labels, ref.labels_)


def test_non_convergence_warns_under_jit():
    s = _blobs(40, 2, 6).astype(np.float32)
    fn = jax.jit(lambda a: affinity_propagation(a, max_iter=5, convergence_iter=10))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        result = fn(s)
        jax.block_until_ready(result)
        jax.effects_barrier()
    assert not bool(result.converged)


@pytest.mark.parametrize("preference", [-1.0, -3.0])
def test_equal_similarities_like_sklearn(preference):
    s = np.full((40, 40), -2.0)
    ref = _sklearn(s, preference)
    ours = affinity_propagation(s.astype(np.float32), preference=preference)
    np.testing.assert_array_equal(ours.labels, ref.labels_)
    m = int(ours.n_clusters)
    np.testing.assert_array_equal(ours.exemplars[:m], ref.cluster_centers_indices_)
    assert bool(ours.converged)


def test_jit_vmap_and_key():
    mats = np.stack([_blobs(40, 3, 7), _blobs(40, 2, 8)]).astype(np.float32)
    one = [affinity_propagation(m) for m in mats]
    batched = jax.vmap(affinity_propagation)(mats)
    jitted = jax.jit(affinity_propagation)(mats[0])
    for i in range(2):
        np.testing.assert_array_equal(batched.labels[i], one[i].labels)
    np.testing.assert_array_equal(jitted.labels, one[0].labels)
    noisy = affinity_propagation(mats[0], key=jax.random.key(0))
    np.testing.assert_array_equal(noisy.labels, one[0].labels)


def test_summary_preference():
    s = np.random.default_rng(9).random((2, 40, 40)).astype(np.float32)
    shifted, p = summary_preference(s)
    ref = s - s.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(shifted, ref, atol=1e-7)
    np.testing.assert_allclose(p, 1.3 * np.median(ref.reshape(2, -1), axis=1), atol=1e-6)
    assert (np.asarray(shifted).max(axis=(1, 2)) == 0).all()
    result = affinity_propagation(shifted[0], preference=p[0])
    assert int(result.n_clusters) >= 1


def test_errors():
    with pytest.raises(errors.InputShapeError, match="square"):
        affinity_propagation(np.zeros((3, 4), np.float32))
    with pytest.raises(errors.InputShapeError, match="preference"):
        affinity_propagation(np.zeros((3, 3), np.float32), preference=np.zeros(2))
    with pytest.raises(errors.InvalidArgumentError, match="damping"):
        affinity_propagation(np.zeros((3, 3), np.float32), damping=0.3)
    with pytest.raises(errors.InvalidArgumentError, match="max_iter"):
        affinity_propagation(np.zeros((3, 3), np.float32), max_iter=0)
    with pytest.raises(errors.InputShapeError, match="square"):
        summary_preference(np.zeros((3, 4), np.float32))
