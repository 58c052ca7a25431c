"""The README's Python examples run as written."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python examples"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["saliency"].shape == (4, 32, 32, 3)
    assert abs(float(namespace["gap"].max())) < 1e-2


def test_readme_device_example_runs_in_a_fresh_process():
    """The `py` blocks need a fresh process (they opt in to CPU devices before JAX starts)."""
    import os
    import subprocess
    import sys

    blocks = re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    for block in blocks:
        out = subprocess.run([sys.executable, "-c", block], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        used = int(out.stdout.split()[0])  # devices the batch of 32 was sharded over
        assert used >= 2 and 32 % used == 0, out.stdout
