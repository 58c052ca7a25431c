"""EAT's two-headed network: any zoo backbone with a class head and an attribute head."""

from __future__ import annotations

from collections.abc import Hashable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _model, errors
from xaijax._model import Model
from xaijax.eat import _checks

#: The two entries of the outputs: class logits ``[B, C]`` and attribute logits ``[B, A]``.
CLASS = "class"
ATTRIBUTES = "attributes"
#: Head designs: ``"parallel"`` (the default: two linear heads on the same features) and
#: ``"from_attributes"`` (APN-style: class logits are the attributes' compatibility with each
#: class's row of the class-attribute matrix).
HEADS = ("parallel", "from_attributes")


class EATNet(nn.Module):
    """A backbone with a class head and an attribute head (EAT's hard parameter sharing).

    The backbone is any zoo model (:mod:`xaijax.models`) or Linen module whose classifier is a
    submodule named ``head_name`` called on the features it classifies (for the zoo's default
    ``head="gap"``: the global average pool ``z`` of the last conv stage, the CAM layer). The
    backbone shares this module's scope, so its parameters and layer names are exactly those of
    the backbone alone (``block1``, ..., ``head``), and the attribute head is one more dense
    layer ``attributes`` on ``z``:

    * ``heads="parallel"``: ``class = W_y z + b_y`` (the backbone's own head) and
      ``attributes = W_a z + b_a``;
    * ``heads="from_attributes"`` (APN-style, Xu et al. 2020): ``attributes = W_a z + b_a`` and
      ``class = attributes @ Φᵀ`` with the fixed class-attribute matrix Φ ``[C, A]``; the
      backbone's own ``head`` is not called (it has no parameters).

    Both heads are linear in ``z``, so with a ``gap`` backbone CAM is exact on either head. As the
    parameters of the backbone are initialised as for the backbone alone (same key, same names),
    a run with attribute weight 0 follows the single-task baseline step for step.

    Attributes:
      backbone: the feature extractor and class head (e.g. ``models.get_model("vgg", C)``).
      num_attributes: ``A``, the width of the attribute head.
      heads: one of :data:`HEADS`.
      class_attribute: Φ as a tuple of ``C`` rows (``from_attributes`` only; build the module
        with :func:`eat_net`, which converts and checks an array).
      head_name: the name of the backbone's classifier submodule (``"head"`` in the zoo).

    Returns (when called on ``x [B, ...]``):
      ``{"class": [B, C], "attributes": [B, A]}`` logits.
    """

    backbone: nn.Module
    num_attributes: int
    heads: str = "parallel"
    class_attribute: tuple[tuple[float, ...], ...] | None = None
    head_name: str = "head"

    def setup(self):
        nn.share_scope(self, self.backbone)

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        attribute_head = nn.Dense(self.num_attributes, name=ATTRIBUTES)
        head_path = (*tuple(self.path), self.head_name)
        captured: dict[str, jax.Array] = {}

        def interceptor(next_fun, args, kwargs, context):
            if (
                ATTRIBUTES not in captured
                and context.method_name == "__call__"
                and tuple(context.module.path) == head_path
            ):
                captured[ATTRIBUTES] = attribute_head(args[0])
                if self.heads == "from_attributes":
                    a = captured[ATTRIBUTES]
                    return a @ jnp.asarray(self.class_attribute, a.dtype).T
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(interceptor):
            logits = self.backbone(x)
        if ATTRIBUTES not in captured:
            raise errors.InvalidArgumentError(
                f"EATNet: the backbone {type(self.backbone).__name__} has no submodule named "
                f"{self.head_name!r} called on its features, so the attribute head has nothing "
                "to attach to. Use a zoo model (`xaijax.models.get_model(...)`) or pass "
                "`head_name=` naming the backbone's classifier layer."
            )
        return {CLASS: logits, ATTRIBUTES: captured[ATTRIBUTES]}


