"""Synthetic benchmark images: determinism, ground truth against pixels, and every option."""

from __future__ import annotations

import numpy as np
import pytest

from xaijax import errors
from xaijax.data import synthetic
from xaijax.data.synthetic import _common, _images

N = 512  # two chunks


@pytest.fixture(scope="module")
def train():
    return synthetic.make_images(N, seed=0, split="train")


def _background_only(num: int, seed: int, split: str, cfg) -> np.ndarray:
    """The same images rendered without their object (only chunk 0)."""
    params = _images.sample_params(_common.chunk_rng(seed, split, "images", 0), cfg, split, 256)
    params = _common.take(params, slice(0, num))
    params["o1_part_drawn"] = np.zeros_like(params["o1_part_drawn"])
    if cfg.two_objects:
        params["o2_part_drawn"] = np.zeros_like(params["o2_part_drawn"])
    return _images.render(params, cfg)["image"]


def test_shapes_dtypes_and_ranges(train):
    s, p, a = 64, len(synthetic.PART_NAMES), len(synthetic.ATTRIBUTE_NAMES)
    expected = {
        "image": ((N, s, s, 3), np.float32),
        "label": ((N,), np.int32),
        "object_mask": ((N, s, s), np.bool_),
        "part_masks": ((N, p, s, s), np.bool_),
        "part_present": ((N, p), np.bool_),
        "box": ((N, 4), np.float32),
        "attributes": ((N, a), np.float32),
        "keypoints": ((N, p, 2), np.float32),
    }
    for key, (shape, dtype) in expected.items():
        assert train[key].shape == shape, key
        assert train[key].dtype == dtype, key
    assert "label2" not in train
    assert train["image"].min() >= 0.0 and train["image"].max() <= 1.0
    assert set(np.unique(train["attributes"]).tolist()) <= {0.0, 1.0}


def test_same_seed_is_byte_identical_and_seeds_and_splits_differ():
    a = synthetic.make_images(20, seed=3)
    b = synthetic.make_images(20, seed=3)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    assert not np.array_equal(a["image"], synthetic.make_images(20, seed=4)["image"])
    assert not np.array_equal(a["image"], synthetic.make_images(20, seed=3, split="test")["image"])


def test_examples_do_not_depend_on_num(train):
    small = synthetic.make_images(300, seed=0)
    for key in train:
        np.testing.assert_array_equal(small[key], train[key][:300], err_msg=key)


def test_object_pixels_differ_from_background_only_rendering(train):
    cfg = synthetic.ImageConfig()
    bg = _background_only(64, 0, "train", cfg)
    img, mask = train["image"][:64], train["object_mask"][:64]
    changed = np.any(img != bg, axis=-1)
    np.testing.assert_array_equal(changed, mask)


def test_part_pixels_have_the_part_colour_of_the_class(train):
    names = synthetic.ATTRIBUTE_NAMES
    for i in range(32):
        for p, part in enumerate(synthetic.PART_NAMES):
            cols = [
                k
                for k, name in enumerate(synthetic.COLOR_NAMES)
                if train["attributes"][i, names.index(f"{part}_color::{name}")] == 1
            ]
            assert len(cols) == 1
            base = synthetic.PALETTE[cols[0]]
            pix = train["image"][i][train["part_masks"][i, p]]
            plain = np.all(pix == base, axis=-1)
            mark = np.all(np.isclose(pix, base * np.float32(0.3)), axis=-1)
            assert np.all(plain | mark), (i, part)
            # The texture attribute shows: no marks when plain, many stripes, fewer dots.
            texture = [
                t
                for t in synthetic.TEXTURE_NAMES
                if train["attributes"][i, names.index(f"{part}_texture::{t}")] == 1
            ][0]
            if texture == "plain":
                assert not mark.any()
            elif len(pix) >= 40:
                lo, hi = (0.25, 0.75) if texture == "striped" else (0.04, 0.45)
                assert lo < mark.mean() < hi, (i, part, texture, mark.mean())


