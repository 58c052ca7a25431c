"""`make demo` at a reduced size: the report files exist and the table has a row per method."""

from __future__ import annotations

import json

from xaijax.cli import _methods, demo


def test_small_demo_writes_a_complete_report(tmp_path, capsys):
    out, cache = tmp_path / "demo", tmp_path / "ckpt"
    argv = ["--small", "--out", str(out), "--cache", str(cache), "--no-progress"]
    assert demo.main(argv) == 0
    for name in ("report.md", "report.html", "figure.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    names = [r["method"] for r in summary["rows"]]
    assert len(names) == len(set(names)) >= 12
    report = (out / "report.md").read_text()
    printed = capsys.readouterr().out
    for name in names:
        assert f"| {name} |" in report and f"| {name} |" in printed
    for row in summary["rows"]:
        assert 0.0 <= row["pointing game"] <= 1.0 and 0.0 <= row["energy in mask"] <= 1.0
        assert row["ms / image"] > 0
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(_methods.image_methods.__doc__) > 0
