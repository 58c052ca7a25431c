"""The methods ``xaijax explain`` runs: a table of the library's explainer factories.

Each :class:`Method` names the library factories whose keyword arguments are its options. The
options, their defaults and their types are read from those signatures
(``inspect.signature``), so ``--help``, ``--list-methods`` and the validation of
``-o name=value`` follow the library without a hand-written list; :attr:`Method.defaults`
holds the few command-line defaults that differ from the library's (each with its reason).

The superpixel and surrogate methods (``gws``, ``lime``, ``kernel_shap``) take their segment
map per call; here each example is segmented on the device by
:func:`xaijax.segmentation.slic` inside the explainer (:func:`segmented`), so they run on any
image or video source, and the store keeps the segment map beside the scores. On token ids
``[B, L]`` LIME and KernelSHAP use the token positions as segments (no SLIC).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import textwrap
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp

import xaijax
from xaijax import errors, segmentation, superpixels, surrogates
from xaijax._explainer import Explainer, as_explainer, options

#: An option without a default (the method cannot run without it).
REQUIRED = inspect.Parameter.empty

#: Parameters the command line fills itself, never options.
_FILLED = ("model", "explainer")


class Context(NamedTuple):
    """What a method may need to know of the model and the data when it is built.

    Attributes:
      cam_layer: the zoo model's last spatial layer (``grad_cam``/``cam`` default), or None.
      integer_inputs: whether the inputs are integer token ids ``[B, L]``.
      input_shape: the shape of one example (no batch axis).
    """

    cam_layer: str | None = None
    integer_inputs: bool = False
    input_shape: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Option:
    """One ``-o name=value`` of a method: read off ``source``'s signature."""

    name: str
    default: Any
    annotation: str
    source: str
    note: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        value = "REQUIRED" if self.required else repr(self.default)
        kind = f" ({self.annotation})" if self.annotation else ""
        note = f" [{self.note}]" if self.note else ""
        return f"{self.name}={value}{kind}{note}"


@dataclasses.dataclass(frozen=True)
class Method:
    """A method of the command line.

    Attributes:
      name: what ``--method`` takes.
      expr: the library call it makes, for ``--help``.
      factories: the functions whose keyword parameters are the options (in order; a name
        taken by several of them is one option given to each).
      build: ``build(model, options, context) -> Explainer``; ``options`` holds every option,
        defaults filled in.
      defaults: ``name -> (value, why)``: command-line defaults replacing the library's.
    """

    name: str
    expr: str
    factories: tuple[Callable, ...]
    build: Callable[[Any, dict, Context], Explainer] = dataclasses.field(repr=False)
    defaults: Mapping[str, tuple[Any, str]] = dataclasses.field(default_factory=dict)

    @property
    def summary(self) -> str:
        """The first line of the main factory's docstring."""
        doc = inspect.getdoc(self.factories[0])
        return doc.strip().splitlines()[0].replace("``", "`") if doc else ""

    def options(self) -> tuple[Option, ...]:
        """The options, from the factories' signatures (and :attr:`defaults`)."""
        found: dict[str, Option] = {}
        for fn in self.factories:
            source = f"{getattr(fn, '__module__', '')}.{fn.__name__}"
            for p in inspect.signature(fn).parameters.values():
                if p.name in _FILLED or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                if p.name in found:  # shared: keep the first declaration
                    continue
                default, note = p.default, ""
                if p.name in self.defaults:
                    default, note = self.defaults[p.name]
                annotation = "" if p.annotation is p.empty else str(p.annotation)
                found[p.name] = Option(p.name, default, annotation, source, note)
        return tuple(found.values())


def _pick(fn: Callable, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that ``fn`` takes as parameters."""
    names = inspect.signature(fn).parameters
    return {k: v for k, v in values.items() if k in names and k not in _FILLED}


# --- segmented explainers ------------------------------------------------------------------


def segmented(
    inner: Explainer, segment: Callable | None, segmenter_options: Mapping[str, Any]
) -> Explainer:
    """``inner`` (an explainer taking ``segments=`` per call) with its segment map computed from
    ``x`` by ``segment`` (e.g. :func:`xaijax.segmentation.slic`), inside the explainer.

    The segments are computed in the explainer's boundary checks (then checked by ``inner``'s
    own) and passed on to ``run``, which returns a dict of ``inner``'s result fields plus
    ``"segments"`` (``[B, *spatial]`` int32), so a store keeps the map its scores refer to.
    With ``segment=None`` (token ids) ``inner`` picks its default segments.
    """
    inner = as_explainer(inner, "segmented")

    def check(params, x, target, kwargs):
        kwargs = dict(kwargs)
        integer = jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer)
        if kwargs.get("segments") is None and segment is not None and not integer:
            kwargs["segments"] = segment(x)
        if inner.check is not None:
            x, target, kwargs = inner.check(params, x, target, kwargs)
        return x, target, kwargs

    def run(params, x, target=None, *, segments, **kwargs):
        out = inner.run(params, x, target, segments=segments, **kwargs)
        fields = out._asdict() if hasattr(out, "_asdict") else {inner.result: out}
        return {**fields, "segments": segments}

    return Explainer(
        name=inner.name,
        model=inner.model,
        run=run,
        result=inner.result,
        options=options(segmenter="slic" if segment is not None else None, **segmenter_options),
        inner=inner,
        stochastic=inner.stochastic,
        integer_inputs=inner.integer_inputs,
        min_rank=inner.min_rank,
        check=check,
    )


def _segments_bound(values: dict, ctx: Context) -> int:
    """``num_segments``: as given, else the token count (token ids), else SLIC's bound."""
    if values.get("num_segments") is not None:
        return values["num_segments"]
    if ctx.integer_inputs:
        return int(ctx.input_shape[0])
    return 2 * values["approx_segments"]


