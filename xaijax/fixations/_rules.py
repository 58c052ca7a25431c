"""Backtracking rules of CNN Fixations: the registry and every built-in rule, by kind.

* :mod:`~xaijax.fixations._registry`: :class:`Options`, :class:`Equation`, :func:`register_rule`,
  :func:`lookup`, :func:`walk_rule`;
* :mod:`~xaijax.fixations._masks`: masks as boolean arrays or :class:`Points`;
* the rules: ``_rules_elementwise``, ``_rules_shape``, ``_rules_pool``, ``_rules_dot``,
  ``_rules_conv`` (each registers its rules when imported, which this module does);
* :mod:`~xaijax.fixations._bounds`: static bounds on the number of discriminative neurons.
"""

from xaijax.fixations import (  # noqa: F401  (imported to register the built-in rules)
    _rules_conv,
    _rules_dot,
    _rules_elementwise,
    _rules_pool,
    _rules_shape,
)
from xaijax.fixations._bounds import input_bounds
from xaijax.fixations._masks import Mask, Points, dense, merge, numel
from xaijax.fixations._registry import (
    _BUILTIN,
    _USER,
    CONV_POSITIONS,
    DENSE_VOLUME,
    RESIDUAL,
    SUM_POOL,
    VARIANTS,
    Equation,
    Options,
    Rule,
    lookup,
    register_rule,
    supported_primitives,
    walk_rule,
)

__all__ = [
    "CONV_POSITIONS",
    "DENSE_VOLUME",
    "RESIDUAL",
    "SUM_POOL",
    "VARIANTS",
    "_BUILTIN",
    "_USER",
    "Equation",
    "Mask",
    "Options",
    "Points",
    "Rule",
    "dense",
    "input_bounds",
    "lookup",
    "merge",
    "numel",
    "register_rule",
    "supported_primitives",
    "walk_rule",
]
