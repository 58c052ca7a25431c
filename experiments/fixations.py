"""CNN Fixations on the synthetic benchmark: localisation against gradient, Grad-CAM and IG,
cost against one forward pass, and backtracking from each class on two-object images.

Claims checked (GitHub issue "CNN Fixations", targets): on every image architecture of the zoo
the pointing game of the fixation heatmap is at least Grad-CAM's, and explaining costs at most
3x one jitted forward pass of the same batch.

Command::

    .venv/bin/python experiments/fixations.py --num 128              # all six models
    .venv/bin/python experiments/fixations.py --models vgg,resnet --num 32
    .venv/bin/python experiments/fixations.py --models resnet,densenet --merge  # rerun two rows
    .venv/bin/python experiments/fixations.py --quick --num 8 --out /tmp/fixations.md  # smoke

``--quick`` trains the models for a few steps only (a run-through: its numbers mean nothing);
with ``--models vgg,video3d,text1d`` (one image, video and text model) it takes about 90 s.
``--out`` writes the results (and the figure beside them) elsewhere.

Runtime: about 27 minutes with ``--num 128`` on the project's shared 2-core CPU VM when the zoo
models are cached (``training.train_or_restore`` keeps them in ``out/checkpoints``; a first run
trains them, a few minutes more); IG's 32 steps on 128 images are most of it.
``--no-crops`` skips the five-crop protocol rows.

Devices: the script asks JAX for two CPU devices per core (``xaijax.use_cpu_devices()``, the
explicit opt-in since Core v2; importing xaijax no longer does it) so that training splits its
batches over them, as before. The explainers and the forward pass are timed jitted whole on an
unsharded batch (one device), as they were. The deletion AUC is RISE's, on the softmax
probability of the predicted class (``xaijax.model(apply_fn, score="probability")``; since
Core v2 a bare ``apply_fn`` would mean its logits).

Last result: see ``experiments/results/fixations.md`` (written by this script) and the figure
``experiments/results/fixations.png``; rerun on the current code on 2026-11-30 (1054 s with the
six models trained in the run; the README gives the ResNet cost from a quiet rerun of that model
alone: 2.7x with the authors' rules, 3.7x with the variant, over the 3x target).

Every number here is measured on the *synthetic benchmark* of ``xaijax.data.synthetic`` with
small zoo models trained here; none is a reproduction of the paper's ImageNet results.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import xaijax
from xaijax import attribution, metrics, models, training
from xaijax import fixations as fx
from xaijax.data import synthetic

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_MD = os.path.join(HERE, "results", "fixations.md")

# Training settings of experiments/train_zoo.py (the zoo's default synthetic tasks).
ZOO = {
    "vgg": dict(task="image", num_train=8000, steps=300, batch_size=32, lr=2e-3),
    "resnet": dict(task="image", num_train=8000, steps=300, batch_size=32, lr=2e-3),
    "inception": dict(task="image", num_train=8000, steps=300, batch_size=32, lr=2e-3),
    "densenet": dict(task="image", num_train=8000, steps=300, batch_size=32, lr=2e-3),
    "video3d": dict(task="video", num_train=3000, steps=300, batch_size=32, lr=3e-3),
    "text1d": dict(task="text", num_train=4000, steps=400, batch_size=64, lr=3e-3),
}
INPUT_KEY = {"image": "image", "video": "video", "text": "tokens"}
MAKE = {
    "image": synthetic.make_images,
    "video": synthetic.make_videos,
    "text": synthetic.make_texts,
}
MASK_KEY = {"image": "object_mask", "video": "object_mask", "text": "span_mask"}

# Rule variants evaluated beside the default (the authors' rules), per image model: ";"-separated
# entries of ","-separated option=value (see xaijax.fixations.fixations). One variant for every
# image model (residual=both changes nothing without residual junctions), the PyTorch port's
# conv position; the default is never switched.
VARIANT = "conv_position=argmax_contribution,residual=both"
VARIANTS: dict[str, str] = {
    "vgg": VARIANT,
    "resnet": VARIANT,
    "inception": VARIANT,
    "densenet": VARIANT,
}
FIVE_CROPS = ", five crops"  # suffix of the rows explained by the authors' five-crop protocol


def timed(fn, *args, repeats: int = 3) -> float:
    """Median seconds of ``fn(*args)`` after one warm-up (compilation) call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def train_model(name: str, cfg: dict, quick: bool = False):
    task = cfg["task"]
    if quick:  # a smoke test of the script: a few steps, meaningless accuracy
        cfg = dict(cfg, num_train=256, steps=10)
    data = MAKE[task](cfg["num_train"], seed=0, split="train")
    key = INPUT_KEY[task]
    num_classes = int(data["label"].max()) + 1
    model = models.get_model(name, num_classes)
    t = time.perf_counter()
    result = training.train_or_restore(
        f"fixations-{name}{'-quick' if quick else ''}",
        model,
        {key: data[key], "label": data["label"]},
        input_key=key,
        steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        learning_rate=cfg["lr"],
        seed=0,
        progress=False,
    )
    return model, result.params, time.perf_counter() - t


