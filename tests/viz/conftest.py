"""matplotlib draws off-screen in the viz tests (the Agg backend, no display needed)."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
