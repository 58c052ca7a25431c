"""Tokens coloured by their attribution: HTML for notebooks, a matplotlib figure for files.

Colours follow one diverging scale in both: red is positive evidence for the explained class,
blue negative, white zero; each sequence is scaled by its own largest ``|score|`` (``percentile``
100), so the strongest token of a sentence has the strongest colour. :func:`text_html` needs only
NumPy; :func:`show_text` needs matplotlib.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

from xaijax import errors
from xaijax.viz import _checks
from xaijax.viz._checks import as_maps, shape_str
from xaijax.viz._images import colorize, resolve_sign, scale_map


class HTML(str):
    """An HTML string that Jupyter and Colab render (it has ``_repr_html_``); still a ``str``."""

    def _repr_html_(self) -> str:
        return str(self)


def _sequences(tokens, scores) -> list[tuple[list[str], np.ndarray]]:
    """``[(tokens, scores [L]), ...]`` from one sequence, a batch ``[B, L]``, or a list of
    sequences of different lengths (``scores`` then a list of ``[L_i]`` arrays)."""
    if isinstance(tokens, str):
        raise errors.InvalidArgumentError(
            "`tokens` is one string: pass the list of tokens the scores belong to, e.g. "
            "`text.split()` or the tokenizer's tokens."
        )
    tokens = list(tokens)
    nested = bool(tokens) and not isinstance(tokens[0], str) and hasattr(tokens[0], "__len__")
    if nested and isinstance(scores, list | tuple) and len(scores) == len(tokens):
        rows = [as_maps(sc, f"scores[{i}]") for i, sc in enumerate(scores)]
    else:
        s = as_maps(scores, "scores")
        if s.ndim not in (1, 2) or (s.ndim == 2) != nested:
            raise errors.InputShapeError(
                f"`scores` of shape {shape_str(s.shape)} does not fit `tokens` ("
                + ("a batch of sequences" if nested else "one sequence")
                + "): give [L] scores for one list of tokens, [B, L] (or a list of [L_i]) for B "
                "lists. Reduce embedding-level attributions over the feature axis first "
                "(e.g. `.sum(-1)`)."
            )
        rows = list(s) if nested else [s]
    seqs = [list(t) for t in tokens] if nested else [tokens]
    if len(rows) != len(seqs):
        raise errors.InputShapeError(
            f"{len(rows)} score sequence(s) for {len(seqs)} token sequence(s): give one per "
            "sequence."
        )
    out = []
    for i, (toks, sc) in enumerate(zip(seqs, rows, strict=True)):
        if sc.ndim != 1 or len(toks) != sc.shape[0]:
            where = f"sequence {i}" if nested else "the sequence"
            raise errors.InputShapeError(
                f"{where} has {len(toks)} tokens but scores of shape {shape_str(sc.shape)}: "
                "give one score per token (slice off padding, e.g. `scores[:len(tokens)]`)."
            )
        out.append(([str(t) for t in toks], sc))
    return out


def _colours(scaled: np.ndarray, mode: str) -> np.ndarray:
    """RGB of scaled scores on the diverging scale (white = 0, red = +1, blue = -1)."""
    if mode == "all":
        return colorize((scaled + 1.0) / 2.0, "RdBu_r")
    if mode == "negative":
        return colorize(0.5 - scaled / 2.0, "RdBu_r")
    return colorize(0.5 + scaled / 2.0, "RdBu_r")


def _css(rgb: np.ndarray) -> str:
    r, g, b = (int(round(float(c) * 255)) for c in rgb)
    return f"rgb({r},{g},{b})"


def _ink(rgb: np.ndarray) -> str:
    return "#fff" if float(rgb @ np.array([0.299, 0.587, 0.114])) < 0.45 else "#000"


def text_html(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    scores: np.ndarray,
    *,
    sign: str = "auto",
    percentile: float = 100.0,
    titles: Sequence[str] | None = None,
) -> HTML:
    """Tokens on backgrounds coloured by their scores, as HTML (shown inline in notebooks).

    Args:
      tokens: one sequence of tokens (strings) or a batch (a list of such lists).
      scores: ``[L]`` (one sequence), ``[B, L]`` or a list of ``[L_i]`` arrays (a batch):
        one attribution per token.
      sign: ``"auto"`` (``"all"`` if any score of the batch is negative, else ``"positive"``),
        ``"all"``, ``"positive"``, ``"negative"`` or ``"absolute"``; decided once for the batch.
      percentile: each sequence is divided by this percentile of its ``|scores|`` (100: the
        largest).
      titles: a caption per sequence (e.g. the label).

    Returns:
      :class:`HTML`, a ``str`` with ``_repr_html_``. Each token is a
      ``<span data-score="..." style="background:rgb(...)">token</span>`` (hover shows the
      score); a legend under the text explains the scale.

    Raises:
      InputShapeError: a number of tokens that differs from the number of scores.
      InvalidArgumentError: an unknown ``sign``, ``tokens`` given as one string, ``titles`` not
        a list of strings, one per sequence.
      NonFiniteInputError: NaN or Inf scores.

    Examples:
      >>> import numpy as np
      >>> page = text_html(["good", "bad", "movie"], np.array([1.0, -1.0, 0.0]))
      >>> "good" in page and "rgb(103,0,31)" in page  # +1: the darkest red
      True
    """
    seqs = _sequences(tokens, scores)
    percentile = _checks.check_percentile(percentile)
    mode = resolve_sign(sign, [s for _, s in seqs])
    if titles is not None:
        titles = _checks.check_texts(titles, "titles", "sequence")
    if titles is not None and len(titles) != len(seqs):
        raise errors.InvalidArgumentError(
            f"`titles` has {len(titles)} entries for {len(seqs)} sequence(s): give one per "
            "sequence."
        )
    blocks = []
    for i, (toks, sc) in enumerate(seqs):
        colours = _colours(scale_map(sc, mode, percentile), mode)
        spans = " ".join(
            f'<span data-score="{float(v):.6g}" title="{float(v):.4g}" style="background:'
            f"{_css(c)};color:{_ink(c)};padding:1px 3px;border-radius:3px;"
            f'white-space:pre-wrap">{html.escape(t)}</span>'
            for t, v, c in zip(toks, sc, colours, strict=True)
        )
        caption = (
            f'<div style="font-weight:bold;margin-top:.4em">{html.escape(str(titles[i]))}</div>'
            if titles is not None
            else ""
        )
        blocks.append(f'{caption}<div style="line-height:1.9">{spans}</div>')
    stops = np.linspace(-1.0 if mode == "all" else 0.0, 1.0, 9)
    gradient = ", ".join(_css(c) for c in _colours(stops, mode))
    p = "largest" if percentile == 100 else f"{percentile:g}th percentile of"
    shown = {
        "all": "score",
        "positive": "max(score, 0)",
        "negative": "max(-score, 0)",
        "absolute": "|score|",
    }[mode]
    low, high = ("-1 (against)", "+1 (for)") if mode == "all" else ("0", "1")
    legend = (
        '<div style="font-size:80%;margin-top:.5em;color:#444">'
        f'{low} <span style="display:inline-block;width:12em;height:.9em;vertical-align:middle;'
        f'background:linear-gradient(to right, {gradient})"></span> {high}: colour = {shown} / '
        f"the {p} |score| of its sequence; hover a token for its score.</div>"
    )
    return HTML(
        '<div class="xaijax-text" style="font-family:monospace;max-width:100%">'
        + "".join(blocks)
        + legend
        + "</div>"
    )


def show_text(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    scores: np.ndarray,
    *,
    sign: str = "auto",
    percentile: float = 100.0,
    titles: Sequence[str] | None = None,
    width: int = 80,
    fontsize: float = 11.0,
    colorbar: bool = True,
) -> Any:
    """Tokens on coloured backgrounds as a matplotlib figure (for PNG files and papers).

    Same colours as :func:`text_html` (from matplotlib's ``RdBu_r``), in a monospace font, lines
    wrapped at ``width`` characters, with a colour bar.

    Args:
      tokens, scores, sign, percentile, titles: as in :func:`text_html`.
      width: characters per line before a token wraps to the next line.
      fontsize: font size in points (> 0).
      colorbar: a horizontal colour bar under the text.

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      InputShapeError, InvalidArgumentError, NonFiniteInputError: as :func:`text_html`;
      MissingDependencyError: matplotlib is not installed.

    Examples:
      >>> import numpy as np
      >>> fig = show_text(["a", "fine", "film"], np.array([0.0, 2.0, -0.5]))
      >>> [t.get_text() for t in fig.axes[0].texts]
      ['a', 'fine', 'film']
    """
    from xaijax.viz._plots import new_figure

    seqs = _sequences(tokens, scores)
    percentile = _checks.check_percentile(percentile)
    mode = resolve_sign(sign, [s for _, s in seqs])
    if isinstance(width, bool) or not isinstance(width, int) or width < 8:
        raise errors.InvalidArgumentError(f"`width` must be an integer >= 8, got {width!r}.")
    fontsize = _checks.check_positive(fontsize, "fontsize")
    if titles is not None:
        titles = _checks.check_texts(titles, "titles", "sequence")
    if titles is not None and len(titles) != len(seqs):
        raise errors.InvalidArgumentError(
            f"`titles` has {len(titles)} entries for {len(seqs)} sequence(s): give one per "
            "sequence."
        )
    mpl = _checks.matplotlib()
    cmap = mpl.colormaps["RdBu_r"]
    if mode != "all":  # one-signed: the white-to-red (or white-to-blue) half
        half = np.linspace(0.5, 1.0, 128) if mode != "negative" else np.linspace(0.5, 0.0, 128)
        cmap = mpl.colors.ListedColormap(cmap(half), name=f"RdBu_r_{mode}")
    norm = mpl.colors.Normalize(-1.0 if mode == "all" else 0.0, 1.0)

    # Lay tokens out in character cells: x in characters, y in lines.
    placed = []  # (x, line, token, scaled)
    line = 0
    labels = []
    for i, (toks, sc) in enumerate(seqs):
        if titles is not None:
            labels.append((line, str(titles[i])))
            line += 1
        scaled = scale_map(sc, mode, percentile)
        x = 0
        for t, v in zip(toks, scaled, strict=True):
            n = max(len(t), 1)
            if x > 0 and x + n > width:
                x, line = 0, line + 1
            placed.append((x, line, t, v))
            x += n + 1
        line += 2  # a blank line between sequences
    lines = max(line - 1, 1)
    char_w = 0.602 * fontsize / 72.0  # monospace advance, inches
    line_h = 1.9 * fontsize / 72.0
    used = max((x + len(t) for x, _, t, _ in placed), default=1)
    text_w = max(used, 10) * char_w
    bar_h = 0.75 if colorbar else 0.0
    fig = new_figure(text_w + 0.4, lines * line_h + 0.3 + bar_h)
    fig.set_layout_engine("none")
    fig_w, fig_h = fig.get_size_inches()
    ax = fig.add_axes((0.2 / fig_w, (bar_h + 0.1) / fig_h, text_w / fig_w, lines * line_h / fig_h))
    ax.set_xlim(0, max(used, 10))
    ax.set_ylim(lines - 0.5, -0.5)
    ax.set_axis_off()
    for x, y, t, v in placed:
        colour = cmap(norm(v))
        ink = _ink(np.asarray(colour[:3]))
        ax.text(
            x,
            y,
            t,
            family="monospace",
            fontsize=fontsize,
            va="center",
            ha="left",
            color=ink,
            parse_math=False,
            bbox={"boxstyle": "square,pad=0.12", "fc": colour, "ec": "none"},
        )
    for y, label in labels:
        ax.text(
            0, y, label, fontsize=fontsize * 0.85, fontweight="bold", va="center", parse_math=False
        )
    if colorbar:
        cax = fig.add_axes((0.2 / fig_w, 0.42 / fig_h, min(text_w, 3.0) / fig_w, 0.12 / fig_h))
        bar = fig.colorbar(
            mpl.cm.ScalarMappable(norm=norm, cmap=cmap),
            cax=cax,
            orientation="horizontal",
            ticks=[-1, 0, 1] if mode == "all" else [0, 0.5, 1],
        )
        bar.ax.tick_params(labelsize=7)
        p = "max" if percentile == 100 else f"P{percentile:g}"
        shown = {"all": "s", "positive": "max(s, 0)", "negative": "max(-s, 0)", "absolute": "|s|"}
        bar.set_label(
            f"{shown[mode]} / {p}(|s|) per sequence (red: for, blue: against)", fontsize=7
        )
    return fig
