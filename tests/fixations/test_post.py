"""Outlier removal, heatmap, boxes and points against the authors' utils.py written in NumPy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from xaijax import errors
from xaijax.fixations import boxes, fixation_points, heatmap, remove_outliers


def ref_out_rem(counts, radius_fraction=0.1, min_fraction=0.05):
    """The authors' ``out_rem`` on a point list (a location fixated n times is n points)."""
    pts = np.repeat(np.argwhere(counts > 0), counts[counts > 0].astype(int), axis=0)
    diag = math.sqrt(sum(s * s for s in counts.shape)) * radius_fraction
    kept = np.zeros(counts.shape, np.int64)
    for p in pts:
        neighbours = np.sum(np.sqrt(np.sum((pts - p) ** 2, axis=1)) < diag)
        if neighbours > min_fraction * len(pts):
            kept[tuple(p)] += 1
    return kept


def ref_heatmap(counts, sigma):
    """``cv2.GaussianBlur(counts, (k, k), sigma)`` with k = min side forced odd and OpenCV's
    reflect-101 border, as explicit sums, then scaled by the max."""
    h, w = counts.shape
    k = min(h, w) if min(h, w) % 2 else min(h, w) - 1
    r = (k - 1) // 2
    g = np.exp(-((np.arange(k) - r) ** 2) / (2 * sigma**2))
    g /= g.sum()

    def reflect(q, n):
        period = 2 * (n - 1)
        q = q % period
        return period - q if q >= n else q

    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            for i in range(k):
                for j in range(k):
                    out[y, x] += g[i] * g[j] * counts[reflect(y + i - r, h), reflect(x + j - r, w)]
    return out / out.max() if out.max() > 0 else out


def clustered_map(rng, shape=(20, 24)):
    m = np.zeros(shape, np.int32)
    for _ in range(30):
        y, x = rng.normal([6, 14], 2.0).round().astype(int)
        m[np.clip(y, 0, shape[0] - 1), np.clip(x, 0, shape[1] - 1)] += 1
    m[18, 1] += 1  # isolated points: outliers
    m[0, 23] += 1
    return m


def test_remove_outliers_matches_out_rem(rng):
    maps = np.stack([clustered_map(rng) for _ in range(3)])
    got = np.asarray(remove_outliers(maps))
    for b in range(3):
        np.testing.assert_array_equal(got[b], ref_out_rem(maps[b]))
    assert got[:, 18, 1].sum() == 0 and got[:, 0, 23].sum() == 0
    got = np.asarray(remove_outliers(maps, radius_fraction=0.3, min_fraction=0.2))
    np.testing.assert_array_equal(got[0], ref_out_rem(maps[0], 0.3, 0.2))


@pytest.mark.parametrize("sigma", [None, 2.5])
def test_heatmap_matches_opencv_style_blur(rng, sigma):
    maps = np.stack([clustered_map(rng) for _ in range(2)])
    got = np.asarray(heatmap(maps, sigma=sigma))
    s = (19 / 10.45) if sigma is None else sigma  # k = min(20, 24) forced odd = 19
    for b in range(2):
        np.testing.assert_allclose(got[b], ref_heatmap(ref_out_rem(maps[b]), s), atol=1e-5)
    raw = np.asarray(heatmap(maps, sigma=sigma, remove_outliers=False))
    np.testing.assert_allclose(raw[1], ref_heatmap(maps[1], s), atol=1e-5)


def test_heatmap_batched_jitted_and_degenerate(rng, assert_no_recompile):
    maps = jnp.asarray(np.stack([clustered_map(rng) > 0 for _ in range(3)]))
    full = np.asarray(assert_no_recompile(heatmap, maps))
    for b in range(3):
        np.testing.assert_allclose(np.asarray(heatmap(maps[b : b + 1]))[0], full[b], atol=1e-6)
    empty = np.asarray(heatmap(jnp.zeros((2, 7, 9), bool)))
    assert np.all(empty == 0) and np.all(np.isfinite(empty))
    # Any number of axes: a 1-D (text) map and a 3-D (video) map peak at the fixation.
    line = np.asarray(heatmap(jnp.zeros((1, 15), bool).at[0, 4].set(True)))
    assert line.argmax() == 4 and line.max() == 1.0
    vol = np.asarray(heatmap(jnp.zeros((1, 5, 9, 9), bool).at[0, 2, 3, 6].set(True)))
    assert np.unravel_index(vol.argmax(), vol.shape) == (0, 2, 3, 6)


