"""The main job (``make demo``): train, explain a held-out batch with every method, score, report.

On the embedded synthetic benchmark (``xaijax.data.synthetic``, with ground-truth object
masks) it trains an image model from the zoo, or restores it from ``out/checkpoints``, explains
a held-out batch with every method of the library, prints a table (pointing game, energy in the
ground-truth mask, deletion AUC, milliseconds per image) and writes a figure grid and a
Markdown and HTML report to ``out/demo/``. Then it explains the whole test set with Grad-CAM
through the dataset pipeline (``xaijax.pipeline``) into a zarr v3 store, ``out/demo/test_set``,
with per-example metrics, and prints its path.

    python -m xaijax.cli.demo            # full size, a few minutes on a 2-core CPU
    python -m xaijax.cli.demo --small    # reduced size, used by the tests

All numbers are on synthetic data: they say how the methods compare on this benchmark, not
what the papers report on ImageNet.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import xaijax
from xaijax import _paths, metrics, models, pipeline, training, viz
from xaijax.cli import _methods
from xaijax.data import ArraySource, synthetic

COLUMNS = ("method", "pointing game", "energy in mask", "deletion AUC", "ms / image")


def _progress(iterable, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="xaijax demo on the embedded synthetic benchmark.")
    p.add_argument("--small", action="store_true", help="reduced size (tests, smoke runs)")
    p.add_argument("--out", default="out/demo", help="report directory")
    p.add_argument("--cache", default="out/checkpoints", help="checkpoint cache directory")
    p.add_argument("--model", default="vgg", help="image model from the zoo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--explain", type=int, default=None, help="held-out images to explain")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def check_output_dir(out: str) -> None:
    """Makes sure the report directory ``out`` can be written, before any work starts, and
    creates it (with its parents).

    Raises:
      OutputPathError: ``out`` cannot be created or written (e.g. it lies below a regular file,
        on a read-only file system, or is itself a file).
    """
    _paths.check_writable_dir(out, "--out", "the report (written after all the work)")
    os.makedirs(out, exist_ok=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_output_dir(args.out)  # fail now, not after training and explaining
    small = args.small
    progress = not args.no_progress
    # 300 steps of batch 32 reach >= 99% test accuracy for the image zoo
    # (experiments/results/train_zoo.md).
    n_train, n_test, steps = (512, 64, 40) if small else (6000, 512, 300)
    n_explain = args.explain or (2 if small else 16)
    cfg = synthetic.ImageConfig()
    t0 = time.perf_counter()
    train = synthetic.make_images(n_train, seed=args.seed, split="train", config=cfg)
    test = synthetic.make_images(n_test, seed=args.seed, split="test", config=cfg)
    print(
        f"data: {n_train} train / {n_test} test synthetic images "
        f"({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )

    model = models.get_model(args.model, num_classes=cfg.num_classes)
    apply_fn = jax.jit(models.apply_fn(model))
    result = training.train_or_restore(
        f"demo-{args.model}{'-small' if small else ''}",
        model,
        train,
        input_key="image",
        steps=steps,
        batch_size=64,
        seed=args.seed,
        cache_dir=args.cache,
        progress=progress,
    )
    params = result.params
    acc = training.evaluate(apply_fn, params, test["image"], test["label"], batch_size=64)
    how = "restored from cache" if result.resumed_from == steps else "trained"
    print(
        f"model: {args.model} {how}, {steps} steps, test accuracy {acc:.3f} (synthetic)", flush=True
    )

    x = jnp.asarray(test["image"][:n_explain])
    target = jnp.asarray(test["label"][:n_explain])
    mask = jnp.asarray(test["object_mask"][:n_explain])
    rows, maps = [], {}
    probability = xaijax.model(apply_fn, score="probability")  # deletion AUC of probabilities
    for method in _progress(
        _methods.image_methods(model, apply_fn, small=small), "methods", progress
    ):
        saliency = jax.block_until_ready(method.run(params, x, target))  # compile + warm-up
        start = time.perf_counter()
        saliency = jax.block_until_ready(method.run(params, x, target))
        ms = (time.perf_counter() - start) * 1e3 / n_explain
        saliency = jnp.asarray(saliency, jnp.float32)
        maps[method.name] = np.asarray(saliency)
        rows.append(
            {
                "method": method.name,
                "pointing game": float(metrics.pointing_game(saliency, mask).mean()),
                "energy in mask": float(metrics.energy_in_mask(saliency, mask).mean()),
                "deletion AUC": float(
                    metrics.deletion_auc(
                        probability, params, x, saliency, target, chunk_size=16
                    ).mean()
                ),
                "ms / image": ms,
                "note": method.note,
            }
        )
    object_share = float(np.asarray(mask).mean())
    dataset = explain_test_set(model, params, test, os.path.join(args.out, "test_set"), progress)
    summary = {
        "model": args.model,
        "steps": steps,
        "test_accuracy": acc,
        "n_explain": n_explain,
        "object_share": object_share,
        "rows": rows,
        "small": small,
        "backend": jax.default_backend(),
        "dataset": dataset,
    }
    write_report(args.out, summary, np.asarray(x), np.asarray(mask), maps, np.asarray(target))
    return summary


def explain_test_set(model, params, test: dict, out: str, progress: bool) -> dict[str, Any]:
    """Every test image explained with Grad-CAM through :func:`xaijax.pipeline.explain_dataset`
    (all devices, a fresh store each run), with the energy in the object mask, the pointing
    game and the top-5 classes of each example stored beside its map."""
    n = len(test["label"])
    devices = jax.device_count()
    batch_size = max(64 // devices, 1) * devices
    explainer = xaijax.grad_cam(model, model.cam_layer)
    res = pipeline.explain_dataset(
        explainer,
        params,
        ArraySource({k: test[k] for k in ("image", "label", "object_mask")}),
        out,
        batch_size=batch_size,
        input_key="image",
        target_key="label",
        mask_key="object_mask",
        resume=False,
        progress=progress,
    )
    summary = res.summary()
    print(
        f"dataset: {n} test images explained with grad_cam through xaijax.pipeline in "
        f"{res.stats['seconds']:.1f} s on {devices} {jax.default_backend()} device(s): "
        f"accuracy {summary['accuracy']:.3f}, energy in mask {summary['energy_in_mask']:.3f}, "
        f"pointing game {summary['pointing_game']:.3f} (synthetic); store {res.path} "
        "(open it with xaijax.pipeline.open_results)",
        flush=True,
    )
    return {"method": "grad_cam", "examples": n, "store": res.path, **summary}


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['pointing game']:.2f} | {r['energy in mask']:.2f} | "
            f"{r['deletion AUC']:.3f} | {r['ms / image']:.1f} |"
        )
    return "\n".join(lines)


#: Rows (held-out images) drawn in the figure; the table scores all explained images.
FIGURE_ROWS = 4

_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1400px;"
    "margin:1.5em auto;padding:0 1em;color:#222;line-height:1.45}"
    "p,table{max-width:64em}"
    "code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;background:#f2f2f2;"
    "padding:.05em .3em;border-radius:3px}"
    "table{border-collapse:collapse;margin:1em 0;font-size:.95em}"
    "th,td{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:left}"
    "th{background:#f4f4f4;border-bottom:2px solid #bbb}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tr:nth-child(even) td{background:#fafafa}"
    "td.note{color:#555;font-size:.9em}"
    "figure{margin:1em 0}figure img{max-width:100%;height:auto;display:block}"
    "figcaption{max-width:64em;color:#444;font-size:.92em;margin-top:.4em}"
)


def _inline(text: str) -> str:
    """Escapes ``text`` for HTML and renders Markdown code spans (`x`) as ``<code>x</code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def figure(
    images: np.ndarray,
    masks: np.ndarray,
    maps: dict[str, np.ndarray],
    labels: np.ndarray | None = None,
):
    """The demo figure: a row per image, titled columns image | ground truth | one per method,
    a shared colour bar (every map scaled to [0, 1] by its own 99.5th percentile)."""
    rows = min(len(images), FIGURE_ROWS)
    return viz.show_grid(
        images[:rows],
        dict(_shown(name, m[:rows]) for name, m in maps.items()),
        references={"ground truth": masks[:rows].astype(np.float32)},
        row_titles=None if labels is None else [f"class {int(c)}" for c in labels[:rows]],
        colorbar="shared",
        panel_size=0.9,
        title_width=11,
    )


