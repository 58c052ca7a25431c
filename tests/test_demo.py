"""`make demo` at a reduced size: the report files exist and the table has a row per method."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from xaijax import errors, pipeline
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
    # The HTML page fits a laptop screen and shows code as code, not as backticks.
    page = (out / "report.html").read_text()
    assert "`" not in page and "max-width:100%" in page
    for name in names:
        assert f"<code>{name}</code>" in page
    width, height = Image.open(out / "figure.png").size
    assert 600 < width <= 1400 and height < width
    # The whole test set went through the pipeline: its store holds Grad-CAM of every image.
    d = summary["dataset"]
    res = pipeline.open_results(d["store"])
    assert res.complete and d["store"] in printed and "test_set" in report
    assert d["examples"] == len(res) and res.manifest["explainer"] == "grad_cam"
    assert d["pointing_game"] == pytest.approx(res.read("pointing_game").mean())
    m = res.read("spatial_map")
    assert m.shape[1:] == (64, 64) and np.isfinite(m).all() and m.max() > 0
    # The same images explained in the table by a plain call: the same metrics.
    row = next(r for r in summary["rows"] if r["method"] == "grad_cam")
    k = summary["n_explain"]
    assert row["energy in mask"] == pytest.approx(res.read("energy_in_mask")[:k].mean(), abs=1e-5)
    assert row["pointing game"] == pytest.approx(res.read("pointing_game")[:k].mean())


def test_demo_figure_is_a_titled_grid_with_a_colour_bar(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(6, 16, 16, 3)).astype(np.float32)
    masks = rng.uniform(size=(6, 16, 16)) > 0.5
    maps = {"gradient": rng.uniform(size=(6, 16, 16)), "occlusion": rng.normal(size=(6, 16, 16))}
    fig = demo.figure(images, masks, maps, labels=np.arange(6))
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == demo.FIGURE_ROWS * 4  # rows: a few images; 4 columns
    assert [ax.get_title() for ax in panels[:4]] == [
        "image",
        "ground\ntruth",
        "gradient",
        "occlusion",
    ]
    assert panels[0].get_ylabel() == "class 0"
    bars = [ax for ax in fig.axes if not ax.get_images()]
    assert sorted(b.get_ylim() for b in bars) == [(-1.0, 1.0), (0.0, 1.0)]  # signed + one-signed
    summary = {
        "model": "m",
        "steps": 1,
        "test_accuracy": 0.5,
        "n_explain": 6,
        "object_share": 0.5,
        "backend": "cpu",
        "rows": [],
    }
    demo.write_report(str(tmp_path), summary, images, masks, maps, np.arange(6))
    page = (tmp_path / "report.html").read_text()
    assert "<code>m</code>" in page and not re.search(r"`[^`]+`", page)
    assert "<code>occlusion</code>) the diverging one" in page


def test_unwritable_out_fails_before_any_work(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("a regular file: nothing can be created below it, not even by root")

    def no_work(*args, **kwargs):
        raise AssertionError("the demo started working before checking --out")

    monkeypatch.setattr(demo.synthetic, "make_images", no_work)
    out = afile / "out"
    argv = ["--small", "--out", str(out), "--cache", str(tmp_path / "ckpt"), "--no-progress"]
    with pytest.raises(errors.OutputPathError, match="--out") as info:
        demo.main(argv)
    assert str(out) in str(info.value)
    assert not (tmp_path / "ckpt").exists()
    # A writable --out is created and left without the probe file.
    fresh = tmp_path / "new" / "out"
    demo.check_output_dir(str(fresh))
    assert fresh.is_dir() and list(fresh.iterdir()) == []


def test_rise_is_shown_above_its_minimum_and_the_caption_says_by_how_much():
    rng = np.random.default_rng(0)
    rise = 0.9 + 0.1 * rng.random((3, 8, 8)).astype(np.float32)  # an offset near 1
    grad = rng.random((3, 8, 8)).astype(np.float32)
    title, shown = demo._shown("rise", rise)
    assert title == "rise (above min)"
    np.testing.assert_allclose(shown.min(axis=(1, 2)), 0.0)
    np.testing.assert_allclose(shown, rise - rise.min(axis=(1, 2), keepdims=True))
    assert demo._shown("gradient", grad) == ("gradient", grad)  # other maps: unchanged
    note = demo._offset_note({"rise": rise, "gradient": grad}, shown=3)
    spread = (rise.max(axis=(1, 2)) - rise.min(axis=(1, 2))) / rise.max(axis=(1, 2))
    assert f"{spread.min():.0%}-{spread.max():.0%}" in note
    assert demo._offset_note({"gradient": grad}, shown=3) == ""
