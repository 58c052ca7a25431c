"""The mask regularisers of the mask-optimisation family (pure array functions of one mask).

Mask convention: ``m = 1`` keeps a pixel, ``m = 0`` replaces it by the null image.
"""

from __future__ import annotations

import jax.numpy as jnp

from xaijax import _validation
from xaijax.typing import Array

REDUCTIONS = ("mean", "sum")


def _check_reduce(reduce: str) -> str:
    """``reduce`` is one of :data:`REDUCTIONS` (a named error, not a silent sum)."""
    return _validation.check_choice(reduce, "reduce", REDUCTIONS)


def _reduce(values: Array, reduce: str) -> Array:
    return jnp.mean(values) if reduce == "mean" else jnp.sum(values)


def l1_loss(mask: Array, *, reduce: str = "mean") -> Array:
    """``L1(m) = mean |1 - m|`` (or the sum): the area deleted.

    Args:
      mask: ``[H, W]`` mask (1 keep).
      reduce: ``"mean"`` (the Visual Summaries code) or ``"sum"`` (Fong & Vedaldi's code).

    Returns:
      A scalar.

    Raises:
      InvalidArgumentError: ``reduce`` not ``"mean"`` or ``"sum"``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(l1_loss(jnp.array([[1.0, 0.5], [0.0, 1.0]])))
      0.375
    """
    _check_reduce(reduce)
    return _reduce(jnp.abs(1.0 - mask), reduce)


def tv_loss(mask: Array, beta: float = 3.0, *, reduce: str = "mean") -> Array:
    """``TV_beta(m) = mean |m[i+1, j] - m[i, j]|^beta + mean |m[i, j+1] - m[i, j]|^beta``.

    The anisotropic total variation of the Visual Summaries code (``regularizers.py``: means
    over each difference image); ``reduce="sum"`` sums each difference image instead.

    Args:
      mask: ``[H, W]`` mask.
      beta: the exponent ``beta`` (3 in both papers' code).
      reduce: ``"mean"`` or ``"sum"``.

    Returns:
      A scalar.

    Raises:
      InvalidArgumentError: ``reduce`` not ``"mean"`` or ``"sum"``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(tv_loss(jnp.array([[0.0, 1.0], [0.0, 1.0]]), 3.0))
      1.0
    """
    _check_reduce(reduce)
    dy = jnp.abs(mask[1:, :] - mask[:-1, :]) ** beta
    dx = jnp.abs(mask[:, 1:] - mask[:, :-1]) ** beta
    return _reduce(dy, reduce) + _reduce(dx, reduce)


def lasso_loss(mask: Array, *, reduce: str = "mean") -> Array:
    """``LASSO(m) = mean |(1 - m) m|``: zero only on a binary mask (pushes ``m`` to 0 or 1).

    Args:
      mask: ``[H, W]`` mask.
      reduce: ``"mean"`` or ``"sum"``.

    Returns:
      A scalar.

    Raises:
      InvalidArgumentError: ``reduce`` not ``"mean"`` or ``"sum"``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(lasso_loss(jnp.array([[0.5, 1.0], [0.0, 1.0]])))
      0.0625
    """
    _check_reduce(reduce)
    return _reduce(jnp.abs((1.0 - mask) * mask), reduce)