def _slic(values: dict, ctx: Context, num: int):
    if ctx.integer_inputs:
        return None, {}
    seg_options = {**_pick(segmentation.slic, values), "num_segments": num}
    return segmentation.slic(**seg_options), seg_options


def _pixel_method(*, pixel: str = "gradient") -> None:
    """The pixel explainer GWS pools (a method of this table whose result is a map, built with
    its default options): gradient (GWS's mean gradient), gradient_x_input, guided_backprop,
    integrated_gradients, smoothgrad or occlusion."""


_PIXEL_METHODS = (
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "integrated_gradients",
    "smoothgrad",
    "occlusion",
)


def _build_gws(model, o: dict, ctx: Context) -> Explainer:
    if o["pixel"] not in _PIXEL_METHODS:
        raise errors.InvalidArgumentError(
            f"gws: `pixel`={o['pixel']!r} is not a pixel method; choose one of "
            f"{list(_PIXEL_METHODS)}."
        )
    num = _segments_bound(o, ctx)
    pixel = METHODS[o["pixel"]]
    inner_explainer = pixel.build(model, resolve(pixel, {}), ctx)
    inner = superpixels.gws(
        inner_explainer, o["reduce"], num_segments=num, channel_reduce=o["channel_reduce"]
    )
    segment, seg_options = _slic(o, ctx, num)
    return segmented(inner, segment, seg_options)


def _build_surrogate(factory: Callable) -> Callable[[Any, dict, Context], Explainer]:
    def build(model, o: dict, ctx: Context) -> Explainer:
        num = _segments_bound(o, ctx)
        kw = {**_pick(factory, o), "num_segments": num}
        if ctx.integer_inputs and kw.get("fill") == "mean":
            kw["fill"] = 0  # the pad id of the zoo's text data; "mean" has no meaning for ids
        segment, seg_options = _slic(o, ctx, num)
        return segmented(factory(model, **kw), segment, seg_options)

    return build


def _build_class_map(factory: Callable) -> Callable[[Any, dict, Context], Explainer]:
    def build(model, o: dict, ctx: Context) -> Explainer:
        layer = o["layer"] if o["layer"] is not None else ctx.cam_layer
        if layer is None:
            raise errors.InvalidArgumentError(
                f"{factory.__name__} needs the layer to explain: pass `-o layer=NAME` (a "
                "convolutional layer of the model; only zoo models have a default, their "
                "cam_layer)."
            )
        return factory(model, layer, **{k: v for k, v in o.items() if k != "layer"})

    return build


_SEGMENTS_NOTE = "None: 2 * approx_segments (SLIC's bound), or L for token ids"
_FILL_NOTE = "0 (the pad id) for token ids"
_LAYER_NOTE = "None: the zoo model's cam_layer; other models must name one"

