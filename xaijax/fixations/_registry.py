"""The rule registry of CNN Fixations: options, what a rule sees, and which rule runs.

A rule sees one equation of the traced model (its operand and output values for one example)
and boolean masks over its outputs (the discriminative neurons found so far), and returns a
boolean mask per operand: the neurons of that operand that drove the masked outputs, or ``None``
for an operand it does not follow (weights, biases, indices, statistics). Rules are pure
``jax.numpy`` code on fixed-size masks, so the whole walk is jittable and vmappable.

Inside the walker, the built-in rules also take and give masks as
:class:`~xaijax.fixations._masks.Points` (:func:`walk_rule`); :func:`lookup` and registered
rules see boolean arrays only.

The rules follow the authors' code (``val-iisc/cnn-fixations``, ``demo/layers.py``) as specified
in ``shared/papers.md`` section 6(b); the options of :class:`Options` choose between the authors'
behaviour and the PyTorch port's where the two disagree (section 6(f)). The built-in rules live
in ``_rules_elementwise`` (activations, arithmetic, residual junctions), ``_rules_shape`` (index
bookkeeping), ``_rules_pool`` (pooling and reductions), ``_rules_dot`` (dense layers) and
``_rules_conv`` (convolutions); ``_rules`` imports them all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from xaijax import errors
from xaijax.fixations._masks import Mask, dense
from xaijax.typing import Array

CONV_POSITIONS = ("official", "center", "argmax_contribution", "argmax_activation")
DENSE_VOLUME = ("argmax", "positive")
SUM_POOL = ("argmax", "positive")
RESIDUAL = ("larger", "both")


class Options(NamedTuple):
    """The rule variants (``shared/papers.md`` 6(f)).

    Attributes:
      conv_position: where a convolution rule lands inside the window once the input channel
        ``c*`` of largest summed contribution is chosen. ``"official"`` (the authors' code):
        ``(c*, S*y, S*x)``, the window's top-left corner in padded coordinates read as an input
        position: the window centre for symmetric "same" padding, its corner without padding
        (clipped into the input); except for a convolution inside a residual branch (between
        the fork and the ``add`` of a residual junction), where the authors' ResNet code
        (``papers.md`` 6(b).6, 6(f).4) moves to the largest *activation* of channel ``c*`` in
        the window, as ``"argmax_activation"`` does. ``"center"``: the window centre in input
        coordinates; ``"argmax_contribution"`` (PyTorch port): the position of largest
        contribution ``x * w`` inside the window (padding excluded), in channel ``c*``;
        ``"argmax_activation"``: the position of largest activation ``x`` inside the window
        (padding excluded), in channel ``c*``, for every convolution.
      dense_volume: a dense layer applied to a flattened spatial volume keeps, per discriminative
        output, the single position of largest contribution (``"argmax"``, authors) or every
        position of positive contribution (``"positive"``, PyTorch port). On a plain vector the
        rule is always "every positive contribution".
      sum_pool: average and global average pooling (and any sum over axes) keep the largest
        input of the window, as max pooling does (``"argmax"``, authors), or every positive input
        (``"positive"``).
      residual: at ``add`` of two input-dependent branches (a residual junction) each point
        follows the branch with the larger value (``"larger"``, authors), or both (``"both"``).
    """

    conv_position: str = "official"
    dense_volume: str = "argmax"
    sum_pool: str = "argmax"
    residual: str = "larger"


VARIANTS: dict[str, Options] = {
    "official": Options(),
    "pytorch": Options(conv_position="argmax_contribution", dense_volume="positive"),
}


class Equation(NamedTuple):
    """What a rule sees of one equation, for a single example.

    Attributes:
      primitive: the primitive's name (``"conv_general_dilated"``).
      params: the primitive's parameters, as in the jaxpr.
      in_values: the operand values (the model's batch axis, of size 1, included).
      out_values: the output values.
      dependent: per operand, whether it depends on the explained input (only those can
        receive a mask; parameters and constants never do).
      statistic: per operand, whether it is a broadcast statistic of the input (layer-norm mean
        and variance, squeeze-excitation gates) rather than a feature map.
      flattened: per operand, whether it is a spatial volume flattened for a dense layer.
      options: the rule variants.
      out_bounds: per output, a static upper bound on the number of True entries of its mask
        (``None``: unknown). Convolution and pooling rules use it to work on a compact list of
        the discriminative neurons instead of the dense mask.
      residual_branch: whether the equation lies inside a residual branch (its output feeds
        one operand of a residual junction but not the other); the authors' ResNet rule moves
        the convolutions there to the largest activation (``conv_position="official"``).
    """

    primitive: str
    params: dict[str, Any]
    in_values: tuple[Array, ...]
    out_values: tuple[Array, ...]
    dependent: tuple[bool, ...]
    statistic: tuple[bool, ...]
    flattened: tuple[bool, ...]
    options: Options
    out_bounds: tuple[int, ...] | None = None
    residual_branch: bool = False


#: A rule: ``rule(eqn, out_masks) -> one mask (bool, operand's shape) or None per operand``.
Rule = Callable[[Equation, tuple[Array, ...]], Sequence[Array | None]]

_BUILTIN: dict[str, Rule] = {}
_USER: dict[str, Rule] = {}
# Built-in rules that also take and may return masks as Points (see walk_rule).
_POINTS: dict[str, Rule] = {}


def register_rule(primitive: Any, rule: Rule) -> None:
    """Registers (or replaces) the backtracking rule of a primitive.

    The rule is called during the backward walk, once per equation of that primitive whose
    outputs hold discriminative neurons, as ``rule(eqn, out_masks)``:

    * ``eqn`` is an :class:`Equation` with the operand and output values for one example,
      which operands depend on the input, the primitive's parameters and the rule options;
    * ``out_masks`` holds one boolean mask per output, of the output's shape;
    * it returns one entry per operand: a boolean mask of the operand's shape (the operand
      neurons that drove the masked outputs), or ``None`` to follow nothing into it.

    It must be pure ``jax.numpy`` code (it runs under ``jit`` and ``vmap``). A registered rule
    takes precedence over the built-in one for the same primitive.

    Args:
      primitive: a ``jax.extend.core.Primitive`` or its name.
      rule: the rule.

    Raises:
      InvalidArgumentError: ``primitive`` is neither a primitive nor a string, or ``rule`` is not
        callable.

    Example:
      >>> import jax
      >>> from xaijax import fixations
      >>> def pass_through(eqn, out_masks):  # for a custom elementwise primitive
      ...     return [out_masks[0] if d else None for d in eqn.dependent]
      >>> fixations.register_rule("my_activation", pass_through)
    """
    name = primitive if isinstance(primitive, str) else getattr(primitive, "name", None)
    if not isinstance(name, str) or not name:
        raise errors.InvalidArgumentError(
            f"`primitive` must be a jax Primitive or its name, got {primitive!r}."
        )
    if not callable(rule):
        raise errors.InvalidArgumentError(
            f"`rule` must be callable as rule(eqn, out_masks), got {type(rule).__name__}."
        )
    _USER[name] = rule


def lookup(name: str) -> Rule:
    """The rule of primitive ``name``; raises :class:`UnsupportedPrimitiveError` when none."""
    rule = _USER.get(name) or _BUILTIN.get(name)
    if rule is None:
        raise errors.UnsupportedPrimitiveError(
            f"CNN Fixations has no backtracking rule for the primitive `{name}`, which lies on "
            "the path from the logits to the input. Register one with "
            f"`xaijax.fixations.register_rule({name!r}, rule)` (see its docstring), or explain a "
            "model that avoids it."
        )
    return rule


def walk_rule(name: str) -> Rule:
    """The rule the walker calls for primitive ``name``: the built-in rule working on masks given
    as arrays or :class:`Points` where it has one (and no rule was registered for ``name``),
    else the rule of :func:`lookup` with every mask made dense first."""
    if name not in _USER and name in _POINTS:
        return _POINTS[name]
    rule = lookup(name)

    def on_dense(eqn: Equation, out_masks: tuple[Mask, ...]) -> Sequence[Array | None]:
        return rule(eqn, tuple(dense(m) for m in out_masks))

    return on_dense


def supported_primitives() -> tuple[str, ...]:
    """Names of the primitives that have a rule (built-in or registered), sorted."""
    return tuple(sorted(set(_BUILTIN) | set(_USER)))


def _register(*names: str):
    def deco(fn: Rule) -> Rule:
        for n in names:
            _BUILTIN[n] = fn
        return fn

    return deco


def _register_points(*names: str):
    """Registers a rule that takes masks as arrays or :class:`Points` and may return Points:
    the walker calls it as it is (:func:`walk_rule`), :func:`lookup` gives it with array
    masks out."""

    def deco(fn: Rule) -> Rule:
        @functools.wraps(fn)
        def on_arrays(eqn: Equation, out_masks: tuple[Array, ...]) -> list[Array | None]:
            return [None if m is None else dense(m) for m in fn(eqn, out_masks)]

        for n in names:
            _POINTS[n] = fn
            _BUILTIN[n] = on_arrays
        return on_arrays

    return deco
