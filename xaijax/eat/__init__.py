"""EAT: attribute multi-task training that concentrates attention, with textual explanations
and grounded attributes (Xu et al., "Where is the Model Looking At? - Concentrate and Explain
the Network Attention", IEEE JSTSP 2020).

Only the paper's abstract could be read, so every choice below is xaijax's (papers note,
section 5, ``[INFER]``), exposed as an option with a documented default:

* **Model**: :func:`eat_net` gives any zoo backbone a class head and an attribute head on the
  same pooled features (``heads="parallel"``, the default) or class scores computed from the
  attributes (``heads="from_attributes"``, APN-style). It returns ``{"class": [B, C],
  "attributes": [B, A]}``; :func:`eat_model` (``xaijax.from_linen(net, head=...)``) lets every
  xaijax explainer explain either head.
* **Loss**: :func:`eat_loss`: cross-entropy + λ x binary cross-entropy on image-level
  attributes (default, λ = 1), or + λ x MSE to the class-level attribute vectors.
* **Words**: :func:`relevance` ``r_j = σ(a_j) Φ_j(c)``; :func:`select_attributes` (top ``m``,
  counter-evidence; batched, jittable) and :func:`sentences` (host strings from a template).
* **Pictures**: :func:`attribute_grounding` (CAM on the attribute head, exact for a linear head
  on pooled features, or Grad-CAM of an attribute logit), :func:`ground_attributes` (several
  attributes per image), :func:`peaks`, :func:`peak_boxes`, :func:`grounding_hits`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xaijax import eat, models
    >>> phi = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    >>> net = eat.eat_net(models.get_model("vgg", 2, widths=(8, 16)), class_attribute=phi)
    >>> x = jnp.zeros((1, 32, 32, 3))
    >>> params = net.init(jax.random.key(0), x)["params"]
    >>> out = net.apply({"params": params}, x)
    >>> e = eat.select_attributes(out["attributes"], phi, jnp.array([0]), m=2, threshold=0.0)
    >>> len(eat.sentences(e, ["head_color::red", "tail_color::blue", "body_size::large"]))
    1
"""

from xaijax.eat._grounding import (
    METHODS,
    attribute_grounding,
    ground_attributes,
    grounding_hits,
    peak_boxes,
    peaks,
)
from xaijax.eat._heads import ATTRIBUTES, CLASS, HEADS, EATNet, eat_model, eat_net
from xaijax.eat._losses import SUPERVISION, ClassAttributeMSE, eat_loss
from xaijax.eat._text import (
    COUNTER_TEMPLATE,
    NONE_TEMPLATE,
    TEMPLATE,
    TextualExplanation,
    attribute_phrase,
    check_attribute_names,
    relevance,
    select_attributes,
    sentences,
    textual_precision,
)

__all__ = [
    "ATTRIBUTES",
    "CLASS",
    "COUNTER_TEMPLATE",
    "HEADS",
    "METHODS",
    "NONE_TEMPLATE",
    "SUPERVISION",
    "TEMPLATE",
    "ClassAttributeMSE",
    "EATNet",
    "TextualExplanation",
    "attribute_grounding",
    "attribute_phrase",
    "check_attribute_names",
    "eat_loss",
    "eat_model",
    "eat_net",
    "ground_attributes",
    "grounding_hits",
    "peak_boxes",
    "peaks",
    "relevance",
    "select_attributes",
    "sentences",
    "textual_precision",
]
