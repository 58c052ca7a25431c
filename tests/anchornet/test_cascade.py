"""AnchorNet patch-based inference: cropping, the early-exit cascade against a plain loop, FLOPs."""

from __future__ import annotations

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import anchornet as an
from xaijax import errors
from xaijax.anchornet import _cascade

P = 12  # patch size
C = 3  # image channels
CLASSES = 4
WIDTH = 6


@functools.partial(jax.jit, static_argnums=(1, 2))
def _jresize(x, shape, method):
    """``jax.image.resize`` without antialiasing, one compile per shape (not one per op)."""
    return jax.image.resize(x, shape, method, antialias=False)


def _normal(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _net(params, x):
    """A tiny 2-conv downstream net: ``[B, p, p, C] -> [B, CLASSES]`` (VALID convs, mean pool)."""
    dn = ("NHWC", "HWIO", "NHWC")
    h = jax.lax.conv_general_dilated(x, params["w1"], (1, 1), "VALID", dimension_numbers=dn)
    h = jax.nn.relu(h + params["b1"][None, None, None])
    h = jax.lax.conv_general_dilated(h, params["w2"], (1, 1), "VALID", dimension_numbers=dn)
    h = jax.nn.relu(h + params["b2"][None, None, None])
    return h.mean(axis=(1, 2)) @ params["w3"] + params["b3"][None]


def _params(seed=1):
    return {
        "w1": jnp.asarray(_normal((3, 3, C, WIDTH), seed) / 5.0),
        "b1": jnp.asarray(_normal((WIDTH,), seed + 1) * 0.1),
        "w2": jnp.asarray(_normal((3, 3, WIDTH, WIDTH), seed + 2) / 7.0),
        "b2": jnp.asarray(_normal((WIDTH,), seed + 3) * 0.1),
        "w3": jnp.asarray(_normal((WIDTH, CLASSES), seed + 4) * 3.0),
        "b3": jnp.asarray(_normal((CLASSES,), seed + 5) * 0.1),
    }


def _analytic_flops(p=P):
    """2 x multiply-adds of the convolutions and the dense layer (the bulk of the work)."""
    o1, o2 = p - 2, p - 4
    return 2 * (o1 * o1 * WIDTH * 9 * C + o2 * o2 * WIDTH * 9 * WIDTH + WIDTH * CLASSES)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    b, k = 6, 3
    x = rng.uniform(size=(b, 32, 32, C)).astype(np.float32)
    boxes = np.zeros((b, k, 4), np.int32)
    for i in range(b):
        for j in range(k):
            side = (P, P, 2 * P, 8)[(i + j) % 4]  # same side, 2x (downscale), 2/3x (upscale)
            x1, y1 = rng.integers(0, 32 - side + 1, size=2)
            boxes[i, j] = (x1, y1, x1 + side - 1, y1 + side - 1)
    return jnp.asarray(x), jnp.asarray(boxes), _params()


# --- cropping ------------------------------------------------------------------------------------


def _bilinear_ref(patch: np.ndarray, size: int) -> np.ndarray:
    """NumPy bilinear resize, half-pixel centres, clamped at the edges, no antialiasing."""

    def axis(n):
        s = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
        i0 = np.floor(s).astype(int)
        return i0, np.minimum(i0 + 1, n - 1), s - i0

    y0, y1, fy = axis(patch.shape[0])
    x0, x1, fx = axis(patch.shape[1])
    p = patch.astype(np.float64)
    rows = (1 - fy)[:, None, None] * p[y0] + fy[:, None, None] * p[y1]
    return (1 - fx)[None, :, None] * rows[:, x0] + fx[None, :, None] * rows[:, x1]


def _slice(image, box):
    x1, y1, x2, y2 = (int(v) for v in box)
    return np.asarray(image)[y1 : y2 + 1, x1 : x2 + 1]


def test_crop_equals_slice_when_box_side_is_size(data):
    x, boxes, _ = data
    out = np.asarray(an.crop_patches(x, boxes, size=P))
    assert out.shape == (6, 3, P, P, C)
    for i in range(6):
        for j in range(3):
            if boxes[i, j, 2] - boxes[i, j, 0] + 1 == P:
                np.testing.assert_array_equal(out[i, j], _slice(x[i], boxes[i, j]))
    nearest = np.asarray(an.crop_patches(x, boxes, size=P, method="nearest"))
    np.testing.assert_array_equal(nearest[0, 0], _slice(x[0], boxes[0, 0]))


def test_crop_resized_boxes_match_numpy_and_jax_image(data):
    x, boxes, _ = data
    out = np.asarray(an.crop_patches(x, boxes, size=P))
    near = np.asarray(an.crop_patches(x, boxes, size=P, method="nearest"))
    sides = set()
    for i in range(6):
        for j in range(3):
            patch = _slice(x[i], boxes[i, j])
            sides.add(patch.shape[0])
            np.testing.assert_allclose(out[i, j], _bilinear_ref(patch, P), atol=1e-6)
            ref = _jresize(patch, (P, P, C), "linear")
            np.testing.assert_allclose(out[i, j], np.asarray(ref), atol=1e-6)
            if patch.shape[0] == 2 * P:  # nearest-exact at 2x: every second pixel, odd ones
                np.testing.assert_array_equal(near[i, j], patch[1::2, 1::2])
    assert sides == {P, 2 * P, 8}


def test_crop_clips_boxes_to_the_image():
    x = jnp.asarray(_normal((1, 10, 10, 2)))
    out = an.crop_patches(x, jnp.array([[[-3, 4, 5, 14]]]), size=4)
    np.testing.assert_allclose(out[0, 0], _bilinear_ref(np.asarray(x[0, 4:10, 0:6]), 4), atol=1e-6)
    # A non-square box is stretched to the square: rows and columns resized independently.
    wide = an.crop_patches(x, jnp.array([[[0, 2, 7, 5]]]), size=4)
    np.testing.assert_allclose(wide[0, 0], _bilinear_ref(np.asarray(x[0, 2:6, 0:8]), 4), atol=1e-6)


def test_crop_token_spans():
    e = jnp.asarray(_normal((2, 20, 5)))
    spans = jnp.array([[[3, 8], [0, 11]], [[10, 15], [8, 19]]])
    out = np.asarray(an.crop_patches(e, spans, size=6))
    assert out.shape == (2, 2, 6, 5)
    np.testing.assert_array_equal(out[0, 0], np.asarray(e[0, 3:9]))
    np.testing.assert_array_equal(out[1, 0], np.asarray(e[1, 10:16]))
    ref = _jresize(e[0, 0:12], (6, 5), "linear")
    np.testing.assert_allclose(out[0, 1], np.asarray(ref), atol=1e-6)


def test_crop_jit_vmap_batched_and_no_recompile(data, assert_no_recompile):
    x, boxes, _ = data
    batched = assert_no_recompile(an.crop_patches, x, boxes, size=P)
    jitted = jax.jit(lambda a, b: an.crop_patches(a, b, size=P))(x, boxes)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(batched))
    mapped = jax.vmap(lambda a, b: an.crop_patches(a[None], b[None], size=P)[0])(x, boxes)
    np.testing.assert_array_equal(np.asarray(mapped), np.asarray(batched))
    for i in (0, 4):
        one = an.crop_patches(x[i : i + 1], boxes[i : i + 1], size=P)[0]
        np.testing.assert_array_equal(np.asarray(one), np.asarray(batched[i]))