#: Every method of the command line, by ``--method`` name.
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "gradient",
            "xaijax.gradient(model)",
            (xaijax.gradient,),
            lambda m, o, c: xaijax.gradient(m),
        ),
        Method(
            "gradient_x_input",
            "xaijax.gradient_x_input(model)",
            (xaijax.gradient_x_input,),
            lambda m, o, c: xaijax.gradient_x_input(m),
        ),
        Method(
            "integrated_gradients",
            "xaijax.integrated_gradients(model, **options)",
            (xaijax.integrated_gradients,),
            lambda m, o, c: xaijax.integrated_gradients(m, **o),
        ),
        Method(
            "smoothgrad",
            "xaijax.smooth(xaijax.gradient(model), **options)",
            (xaijax.smooth,),
            lambda m, o, c: xaijax.smooth(xaijax.gradient(m), **o),
        ),
        Method(
            "guided_backprop",
            "xaijax.guided_backprop(model)",
            (xaijax.guided_backprop,),
            lambda m, o, c: xaijax.guided_backprop(m),
        ),
        Method(
            "grad_cam",
            "xaijax.grad_cam(model, layer, **options)",
            (xaijax.grad_cam,),
            _build_class_map(xaijax.grad_cam),
            {"layer": (None, _LAYER_NOTE)},
        ),
        Method(
            "cam",
            "xaijax.cam(model, layer, **options)",
            (xaijax.cam,),
            _build_class_map(xaijax.cam),
            {"layer": (None, _LAYER_NOTE)},
        ),
        Method(
            "occlusion",
            "xaijax.occlusion(model, **options)",
            (xaijax.occlusion,),
            lambda m, o, c: xaijax.occlusion(m, **o),
        ),
        Method(
            "rise",
            "xaijax.rise(model, **options)",
            (xaijax.rise,),
            lambda m, o, c: xaijax.rise(m, **o),
        ),
        Method(
            "gws",
            "xaijax.superpixels.gws(<pixel method>(model), reduce, ...) over "
            "xaijax.segmentation.slic(...) segments",
            (superpixels.gws, _pixel_method, segmentation.slic),
            _build_gws,
            {"num_segments": (None, _SEGMENTS_NOTE)},
        ),
        Method(
            "lime",
            "xaijax.surrogates.lime(model, ...) over xaijax.segmentation.slic(...) segments",
            (surrogates.lime, segmentation.slic),
            _build_surrogate(surrogates.lime),
            {"num_segments": (None, _SEGMENTS_NOTE), "fill": ("mean", _FILL_NOTE)},
        ),
        Method(
            "kernel_shap",
            "xaijax.surrogates.kernel_shap(model, ...) over xaijax.segmentation.slic(...) segments",
            (surrogates.kernel_shap, segmentation.slic),
            _build_surrogate(surrogates.kernel_shap),
            {"num_segments": (None, _SEGMENTS_NOTE), "fill": ("mean", _FILL_NOTE)},
        ),
    )
}


def get(name: str) -> Method:
    """The method ``name``, or :class:`InvalidArgumentError` naming the valid ones."""
    if name not in METHODS:
        raise errors.InvalidArgumentError(
            f"unknown method {name!r}; choose one of {', '.join(METHODS)} "
            "(`xaijax explain --list-methods` shows their options)"
        )
    return METHODS[name]


def resolve(method: Method, given: Mapping[str, Any]) -> dict:
    """Every option of ``method``: those ``given``, the defaults for the rest.

    Raises:
      InvalidArgumentError: an option ``method`` does not take (the message lists those it
        takes), or a required option missing.
    """
    opts = {o.name: o for o in method.options()}
    unknown = sorted(set(given) - set(opts))
    if unknown:
        takes = ", ".join(opts) if opts else "no options"
        raise errors.InvalidArgumentError(
            f"unknown option(s) {', '.join(unknown)} for method {method.name!r}; it takes {takes}"
        )
    values = {}
    for name, o in opts.items():
        if name in given:
            values[name] = given[name]
        elif o.required:
            raise errors.InvalidArgumentError(
                f"method {method.name!r} needs option {name!r}; pass `-o {name}=VALUE`"
            )
        else:
            values[name] = o.default
    return values


def build(method: Method, model: Any, given: Mapping[str, Any], ctx: Context) -> Explainer:
    """The explainer of ``method`` on ``model`` with the options ``given`` (checked).

    Raises:
      InvalidArgumentError: unknown or missing options, or values the factory refuses.
    """
    values = resolve(method, given)
    try:
        return method.build(model, values, ctx)
    except errors.XaijaxError:
        raise
    except (TypeError, ValueError) as e:  # a value of the wrong type deep in a factory
        shown = ", ".join(f"{k}={v!r}" for k, v in given.items()) or "its defaults"
        raise errors.InvalidArgumentError(
            f"method {method.name!r} refused {shown} ({type(e).__name__}: {e}); check the "
            "option values against `xaijax explain --list-methods`"
        ) from e


@functools.cache
def is_stochastic(name: str) -> bool:
    """Whether method ``name`` (default options, on an image model) needs a key."""
    method = METHODS[name]
    ctx = Context(cam_layer=None, integer_inputs=False, input_shape=(8, 8, 3))
    try:
        e = method.build(xaijax.model(lambda p, x: x), resolve(method, {}), ctx)
    except errors.XaijaxError:  # layer methods need a real model: deterministic anyway
        return False
    return e.stochastic


def table(width: int = 100) -> str:
    """Every method with its options, for ``--help`` and ``--list-methods``."""
    lines = []
    for m in METHODS.values():
        key = ", stochastic: takes --key" if is_stochastic(m.name) else ""
        lines.append(f"  {m.name}{key}")
        lines.append(
            textwrap.fill(
                f"{m.expr}. {m.summary}", width, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
        )
        opts = m.options()
        text = "; ".join(o.describe() for o in opts) if opts else "(no options)"
        lines.append(
            textwrap.fill(
                "options: " + text,
                width,
                initial_indent=" " * 6,
                subsequent_indent=" " * 8,
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)
