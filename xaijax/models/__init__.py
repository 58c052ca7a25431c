"""Small stateless Flax Linen classifiers with named layers, for explaining and for tests.

Image models (``[B, H, W, 3]`` floats in [0, 1]): :class:`VGG`, :class:`ResNet` (bottleneck
blocks, projection shortcuts), :class:`Inception` (concatenated branches), :class:`DenseNet`;
video: :class:`Video3D` (``[B, T, H, W, 3]``); text: :class:`Text1D` (int32 token ids
``[B, L]``). All return logits ``[B, num_classes]``, name their stages ``block1``, ``block2``,
..., expose the last spatial stage's name as ``cam_layer`` and, with ``head="gap"`` (the
default), compute ``logits = Dense(name="head")(mean over positions of cam_layer)`` so class
activation maps are exact. They hold no batch-norm or dropout state:
``apply_fn(model)(params, x)`` is the whole model.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xaijax import models
    >>> model = models.get_model("vgg", num_classes=10)
    >>> x = jnp.zeros((2, 64, 64, 3))
    >>> params = model.init(jax.random.key(0), x)["params"]
    >>> models.apply_fn(model)(params, x).shape
    (2, 10)
"""

from xaijax.models._common import HEADS, apply_fn
from xaijax.models._densenet import DenseBlock, DenseNet, Transition
from xaijax.models._inception import Inception, InceptionBlock
from xaijax.models._registry import MODEL_INPUTS, MODEL_NAMES, get_model
from xaijax.models._resnet import Bottleneck, ResNet
from xaijax.models._text import Conv1DBlock, Text1D
from xaijax.models._vgg import VGG, ConvStack
from xaijax.models._video import Conv3DBlock, FrameConv, Video3D

__all__ = [
    "HEADS",
    "MODEL_INPUTS",
    "MODEL_NAMES",
    "Bottleneck",
    "Conv1DBlock",
    "Conv3DBlock",
    "ConvStack",
    "DenseBlock",
    "DenseNet",
    "FrameConv",
    "Inception",
    "InceptionBlock",
    "ResNet",
    "Text1D",
    "Transition",
    "VGG",
    "Video3D",
    "apply_fn",
    "get_model",
]
