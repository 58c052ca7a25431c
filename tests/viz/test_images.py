"""PNG encoding, normalisation and grids against independent references."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from xaijax import errors, viz


def test_png_round_trips_through_pillow():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(viz.encode_png(img))).convert("RGB"))
    np.testing.assert_array_equal(decoded, img)


def test_normalize_is_finite_on_zero_maps_and_scales_to_one():
    maps = np.stack([np.zeros((4, 4)), np.arange(16.0).reshape(4, 4)])
    out = viz.normalize(maps, percentile=100)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], 0.0)
    assert out[1].max() == 1.0 and out[1, 0, 0] == 0.0


def test_colorize_endpoints_and_grid_layout():
    rgb = viz.colorize(np.array([0.0, 1.0]))
    assert rgb.shape == (2, 3) and rgb[0].sum() < rgb[1].sum()
    g = viz.grid([[np.zeros((3, 3, 3)), np.ones((3, 3))]], pad=1)
    assert g.shape == (5, 9, 3)
    np.testing.assert_array_equal(g[1:4, 5:8], 1.0)
    np.testing.assert_array_equal(g[1:4, 1:4], 0.0)
    with pytest.raises(errors.InputShapeError, match="tile"):
        viz.grid([[np.zeros((3, 3)), np.zeros((4, 4))]])
