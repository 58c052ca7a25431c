"""Visual Summaries' claims on the synthetic benchmark: mask quality, summaries, tagging purity,
#summaries vs accuracy, and a specialisation experiment (issue 13, item 4; papers.md 4(d), 4(g)).

Claims checked (issue 13, targets): the summaries of a class are *pure* (each member tagged with
the ground-truth part its box overlaps most; purity = share of the majority part in a summary)
with purity >= 0.8, and the number of summaries per class grows with the model's accuracy
(Spearman > 0 across >= 3 models).

Pipeline per model (all library calls): ``xaijax.training.train`` on the default synthetic image
task (64 x 64 px, 10 classes, 8000 training images), ``xaijax.masks.smooth_mask`` (A1, preset
``"bmvc"``, 300 Adam steps, 8 x 8 cells) then ``xaijax.masks.crisp_mask`` (A2, 150 steps) on
the first ``--images`` correctly classified test images of each class of ``--classes`` (the
paper skips images whose prediction is not the class; all images of all classes in one batched
call per model), then ``xaijax.summaries.summarize`` per class (the code's constants: 500
proposals per image, LOM, 75 % salient boxes, affinity propagation with ``p = 1.3 median``, the
SSIM filter) on the crisp masks' heat maps.

Command::

    .venv/bin/python experiments/visual_summaries.py              # default: 5 models, 5 classes
    .venv/bin/python experiments/visual_summaries.py --small --no-write   # smoke run, < 60 s
    .venv/bin/python experiments/visual_summaries.py --models vgg-full,resnet --classes 0,1,2

Models (``--models``, comma-separated keys of ``MODELS``): the zoo VGG at three training budgets
(50, 100 and 250 steps of 32 images: very short, medium, full; Adam with warm-up and cosine decay
over the budget, lr 2e-3) and the zoo ResNet and Inception at 250 steps (the settings of
experiments/train_zoo.py).

Specialisation (papers.md 4(g)): on the model ``--special-model`` (default the medium VGG: its
accuracy is not saturated, so a change can show either way), take the summary with the most kept
members over the classes; its part is its majority tag. Fine-tune that model for the same small
budget (``--special-steps`` Adam steps at lr 5e-4, batch 32, same batch order) on the training
images (a) as they are (part kept), (b) with that part erased in every training image, and (c,
a control) with another part erased (the one fewest members of that class's summaries carry).
Erase = the part's pixels set to the image's background mean colour (mean over the pixels
outside the object mask), so no colour or texture of the part survives (the null image of the
masks, a Gaussian blur, would leave a smear of the part's colour). Accuracy is measured on the
unmodified test set (overall, and on the class), and on the class's test images with the part
erased (how much the class still relies on the part).

``--small``: 3 VGG budgets of 10/20/40 steps (constant-rate Adam) on 512 images, 1 class x 4
images of the class
(right or wrong), 5 + 5 mask iterations, 100 proposals (two SLIC scales, one sliding-box size),
5 fine-tuning steps: a run-through whose numbers mean nothing.

Devices: ``xaijax.use_cpu_devices(2)`` (explicit opt-in): training splits each batch over the two
CPU devices; masks and summaries run on one device.

Runtime (shared 2-core CPU VM, 2026-11-30): the default run 656 s wall, 898 s CPU (load average
5.2 at the start, 2.2 at the end; an earlier identical run under load 4-8 took 1255 s): training
157 s, masks 290 s (250 images, 1.2 s per image per model), summaries 175 s (25 classes), fine-
tuning 30 s; peak RSS 5.3 GiB. ``--small``: 35 s wall on a quiet machine, 106 s under load 5.

Last result (experiments/results/visual_summaries.md, figure beside it), synthetic benchmark,
5 classes x 10 images: test accuracy / summaries per class / tagging purity (headline,
unweighted; chance baseline in brackets): vgg-short 66.1 % / 6.4 / 0.724 (0.690), vgg-medium
97.7 % / 6.8 / 0.732 (0.678), vgg-full 100.0 % / 12.8 / 0.694 (0.684), resnet 98.0 % / 6.0 /
0.574 (0.512), inception 97.1 % / 4.8 / 0.668 (0.619). Purity target (>= 0.8) missed: pooled
0.684 against a chance level of 0.648. Spearman(#summaries, accuracy) = 0.50 across the 5
models (target > 0 met), exact permutation p two-sided 0.45: not significant, and driven by
vgg-full, whose crisp masks also delete background (37 of its 64 summaries are background
boxes). Specialisation (vgg-medium, class 4, part body): fine-tuning with the body erased drops
class 4 from 0.99 to 0.38 (overall 0.977 -> 0.930); kept: 1.00 (0.999); control (wings
erased): class 4 1.00, overall 0.704.

Every number here is measured on the *synthetic benchmark* of ``xaijax.data.synthetic`` with
small zoo models trained here; none is a reproduction of the paper's ImageNet results.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import xaijax
from xaijax import masks, metrics, models, summaries, training
from xaijax.data import synthetic

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_MD = os.path.join(HERE, "results", "visual_summaries.md")

# name: zoo architecture, training steps (batch 32, lr 2e-3, 8000 training images).
MODELS = {
    "vgg-short": dict(arch="vgg", steps=50),
    "vgg-medium": dict(arch="vgg", steps=100),
    "vgg-full": dict(arch="vgg", steps=250),
    "resnet": dict(arch="resnet", steps=250),
    "inception": dict(arch="inception", steps=250),
}
SMALL_MODELS = {
    "vgg-10": dict(arch="vgg", steps=10),
    "vgg-20": dict(arch="vgg", steps=20),
    "vgg-40": dict(arch="vgg", steps=40),
}
SMALL_OPTIMIZER = optax.adam(2e-3)
TAGS = (*synthetic.PART_NAMES, "background")
BG = len(synthetic.PART_NAMES)  # tag index of "background" (the box holds no part pixel)
MASK_THRESHOLD = 128 / 255  # the code's binarisation of the heat mask (Stages B and C)
PYTHON = ".venv/bin/python"
SHUFFLES = 1000  # tag permutations of the chance baseline of purity


# ------------------------------------------------------------------------------------------
# Models.


def predict(model, params, images: np.ndarray, batch: int = 250) -> np.ndarray:
    """Arg-max classes ``[N]`` of ``images``, in jitted batches (bounded memory)."""
    fwd = jax.jit(models.apply_fn(model))
    return np.concatenate(
        [
            np.asarray(fwd(params, images[i : i + batch])).argmax(1)
            for i in range(0, len(images), batch)
        ]
    )


def train_models(names, table, train, test, args) -> dict:
    out = {}
    for name in names:
        cfg = table[name]
        model = models.get_model(cfg["arch"], int(train["label"].max()) + 1)
        t, c = time.perf_counter(), time.process_time()
        result = training.train(
            model,
            {"image": train["image"], "label": train["label"]},
            steps=cfg["steps"],
            batch_size=32,
            learning_rate=2e-3,
            seed=0,
            progress=False,
            # --small: one constant-rate Adam for all budgets, so one compiled step serves them
            optimizer=SMALL_OPTIMIZER if args.small else None,
        )
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        pred = predict(model, result.params, test["image"])
        out[name] = dict(
            model=model,
            params=result.params,
            arch=cfg["arch"],
            steps=cfg["steps"],
            accuracy=float((pred == test["label"]).mean()),
            pred=pred,
            train_s=wall,
            train_cpu=cpu,
        )
        print(f"{name}: test accuracy {out[name]['accuracy']:.3f} ({wall:.0f} s)", flush=True)
    return out


# ------------------------------------------------------------------------------------------
# Tagging (a small local helper: the overlap of boxes with the benchmark's part masks).


def box_sums(integral: np.ndarray, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Sums of ``[N, P, H, W]`` maps (as their integral images ``[N, P, H+1, W+1]``) inside
    inclusive boxes ``(x1, y1, x2, y2)`` ``[M, 4]`` of images ``[M]``: ``[M, P]``."""
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    ii = integral[image]  # [M, P, H+1, W+1]
    m = np.arange(len(image))
    return ii[m, :, y2 + 1, x2 + 1] - ii[m, :, y1, x2 + 1] - ii[m, :, y2 + 1, x1] + ii[m, :, y1, x1]


