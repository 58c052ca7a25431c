"""The notebooks in colab/ are committed clean and run top to bottom at their small size.

Every notebook is nbformat 4.5 with an id on every cell and no saved outputs, and starts with
three code cells: the install cell (``XAIJAX_SOURCE``, the one place a reader sets; nothing is
installed when xaijax is importable), a runtime check that prints ``jax.devices()``, and an
ordinary parameter cell (tagged ``parameters``, as papermill and nbclient users know it) that
sets ``SMALL = False``. ``make test`` executes each notebook with that one line rewritten to
``SMALL = True``: through nbclient on a kernel of this Python (the venv's) when nbclient and
ipykernel are installed, else by running the code cells in one namespace.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import sys
import types

import pytest

COLAB = pathlib.Path(__file__).resolve().parents[1] / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))
#: The switch a reader flips, as the parameter cell must spell it (the full run by default).
SMALL_LINE = re.compile(r"^SMALL = False(?=\s|$)", re.M)
#: Seconds one cell may run under nbclient before the test fails (a small run takes < 2 min).
CELL_TIMEOUT = 600

parametrize = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)


def _load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _parameter_cell(nb: dict) -> dict:
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells tagged 'parameters' (need exactly one)"
    return tagged[0]


def _small(nb: dict) -> dict:
    """A copy of ``nb`` (sources as strings) whose parameter cell says ``SMALL = True``."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        cell["source"] = _source(cell)
    cell = _parameter_cell(nb)
    source, count = SMALL_LINE.subn("SMALL = True", _source(cell))
    assert count == 1, "the parameter cell must set `SMALL = False` once, on a line of its own"
    cell["source"] = source
    return nb


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {
        "quickstart.ipynb",
        "superpixels.ipynb",
        "fixations.ipynb",
        "dataset_scale.ipynb",
        "visual_summaries.ipynb",
        "eat.ipynb",
        "anchornet.ipynb",
    }


@parametrize
def test_notebook_is_committed_clean(path):
    nb = _load(path)
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5), "cell ids need nbformat 4.5"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    problems, ids = [], []
    for i, cell in enumerate(nb["cells"]):
        if not cell.get("id"):
            problems.append(f"cell {i} has no id")
        ids.append(cell.get("id"))
        if cell["cell_type"] == "code":
            if cell.get("outputs"):
                problems.append(f"cell {i} ({cell.get('id')}) has saved outputs")
            if cell.get("execution_count") is not None:
                problems.append(f"cell {i} ({cell.get('id')}) has an execution count")
    duplicates = {i for i in ids if i and ids.count(i) > 1}
    if duplicates:
        problems.append(f"duplicate cell ids {sorted(duplicates)}")
    assert not problems, f"{path.name}: " + "; ".join(problems) + " (clear outputs, add ids)"
    if importlib.util.find_spec("nbformat") is not None:
        import nbformat

        nbformat.validate(nbformat.reads(path.read_text(), as_version=4))


@parametrize
def test_notebook_starts_with_install_runtime_check_and_parameters(path):
    nb = _load(path)
    code = _code_cells(nb)
    assert len(code) > 3, f"{path.name}: too few code cells"
    install, runtime, parameters = (_source(c) for c in code[:3])
    # 1. Install from the one source the reader sets; skipped when xaijax is importable.
    assert re.search(r"^XAIJAX_SOURCE = ", install, re.M), "first code cell: XAIJAX_SOURCE"
    assert 'find_spec("xaijax")' in install and '"pip", "install"' in install
    # 2. The runtime check prints the devices.
    assert "jax.devices()" in runtime and "print(" in runtime, "second code cell: devices"
    # 3. An ordinary, documented parameter cell with the small-size switch.
    assert code[2] is _parameter_cell(nb), "third code cell: the cell tagged 'parameters'"
    assert SMALL_LINE.search(parameters), "the parameter cell sets `SMALL = False`"
    assert parameters.lstrip().startswith("#"), "the parameter cell starts with a comment"
    everything = "\n".join(_source(c) for c in code)
    assert "globals()" not in everything, "no hidden test hooks: the test rewrites `SMALL`"
    # Progress bars through tqdm.auto (widgets in Colab/Jupyter, text elsewhere).
    assert not re.search(r"^\s*(from tqdm import|import tqdm\b)", everything, re.M)


@pytest.mark.slow
@parametrize
def test_notebook_runs_at_small_size(path, tmp_path, monkeypatch):
    nb = _small(_load(path))
    monkeypatch.chdir(tmp_path)  # figures a notebook writes land in a scratch directory
    # The kernel inherits this process's environment: tests/viz sets MPLBACKEND=Agg, under
    # which `plt.show()` draws nothing; a notebook kernel (Colab's too) uses the inline backend.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    if importlib.util.find_spec("nbclient") and importlib.util.find_spec("ipykernel"):
        import nbclient
        import nbformat

        executed = nbformat.from_dict(nb)
        # The "python3" kernel of ipykernel is this interpreter (the venv's), with its xaijax.
        client = nbclient.NotebookClient(
            executed,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()  # raises CellExecutionError with the cell and its traceback
        images = [
            o
            for c in executed.cells
            if c.cell_type == "code"
            for o in c.outputs
            if "image/png" in o.get("data", {})
        ]
        assert images, f"{path.name} showed no figure"
    else:  # no notebook runner: run the code cells in one namespace, in this process
        if importlib.util.find_spec("IPython") is None:
            display = types.ModuleType("IPython.display")
            display.display = lambda *a, **k: None
            display.Image = display.HTML = lambda *a, **k: None
            monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
            monkeypatch.setitem(sys.modules, "IPython.display", display)
        namespace: dict = {"__name__": "__main__"}
        for i, cell in enumerate(_code_cells(nb)):
            code = compile(_source(cell), f"{path.name}[code cell {i}]", "exec")
            exec(code, namespace)  # noqa: S102
