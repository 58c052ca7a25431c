"""The mask-optimisation family: regularisers against NumPy, the straight-through blur, a model
that sees one region, the explainer contract, presets, keys and named errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import xaijax
from xaijax import errors, masks
from xaijax._filters import gaussian_blur, resize_spatial

KEY = jax.random.key(3)


def _energy_model(rows, cols, gain=6.0):
    """Class 0's logit: the mean energy of the image inside one square; class 1: 0."""

    def f(params, x):
        del params
        e = (x[:, rows, cols] ** 2).mean((1, 2, 3))
        return jnp.stack([gain * (e - 0.5), jnp.zeros_like(e)], 1)

    return f


def _checkerboard(size, batch=2):
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    cb = np.where((yy + xx) % 2 == 0, 1.0, -1.0)[None, :, :, None]
    scales = np.linspace(1.0, 0.8, batch).reshape(-1, 1, 1, 1)
    return jnp.asarray(cb * scales, jnp.float32)


# --- regularisers against NumPy ----------------------------------------------------------------


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_regularisers_match_numpy(reduce):
    rng = np.random.default_rng(0)
    m = rng.uniform(size=(7, 9)).astype(np.float32)
    red = np.mean if reduce == "mean" else np.sum
    l1 = red(np.abs(1 - m))
    dy, dx = np.abs(np.diff(m, axis=0)) ** 3, np.abs(np.diff(m, axis=1)) ** 3
    tv = red(dy) + red(dx)
    lasso = red(np.abs((1 - m) * m))
    np.testing.assert_allclose(masks.l1_loss(m, reduce=reduce), l1, rtol=1e-5)
    np.testing.assert_allclose(masks.tv_loss(m, 3.0, reduce=reduce), tv, rtol=1e-5)
    np.testing.assert_allclose(masks.lasso_loss(m, reduce=reduce), lasso, rtol=1e-5)
    tv2 = red(np.diff(m, axis=0) ** 2) + red(np.diff(m, axis=1) ** 2)
    np.testing.assert_allclose(masks.tv_loss(m, 2.0, reduce=reduce), tv2, rtol=1e-5)


def test_circular_init_is_the_codes_disk():
    for n in (8, 28, 7):  # main.py load_mask(None, (n, n), "circular"), ported as written
        code = np.zeros((n, n), np.float32)
        radius, cx, cy = n // 2, n // 2, n // 2
        xx, yy = np.ogrid[-cx : n - cx, -cy : n - cy]
        code[xx * xx + yy * yy > radius * radius] = 1.0
        np.testing.assert_array_equal(np.asarray(masks.circular_init((n, n))), code)
    m = np.asarray(masks.circular_init((8, 8)))
    assert m[4, 4] == 0 and m[0, 0] == 1 and m[0, 4] == 0 and m[7, 7] == 1


# --- the straight-through blur -----------------------------------------------------------------


def _blur(a):
    """The mask blur of the straight-through tests: sigma 2 on one [16, 16] mask."""
    return gaussian_blur(a[None, :, :, None], 2.0, truncate=4.0)[0, :, :, 0]


def _up(a):
    """Bilinear upsampling of a [4, 4] mask to [16, 16]."""
    return resize_spatial(a[None], (16, 16))[0]


