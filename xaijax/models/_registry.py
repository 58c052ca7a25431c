"""Model registry: ``get_model(name, num_classes, **kwargs)``."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from xaijax import _validation, errors
from xaijax.models._densenet import DenseNet
from xaijax.models._inception import Inception
from xaijax.models._resnet import ResNet
from xaijax.models._text import Text1D
from xaijax.models._vgg import VGG
from xaijax.models._video import Video3D

_REGISTRY: dict[str, type[nn.Module]] = {
    "vgg": VGG,
    "resnet": ResNet,
    "inception": Inception,
    "densenet": DenseNet,
    "video3d": Video3D,
    "text1d": Text1D,
}

#: Names accepted by :func:`get_model`.
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)

# The field whose length sets the number of blocks, hence the default ``cam_layer``.
_DEPTH_FIELD = {
    "vgg": "widths",
    "resnet": "widths",
    "inception": "widths",
    "densenet": "block_layers",
    "video3d": "widths",
    "text1d": "widths",
}

#: The input each model expects: (``"image"`` | ``"video"`` | ``"tokens"``, shape of one example
#: at the default task size).
MODEL_INPUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "vgg": ("image", (64, 64, 3)),
    "resnet": ("image", (64, 64, 3)),
    "inception": ("image", (64, 64, 3)),
    "densenet": ("image", (64, 64, 3)),
    "video3d": ("video", (16, 32, 32, 3)),
    "text1d": ("tokens", (64,)),
}


def get_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Builds a zoo model by name.

    Every model is a stateless ``flax.linen.Module`` (no batch norm, no dropout) mapping a batch
    to logits ``[B, num_classes]``; ``xaijax.models.apply_fn(model)`` turns it into the
    ``apply_fn(params, x)`` the explainers take. Its blocks are named ``block1``, ``block2``, ...
    and ``model.cam_layer`` names the last spatial (or temporal) one. When a depth-setting
    field (``widths``, or ``block_layers`` for DenseNet) is given without ``cam_layer``, the
    right ``cam_layer`` is filled in.

    Args:
      name: one of :data:`MODEL_NAMES`: ``"vgg"``, ``"resnet"``, ``"inception"``,
        ``"densenet"`` (images ``[B, H, W, 3]``), ``"video3d"`` (clips ``[B, T, H, W, 3]``),
        ``"text1d"`` (token ids ``[B, L]``).
      num_classes: number of logits.
      **kwargs: fields of the model class (``widths``, ``head="mlp"``, ...).

    Returns:
      The (unbound) module.

    Raises:
      InvalidArgumentError: unknown name, non-positive ``num_classes`` or unknown field.

    Example:
      >>> from xaijax import models
      >>> model = models.get_model("resnet", 10, head="gap")
      >>> model.cam_layer
      'block4'
    """
    if name not in _REGISTRY:
        raise errors.InvalidArgumentError(
            f"Unknown model name {name!r}: choose one of {list(MODEL_NAMES)}."
        )
    _validation.check_positive_int(num_classes, "num_classes")
    cls = _REGISTRY[name]
    fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name", "num_classes"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise errors.InvalidArgumentError(
            f"get_model({name!r}): unknown field(s) {unknown}; {cls.__name__} accepts "
            f"{sorted(fields)}."
        )
    depth_field = _DEPTH_FIELD[name]
    if depth_field in kwargs and "cam_layer" not in kwargs:
        kwargs["cam_layer"] = f"block{len(kwargs[depth_field])}"
    return cls(num_classes=num_classes, **kwargs)