def test_boxes_points_rule_is_tight_box_of_kept_fixations():
    m = np.zeros((2, 20, 20), bool)
    m[0, 2:5, 3:11] = True  # 24 points: a lone point (1 neighbour) is <= 5 % of 25
    m[0, 18, 18] = True  # an outlier, dropped before boxing
    m[1, 10, 10] = True
    np.testing.assert_array_equal(np.asarray(boxes(m)), [[2, 3, 5, 11], [10, 10, 11, 11]])
    np.testing.assert_array_equal(np.asarray(boxes(m, remove_outliers=False))[0], [2, 3, 19, 19])
    np.testing.assert_array_equal(np.asarray(boxes(np.zeros((1, 6, 6), bool))), [[0, 0, 0, 0]])


def test_boxes_heatmap_rule_matches_wsol_reference(rng):
    maps = np.stack([clustered_map(rng) for _ in range(2)])
    got = np.asarray(boxes(maps, rule="heatmap", threshold=0.3))
    for b in range(2):
        h = ref_heatmap(ref_out_rem(maps[b]), 19 / 10.45)
        h = (h - h.min()) / (h.max() - h.min())
        labels, n = ndimage.label(h > 0.3)  # 4-connectivity
        sizes = ndimage.sum(np.ones_like(h), labels, range(1, n + 1))
        ys, xs = np.nonzero(labels == 1 + int(np.argmax(sizes)))
        np.testing.assert_array_equal(got[b], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


def test_fixation_points():
    m = np.zeros((2, 3, 4), bool)
    m[0, 1, 2] = m[0, 2, 0] = True
    pts = fixation_points(m)
    assert [p.tolist() for p in pts] == [[[1, 2], [2, 0]], []]
    assert pts[1].shape == (0, 2)


def test_bad_arguments_raise_named_errors():
    m = np.zeros((1, 8, 8), bool)
    with pytest.raises(errors.InputShapeError, match="fixation_map"):
        heatmap(np.zeros(8, bool))
    with pytest.raises(errors.InputShapeError, match="rank 3"):
        boxes(np.zeros((1, 4, 8, 8), bool))
    with pytest.raises(errors.InvalidArgumentError, match="non-negative"):
        heatmap(-np.ones((1, 8, 8)))
    with pytest.raises(errors.NonFiniteInputError, match="fixation_map"):
        remove_outliers(np.full((1, 8, 8), np.nan))
    with pytest.raises(errors.InvalidArgumentError, match="sigma"):
        heatmap(m, sigma=float("nan"))
    with pytest.raises(errors.InvalidArgumentError, match="min_fraction"):
        heatmap(m, min_fraction=float("inf"))
    with pytest.raises(errors.InvalidArgumentError, match="sigma"):
        heatmap(m, sigma=0.0)
    with pytest.raises(errors.InvalidArgumentError, match="radius_fraction"):
        remove_outliers(m, radius_fraction=0.0)
    with pytest.raises(errors.InvalidArgumentError, match="min_fraction"):
        heatmap(m, min_fraction=2.0)
    with pytest.raises(errors.InvalidArgumentError, match="rule"):
        boxes(m, rule="tight")
    with pytest.raises(errors.InputDTypeError, match="fixation_map"):
        heatmap(np.array([["a", "b"]]))


def test_value_checks_of_a_device_map_move_only_a_scalar_to_the_host(monkeypatch):
    """The count map's finite/non-negative checks run on its device: with implicit
    device-to-host transfers disallowed an eager call works, only one-element `device_get`s of
    the checks' booleans happen, and NaN or negative counts are still reported by name. The
    landed check copied the whole map with `np.asarray` (which a CPU backend's transfer guard
    lets through, so `np.asarray` is spied on too)."""
    counts = jnp.zeros((2, 8, 8)).at[:, 2:5, 3:6].set(2.0)
    remove_outliers(counts)  # compile outside the guard
    sizes: list[int] = []
    real_get, real_asarray = jax.device_get, np.asarray

    def spy_get(tree):
        sizes.extend(int(np.size(a)) for a in jax.tree_util.tree_leaves(tree))
        return real_get(tree)

    def spy_asarray(a, *args, **kwargs):
        if isinstance(a, jax.Array):
            sizes.append(int(a.size))
        return real_asarray(a, *args, **kwargs)

    monkeypatch.setattr(jax, "device_get", spy_get)
    monkeypatch.setattr(np, "asarray", spy_asarray)
    with jax.transfer_guard_device_to_host("disallow"):
        out = remove_outliers(counts)
        assert sizes and max(sizes) == 1, sizes  # booleans, never the map
        with pytest.raises(errors.NonFiniteInputError, match="fixation_map"):
            remove_outliers(counts.at[0, 0, 0].set(jnp.nan))
        with pytest.raises(errors.InvalidArgumentError, match="non-negative"):
            remove_outliers(counts.at[1, 0, 0].set(-1.0))
    monkeypatch.undo()
    assert max(sizes) == 1, sizes  # and one count on the error path
    np.testing.assert_array_equal(np.asarray(out), np.asarray(counts))
