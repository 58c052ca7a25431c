"""The authors' five-crop protocol (``multi_crop``) against a literal port of their code
(``demo/utils.py`` ``imgPreprocess`` / ``pred`` and ``demo/layers.py`` ``data``)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors, models
from xaijax.fixations import crop_geometry, crops_used, fixations, multi_crop

H = 16
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def setup(init):
    model = models.ResNet(
        num_classes=NUM_CLASSES, stem_features=4, widths=(8, 8), strides=(1, 2), cam_layer="block2"
    )
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(6, H, H, 3))
    for i in range(x.shape[0]):  # a bright square somewhere: the crops see different images
        y0, x0 = rng.integers(0, 10, 2)
        x[i, y0 : y0 + 6, x0 : x0 + 6] = 4 * rng.uniform(size=3)
    x = jnp.asarray(x, jnp.float32)
    params = init(model, x[:1], seed=4)
    apply_fn = models.apply_fn(model)
    single = fixations(apply_fn, channel_reduction="count")
    return apply_fn, params, x, single


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def reference(apply_fn, params, x, single, fraction=0.875, target=None):
    """The authors' protocol, one image and one crop at a time, with their coordinate mapping
    ``int((i + offset) * (1 / resFac))``. The resized image comes from the same
    ``jax.image.resize`` (the interpolation is not what is tested here)."""
    x = np.asarray(x)
    b, h, w = x.shape[:3]
    rh, rw = int(round(h / fraction)), int(round(w / fraction))
    big = np.asarray(jax.image.resize(jnp.asarray(x), (b, rh, rw, 3), method="linear"))
    offsets = [(0, 0), (0, rw - w), (rh - h, 0), (rh - h, rw - w), ((rh - h) // 2, (rw - w) // 2)]
    out = np.zeros((b, h, w), np.int64)
    used_all = np.zeros((b, 5), bool)
    labels_all = np.zeros((b, 5), np.int64)
    for i in range(b):
        crops = np.stack([big[i, dy : dy + h, dx : dx + w] for dy, dx in offsets])
        p = softmax(np.asarray(apply_fn(params, jnp.asarray(crops)), np.float64))
        pm = softmax(np.asarray(apply_fn(params, jnp.asarray(crops[:, :, ::-1])), np.float64))
        crop_labels = [int(np.argmax(p[c])) for c in range(5)]
        labels_all[i] = crop_labels
        if target is None:
            p_mean = int(np.argmax(np.concatenate([p, pm]).mean(0)))
            label = p_mean if p_mean in crop_labels else crop_labels[4]
        else:
            label = int(target[i])
        used = [crop_labels[c] == label for c in range(5)]
        if not any(used):
            used[4] = True
        used_all[i] = used
        res_fac_y, res_fac_x = rh / h, rw / w
        for c, (dy, dx) in enumerate(offsets):
            if not used[c]:
                continue
            counts = np.asarray(single(params, jnp.asarray(crops[c : c + 1]), jnp.array([label])))
            for yy, xx in zip(*np.nonzero(counts[0]), strict=True):
                ty = min(int((yy + dy) * (1 / res_fac_y)), h - 1)
                tx = min(int((xx + dx) * (1 / res_fac_x)), w - 1)
                out[i, ty, tx] += counts[0, yy, xx]
    return out, used_all, labels_all


def test_matches_the_authors_protocol(setup):
    apply_fn, params, x, single = setup
    explain = multi_crop(single)
    got = np.asarray(explain(params, x))
    want, used, _ = reference(apply_fn, params, x, single)
    np.testing.assert_array_equal(np.asarray(crops_used(explain, params, x)), used)
    # The test exercises the vote: some crops disagree with the label and are left out.
    assert 0 < used.sum() < used.size
    np.testing.assert_array_equal(got, want)
    assert got.dtype == jnp.int32 and got.sum() > 0


def test_target_fixes_the_label_and_falls_back_to_the_centre(setup):
    apply_fn, params, x, single = setup
    explain = multi_crop(single)
    fallback = 0
    for t in range(NUM_CLASSES):
        target = np.full((x.shape[0],), t, np.int32)
        want, used, crop_labels = reference(apply_fn, params, x, single, target=target)
        np.testing.assert_array_equal(np.asarray(explain(params, x, jnp.asarray(target))), want)
        np.testing.assert_array_equal(np.asarray(crops_used(explain, params, x, target)), used)
        none = ~(crop_labels == t).any(axis=1)  # no crop predicts class t: the centre only
        assert (used[none] == np.array([False] * 4 + [True])).all()
        fallback += int(none.sum())
    assert fallback > 0


def test_whole_image_crops_are_five_copies(setup):
    _, params, x, single = setup
    explain = multi_crop(single, crop_fraction=1.0, select="all")
    assert crop_geometry(H, H, 1.0) == ((H, H), [(0, 0)] * 5)
    t = jnp.zeros((x.shape[0],), jnp.int32)
    np.testing.assert_array_equal(
        np.asarray(explain(params, x, t)), 5 * np.asarray(single(params, x, t))
    )


def test_coverage_closed_form(setup):
    """A map of ones: every crop pixel lands on one image pixel, so the sum over the image is
    5 * H * W (select="all"); each image pixel is covered by one to five crops, each giving it
    one or two pixels (r = 18 / 16); reduce="mean" gives exactly one everywhere."""
    apply_fn, params, x, _ = setup

    def ones(p, xb, t):
        return jnp.ones(xb.shape[:3], jnp.int32)

    total = np.asarray(multi_crop(xaijax.explainer(ones, apply_fn), select="all")(params, x))
    assert crop_geometry(H, H, 0.875)[0] == (18, 18)
    assert (total.sum(axis=(1, 2)) == 5 * H * H).all()
    assert total.min() >= 1 and total.max() <= 5 * 4
    assert (total[:, 2:14, 2:14] >= 5).all()  # the middle is in every crop
    mean = np.asarray(
        multi_crop(
            xaijax.explainer(lambda p, xb, t: ones(p, xb, t).astype(jnp.float32), apply_fn),
            select="all",
            reduce="mean",
        )(params, x)
    )
    np.testing.assert_allclose(mean, 1.0, rtol=0, atol=1e-6)


def test_batched_equals_per_example_jit_and_no_recompile(setup, assert_no_recompile):
    _, params, x, single = setup
    explain = multi_crop(single)
    batched = np.asarray(assert_no_recompile(explain, params, x))
    for i in range(x.shape[0]):
        np.testing.assert_array_equal(np.asarray(explain(params, x[i : i + 1]))[0], batched[i])
    np.testing.assert_array_equal(np.asarray(jax.jit(explain)(params, x)), batched)
    per = jax.vmap(lambda xi: explain(params, xi[None])[0])(x)
    np.testing.assert_array_equal(np.asarray(per), batched)


def test_bad_input(setup):
    apply_fn, params, x, single = setup
    explain = multi_crop(single)
    with pytest.raises(errors.InputShapeError, match="rank"):
        explain(params, x[0])
    with pytest.raises(errors.InputShapeError, match="rank"):
        crops_used(explain, params, x[0])
    with pytest.raises(errors.InputDTypeError, match="floating"):
        explain(params, (x * 255).astype(jnp.uint8))
    with pytest.raises(errors.NonFiniteInputError):
        explain(params, x.at[0, 0, 0, 0].set(jnp.nan))
    with pytest.raises(errors.TargetOutOfRangeError):
        explain(params, x, jnp.full((x.shape[0],), NUM_CLASSES, jnp.int32))
    with pytest.raises(errors.BatchMismatchError):
        explain(params, x, jnp.zeros((2,), jnp.int32))
    for bad in (0.0, 1.5, "0.875", True):
        with pytest.raises(errors.InvalidArgumentError, match="crop_fraction"):
            multi_crop(single, crop_fraction=bad)
    with pytest.raises(errors.InvalidArgumentError, match="select"):
        multi_crop(single, select="best")
    with pytest.raises(errors.InvalidArgumentError, match="reduce"):
        multi_crop(single, reduce="max")
    with pytest.raises(errors.NotAnExplainerError, match="xaijax.explainer"):
        multi_crop(lambda p, xb, t: xb[..., 0])
    with pytest.raises(errors.NotAnExplainerError):
        multi_crop(None)
    with pytest.raises(errors.InvalidArgumentError, match="multi_crop"):
        crops_used(single, params, x)
    with pytest.raises(errors.NotAnExplainerError):
        crops_used(lambda p, xb, t: xb, params, x)


def test_is_an_explainer_wrapping_jit_and_partial_identically(setup):
    """The inner explainer handed as itself, through jax.jit or functools.partial gives the
    identical result; a bare function is refused with a named error (it names no model)."""
    _, params, x, single = setup
    explain = multi_crop(single, select="all", reduce="mean")
    assert isinstance(explain, xaijax.Explainer) and explain.inner is single
    assert explain.model is single.model and explain.result == single.result
    assert dict(explain.options) == {
        "crop_fraction": 0.875,
        "mirrored_vote": True,
        "reduce": "mean",
        "select": "all",
    }
    want = np.asarray(explain(params, x))
    for wrapped in (jax.jit(single), functools.partial(single)):
        other = multi_crop(wrapped, select="all", reduce="mean")
        assert other.inner is single or other.inner.run is single.run
        np.testing.assert_array_equal(np.asarray(other(params, x)), want)
        np.testing.assert_array_equal(
            np.asarray(crops_used(other, params, x)), np.asarray(crops_used(explain, params, x))
        )
    with pytest.raises(errors.NotAnExplainerError):
        multi_crop(lambda p, xb, t: single(p, xb, t))


def test_partial_keywords_reach_the_inner_explainer(setup):
    apply_fn, params, x, single = setup

    def scaled(p, xb, t, *, scale=1):
        return single.run(p, xb, t) * scale

    inner = xaijax.explainer(scaled, apply_fn)
    base = np.asarray(multi_crop(inner)(params, x))
    tripled = np.asarray(multi_crop(functools.partial(inner, scale=3))(params, x))
    np.testing.assert_array_equal(tripled, 3 * base)
    np.testing.assert_array_equal(np.asarray(multi_crop(inner)(params, x, scale=3)), 3 * base)


def test_vote_reads_probabilities_whatever_the_score(setup):
    """The authors' vote averages softmax probabilities: the inner explainer's model explaining
    logits (the default), probabilities or log-probabilities votes the same label and explains
    the same crops."""
    apply_fn, params, x, single = setup
    want = np.asarray(multi_crop(single)(params, x))
    want_used = np.asarray(crops_used(multi_crop(single), params, x))
    for score in ("probability", "log_probability"):
        inner = dataclasses.replace(single, model=xaijax.model(apply_fn, score=score))
        got = multi_crop(inner)
        np.testing.assert_array_equal(np.asarray(got(params, x)), want)
        np.testing.assert_array_equal(np.asarray(crops_used(got, params, x)), want_used)
