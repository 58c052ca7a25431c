"""EAT's multi-task objective: class cross-entropy plus lambda x an attribute loss."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from xaijax import _validation, errors, training
from xaijax.eat import _checks
from xaijax.eat._heads import ATTRIBUTES, CLASS

#: Attribute supervision: ``"image"`` (per-image 0/1 attributes, binary cross-entropy) or
#: ``"class"`` (the class-level row ``Φ[label]``, mean squared error of ``sigmoid(a)``).
SUPERVISION = ("image", "class")


@dataclasses.dataclass(frozen=True)
class ClassAttributeMSE:
    """``loss(attribute_logits [B, A], labels [B]) = mean_{b,j} (σ(a_bj) - Φ[y_b, j])²``.

    The attribute loss against class-level attribute vectors (EAT's second supervision option,
    ``[INFER]``): the sigmoid keeps ``σ(a)`` a presence score in [0, 1] as in the image-level
    option, so the textual relevance ``σ(a_j) Φ_j(c)`` means the same under both.

    Attributes:
      class_attribute: Φ as a tuple of ``C`` rows of ``A`` values in [0, 1].
    """

    class_attribute: tuple[tuple[float, ...], ...]

    def __call__(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        phi = jnp.asarray(self.class_attribute, jnp.float32)
        if not hasattr(logits, "shape") or logits.ndim != 2 or logits.shape[1] != phi.shape[1]:
            raise errors.InputShapeError(
                f"class-level attribute MSE: attribute logits must be [B, A] = [B, "
                f"{phi.shape[1]}], got {list(getattr(logits, 'shape', []))}."
            )
        if not hasattr(labels, "shape") or tuple(labels.shape) != (logits.shape[0],):
            raise errors.BatchMismatchError(
                f"class-level attribute MSE needs one class index per row ([{logits.shape[0]}]),"
                f" got labels of shape {list(getattr(labels, 'shape', []))}: map the attribute "
                "head to the class labels (`label_key={'class': 'label', 'attributes': "
                "'label'}`)."
            )
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise errors.InputDTypeError(
                f"class-level attribute MSE needs integer class labels, got {labels.dtype}."
            )
        target = phi.astype(logits.dtype)[labels]
        return jnp.mean(jnp.square(jax.nn.sigmoid(logits) - target))


def eat_loss(
    weight: float = 1.0,
    *,
    supervision: str = "image",
    class_attribute=None,
) -> training.MultiTaskLoss:
    """EAT's objective ``L = CE(class) + weight * L_att(attributes)``, a multi-task loss.

    The model returns ``{"class": [B, C], "attributes": [B, A]}`` (:class:`EATNet`); the labels
    are a dict with the same keys:

    * ``supervision="image"`` (default): ``labels["attributes"]`` are the image's 0/1 attributes
      ``[B, A]`` and ``L_att`` is the mean sigmoid binary cross-entropy;
    * ``supervision="class"``: ``labels["attributes"]`` are the class indices ``[B]`` and
      ``L_att`` is :class:`ClassAttributeMSE` against ``Φ[label]`` (needs ``class_attribute``).

    With :func:`xaijax.training.train` pass ``label_key={"class": "label", "attributes":
    "attributes"}`` (image) or ``{"class": "label", "attributes": "label"}`` (class).

    Args:
      weight: λ >= 0 (papers note: sweep {0.1, 0.5, 1, 2}; 1.0 is xaijax's default).
      supervision: one of :data:`SUPERVISION`.
      class_attribute: Φ ``[C, A]`` with values in [0, 1], for ``supervision="class"``.

    Returns:
      A :class:`xaijax.training.MultiTaskLoss` reporting ``class/loss``, ``class/accuracy`` and
      ``attributes/loss``.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import eat
      >>> loss = eat.eat_loss(0.5)
      >>> out = {"class": jnp.zeros((2, 4)), "attributes": jnp.zeros((2, 3))}
      >>> labels = {"class": jnp.array([0, 1]), "attributes": jnp.ones((2, 3))}
      >>> round(float(loss(out, labels)[0]), 4)  # log 4 + 0.5 log 2
      1.7329
    """
    weight = _validation.check_positive_number(weight, "weight", allow_zero=True)
    _validation.check_choice(supervision, "supervision", SUPERVISION)
    if supervision == "image":
        attribute_loss = training.sigmoid_binary_cross_entropy
    else:
        if class_attribute is None:
            raise errors.InvalidArgumentError(
                "`supervision='class'` regresses the class-level attribute vectors and needs "
                "`class_attribute=` ([C, A], values in [0, 1])."
            )
        phi = _checks.class_attribute(class_attribute)
        if phi.min() < 0 or phi.max() > 1:
            raise errors.InvalidArgumentError(
                f"`class_attribute` values must lie in [0, 1] for the class-level loss (they are "
                f"the targets of sigmoid scores), got range [{phi.min():g}, {phi.max():g}]: "
                "rescale the matrix."
            )
        attribute_loss = ClassAttributeMSE(tuple(tuple(float(v) for v in row) for row in phi))
    return training.multitask(
        {CLASS: (training.classification_loss, 1.0), ATTRIBUTES: (attribute_loss, weight)}
    )
