"""Static bounds on the number of discriminative neurons of every value, for the backward walk."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from xaijax.fixations import _masks as mk
from xaijax.fixations._registry import _BUILTIN, _USER, Equation

# Rules that send each discriminative output to at most one operand element in total.
_PARTITION = frozenset(
    {"concatenate", "select_n", "dynamic_update_slice", "clamp", "max", "min", "split"}
)


def input_bounds(eqn: Equation, out_bounds: Sequence[int]) -> tuple[list[int], int]:
    """Static bounds for the backward walk: per operand, how many True entries its mask can
    hold, and how much the total over the walk's frontier can grow.

    Most built-in rules send every discriminative output neuron to at most one neuron of one
    operand (convolutions, max pooling, arg-max reductions, residual junctions, concatenation,
    index bookkeeping), so the number of neurons on the frontier of the walk cannot grow and a
    residual or dense block does not double it; the "every positive input" rules and rules
    that follow several operands can grow it. Registered rules are assumed unbounded.

    Returns:
      ``(bounds, growth)``: per-operand bounds (operand sizes at most) and the increase of the
      frontier total.
    """
    b = int(sum(out_bounds))
    sizes = [mk.numel(jnp.shape(v)) for v in eqn.in_values]
    dep = eqn.dependent
    name = eqn.primitive
    if name in _USER or name not in _BUILTIN:
        return list(sizes), sum(n for n, d in zip(sizes, dep, strict=True) if d)
    per = [b] * len(sizes)
    factor, absolute = 1, 0
    both = dep[0] and len(dep) > 1 and dep[1]
    if name == "dot_general":
        argmax = eqn.options.dense_volume == "argmax"
        factor = 0
        for i, (f, n, d) in enumerate(zip(eqn.flattened, sizes, dep, strict=True)):
            if d and argmax and f:
                factor += 1
            elif d:
                per[i] = n
                absolute += n
    elif name in ("reduce_window_sum", "reduce_sum") and eqn.options.sum_pool == "positive":
        x = jnp.shape(eqn.in_values[0])
        if name == "reduce_sum":
            factor = mk.numel([x[a] for a in eqn.params["axes"]])
        else:
            factor = mk.numel(eqn.params["window_dimensions"])
        per[0] = b * factor
    elif name == "gather":
        vec = int(jnp.shape(eqn.in_values[1])[-1] or 1)
        per[1] = b * vec
        factor = int(dep[0]) + vec * int(dep[1])
    elif name in ("add", "sub", "add_any"):
        stat_routed = eqn.statistic[0] != eqn.statistic[1]
        factor = 2 if (both and not stat_routed and eqn.options.residual == "both") else 1
    elif name in ("mul", "div"):
        factor = 2 if (both and eqn.statistic[0] == eqn.statistic[1]) else 1
    elif name in _PARTITION or name in ("conv_general_dilated",):
        factor = 1
    else:  # elementwise: every dependent operand gets the whole set
        factor = max(1, sum(dep))
    growth = absolute + max(0, factor - 1) * b
    return [min(p, n) for p, n in zip(per, sizes, strict=True)], growth
