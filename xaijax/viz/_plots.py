"""Matplotlib figures of attribution maps, in the manner of Captum's ``visualize_image_attr``.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no global figure
registry, no GUI backend needed), so scripts can ``fig.savefig(...)`` / :func:`save_png` it and
notebooks show it when it is a cell's last value. matplotlib is imported when a function is
called, so ``import xaijax.viz`` does not need it; a missing matplotlib raises
:class:`~xaijax.errors.MissingDependencyError` naming ``pip install 'xaijax[viz]'``. Inside
IPython / Jupyter / Colab, the first figure registers a PNG display formatter for ``Figure`` when
none exists (what ``%matplotlib inline`` does), so a returned figure shows once, without pyplot.

How a map becomes colours
-------------------------
1. A channel map ``[H, W, C]`` (a gradient per RGB channel) is reduced to ``[H, W]`` by
   ``channel_reduce``: ``"sum"`` (the default, Captum's choice: the signed sum over channels),
   ``"sum_abs"``, ``"mean"``, ``"max_abs"`` or ``"l2"``.
2. ``sign`` picks what is shown: ``"all"`` keeps the sign, ``"positive"`` / ``"negative"`` the
   magnitude of one part, ``"absolute"`` ``|a|``; ``"auto"`` (default) is ``"all"`` when some
   value of the panel (:func:`show`) or column (:func:`show_grid`: one decision per column, so one
   colour bar serves it) is negative, else ``"positive"``.
3. Each map is scaled on its own: divided by the ``percentile`` (99.5) of ``|a|`` (of the shown
   part) and clipped, to [-1, 1] for ``"all"`` and [0, 1] otherwise. Colour bars show this scaled
   value, so they are the same for every row of a column.
4. Colours: ``"all"`` uses a diverging map (``RdBu_r``: -1 blue, 0 white, 1 red) on the
   symmetric range [-1, 1], so 0 is the colour map's centre; the other signs a sequential map
   (``viridis``). ``cmap`` overrides either.
5. ``method`` draws it: ``"heat_map"`` (colours alone), ``"blended_heat_map"`` (colours blended
   over the grey image with weight ``alpha``), ``"masked_image"`` (the image times the scaled map;
   not with ``sign="all"``) or ``"original_image"`` (the image alone).

Bad input raises named errors from :mod:`xaijax.errors`: a map whose shape does not match its
image (``InputShapeError``), a segment map for another image (``SegmentMapError``), an unknown
``method`` / ``sign`` (``InvalidArgumentError``), NaN or Inf (``NonFiniteInputError``).
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xaijax import errors
from xaijax.viz import _checks, _segments
from xaijax.viz._checks import as_maps, shape_str
from xaijax.viz._images import CHANNEL_REDUCTIONS, reduce_channels, resolve_sign, scale_map

#: Captum's drawing methods (``visualize_image_attr(method=...)``).
METHODS = ("heat_map", "blended_heat_map", "masked_image", "original_image")
#: Colour maps used when ``cmap`` is None: diverging for ``sign="all"``, sequential otherwise.
DEFAULT_CMAPS = {
    "all": "RdBu_r",
    "positive": "viridis",
    "negative": "viridis",
    "absolute": "viridis",
}


# --- matplotlib plumbing -----------------------------------------------------------------------


def _png_repr(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _enable_notebook_display(figure_type: type) -> None:
    """In IPython/Jupyter/Colab, makes a returned Figure display as PNG.

    ``%matplotlib inline`` registers this formatter; without it a Figure made without pyplot
    prints as ``<Figure size ...>``. Registered only when no formatter exists (the user's
    settings win), and only inside a running IPython shell.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    png = shell.display_formatter.formatters.get("image/png")
    if png is None:
        return
    try:
        png.lookup_by_type(figure_type)
    except KeyError:
        png.for_type(figure_type, _png_repr)


def new_figure(width: float, height: float) -> Any:
    """A constrained-layout Figure (no pyplot); matplotlib imported here."""
    _checks.matplotlib()
    from matplotlib.figure import Figure

    _enable_notebook_display(Figure)
    return Figure(figsize=(width, height), layout="constrained")


def _colormap(name_or_cmap: Any) -> Any:
    mpl = _checks.matplotlib()
    if isinstance(name_or_cmap, mpl.colors.Colormap):
        return name_or_cmap
    try:
        return mpl.colormaps[name_or_cmap]
    except (KeyError, TypeError) as e:
        raise errors.InvalidArgumentError(
            f"`cmap` must be a matplotlib colour map or its name (e.g. 'RdBu_r', 'viridis', "
            f"'magma'), got {name_or_cmap!r}."
        ) from e