def test_resize_full_is_jax_cubic_and_align_corners_keeps_corners():
    x = jnp.asarray(_normal((2, 32, 32, C)))
    np.testing.assert_allclose(
        an.resize_full(x, size=P),
        _jresize(x, (2, P, P, C), "cubic"),
        rtol=1e-5,
        atol=1e-5,
    )
    ac = an.resize_full(x, size=P, align_corners=True)
    for r, c in ((0, 0), (-1, -1), (0, -1)):
        np.testing.assert_allclose(ac[:, r, c], x[:, r, c], rtol=1e-5, atol=1e-5)
    assert an.resize_full(jnp.ones((1, 20, 4)), size=6).shape == (1, 6, 4)


# --- the cascade against a plain loop ------------------------------------------------------------


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def _stage_inputs(image, boxes):
    """The oracle's own stage inputs: jax.image.resize of the whole image and of each slice."""
    full = _jresize(image, (P, P, C), "cubic")
    patches = []
    for box in boxes:
        patch = _slice(image, box)
        patches.append(_jresize(patch, (P, P, C), "linear"))
    return [full] + patches


def _loop_stages(x, boxes, params):
    """Per example, per stage: the running logit sums (float32, added one stage at a time)."""
    out = []
    for i in range(x.shape[0]):
        running = None
        rows = []
        for inp in _stage_inputs(x[i], boxes[i]):
            logits = np.asarray(_net(params, inp[None]))[0]
            running = logits if running is None else (running + logits).astype(np.float32)
            rows.append(running)
        out.append(rows)
    return np.asarray(out)  # [B, S, C]