def in_mask_share(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per example: share of the (non-negative) weight inside the mask; 0 without weight."""
    axes = tuple(range(1, weights.ndim))
    w = np.maximum(weights, 0).astype(np.float64)
    total = w.sum(axes)
    return np.where(total > 0, (w * mask).sum(axes) / np.where(total > 0, total, 1), 0.0)


def pointing(saliency: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pointing game on maps of any rank (the arg-max element inside the mask)."""
    flat = saliency.reshape(saliency.shape[0], -1)
    best = np.argmax(flat, axis=1)
    return mask.reshape(mask.shape[0], -1)[np.arange(len(best)), best]


def evaluate(
    name: str,
    model,
    params,
    num: int,
    rows: list,
    timing: list,
    two: list,
    figs: dict,
    variants: dict[str, dict] | None = None,
    crops: bool = True,
):
    variants = variants or {}
    task = ZOO[name]["task"]
    key = INPUT_KEY[task]
    data = MAKE[task](num, seed=0, split="test")
    x = jnp.asarray(data[key])
    mask = np.asarray(data[MASK_KEY[task]])
    apply_fn = models.apply_fn(model)
    # RISE's deletion metric records probabilities; explainers keep the logits (the default).
    probability = xaijax.model(apply_fn, score="probability")
    forward = jax.jit(apply_fn)
    logits = np.asarray(forward(params, x))
    pred = jnp.asarray(logits.argmax(1), jnp.int32)
    accuracy = float((logits.argmax(1) == data["label"]).mean())
    image = task == "image"

    # Explainers, all on the predicted class; each jitted whole (as the forward pass is), so
    # the timings compare compiled programs without the eager argument checks.
    explain_fix = fx.fixations(apply_fn, channel_reduction="count")
    sigma = 1.0 if task == "text" else None  # the image blur (k / 10.45) would smear tokens
    gcam = attribution.grad_cam(model, model.cam_layer)
    methods = {"CNN Fixations": explain_fix}
    for label, options in variants.items():  # documented rule variants, beside the default
        methods[f"CNN Fixations [{label}]"] = fx.fixations(
            apply_fn, channel_reduction="count", **options
        )
    if task != "text":  # gradients of integer token ids do not exist
        grad = attribution.gradient(apply_fn)
        methods["gradient"] = lambda p, x, t: jnp.abs(grad(p, x, t)).sum(-1)
        ig = attribution.integrated_gradients(apply_fn, steps=32, chunk_size=8)
        methods["IG (32 steps)"] = lambda p, x, t: jnp.abs(ig(p, x, t)).sum(-1)
    methods["Grad-CAM"] = gcam
    if image and crops:  # the authors' protocol (papers.md 6(b).8) around the same explainers
        for method in [m for m in methods if m.startswith("CNN Fixations")]:
            methods[method + FIVE_CROPS] = fx.multi_crop(methods[method])
        # The crops' vote reads gcam's own model (the same network's logits).
        methods["Grad-CAM" + FIVE_CROPS] = fx.multi_crop(gcam, reduce="mean")

    t_fwd = timed(forward, params, x)
    for method, explainer in methods.items():
        run = jax.jit(explainer)
        seconds = timed(run, params, x, pred)
        out = np.asarray(run(params, x, pred))
        is_fix = method.startswith("CNN Fixations")
        if is_fix:
            counts = out
            sal = np.asarray(fx.heatmap(counts, sigma=sigma))
            share = in_mask_share(counts, mask)
            if method == "CNN Fixations":
                figs[name] = dict(
                    x=np.asarray(x[:4]), counts=counts[:4], heat=sal[:4], mask=mask[:4]
                )
        else:
            sal = out
            share = in_mask_share(sal, mask)
            if method == "Grad-CAM" and name in figs:
                figs[name]["gradcam"] = sal[:4]
        row = dict(
            model=name,
            task=task,
            accuracy=accuracy,
            method=method,
            share=float(share.mean()),
            pointing=float(pointing(sal, mask).mean()),
            seconds=seconds / num,
            box_points=None,
            box_heat=None,
            deletion=None,
        )
        if image:
            gt_box = np.asarray(data["box"])
            if is_fix:
                for rule in ("points", "heatmap"):
                    b = np.asarray(fx.boxes(counts, rule=rule))
                    hit = np.asarray(metrics.box_iou(b, gt_box)) >= 0.5
                    row["box_points" if rule == "points" else "box_heat"] = float(hit.mean())
            else:
                b = np.asarray(metrics.box_from_map(sal))
                row["box_heat"] = float((np.asarray(metrics.box_iou(b, gt_box)) >= 0.5).mean())
            auc = metrics.deletion_auc(probability, params, x, jnp.asarray(sal, jnp.float32), pred)
            row["deletion"] = float(np.asarray(auc).mean())
        rows.append(row)
        if is_fix:
            timing.append(
                dict(
                    model=name,
                    method=method,
                    fixations_ms=1e3 * seconds / num,
                    forward_ms=1e3 * t_fwd / num,
                    ratio=seconds / t_fwd,
                )
            )
        print(
            f"  {name} {method}: share {row['share']:.3f} pointing {row['pointing']:.3f}",
            flush=True,
        )

    if image:  # backtracking from each class on two-object images
        cfg = synthetic.ImageConfig(two_objects=True)
        d2 = synthetic.make_images(num, seed=0, split="test", config=cfg)
        x2 = jnp.asarray(d2["image"])
        m1, m2 = np.asarray(d2["object_mask"]), np.asarray(d2["object_mask2"])
        res = dict(model=name)
        for tag, lab, own, other in (("1", "label", m1, m2), ("2", "label2", m2, m1)):
            t = jnp.asarray(d2[lab])
            c = np.asarray(explain_fix(params, x2, t))
            h = np.asarray(fx.heatmap(c))
            g = np.asarray(gcam(params, x2, t))
            res["own" + tag] = float(in_mask_share(c, own).mean())
            res["other" + tag] = float(in_mask_share(c, other).mean())
            res["point" + tag] = float(pointing(h, own).mean())
            res["gc_point" + tag] = float(pointing(g, own).mean())
        logits2 = np.asarray(forward(params, x2))
        top2 = np.argsort(-logits2, axis=1)[:, :2]
        both = [set(t) == {a, b} for t, a, b in zip(top2, d2["label"], d2["label2"], strict=True)]
        res["top2"] = float(np.mean(both))
        two.append(res)
        if name == "vgg":
            figs["two"] = dict(
                x=np.asarray(x2[:2]),
                c1=np.asarray(explain_fix(params, x2[:2], jnp.asarray(d2["label"][:2]))),
                c2=np.asarray(explain_fix(params, x2[:2], jnp.asarray(d2["label2"][:2]))),
            )


def fmt(v, pct=False):
    if v is None:
        return "n/a"
    return f"{100 * v:.1f} %" if pct else f"{v:.3f}"


def to_markdown(rows, timing, two, trained, argv, num, total_s) -> str:
    lines = [
        "# CNN Fixations (synthetic benchmark)",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'experiments/fixations.py', *argv])}`  ",
        f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, Python "
        f"{platform.python_version()}, jax {jax.__version__}; load average at the end "
        f"{os.getloadavg()[0]:.1f} (the run's own threads count: training splits batches over "
        "2 CPU devices per core, `xaijax.use_cpu_devices()`); total "
        f"{total_s:.0f} s.  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}. {num} test examples per model (split "
        "`test`, seed 0), explained for the predicted class. All numbers are on the *synthetic "
        "benchmark* with small zoo models trained here, not the paper's ImageNet setting.",
        "",
        "## Localisation and faithfulness",
        "",
        "in-mask: share of the fixations (CNN Fixations) or of the positive saliency (others) on "
        "the object (images, videos) or the key n-gram (texts). pointing: the arg-max of the map "
        "(for CNN Fixations: of its heatmap) on the object. box: IoU >= 0.5 rate of the box with "
        "the ground-truth box, by the points rule (tight box of the outlier-filtered fixations) "
        "or the heatmap rule (Grad-CAM WSOL protocol, 15 % threshold, largest component; the only "
        "rule for the other methods). deletion: RISE deletion AUC on the class probability "
        "(lower is better), the "
        "CNN Fixations heatmap giving the order. ms: milliseconds per example (batched, "
        "compiled).",
        "",
        "| model | test acc. | method | in-mask | pointing | box (points) | box (heatmap) "
        "| deletion AUC | ms / example |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {100 * r['accuracy']:.1f} % | {r['method']} | {fmt(r['share'])} "
            f"| {fmt(r['pointing'])} | {fmt(r['box_points'])} | {fmt(r['box_heat'])} "
            f"| {fmt(r['deletion'])} | {1e3 * r['seconds']:.2f} |"
        )
    lines += [
        "",
        "## Targets",
        "",
        "Pointing game of CNN Fixations by the authors' rules (default) and by the variant "
        f"`{VARIANT}` (documented options, papers.md 6(f)), on the image itself (one crop) and "
        "by the authors' five-crop protocol (`xaijax.fixations.multi_crop`, papers.md 6(b).8), "
        "against Grad-CAM on the image and averaged over the same five crops. met: the "
        "CNN Fixations configurations whose pointing is at least Grad-CAM's on the image.",
        "",
        "| model | authors' rules | authors' rules, five crops | variant | variant, five crops "
        "| Grad-CAM | Grad-CAM, five crops | met by |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in dict.fromkeys(r["model"] for r in rows):
        if ZOO[name]["task"] != "image":
            continue
        by = {r["method"]: r["pointing"] for r in rows if r["model"] == name}
        cols = {
            "authors' rules": by.get("CNN Fixations"),
            "authors' rules, five crops": by.get("CNN Fixations" + FIVE_CROPS),
            "variant": by.get(f"CNN Fixations [{VARIANT}]"),
            "variant, five crops": by.get(f"CNN Fixations [{VARIANT}]" + FIVE_CROPS),
        }
        g = by["Grad-CAM"]
        met = [k for k, v in cols.items() if v is not None and v >= g]
        cells = " | ".join(fmt(v) for v in cols.values())
        lines.append(
            f"| {name} | {cells} | {fmt(g)} | {fmt(by.get('Grad-CAM' + FIVE_CROPS))} "
            f"| {'; '.join(met) if met else 'NO'} |"
        )
    lines += [
        "",
        "Cost against one jitted forward pass of the same batch (the target, <= 3x, is for "
        "explaining the image itself; the five-crop protocol explains five crops and classifies "
        "ten).",
        "",
        "| model | CNN Fixations ms / example | forward ms / example | cost / forward | <= 3x |",
        "|---|---:|---:|---:|---|",
    ]
    for t in timing:
        label = t["model"] + t["method"][len("CNN Fixations") :]
        lines.append(
            f"| {label} | {t['fixations_ms']:.2f} | {t['forward_ms']:.2f} | "
            f"{t['ratio']:.1f}x | "
            f"{'n/a' if FIVE_CROPS in label else ('yes' if t['ratio'] <= 3 else 'NO')} |"
        )
    if two:
        lines += [
            "",
            "## Two objects of different classes (images trained on one object)",
            "",
            "Backtracking from the logit of each object's class. own / other: share of the "
            "fixations on that class's object / on the other object; pointing: the heatmap's "
            "(Grad-CAM's) arg-max on that class's object. top-2: share of images whose two "
            "highest logits are the two classes present.",
            "",
            "| model | top-2 | class 1: own | other | pointing | Grad-CAM | class 2: own | other "
            "| pointing | Grad-CAM |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in two:
            lines.append(
                f"| {t['model']} | {t['top2']:.2f} | {t['own1']:.3f} | {t['other1']:.3f} | "
                f"{t['point1']:.3f} | {t['gc_point1']:.3f} | {t['own2']:.3f} | "
                f"{t['other2']:.3f} | {t['point2']:.3f} | {t['gc_point2']:.3f} |"
            )
    lines += [
        "",
        "Training (cached by `training.train_or_restore`): "
        + ", ".join(f"{n} {s:.0f} s" for n, s in trained.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def colour(v: np.ndarray) -> np.ndarray:
    """A jet-like colour map of values in [0, 1] -> uint8 RGB."""
    v = np.clip(v, 0, 1)[..., None]
    rgb = np.concatenate(
        [
            np.clip(1.5 - np.abs(4 * v - 3), 0, 1),
            np.clip(1.5 - np.abs(4 * v - 2), 0, 1),
            np.clip(1.5 - np.abs(4 * v - 1), 0, 1),
        ],
        axis=-1,
    )
    return (255 * rgb).astype(np.uint8)


def figure(figs: dict, path: str) -> None:
    """Rows: per image model, 2 examples x (image + mask outline, fixations, heatmap,
    Grad-CAM); last row: two-object images, fixations of class 1 (red) and class 2 (cyan)."""
    from PIL import Image

    scale = 3
    tiles = []
    for name in ("vgg", "resnet", "inception", "densenet"):
        if name not in figs or "gradcam" not in figs[name]:
            continue
        f = figs[name]
        row = []
        for i in range(2):
            img = (255 * f["x"][i]).astype(np.uint8)
            edge = f["mask"][i] ^ np.roll(f["mask"][i], 1, 0) | f["mask"][i] ^ np.roll(
                f["mask"][i], 1, 1
            )
            outlined = img.copy()
            outlined[edge] = [255, 255, 0]
            fix = img.copy() // 2
            fix[f["counts"][i] > 0] = [255, 0, 0]
            g = f["gradcam"][i]
            g = (g - g.min()) / (g.max() - g.min() + 1e-12)
            row += [outlined, fix, colour(f["heat"][i]), colour(g)]
        tiles.append(row)
    if "two" in figs:
        t = figs["two"]
        row = []
        for i in range(2):
            img = (255 * t["x"][i]).astype(np.uint8)
            both = img.copy() // 2
            both[t["c1"][i] > 0] = [255, 0, 0]
            both[t["c2"][i] > 0] = [0, 255, 255]
            row += [
                img,
                both,
                colour(np.asarray(fx.heatmap(t["c1"][i : i + 1]))[0]),
                colour(np.asarray(fx.heatmap(t["c2"][i : i + 1]))[0]),
            ]
        tiles.append(row)
    if not tiles:
        return
    h, w = tiles[0][0].shape[:2]
    canvas = np.full((len(tiles) * (h + 2), 8 * (w + 2), 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            canvas[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = tile
    Image.fromarray(canvas).resize(
        (canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST
    ).save(path)


def parse_variants(spec: str) -> dict[str, dict[str, str]]:
    """``"sum_pool=positive;conv_position=center,residual=both"`` -> {label: options}."""
    out = {}
    for entry in [e.strip() for e in spec.split(";") if e.strip()]:
        options = {}
        for item in entry.split(","):
            key, _, value = item.partition("=")
            options[key.strip()] = value.strip()
        out[entry] = options
    return out


def _table_kind(header: str) -> str:
    for key in ("method", "variant", "cost / forward", "top-2", "pointing"):
        if key in header:
            return key
    return header


def _row_model(line: str) -> str:
    return line.strip("| ").split(" ")[0].split("|")[0].strip()


def merge_markdown(old: str, new: str, rerun: set[str]) -> str:
    """``new`` with the table rows of ``old`` for models not in ``rerun`` put back (zoo order)."""

    def tables(text: str) -> dict[str, list[str]]:
        lines, out = text.splitlines(), {}
        for i, line in enumerate(lines[:-1]):
            if line.startswith("| model") and lines[i + 1].startswith("|---"):
                rows = []
                for row in lines[i + 2 :]:
                    if not row.startswith("|"):
                        break
                    rows.append(row)
                out[_table_kind(line)] = rows
        return out

    old_rows = tables(old)
    order = {n: i for i, n in enumerate(ZOO)}
    lines, out, i = new.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("| model") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            kept = [r for r in old_rows.get(_table_kind(line), []) if _row_model(r) not in rerun]
            merged = sorted(lines[i + 2 : j] + kept, key=lambda r: order.get(_row_model(r), 99))
            out += [line, lines[i + 1], *merged]
            i = j
        else:
            out.append(line)
            i += 1
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    # Two CPU devices per core, before any JAX computation: training splits each batch over
    # them (explicit since Core v2: importing xaijax configures nothing).
    xaijax.use_cpu_devices()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo names")
    parser.add_argument("--num", type=int, default=64, help="test examples per model")
    parser.add_argument(
        "--variants",
        default=None,
        help="rule variants reported beside the default, ';'-separated, each a ','-separated "
        "list of option=value (default: VARIANTS, per image model)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the models not run from the existing results file",
    )
    parser.add_argument(
        "--no-crops", action="store_true", help="skip the five-crop protocol rows (images)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the results")
    parser.add_argument(
        "--out",
        default=RESULTS_MD,
        help="results file (markdown); the figure goes beside it with the suffix .png",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: barely trained models")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows, timing, two, figs, trained = [], [], [], {}, {}
    names = [n for n in args.models.split(",") if n]
    for name in names:
        model, params, seconds = train_model(name, ZOO[name], quick=args.quick)
        trained[name] = seconds
        print(f"{name}: model ready in {seconds:.0f} s", flush=True)
        spec = args.variants if args.variants is not None else VARIANTS.get(name, "")
        variants = parse_variants(spec) if ZOO[name]["task"] == "image" else {}
        evaluate(
            name, model, params, args.num, rows, timing, two, figs, variants, not args.no_crops
        )
    table = to_markdown(rows, timing, two, trained, argv, args.num, time.perf_counter() - t0)
    figure_path = os.path.splitext(args.out)[0] + ".png"
    if args.merge and os.path.exists(args.out):
        with open(args.out) as f:
            old = f.read()
        previous = [ln for ln in old.splitlines() if ln.startswith(("Command:", "Date:"))]
        note = (
            f"Merged: the rows of {', '.join(names)} come from this command; the rows of the "
            "other models were kept from the previous file, whose header read: "
            + " ".join(ln.rstrip() for ln in previous)
        )
        table = merge_markdown(old, table, set(names))
        table = table.replace("\n\n## Localisation", f"\n\n{note}\n\n## Localisation", 1)
    print(table)
    if not args.no_write:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(table)
        if not args.merge or {"vgg", "resnet", "inception", "densenet"} <= set(names):
            figure(figs, figure_path)  # a partial merged run keeps the previous figure
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
