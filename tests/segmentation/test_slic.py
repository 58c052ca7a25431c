"""SLIC superpixels/supervoxels: oracles (piecewise-constant images, a NumPy port of
scikit-image's k-means loop), connectivity, time, transformations and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from xaijax import errors
from xaijax.segmentation import rgb_to_lab, slic
from xaijax.segmentation._slic import _regular_grid


def _smooth_images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields in [0, 1] (a few low-frequency sinusoids per channel)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((batch, size, size, 3), np.float32)
    for b in range(batch):
        for c in range(3):
            fy, fx, py, px = rng.uniform(1, 4, 2).tolist() + rng.uniform(0, 6, 2).tolist()
            out[b, :, :, c] = 0.5 + 0.5 * np.sin(fx * 2 * xx + px) * np.cos(fy * 2 * yy + py)
    return out


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label maps describe the same partition (equal up to renaming)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


def _slic_kmeans_reference(
    x: np.ndarray, approx_segments: int, compactness: float, iters: int, spacing
):
    """NumPy port (float64, loops) of scikit-image's ``_slic_cython`` for a [(T,) H, W, 3] input."""
    img = x.astype(np.float64)
    img = (img - img.min()) / (img.max() - img.min())
    lab = np.asarray(rgb_to_lab(jnp.asarray(img, jnp.float32)), np.float64) / compactness
    if img.ndim == 3:  # an image is a volume of depth 1
        lab = lab[None]
    shape = lab.shape[:3]
    starts, steps = _regular_grid(shape, approx_segments)
    axes = [np.arange(s0, n, st) for s0, n, st in zip(starts, shape, steps, strict=True)]
    seeds = [[z, y, x, 0.0, 0.0, 0.0] for z in axes[0] for y in axes[1] for x in axes[2]]
    seeds = np.array(seeds, np.float64)
    spacing = np.asarray(spacing, np.float64)
    weight = 1.0 / max(steps) ** 2
    nearest = np.zeros(shape, int)
    coords = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    feats = np.concatenate([coords, lab], -1).reshape(-1, 6)
    for _ in range(iters):
        dist = np.full(shape, np.inf)
        for k, seed in enumerate(seeds):
            if np.isnan(seed[0]):
                continue  # an empty cluster (0 / 0 in scikit-image)
            lo = [int(max(c - 2 * st, 0)) for c, st in zip(seed[:3], steps, strict=True)]
            hi = [
                int(min(c + 2 * st + 1, n)) for c, st, n in zip(seed[:3], steps, shape, strict=True)
            ]
            for z in range(lo[0], hi[0]):
                for y in range(lo[1], hi[1]):
                    for x_ in range(lo[2], hi[2]):
                        dpos = spacing * (seed[:3] - (z, y, x_))
                        d = np.sum(dpos**2) * weight + np.sum((lab[z, y, x_] - seed[3:]) ** 2)
                        if d < dist[z, y, x_]:
                            dist[z, y, x_] = d
                            nearest[z, y, x_] = k
        counts = np.bincount(nearest.ravel(), minlength=len(seeds)).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            seeds = np.stack(
                [np.bincount(nearest.ravel(), feats[:, f], len(seeds)) / counts for f in range(6)],
                -1,
            )
    return nearest[0] if x.ndim == 3 else nearest


def test_kmeans_matches_numpy_port_of_scikit_image():
    x = _smooth_images(1, 20, seed=3)
    ours = np.asarray(slic(9, num_iters=5, enforce_connectivity=False)(x))[0]
    assert _same_partition(ours, _slic_kmeans_reference(x[0], 9, 10.0, 5, (1, 1, 1)))


def test_video_kmeans_with_time_spacing_matches_numpy_port():
    frames = _smooth_images(1, 10, seed=7)[0]
    video = np.stack([frames * (1 - 0.05 * t) + 0.02 * t for t in range(6)]).astype(np.float32)
    ours = slic(12, num_iters=4, time_spacing=2.5, enforce_connectivity=False)(video[None])
    ref = _slic_kmeans_reference(video, 12, 10.0, 4, (2.5, 1, 1))
    assert _same_partition(np.asarray(ours)[0], ref)