def _loop_cascade(stages, thresholds, per_stage, selector):
    """Plain loop: stop at the first stage whose top softmax exceeds its threshold."""
    preds, exits, logits, flops = [], [], [], []
    for rows in stages:
        spent = 0.0
        for s, running in enumerate(rows):
            spent += per_stage + (selector if s == 1 else 0.0)
            if np.max(_softmax(running)) > thresholds[s] or s == len(rows) - 1:
                break
        preds.append(int(np.argmax(running)))
        exits.append(s)
        logits.append(running)
        flops.append(spent)
    return np.asarray(preds), np.asarray(exits), np.asarray(logits), np.asarray(flops)


def _threshold_vectors(stages):
    """Vectors that send examples to every stage, each value > 1e-5 from every confidence."""
    conf = np.asarray([[np.max(_softmax(r)) for r in rows] for rows in stages])  # [B, S]
    mids = []
    for s in range(conf.shape[1]):
        c = np.sort(conf[:, s])
        gaps = (c[:-1] + c[1:]) / 2
        mids.append(gaps[np.argmax(np.diff(c))] if len(c) > 1 else 0.5)
    vectors = [
        [0.0] * 4,
        [1.0, 1.0, 1.0, 0.0],
        [1.0, 0.0, 1.0, 1.0],
        [1.0, 1.0, 0.0, 1.0],
        [mids[0], mids[1], mids[2], 0.0],
        [mids[0], 1.0, mids[2], 0.3],
        [float(np.median(conf[:, 0])) + 1e-3, mids[1], 1.0, 1.0],
    ]
    for v in vectors:  # 0 and 1 are exact (always / never); others must not sit on a confidence
        inner = np.asarray(v[:-1])
        gap = np.abs(conf[:, :-1] - inner[None, :])
        margin = np.min(np.where((inner > 0) & (inner < 1), gap, 1.0))
        assert margin > 1e-5, (v, margin)  # no exit decided by float32 rounding (~1e-7)
    return vectors


def test_cascade_matches_plain_loop(data):
    x, boxes, params = data
    stages = _loop_stages(x, boxes, params)
    per_stage = an.stage_flops(_net, params, patch_size=P, channels=C)
    selector = 1000.0
    seen, mixed = set(), False
    for t in _threshold_vectors(stages):
        r = an.early_exit_cascade(
            _net, params, x, boxes, patch_size=P, thresholds=t, selector_flops=selector
        )
        preds, exits, logits, flops = _loop_cascade(stages, t, per_stage, selector)
        np.testing.assert_array_equal(np.asarray(r.exit_stage), exits)
        np.testing.assert_array_equal(np.asarray(r.prediction), preds)
        np.testing.assert_allclose(np.asarray(r.logits), logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(r.stage_logits), stages, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(r.flops), flops, rtol=1e-6)
        np.testing.assert_allclose(
            np.asarray(r.probabilities), np.asarray([_softmax(z) for z in logits]), atol=1e-6
        )
        np.testing.assert_array_equal(np.asarray(r.stage_flops), [per_stage] * 4)
        assert r.exit_stage.dtype == jnp.int32 and r.flops.dtype == jnp.float32
        seen.update(exits.tolist())
        mixed = mixed or len(set(exits.tolist())) > 1
    assert seen == {0, 1, 2, 3}  # every stage was an exit for some example
    assert mixed  # and some vector split the batch between stages


