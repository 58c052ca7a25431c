"""VGG-like image classifier: stacks of 3x3 convolutions separated by 2x2 max-pooling."""

from __future__ import annotations

import flax.linen as nn
import jax

from xaijax.models import _common


class ConvStack(nn.Module):
    """``num_convs`` 3x3 'SAME' convolutions (named ``conv1``, ``conv2``, ...), each with ReLU."""

    features: int
    num_convs: int = 2
    kernel_size: tuple[int, ...] = (3, 3)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.num_convs):
            x = nn.relu(nn.Conv(self.features, self.kernel_size, name=f"conv{j + 1}")(x))
        return x


class VGG(nn.Module):
    """A small VGG-like CNN (Simonyan & Zisserman, 2015) for ``[B, H, W, 3]`` images in [0, 1].

    Layout: ``block1 .. blockN`` are :class:`ConvStack` s (``convs_per_block`` 3x3 convs with
    ReLU, ``widths[i]`` channels); a 2x2/2 ``nn.max_pool`` sits between consecutive blocks (not
    after the last one). The last block is the CAM layer. ``head="gap"`` then gives
    ``Dense(num_classes, name="head")(mean_xy(blockN))``; ``head="mlp"`` flattens blockN and
    applies ``fc1`` (ReLU) and ``head`` as the classic VGG classifier does.

    Attributes:
      num_classes: number of logits.
      widths: channels of each block (4 blocks: 64x64 inputs give an 8x8 CAM).
      convs_per_block: 3x3 convolutions per block.
      head: ``"gap"`` or ``"mlp"``.
      mlp_features: width of ``fc1`` when ``head="mlp"``.
      cam_layer: name of the last spatial layer, ``f"block{len(widths)}"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = VGG(num_classes=10)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
      >>> model.apply({"params": params}, jnp.zeros((2, 64, 64, 3))).shape
      (2, 10)
    """

    num_classes: int
    widths: tuple[int, ...] = (16, 32, 64, 64)
    convs_per_block: int = 2
    head: str = "gap"
    mlp_features: int = 128
    cam_layer: str = "block4"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _common.check_config(self, len(self.widths))
        x = _common.check_float_input(x, 4, "[B, H, W, 3]", "VGG")
        for i, width in enumerate(self.widths):
            if i > 0:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = ConvStack(width, self.convs_per_block, name=f"block{i + 1}")(x)
        return _common.apply_head(self, x)