@pytest.fixture(scope="module")
def regions():
    """Quadrants, stripes off the seed grid, a smooth field and a constant image; slic(16)."""
    quad = np.zeros((32, 32, 3), np.float32)
    quad[:16, 16:] = [1, 0, 0]
    quad[16:, :16] = [0, 1, 0]
    quad[16:, 16:] = [0, 0, 1]
    quad_region = (np.arange(32)[:, None] >= 16) * 2 + (np.arange(32)[None, :] >= 16)
    stripes = np.zeros((32, 32, 3), np.float32)
    stripes[:, :11] = [0.9, 0.1, 0.1]
    stripes[:, 11:23] = [0.1, 0.8, 0.2]
    stripes[:, 23:] = [0.2, 0.2, 0.9]
    stripe_region = np.digitize(np.arange(32), [11, 23])[None, :].repeat(32, 0)
    smooth = _smooth_images(1, 32, seed=2)[0]
    flat = np.full((32, 32, 3), 0.3, np.float32)
    x = np.stack([quad, stripes, smooth, flat])
    segment = slic(16, num_segments=24)
    return segment, x, np.asarray(segment(x)), (quad_region, stripe_region)


def test_recovers_the_regions_of_piecewise_constant_images(regions):
    _, _, labels, region_maps = regions
    for img, region in zip(labels, region_maps, strict=False):
        for lab in np.unique(img):
            assert len(np.unique(region[img == lab])) == 1, f"segment {lab} crosses a border"
        # Each region is exactly a union of segments, and SLIC found all of them.
        assert len(np.unique(img)) >= len(np.unique(region))


def test_labels_are_contiguous_connected_and_bounded(regions):
    _, _, labels, _ = regions
    assert labels.dtype == np.int32
    for img in labels:
        k = img.max() + 1
        assert k <= 24
        np.testing.assert_array_equal(np.unique(img), np.arange(k))
        for lab in range(k):
            _, n_components = ndimage.label(img == lab)  # 4-connectivity
            assert n_components == 1, f"segment {lab} has {n_components} components"
        # numbered in raster order of first appearance
        _, first = np.unique(img.ravel(), return_index=True)
        assert np.all(np.diff(first) > 0)


def test_grid_layout_follows_scikit_image():
    assert _regular_grid((1, 64, 64), 100) == ([0, 3, 3], [1, 6, 6])
    # (2048 / 32) ** (1 / 3) rounds below 4 in floating point: start 1, as scikit-image has it.
    assert _regular_grid((8, 16, 16), 32) == ([1, 1, 1], [4, 4, 4])
    assert _regular_grid((1, 8, 8), 2) == ([0, 2, 2], [1, 6, 6])


def test_video_supervoxels_respect_time():
    rng = np.random.default_rng(1)
    texture = _smooth_images(1, 16, seed=4)[0, ..., :1]
    frame_a = 0.2 + 0.5 * texture * np.array([1.0, 0.2, 0.2], np.float32)  # reddish
    frame_b = 0.2 + 0.5 * texture * np.array([0.2, 0.2, 1.0], np.float32)  # bluish
    video = np.stack([frame_a] * 4 + [frame_b] * 4)[None]  # a scene cut after frame 4
    static = np.stack([frame_a] * 8)[None]
    x = np.concatenate([video, static]).astype(np.float32)
    x += rng.normal(0, 1e-3, x.shape).astype(np.float32)
    segment = slic(32, compactness=20.0)  # seeds on a 2 x 4 x 4 grid
    labels = np.asarray(segment(x))
    assert labels.shape == (2, 8, 16, 16)
    cut = labels[0]
    assert not set(np.unique(cut[:4])) & set(np.unique(cut[4:])), "a supervoxel spans the cut"
    for lab in np.unique(cut):
        _, n = ndimage.label(cut == lab)  # 6-connectivity in (t, y, x)
        assert n == 1
    # Fewer seeds than frames: one seed layer in time, so a static clip gives tubes.
    tubes = np.asarray(slic(8)(static))[0]
    assert all(np.array_equal(tubes[0], tubes[t]) for t in range(8))