def test_part_masks_partition_the_object_mask(train):
    pm, om = train["part_masks"], train["object_mask"]
    assert np.all(pm.sum(axis=1) <= 1)
    np.testing.assert_array_equal(pm.any(axis=1), om)
    np.testing.assert_array_equal(train["part_present"], pm.any(axis=(2, 3)))


def test_box_is_the_tight_box_of_the_object_mask(train):
    for i in range(0, N, 7):
        ys, xs = np.nonzero(train["object_mask"][i])
        expected = [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
        np.testing.assert_array_equal(train["box"][i], expected)


def test_keypoints_lie_in_their_part_masks(train):
    kp, pm, present = train["keypoints"], train["part_masks"], train["part_present"]
    assert present.all()  # missing_part_prob = 0
    i, p = np.nonzero(present)
    y = np.floor(kp[i, p, 0]).astype(int)
    x = np.floor(kp[i, p, 1]).astype(int)
    assert np.all(pm[i, p, y, x])
    # The body is drawn first and overlapped by the other parts, and rings have a hole, yet
    # most keypoints are the centre pixel of their part: they sit near the part's centroid.
    cy = (pm * np.arange(64)[None, None, :, None]).sum(axis=(2, 3)) / pm.sum(axis=(2, 3))
    assert np.median(np.abs(cy - kp[..., 0])) < 2.0


def test_classes_are_balanced(train):
    counts = np.bincount(train["label"], minlength=10)
    assert counts.max() - counts.min() <= 2, counts  # at most one off per chunk of 256
    for m in (7, 30, 123):  # every prefix of a chunk is balanced up to one example
        c = np.bincount(train["label"][:m], minlength=10)
        assert c.min() >= m // 10 and c.max() <= -(-m // 10), (m, c)


def test_objects_lie_inside_the_image_and_are_reasonably_large(train):
    box = train["box"]
    assert np.all(box[:, :2] >= 1) and np.all(box[:, 2:] <= 63)  # never touches the border
    cover = train["object_mask"].mean(axis=(1, 2))
    assert 0.15 <= cover.mean() <= 0.40, cover.mean()
    assert cover.min() > 0.08


def test_scale_range_controls_object_size():
    small = synthetic.make_images(64, config=synthetic.ImageConfig(scale_range=(0.4, 0.4)))
    big = synthetic.make_images(64, config=synthetic.ImageConfig(scale_range=(1.0, 1.0)))
    ratio = big["object_mask"].sum() / small["object_mask"].sum()
    assert 5.0 < ratio < 7.5  # area ~ scale^2 = 6.25, up to pixel rounding
    np.testing.assert_allclose(small["scale"], 0.4)


def test_distractors_never_touch_the_object_ground_truth():
    # Same examples with and without distractors: identical masks, different pixels outside.
    plain = synthetic.make_images(32, config=synthetic.ImageConfig(num_distractors=0))
    busy = synthetic.make_images(32, config=synthetic.ImageConfig(num_distractors=3))
    for key in ("label", "object_mask", "part_masks", "keypoints"):
        np.testing.assert_array_equal(plain[key], busy[key])
    out = ~busy["object_mask"]
    assert np.any(plain["image"][out] != busy["image"][out])
    np.testing.assert_array_equal(
        plain["image"][busy["object_mask"]], busy["image"][busy["object_mask"]]
    )


def _background_chroma(d) -> np.ndarray:
    out = ~d["object_mask"]
    mean = (d["image"] * out[..., None]).sum(axis=(1, 2)) / out.sum(axis=(1, 2))[:, None]
    return mean - mean.mean(axis=1, keepdims=True)


def _centroid_accuracy(fit_x, fit_y, x, y, num_classes=10) -> float:
    cent = np.stack([fit_x[fit_y == k].mean(axis=0) for k in range(num_classes)])
    pred = np.argmin(((x[:, None] - cent[None]) ** 2).sum(-1), axis=1)
    return float(np.mean(pred == y))


def test_spurious_background_predicts_the_label_in_train_only():
    cfg = synthetic.ImageConfig(spurious_background=True)
    tr = synthetic.make_images(512, seed=1, split="train", config=cfg)
    te = synthetic.make_images(256, seed=1, split="test", config=cfg)
    np.testing.assert_array_equal(tr["background_pattern"], tr["label"])
    f_tr, f_te = _background_chroma(tr), _background_chroma(te)
    fit = slice(0, 256)
    held = slice(256, 512)
    acc_train = _centroid_accuracy(f_tr[fit], tr["label"][fit], f_tr[held], tr["label"][held])
    acc_test = _centroid_accuracy(f_tr[fit], tr["label"][fit], f_te, te["label"])
    assert acc_train > 0.9, acc_train
    assert acc_test < 0.25, acc_test
    # Without the option, train backgrounds carry no label information either.
    off = synthetic.make_images(512, seed=1, split="train")
    f_off = _background_chroma(off)
    acc_off = _centroid_accuracy(f_off[fit], off["label"][fit], f_off[held], off["label"][held])
    assert acc_off < 0.25, acc_off
    # Only the backgrounds change: objects, masks and labels are the same examples.
    np.testing.assert_array_equal(off["object_mask"], tr["object_mask"])


def test_spurious_strength_sets_the_fraction_of_cued_examples():
    cfg = synthetic.ImageConfig(spurious_background=True, spurious_strength=0.5)
    d = synthetic.make_images(512, seed=2, config=cfg)
    agree = np.mean(d["background_pattern"] == d["label"])
    assert 0.5 < agree < 0.62  # 0.5 planted + 0.5 * 1/10 by chance = 0.55


def test_missing_parts_follow_their_probability():
    cfg = synthetic.ImageConfig(missing_part_prob=0.5)
    d = synthetic.make_images(512, seed=5, config=cfg)
    body = synthetic.PART_NAMES.index("body")
    assert d["part_present"][:, body].all()
    others = np.delete(d["part_present"], body, axis=1)
    assert abs(1.0 - others.mean() - 0.5) < 0.05
    absent = ~d["part_present"]
    assert np.all(d["keypoints"][absent] == -1.0)
    assert not d["part_masks"][absent].any()
    attrs = d["attributes"].reshape(512, len(synthetic.PART_NAMES), -1)
    assert np.all(attrs[absent] == 0) and np.all(attrs[~absent].sum(axis=-1) == 4)
    phi = synthetic.class_attribute_matrix(cfg).reshape(10, len(synthetic.PART_NAMES), -1)
    np.testing.assert_array_equal(attrs, phi[d["label"]] * d["part_present"][..., None])


def test_two_objects_have_different_classes_and_separate_masks():
    cfg = synthetic.ImageConfig(two_objects=True)
    d = synthetic.make_images(256, seed=6, config=cfg)
    assert np.all(d["label"] != d["label2"])
    assert np.all(np.bincount(d["label2"], minlength=10) > 10)
    m1, m2 = d["object_mask"], d["object_mask2"]
    assert m1.any(axis=(1, 2)).all() and m2.any(axis=(1, 2)).all()
    assert not np.any(m1 & m2)
    for i in range(0, 256, 17):
        ys, xs = np.nonzero(m2[i])
        np.testing.assert_array_equal(
            d["box2"][i], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
        )
    # The boxes do not overlap either: the objects sit in opposite halves of the image.
    b1, b2 = d["box"], d["box2"]
    apart = (b1[:, 2] <= b2[:, 0]) | (b2[:, 2] <= b1[:, 0]) | (b1[:, 3] <= b2[:, 1])
    apart |= b2[:, 3] <= b1[:, 1]
    assert apart.all()
    bg = _background_only(32, 6, "train", cfg)
    np.testing.assert_array_equal(np.any(d["image"][:32] != bg, axis=-1), (m1 | m2)[:32])


def test_class_attribute_matrix():
    phi = synthetic.class_attribute_matrix()
    assert phi.shape == (10, len(synthetic.ATTRIBUTE_NAMES)) == (10, 95)
    np.testing.assert_array_equal(phi.sum(axis=1), 20)  # 5 parts x 4 factors, one value each
    d = synthetic.make_images(64)
    np.testing.assert_array_equal(d["attributes"], phi[d["label"]])
    # Classes differ in >= 5 visible attributes (shape, colour, texture) and >= 2 colours...
    visible = np.array(["_size::" not in n for n in synthetic.ATTRIBUTE_NAMES])
    color = np.array(["_color::" in n for n in synthetic.ATTRIBUTE_NAMES])
    for a in range(10):
        for b in range(a):
            diff = phi[a] != phi[b]
            assert diff[visible].sum() >= 2 * 5 and diff[color].sum() >= 2 * 2
    # ...while sharing attributes: most attributes in use belong to several classes.
    used = phi.sum(axis=0)
    assert np.mean(used[used > 0] >= 2) > 0.5
    # Fixed by class_seed, not by the data seed or split.
    np.testing.assert_array_equal(phi, synthetic.class_attribute_matrix(synthetic.ImageConfig()))
    other = synthetic.class_attribute_matrix(synthetic.ImageConfig(class_seed=1))
    assert not np.array_equal(phi, other)


@pytest.mark.parametrize("size", [24, 96])
def test_other_image_sizes(size):
    d = synthetic.make_images(8, config=synthetic.ImageConfig(image_size=size, num_classes=3))
    assert d["image"].shape == (8, size, size, 3)
    assert d["part_present"].all() and set(d["label"].tolist()) == {0, 1, 2}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image_size": 16},
        {"image_size": 64.0},
        {"num_classes": 1},
        {"num_distractors": -1},
        {"scale_range": (0.5, 0.2)},
        {"scale_range": (0.0, 1.0)},
        {"scale_range": (0.5, 1.5)},
        {"scale_range": 0.5},
        {"image_size": 24, "scale_range": (0.3, 0.5)},
        {"max_rotation": 270},
        {"missing_part_prob": 1.5},
        {"spurious_strength": -0.1},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(errors.InvalidArgumentError):
        synthetic.ImageConfig(**kwargs)


@pytest.mark.parametrize(
    "call",
    [
        lambda: synthetic.make_images(0),
        lambda: synthetic.make_images(-3),
        lambda: synthetic.make_images(2.0),
        lambda: synthetic.make_images(True),
        lambda: synthetic.make_images(4, seed=-1),
        lambda: synthetic.make_images(4, split="val"),
        lambda: synthetic.make_images(4, config=synthetic.VideoConfig()),
        lambda: synthetic.class_attribute_matrix(synthetic.TextConfig()),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(errors.InvalidArgumentError) as info:
        call()
    assert "`" in str(info.value)  # the message names the argument


def test_scale_choices_draw_discrete_sizes_and_leave_defaults_alone():
    cfg = synthetic.ImageConfig(image_size=48, num_classes=3, scale_choices=(0.3, 0.9))
    d = synthetic.make_images(40, seed=1, config=cfg)
    assert d["size_class"].dtype == np.int32 and set(d["size_class"].tolist()) == {0, 1}
    np.testing.assert_array_equal(d["scale"], np.float32([0.3, 0.9])[d["size_class"]])
    side = np.maximum(d["box"][:, 2] - d["box"][:, 0], d["box"][:, 3] - d["box"][:, 1])
    assert side[d["size_class"] == 1].min() > side[d["size_class"] == 0].max()
    assert "size_class" not in synthetic.make_images(2, seed=1)
    src = synthetic.SyntheticSource("images", num=40, seed=1, config=cfg)
    assert int(src[7]["size_class"]) == int(d["size_class"][7])
    needle = synthetic.make_images(2, config=synthetic.needle_config(128))
    assert needle["image"].shape == (2, 128, 128, 3) and "size_class" in needle
    for bad in ((), (0.0,), (1.5,), (0.1,), (True,)):
        with pytest.raises(errors.InvalidArgumentError, match="scale_choices"):
            synthetic.ImageConfig(image_size=48, scale_choices=bad)
