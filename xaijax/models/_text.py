"""A 1D CNN for token sequences ``[B, L]`` (Kim, 2014 style)."""

from __future__ import annotations

import flax.linen as nn
import jax

from xaijax.models import _common


class Conv1DBlock(nn.Module):
    """A 1D 'SAME' convolution ``conv`` over the sequence axis with ReLU."""

    features: int
    kernel_size: int = 5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.relu(nn.Conv(self.features, (self.kernel_size,), name="conv")(x))


class Text1D(nn.Module):
    """A small 1D CNN text classifier over int32 token ids ``[B, L]``.

    Layout: ``embed`` (``nn.Embed(vocab_size, embed_dim)``), then :class:`Conv1DBlock` s
    ``block1 .. blockN`` (``widths[i]`` channels, ``kernel_sizes[i]`` taps) at full sequence
    resolution. The last block is the CAM layer: with ``head="gap"`` the logits are
    ``Dense(num_classes, name="head")(mean over L of blockN)``, so a CAM is a ``[L]`` profile
    aligned with the tokens. Token ids must lie in ``[0, vocab_size)`` (out-of-range ids are
    clamped by the embedding lookup under ``jit``).

    Attributes:
      num_classes: number of logits.
      vocab_size: number of token ids.
      embed_dim: embedding width.
      widths: channels of each block.
      kernel_sizes: receptive field (in tokens) of each block's convolution.
      head: ``"gap"`` or ``"mlp"``.
      mlp_features: width of ``fc1`` when ``head="mlp"``.
      cam_layer: name of the last sequence layer, ``f"block{len(widths)}"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = Text1D(num_classes=2)
      >>> tokens = jnp.zeros((3, 64), jnp.int32)
      >>> params = model.init(jax.random.key(0), tokens)["params"]
      >>> model.apply({"params": params}, tokens).shape
      (3, 2)
    """

    num_classes: int
    vocab_size: int = 200
    embed_dim: int = 32
    widths: tuple[int, ...] = (64, 64)
    kernel_sizes: tuple[int, ...] = (5, 3)
    head: str = "gap"
    mlp_features: int = 128
    cam_layer: str = "block2"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _common.check_config(
            self,
            len(self.widths),
            kernel_sizes=(self.kernel_sizes, "give one kernel size per block"),
        )
        x = _common.check_token_input(x, "Text1D")
        x = nn.Embed(self.vocab_size, self.embed_dim, name="embed")(x)
        for i, (width, k) in enumerate(zip(self.widths, self.kernel_sizes, strict=True)):
            x = Conv1DBlock(width, k, name=f"block{i + 1}")(x)
        return _common.apply_head(self, x)
