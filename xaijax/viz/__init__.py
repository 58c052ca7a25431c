"""Display helpers: heatmaps, overlays, figure grids, PNG files (NumPy only)."""

from xaijax.viz._images import colorize, encode_png, grid, heatmap, normalize, overlay, save_png

__all__ = ["colorize", "encode_png", "grid", "heatmap", "normalize", "overlay", "save_png"]
