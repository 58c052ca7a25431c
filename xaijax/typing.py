"""Type aliases shared across xaijax (in the spirit of ``optax._src.base`` and ``flax.typing``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PRNGKey = jax.Array
PyTree = Any
Params = Any

#: A model: ``apply_fn(params, x) -> logits`` on a batch, ``x: [B, ...]``, logits ``[B, C]``.
ApplyFn = Callable[[Params, Array], Array]


class Explainer(Protocol):
    """The explainer contract: ``explain(params, x, target=None, **kwargs) -> attributions``.

    ``x`` is a batch ``[B, ...]``; ``target`` is ``[B]`` ints or ``None`` (the predicted class);
    the result has ``x``'s shape unless the explainer documents a reduced shape. Stochastic
    explainers take a keyword-only ``key``.
    """

    def __call__(
        self, params: Params, x: ArrayLike, target: ArrayLike | None = None, **kwargs: Any
    ) -> Array: ...