def test_batched_equals_per_example_jit_vmap_and_no_recompile(regions, assert_no_recompile):
    segment, x, labels, _ = regions
    np.testing.assert_array_equal(np.asarray(assert_no_recompile(segment, x)), labels)
    # Each example is segmented on its own: change its neighbours, its labels stay (no recompile).
    swapped = np.asarray(segment(np.stack([x[0], x[0], x[2], x[2]])))
    for i in (0, 2):
        np.testing.assert_array_equal(swapped[i], labels[i])
        np.testing.assert_array_equal(swapped[i + 1], labels[i])
    np.testing.assert_array_equal(np.asarray(jax.jit(segment)(x)), labels)
    stacked = jax.vmap(segment)(jnp.asarray(x).reshape(2, 2, 32, 32, 3))
    np.testing.assert_array_equal(np.asarray(stacked).reshape(labels.shape), labels)


def test_sharded_batch_equals_one_device_without_collectives(regions):
    """A batch the caller sharded over the CPU devices (4 in tests/conftest.py) gets the labels
    of one device, stays sharded, and runs a program without collectives (each device loops
    over its own share under shard_map); an unsharded batch stays on one device."""
    import xaijax

    segment, x, labels, _ = regions
    single = segment(x)
    assert len(single.sharding.device_set) == 1
    np.testing.assert_array_equal(np.asarray(single), labels)
    xs = xaijax.shard_batch(jnp.asarray(x))
    assert len(xs.sharding.device_set) == 4
    sharded = segment(xs)
    assert len(sharded.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(sharded), labels)
    hlo = segment.lowered(xs).compile().as_text()
    traced = jax.jit(lambda v: segment(v)).lower(xs).compile().as_text()
    assert "all-reduce" in traced  # what it avoids: the caller's jit over a sharded batch has one
    collectives = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
    assert not [op for op in collectives if op in hlo]


def test_grayscale_input_recovers_halves():
    x = np.full((1, 16, 16, 1), 0.2, np.float32)
    x[0, :, 7:] = 0.8  # off the seed grid (seeds at columns 4 and 12)
    # Without Lab, intensities span [0, 1]: compactness must be small for colour to matter.
    labels = np.asarray(slic(4, compactness=0.1)(x))[0]
    for lab in np.unique(labels):
        assert len(np.unique(x[0, ..., 0][labels == lab])) == 1


def test_rgb_to_lab_known_values():
    lab = np.asarray(rgb_to_lab(jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])))
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(lab[1], [53.2408, 80.0925, 67.2032], atol=0.01)
    np.testing.assert_allclose(lab[2], [0.0, 0.0, 0.0], atol=1e-4)


@pytest.mark.parametrize(
    "x, error, words",
    [
        (np.zeros((1, 8, 8, 3), np.int32), errors.InputDTypeError, "floating"),
        (np.zeros((8, 8, 3), np.float32), errors.InputShapeError, "x[None]"),
        (np.zeros((1, 2, 3, 8, 8, 3), np.float32), errors.InputShapeError, "rank 6"),
        (np.full((1, 8, 8, 3), np.nan, np.float32), errors.NonFiniteInputError, "NaN"),
    ],
)
def test_bad_inputs_raise_named_errors(x, error, words):
    with pytest.raises(error, match="x") as info:
        slic(4)(x)
    assert words in str(info.value)


def test_bad_hyperparameters_raise_named_errors():
    for kwargs, name in [
        ({"approx_segments": 0}, "approx_segments"),
        ({"compactness": -1.0}, "compactness"),
        ({"num_iters": 1.5}, "num_iters"),
        ({"min_size_factor": 1.0}, "min_size_factor"),
        ({"search_radius": 0}, "search_radius"),
        # accepted, or a raw TypeError, before the checks moved to _validation's primitives
        ({"compactness": True}, "compactness"),
        ({"time_spacing": "1"}, "time_spacing"),
        ({"min_size_factor": "0.1"}, "min_size_factor"),
    ]:
        with pytest.raises(errors.InvalidArgumentError, match=name):
            slic(**kwargs)
    with pytest.raises(errors.InputShapeError, match="3 channels"):
        slic(4, convert_to_lab=True)(np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(errors.InvalidArgumentError, match="num_segments"):
        slic(100, enforce_connectivity=False, num_segments=4)(np.zeros((1, 32, 32, 3), np.float32))