class _Scale:
    """How one panel's (or column's) values become colours: sign mode, norm and colour map."""

    def __init__(self, mode: str, cmap: Any, percentile: float):
        mpl = _checks.matplotlib()
        self.mode = mode
        self.percentile = percentile
        self.cmap = _colormap(cmap if cmap is not None else DEFAULT_CMAPS[mode])
        low = -1.0 if mode == "all" else 0.0
        self.norm = mpl.colors.Normalize(vmin=low, vmax=1.0)  # symmetric for "all": 0 centred

    def colours(self, scaled: np.ndarray) -> np.ndarray:
        """RGB ``[..., 3]`` of scaled values (``[-1, 1]`` or ``[0, 1]``)."""
        return np.asarray(self.cmap(self.norm(scaled)), np.float32)[..., :3]

    def label(self, a: str = "a") -> str:
        """What the colour bar shows, e.g. ``a / P99.5(|a|)`` (``a``: the attribution)."""
        p = "max" if self.percentile == 100 else f"P{self.percentile:g}"
        return {
            "all": f"{a} / {p}(|{a}|)",
            "positive": f"max({a}, 0) / {p}",
            "negative": f"max(-{a}, 0) / {p}",
            "absolute": f"|{a}| / {p}(|{a}|)",
        }[self.mode]

    def key(self) -> tuple:
        return (self.mode, self.cmap.name)

    def ticks(self) -> list[float]:
        return [-1.0, -0.5, 0.0, 0.5, 1.0] if self.mode == "all" else [0.0, 0.5, 1.0]


def _add_colorbar(fig, scale: _Scale, axes, *, location: str = "right", label: str | None = None):
    mpl = _checks.matplotlib()
    mappable = mpl.cm.ScalarMappable(norm=scale.norm, cmap=scale.cmap)
    horizontal = location in ("bottom", "top")
    bar = fig.colorbar(
        mappable,
        ax=axes,
        location=location,
        ticks=scale.ticks(),
        shrink=0.9 if horizontal else 0.8,
        aspect=12 if horizontal else 20,
        pad=0.02,
    )
    bar.ax.tick_params(labelsize=7)
    bar.set_label(scale.label() if label is None else label, fontsize=7)
    return bar


