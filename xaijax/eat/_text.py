"""Attribute-based textual explanations: relevances on the device, sentences on the host."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import _validation, errors
from xaijax._validation import _shape_str
from xaijax.eat import _checks
from xaijax.typing import Array, ArrayLike

#: Default sentence templates (``{cls}``, ``{attrs}`` and ``{lacks}`` are filled in).
TEMPLATE = "This is {cls} because of its {attrs}."
COUNTER_TEMPLATE = ", although it lacks {lacks}"
NONE_TEMPLATE = "This is {cls}, but none of its characteristic attributes is visible."


class TextualExplanation(NamedTuple):
    """What a sentence says, as arrays (``m`` = attributes named, ``k`` = counter-evidence).

    Attributes:
      target: ``[B]`` int32, the class explained.
      indices: ``[B, m]`` int32 attributes by decreasing relevance (ties: lower index first).
      relevance: ``[B, m]`` their relevance ``σ(a_j) Φ_j(c)``.
      named: ``[B, m]`` bool, relevance >= ``threshold`` (only these enter the sentence).
      counter_indices: ``[B, k]`` int32 attributes characteristic of the class but predicted
        absent, by decreasing ``Φ_j(c) (1 - σ(a_j))``.
      counter_score: ``[B, k]`` those scores.
      counter_named: ``[B, k]`` bool, score >= ``threshold``.
    """

    target: Array
    indices: Array
    relevance: Array
    named: Array
    counter_indices: Array
    counter_score: Array
    counter_named: Array


def _check_logits_phi(attribute_logits, class_attribute, target):
    a = _validation.as_array(attribute_logits, "attribute_logits")
    if a.ndim != 2 or not jnp.issubdtype(a.dtype, jnp.floating):
        raise errors.InputShapeError(
            f"`attribute_logits` must be floats [B, A], got {a.dtype}{_shape_str(a.shape)}: pass "
            "the model's 'attributes' output."
        )
    phi_shape = tuple(np.shape(class_attribute))
    if len(phi_shape) != 2 or phi_shape[1] != a.shape[1] or phi_shape[0] < 1:
        raise errors.InputShapeError(
            f"`class_attribute` must be a [C, A] = [C, {a.shape[1]}] matrix (one column per "
            f"attribute logit), got shape {_shape_str(phi_shape)}: pass the class-attribute "
            "matrix of the model's attributes (e.g. `synthetic.class_attribute_matrix(config)`)."
        )
    phi = jnp.asarray(class_attribute)
    if not jnp.issubdtype(phi.dtype, jnp.floating):
        phi = phi.astype(a.dtype)
    # NaN/Inf: one boolean from the device each, only on concrete arrays (not under jit)
    _validation.check_finite(a, "attribute_logits")
    _validation.check_finite(phi, "class_attribute")
    t = _validation.check_target(target, a.shape[0])
    if t is None:
        raise errors.InvalidArgumentError(
            "`target` is required: the class each sentence explains ([B] ints, e.g. the "
            "predicted class `argmax(outputs['class'], -1)`)."
        )
    if _validation.is_concrete(t):
        _validation.check_target_in_range(t, phi_shape[0])
    return a, phi, t


@jax.jit
def _relevance(a: Array, phi: Array, t: Array) -> Array:
    return jax.nn.sigmoid(a) * phi.astype(a.dtype)[t]


def relevance(attribute_logits: ArrayLike, class_attribute: ArrayLike, target: ArrayLike) -> Array:
    """EAT's attribute relevance ``r_j = σ(a_j) · Φ_j(c)``: present in the image *and*
    characteristic of the class ``c``.

    Args:
      attribute_logits: ``[B, A]`` logits of the attribute head.
      class_attribute: Φ ``[C, A]``.
      target: ``[B]`` int class indices (usually the predicted class).

    Returns:
      ``[B, A]`` relevances, in ``[0, max Φ]``.

    Raises:
      InputShapeError: Φ not ``[C, A]`` with the logits' ``A``.
      TargetOutOfRangeError: a class index outside ``[0, C)``.
      NonFiniteInputError: NaN or Inf in the logits or Φ (concrete inputs only).

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import eat
      >>> eat.relevance(jnp.array([[0.0, 10.0]]), jnp.array([[1.0, 1.0], [0.0, 1.0]]),
      ...               jnp.array([0])).round(3).tolist()
      [[0.5, 1.0]]

    References:
      Xu et al., "Where is the Model Looking At?", IEEE JSTSP 2020 (the relevance rule is the
      xaijax papers note's ``[INFER]``).
    """
    a, phi, t = _check_logits_phi(attribute_logits, class_attribute, target)
    return _relevance(a, phi, t)


@functools.partial(jax.jit, static_argnames=("m", "k"))
def _select(a, phi, t, threshold, *, m: int, k: int) -> TextualExplanation:
    p = jax.nn.sigmoid(a)
    rows = phi.astype(a.dtype)[t]
    r = p * rows
    rel, idx = jax.lax.top_k(r, m)  # ties: the lower index first
    if k:
        lack = rows * (1.0 - p)
        cscore, cidx = jax.lax.top_k(lack, k)
    else:
        cscore = jnp.zeros((a.shape[0], 0), a.dtype)
        cidx = jnp.zeros((a.shape[0], 0), jnp.int32)
    thr = jnp.asarray(threshold, a.dtype)
    return TextualExplanation(
        target=t.astype(jnp.int32),
        indices=idx.astype(jnp.int32),
        relevance=rel,
        named=rel >= thr,
        counter_indices=cidx.astype(jnp.int32),
        counter_score=cscore,
        counter_named=cscore >= thr,
    )


def select_attributes(
    attribute_logits: ArrayLike,
    class_attribute: ArrayLike,
    target: ArrayLike,
    *,
    m: int = 3,
    counter: int = 0,
    threshold: float = 0.5,
) -> TextualExplanation:
    """The attributes a sentence names: the top ``m`` by relevance, batched on the device.

    An attribute is *named* when its relevance ``σ(a_j) Φ_j(c)`` is at least ``threshold``
    (default 0.5: predicted present and characteristic of the class); fewer than ``m`` may be
    named, none when no characteristic attribute is predicted present. ``m`` larger than the
    number of attributes ``A`` is clipped to ``A``. With ``counter = k > 0`` the ``k``
    attributes of highest ``Φ_j(c) (1 - σ(a_j))`` (characteristic but predicted absent) come
    as counter-evidence ("although it lacks ...").

    Jittable and vmappable (``m`` and ``counter`` are static); no value leaves the device.

    Args:
      attribute_logits: ``[B, A]`` logits of the attribute head.
      class_attribute: Φ ``[C, A]``.
      target: ``[B]`` int class indices.
      m: attributes per sentence (>= 1; papers note default 3).
      counter: counter-evidence attributes per sentence (0 = off).
      threshold: smallest relevance (and counter score) that is put into words.

    Returns:
      A :class:`TextualExplanation`; turn it into words with :func:`sentences`.

    Raises:
      InvalidArgumentError: ``m < 1``, ``counter < 0`` or a bad ``threshold``.
      InputShapeError: Φ not ``[C, A]``.
      NonFiniteInputError: NaN or Inf in the logits or Φ (concrete inputs only).

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import eat
      >>> e = eat.select_attributes(jnp.array([[5.0, -5.0, 5.0]]), jnp.ones((1, 3)),
      ...                           jnp.array([0]), m=2, counter=1)
      >>> e.indices.tolist(), e.named.tolist(), e.counter_indices.tolist()
      ([[0, 2]], [[True, True]], [[1]])
    """
    m = _checks.m_value(m)
    if isinstance(counter, bool) or not isinstance(counter, int | np.integer) or counter < 0:
        raise errors.InvalidArgumentError(
            f"`counter` must be an integer >= 0 (counter-evidence attributes per sentence; 0 = "
            f"off), got {counter!r}."
        )
    threshold = _validation.check_number(threshold, "threshold")
    a, phi, t = _check_logits_phi(attribute_logits, class_attribute, target)
    num = a.shape[1]
    return _select(a, phi, t, threshold, m=min(m, num), k=min(int(counter), num))


def attribute_phrase(name: str) -> str:
    """A readable phrase for an attribute name: ``"head_color::red"`` -> ``"red head"``.

    Names of the form ``"<part>_<factor>::<value>"`` (the benchmark's, CUB's) become
    ``"<value> <part>"`` (``"disc-shaped head"`` for a shape); other names are returned with
    underscores as spaces.

    Example:
      >>> attribute_phrase("wings_shape::disc"), attribute_phrase("body_texture::striped")
      ('disc-shaped wings', 'striped body')
    """
    if "::" not in name:
        return name.replace("_", " ")
    left, value = name.split("::", 1)
    part, _, factor = left.rpartition("_")
    if not part:
        part, factor = left, ""
    value = value.replace("_", " ")
    part = part.replace("_", " ")
    if factor == "shape":
        return f"{value}-shaped {part}"
    return f"{value} {part}"


def _join(words: Sequence[str]) -> str:
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def sentences(
    explanation: TextualExplanation,
    attribute_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    *,
    template: str = TEMPLATE,
    counter_template: str = COUNTER_TEMPLATE,
    none_template: str = NONE_TEMPLATE,
    phrase: Callable[[str], str] = attribute_phrase,
) -> list[str]:
    """Sentences from a :class:`TextualExplanation`, built on the host (one per example).

    ``"This is class 3 because of its red head, striped body and large tail, although it lacks
    blue wings."``: the named attributes in order of relevance, then (when ``counter > 0`` was
    asked and some counter-evidence reaches the threshold) what is missing. When no attribute is
    named, ``none_template`` is used.

    Args:
      explanation: from :func:`select_attributes`.
      attribute_names: one name per attribute column (the benchmark's
        ``xaijax.data.synthetic.ATTRIBUTE_NAMES``).
      class_names: one name per class, or ``None`` for ``"class <c>"``.
      template: with ``{cls}`` and ``{attrs}``; the final period is moved after the
        counter-evidence.
      counter_template: with ``{lacks}``.
      none_template: with ``{cls}``.
      phrase: turns an attribute name into words (default :func:`attribute_phrase`).

    Returns:
      A list of ``B`` strings.

    Raises:
      InvalidArgumentError: ``attribute_names`` not one per attribute, an index outside them.

    Example:
      >>> import jax.numpy as jnp
      >>> from xaijax import eat
      >>> e = eat.select_attributes(jnp.array([[5.0, -5.0]]), jnp.ones((1, 2)), jnp.array([0]),
      ...                           counter=1)
      >>> eat.sentences(e, ["head_color::red", "tail_size::large"])
      ['This is class 0 because of its red head, although it lacks large tail.']
    """
    e = jax.device_get(explanation)
    idx = np.asarray(e.indices)
    if idx.ndim != 2:
        raise errors.InputShapeError(
            f"`explanation.indices` must be [B, m], got {_shape_str(idx.shape)}: pass what "
            "`select_attributes` returned."
        )
    top = max(int(idx.max(initial=-1)), int(np.asarray(e.counter_indices).max(initial=-1)))
    names = tuple(attribute_names)
    if top >= len(names):
        _checks.attribute_names(names, top + 1)  # raises: too few names
    out = []
    for b in range(idx.shape[0]):
        c = int(e.target[b])
        cls = class_names[c] if class_names is not None else f"class {c}"
        said = [phrase(names[j]) for j, ok in zip(idx[b], e.named[b], strict=True) if ok]
        lacks = [
            phrase(names[j])
            for j, ok in zip(e.counter_indices[b], e.counter_named[b], strict=True)
            if ok
        ]
        if not said:
            text = none_template.format(cls=cls)
        else:
            text = template.format(cls=cls, attrs=_join(said))
        if lacks:
            body = text[:-1] if text.endswith(".") else text
            text = body + counter_template.format(lacks=_join(lacks)) + "."
        out.append(text)
    return out


def check_attribute_names(attribute_names: Sequence[str], class_attribute: ArrayLike) -> tuple:
    """Checks one name per column of Φ ``[C, A]``; returns the names as a tuple.

    Raises:
      InvalidArgumentError: a different number of names than attribute columns.
      InputShapeError: Φ not 2-D.
    """
    phi = _checks.class_attribute(class_attribute)
    return _checks.attribute_names(attribute_names, phi.shape[1])


def textual_precision(
    explanation: TextualExplanation, attributes: ArrayLike
) -> tuple[Array, Array]:
    """Share of the named attributes that are true for the image (per example).

    Args:
      explanation: from :func:`select_attributes`.
      attributes: ``[B, A]`` ground-truth 0/1 attributes of the images.

    Returns:
      ``(correct [B], named [B])`` counts as float32; the precision of a set of examples is
      ``correct.sum() / named.sum()``.
    """
    gt = jnp.asarray(attributes)
    hit = jnp.take_along_axis(gt, explanation.indices, axis=1) > 0
    named = explanation.named
    return (
        jnp.sum(hit & named, axis=1).astype(jnp.float32),
        jnp.sum(named, axis=1).astype(jnp.float32),
    )
