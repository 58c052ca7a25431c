"""ResNet-like image classifier built from bottleneck blocks with projection shortcuts."""

from __future__ import annotations

import flax.linen as nn
import jax

from xaijax.models import _common


class Bottleneck(nn.Module):
    """A bottleneck residual block (He et al., 2016), without batch norm.

    ``conv1`` (1x1, stride ``strides``, ``features // expansion`` channels) -> ReLU -> ``conv2``
    (3x3) -> ReLU -> ``conv3`` (1x1, ``features`` channels), added to the shortcut, then ReLU.
    The shortcut is the identity when shapes agree and a 1x1 strided projection ``proj``
    otherwise. As in the Caffe ResNets that CNN Fixations unravels, the stride sits on the first
    1x1 convolution and on the projection.
    """

    features: int
    strides: int = 1
    expansion: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mid = max(self.features // self.expansion, 1)
        s = (self.strides, self.strides)
        y = nn.relu(nn.Conv(mid, (1, 1), strides=s, name="conv1")(x))
        y = nn.relu(nn.Conv(mid, (3, 3), name="conv2")(y))
        y = nn.Conv(self.features, (1, 1), name="conv3")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(self.features, (1, 1), strides=s, name="proj")(x)
        else:
            shortcut = x
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """A small ResNet-like CNN for ``[B, H, W, 3]`` images in [0, 1].

    Layout: ``stem`` (3x3 conv, ``stem_features`` channels, ReLU) and a 2x2/2 ``nn.max_pool``,
    then :class:`Bottleneck` blocks ``block1 .. blockN`` with ``widths[i]`` output channels and
    stride ``strides[i]``. The last block is the CAM layer; the head is as in :class:`VGG`.

    Attributes:
      num_classes: number of logits.
      stem_features: channels of the stem convolution.
      widths: output channels of each bottleneck block.
      strides: stride of each block (64x64 inputs give an 8x8 CAM with the defaults).
      head: ``"gap"`` or ``"mlp"``.
      mlp_features: width of ``fc1`` when ``head="mlp"``.
      cam_layer: name of the last spatial layer, ``f"block{len(widths)}"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = ResNet(num_classes=10)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
      >>> model.apply({"params": params}, jnp.zeros((2, 64, 64, 3))).shape
      (2, 10)
    """

    num_classes: int
    stem_features: int = 16
    widths: tuple[int, ...] = (32, 64, 128, 128)
    strides: tuple[int, ...] = (1, 2, 2, 1)
    head: str = "gap"
    mlp_features: int = 128
    cam_layer: str = "block4"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _common.check_config(
            self, len(self.widths), strides=(self.strides, "give one stride per block")
        )
        x = _common.check_float_input(x, 4, "[B, H, W, 3]", "ResNet")
        x = _common.stem(x, self.stem_features)
        for i, (width, stride) in enumerate(zip(self.widths, self.strides, strict=True)):
            x = Bottleneck(width, stride, name=f"block{i + 1}")(x)
        return _common.apply_head(self, x)