def _clean_axis(ax) -> None:
    """No ticks; a thin grey frame, so white image parts stay visible on the white page."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#bbbbbb")
        spine.set_linewidth(0.6)


def _wrap(title: str, width: int) -> str:
    """Wraps a title at ``width`` characters, breaking after spaces and underscores (method names
    such as ``integrated_gradients`` stay exact: ``integrated_`` / ``gradients``)."""
    words = re.findall(r"[^\s_]*_+|\S+", str(title))
    lines: list[str] = []
    for word in words:
        joiner = "" if lines and lines[-1].endswith("_") else " "
        if lines and len(lines[-1]) + len(joiner) + len(word) <= width:
            lines[-1] += joiner + word
        else:
            lines.append(word)
    return "\n".join(lines) or str(title)


# --- checks -------------------------------------------------------------------------------------


def _check_channel_reduce(how: str) -> str:
    return _checks.check_choice(how, "channel_reduce", CHANNEL_REDUCTIONS)


def _check_method(method: str) -> str:
    return _checks.check_choice(
        method,
        "method",
        METHODS,
        "As in Captum: 'heat_map' (colours only), 'blended_heat_map' (colours over the grey "
        "image), 'masked_image' (image times the map), 'original_image'.",
    )


def _check_mode_for(method: str, mode: str, sign: str) -> None:
    if method == "masked_image" and mode == "all":
        raise errors.InvalidArgumentError(
            f"method='masked_image' cannot show positive and negative values at once (sign="
            f"{sign!r} resolved to 'all' because the map has negative values): pass "
            "sign='positive', 'negative' or 'absolute', or method='blended_heat_map'."
        )


def _image(image, name: str = "image") -> np.ndarray:
    """One image ``[H, W]`` / ``[H, W, C]`` as float32 RGB ``[H, W, 3]``."""
    return _checks.rgb(image, name)


def _map_for(m, hw: tuple[int, int] | None, channels: int | None, name: str, how: str):
    """One map ``[H, W]`` or channel map ``[H, W, C]`` of an image of size ``hw``, as ``[H, W]``."""
    arr = as_maps(m, name)
    if hw is None:
        ok = arr.ndim in (2, 3)
    else:
        ok = arr.shape == hw or (
            arr.ndim == 3 and arr.shape[:2] == hw and arr.shape[2] in {1, channels or 1}
        )
    if not ok:
        want = (
            "[H, W] or [H, W, C]"
            if hw is None
            else f"{shape_str(hw)} (or {shape_str(hw)[:-1]}, C])"
        )
        raise errors.InputShapeError(
            f"`{name}` of shape {shape_str(arr.shape)} does not match its image"
            + ("" if hw is None else f" of size {shape_str(hw)}")
            + f": a map needs one value per pixel, shape {want}. Resize the map to the image "
            "(e.g. Grad-CAM maps are already upsampled by xaijax), or pass the image it explains."
        )
    return reduce_channels(arr, how) if arr.ndim == 3 else arr


def _as_named_maps(maps, titles) -> list[tuple[str, Any]]:
    """``maps`` as ``[(title, map), ...]``: a Mapping, a list/tuple of arrays, or one array."""
    if isinstance(maps, Mapping):
        items = [(str(k), v) for k, v in maps.items()]
    elif isinstance(maps, list | tuple) and maps and all(hasattr(v, "shape") for v in maps):
        items = [(None, v) for v in maps]
    else:
        items = [(None, maps)]
    if not items:
        raise errors.InputShapeError("`maps` is empty: pass at least one map.")
    if titles is not None:
        titles = _checks.check_texts(titles, "titles", "map", allow_str=True)
        if len(titles) != len(items):
            raise errors.InvalidArgumentError(
                f"`titles` has {len(titles)} entries for {len(items)} map(s): give one title per "
                "map (or None)."
            )
        items = [(t, v) for t, (_, v) in zip(titles, items, strict=True)]
    return [(t if t is not None else "", v) for t, v in items]


# --- composing one panel ------------------------------------------------------------------------


def compose(
    image: np.ndarray | None, scaled: np.ndarray, method: str, scale: _Scale | None, alpha: float
) -> np.ndarray:
    """The RGB array ``[H, W, 3]`` a panel shows (what ``imshow`` receives)."""
    if method == "original_image":
        return image
    if method == "masked_image":
        return image * scaled[..., None]
    heat = scale.colours(scaled)
    if method == "heat_map":
        return heat
    grey = image.mean(axis=-1, keepdims=True)
    return ((1.0 - alpha) * grey + alpha * heat).astype(np.float32)


def _draw(ax, rgb: np.ndarray, title: str | None, fontsize: float = 9) -> None:
    ax.imshow(np.clip(rgb, 0.0, 1.0), interpolation="nearest")
    _clean_axis(ax)
    if title:
        ax.set_title(title, fontsize=fontsize)


def show(
    image: np.ndarray | None,
    maps: Any,
    *,
    titles: str | Sequence[str] | None = None,
    method: str = "blended_heat_map",
    sign: str = "auto",
    colorbar: bool = True,
    ax: Any = None,
    alpha: float = 0.5,
    cmap: Any = None,
    percentile: float = 99.5,
    channel_reduce: str = "sum",
) -> Any:
    """Draws attribution maps of one image, one panel per map (Captum's ``visualize_image_attr``).

    Args:
      image: ``[H, W, C]`` (``C`` = 1, 3 or 4) or ``[H, W]``, floats in [0, 1] (a 0..255 or
        normalised float image is an error) or uint8; may be None only with
        ``method="heat_map"``.
      maps: one map ``[H, W]`` or channel map ``[H, W, C]``; or several for the same image, as a
        dict ``{title: map}`` or a list of arrays (one panel each, side by side).
      titles: a title per panel (a string for one panel; default: the dict's keys).
      method: ``"heat_map"``, ``"blended_heat_map"``, ``"masked_image"`` or
        ``"original_image"`` (module docstring, step 5).
      sign: ``"auto"``, ``"all"``, ``"positive"``, ``"negative"`` or ``"absolute"``; ``"auto"``
        is decided per panel (step 2).
      colorbar: one colour bar per panel (not for ``masked_image`` / ``original_image``).
      ax: a matplotlib Axes to draw one map into (the figure is then ``ax.figure``).
      alpha: weight of the colours in ``blended_heat_map``, in [0, 1].
      cmap: a matplotlib colour map or its name (default: ``RdBu_r`` for signed, ``viridis``
        for one-signed maps).
      percentile: each map is divided by this percentile of its magnitude (step 3).
      channel_reduce: how ``[H, W, C]`` maps become ``[H, W]`` (step 1; Captum sums channels).

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      InputShapeError: a map whose shape does not match the image, or a bad image layout.
      InvalidArgumentError: an unknown ``method``, ``sign``, ``channel_reduce`` or ``cmap``;
        ``alpha`` outside [0, 1]; ``titles`` not a string or list of them, one per map; ``ax``
        not an Axes, or with several maps; ``masked_image`` with signed maps; a float image
        outside [0, 1].
      NonFiniteInputError: NaN or Inf in the image or a map.
      MissingDependencyError: matplotlib is not installed.

    Examples:
      >>> import numpy as np
      >>> from xaijax import viz
      >>> image = np.random.default_rng(0).uniform(size=(8, 8, 3))
      >>> attribution = np.linspace(-1, 1, 64).reshape(8, 8)  # signed: diverging colours
      >>> fig = viz.show(image, attribution, titles="gradient")
      >>> len(fig.axes)  # the panel and its colour bar
      2
    """
    method = _check_method(method)
    alpha = _checks.check_number(alpha, "alpha", 0.0, 1.0)
    percentile = _checks.check_percentile(percentile)
    _check_channel_reduce(channel_reduce)
    _checks.check_ax(ax)
    if image is None and method != "heat_map":
        raise errors.InvalidArgumentError(
            f"method={method!r} draws the image: pass it, or use method='heat_map'."
        )
    img = None if image is None else _image(image)
    channels = None if image is None else int(np.shape(image)[-1]) if np.ndim(image) == 3 else 1
    hw = None if img is None else img.shape[:2]
    named = _as_named_maps(maps, titles)
    panels = [
        (t, _map_for(m, hw, channels, "maps" + (f"[{t!r}]" if t else ""), channel_reduce))
        for t, m in named
    ]
    if ax is not None and len(panels) != 1:
        raise errors.InvalidArgumentError(
            f"`ax` draws one map, got {len(panels)}: call show once per Axes, or leave ax=None "
            "to get a figure with a panel per map."
        )
    scales = []
    for _, m in panels:
        mode = resolve_sign(sign, [m])
        _check_mode_for(method, mode, sign)
        scales.append(_Scale(mode, cmap, percentile))
    bars = colorbar and method in ("heat_map", "blended_heat_map")
    if ax is None:
        fig = new_figure(3.0 * len(panels) + (0.7 * len(panels) if bars else 0.0), 3.0)
        axes = list(np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0]))
    else:
        fig, axes = ax.figure, [ax]
    for a, (title, m), scale in zip(axes, panels, scales, strict=True):
        scaled = scale_map(m, scale.mode, percentile)
        _draw(a, compose(img, scaled, method, scale, alpha), title)
        if bars:
            _add_colorbar(fig, scale, a)
    return fig


def show_grid(
    images: np.ndarray,
    maps: Any,
    *,
    titles: Sequence[str] | None = None,
    method: str = "blended_heat_map",
    sign: str = "auto",
    colorbar: bool | str = "column",
    references: Mapping[str, np.ndarray] | None = None,
    image_title: str | None = "image",
    row_titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: Any = None,
    percentile: float = 99.5,
    channel_reduce: str = "sum",
    panel_size: float = 1.6,
    title_width: int = 14,
    note: bool = True,
) -> Any:
    """A grid of attribution maps: a row per image, a titled column per method
    (Captum's ``visualize_image_attr_multiple`` over a batch).

    Columns, left to right: the images (``image_title``; None leaves it out), the
    ``references`` (e.g. ``{"ground truth": masks}``, drawn as images), then one column per map.

    Args:
      images: ``[N, H, W, C]`` (``C`` = 1, 3 or 4) or ``[N, H, W]``, floats in [0, 1] or uint8
        (as :func:`show`).
      maps: ``{method_name: [N, H, W]}`` (or ``[N, H, W, C]`` channel maps), one column each; a
        single array ``[N, H, W(, C)]`` is one column titled "attribution".
      titles: column titles of the maps (default: the dict's keys); long titles wrap at
        ``title_width`` characters.
      method, sign, alpha, cmap, percentile, channel_reduce: as in :func:`show`; ``sign="auto"``
        is decided once per column (``"all"`` if any of its maps has a negative value), and each
        map is still scaled on its own.
      colorbar: ``"column"`` (or True): a colour bar under each map column; ``"shared"``: one
        bar at the right for all columns that share a sign and colour map (one bar per such
        group, e.g. one diverging and one sequential, each naming its columns, except a biggest
        group of 3 or more: "other columns"), which is valid because every map is scaled to the
        same range; False: none.
      references: extra image columns ``{title: [N, H, W] or [N, H, W, C]}`` (masks are drawn in
        grey: 0 black, 1 white).
      image_title: title of the image column, or None to leave the images out.
      row_titles: a label per row (e.g. the class), left of each row.
      panel_size: size of one panel in inches (> 0).
      title_width: characters per line of a column title (>= 1).
      note: write how the maps are scaled under the grid.

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      InputShapeError: ``images`` not ``[N, H, W(, C)]``, or a map or reference whose shape does
        not match the images (``BatchMismatchError`` when only the number of rows differs).
      InvalidArgumentError: as :func:`show`; also ``titles`` / ``row_titles`` not one string
        per column / row, ``panel_size`` <= 0 or ``title_width`` < 1.
      NonFiniteInputError, MissingDependencyError: as :func:`show`.

    Examples:
      >>> import numpy as np
      >>> from xaijax import viz
      >>> rng = np.random.default_rng(0)
      >>> images = rng.uniform(size=(2, 8, 8, 3))
      >>> maps = {"gradient": rng.normal(size=(2, 8, 8)), "occlusion": rng.uniform(size=(2, 8, 8))}
      >>> fig = viz.show_grid(images, maps)
      >>> [ax.get_title() for ax in fig.axes[:3]]
      ['image', 'gradient', 'occlusion']
    """
    method = _check_method(method)
    alpha = _checks.check_number(alpha, "alpha", 0.0, 1.0)
    percentile = _checks.check_percentile(percentile)
    _check_channel_reduce(channel_reduce)
    panel_size = _checks.check_positive(panel_size, "panel_size")
    if isinstance(title_width, bool) or not isinstance(title_width, int) or title_width < 1:
        raise errors.InvalidArgumentError(
            f"`title_width` must be an integer >= 1 (characters per line), got {title_width!r}."
        )
    if row_titles is not None:
        row_titles = _checks.check_texts(row_titles, "row_titles", "row (image)")
    if colorbar is True:
        colorbar = "column"
    if colorbar not in (False, "column", "shared"):
        raise errors.InvalidArgumentError(
            f"`colorbar` must be 'column' (or True), 'shared' or False, got {colorbar!r}."
        )
    batch = _checks.numeric(images, "images")
    if batch.ndim not in (3, 4):
        raise errors.InputShapeError(
            f"`images` must be a batch [N, H, W, C] or [N, H, W], got shape "
            f"{shape_str(batch.shape)}; for one image use `images[None]` or `show`."
        )
    arrays = list(maps.values()) if isinstance(maps, Mapping) else [maps]
    if batch.ndim == 3 and any(np.ndim(a) == 2 for a in arrays):
        raise errors.InputShapeError(
            f"`images` of shape {shape_str(batch.shape)} with maps of rank 2 looks like one image: "
            "show_grid takes a batch, images [N, H, W, C] and maps [N, H, W]. Pass `images[None]` "
            "and `maps[None]`, or use `show` for one image."
        )
    n = batch.shape[0]
    if n == 0:
        raise errors.InputShapeError("`images` holds no image (N = 0): nothing to draw.")
    if row_titles is not None and len(row_titles) != n:
        raise errors.InvalidArgumentError(
            f"`row_titles` has {len(row_titles)} entries for {n} rows: give one per image."
        )
    imgs = [_image(batch[i], f"images[{i}]") for i in range(n)]
    hw = imgs[0].shape[:2]
    channels = batch.shape[-1] if batch.ndim == 4 else 1
    if isinstance(maps, Mapping):
        named = _as_named_maps(maps, titles)
    else:
        named = _as_named_maps({"attribution": maps}, titles)

    def rows_of(arr, name: str) -> np.ndarray:
        a = as_maps(arr, name)
        if a.ndim == 0 or a.shape[0] != n:
            raise errors.BatchMismatchError(
                f"`{name}` has {a.shape[0] if a.ndim else 0} row(s) (shape {shape_str(a.shape)}) "
                f"but `images` has {n}: give one map per image, [N, H, W]."
            )
        return a

    columns = []  # (title, [N, H, W] scaled, scale) for maps
    for title, arr in named:
        a = rows_of(arr, f"maps[{title!r}]")
        m = np.stack(
            [
                _map_for(a[i], hw, channels, f"maps[{title!r}][{i}]", channel_reduce)
                for i in range(n)
            ]
        )
        mode = resolve_sign(sign, [m])
        _check_mode_for(method, mode, sign)
        scale = _Scale(mode, cmap, percentile)
        columns.append((title, np.stack([scale_map(mi, mode, percentile) for mi in m]), scale))
    refs = []
    for title, arr in (references or {}).items():
        a = rows_of(arr, f"references[{title!r}]")
        tiles = [_image(a[i], f"references[{title!r}][{i}]") for i in range(n)]
        if tiles[0].shape[:2] != hw:
            raise errors.InputShapeError(
                f"`references[{title!r}]` has images of size {shape_str(tiles[0].shape[:2])}, "
                f"not {shape_str(hw)} like `images`: resize it to the images."
            )
        refs.append((str(title), tiles))

    lead = ([(image_title, imgs)] if image_title is not None else []) + refs
    ncols = len(lead) + len(columns)
    bars = colorbar if method in ("heat_map", "blended_heat_map") else False
    extra_h = 0.55 if bars == "column" else 0.0
    extra_w = 0.9 if bars == "shared" else 0.0
    fig = new_figure(panel_size * ncols + extra_w, panel_size * n + 0.45 + extra_h + 0.25 * note)
    axes = fig.subplots(n, ncols, squeeze=False)
    fontsize = 8 if panel_size < 1.5 else 9
    for j, (title, tiles) in enumerate(lead):
        for i in range(n):
            _draw(axes[i, j], tiles[i], _wrap(title, title_width) if i == 0 else None, fontsize)
    for k, (title, scaled, scale) in enumerate(columns):
        j = len(lead) + k
        for i in range(n):
            rgb = compose(imgs[i], scaled[i], method, scale, alpha)
            _draw(axes[i, j], rgb, _wrap(title, title_width) if i == 0 else None, fontsize)
        if bars == "column":
            _add_colorbar(fig, scale, axes[:, j], location="bottom")
    if bars == "shared":
        groups: dict[tuple, list] = {}
        for k, (_, _, scale) in enumerate(columns):
            groups.setdefault(scale.key(), [scale, []])[1].append(k)
        biggest = max(groups, key=lambda g: len(groups[g][1]))
        for key, (scale, ks) in groups.items():
            # Several bars: each names its columns, except the biggest group ("other columns").
            if len(groups) == 1:
                named = ""
            elif key == biggest and len(ks) >= 3:
                named = " (other columns)"
            else:
                named = " (" + ", ".join(columns[k][0] for k in ks) + ")"
            _add_colorbar(fig, scale, axes, label=scale.label() + named)
    if row_titles is not None:
        for i, t in enumerate(row_titles):
            axes[i, 0].set_ylabel(str(t), fontsize=fontsize)
    if note and columns:
        p = "maximum" if percentile == 100 else f"{percentile:g}th percentile"
        fig.supxlabel(
            f"Each map is scaled on its own: value / its {p} of |value| (colour bars: that "
            "scaled value; "
            + (
                "blue < 0 < red)."
                if any(c[2].mode == "all" for c in columns)
                else "dark = 0, bright = high)."
            ),
            fontsize=7,
        )
    return fig


def _check_boxes(boxes, hw: tuple[int, int]) -> np.ndarray:
    b = _checks.numeric(boxes, "boxes")
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise errors.InputShapeError(
            f"`boxes` must be [K, 4] (or one box [4]) as (y0, x0, y1, x1), end exclusive like "
            f"xaijax.metrics and fixations.boxes, got shape {shape_str(np.shape(boxes))}."
        )
    _checks.check_finite(b, "boxes")
    y0, x0, y1, x1 = b.T
    bad = (y0 < 0) | (x0 < 0) | (y1 > hw[0]) | (x1 > hw[1]) | (y1 < y0) | (x1 < x0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise errors.InputShapeError(
            f"box {i} {b[i].tolist()} does not fit the image of size {shape_str(hw)}: boxes are "
            "(y0, x0, y1, x1) with 0 <= y0 <= y1 <= H and 0 <= x0 <= x1 <= W. Boxes of another "
            "image, or (x, y) order?"
        )
    return b


def _check_points(points, hw: tuple[int, int]) -> np.ndarray:
    p = _checks.numeric(points, "points")
    if p.ndim != 2 or p.shape[1] != 2:
        raise errors.InputShapeError(
            f"`points` must be [P, 2] as (y, x) rows (fixations.fixation_points gives one such "
            f"array per example), got shape {shape_str(p.shape)}."
        )
    _checks.check_finite(p, "points")
    bad = (p[:, 0] < 0) | (p[:, 1] < 0) | (p[:, 0] >= hw[0]) | (p[:, 1] >= hw[1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise errors.InputShapeError(
            f"point {i} {p[i].tolist()} is outside the image of size {shape_str(hw)}: points are "
            "(y, x) with 0 <= y < H and 0 <= x < W. Points of another image, or (x, y) order?"
        )
    return p


def show_boxes(
    image: np.ndarray,
    boxes: np.ndarray | None = None,
    *,
    points: np.ndarray | None = None,
    maps: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    color: str = "yellow",
    ax: Any = None,
    method: str = "blended_heat_map",
    sign: str = "auto",
    colorbar: bool = True,
    alpha: float = 0.5,
    cmap: Any = None,
    percentile: float = 99.5,
    channel_reduce: str = "sum",
) -> Any:
    """Boxes and points on an image (or on its map): fixations, localisation boxes, patches.

    Args:
      image: ``[H, W(, C)]``, floats in [0, 1] or uint8.
      boxes: ``[K, 4]`` or ``[4]`` as ``(y0, x0, y1, x1)``, end exclusive (the layout of
        :func:`xaijax.fixations.boxes` and :mod:`xaijax.metrics`); all-zero boxes ("nothing to
        box") are skipped.
      points: ``[P, 2]`` pixel coordinates ``(y, x)``, e.g. ``fixations.fixation_points(m)[i]``.
      maps: an optional map ``[H, W(, C)]`` drawn under the boxes as in :func:`show`.
      labels: a text per box, written at its top-left corner.
      title: the panel title.
      color: matplotlib colour of boxes, points and labels (a name, hex string or RGB(A)
        tuple).
      ax, method, sign, colorbar, alpha, cmap, percentile, channel_reduce: as in :func:`show`
        (used when ``maps`` is given).

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      InputShapeError: boxes or points that are not ``[K, 4]`` / ``[P, 2]`` or fall outside the
        image, a map of another size.
      InvalidArgumentError: as :func:`show`; also ``color`` not a matplotlib colour, ``labels``
        not one string per box.
      NonFiniteInputError, MissingDependencyError: as :func:`show`.

    Examples:
      >>> import numpy as np
      >>> from xaijax import viz
      >>> fig = viz.show_boxes(np.zeros((8, 8, 3)), [[1, 1, 5, 6]], points=[[2, 3], [4, 4]])
      >>> len(fig.axes[0].patches), len(fig.axes[0].collections)
      (1, 1)
    """
    _checks.check_mpl_color(color, "color")
    _checks.check_ax(ax)
    img = _image(image)
    hw = img.shape[:2]
    b = None if boxes is None else _check_boxes(boxes, hw)
    p = None if points is None else _check_points(points, hw)
    if labels is not None:
        labels = _checks.check_texts(labels, "labels", "box")
    if labels is not None and (b is None or len(labels) != len(b)):
        raise errors.InvalidArgumentError(
            f"`labels` needs one text per box; got {len(labels)} label(s) for "
            f"{0 if b is None else len(b)} box(es)."
        )
    if maps is None:
        if ax is None:
            fig = new_figure(3.0, 3.0)
            ax = fig.subplots()
        fig = ax.figure
        _draw(ax, img, title)
    else:
        fig = show(
            image,
            maps,
            titles=title,
            method=method,
            sign=sign,
            colorbar=colorbar,
            ax=ax,
            alpha=alpha,
            cmap=cmap,
            percentile=percentile,
            channel_reduce=channel_reduce,
        )
        ax = ax if ax is not None else fig.axes[0]
    mpl = _checks.matplotlib()
    if b is not None:
        for i, (y0, x0, y1, x1) in enumerate(b):
            if y1 == y0 == x0 == x1 == 0:
                continue
            ax.add_patch(
                mpl.patches.Rectangle(
                    (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, lw=1.5
                )
            )
            if labels is not None:
                ax.text(
                    x0 - 0.5,
                    y0 - 0.5,
                    str(labels[i]),
                    color="black",
                    fontsize=7,
                    va="bottom",
                    ha="left",
                    bbox={"fc": color, "ec": "none", "pad": 1},
                )
    if p is not None:
        ax.scatter(p[:, 1], p[:, 0], s=6, c=color, marker="o", linewidths=0)
    ax.set_xlim(-0.5, hw[1] - 0.5)
    ax.set_ylim(hw[0] - 0.5, -0.5)
    return fig


def show_segments(
    image: np.ndarray,
    segments: np.ndarray,
    scores: np.ndarray | None = None,
    *,
    top_k: int | None = None,
    positive_only: bool = True,
    sign: str = "auto",
    title: str | None = None,
    ax: Any = None,
    colorbar: bool = True,
    alpha: float = 0.5,
    cmap: Any = None,
    boundary_color: Sequence[float] | str | None = (1.0, 1.0, 0.0),
) -> Any:
    """Superpixels of one image, their scores (GWS, LIME), and the top-k segments (lime's
    ``get_image_and_mask`` + ``mark_boundaries``).

    Without ``scores``: the image with the segment borders. With ``scores``: each segment painted
    with its score (blended over the grey image, scaled by the largest ``|score|``, a colour bar),
    borders on top. With ``top_k``: only the ``top_k`` best segments (:func:`image_and_mask`,
    ``positive_only`` as there) keep their colours and borders; the rest is dimmed.

    Args:
      image: ``[H, W(, C)]``, floats in [0, 1] or uint8.
      segments: integer labels ``[H, W]`` of this image, in ``[0, S)``.
      scores: ``[S]`` per-segment scores of this image (e.g. ``lime(...).coefficients[i]`` or
        ``gws(...)[i]``).
      top_k: keep only this many segments (needs ``scores``).
      positive_only: with ``top_k``, rank by score and keep only positive ones (else by ``|s|``).
      sign, cmap, alpha, colorbar, ax: as in :func:`show`.
      title: the panel title.
      boundary_color: colour of the borders: an RGB triple in [0, 1] or any matplotlib colour
        name or hex string (``"red"``, ``"#ff0000"``); None for no borders.

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      SegmentMapError: a label map of another size than the image, non-integer or negative
        labels, or labels beyond ``len(scores)``.
      InvalidArgumentError: ``top_k`` without ``scores`` or < 1, an unknown ``sign``,
        ``boundary_color`` not a colour, ``ax`` not an Axes, a float image outside [0, 1].
      InputShapeError, NonFiniteInputError, MissingDependencyError: as :func:`show`.

    Examples:
      >>> import numpy as np
      >>> from xaijax import viz
      >>> seg = np.repeat(np.arange(4), 4).reshape(4, 4)  # four horizontal bands
      >>> fig = viz.show_segments(np.ones((4, 4, 3)), seg, np.array([0.1, -0.3, 0.9, 0.0]), top_k=2)
      >>> fig.axes[0].get_images()[0].get_array().shape
      (4, 4, 3)
    """
    alpha = _checks.check_number(alpha, "alpha", 0.0, 1.0)
    _checks.check_ax(ax)
    colour = None if boundary_color is None else _checks.rgb_color(boundary_color, "boundary_color")
    img = _image(image)
    seg = _segments.check_segments(segments, shape=img.shape[:2])
    if top_k is not None and scores is None:
        raise errors.InvalidArgumentError("`top_k` ranks segments by `scores`: pass the scores.")
    scale = None
    if scores is None:
        rgb, keep = img, None
    else:
        sc = _segments.check_scores(scores, seg)
        mode = resolve_sign(sign, [sc[np.unique(seg)]])
        scale = _Scale(mode, cmap, 100.0)
        rgb = compose(img, scale_map(sc, mode, 100.0)[seg], "blended_heat_map", scale, alpha)
        keep = None
        if top_k is not None:
            _, mask = _segments.image_and_mask(
                img, seg, sc, top_k=top_k, positive_only=positive_only
            )
            keep = mask != 0
            dim = np.repeat(0.35 * img.mean(axis=-1, keepdims=True), 3, axis=-1)
            rgb = np.where(keep[..., None], rgb, dim)
    if colour is not None:
        border = _segments.segment_boundaries(seg if keep is None else np.where(keep, seg + 1, 0))
        rgb = np.where(border[..., None], colour, rgb)
    if ax is None:
        fig = new_figure(3.0 + (0.7 if scale is not None and colorbar else 0.0), 3.0)
        ax = fig.subplots()
    fig = ax.figure
    _draw(ax, rgb, title)
    if scale is not None and colorbar:
        _add_colorbar(fig, scale, ax, label=scale.label("score"))
    return fig


def show_video(
    frames: np.ndarray,
    maps: np.ndarray,
    *,
    max_frames: int = 8,
    show_frames: bool = True,
    title: str | None = None,
    method: str = "blended_heat_map",
    sign: str = "auto",
    colorbar: bool = True,
    alpha: float = 0.5,
    cmap: Any = None,
    percentile: float = 99.5,
    channel_reduce: str = "sum",
    panel_size: float = 1.5,
) -> Any:
    """A video clip and its attribution as a strip of frames.

    The clip's map is scaled as *one* map (one percentile over all frames), so frames can be
    compared: a bright frame is a frame the model used more.

    Args:
      frames: ``[T, H, W, C]`` (or ``[T, H, W]``), floats in [0, 1] or uint8.
      maps: ``[T, H, W]`` (or ``[T, H, W, C]``) attribution of the clip.
      max_frames: at most this many frames are drawn, evenly spaced (first and last included).
      show_frames: a first row with the raw frames.
      title: the figure title.
      method, sign, colorbar, alpha, cmap, percentile, channel_reduce: as in :func:`show`;
        ``sign="auto"`` is decided over the whole clip.
      panel_size: size of one frame's panel in inches (> 0).

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      InputShapeError: ``frames`` not ``[T, H, W(, C)]`` or ``maps`` of another shape.
      InvalidArgumentError, NonFiniteInputError, MissingDependencyError: as :func:`show`.

    Examples:
      >>> import numpy as np
      >>> from xaijax import viz
      >>> fig = viz.show_video(np.zeros((12, 6, 6, 3)), np.ones((12, 6, 6)), max_frames=4)
      >>> [ax.get_title() for ax in fig.axes[:4]]
      ['t = 0', 't = 4', 't = 7', 't = 11']
    """
    method = _check_method(method)
    alpha = _checks.check_number(alpha, "alpha", 0.0, 1.0)
    percentile = _checks.check_percentile(percentile)
    _check_channel_reduce(channel_reduce)
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise errors.InvalidArgumentError(
            f"`max_frames` must be an integer >= 1, got {max_frames!r}."
        )
    panel_size = _checks.check_positive(panel_size, "panel_size")
    clip = _checks.numeric(frames, "frames")
    if clip.ndim not in (3, 4) or clip.shape[0] == 0:
        raise errors.InputShapeError(
            f"`frames` must be a clip [T, H, W, C] (or [T, H, W]), got shape "
            f"{shape_str(clip.shape)}; for a batch of clips draw one clip at a time."
        )
    t_len = clip.shape[0]
    tiles = [_image(clip[t], f"frames[{t}]") for t in range(t_len)]
    hw = tiles[0].shape[:2]
    channels = clip.shape[-1] if clip.ndim == 4 else 1
    m = as_maps(maps, "maps")
    if m.ndim < 3:
        raise errors.InputShapeError(
            f"`maps` of shape {shape_str(m.shape)} is one map, not one per frame: show_video "
            "takes frames [T, H, W, C] and maps [T, H, W]; for one image use `show`."
        )
    if m.shape[0] != t_len:
        raise errors.InputShapeError(
            f"`maps` of shape {shape_str(m.shape)} does not match `frames` of shape "
            f"{shape_str(clip.shape)}: give one map per frame, [T, H, W] with T = {t_len}."
        )
    m = np.stack([_map_for(m[t], hw, channels, f"maps[{t}]", channel_reduce) for t in range(t_len)])
    mode = resolve_sign(sign, [m])
    _check_mode_for(method, mode, sign)
    scale = _Scale(mode, cmap, percentile)
    scaled = scale_map(m, mode, percentile)  # one scale for the clip
    shown = np.unique(np.linspace(0, t_len - 1, min(max_frames, t_len)).round().astype(int))
    rows = 2 if show_frames else 1
    bars = colorbar and method in ("heat_map", "blended_heat_map")
    fig = new_figure(panel_size * len(shown) + (0.8 if bars else 0), panel_size * rows + 0.5)
    axes = fig.subplots(rows, len(shown), squeeze=False)
    for j, t in enumerate(shown):
        if show_frames:
            _draw(axes[0, j], tiles[t], f"t = {t}", 8)
        rgb = compose(tiles[t], scaled[t], method, scale, alpha)
        _draw(axes[-1, j], rgb, None if show_frames else f"t = {t}", 8)
    if show_frames:
        axes[0, 0].set_ylabel("frames", fontsize=8)
    axes[-1, 0].set_ylabel(method.replace("_", " "), fontsize=8)
    if bars:
        _add_colorbar(fig, scale, axes[-1, :], label=scale.label() + " (whole clip)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
