"""Pointing game, energy in mask and channel reduction against hand-computed cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors
from xaijax.metrics import energy_in_mask, pointing_game, reduce_channels


def test_reduce_channels_each_reduction():
    a = jnp.array([[[[3.0, -4.0]], [[0.0, -1.0]]]])  # [1, 2, 1, 2]
    np.testing.assert_allclose(reduce_channels(a), [[[7.0], [1.0]]])
    np.testing.assert_allclose(reduce_channels(a, "sum"), [[[-1.0], [-1.0]]])
    np.testing.assert_allclose(reduce_channels(a, "max_abs"), [[[4.0], [1.0]]])
    np.testing.assert_allclose(reduce_channels(a, "l2"), [[[5.0], [1.0]]])
    with pytest.raises(errors.InvalidArgumentError, match="reduction"):
        reduce_channels(a, "mean")


def test_pointing_game_hand_cases():
    s = np.zeros((4, 5, 5), np.float32)
    m = np.zeros((4, 5, 5), bool)
    s[0, 2, 3] = 1.0  # max inside the mask -> hit
    m[0, 1:4, 2:5] = True
    s[1, 0, 0] = 1.0  # max outside -> miss
    m[1, 3:, 3:] = True
    s[2, 0, 1] = s[2, 4, 4] = 2.0  # tie: the first (row-major) maximum (0, 1) counts -> miss
    m[2, 4, 4] = True
    s[3, 2, 2] = 1.0  # empty mask -> miss
    np.testing.assert_array_equal(pointing_game(s, m), [True, False, False, False])
    # reversing the tie order flips the third case
    s2 = s.copy()
    s2[2, 0, 1] = 1.0
    assert bool(pointing_game(s2, m)[2])


def test_pointing_game_tolerance_is_euclidean():
    s = np.zeros((1, 10, 10), np.float32)
    s[0, 0, 0] = 1.0
    m = np.zeros((1, 10, 10), bool)
    m[0, 3, 4] = True  # distance 5 exactly
    assert not bool(pointing_game(s, m, tolerance=4.99)[0])
    assert bool(pointing_game(s, m, tolerance=5)[0])
    m2 = np.zeros((1, 10, 10), bool)
    m2[0, 4, 4] = True  # distance sqrt(32) = 5.66: inside a 6-px Chebyshev box but not the disk
    assert not bool(pointing_game(s, m2, tolerance=5.5)[0])
    assert bool(pointing_game(s, m2, tolerance=5.7)[0])


def _pointing_reference(s, m, tol):
    hits = []
    for si, mi in zip(s, m, strict=True):
        r, c = np.unravel_index(np.argmax(si), si.shape)
        ys, xs = np.nonzero(mi)
        d = np.sqrt((ys - r) ** 2 + (xs - c) ** 2)
        hits.append(bool(d.size and d.min() <= tol))
    return np.array(hits)


def test_pointing_game_matches_numpy_reference_batched_and_per_example():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(16, 12, 9)).astype(np.float32)
    m = rng.random((16, 12, 9)) < 0.05
    for tol in (0, 1.5, 3):
        hits = pointing_game(s, m, tolerance=tol)
        np.testing.assert_array_equal(hits, _pointing_reference(s, m, tol))
        for i in (0, 7):
            assert bool(pointing_game(s[i : i + 1], m[i : i + 1], tolerance=tol)[0]) == hits[i]


def test_pointing_game_jit_vmap_no_recompile(assert_no_recompile):
    rng = np.random.default_rng(1)
    s = jnp.asarray(rng.normal(size=(3, 6, 6)), jnp.float32)
    m = jnp.asarray(rng.random((3, 6, 6)) < 0.3)
    eager = pointing_game(s, m, tolerance=1.0)
    jitted = jax.jit(lambda s, m: pointing_game(s, m, tolerance=1.0))
    np.testing.assert_array_equal(assert_no_recompile(jitted, s, m), eager)
    assert_no_recompile(pointing_game, s, m, tolerance=1.0)
    stacked = jax.vmap(lambda s, m: pointing_game(s, m, tolerance=1.0))(s[None], m[None])
    np.testing.assert_array_equal(stacked[0], eager)


def test_energy_in_mask_hand_case_and_degenerate_maps():
    s = jnp.array(
        [
            [[3.0, 1.0], [-5.0, 0.0]],  # positive mass 4, 3 inside
            [[0.0, 0.0], [0.0, 0.0]],  # no mass -> 0
            [[-1.0, -2.0], [-3.0, -4.0]],  # only negative -> 0
            [[2.0, 2.0], [2.0, 2.0]],  # constant -> share of pixels
        ]
    )
    m = jnp.array([[[True, False], [True, False]]] * 3 + [[[True, True], [True, False]]])
    e = energy_in_mask(s, m)
    np.testing.assert_allclose(e, [0.75, 0.0, 0.0, 0.75], rtol=1e-6)
    assert np.all(np.isfinite(e))
    np.testing.assert_allclose(energy_in_mask(s[3:], m[3:]), e[3:])


def test_energy_in_mask_matches_numpy_and_does_not_recompile(assert_no_recompile):
    rng = np.random.default_rng(2)
    s = rng.normal(size=(5, 7, 8)).astype(np.float32)
    m = rng.random((5, 7, 8)) < 0.4
    pos = np.maximum(s, 0)
    ref = (pos * m).sum((1, 2)) / pos.sum((1, 2))
    np.testing.assert_allclose(assert_no_recompile(energy_in_mask, s, m), ref, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(energy_in_mask)(s, m), ref, rtol=1e-5)


def test_integer_masks_are_accepted():
    s = jnp.zeros((1, 2, 2)).at[0, 1, 1].set(1.0)
    assert bool(pointing_game(s, jnp.array([[[0, 0], [0, 7]]]))[0])


@pytest.mark.parametrize(
    ("saliency", "mask", "error", "match"),
    [
        (np.zeros((4, 4), np.float32), np.zeros((4, 4), bool), errors.InputShapeError, "saliency"),
        (
            np.zeros((1, 4, 4, 3), np.float32),
            np.zeros((1, 4, 4), bool),
            errors.InputShapeError,
            "reduce_channels",
        ),
        (
            np.zeros((1, 4, 4), np.int32),
            np.zeros((1, 4, 4), bool),
            errors.InputDTypeError,
            "saliency",
        ),
        (
            np.zeros((1, 4, 4), np.float32),
            np.zeros((1, 4, 5), bool),
            errors.InputShapeError,
            "mask",
        ),
        (
            np.zeros((1, 4, 4), np.float32),
            np.zeros((1, 4, 4), np.float32),
            errors.InputDTypeError,
            "mask > 0.5",
        ),
        (
            np.full((1, 4, 4), np.nan, np.float32),
            np.zeros((1, 4, 4), bool),
            errors.NonFiniteInputError,
            "saliency",
        ),
    ],
)
def test_bad_inputs_raise_named_errors(saliency, mask, error, match):
    with pytest.raises(error, match=match):
        pointing_game(saliency, mask)
    with pytest.raises(error, match=match):
        energy_in_mask(saliency, mask)


@pytest.mark.parametrize("tolerance", [-1, float("nan"), "15", True])
def test_bad_tolerance(tolerance):
    with pytest.raises(errors.InvalidArgumentError, match="tolerance"):
        pointing_game(
            np.zeros((1, 2, 2), np.float32), np.ones((1, 2, 2), bool), tolerance=tolerance
        )
