"""Receptive-field arithmetic (papers.md 1.7): RF size, jump and offset of every output location.

For a chain of layers with kernel ``k_l``, stride ``s_l`` and no padding, ``J_l = J_{l-1} s_l``
(``J_0 = 1``) and ``RF_l = RF_{l-1} + (k_l - 1) J_{l-1}`` (``RF_0 = 1``); output location ``i``
sees exactly the input interval ``[offset + i J, offset + i J + RF - 1]`` (inclusive), fully
inside the input. :func:`receptive_field` computes this from a layer list or by reading the
jaxpr of a function (the package's one jaxpr interpreter, :mod:`xaijax._jaxpr`), following
every path from the input to the output (residual additions take the union of the boxes), and
refuses padded convolutions and poolings with :class:`~xaijax.errors.PaddedLayerError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from xaijax import _jaxpr, errors


class ReceptiveField(NamedTuple):
    """The geometry of an output grid, one entry per spatial axis.

    Output location ``(i, j)`` sees the input box rows ``[offset[0] + i jump[0], offset[0] +
    i jump[0] + rf[0] - 1]`` and columns likewise (inclusive ends).

    Attributes:
      rf: receptive-field size per spatial axis (pixels or tokens).
      jump: distance in input elements between neighbouring output locations.
      offset: input coordinate of the first element of location 0's box.
      size: number of output locations per axis (``None`` when no input size was given).
      global_context: ``True`` when some location's value also depends on a global reduction
        of the whole input (Squeeze-Excitation): the box is then the local support only.
    """

    rf: tuple[int, ...]
    jump: tuple[int, ...]
    offset: tuple[int, ...]
    size: tuple[int, ...] | None = None
    global_context: bool = False


def from_layers(
    layers: Sequence[Sequence[int]], input_size: int | Sequence[int] | None = None
) -> ReceptiveField:
    """The receptive field of a chain of layers ``[(kernel, stride), ...]`` (1 spatial axis,
    or ``(kernel, stride, padding)`` where padding must be 0; kernels and strides may be tuples
    per axis)."""
    specs = [tuple(layer) for layer in layers]
    ndim = 1
    for spec in specs:
        for part in spec:
            if isinstance(part, tuple | list):
                ndim = max(ndim, len(part))
    if input_size is not None and isinstance(input_size, Sequence):
        ndim = max(ndim, len(input_size))

    def per_axis(value, what, idx):
        if isinstance(value, tuple | list):
            if len(value) != ndim:
                raise errors.InvalidArgumentError(
                    f"layer {idx}: `{what}` {value!r} has {len(value)} entries but the layers "
                    f"have {ndim} spatial axes: give one per axis or a single int."
                )
            return tuple(int(a) for a in value)
        return (int(value),) * ndim

    rf, jump, offset = [1] * ndim, [1] * ndim, [0] * ndim
    size = None if input_size is None else list(per_axis(input_size, "input_size", "-"))
    for idx, spec in enumerate(specs):
        if len(spec) not in (2, 3):
            raise errors.InvalidArgumentError(
                f"layer {idx} is {spec!r}: give `(kernel, stride)` or `(kernel, stride, padding)`."
            )
        k = per_axis(spec[0], "kernel", idx)
        s = per_axis(spec[1], "stride", idx)
        if min(k) < 1 or min(s) < 1:
            raise errors.InvalidArgumentError(
                f"layer {idx}: kernel {k} and stride {s} must be positive integers."
            )
        if len(spec) == 3 and any(int(p) != 0 for p in np.ravel(spec[2])):
            raise errors.PaddedLayerError(
                f"layer {idx} {spec!r} has padding {spec[2]!r}: a padded layer breaks the exact "
                "mapping from an output location to one input patch. Use padding 0 ('VALID')."
            )
        for a in range(ndim):
            rf[a] += (k[a] - 1) * jump[a]
            jump[a] *= s[a]
            if size is not None:
                size[a] = (size[a] - k[a]) // s[a] + 1
    if size is not None and min(size) < 1:
        raise errors.InputShapeError(
            f"An input of size {tuple(per_axis(input_size, 'input_size', '-'))} is smaller than "
            f"the receptive field {tuple(rf)}: no output location fits. Give inputs of at "
            "least the receptive field."
        )
    return ReceptiveField(
        tuple(rf), tuple(jump), tuple(offset), None if size is None else tuple(size), False
    )


# --- reading a jaxpr ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Geo:
    """Geometry of one traced value: which array axes are spatial and their RF per axis."""

    axes: tuple[int, ...]  # array axes carrying the input's spatial axes, in input order
    rf: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[int, ...]
    glob: bool = False

    def with_axes(self, axes) -> _Geo:
        return dataclasses.replace(self, axes=tuple(axes))


_GLOBAL = _Geo((), (), (), (), True)

_REDUCE = {
    "reduce_sum",
    "reduce_max",
    "reduce_min",
    "reduce_prod",
    "reduce_and",
    "reduce_or",
    "argmax",
    "argmin",
    "reduce_precision",
}
_WINDOW = {"reduce_window_sum", "reduce_window_max", "reduce_window_min", "reduce_window"}


def _where(step: _jaxpr.Step) -> str:
    return f"layer {step.name!r}" if step.name else f"a {step.primitive.name} step"


def _union(geos: list[_Geo], step: _jaxpr.Step) -> _Geo | None:
    spatial = [g for g in geos if g.axes]
    glob = any(g.glob for g in geos)
    if not spatial:
        return _GLOBAL if glob else None
    first = spatial[0]
    rf, jump, start = list(first.rf), list(first.jump), list(first.start)
    for g in spatial[1:]:
        if g.axes != first.axes or g.jump != first.jump:
            raise errors.UnsupportedPrimitiveError(
                f"{_where(step)} combines feature maps of different grids (axes {first.axes} "
                f"jump {first.jump} and axes {g.axes} jump {g.jump}): the receptive-field "
                "calculator needs every summed or multiplied map on the same grid."
            )
        for a in range(len(rf)):
            end = max(start[a] + rf[a], g.start[a] + g.rf[a])
            start[a] = min(start[a], g.start[a])
            rf[a] = end - start[a]
    return _Geo(first.axes, tuple(rf), tuple(jump), tuple(start), glob)


def _conv(step, geo: _Geo, rhs_shape) -> _Geo:
    p = step.params
    dn = p["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    pads = [tuple(int(a) for a in pair) for pair in p["padding"]]
    if any(pair != (0, 0) for pair in pads):
        raise errors.PaddedLayerError(
            f"The convolution in {_where(step)} has padding {pads}: a padded convolution "
            "breaks the exact mapping from an output location to one input patch. Build it "
            "with padding='VALID'."
        )
    if any(int(d) != 1 for d in p.get("lhs_dilation", ())):
        raise errors.UnsupportedPrimitiveError(
            f"The convolution in {_where(step)} is transposed (lhs_dilation "
            f"{p['lhs_dilation']}); the receptive-field calculator supports strided and dilated "
            "convolutions only."
        )
    in_spatial = tuple(lhs_spec[2:])
    if set(geo.axes) != set(in_spatial):
        raise errors.UnsupportedPrimitiveError(
            f"The convolution in {_where(step)} runs over axes {in_spatial} but the input's "
            f"spatial axes are at {geo.axes}."
        )
    rf, jump, start = list(geo.rf), list(geo.jump), list(geo.start)
    new_axes = list(geo.axes)
    for d, ax in enumerate(in_spatial):
        a = geo.axes.index(ax)
        k = int(rhs_shape[rhs_spec[2 + d]])
        dil = int(p["rhs_dilation"][d]) if p.get("rhs_dilation") else 1
        s = int(p["window_strides"][d])
        rf[a] += ((k - 1) * dil) * jump[a]
        jump[a] *= s
        new_axes[a] = int(out_spec[2 + d])
    return _Geo(tuple(new_axes), tuple(rf), tuple(jump), tuple(start), geo.glob)


def _window(step, geo: _Geo) -> _Geo:
    p = step.params
    pads = [tuple(int(a) for a in pair) for pair in p["padding"]]
    if any(pads[ax] != (0, 0) for ax in geo.axes):
        raise errors.PaddedLayerError(
            f"The pooling in {_where(step)} has padding {pads}: padding breaks the exact "
            "mapping from an output location to one input patch. Pool with padding='VALID'."
        )
    if any(int(d) != 1 for d in p.get("base_dilation", ())):
        raise errors.UnsupportedPrimitiveError(
            f"The pooling in {_where(step)} dilates its input (base_dilation)."
        )
    rf, jump = list(geo.rf), list(geo.jump)
    for a, ax in enumerate(geo.axes):
        k = int(p["window_dimensions"][ax])
        dil = int(p["window_dilation"][ax]) if p.get("window_dilation") else 1
        rf[a] += ((k - 1) * dil) * jump[a]
        jump[a] *= int(p["window_strides"][ax])
    return dataclasses.replace(geo, rf=tuple(rf), jump=tuple(jump))


def _reshape_axes(geo: _Geo, old: tuple[int, ...], new: tuple[int, ...], step) -> _Geo:
    axes = []
    for ax in geo.axes:
        before = int(np.prod(old[:ax]))
        found = [
            i for i in range(len(new)) if new[i] == old[ax] and int(np.prod(new[:i])) == before
        ]
        if not found:
            raise errors.UnsupportedPrimitiveError(
                f"{_where(step)} reshapes {old} to {new}, merging or splitting a spatial axis: "
                "the receptive-field calculator cannot follow the grid through it."
            )
        axes.append(found[0])
    return geo.with_axes(axes)


def _propagate(step: _jaxpr.Step, geos: list[_Geo | None], avals) -> list[_Geo | None]:
    name = step.primitive.name
    p = step.params
    nout = len(step.outputs)
    if all(g is None for g in geos):
        return [None] * nout
    in_shapes = [
        tuple(avals[i].shape) if not isinstance(i, _jaxpr.Literal) else np.shape(i.value)
        for i in step.inputs
    ]
    out_shape = tuple(avals[step.outputs[0]].shape)
    g0 = geos[0]
    if name == "conv_general_dilated":
        if g0 is None or not g0.axes:
            return [_union([g for g in geos if g is not None], step)]
        return [_conv(step, g0, in_shapes[1])]
    if name in _WINDOW:
        if g0 is None or not g0.axes:
            return [g0] * nout
        return [_window(step, g0)] * nout
    if name in _REDUCE:
        if g0 is None or not g0.axes:
            return [g0] * nout
        red = set(int(a) for a in p.get("axes", ()))
        if name in ("argmax", "argmin"):
            red = set(int(a) for a in p["axes"])
        if red & set(g0.axes):
            return [_GLOBAL] * nout
        axes = [a - sum(1 for r in red if r < a) for a in g0.axes]
        return [g0.with_axes(axes)] * nout
    if name == "broadcast_in_dim":
        if g0 is None or not g0.axes:
            return [g0]
        dims = p["broadcast_dimensions"]
        return [g0.with_axes(int(dims[a]) for a in g0.axes)]
    if name == "transpose":
        if g0 is None or not g0.axes:
            return [g0]
        perm = [int(a) for a in p["permutation"]]
        return [g0.with_axes(perm.index(a) for a in g0.axes)]
    if name in ("reshape", "squeeze", "expand_dims"):
        if g0 is None or not g0.axes:
            return [g0]
        return [_reshape_axes(g0, in_shapes[0], out_shape, step)]
    if name == "slice":
        if g0 is None or not g0.axes:
            return [g0]
        starts = p["start_indices"]
        strides = p["strides"] or (1,) * len(starts)
        start, jump = list(g0.start), list(g0.jump)
        for a, ax in enumerate(g0.axes):
            start[a] += int(starts[ax]) * jump[a]
            jump[a] *= int(strides[ax])
        return [dataclasses.replace(g0, start=tuple(start), jump=tuple(jump))]
    if name == "pad":
        if g0 is not None and g0.axes:
            cfg = p["padding_config"]
            if any(tuple(cfg[ax]) != (0, 0, 0) for ax in g0.axes):
                raise errors.PaddedLayerError(
                    f"{_where(step)} pads a feature map along its spatial axes ({cfg}): padding "
                    "breaks the exact mapping from an output location to one input patch."
                )
        return [_union([g for g in geos if g is not None], step)]
    if name == "dot_general":
        (lc, rc), (lb, rb) = p["dimension_numbers"]
        out = []
        for side, (g, _shape, contract, batch) in enumerate(
            [(geos[0], in_shapes[0], lc, lb), (geos[1], in_shapes[1], rc, rb)]
        ):
            if g is None:
                continue
            if not g.axes:
                out.append(g)
                continue
            if set(g.axes) & set(int(c) for c in contract):
                out.append(_GLOBAL)
                continue
            free_l = [a for a in range(len(in_shapes[0])) if a not in lc and a not in lb]
            free_r = [a for a in range(len(in_shapes[1])) if a not in rc and a not in rb]
            order = (
                [("b", i) for i in range(len(lb))]
                + [("l", a) for a in free_l]
                + [("r", a) for a in free_r]
            )
            batch = [int(b) for b in batch]
            tag = "l" if side == 0 else "r"
            axes = []
            for ax in g.axes:
                key = ("b", batch.index(ax)) if ax in batch else (tag, ax)
                axes.append(order.index(key))
            out.append(g.with_axes(axes))
        return [_union(out, step)]
    if name == "concatenate":
        dim = int(p["dimension"])
        if any(g is not None and dim in g.axes for g in geos):
            raise errors.UnsupportedPrimitiveError(
                f"{_where(step)} concatenates feature maps along a spatial axis."
            )
        return [_union([g for g in geos if g is not None], step)]
    # Anything else: elementwise (every traced operand has the output's shape).
    for g, shape in zip(geos, in_shapes, strict=True):
        if g is not None and g.axes and tuple(shape) != out_shape:
            raise errors.UnsupportedPrimitiveError(
                f"The receptive-field calculator has no rule for the primitive {name!r} in "
                f"{_where(step)} (operand {shape} -> output {out_shape})."
            )
    return [_union([g for g in geos if g is not None], step)] * nout


def receptive_field(
    model: Callable[..., Any] | Sequence[Sequence[int]],
    x: Any = None,
    params: Any = None,
    *,
    spatial_axes: Sequence[int] | None = None,
) -> ReceptiveField | tuple[ReceptiveField, ...]:
    """RF size, jump and offset per output location, from a layer list or a function's jaxpr.

    Args:
      model: either a layer list ``[(kernel, stride), ...]`` (or ``(kernel, stride, padding)``),
        or a function ``f(x)`` / ``f(params, x)`` returning a feature map ``[B, *spatial, K]``
        (or a tuple of them: one result each). The function is traced, not run.
      x: for a function: an example input (an array or ``jax.ShapeDtypeStruct``) ``[B,
        *spatial, C]``; for a layer list: optionally the input size (int or per axis), which
        fills ``size``.
      params: when given, the function is called as ``f(params, x)`` (abstract params work).
      spatial_axes: the spatial axes of ``x`` (default: all but the first and the last).

    Returns:
      A :class:`ReceptiveField` (a tuple of them when the function returns several maps).

    Raises:
      PaddedLayerError: a convolution, pooling or pad with non-zero padding on the path from
        ``x`` to the output (the message names the layer).
      InputShapeError: ``x`` smaller than the receptive field (layer list form).

    Example:
      >>> from xaijax import anchornet
      >>> anchornet.receptive_field([(3, 2)] * 3 + [(3, 1)] * 5, 224)  # the code's chain
      ReceptiveField(rf=(95,), jump=(8,), offset=(0,), size=(17,), global_context=False)

    References:
      papers.md 1.7; Araujo et al., "Computing receptive fields of convolutional neural
      networks", Distill 2019.
    """
    if not callable(model):
        return from_layers(model, x)
    if x is None:
        raise errors.InvalidArgumentError(
            "receptive_field(fn, x): give an example input `x` (an array or "
            "jax.ShapeDtypeStruct) to trace `fn` on."
        )
    xs = jax.ShapeDtypeStruct(np.shape(x), getattr(x, "dtype", np.float32))
    if params is None:
        closed = jax.make_jaxpr(model)(xs)
        x_index = 0
    else:
        closed = jax.make_jaxpr(model)(params, xs)
        x_index = len(jax.tree_util.tree_leaves(params))
    flat = _jaxpr.flatten(closed)
    ndim = len(xs.shape)
    axes = tuple(spatial_axes) if spatial_axes is not None else tuple(range(1, ndim - 1))
    if not axes:
        raise errors.InvalidArgumentError(
            f"`x` of shape {list(xs.shape)} has no spatial axes ([B, *spatial, C] expected): "
            "pass `spatial_axes`."
        )
    n = len(axes)
    geo: list[_Geo | None] = [None] * len(flat.avals)
    geo[flat.arg_ids[x_index]] = _Geo(axes, (1,) * n, (1,) * n, (0,) * n)
    for step in flat.steps:
        ins = [None if isinstance(i, _jaxpr.Literal) else geo[i] for i in step.inputs]
        for i, g in zip(step.outputs, _propagate(step, ins, flat.avals), strict=True):
            geo[i] = g
    results = []
    for out in flat.out_ids:
        g = None if isinstance(out, _jaxpr.Literal) else geo[out]
        if g is None or not g.axes:
            raise errors.InvalidArgumentError(
                "The function's output has no spatial axes left (it does not depend on `x`, or "
                "it pools them away): pass a function that returns the feature map "
                "[B, *spatial, K], not the logits."
            )
        shape = flat.avals[out].shape
        results.append(
            ReceptiveField(g.rf, g.jump, g.start, tuple(int(shape[a]) for a in g.axes), g.glob)
        )
    return results[0] if len(results) == 1 else tuple(results)