def test_threshold_zero_always_exits_and_one_never_does(data):
    x, boxes, params = data
    r = an.early_exit_cascade(_net, params, x, boxes, patch_size=P, thresholds=[0, 0, 0, 0])
    assert np.all(np.asarray(r.exit_stage) == 0)
    r = an.early_exit_cascade(_net, params, x, boxes, patch_size=P, thresholds=[1, 1, 1, 1])
    assert np.all(np.asarray(r.exit_stage) == 3)  # the last stage always exits


def test_exit_is_strictly_greater_than_the_threshold():
    # Zero logits: the top softmax is exactly 0.5 at every stage; 0.5 does not exit (the code's >).
    def zero(p, a):
        return jnp.zeros((a.shape[0], 2)) * p

    x, boxes = jnp.ones((1, 8, 8, 1)), jnp.array([[[0, 0, 3, 3], [4, 4, 7, 7]]])
    kw = dict(patch_size=4, downstream_flops=10.0, selector_flops=1.0)
    r = an.early_exit_cascade(zero, 1.0, x, boxes, thresholds=[0.5, 0.4999, 0.0], **kw)
    assert int(r.exit_stage[0]) == 1 and float(r.flops[0]) == 21.0
    rows = an.cascade_table(r, jnp.zeros(1, jnp.int32), [[0.5, 0.5, 0.0], [0.4999, 0.5, 1.0]])
    assert [row["mean_exit_stage"] for row in rows] == [2.0, 0.0]


def test_cascade_table_matches_the_cascade(data):
    x, boxes, params = data
    labels = jnp.arange(6) % CLASSES
    stages = _loop_stages(x, boxes, params)
    vectors = _threshold_vectors(stages)
    r0 = an.early_exit_cascade(
        _net, params, x, boxes, patch_size=P, thresholds=vectors[0], selector_flops=7.0
    )
    rows = an.cascade_table(r0, labels, None, vectors, selector_flops=7.0)
    assert an.cascade_table(r0, labels, vectors, selector_flops=7.0) == rows
    assert rows == an.cascade_table(
        r0.stage_logits, labels, r0.stage_flops, vectors, selector_flops=7.0
    )
    for t, row in zip(vectors, rows, strict=True):
        r = an.early_exit_cascade(
            _net, params, x, boxes, patch_size=P, thresholds=t, selector_flops=7.0
        )
        assert row["thresholds"] == [float(v) for v in t]
        assert row["accuracy"] == pytest.approx(float(np.mean(np.asarray(r.prediction) == labels)))
        assert row["mean_flops"] == pytest.approx(float(np.mean(np.asarray(r.flops))), rel=1e-6)
        assert row["mean_exit_stage"] == pytest.approx(float(np.mean(np.asarray(r.exit_stage))))
        assert row["exit_counts"] == np.bincount(np.asarray(r.exit_stage), minlength=4).tolist()


def test_cascade_jit_vmap_batched_and_no_recompile(data, assert_no_recompile, compile_counter):
    x, boxes, params = data
    t = [0.5, 0.6, 0.7, 0.0]
    run = an.early_exit_cascade
    kw = dict(patch_size=P, thresholds=t)
    batched = assert_no_recompile(run, _net, params, x, boxes, **kw)
    with compile_counter() as n:  # other threshold values: the same program
        jax.block_until_ready(run(_net, params, x, boxes, patch_size=P, thresholds=[0.1] * 4))
    assert n.count == 0
    jitted = jax.jit(lambda p, a, b: run(_net, p, a, b, **kw))(params, x, boxes)
    mapped = jax.vmap(lambda a, b: run(_net, params, a[None], b[None], **kw))(x, boxes)
    for name in ("prediction", "exit_stage", "flops"):
        np.testing.assert_array_equal(getattr(jitted, name), getattr(batched, name))
        np.testing.assert_array_equal(getattr(mapped, name)[:, 0], getattr(batched, name))
    np.testing.assert_allclose(jitted.stage_logits, batched.stage_logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        mapped.stage_logits[:, 0], batched.stage_logits, rtol=1e-5, atol=1e-5
    )
    for i in (0, 5):
        one = run(_net, params, x[i : i + 1], boxes[i : i + 1], **kw)
        assert int(one.exit_stage[0]) == int(batched.exit_stage[i])
        np.testing.assert_allclose(
            one.stage_logits[0], batched.stage_logits[i], rtol=1e-5, atol=1e-5
        )


