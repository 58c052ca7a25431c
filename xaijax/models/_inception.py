"""Inception-like image classifier: modules of four parallel branches, concatenated."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from xaijax.models import _common


class InceptionBlock(nn.Module):
    """A GoogLeNet-style inception module (Szegedy et al., 2015), without batch norm.

    Four branches, each ending in ReLU, concatenated on the channel axis in this order (so the
    channel index identifies the branch, as CNN Fixations' inception rule assumes):
    ``[branch1x1 | branch3x3 | branch5x5 | branch_pool]``.

    * ``branch1x1``: 1x1 conv, ``features // 4`` channels.
    * ``branch3x3_reduce`` (1x1, ``features // 8``) -> ``branch3x3`` (3x3, ``features // 4``).
    * ``branch5x5_reduce`` (1x1, ``features // 8``) -> ``branch5x5`` (5x5, ``features // 4``).
    * 3x3/1 'SAME' ``nn.max_pool`` -> ``branch_pool_proj`` (1x1, the remaining channels).
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        quarter = max(self.features // 4, 1)
        reduce = max(self.features // 8, 1)
        b1 = nn.relu(nn.Conv(quarter, (1, 1), name="branch1x1")(x))
        b3 = nn.relu(nn.Conv(reduce, (1, 1), name="branch3x3_reduce")(x))
        b3 = nn.relu(nn.Conv(quarter, (3, 3), name="branch3x3")(b3))
        b5 = nn.relu(nn.Conv(reduce, (1, 1), name="branch5x5_reduce")(x))
        b5 = nn.relu(nn.Conv(quarter, (5, 5), name="branch5x5")(b5))
        bp = nn.max_pool(x, (3, 3), strides=(1, 1), padding="SAME")
        bp = nn.relu(nn.Conv(self.features - 3 * quarter, (1, 1), name="branch_pool_proj")(bp))
        return jnp.concatenate([b1, b3, b5, bp], axis=-1)


class Inception(nn.Module):
    """A small Inception-like CNN for ``[B, H, W, 3]`` images in [0, 1].

    Layout: ``stem`` (3x3 conv, ReLU) and a 2x2/2 ``nn.max_pool``, then
    :class:`InceptionBlock` s ``block1 .. blockN`` (``widths[i]`` output channels) with a 2x2/2
    ``nn.max_pool`` between consecutive blocks. The last block is the CAM layer; the head is as
    in :class:`xaijax.models.VGG`.

    Attributes:
      num_classes: number of logits.
      stem_features: channels of the stem convolution.
      widths: output channels of each inception block (64x64 inputs give an 8x8 CAM).
      head: ``"gap"`` or ``"mlp"``.
      mlp_features: width of ``fc1`` when ``head="mlp"``.
      cam_layer: name of the last spatial layer, ``f"block{len(widths)}"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = Inception(num_classes=10)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
      >>> model.apply({"params": params}, jnp.zeros((2, 64, 64, 3))).shape
      (2, 10)
    """

    num_classes: int
    stem_features: int = 16
    widths: tuple[int, ...] = (32, 64, 96)
    head: str = "gap"
    mlp_features: int = 128
    cam_layer: str = "block3"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _common.check_config(self, len(self.widths))
        x = _common.check_float_input(x, 4, "[B, H, W, 3]", "Inception")
        x = _common.stem(x, self.stem_features)
        for i, width in enumerate(self.widths):
            if i > 0:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = InceptionBlock(width, name=f"block{i + 1}")(x)
        return _common.apply_head(self, x)