def _shown(name: str, m: np.ndarray) -> tuple[str, np.ndarray]:
    """The column title and map the figure shows for method ``name``: the map itself, or for
    :data:`_methods.SHOWN_ABOVE_MINIMUM` the map above each image's minimum."""
    if name not in _methods.SHOWN_ABOVE_MINIMUM:
        return name, m
    m = np.asarray(m, np.float32)
    return f"{name} (above min)", m - m.min(axis=(1, 2), keepdims=True)


def _offset_note(maps: dict[str, np.ndarray], shown: int) -> str:
    """A sentence on the maps shown above their minimum, with their measured spread."""
    parts = []
    for name in _methods.SHOWN_ABOVE_MINIMUM:
        if name not in maps:
            continue
        m = np.asarray(maps[name][:shown], np.float64)
        lo, hi = m.min(axis=(1, 2)), m.max(axis=(1, 2))
        spread = (hi - lo) / np.maximum(np.abs(hi), 1e-12)
        parts.append(
            f"`{name}` is shown above each image's minimum (a min-max colour scale, as in the "
            f"RISE authors' figures): its raw maps run from {lo.min():.2f}-{lo.max():.2f} to "
            f"{hi.min():.2f}-{hi.max():.2f}, so they vary by only {spread.min():.0%}-"
            f"{spread.max():.0%} of their maximum (the model is confident under most masks), "
            "which a scale from 0 paints as one flat colour; the table scores the raw maps"
        )
    return "; ".join(parts) + "." if parts else ""