def _text_net(params, e):
    """``[B, L, D] -> [B, 3]``: one VALID 1-D convolution, mean over tokens, dense."""
    h = jax.lax.conv_general_dilated(
        e, params["w"], (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC")
    )
    return jax.nn.relu(h).mean(axis=1) @ params["d"]


def test_cascade_on_token_embeddings():
    params = {"w": jnp.asarray(_normal((3, 5, 4), 3)), "d": jnp.asarray(_normal((4, 3), 4))}
    e = jnp.asarray(_normal((3, 20, 5)))
    spans = jnp.array([[[0, 5], [6, 11]], [[2, 7], [10, 17]], [[14, 19], [0, 9]]])
    r = an.early_exit_cascade(_text_net, params, e, spans, patch_size=6, thresholds=[0.4, 0.4, 0])
    assert r.stage_logits.shape == (3, 3, 3)
    full = _jresize(e, (3, 6, 5), "cubic")
    first = jnp.stack([e[0, 0:6], e[1, 2:8], e[2, 14:20]])  # the first spans, 6 tokens each
    expect = _text_net(params, full) + _text_net(params, first)
    np.testing.assert_allclose(r.stage_logits[:, 1], expect, rtol=1e-5, atol=1e-5)
    assert float(r.stage_flops[0]) == pytest.approx(2 * 4 * 4 * 3 * 5 + 2 * 4 * 3, rel=0.2)


# --- FLOPs ---------------------------------------------------------------------------------------


def test_stage_flops_match_analytic_counts():
    flops = an.stage_flops(_net, _params(), patch_size=P, channels=C)
    assert 0.8 * _analytic_flops() <= flops <= 1.2 * _analytic_flops()
    dense = an.stage_flops(
        lambda w, x: x.reshape(1, -1) @ w, jnp.zeros((48, 10)), patch_size=4, channels=3
    )
    assert dense == pytest.approx(2 * 48 * 10, rel=0.2)


def test_flops_read_from_every_cost_analysis_form(monkeypatch):
    assert _cascade._flops_of({"flops": 5.0, "bytes accessed": 1.0}) == 5.0
    assert _cascade._flops_of([{"flops": 2.0}, {"flops": 3.0}]) == 5.0
    assert _cascade._flops_of(None) is None and _cascade._flops_of([{}]) is None
    monkeypatch.setattr(jax.stages.Lowered, "cost_analysis", lambda self: {})
    monkeypatch.setattr(jax.stages.Compiled, "cost_analysis", lambda self: [{}])
    with pytest.raises(errors.InvalidArgumentError, match="no 'flops'"):
        an.stage_flops(
            lambda w, x: x.reshape(1, -1) @ w, jnp.zeros((7, 2)), patch_size=1, channels=7
        )


# --- named errors --------------------------------------------------------------------------------


def test_named_errors_before_any_work(data):
    x, boxes, params = data
    kw = dict(patch_size=P)
    cases = [
        (errors.InvalidArgumentError, dict(thresholds=[0.5, 1.2, 0.5, 0.0]), "in \\[0, 1\\]"),
        (errors.InvalidArgumentError, dict(thresholds=[-0.1, 0.5, 0.5, 0.0]), "in \\[0, 1\\]"),
        (errors.InvalidArgumentError, dict(thresholds=[0.5, 0.5, 0.0]), "one value per stage"),
        (
            errors.InvalidArgumentError,
            dict(thresholds=[0.5] * 4, crop_method="area"),
            "crop_method",
        ),
        (errors.InvalidArgumentError, dict(thresholds=[0.5] * 4, selector_flops=-1.0), "selector"),
    ]
    for err, extra, match in cases:
        with pytest.raises(err, match=match):
            an.early_exit_cascade(_net, params, x, boxes, **kw, **extra)
    t = [0.5] * 4
    with pytest.raises(errors.InvalidArgumentError, match="patch_size"):
        an.early_exit_cascade(_net, params, x, boxes, patch_size=0, thresholds=t)
    with pytest.raises(errors.InputShapeError, match="boxes"):
        an.early_exit_cascade(_net, params, x, boxes[:, 0], patch_size=P, thresholds=t)
    with pytest.raises(errors.InputShapeError, match="boxes"):
        an.early_exit_cascade(_net, params, x, boxes[..., :3], patch_size=P, thresholds=t)
    with pytest.raises(errors.BatchMismatchError):
        an.early_exit_cascade(_net, params, x, boxes[:2], patch_size=P, thresholds=t)
    with pytest.raises(
        errors.InputShapeError, match="images\\[None\\]"
    ):  # one image, no batch axis
        an.early_exit_cascade(_net, params, x[0], boxes, patch_size=P, thresholds=t)
    with pytest.raises(errors.InputDTypeError):
        an.crop_patches(jnp.zeros((1, 8, 8, 3), jnp.uint8), jnp.zeros((1, 1, 4), jnp.int32), size=2)
    with pytest.raises(errors.InvalidArgumentError, match="size"):
        an.crop_patches(x, boxes, size=0)
    with pytest.raises(errors.InvalidArgumentError, match="method"):
        an.crop_patches(x, boxes, size=4, method="cubic")
    with pytest.raises(errors.InputShapeError, match="spans"):
        an.crop_patches(jnp.zeros((1, 8, 3)), jnp.zeros((1, 1, 3), jnp.int32), size=2)
    with pytest.raises(errors.ModelCallError):  # a model that cannot read 12 px patches
        an.early_exit_cascade(
            lambda p, a: a.reshape(a.shape[0], 32 * 32 * C) @ p,
            jnp.zeros((3072, 2)),
            x,
            boxes,
            patch_size=P,
            thresholds=t,
        )
    with pytest.raises(errors.InvalidArgumentError, match="thresholds"):
        an.cascade_table(jnp.zeros((2, 3, 2)), jnp.zeros(2, jnp.int32), 1.0, [[0.5, 0.5]])


def test_docstring_examples_run():
    result = doctest.testmod(_cascade, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_images_are_checked_and_thresholds_share_one_check():
    x = jnp.ones((1, 8, 8, 3))
    b = jnp.zeros((1, 1, 4), jnp.int32)
    nan_x = x.at[0, 1, 2, 0].set(jnp.nan)
    with pytest.raises(errors.NonFiniteInputError, match="images"):
        an.crop_patches(nan_x, b, size=2)
    with pytest.raises(errors.NonFiniteInputError, match="images"):
        an.resize_full(nan_x, size=4)
    with pytest.raises(errors.InputDTypeError, match="images"):
        an.resize_full(jnp.ones((1, 8, 8, 3), jnp.int32), size=4)
    with pytest.raises(errors.NonFiniteInputError, match="images"):
        an.early_exit_cascade(
            lambda p, a: a.mean((1, 2)) @ p,
            jnp.ones((3, 2)),
            nan_x,
            b,
            patch_size=4,
            thresholds=[0.5, 0.5],
            downstream_flops=1.0,
        )
    logits = jnp.ones((2, 2, 3))
    with pytest.raises(errors.InvalidArgumentError, match="in \\[0, 1\\]"):
        an.exit_stages(logits, jnp.array([2.0, 2.0]))  # the audit's call
    with pytest.raises(errors.InvalidArgumentError, match="one value per stage"):
        an.exit_stages(logits, [0.5])
    with pytest.raises(errors.NonFiniteInputError, match="stage_logits"):
        an.exit_stages(logits.at[0, 0, 0].set(jnp.nan), [0.5, 0.5])
    with pytest.raises(errors.InvalidArgumentError, match="downstream_flops"):
        an.early_exit_cascade(
            lambda p, a: a.mean((1, 2)) @ p,
            jnp.ones((3, 2)),
            x,
            b,
            patch_size=4,
            thresholds=[0.5, 0.5],
            downstream_flops=-1.0,
        )
    # the public rule is the cascade's; under jit the thresholds are not read
    np.testing.assert_array_equal(an.exit_stages(logits, [0.2, 0.2]), [0, 0])
    np.testing.assert_array_equal(jax.jit(an.exit_stages)(logits, jnp.array([0.5, 0.0])), [1, 1])
