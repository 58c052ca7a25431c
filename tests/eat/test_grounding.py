"""Attribute grounding: CAM's exact decomposition of an attribute logit, the explainer
contract, peaks, boxes and the part-based hit test."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import eat, errors


def test_cam_on_the_attribute_head_decomposes_the_logit_exactly(tiny, images):
    net, params = tiny
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x = jnp.asarray(images, jnp.float64)
        logits = net.apply({"params": p64}, x)["attributes"]
        assert logits.dtype == jnp.float64
        ground = eat.attribute_grounding(net, "block2", relu=False, upsample=False)
        for j in range(logits.shape[1]):
            t = jnp.full((4,), j)
            maps = ground(p64, x, t)
            assert maps.shape == (4, 16, 16) and maps.dtype == jnp.float64
            recon = maps.mean(axis=(1, 2)) + p64["attributes"]["bias"][j]
            np.testing.assert_allclose(recon, logits[:, j], rtol=0, atol=1e-10)


def test_grad_cam_option_and_relu(tiny, images):
    net, params = tiny
    x = jnp.asarray(images)
    t = jnp.array([0, 1, 2, 3])
    g = eat.attribute_grounding(net, "block2", method="grad_cam")(params, x, t)
    c = eat.attribute_grounding(net, "block2")(params, x, t)
    assert g.shape == c.shape == (4, 32, 32)
    assert (np.asarray(c) >= 0).all() and (np.asarray(g) >= 0).all()
    # on a linear GAP head Grad-CAM's weights are CAM's divided by the number of locations
    np.testing.assert_allclose(np.asarray(g) * 16 * 16, np.asarray(c), rtol=1e-4, atol=1e-6)
    with pytest.raises(errors.InvalidArgumentError, match="method"):
        eat.attribute_grounding(net, "block2", method="lrp")


def test_grounding_contract(tiny, images, assert_no_recompile):
    net, params = tiny
    x = jnp.asarray(images)
    t = jnp.array([5, 0, 3, 1])
    ground = eat.attribute_grounding(net, "block2")
    eager = assert_no_recompile(ground, params, x, t)
    jitted = jax.jit(lambda p, xx, tt: ground(p, xx, tt))(params, x, t)
    np.testing.assert_allclose(eager, jitted, rtol=2e-4, atol=1e-6)
    single = jnp.concatenate([ground(params, x[i : i + 1], t[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(eager, single, rtol=2e-4, atol=1e-6)
    vm = jax.vmap(lambda xx, tt: ground(params, xx, tt))(
        x.reshape(2, 2, 32, 32, 3), t.reshape(2, 2)
    )
    np.testing.assert_allclose(vm.reshape(eager.shape), eager, rtol=2e-4, atol=1e-6)
    # several attributes per image at once
    idx = jnp.array([[5, 0], [0, 1], [3, 3], [1, 2]])
    many = assert_no_recompile(eat.ground_attributes, ground, params, x, idx)
    assert many.shape == (4, 2, 32, 32)
    np.testing.assert_allclose(many[:, 0], ground(params, x, idx[:, 0]), rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(many[:, 1], ground(params, x, idx[:, 1]), rtol=2e-4, atol=1e-6)
    with pytest.raises(errors.TargetOutOfRangeError):
        eat.ground_attributes(ground, params, x, jnp.full((4, 2), 6))
    with pytest.raises(errors.InputShapeError, match=r"\[B, m\]"):
        eat.ground_attributes(ground, params, x, jnp.zeros(4, jnp.int32))


def test_peaks_boxes_and_hits_against_numpy():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 2, 8, 8)).astype(np.float32)
    maps[0, 0, 0, 0] = maps[0, 0, 0, 5] = 2.0  # tie: the first in row-major order
    got = np.asarray(eat.peaks(maps))
    flat = maps.reshape(3, 2, 64).argmax(-1)
    np.testing.assert_array_equal(got, np.stack([flat // 8, flat % 8], -1))
    assert got[0, 0].tolist() == [0, 0]
    boxes = np.asarray(eat.peak_boxes(maps, (4, 2)))
    cy, cx = got[..., 0] + 0.5, got[..., 1] + 0.5
    want = np.stack(
        [
            np.clip(cy - 2, 0, 8),
            np.clip(cx - 1, 0, 8),
            np.clip(cy + 2, 0, 8),
            np.clip(cx + 1, 0, 8),
        ],
        -1,
    )
    np.testing.assert_allclose(boxes, want)
    parts = rng.random((3, 4, 8, 8)) < 0.5
    idx = rng.integers(0, 8, size=(3, 2))
    attribute_part = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    hits = np.asarray(eat.grounding_hits(maps, idx, parts, attribute_part))
    for b in range(3):
        for k in range(2):
            y, x = got[b, k]
            assert hits[b, k] == parts[b, attribute_part[idx[b, k]], y, x]
    with pytest.raises(errors.InvalidArgumentError, match="size"):
        eat.peak_boxes(maps, 3)
    with pytest.raises(errors.InputShapeError, match="part_masks"):
        eat.grounding_hits(maps, idx, parts[:, :, :4], attribute_part)


def test_ground_attributes_wrapped_grounding_is_identical_or_a_named_error(tiny, images):
    """jax.jit / functools.partial of the grounding explainer: the identical maps; a lambda: a
    named error; xaijax.explainer(fn, model) over the grounding's run: the identical maps."""
    net, params = tiny
    x = images[:2]
    g = eat.attribute_grounding(net, "block2")
    idx = jnp.array([[0, 1], [2, 3]])
    ref = eat.ground_attributes(g, params, x, idx)
    for w in (jax.jit(g), functools.partial(g)):
        np.testing.assert_array_equal(eat.ground_attributes(w, params, x, idx), ref)
    with pytest.raises(errors.NotAnExplainerError):
        eat.ground_attributes(lambda p, xx, t=None: g(p, xx, t), params, x, idx)
    adapted = xaijax.explainer(lambda p, xx, t: g.run(p, xx, t), g.model)
    np.testing.assert_array_equal(eat.ground_attributes(adapted, params, x, idx), ref)
