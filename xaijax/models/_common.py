"""Pieces shared by the model zoo: input checks, the CAM-exact head and ``apply_fn``."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from xaijax import errors
from xaijax._validation import _shape_str
from xaijax.typing import ApplyFn, Params

HEADS = ("gap", "mlp")


def _check_rank(x: jax.Array, rank: int, layout: str, model: str, what: str, name: str) -> None:
    if x.ndim != rank:
        hint = f"add a batch axis with `{name}[None]`" if x.ndim == rank - 1 else "reshape it"
        raise errors.InputShapeError(
            f"{model} expects {what} of rank {rank} laid out as {layout}, got shape "
            f"{_shape_str(x.shape)}: {hint}."
        )


def check_float_input(x: jax.Array, rank: int, layout: str, model: str) -> jax.Array:
    """Static (trace-safe) rank and dtype check of a float image or video batch."""
    _check_rank(x, rank, layout, model, "`x`", "x")
    if x.shape[-1] != 3:
        raise errors.InputShapeError(
            f"{model} expects `x` with 3 channels last ({layout}), got shape "
            f"{_shape_str(x.shape)}: convert to RGB, channels last (NHWC)."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise errors.InputDTypeError(
            f"{model} expects floating `x` in [0, 1], got dtype {x.dtype}: use "
            "`x.astype(jnp.float32) / 255.0` for uint8 images."
        )
    return x


def check_token_input(x: jax.Array, model: str) -> jax.Array:
    """Static (trace-safe) rank and dtype check of an int token-id batch ``[B, L]``."""
    _check_rank(x, 2, "[B, L]", model, "token ids", "tokens")
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise errors.InputDTypeError(
            f"{model} expects integer token ids, got dtype {x.dtype}: pass "
            "`tokens.astype(jnp.int32)`."
        )
    return x


def check_head(head: str) -> None:
    if head not in HEADS:
        raise errors.InvalidArgumentError(
            f"`head` must be one of {list(HEADS)}, got {head!r}: 'gap' (global average pool + "
            "one dense layer, CAM-exact) or 'mlp' (flatten + dense 'fc1' + dense 'head')."
        )


def check_cam_layer(cam_layer: str, expected: str, model: str) -> None:
    if cam_layer != expected:
        raise errors.InvalidArgumentError(
            f"{model}: `cam_layer` is {cam_layer!r} but the last spatial layer of this "
            f"configuration is {expected!r}: pass `cam_layer={expected!r}` (it names the layer, "
            "it does not choose one)."
        )


def check_config(module: nn.Module, num_blocks: int, **per_block: tuple[Sequence, str]) -> None:
    """The configuration checks every zoo model runs first (they need no input).

    ``module.head`` must be one of :data:`HEADS`, ``module.cam_layer`` must name the last of the
    ``num_blocks`` blocks, and every ``name=(values, hint)`` of ``per_block`` must give one value
    per block (``hint`` ends the message, e.g. ``"give one stride per block"``).
    """
    model = type(module).__name__
    check_head(module.head)
    check_cam_layer(module.cam_layer, f"block{num_blocks}", model)
    for name, (values, hint) in per_block.items():
        if len(values) != num_blocks:
            raise errors.InvalidArgumentError(
                f"{model}: `{name}` has {len(values)} entries but `widths` has {num_blocks}: "
                f"{hint}."
            )


def stem(x: jax.Array, features: int) -> jax.Array:
    """The image stem of ResNet, Inception and DenseNet: ``stem`` (3x3 conv, ReLU), 2x2/2 max-pool.

    Call inside a compact ``__call__``.
    """
    x = nn.relu(nn.Conv(features, (3, 3), name="stem")(x))
    return nn.max_pool(x, (2, 2), strides=(2, 2))


def classifier_head(
    features: jax.Array, *, head: str, num_classes: int, mlp_features: int
) -> jax.Array:
    """The classifier on top of the ``cam_layer`` output; call inside a compact ``__call__``.

    ``head="gap"``: ``logits = Dense(num_classes, name="head")(mean over every axis but the
    first and last)`` with nothing in between, so for class ``c``
    ``logit_c = mean_pos(sum_k w_kc A_k(pos)) + b_c`` exactly (CAM). ``head="mlp"``: flatten,
    ``Dense(mlp_features, name="fc1")``, ReLU, ``Dense(num_classes, name="head")``.
    """
    if head == "gap":
        pooled = jnp.mean(features, axis=tuple(range(1, features.ndim - 1)))
        return nn.Dense(num_classes, name="head")(pooled)
    flat = features.reshape(features.shape[0], -1)
    hidden = nn.relu(nn.Dense(mlp_features, name="fc1")(flat))
    return nn.Dense(num_classes, name="head")(hidden)


def apply_head(module: nn.Module, features: jax.Array) -> jax.Array:
    """:func:`classifier_head` with the ``head``, ``num_classes`` and ``mlp_features`` fields of
    the zoo model ``module``; call inside its compact ``__call__``."""
    return classifier_head(
        features, head=module.head, num_classes=module.num_classes, mlp_features=module.mlp_features
    )


def apply_fn(model: nn.Module) -> ApplyFn:
    """Returns ``apply_fn(params, x) = model.apply({"params": params}, x)``.

    Every zoo model is stateless (no BatchNorm, no dropout), so this pure function is the whole
    model, in the form the explainers expect. Equal (hashable) models get the same function
    object, so ``jit`` caches keyed on it are shared.

    Args:
      model: a Flax Linen module whose only variable collection is ``"params"``.

    Returns:
      ``apply_fn(params, x) -> logits [B, num_classes]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from xaijax import models
      >>> model = models.get_model("vgg", 10)
      >>> x = jnp.zeros((2, 64, 64, 3))
      >>> params = model.init(jax.random.key(0), x)["params"]
      >>> models.apply_fn(model)(params, x).shape
      (2, 10)
    """
    if not isinstance(model, nn.Module):
        raise errors.InvalidArgumentError(
            f"`model` must be a flax.linen.Module, got {type(model).__name__}: build one with "
            "`xaijax.models.get_model(name, num_classes)`."
        )
    try:
        return _cached_apply_fn(model)
    except TypeError:  # unhashable fields: build an uncached one
        return _build_apply_fn(model)


@functools.lru_cache(maxsize=64)
def _cached_apply_fn(model: nn.Module) -> ApplyFn:
    # Equal models share one function object, so jit caches keyed on it are reused.
    return _build_apply_fn(model)


def _build_apply_fn(model: nn.Module) -> ApplyFn:
    def apply(params: Params, x: jax.Array) -> jax.Array:
        return model.apply({"params": params}, x)

    apply.__name__ = f"apply_{type(model).__name__}"
    apply.__qualname__ = apply.__name__
    return apply
