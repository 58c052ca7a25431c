"""The walker on every architecture of the zoo (untrained weights), against the literal reference
walk; the randomisation sanity check; two objects of different classes."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import models
from xaijax.fixations import Options, fixations

# Small versions of the zoo models: same structure, fewer channels, small inputs.
ZOO = {
    "vgg": (dict(widths=(4, 6), convs_per_block=1), (16, 16, 3)),
    "vgg_mlp": (dict(widths=(4, 6), convs_per_block=1, head="mlp", mlp_features=8), (16, 16, 3)),
    "resnet": (dict(stem_features=4, widths=(8, 8), strides=(1, 2)), (16, 16, 3)),
    "inception": (dict(stem_features=4, widths=(8, 12)), (16, 16, 3)),
    "densenet": (dict(growth=3, block_layers=(2, 2)), (16, 16, 3)),
    "video3d": (
        dict(stem_features=4, widths=(4, 6), pool_windows=((2, 2, 2), (1, 1, 1))),
        (4, 16, 16, 3),
    ),
    "text1d": (dict(vocab_size=30, embed_dim=6, widths=(8, 8), kernel_sizes=(3, 3)), (16,)),
    # One block each, for the compact-path test (compiling the compact path is the slow part).
    "resnet_1": (dict(stem_features=4, widths=(8,), strides=(2,)), (8, 8, 3)),
    "densenet_1": (dict(growth=3, block_layers=(3,)), (8, 8, 3)),
}


def zoo_case(name, init, batch=2, seed=0):
    fields, shape = ZOO[name]
    model = models.get_model(name.split("_")[0], 5, **fields)
    rng = np.random.default_rng(seed)
    if name == "text1d":
        x = jnp.asarray(rng.integers(0, 30, size=(batch, *shape)), jnp.int32)
    else:
        x = jnp.asarray(rng.uniform(size=(batch, *shape)), jnp.float32)
    return model, init(model, x, seed), x


@pytest.mark.parametrize("name", [n for n in ZOO if not n.endswith("_1")])
def test_zoo_architecture_matches_reference_walk(name, init, ref):
    model, params, x = zoo_case(name, init)
    apply_fn = models.apply_fn(model)
    got = np.asarray(fixations(apply_fn, channel_reduction="none")(params, x))
    for b in range(x.shape[0]):
        expected = ref.walk(apply_fn, params, x[b : b + 1])[0]
        np.testing.assert_array_equal(got[b], expected)
        assert got[b].any()


@pytest.mark.parametrize("name", ["resnet_1", "densenet_1"])
def test_compact_path_and_static_bounds_on_zoo(name, init, ref):
    """The walk equals the reference with the PyTorch port's conv position too: the static
    bounds on the number of discriminative neurons, to which every convolution and pooling rule
    compacts its mask, hold through residual junctions and dense concatenations (a bound too
    small would drop neurons)."""
    model, params, x = zoo_case(name, init, batch=1, seed=1)
    apply_fn = models.apply_fn(model)
    options = Options(conv_position="argmax_contribution")
    got = np.asarray(
        fixations(apply_fn, conv_position="argmax_contribution", channel_reduction="none")(
            params, x
        )
    )
    np.testing.assert_array_equal(got[0], ref.walk(apply_fn, params, x, options=options)[0])


def test_cascading_randomisation_changes_the_fixations(init):
    """Sanity check (Adebayo et al.): re-drawing the weights from the head down changes where
    the fixations fall."""
    model, params, x = zoo_case("vgg", init, batch=4)
    explain = fixations(models.apply_fn(model))
    original = np.asarray(explain(params, x))
    other = init(model, x, seed=99)
    randomised = dict(params)
    for layer in ["head", "block2", "block1"]:
        randomised[layer] = other[layer]
        changed = np.asarray(explain(randomised, x)) != original
        assert changed.any(axis=(1, 2)).all(), layer


class ColourNet(nn.Module):
    """Class 0 = "red things", class 1 = "green things": 1x1 colour detectors, a 3x3 smoothing
    convolution, max pooling, global average pooling and an identity head."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(2, (1, 1), name="detect")(x))
        x = nn.relu(nn.Conv(2, (3, 3), name="smooth")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        return nn.Dense(2, name="head")(jnp.mean(x, axis=(1, 2)))


def test_two_objects_each_class_fixates_its_own_object():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 0.3, size=(3, 16, 16, 3)).astype(np.float32)
    masks = np.zeros((3, 2, 16, 16), bool)
    for b, (y0, x0, y1) in enumerate([(1, 1, 9), (6, 2, 0), (0, 8, 10)]):
        masks[b, 0, y0 : y0 + 5, x0 : x0 + 5] = True  # red object, left half
        masks[b, 1, y1 : y1 + 6, 9:15] = True  # green object, right half
    x[masks[:, 0]] = [0.9, 0.1, 0.1]
    x[masks[:, 1]] = [0.1, 0.9, 0.1]
    detect = np.array([[1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], np.float32)[None, None]
    smooth = np.zeros((3, 3, 2, 2), np.float32)
    smooth[:, :, 0, 0] = smooth[:, :, 1, 1] = 1.0 / 9
    params = {
        "detect": {"kernel": detect, "bias": np.full(2, -0.2, np.float32)},
        "smooth": {"kernel": smooth, "bias": np.zeros(2, np.float32)},
        "head": {"kernel": np.eye(2, dtype=np.float32), "bias": np.zeros(2, np.float32)},
    }
    net = ColourNet()
    explain = fixations(lambda p, x: net.apply({"params": p}, x))
    for cls in (0, 1):
        m = np.asarray(explain(params, x, jnp.full((3,), cls)))
        assert m.any(axis=(1, 2)).all()
        assert not (m & ~masks[:, cls]).any(), f"class {cls} fixated outside its object"


def test_convolutions_inside_residual_branches_are_found(init):
    """The authors' ResNet rule applies to the convolutions between a block's fork and its
    ``add`` (both shortcut kinds), and to no other: the stem is outside every branch."""
    import jax

    from xaijax.fixations import _walk

    model, params, x = zoo_case("resnet", init, batch=1)
    example = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
    program = _walk._trace(models.apply_fn(model), params, example)
    convs = [s for s in program.steps if s.primitive.name == "conv_general_dilated"]
    flags = [program.residual_branch[s.outputs[0]] for s in convs]
    # stem, then per block conv1, conv2, conv3 and the projection shortcut.
    assert flags == [False] + [True] * 8
    vgg, vgg_params, vgg_x = zoo_case("vgg", init, batch=1)
    plain = _walk._trace(models.apply_fn(vgg), vgg_params, vgg_x)
    assert not any(plain.residual_branch)