def integral(maps: np.ndarray) -> np.ndarray:
    """``[N, P, H, W]`` -> zero-padded integral images ``[N, P, H+1, W+1]`` (int64)."""
    s = maps.astype(np.int64).cumsum(-1).cumsum(-2)
    return np.pad(s, ((0, 0), (0, 0), (1, 0), (1, 0)))


def tag_members(result, part_masks: np.ndarray, heat: np.ndarray) -> dict:
    """Tags of the kept members of the accepted summaries of one class.

    Returns ``group [T]`` (summary of each member), ``box [T]`` (part its box overlaps most;
    ``BG`` when none) and ``region [T]`` (part its salient pixels inside the box overlap most).
    """
    accepted = () if result is None else result.accepted
    group, image, boxes = [], [], []
    for g, s in enumerate(accepted):
        kept = np.flatnonzero(s.member_kept)
        group.append(np.full(len(kept), g))
        image.append(s.member_images[kept])
        boxes.append(s.member_boxes[kept])
    if not accepted:
        empty = np.zeros(0, np.int64)
        return dict(group=empty, box=empty, region=empty)
    group, image, boxes = map(np.concatenate, (group, image, boxes))
    salient = heat > MASK_THRESHOLD
    tags = {}
    for kind, maps in (("box", part_masks), ("region", part_masks & salient[:, None])):
        overlap = box_sums(integral(maps), image, boxes)
        tags[kind] = np.where(overlap.max(1) > 0, overlap.argmax(1), BG)
    return dict(group=group, **tags)


