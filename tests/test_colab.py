"""The notebooks in colab/ run as written (at a reduced size: ``SMALL = True``)."""

from __future__ import annotations

import json
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "colab").glob("*.ipynb"))


def test_there_is_a_notebook():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # figures land in a scratch directory
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {"SMALL": True}
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        code = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("!", "%")))
        exec(compile(code, f"{path.name}[cell {i}]", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "quickstart.png").stat().st_size > 0
    assert set(namespace["maps"]) >= {"gradient", "Grad-CAM", "CNN Fixations", "GWS"}