def test_straight_through_gradient_is_that_of_the_unblurred_mask():
    rng = np.random.default_rng(1)
    m = jnp.asarray(rng.uniform(size=(4, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(16, 16)), jnp.float32)

    blur, up = _blur, _up

    def loss_st(a):
        return jnp.sum(w * jnp.tanh(masks.straight_through_blur(up(a), blur)))

    def loss_plain(a):  # the same loss, with the blurred values held fixed in the backward pass
        big = up(a)
        fixed = jax.lax.stop_gradient(blur(big))
        return jnp.sum(w * jnp.tanh(fixed) + w * (1 - jnp.tanh(fixed) ** 2) * (big - fixed))

    def loss_unblurred_at(a, where):  # d/d up of the loss evaluated at the blurred mask
        return jnp.sum(w * (1 - jnp.tanh(where) ** 2) * up(a))

    blurred = blur(up(m))
    g_st = jax.grad(loss_st)(m)
    g_ref = jax.grad(loss_unblurred_at)(m, blurred)
    np.testing.assert_allclose(g_st, g_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_st, jax.grad(loss_plain)(m), rtol=1e-5, atol=1e-6)
    # forward value is the blurred one, and the gradient differs from the blur's true gradient
    np.testing.assert_allclose(masks.straight_through_blur(up(m), blur), blurred, atol=1e-6)
    g_true = jax.grad(lambda a: jnp.sum(w * jnp.tanh(blur(up(a)))))(m)
    assert not np.allclose(g_st, g_true, atol=1e-4)


def test_straight_through_linear_loss_equals_unblurred_gradient():
    """For a loss linear in M the straight-through gradient is exactly the gradient with
    respect to the unblurred upsampled mask."""
    rng = np.random.default_rng(2)
    m = jnp.asarray(rng.uniform(size=(4, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(16, 16)), jnp.float32)

    blur, up = _blur, _up

    g_st = jax.grad(lambda a: jnp.sum(w * masks.straight_through_blur(up(a), blur)))(m)
    g_up = jax.grad(lambda a: jnp.sum(w * up(a)))(m)
    np.testing.assert_allclose(g_st, g_up, rtol=1e-5, atol=1e-6)


# --- a model that only sees one region ---------------------------------------------------------


def test_smooth_mask_deletes_the_region_the_model_sees():
    rows, cols = slice(4, 20), slice(8, 24)
    f = _energy_model(rows, cols)
    x = _checkerboard(32)
    out = masks.smooth_mask(f, iterations=60, mask_scale=4, mask_blur_sigma=1.0)(None, x)
    deleted = 1.0 - np.asarray(out.mask)
    inside = deleted[:, rows, cols].sum((1, 2)) / deleted.sum((1, 2))
    assert (inside >= 0.8).all(), inside
    # the statistics follow their definitions
    p_t, p_m, p_b = (np.asarray(a) for a in (out.target_prob, out.mask_prob, out.blurred_prob))
    np.testing.assert_allclose(out.drop, (p_t - p_m) / p_t, rtol=1e-5)
    np.testing.assert_allclose(out.score, (p_m - p_t) / (p_t - p_b), rtol=1e-4)
    assert (np.asarray(out.drop) > 0.5).all()
    # target None explained the arg-max class (class 0 here)
    np.testing.assert_allclose(p_t, jax.nn.softmax(f(None, x))[:, 0], rtol=1e-6)
    # the saliency map is the code's heat mask: bright where deleted
    big = np.asarray(out.mask)
    h = 1 - (big - big.min((1, 2), keepdims=True)) / big.max((1, 2), keepdims=True)
    np.testing.assert_allclose(out.map, h, atol=1e-6)


def test_crisp_mask_is_near_binary_and_keeps_deleting_the_region():
    rows, cols = slice(4, 20), slice(8, 24)
    f = _energy_model(rows, cols)
    x = _checkerboard(32)
    sm = masks.smooth_mask(f, iterations=40, mask_scale=4, mask_blur_sigma=1.0)
    cm = masks.crisp_mask(f, iterations=40, smooth=sm)
    out = cm(None, x)
    m = np.asarray(out.mask)
    assert ((m > 0.1) & (m < 0.9)).mean() < 0.2
    deleted = 1.0 - m
    assert (deleted[:, rows, cols].sum((1, 2)) / deleted.sum((1, 2)) >= 0.8).all()
    # init_mask replaces the smooth mask: starting from all-ones gives another result
    ones = cm(None, x, init_mask=jnp.ones((2, 32, 32)))
    assert not np.allclose(ones.mask, out.mask)
    # the default init is 1 - h of the smooth mask
    first = sm(None, x)
    same = cm(None, x, init_mask=1.0 - first.map)
    np.testing.assert_allclose(same.mask, out.mask, atol=1e-5)


def test_superpixel_mask_with_one_pixel_per_segment_is_the_crisp_mask():
    """Oracle: with every pixel its own superpixel, A3's variables are the pixels, its means
    over segments are means over pixels, and it optimises exactly the crisp mask's loss."""
    f = _energy_model(slice(2, 8), slice(4, 10))
    x = _checkerboard(12)
    init = jax.random.uniform(jax.random.key(5), (2, 12, 12))
    coef = dict(iterations=7, l1=0.2, tv=1.0, lasso=4.0)
    sm = masks.smooth_mask(f, iterations=2, mask_scale=4)
    crisp = masks.crisp_mask(f, smooth=sm, **coef)(None, x, init_mask=init)
    pixels = jnp.arange(144).reshape(12, 12)
    sp = masks.superpixel_mask(f, num_segments=144, smooth=sm, **coef)
    _close(sp(None, x, segments=pixels, init_mask=init), crisp)


def test_superpixel_mask_is_constant_per_segment_and_deletes_the_region():
    rows, cols = slice(4, 12), slice(8, 16)
    f = _energy_model(rows, cols)
    x = _checkerboard(16)
    seg = xaijax.segmentation.grid(4)(x)  # 4 x 4 blocks; the region is blocks (1..2, 2..3)
    sm = masks.smooth_mask(f, iterations=30, mask_scale=4, mask_blur_sigma=1.0)
    # the initialisation is the mean of 1 - h_smooth over each segment (no step taken)
    still = masks.superpixel_mask(f, num_segments=20, smooth=sm, optimizer=optax.sgd(0.0))
    out0 = still(None, x, segments=seg)
    keep = 1.0 - np.asarray(sm(None, x).map)
    want = keep.reshape(2, 4, 4, 4, 4).mean((2, 4)).repeat(4, 1).repeat(4, 2)
    np.testing.assert_allclose(out0.mask, want, atol=1e-5)
    out = masks.superpixel_mask(f, num_segments=20, smooth=sm, iterations=40)(None, x, segments=seg)
    m = np.asarray(out.mask)
    blocks = m.reshape(2, 4, 4, 4, 4)
    assert np.ptp(blocks, axis=(2, 4)).max() == 0.0  # one value per superpixel
    deleted = 1.0 - m
    assert (deleted[:, rows, cols].sum((1, 2)) / deleted.sum((1, 2)) >= 0.8).all()
    assert (out.drop > 0.5).all()
    with pytest.raises(errors.InvalidArgumentError, match="segments"):
        still(None, x)
    with pytest.raises(errors.SegmentMapError):
        still(None, x, segments=seg[:, :8])
    with pytest.raises(errors.SegmentMapError):
        still(None, x, segments=seg + 10)  # labels >= num_segments
    with pytest.raises(errors.InvalidArgumentError, match="num_segments"):
        masks.superpixel_mask(f, num_segments=0)


# --- the explainer contract --------------------------------------------------------------------


def _contract_explainers():
    f = _energy_model(slice(4, 12), slice(4, 12), gain=3.0)
    # 12 iterations: an eager call runs two jitted chunks of 6 (the largest divisor up to
    # _optimize.CHUNK), a jitted call one scan; the test below holds them equal.
    sm = masks.smooth_mask(f, iterations=12, mask_scale=4)
    return {
        "smooth_mask": (sm, {}),
        "crisp_mask": (masks.crisp_mask(f, iterations=3, smooth=sm), {}),
        "meaningful_perturbation": (
            masks.meaningful_perturbation(f, iterations=12, mask_scale=4, jitter=3),
            {"key": KEY},
        ),
        "superpixel_mask": (
            masks.superpixel_mask(f, num_segments=16, iterations=3, smooth=sm),
            {"segments": xaijax.segmentation.grid(4)(jnp.zeros((1, 16, 16, 1)))[0]},
        ),
    }


NAMES = ["smooth_mask", "crisp_mask", "meaningful_perturbation", "superpixel_mask"]


def _close(a, b):
    jax.tree_util.tree_map(
        lambda u, w: np.testing.assert_allclose(u, w, rtol=2e-4, atol=1e-5), a, b
    )


@pytest.mark.parametrize("name", NAMES)
def test_jit_batch_vmap_and_no_recompile(name, assert_no_recompile):
    explain, kw = _contract_explainers()[name]
    assert explain.result == "mask" and "mask" in xaijax.RESULTS
    x = jax.random.normal(jax.random.key(0), (4, 16, 16, 2))
    t = jnp.array([0, 1, 1, 0])
    eager = assert_no_recompile(explain, None, x, t, **kw)
    assert isinstance(eager, masks.MaskExplanation)
    assert eager.map.shape == (4, 16, 16) and eager.drop.shape == (4,)
    jitted = jax.jit(lambda xx, tt: explain(None, xx, tt, **kw))(x, t)
    _close(eager, jitted)
    single = [explain(None, x[i : i + 1], t[i : i + 1], **kw) for i in range(2)]
    for i, s in enumerate(single):
        _close(s, jax.tree_util.tree_map(lambda a, i=i: a[i : i + 1], eager))
    stacked = x.reshape(2, 2, 16, 16, 2)
    vm = jax.vmap(lambda xx, tt: explain(None, xx, tt, **kw))(stacked, t.reshape(2, 2))
    _close(jax.tree_util.tree_map(lambda a: a.reshape(eager_shape(a)), vm), eager)


def eager_shape(a):
    return (a.shape[0] * a.shape[1],) + a.shape[2:]


def test_meaningful_perturbation_keys():
    f = _energy_model(slice(4, 12), slice(4, 12), gain=3.0)
    mp = masks.meaningful_perturbation(f, iterations=6, mask_scale=4, jitter=4)
    assert mp.stochastic
    x = jax.random.normal(jax.random.key(1), (3, 16, 16, 1))
    a = mp(None, x, key=KEY)
    _close(a, mp(None, x, key=KEY))
    assert not np.allclose(a.mask, mp(None, x, key=jax.random.key(99)).mask)
    # an example's result does not depend on the batch it is in
    alone = mp(None, x[1:2], key=KEY)
    _close(alone, jax.tree_util.tree_map(lambda u: u[1:2], a))
    with pytest.raises(errors.MissingKeyError):
        mp(None, x)
    # jitter=0: deterministic, no key
    det = masks.meaningful_perturbation(f, iterations=3, mask_scale=4, jitter=0)
    assert not det.stochastic
    det(None, x)
    with pytest.raises(errors.InvalidArgumentError):
        det(None, x, key=KEY)


def test_meaningful_perturbation_uses_sums():
    """Fong & Vedaldi's l1 is on the SUM: the same l1 weight deletes less with more cells."""
    f = _energy_model(slice(4, 12), slice(4, 12), gain=3.0)
    x = _checkerboard(16)
    kw = dict(iterations=30, jitter=0, l1=0.05, tv=0.0, init="ones")
    small = masks.meaningful_perturbation(f, mask_scale=4, **kw)(None, x)
    dense = masks.meaningful_perturbation(f, mask_scale=1, **kw)(None, x)
    assert (1 - np.asarray(dense.mask)).sum() < (1 - np.asarray(small.mask)).sum()


# --- presets, overrides and the optimiser ------------------------------------------------------


def test_presets_and_overrides():
    f = _energy_model(slice(0, 8), slice(0, 8))
    o = dict(masks.smooth_mask(f).options)
    assert (o["l1"], o["tv"], o["iterations"], o["preset"]) == (0.5, 0.01, 300, "bmvc")
    o = dict(masks.smooth_mask(f, preset="arxiv_v1").options)
    assert (o["l1"], o["tv"]) == (0.01, 1e-4)
    o = dict(masks.smooth_mask(f, preset="arxiv_v1", l1=0.3).options)
    assert (o["l1"], o["tv"]) == (0.3, 1e-4)
    o = dict(masks.crisp_mask(f, smooth=masks.smooth_mask(f, iterations=1)).options)
    assert (o["l1"], o["tv"], o["lasso"], o["iterations"]) == (0.01, 1.0, 2.0, 150)
    o = dict(masks.meaningful_perturbation(f).options)
    assert (o["l1"], o["tv"], o["jitter"], o["iterations"]) == (1e-4, 1e-2, 4, 300)
    # presets change the result; explicit coefficients equal to a preset give its result
    x = _checkerboard(16)
    a = masks.smooth_mask(f, iterations=10, mask_scale=4)(None, x)
    b = masks.smooth_mask(f, iterations=10, mask_scale=4, preset="arxiv_v1")(None, x)
    c = masks.smooth_mask(f, iterations=10, mask_scale=4, l1=0.01, tv=1e-4)(None, x)
    assert not np.allclose(a.mask, b.mask)
    _close(b, c)


def test_optimizer_replaces_adam():
    f = _energy_model(slice(0, 8), slice(0, 8))
    x = _checkerboard(16)
    kw = dict(iterations=5, mask_scale=4)
    adam = masks.smooth_mask(f, **kw)(None, x)
    same = masks.smooth_mask(f, optimizer=optax.adam(0.1), **kw)(None, x)
    sgd = masks.smooth_mask(f, optimizer=optax.sgd(0.1), **kw)(None, x)
    _close(adam, same)
    assert not np.allclose(adam.mask, sgd.mask)


# --- named errors ------------------------------------------------------------------------------


def test_named_errors():
    f = _energy_model(slice(0, 8), slice(0, 8))
    x = _checkerboard(16)
    for bad in (0, -3, 2.5):
        with pytest.raises(errors.InvalidArgumentError, match="iterations"):
            masks.smooth_mask(f, iterations=bad)
        with pytest.raises(errors.InvalidArgumentError, match="iterations"):
            masks.crisp_mask(f, iterations=bad)
        with pytest.raises(errors.InvalidArgumentError, match="iterations"):
            masks.meaningful_perturbation(f, iterations=bad)
    with pytest.raises(errors.InvalidArgumentError, match="preset"):
        masks.smooth_mask(f, preset="cvpr")
    with pytest.raises(errors.InvalidArgumentError, match="init"):
        masks.smooth_mask(f, init="square")
    with pytest.raises(errors.InvalidArgumentError, match="jitter"):
        masks.meaningful_perturbation(f, jitter=-1)
    with pytest.raises(errors.InvalidArgumentError, match="optimizer"):
        masks.smooth_mask(f, optimizer="adam")
    with pytest.raises(errors.InvalidArgumentError, match="l1"):
        masks.smooth_mask(f, l1=-1.0)
    sm = masks.smooth_mask(f, iterations=2, mask_scale=3)
    with pytest.raises(errors.InputShapeError, match="mask_scale"):
        sm(None, x)
    sm = masks.smooth_mask(f, iterations=2, mask_scale=4)
    with pytest.raises(errors.InputShapeError, match="init_mask"):
        sm(None, x, init_mask=jnp.ones((2, 16, 16)))
    with pytest.raises(errors.InputDTypeError, match="init_mask"):
        sm(None, x, init_mask=jnp.ones((2, 4, 4), jnp.int32))
    cm = masks.crisp_mask(f, iterations=2, smooth=sm)
    with pytest.raises(errors.InputShapeError, match="init_mask"):
        cm(None, x, init_mask=jnp.ones((2, 4, 4)))
    with pytest.raises(errors.InputShapeError, match="rank >= 4"):
        sm(None, x[..., 0])

    def flat(params, x):  # a model that takes any rank, e.g. video
        mean = x.reshape(x.shape[0], -1).mean(1)
        return jnp.stack([mean, -mean], 1)

    with pytest.raises(errors.InputShapeError, match=r"\[B, H, W, C\]"):
        masks.smooth_mask(flat, iterations=2, mask_scale=4)(None, jnp.ones((2, 2, 16, 16, 1)))
    with pytest.raises(errors.InvalidArgumentError, match="smooth"):
        masks.crisp_mask(f, smooth=xaijax.gradient(f))


# --- audit 10: option checks and wrapped `smooth` explainers ------------------------------------


def test_regulariser_reduce_and_circular_init_shape_are_checked():
    m = jnp.ones((2, 8, 8))
    for fn in (masks.l1_loss, masks.tv_loss, masks.lasso_loss):
        with pytest.raises(errors.InvalidArgumentError, match="reduce"):
            fn(m, reduce="zzz")
    for shape in ((0, 0), (-1, 4), (4, 0), (4,), (2.0, 4)):
        with pytest.raises(errors.InvalidArgumentError, match="shape"):
            masks.circular_init(shape)


def _wrapped_smooth_case():
    f = _energy_model(slice(0, 4), slice(0, 4))
    x = _checkerboard(8)
    sm = masks.smooth_mask(f, iterations=1, mask_scale=4)
    init = jnp.asarray([[[1.0, 0.2], [0.6, 1.0]], [[0.1, 1.0], [1.0, 0.5]]], jnp.float32)
    segments = jnp.broadcast_to(jnp.arange(64).reshape(8, 8) // 16, (2, 8, 8)).astype(jnp.int32)
    return f, x, sm, init, segments


def _same(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _jitted(e, **kw):
    """One compiled program per call (the whole explainer under a caller's jit): fast tests."""
    return lambda x: jax.jit(lambda xx, kk: e(None, xx, **kk))(x, kw)


def test_crisp_mask_wrapped_smooth_gives_the_identical_mask_or_a_named_error():
    """functools.partial of the smooth explainer: the identical mask (a bound keyword
    is the smooth mask's own call with it, not silently dropped); a lambda: a named error; the
    adapter xaijax.explainer(fn, model): the identical mask."""
    f, x, sm, init, _ = _wrapped_smooth_case()
    build = lambda s: _jitted(masks.crisp_mask(f, iterations=1, smooth=s))  # noqa: E731
    ref = build(sm)(x)
    bound = build(sm.bind(init_mask=init))(x)
    _same(build(functools.partial(sm, init_mask=init))(x), bound)
    assert not np.array_equal(bound.mask, ref.mask)
    with pytest.raises(errors.InputShapeError, match="init_mask"):  # the smooth's own check
        build(functools.partial(sm, init_mask=jnp.ones((2, 8, 8))))(x)
    with pytest.raises(errors.NotAnExplainerError):
        build(lambda p, xx, t=None: sm(p, xx, t))
    adapted = xaijax.explainer(lambda p, xx, t: sm.run(p, xx, t), f, result="mask")
    _same(build(adapted)(x), ref)


def test_superpixel_mask_wrapped_smooth_gives_the_identical_mask_or_a_named_error():
    f, x, sm, init, segments = _wrapped_smooth_case()
    build = lambda s: _jitted(  # noqa: E731
        masks.superpixel_mask(f, num_segments=4, iterations=1, smooth=s), segments=segments
    )
    ref = build(sm)(x)
    _same(build(functools.partial(jax.jit(sm)))(x), ref)  # both unwrappings at once
    with pytest.raises(errors.NotAnExplainerError):
        build(lambda p, xx, t=None: sm(p, xx, t))