def purity(
    group: np.ndarray, tags: np.ndarray, n_groups: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per summary: majority tag, its count and the summary's size (kept members; 0 for an
    accepted summary whose members the SSIM filter all dropped)."""
    if n_groups is None:
        n_groups = int(group.max()) + 1 if len(group) else 0
    counts = np.zeros((n_groups, len(TAGS)), np.int64)
    np.add.at(counts, (group, tags), 1)
    return counts.argmax(1), counts.max(1), counts.sum(1)


def weighted_mean(pairs: list[tuple[float, int]]) -> float:
    """Mean of ``(value, weight)`` pairs weighted by the weights (here: summaries per class)."""
    values, weights = (np.asarray(v, np.float64) for v in zip(*pairs, strict=True))
    return float(np.sum(values * weights) / np.sum(weights))


def shuffled_purity(group: np.ndarray, tags: np.ndarray, rng: np.random.Generator) -> float:
    """Chance baseline: mean (unweighted) purity when the class's member tags are permuted
    across its summaries (sizes kept), averaged over ``SHUFFLES`` permutations."""
    if not len(group):
        return float("nan")
    perm = np.argsort(rng.random((SHUFFLES, len(tags))), axis=1)
    shuffled = tags[perm]  # [R, T]
    n_groups = int(group.max()) + 1
    counts = np.zeros((SHUFFLES, n_groups, len(TAGS)), np.int64)
    r = np.repeat(np.arange(SHUFFLES), len(tags))
    np.add.at(counts, (r, np.tile(group, SHUFFLES), shuffled.ravel()), 1)
    size = counts.sum(-1)
    nonempty = size[0] > 0  # summaries without kept members have no tags: left out
    return float((counts.max(-1)[:, nonempty] / size[:, nonempty]).mean())


# ------------------------------------------------------------------------------------------
# Spearman with an exact permutation p-value (small n).


def spearman_exact(x, y) -> tuple[float, float, float]:
    """Spearman's rho of ``x`` and ``y`` (average ranks for ties, by ``xaijax.metrics``) and its
    exact permutation p-values over all ``n!`` orderings of ``y``: two-sided
    ``P(|rho*| >= |rho|)`` and one-sided ``P(rho* >= rho)``."""
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    n = len(x)
    perms = np.array(list(itertools.permutations(range(n))))
    rho_all = np.asarray(metrics.spearman(np.tile(x, (len(perms), 1)), y[perms]))
    rho = float(np.asarray(metrics.spearman(x[None], y[None]))[0])
    tol = 1e-6
    return (
        rho,
        float(np.mean(np.abs(rho_all) >= abs(rho) - tol)),
        float(np.mean(rho_all >= rho - tol)),
    )


def spearman_monte_carlo(x, y, rng, draws: int = 20000) -> tuple[float, float]:
    """Spearman's rho and a Monte-Carlo two-sided permutation p-value (for larger n)."""
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    perm = np.argsort(rng.random((draws, len(y))), axis=1)
    rho_all = np.asarray(metrics.spearman(np.tile(x, (draws, 1)), y[perm]))
    rho = float(np.asarray(metrics.spearman(x[None], y[None]))[0])
    return rho, float((1 + np.sum(np.abs(rho_all) >= abs(rho) - 1e-6)) / (draws + 1))


# ------------------------------------------------------------------------------------------
# Specialisation.


