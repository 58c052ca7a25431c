"""A 3D CNN for short clips ``[B, T, H, W, 3]`` (C3D-like, Tran et al., 2015)."""

from __future__ import annotations

import flax.linen as nn
import jax

from xaijax.models import _common


class FrameConv(nn.Module):
    """A per-frame 2D convolution ``conv`` with ReLU: a (1, k, k) 3D convolution, computed fast.

    The clip ``[B, T, H, W, C]`` is reshaped to ``[B * T, H, W, C]``, convolved by a 2D
    ``nn.Conv`` and reshaped back. This equals a 3D convolution with a ``(1, k, k)`` kernel, but
    XLA:CPU runs 2D convolutions with few input channels about ten times faster than 3D ones.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, t = x.shape[0], x.shape[1]
        y = x.reshape(b * t, *x.shape[2:])
        y = nn.relu(nn.Conv(self.features, self.kernel_size, self.strides, name="conv")(y))
        return y.reshape(b, t, *y.shape[1:])


class Conv3DBlock(nn.Module):
    """``num_convs`` 3x3x3 'SAME' 3D convolutions (``conv1``, ``conv2``, ...), each with ReLU."""

    features: int
    num_convs: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.num_convs):
            x = nn.relu(nn.Conv(self.features, (3, 3, 3), name=f"conv{j + 1}")(x))
        return x


class Video3D(nn.Module):
    """A small 3D CNN for video clips ``[B, T, H, W, 3]`` in [0, 1].

    Layout: ``stem`` (:class:`FrameConv`: per-frame 3x3 conv, stride ``stem_strides``, ReLU),
    then for each block ``i`` a ``pool_windows[i]`` ``nn.max_pool`` over (T, H, W) followed by
    :class:`Conv3DBlock` ``block{i+1}`` (3x3x3 convolutions with ``widths[i]`` channels). The
    last block is the CAM layer; with ``head="gap"`` the logits are
    ``Dense(num_classes, name="head")(mean over T, H, W of blockN)``, so a CAM is a
    ``[T', H', W']`` volume.

    Attributes:
      num_classes: number of logits.
      stem_features: channels of the per-frame stem convolution.
      stem_strides: (H, W) stride of the stem.
      widths: channels of each 3D block.
      pool_windows: max-pool window (= stride) over (T, H, W) before each block; the defaults
        turn 16x32x32 clips into a 4x4x4 CAM.
      convs_per_block: 3D convolutions per block.
      head: ``"gap"`` or ``"mlp"``.
      mlp_features: width of ``fc1`` when ``head="mlp"``.
      cam_layer: name of the last spatio-temporal layer, ``f"block{len(widths)}"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = Video3D(num_classes=4)
      >>> clip = jnp.zeros((1, 16, 32, 32, 3))
      >>> params = model.init(jax.random.key(0), clip)["params"]
      >>> model.apply({"params": params}, clip).shape
      (1, 4)
    """

    num_classes: int
    stem_features: int = 16
    stem_strides: tuple[int, int] = (2, 2)
    widths: tuple[int, ...] = (32, 64, 64)
    pool_windows: tuple[tuple[int, int, int], ...] = ((2, 2, 2), (2, 2, 2), (1, 1, 1))
    convs_per_block: int = 1
    head: str = "gap"
    mlp_features: int = 128
    cam_layer: str = "block3"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _common.check_config(
            self,
            len(self.widths),
            pool_windows=(
                self.pool_windows,
                "give one (T, H, W) window per block ((1, 1, 1) for none)",
            ),
        )
        x = _common.check_float_input(x, 5, "[B, T, H, W, 3]", "Video3D")
        x = FrameConv(self.stem_features, strides=self.stem_strides, name="stem")(x)
        for i, (width, window) in enumerate(zip(self.widths, self.pool_windows, strict=True)):
            if tuple(window) != (1, 1, 1):
                x = nn.max_pool(x, tuple(window), strides=tuple(window))
            x = Conv3DBlock(width, self.convs_per_block, name=f"block{i + 1}")(x)
        return _common.apply_head(self, x)