def write_report(
    out: str,
    summary: dict,
    images,
    masks,
    maps: dict[str, np.ndarray],
    labels: np.ndarray | None = None,
) -> None:
    os.makedirs(out, exist_ok=True)
    names = list(maps)
    figure_path = os.path.join(out, "figure.png")
    viz.save_png(figure_path, figure(images, masks, maps, labels), dpi=100)
    table = format_table(summary["rows"])
    head = (
        f"Model `{summary['model']}` ({summary['steps']} training steps, test accuracy "
        f"{summary['test_accuracy']:.3f}), {summary['n_explain']} held-out images, backend "
        f"{summary['backend']}. The object covers {summary['object_share']:.0%} of the pixels, "
        "so a random map scores about that on pointing game and energy. Deletion AUC: lower is "
        "better. All numbers are on xaijax's synthetic benchmark, not the papers' datasets."
    )
    shown = min(len(images), FIGURE_ROWS)
    signed = [n for n in names if (np.asarray(maps[n][:shown]) < 0).any()]
    colours = (
        "one-signed maps use the sequential bar (dark: no evidence, yellow: the strongest)"
        + (
            "; signed maps (" + ", ".join(f"`{n}`" for n in signed) + ") the diverging one "
            "(blue: against the class, white: 0, red: for it)"
            if signed
            else ""
        )
    )
    columns = (
        f"Figure: {shown} of the held-out images (rows, with their class), then the ground-truth "
        "object mask and one column per method: its map blended over the grey image. Each map is "
        "scaled by its own 99.5th percentile of |value|, and the colour bars show that scaled "
        f"value: {colours}. Columns: " + ", ".join(f"`{n}`" for n in names) + "."
    )
    offset = _offset_note(maps, shown)
    if offset:
        columns += " " + offset
    d = summary.get("dataset")
    dataset = (
        f"The whole test set ({d['examples']} images) was then explained with `{d['method']}` "
        f"through the dataset pipeline (`xaijax.pipeline.explain_dataset`) into the zarr v3 "
        f"store `{os.path.basename(d['store'])}/` beside this report: accuracy "
        f"{d['accuracy']:.3f}, energy in mask {d['energy_in_mask']:.3f}, pointing game "
        f"{d['pointing_game']:.3f} (synthetic; read it with `xaijax.pipeline.open_results`)."
        if d
        else ""
    )
    md = ["# xaijax demo report", "", head, "", table, "", columns, "", "![figure](figure.png)"]
    md += ["", dataset, ""] if dataset else [""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(md))
    with open(figure_path, "rb") as f:
        png = base64.b64encode(f.read()).decode()
    numeric = {
        "pointing game": ".2f",
        "energy in mask": ".2f",
        "deletion AUC": ".3f",
        "ms / image": ".1f",
    }
    rows_html = "".join(
        "<tr>"
        + f"<td><code>{html.escape(r['method'])}</code></td>"
        + "".join(f"<td class='num'>{r[c]:{numeric[c]}}</td>" for c in COLUMNS[1:])
        + f"<td class='note'>{_inline(r.get('note', ''))}</td>"
        + "</tr>"
        for r in summary["rows"]
    )
    page = (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>xaijax demo</title><style>{_CSS}</style>"
        f"<h1>xaijax demo report</h1><p>{_inline(head)}</p><table><thead><tr>"
        + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
        + "<th>settings</th></tr></thead>"
        f"<tbody>{rows_html}</tbody></table>"
        f"<figure><img alt='attribution maps of each method, one column per method' "
        f"src='data:image/png;base64,{png}'><figcaption>{_inline(columns)}</figcaption></figure>"
        + (f"<p>{_inline(dataset)}</p>" if dataset else "")
    )
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write(page)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    summary = run(args)
    print()
    print(format_table(summary["rows"]))
    print(
        f"\nreport: {args.out}/report.md, {args.out}/report.html, {args.out}/figure.png "
        f"({time.perf_counter() - start:.0f} s in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