def erase(images: np.ndarray, part: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Images with the pixels of ``part`` ``[N, H, W]`` set to each image's background mean
    colour (mean over the pixels outside ``objects`` ``[N, H, W]``)."""
    bg = ~objects
    mean = (images * bg[..., None]).sum((1, 2)) / np.maximum(bg.sum((1, 2)), 1)[:, None]
    return np.where(part[..., None], mean[:, None, None, :], images).astype(np.float32)


def fine_tuner(model, example: np.ndarray, *, steps: int, seed: int = 0):
    """``tune(params, images, labels)``: ``steps`` Adam updates (lr 5e-4, batch 32) from
    ``params``, the same batch order for every call (one compiled step for all calls)."""
    tx = optax.adam(5e-4)
    state0 = training.create_train_state(
        model, example[:1], key=jax.random.key(seed, impl="rbg"), optimizer=tx
    )
    step = training.make_train_step(model, tx)

    def tune(params, images, labels):
        state = state0.replace(params=params, opt_state=tx.init(params))
        order = np.random.default_rng(seed).permutation(len(images))
        for s in range(steps):
            idx = order[(np.arange(32) + 32 * s) % len(images)]
            state, _ = step(state, images[idx], labels[idx])
        return state.params

    return tune


def specialisation(name, info, per_class, train, test, steps) -> dict | None:
    """Fine-tunes ``info``'s model with a summary's part kept / erased / a control part erased."""
    best = None  # (kept members, class, majority tag, summary, tags of the class)
    for c, r in per_class.items():
        tags = r["tags"]
        if not len(tags["group"]):
            continue
        major, _, size = purity(tags["group"], tags["box"])
        g = int(np.argmax(size))
        if best is None or size[g] > best[0]:
            best = (int(size[g]), c, int(major[g]), g, tags)
    if best is None:
        return None
    size, cls, part, g, tags = best
    if part == BG:  # a background summary: its most common real part instead
        members = tags["box"][tags["group"] == g]
        part = int(np.argmax(np.bincount(members, minlength=len(TAGS))[:BG]))
    counts = np.bincount(tags["box"], minlength=len(TAGS))[:BG]
    control = int(np.argmin(np.where(np.arange(BG) == part, np.iinfo(np.int64).max, counts)))
    model, params = info["model"], info["params"]
    in_class = test["label"] == cls

    def scores(p):
        pred = predict(model, p, test["image"])
        x_cls = test["image"][in_class]
        part_cls = test["part_masks"][in_class, part]
        erased = erase(x_cls, part_cls, test["object_mask"][in_class])
        pred_erased = predict(model, p, erased)
        return dict(
            overall=float((pred == test["label"]).mean()),
            cls=float((pred[in_class] == cls).mean()),
            cls_erased=float((pred_erased == cls).mean()),
        )

    tune = fine_tuner(model, train["image"], steps=steps)
    arms = {"before fine-tuning": scores(params)}
    for arm, erased_part in (
        (f"kept ({TAGS[part]})", None),
        (f"erased ({TAGS[part]})", part),
        (f"control: erased ({TAGS[control]})", control),
    ):
        x = train["image"]
        if erased_part is not None:
            x = erase(x, train["part_masks"][:, erased_part], train["object_mask"])
        t = time.perf_counter()
        tuned = tune(params, x, train["label"])
        arms[arm] = scores(tuned)
        arms[arm]["seconds"] = time.perf_counter() - t
        print(f"  specialisation {arm}: {arms[arm]}", flush=True)
    return dict(model=name, cls=cls, part=TAGS[part], control=TAGS[control], size=size, arms=arms)


# ------------------------------------------------------------------------------------------
# Figure.


def figure(fig_rows: list, path: str, cls: int) -> None:
    """Rows: per model, its most populated summaries of class ``cls``, rendered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not fig_rows:
        return
    width = max(r[1].shape[1] for r in fig_rows)
    fig, axes = plt.subplots(
        len(fig_rows), 1, figsize=(width / 90, 1.55 * len(fig_rows)), squeeze=False
    )
    for ax, (title, tile) in zip(axes[:, 0], fig_rows, strict=True):
        canvas = np.ones((tile.shape[0], width, 3), np.float32)
        canvas[:, : tile.shape[1]] = tile
        ax.imshow(canvas)
        ax.set_title(title, fontsize=8, loc="left")
        ax.axis("off")
    fig.suptitle(
        f"Visual summaries of synthetic class {cls}, per model (synthetic benchmark)\nmembers "
        "greyed outside the hull of their salient pixels (red outline; touching mask components "
        "cyan)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# Report.


def fmt(v, digits=3):
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def to_markdown(ctx: dict) -> str:
    args, rows, trained = ctx["args"], ctx["rows"], ctx["trained"]
    lines = [
        "# Visual summaries: the paper's claims (synthetic benchmark)",
        "",
        f"Command: `{' '.join([PYTHON, 'experiments/visual_summaries.py', *ctx['argv']])}`  ",
        f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, Python "
        f"{platform.python_version()}, jax {jax.__version__}, 2 virtual CPU devices for training; "
        f"load average (1 min) {ctx['load0']:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        f"the end.  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}. Total {ctx['wall']:.0f} s wall, "
        f"{ctx['cpu']:.0f} s CPU (this process); peak RSS {ctx['rss']:.0f} MiB. "
        f"Time by phase (wall / CPU s): "
        + ", ".join(f"{k} {w:.0f} / {c:.0f}" for k, (w, c) in ctx["phases"].items())
        + ".  ",
        f"Data: the default synthetic image task, {args.image_size} x {args.image_size} px, 10 "
        f"classes, {ctx['num_train']} training images (split `train`, seed 0), "
        f"{ctx['num_test']} test images (split `test`, seed 0). Classes summarised: "
        f"{', '.join(map(str, ctx['classes']))}; per class the first {args.images} test images "
        "the model classifies correctly (the paper skips images whose prediction is not the "
        f"class). Masks: smooth {ctx['smooth_it']} + crisp {ctx['crisp_it']} Adam steps (the "
        f"code: 300 + 150), preset `bmvc`; summaries: {ctx['proposals']} proposals per image, "
        "every other constant the code's. All numbers are on the *synthetic benchmark*, with "
        "small zoo models trained here, not the paper's ImageNet setting.",
        "",
        "## Models",
        "",
        "| model | architecture | train steps | test accuracy | accuracy on the classes summarised "
        "| train s (wall / CPU) |",
        "|---|---|---:|---:|---|---:|",
    ]
    for name, info in trained.items():
        per = " / ".join(
            f"{float((info['pred'][ctx['test_label'] == c] == c).mean()):.2f}"
            for c in ctx["classes"]
        )
        lines.append(
            f"| {name} | {info['arch']} | {info['steps']} | {100 * info['accuracy']:.1f} % | "
            f"{per} | {info['train_s']:.0f} / {info['train_cpu']:.0f} |"
        )
    lines += [
        "",
        "## Mask quality (crisp mask A2 unless said)",
        "",
        "drop: `(p_t - p_m) / p_t`, the relative fall of the class probability when the mask is "
        "applied (higher = the mask deletes the evidence); p: the normalised score "
        "`(p_m - p_t) / (p_t - p_blur)` (-1 = as low as the fully blurred image; lower is "
        "better; the mean is pulled far below -1 by images whose blurred probability is close to "
        "the target probability, a small denominator: read the median). binariness: share of "
        "pixels of the mask `M` in [0.1, 0.9] (lower is crisper). "
        "energy in object: share of the deletion mask `1 - M` inside the object mask "
        "(`xaijax.metrics.energy_in_mask`). Means over all images summarised.",
        "",
        "| model | images | target prob | drop (smooth) | drop (crisp) | p (crisp): mean, median "
        "| binariness (smooth) | binariness (crisp) | energy in object (smooth) "
        "| energy in object (crisp) | masks s (wall) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        q = r["quality"]
        lines.append(
            f"| {r['model']} | {q['images']} | {q['target_prob']:.3f} | {q['drop_smooth']:.3f} "
            f"| {q['drop']:.3f} | {q['score']:.3f}, {q['score_median']:.3f} | "
            f"{q['binary_smooth']:.3f} | "
            f"{q['binary']:.3f} | {q['energy_smooth']:.3f} | {q['energy']:.3f} | "
            f"{q['seconds']:.0f} |"
        )
    lines += [
        "",
        "## Summaries and tagging purity",
        "",
        "clusters: affinity-propagation clusters before the SSIM filter; summaries: accepted "
        "clusters (mean per class, and per class in the order of the classes). Each kept member "
        "of a summary is tagged with the ground-truth part (`part_masks`: "
        f'{", ".join(synthetic.PART_NAMES)}) its box overlaps most ("background" if none); '
        "purity = share of the summary's majority tag. **Headline: the unweighted mean over "
        "summaries, box tags** (each summary counts once, as the paper tags summaries); "
        "weighted: members pooled (sum of majority counts / sum of members). region: the same "
        "with the member's salient pixels (crisp heat > 128/255) inside the box instead of the "
        "whole box. chance: the unweighted purity when the member tags of each class are "
        f"permuted across its summaries (sizes kept; mean of {SHUFFLES} permutations): purity "
        "above it is what the clustering adds to the parts' base rates. majority tags: how many "
        "summaries each part leads. empty: accepted summaries whose members the SSIM filter all "
        "dropped (counted as summaries, left out of purity).",
        "",
        "| model | test acc. | clusters / class | summaries / class (mean) | per class "
        "| empty | members / summary | purity (headline) | weighted | region | chance "
        "| majority tags |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s = r["summ"]
        lines.append(
            f"| {r['model']} | {100 * r['accuracy']:.1f} % | {s['clusters']:.1f} | "
            f"{s['mean']:.1f} | {' / '.join(map(str, s['per_class']))} | {s['empty']} | "
            f"{fmt(s['members'], 1)} "
            f"| **{fmt(s['purity'])}** | {fmt(s['weighted'])} | {fmt(s['region'])} | "
            f"{fmt(s['chance'])} | {s['majority']} |"
        )
    pooled = ctx["pooled"]
    lines += [
        "",
        f"Pooled over all models: {pooled['n']} summaries, purity {fmt(pooled['purity'])} "
        f"(headline, unweighted), weighted {fmt(pooled['weighted'])}, chance "
        f"{fmt(pooled['chance'])}.",
        "",
        "## Number of summaries vs accuracy",
        "",
    ]
    sp = ctx["spearman"]
    if sp is not None:
        n = len(rows)
        lines += [
            f"Across the {n} models: Spearman rho(test accuracy, mean summaries per class) = "
            f"**{sp['rho']:.3f}**; exact permutation p-value over all {sp['perms']} orderings: "
            f"two-sided {sp['p2']:.3f}, one-sided (rho > 0) {sp['p1']:.3f}. With {n} models the "
            f"p-value is coarse: the smallest one-sided value possible is 1/{sp['perms']} = "
            f"{1 / sp['perms']:.3f} (fewer distinct values still with tied accuracies), so it "
            "cannot show a correlation at conventional levels unless the ranks agree exactly.",
            "",
            f"Secondary, per (model, class) pair ({sp['pairs_n']} pairs; not independent: the "
            f"same classes and models recur): Spearman rho(class accuracy, summaries) = "
            f"{fmt(sp['pairs_rho'])}, Monte-Carlo two-sided permutation p = "
            f"{fmt(sp['pairs_p'])} (20000 permutations).",
        ]
    else:
        lines.append("Fewer than 3 models: no Spearman correlation.")
    lines += ["", "## Specialisation (papers.md 4(g))", ""]
    spec = ctx["special"]
    if spec is None:
        lines.append("No summary on the specialisation model: experiment skipped.")
    else:
        lines += [
            f"Model {spec['model']}; class {spec['cls']}'s most populated summary "
            f"({spec['size']} kept members) has majority part **{spec['part']}**. Fine-tuned "
            f"{ctx['special_steps']} Adam steps (lr 5e-4, batch 32, the same batch order) from "
            f"the trained model on the {ctx['num_train']} training images as they are (kept), "
            f"with the {spec['part']} erased in every image (erased), and, as a control, with "
            f"the {spec['control']} erased (the part fewest members of that class's summaries "
            "carry). Erase: the part's pixels set to the image's background mean colour. "
            f"Accuracy on the unmodified test set (overall; class {spec['cls']}: "
            f"{ctx['class_test']} images, so a step of {1 / max(ctx['class_test'], 1):.3f}) and "
            f"on class {spec['cls']}'s test images with the {spec['part']} erased.",
            "",
            f"| arm | overall acc. | change | class {spec['cls']} acc. | change | class "
            f"{spec['cls']}, {spec['part']} erased in test | change | fine-tune s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        base = spec["arms"]["before fine-tuning"]
        for arm, a in spec["arms"].items():
            lines.append(
                f"| {arm} | {a['overall']:.3f} | {a['overall'] - base['overall']:+.3f} | "
                f"{a['cls']:.3f} | {a['cls'] - base['cls']:+.3f} | {a['cls_erased']:.3f} | "
                f"{a['cls_erased'] - base['cls_erased']:+.3f} | "
                f"{fmt(a.get('seconds'), 0)} |"
            )
    lines += ["", "## Targets (issue 13)", "", "| target | measured | met |", "|---|---|---|"]
    for row in ctx["targets"]:
        lines.append(f"| {row[0]} | {row[1]} | {row[2]} |")
    lines += ["", *ctx["notes"], ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    xaijax.use_cpu_devices(2)  # explicit opt-in (Core v2): training splits batches over two
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated keys of MODELS")
    parser.add_argument("--classes", default="0,1,2,3,4", help="comma-separated class ids")
    parser.add_argument("--images", type=int, default=10, help="images per class (N)")
    parser.add_argument("--image-size", type=int, default=64, help="synthetic image side (px)")
    parser.add_argument("--special-model", default="vgg-medium")
    parser.add_argument("--special-steps", type=int, default=60)
    parser.add_argument("--figure-class", type=int, default=None, help="default: first class")
    parser.add_argument("--small", action="store_true", help="smoke run (< 60 s; meaningless)")
    parser.add_argument("--no-write", action="store_true", help="do not write the results")
    parser.add_argument("--out", default=RESULTS_MD, help="results file; figure beside it .png")
    args = parser.parse_args(argv)
    t_start, c_start, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    phases = {}

    def phase(name, t, c):
        w0, c0 = phases.get(name, (0.0, 0.0))
        phases[name] = (w0 + time.perf_counter() - t, c0 + time.process_time() - c)

    table = SMALL_MODELS if args.small else MODELS
    names = [n for n in (args.models or ",".join(table)).split(",") if n]
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(table)}")
    classes = [int(c) for c in args.classes.split(",") if c]
    if args.small:
        classes = classes[:1]
        args.images = min(args.images, 4)
    num_train, num_test = (512, 200) if args.small else (8000, 1000)
    smooth_it, crisp_it = (5, 5) if args.small else (300, 150)
    proposals = 100 if args.small else 500
    summ_options = (
        dict(proposal_options=dict(approx_segments=(25, 50), window_fractions=(0.375,)))
        if args.small
        else {}
    )
    special_model = args.special_model if args.special_model in names else names[len(names) // 2]
    special_steps = 5 if args.small else args.special_steps

    t, c = time.perf_counter(), time.process_time()
    config = synthetic.ImageConfig(image_size=args.image_size)
    train = synthetic.make_images(num_train, seed=0, split="train", config=config)
    test = synthetic.make_images(num_test, seed=0, split="test", config=config)
    phase("data", t, c)

    t, c = time.perf_counter(), time.process_time()
    trained = train_models(names, table, train, test, args)
    phase("training", t, c)

    rows, fig_rows, per_model = [], [], {}
    fig_cls = classes[0] if args.figure_class is None else args.figure_class
    explainers = {}
    for name, info in trained.items():
        model, params = info["model"], info["params"]
        # The first N correctly classified test images of each class (fewer if not enough).
        # (--small: any images of the class; its barely trained models get few right.)
        ok = np.ones_like(info["pred"], bool) if args.small else info["pred"] == test["label"]
        chosen = {cl: np.flatnonzero((test["label"] == cl) & ok)[: args.images] for cl in classes}
        idx = np.concatenate([chosen[cl] for cl in classes])
        x = jnp.asarray(test["image"][idx])
        target = jnp.asarray(test["label"][idx])
        if info["arch"] not in explainers:  # one explainer (one compilation) per architecture
            sm = masks.smooth_mask(model, iterations=smooth_it)
            cm = masks.crisp_mask(model, iterations=crisp_it, smooth=sm)
            explainers[info["arch"]] = (sm, cm)
        sm, cm = explainers[info["arch"]]
        t, c = time.perf_counter(), time.process_time()
        smooth = sm(params, x, target)
        crisp = cm(params, x, target, init_mask=1.0 - smooth.map)
        heat = np.asarray(crisp.map)
        phase("masks", t, c)
        mask_s = time.perf_counter() - t
        obj = jnp.asarray(test["object_mask"][idx])
        quality = dict(
            images=len(idx),
            target_prob=float(jnp.mean(crisp.target_prob)),
            drop_smooth=float(jnp.mean(smooth.drop)),
            drop=float(jnp.mean(crisp.drop)),
            score=float(jnp.mean(crisp.score)),
            score_median=float(jnp.median(crisp.score)),
            binary_smooth=float(jnp.mean((smooth.mask >= 0.1) & (smooth.mask <= 0.9))),
            binary=float(jnp.mean((crisp.mask >= 0.1) & (crisp.mask <= 0.9))),
            energy_smooth=float(jnp.mean(metrics.energy_in_mask(1.0 - smooth.mask, obj))),
            energy=float(jnp.mean(metrics.energy_in_mask(1.0 - crisp.mask, obj))),
            seconds=mask_s,
        )
        print(f"{name}: masks {mask_s:.0f} s, {quality}", flush=True)

        t, c = time.perf_counter(), time.process_time()
        per_class, start = {}, 0
        rng = np.random.default_rng(0)
        for cl in classes:
            sel = np.arange(start, start + len(chosen[cl]))
            start += len(chosen[cl])
            if len(sel) < 2:  # summaries need >= 2 images: this class gets none
                per_class[cl] = dict(result=None, tags=tag_members(None, None, None), n=len(sel))
                continue
            images_c = np.asarray(x)[sel]
            result = summaries.summarize(
                images_c, heat[sel], num_proposals=proposals, **summ_options
            )
            tags = tag_members(result, test["part_masks"][idx[sel]], heat[sel])
            per_class[cl] = dict(result=result, tags=tags, n=len(sel))
            print(
                f"  class {cl}: {len(sel)} images, {len(result.clusters)} clusters, "
                f"{len(result.accepted)} summaries ({sum(result.seconds.values()):.0f} s)",
                flush=True,
            )
            if cl == fig_cls and result.accepted:
                sizes = [int(s.member_kept.sum()) for s in result.accepted]
                major, count, size = purity(tags["group"], tags["box"], len(sizes))
                for g in np.argsort(sizes, kind="stable")[::-1][:2]:
                    s = result.accepted[g]
                    if not size[g]:
                        continue
                    tile = summaries.render_summary(images_c, heat[sel], s, scale=2, pad=3)
                    fig_rows.append(
                        (
                            f"{name} (test acc. {100 * info['accuracy']:.1f} %), summary {g + 1} "
                            f"of {len(result.accepted)}: {size[g]} members, majority part "
                            f"{TAGS[major[g]]}, purity {count[g] / size[g]:.2f}",
                            tile,
                        )
                    )
        phase("summaries", t, c)
        per_model[name] = per_class

        # Per model: summaries per class and purity.
        n_sum = [
            0 if r["result"] is None else len(r["result"].accepted) for r in per_class.values()
        ]
        n_clu = [
            0 if r["result"] is None else len(r["result"].clusters) for r in per_class.values()
        ]
        maj, cnt, size, cnt_r, chance_w, empty = [], [], [], [], [], 0
        for r in per_class.values():
            g, tb, tr = r["tags"]["group"], r["tags"]["box"], r["tags"]["region"]
            if not len(g):
                continue
            m_, c_, s_ = purity(g, tb)
            has = s_ > 0  # accepted summaries whose members were all dropped carry no tag
            empty += int(np.sum(~has))
            maj.append(m_[has])
            cnt.append(c_[has])
            size.append(s_[has])
            cnt_r.append(purity(g, tr)[1][has])
            chance_w.append((shuffled_purity(g, tb, rng), int(np.sum(has))))
        if maj:
            maj, cnt, size, cnt_r = map(np.concatenate, (maj, cnt, size, cnt_r))
            summ = dict(
                purity=float(np.mean(cnt / size)),
                weighted=float(cnt.sum() / size.sum()),
                region=float(np.mean(cnt_r / size)),
                chance=weighted_mean(chance_w),
                members=float(size.mean()),
                majority=", ".join(
                    f"{TAGS[k]} {int(v)}"
                    for k, v in enumerate(np.bincount(maj, minlength=len(TAGS)))
                    if v
                ),
                raw=(cnt, size, chance_w),
            )
        else:
            nan = float("nan")
            summ = dict(purity=nan, weighted=nan, region=nan, chance=nan, members=nan,
                        majority="none", raw=None)  # fmt: skip
        summ.update(
            mean=float(np.mean(n_sum)), per_class=n_sum, clusters=float(np.mean(n_clu)), empty=empty
        )
        rows.append(dict(model=name, accuracy=info["accuracy"], quality=quality, summ=summ))

    # Pooled purity and the Spearman correlations.
    raws = [r["summ"]["raw"] for r in rows if r["summ"]["raw"] is not None]
    if raws:
        cnt = np.concatenate([a for a, _, _ in raws])
        size = np.concatenate([b for _, b, _ in raws])
        ch = [p for _, _, cw in raws for p in cw]
        pooled = dict(
            n=len(cnt),
            purity=float(np.mean(cnt / size)),
            weighted=float(cnt.sum() / size.sum()),
            chance=weighted_mean(ch),
        )
    else:
        pooled = dict(n=0, purity=float("nan"), weighted=float("nan"), chance=float("nan"))
    sp = None
    if len(rows) >= 3:
        acc = [r["accuracy"] for r in rows]
        mean_sum = [r["summ"]["mean"] for r in rows]
        rho, p2, p1 = spearman_exact(acc, mean_sum)
        pair_acc, pair_sum = [], []
        for r in rows:
            pred = trained[r["model"]]["pred"]
            for cl, k in zip(classes, r["summ"]["per_class"], strict=True):
                pair_acc.append(float((pred[test["label"] == cl] == cl).mean()))
                pair_sum.append(k)
        prho, pp = spearman_monte_carlo(pair_acc, pair_sum, np.random.default_rng(1))
        sp = dict(
            rho=rho, p2=p2, p1=p1, perms=int(np.prod(range(1, len(rows) + 1))),
            pairs_n=len(pair_acc), pairs_rho=prho, pairs_p=pp,
        )  # fmt: skip
        print(f"Spearman(accuracy, #summaries) = {rho:.3f}, p two-sided {p2:.3f}", flush=True)

    t, c = time.perf_counter(), time.process_time()
    special = specialisation(
        special_model, trained[special_model], per_model[special_model], train, test,
        special_steps,
    )  # fmt: skip
    phase("specialisation", t, c)

    # Targets.
    targets, notes = [], []
    met_p = [r["model"] for r in rows if r["summ"]["purity"] >= 0.8]
    per_model_p = ", ".join(f"{r['model']} {fmt(r['summ']['purity'])}" for r in rows)
    targets.append(
        (
            "tagging purity >= 0.8 (headline: unweighted, box tags)",
            f"pooled {fmt(pooled['purity'])}; per model: {per_model_p}",
            ("yes" if pooled["purity"] >= 0.8 else "NO")
            + f" (pooled); {len(met_p)} of {len(rows)} models",
        )
    )
    if sp is not None:
        targets.append(
            (
                f"Spearman(#summaries, accuracy) > 0 across {len(rows)} models",
                f"rho {sp['rho']:.3f} (exact p two-sided {sp['p2']:.3f}, one-sided {sp['p1']:.3f})",
                "yes" if sp["rho"] > 0 else "NO",
            )
        )
    ctx_notes = [
        "Notes:",
        "",
        "- Substitutes (as in `xaijax.summaries`): proposals are boxes of greedy merges of SLIC "
        "superpixels plus multi-scale sliding boxes (for Selective Search), plain HOG with "
        "cosine similarity (for whitened HOG), and the SSIM filter aligns members by scaling "
        "their boxes (for the dense Proposal Flow warp).",
        "- Tagging uses the benchmark's ground-truth part masks (the synthetic analogue of the "
        "paper's automatic tagging, papers.md 4(g)); the body is the largest part, so box tags "
        "lean towards it: compare purity with the chance column.",
        "- Tagging purity and the summary counts are computed on the accepted summaries' kept "
        "members only (after the SSIM filter).",
    ]
    if args.small:
        ctx_notes.append("- `--small`: a smoke run; its numbers mean nothing.")
    for row in targets:
        if "NO" in row[2]:
            print(f"TARGET MISSED: {row[0]}: {row[1]}", flush=True)

    ctx = dict(
        args=args, argv=argv, rows=rows, trained=trained, classes=classes, pooled=pooled,
        spearman=sp, special=special, special_steps=special_steps, targets=targets,
        notes=notes + ctx_notes, num_train=num_train, num_test=num_test, smooth_it=smooth_it,
        crisp_it=crisp_it, proposals=proposals, test_label=test["label"], load0=load0,
        class_test=int(np.sum(test["label"] == (special["cls"] if special else 0))),
        phases=phases, wall=time.perf_counter() - t_start, cpu=time.process_time() - c_start,
        rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )  # fmt: skip
    text = to_markdown(ctx)
    print(text)
    if not args.no_write:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        figure(fig_rows, os.path.splitext(args.out)[0] + ".png", fig_cls)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