def eat_net(
    backbone: nn.Module,
    num_attributes: int | None = None,
    *,
    heads: str = "parallel",
    class_attribute=None,
    head_name: str = "head",
) -> EATNet:
    """Gives a backbone EAT's class head and attribute head.

    Args:
      backbone: a zoo model (``xaijax.models.get_model(name, num_classes)``) or any Linen
        module with a classifier submodule ``head_name`` called on its features.
      num_attributes: ``A``; may be omitted when ``class_attribute`` is given.
      heads: ``"parallel"`` (default, ``[INFER]`` from EAT's "multi-task") or
        ``"from_attributes"`` (APN-style class scores ``attributes @ Φᵀ``; needs
        ``class_attribute``).
      class_attribute: Φ ``[C, A]`` (e.g. ``synthetic.class_attribute_matrix(config)``);
        required by ``"from_attributes"``, checked against ``C`` and ``A`` when given.
      head_name: the backbone's classifier submodule.

    Returns:
      An :class:`EATNet` returning ``{"class": [B, C], "attributes": [B, A]}``. Explain either
      head with ``xaijax.from_linen(net, head="class")`` / ``head="attributes"``.

    Raises:
      InvalidArgumentError: unknown ``heads``, no ``num_attributes``, a bad Φ.
      InputShapeError: Φ of the wrong shape.

    Example:
      >>> import jax, jax.numpy as jnp, xaijax
      >>> from xaijax import eat, models
      >>> net = eat.eat_net(models.get_model("vgg", 4, widths=(8, 16)), 6)
      >>> x = jnp.zeros((2, 32, 32, 3))
      >>> params = net.init(jax.random.key(0), x)["params"]
      >>> {k: v.shape for k, v in net.apply({"params": params}, x).items()}
      {'class': (2, 4), 'attributes': (2, 6)}

    References:
      Xu et al., "Where is the Model Looking At? - Concentrate and Explain the Network
      Attention", IEEE JSTSP 2020 (EAT); Xu et al., "Attribute Prototype Network for Zero-Shot
      Learning", NeurIPS 2020 (APN, the class-from-attributes option).
    """
    if not isinstance(backbone, nn.Module):
        raise errors.InvalidArgumentError(
            f"`backbone` must be a flax.linen.Module, got {type(backbone).__name__}: build one "
            "with `xaijax.models.get_model(name, num_classes)`."
        )
    if heads not in HEADS:
        raise errors.InvalidArgumentError(
            f"`heads` must be one of {list(HEADS)}, got {heads!r}: 'parallel' (two linear "
            "heads) or 'from_attributes' (class = attributes @ class_attribute.T)."
        )
    num_classes = getattr(backbone, "num_classes", None)
    phi = None
    if class_attribute is not None:
        phi = _checks.class_attribute(
            class_attribute, num_classes=num_classes, num_attributes=num_attributes
        )
        num_attributes = phi.shape[1] if num_attributes is None else num_attributes
    elif heads == "from_attributes":
        raise errors.InvalidArgumentError(
            "`heads='from_attributes'` computes class scores from the attributes and needs the "
            "class-attribute matrix: pass `class_attribute=` ([C, A])."
        )
    if num_attributes is None:
        raise errors.InvalidArgumentError(
            "`num_attributes` is missing: give the width A of the attribute head (or "
            "`class_attribute=` [C, A], from which A is read)."
        )
    if isinstance(num_attributes, bool) or not isinstance(num_attributes, int | np.integer):
        raise errors.InvalidArgumentError(
            f"`num_attributes` must be a positive integer, got {num_attributes!r}."
        )
    if num_attributes < 1:
        raise errors.InvalidArgumentError(
            f"`num_attributes` must be a positive integer, got {num_attributes!r}."
        )
    rows = None
    if heads == "from_attributes":
        rows = tuple(tuple(float(v) for v in row) for row in phi)
    return EATNet(
        backbone=backbone,
        num_attributes=int(num_attributes),
        heads=heads,
        class_attribute=rows,
        head_name=head_name,
    )


def eat_model(net: EATNet, *, head: Hashable = CLASS, score: str = "logit", **kw) -> Model:
    """The :class:`~xaijax.Model` of an :class:`EATNet` explaining one head.

    ``head="class"`` (default) explains the class logits, ``head="attributes"`` the attribute
    logits (then an explainer's ``target`` is an attribute index). Every xaijax explainer
    (``grad_cam``, ``integrated_gradients``, ...) takes either.

    Example:
      >>> import jax, jax.numpy as jnp, xaijax
      >>> from xaijax import eat, models
      >>> net = eat.eat_net(models.get_model("vgg", 4, widths=(8, 16)), 6)
      >>> x = jnp.zeros((1, 32, 32, 3))
      >>> params = net.init(jax.random.key(0), x)["params"]
      >>> att = eat.eat_model(net, head="attributes")
      >>> xaijax.grad_cam(att, "block2")(params, x, jnp.array([5])).shape
      (1, 32, 32)
    """
    return _model.from_linen(net, head=head, score=score, **kw)
