"""DenseNet-like image classifier: dense blocks (concatenated features) and transitions."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from xaijax.models import _common


class DenseBlock(nn.Module):
    """A dense block (Huang et al., 2017), without batch norm.

    ``num_layers`` times: ``y = relu(conv_j(x))`` (3x3, ``growth`` channels, named ``layer1``,
    ``layer2``, ...) and ``x = concatenate([x, y], axis=-1)``; so the output has
    ``C_in + num_layers * growth`` channels, the input's first.
    """

    num_layers: int
    growth: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.num_layers):
            y = nn.relu(nn.Conv(self.growth, (3, 3), name=f"layer{j + 1}")(x))
            x = jnp.concatenate([x, y], axis=-1)
        return x


class Transition(nn.Module):
    """A transition layer: 1x1 conv ``conv`` (ReLU) to ``features`` channels, 2x2/2 avg-pool."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(self.features, (1, 1), name="conv")(x))
        return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(nn.Module):
    """A small DenseNet-like CNN for ``[B, H, W, 3]`` images in [0, 1].

    Layout: ``stem`` (3x3 conv, ``2 * growth`` channels, ReLU) and a 2x2/2 ``nn.max_pool``, then
    :class:`DenseBlock` s ``block1 .. blockN`` (``block_layers[i]`` layers each) with a
    :class:`Transition` ``trans1 ..`` (halving the channels, 2x2 avg-pool) between consecutive
    blocks. The last dense block is the CAM layer; the head is as in
    :class:`xaijax.models.VGG`.

    Attributes:
      num_classes: number of logits.
      growth: channels added by each dense layer.
      block_layers: number of layers in each dense block (64x64 inputs give an 8x8 CAM).
      head: ``"gap"`` or ``"mlp"``.
      mlp_features: width of ``fc1`` when ``head="mlp"``.
      cam_layer: name of the last spatial layer, ``f"block{len(block_layers)}"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = DenseNet(num_classes=10)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
      >>> model.apply({"params": params}, jnp.zeros((2, 64, 64, 3))).shape
      (2, 10)
    """

    num_classes: int
    growth: int = 12
    block_layers: tuple[int, ...] = (3, 3, 3)
    head: str = "gap"
    mlp_features: int = 128
    cam_layer: str = "block3"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _common.check_config(self, len(self.block_layers))
        x = _common.check_float_input(x, 4, "[B, H, W, 3]", "DenseNet")
        x = _common.stem(x, 2 * self.growth)
        for i, layers in enumerate(self.block_layers):
            if i > 0:
                x = Transition(x.shape[-1] // 2, name=f"trans{i}")(x)
            x = DenseBlock(layers, self.growth, name=f"block{i + 1}")(x)
        return _common.apply_head(self, x)
