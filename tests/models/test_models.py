"""Tests of xaijax.models: shapes, named layers, exact CAM identity, block oracles, errors."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import errors, models

# Small inputs keep the suite fast; every model's GAP head is size-agnostic.
SMALL_INPUTS = {
    "vgg": (32, 32, 3),
    "resnet": (32, 32, 3),
    "inception": (32, 32, 3),
    "densenet": (32, 32, 3),
    "video3d": (4, 16, 16, 3),
    "text1d": (16,),
}
EXPECTED_BLOCKS = {
    "vgg": 4,
    "resnet": 4,
    "inception": 3,
    "densenet": 3,
    "video3d": 3,
    "text1d": 2,
}
NUM_CLASSES = 5


def _key(seed: int) -> jax.Array:
    # "rbg" keys: XLA:CPU compiles flax's initialisers several times faster than with threefry.
    return jax.random.key(seed, impl="rbg")


def _input(name: str, batch: int, seed: int = 0) -> jax.Array:
    rng = np.random.default_rng(seed)
    shape = (batch, *SMALL_INPUTS[name])
    if name == "text1d":
        return jnp.asarray(rng.integers(0, 200, shape), jnp.int32)
    return jnp.asarray(rng.random(shape), jnp.float32)


def _intercepted_cam_layer(model, params, x):
    """Runs the model under ``nn.intercept_methods``; returns (logits, cam_layer output)."""
    seen = {}

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if (
            context.method_name == "__call__"
            and module.name == model.cam_layer
            and type(module.parent) is type(model)
        ):
            seen["out"] = out
        return out

    with nn.intercept_methods(record):
        logits = model.apply({"params": params}, x)
    return logits, seen["out"]


@pytest.fixture(scope="module")
def zoo():
    """name -> (model, params, x, logits, intermediates, intercepted); one compile per model."""
    out = {}
    for name in models.MODEL_NAMES:
        model = models.get_model(name, NUM_CLASSES)
        x = _input(name, 3)

        def build(key, x, model=model):
            params = model.init(key, x)["params"]
            logits, state = model.apply({"params": params}, x, capture_intermediates=True)
            return params, logits, state["intermediates"], _intercepted_cam_layer(model, params, x)

        params, logits, inter, intercepted = jax.jit(build)(_key(0), x)
        out[name] = (model, params, x, logits, inter, intercepted)
    return out


def test_registry_names():
    assert models.MODEL_NAMES == ("vgg", "resnet", "inception", "densenet", "video3d", "text1d")
    assert set(models.MODEL_INPUTS) == set(models.MODEL_NAMES)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_output_shape_and_named_blocks(zoo, name):
    model, params, x, logits, inter, _ = zoo[name]
    assert logits.shape == (3, NUM_CLASSES)
    assert logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    n = EXPECTED_BLOCKS[name]
    assert model.cam_layer == f"block{n}"
    for i in range(1, n + 1):
        assert f"block{i}" in params, sorted(params)
        assert f"block{i}" in inter
    assert "head" in params and "fc1" not in params
    if name == "text1d":
        assert "embed" in params


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_cam_identity_gap_head(zoo, name):
    """logit_c == mean over positions of sum_k w_kc A_k + b_c, to 1e-5 (float64 reference)."""
    model, params, x, logits, inter, _ = zoo[name]
    cam_act = np.asarray(inter[model.cam_layer]["__call__"][0], np.float64)
    assert cam_act.shape[0] == 3 and cam_act.ndim == x.ndim + (1 if name == "text1d" else 0)
    w = np.asarray(params["head"]["kernel"], np.float64)
    b = np.asarray(params["head"]["bias"], np.float64)
    cams = np.einsum("b...k,kc->b...c", cam_act, w)
    axes = tuple(range(1, cams.ndim - 1))
    np.testing.assert_allclose(cams.mean(axis=axes) + b, np.asarray(logits), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_cam_layer_reachable_by_intercept_methods(zoo, name):
    model, params, x, logits, inter, (again, cam_act) = zoo[name]
    np.testing.assert_allclose(again, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cam_act, inter[model.cam_layer]["__call__"][0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_batched_equals_per_example_and_jit_equals_eager(zoo, name):
    model, params, x, logits, _, _ = zoo[name]
    apply = models.apply_fn(model)
    singles = np.concatenate([np.asarray(jax.jit(apply)(params, x[i : i + 1])) for i in range(3)])
    np.testing.assert_allclose(singles, logits, rtol=1e-5, atol=1e-5)
    if name == "text1d":  # eager runs op by op (one compile each): one model suffices
        np.testing.assert_allclose(apply(params, x), logits, rtol=1e-5, atol=1e-5)


def test_vmap_over_extra_axis(zoo):
    model, params, x, logits, _, _ = zoo["text1d"]
    apply = models.apply_fn(model)
    stacked = jnp.stack([x, x[::-1]])
    out = jax.jit(jax.vmap(apply, in_axes=(None, 0)))(params, stacked)
    np.testing.assert_allclose(out[0], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], logits[::-1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["vgg", "video3d", "text1d"])
def test_mlp_head_flattens_cam_layer(name):
    model = models.get_model(name, NUM_CLASSES, head="mlp", mlp_features=7)
    x = _input(name, 2)

    def init_and_apply(key, x):
        params = model.init(key, x)["params"]
        return params, model.apply({"params": params}, x, capture_intermediates=True)

    params, (logits, state) = jax.jit(init_and_apply)(_key(1), x)
    cam_act = state["intermediates"][model.cam_layer]["__call__"][0]
    flat = np.asarray(cam_act, np.float64).reshape(2, -1)
    assert params["fc1"]["kernel"].shape == (flat.shape[1], 7)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    hidden = np.maximum(flat @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0.0)
    expected = hidden @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_degenerate_inputs_give_finite_logits(zoo):
    for name in ("vgg", "video3d"):
        model, params, x, _, _, _ = zoo[name]
        apply = jax.jit(models.apply_fn(model))
        for const in (0.0, 1.0):
            out = apply(params, jnp.full_like(x, const))
            assert bool(jnp.all(jnp.isfinite(out)))
            # Constant input: every example gets the same logits.
            np.testing.assert_allclose(out[0], out[1], rtol=1e-6, atol=1e-6)


def test_apply_fn_is_shared_and_does_not_recompile(zoo, assert_no_recompile):
    model, params, x, logits, _, _ = zoo["text1d"]
    f = models.apply_fn(model)
    assert models.apply_fn(models.get_model("text1d", NUM_CLASSES)) is f
    out = assert_no_recompile(jax.jit(f), params, x)
    np.testing.assert_allclose(out, logits, rtol=1e-6, atol=1e-6)
    # A different input of the same shape reuses the compilation too.
    assert_no_recompile(jax.jit(f), params, x[::-1])


def test_resnet_bottleneck_shortcuts():
    """With conv3 zeroed the block is relu(shortcut): identity, or strided 1x1 projection."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 4)), jnp.float32)
    ident = models.Bottleneck(4, strides=1)
    p = jax.jit(ident.init)(_key(0), x)["params"]
    assert "proj" not in p
    p["conv3"] = jax.tree.map(jnp.zeros_like, p["conv3"])
    out = jax.jit(ident.apply)({"params": p}, x)
    np.testing.assert_allclose(out, np.maximum(x, 0), atol=1e-6)

    proj = models.Bottleneck(6, strides=2)
    p = jax.jit(proj.init)(_key(1), x)["params"]
    p["conv3"] = jax.tree.map(jnp.zeros_like, p["conv3"])
    kernel = np.asarray(p["proj"]["kernel"])[0, 0]  # [4, 6]
    expected = np.maximum(np.asarray(x)[:, ::2, ::2] @ kernel + np.asarray(p["proj"]["bias"]), 0)
    out = jax.jit(proj.apply)({"params": p}, x)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # In the full model the strided blocks project, the last same-width block does not.
    model = models.get_model("resnet", 3)
    blocks = jax.eval_shape(model.init, _key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    assert "proj" in blocks["block1"] and "proj" in blocks["block2"]
    assert "proj" not in blocks["block4"]


def test_inception_block_branch_order():
    """Channels are [1x1 | 3x3 | 5x5 | pool]: keep only branch1x1 and read it in front."""
    x = jnp.asarray(np.random.default_rng(0).random((1, 6, 6, 5)), jnp.float32)
    block = models.InceptionBlock(16)
    p = jax.jit(block.init)(_key(0), x)["params"]
    p = {k: jax.tree.map(jnp.zeros_like, v) if k != "branch1x1" else v for k, v in p.items()}
    out = np.asarray(jax.jit(block.apply)({"params": p}, x))
    assert out.shape == (1, 6, 6, 16)
    w = np.asarray(p["branch1x1"]["kernel"])[0, 0]
    np.testing.assert_allclose(
        out[..., :4],
        np.maximum(np.asarray(x) @ w + np.asarray(p["branch1x1"]["bias"]), 0),
        atol=1e-6,
    )
    np.testing.assert_array_equal(out[..., 4:], 0.0)


def test_densenet_block_concatenates_input_first():
    x = jnp.asarray(np.random.default_rng(0).random((2, 5, 5, 3)), jnp.float32)
    block = models.DenseBlock(num_layers=3, growth=4)
    p = jax.jit(block.init)(_key(0), x)["params"]
    out = jax.jit(block.apply)({"params": p}, x)
    assert out.shape == (2, 5, 5, 3 + 3 * 4)
    np.testing.assert_array_equal(out[..., :3], x)
    assert sorted(p) == ["layer1", "layer2", "layer3"]


def test_text_embed_is_a_lookup(zoo):
    model, params, x, _, inter, _ = zoo["text1d"]
    emb = np.asarray(params["embed"]["embedding"])
    np.testing.assert_array_equal(inter["embed"]["__call__"][0], emb[np.asarray(x)])


def test_get_model_fills_cam_layer_for_custom_depth():
    m = models.get_model("vgg", 3, widths=(4, 8))
    assert m.cam_layer == "block2"
    m = models.get_model("densenet", 3, block_layers=(2, 2, 2, 2))
    assert m.cam_layer == "block4"
    params = jax.eval_shape(m.init, _key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    assert "block4" in params and "trans3" in params


def test_unknown_model_name_lists_names():
    with pytest.raises(errors.InvalidArgumentError) as e:
        models.get_model("alexnet", 10)
    for name in models.MODEL_NAMES:
        assert name in str(e.value)
    assert isinstance(e.value, ValueError)


def test_bad_arguments_raise_named_errors():
    with pytest.raises(errors.InvalidArgumentError, match="num_classes"):
        models.get_model("vgg", 0)
    with pytest.raises(errors.InvalidArgumentError, match="depth"):
        models.get_model("vgg", 3, depth=3)
    x = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(errors.InvalidArgumentError, match="head"):
        models.get_model("vgg", 3, head="linear").init(_key(0), x)
    with pytest.raises(errors.InvalidArgumentError, match="cam_layer='block4'"):
        models.VGG(3, cam_layer="block3").init(_key(0), x)
    with pytest.raises(errors.InvalidArgumentError, match="strides"):
        models.ResNet(3, strides=(1, 2)).init(_key(0), x)
    with pytest.raises(errors.InvalidArgumentError, match="flax.linen.Module"):
        models.apply_fn(lambda p, x: x)


def test_bad_inputs_raise_named_errors():
    model = models.get_model("vgg", 3, widths=(4, 4))
    key = _key(0)
    with pytest.raises(errors.InputShapeError, match=r"x\[None\]"):
        model.init(key, jnp.zeros((16, 16, 3)))
    with pytest.raises(errors.InputShapeError, match="3 channels"):
        model.init(key, jnp.zeros((1, 16, 16, 1)))
    with pytest.raises(errors.InputDTypeError, match="255"):
        model.init(key, jnp.zeros((1, 16, 16, 3), jnp.uint8))
    with pytest.raises(errors.InputShapeError, match=r"\[B, T, H, W, 3\]"):
        models.get_model("video3d", 3).init(key, jnp.zeros((1, 8, 8, 3)))
    text = models.get_model("text1d", 3)
    with pytest.raises(errors.InputDTypeError, match="int32"):
        text.init(key, jnp.zeros((1, 16), jnp.float32))
    with pytest.raises(errors.InputShapeError, match=r"tokens\[None\]"):
        text.init(key, jnp.zeros((16,), jnp.int32))


def test_video_frame_conv_equals_a_1x3x3_3d_conv():
    x = jnp.asarray(np.random.default_rng(0).random((2, 3, 6, 6, 3)), jnp.float32)
    stem = models.FrameConv(4, strides=(2, 2))
    p = jax.jit(stem.init)(_key(0), x)["params"]
    out = jax.jit(stem.apply)({"params": p}, x)
    kernel = np.asarray(p["conv"]["kernel"])[None]  # (1, 3, 3, 3, 4)
    ref = jax.lax.conv_general_dilated(
        x, kernel, (1, 2, 2), "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
    )
    ref = np.maximum(np.asarray(ref) + np.asarray(p["conv"]["bias"]), 0)
    assert out.shape == (2, 3, 3, 3, 4)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(errors.InvalidArgumentError, match="pool_windows"):
        models.Video3D(3, pool_windows=((1, 1, 1),)).init(_key(0), x)
