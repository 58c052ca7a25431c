"""Figures people read: attribution maps, superpixels, boxes, video strips and text.

Two layers:

* **Arrays (NumPy only)**: :func:`normalize`, :func:`colorize`, :func:`heatmap`,
  :func:`overlay`, :func:`grid`, :func:`segment_boundaries`, :func:`mark_boundaries`,
  :func:`image_and_mask`, :func:`encode_png` / :func:`save_png` (pillow) and
  :func:`text_html` (an HTML string notebooks render).
* **Figures (matplotlib, imported when called; ``pip install 'xaijax[viz]'``)**, in the manner
  of Captum's ``visualize_image_attr``: :func:`show` (maps of one image), :func:`show_grid`
  (rows = images, titled columns = methods, colour bars), :func:`show_segments` (GWS / LIME
  superpixels and top-k segments), :func:`show_boxes` (fixations, boxes, patches),
  :func:`show_video` (a strip of frames), :func:`show_text` (coloured tokens) and
  :func:`show_results` (a dataset-scale run's stored maps beside their images, each row titled
  with its class, prediction and metrics; reads an :func:`xaijax.pipeline.open_results` store
  lazily). Each returns a ``matplotlib.figure.Figure``; write it with ``fig.savefig(path)`` or
  :func:`save_png`.

Signed maps get a diverging colour map centred at 0 (``RdBu_r``: blue < 0 < red, 0 white);
one-signed maps a sequential one (``viridis``). Every map is scaled on its own (a percentile of
its magnitude), and colour bars show that scaled value. See :mod:`xaijax.viz._plots` for the
rules (channel reduction, ``sign``, ``method``).

Example:
    >>> import numpy as np
    >>> from xaijax import viz
    >>> rng = np.random.default_rng(0)
    >>> images = rng.uniform(size=(2, 16, 16, 3))
    >>> maps = {"gradient": rng.normal(size=(2, 16, 16)), "grad_cam": rng.uniform(size=(2, 16, 16))}
    >>> fig = viz.show_grid(images, maps)  # 2 rows, columns: image | gradient | grad_cam
    >>> fig.axes[1].get_title()
    'gradient'
"""

from xaijax.viz._images import (
    COLORMAPS,
    SIGNS,
    colorize,
    grid,
    heatmap,
    normalize,
    overlay,
)
from xaijax.viz._plots import METHODS, show, show_boxes, show_grid, show_segments, show_video
from xaijax.viz._png import encode_png, save_png
from xaijax.viz._results import show_results
from xaijax.viz._segments import image_and_mask, mark_boundaries, segment_boundaries
from xaijax.viz._text import HTML, show_text, text_html

__all__ = [
    "COLORMAPS",
    "HTML",
    "METHODS",
    "SIGNS",
    "colorize",
    "encode_png",
    "grid",
    "heatmap",
    "image_and_mask",
    "mark_boundaries",
    "normalize",
    "overlay",
    "save_png",
    "segment_boundaries",
    "show",
    "show_boxes",
    "show_grid",
    "show_results",
    "show_segments",
    "show_text",
    "show_video",
    "text_html",
]
