"""AnchorNet on the synthetic needle benchmark: accuracy, top-1 patch hit rates per object size
and per branch, which branch wins for which size, text span hit rate, Grad-CAM / CNN-Fixations
boxes of a zoo CNN for comparison, and patch-based downstream inference with the early-exit
cascade (accuracy vs FLOPs, CPU wall time).

Claims checked (GitHub issue 14, targets): top-1 patch hit rate >= 90 % on the needle benchmark
(per size), text span hit rate >= 90 %, the downstream net on patches within 2 points of the
full-image accuracy at >= 2x fewer FLOPs, and the largest-RF branch winning on large objects and
the smallest on small ones.

Command::

    .venv/bin/python experiments/anchornet.py                 # full run, writes the results
    .venv/bin/python experiments/anchornet.py --small --no-write   # smoke run, about a minute

``--small`` shrinks data, widths and steps (its numbers mean nothing); ``--no-write`` prints
the table without writing ``experiments/results/anchornet.md`` and ``anchornet.png``.

Protocol (every number below is measured by this script):

* Data: :func:`xaijax.data.synthetic.needle_config` (96 px, 10 classes, 12 distractors, object
  diameters 0.25 / 0.40 / 0.60 of the side: tight boxes of about 20 / 33 / 48 px, the size
  classes 0 / 1 / 2) and :class:`~xaijax.data.synthetic.TextConfig` defaults (64 tokens, 10
  classes, a planted key trigram). Training uses the image-level labels only.
* AnchorNet: ``anchornet_multi(10, rfs=(23, 39, 55))`` (jump 4, no SE: strictly local),
  trained with :func:`xaijax.training.train` (BatchNorm statistics in ``model_state``).
  Patches: :func:`~xaijax.anchornet.contributions` of the predicted class, then
  :func:`~xaijax.anchornet.informative_patches` (``topk=2`` per branch, ``iou_threshold=0.3``).
  The **top-1 patch** is the patch with the largest CAM value ``F(i, j) W_c`` of the predicted
  class over all branches (the code's CAM scale, papers.md 2(b).3: the location's contribution
  to the logit times its branch's number of locations, so that the contribution's ``1 / (h w)``
  does not favour the branches with fewer locations); the top-1 by raw logit contribution is
  reported beside it. The library's merged order (scores divided by each branch's maximum)
  gives every branch's best patch the score 1.0, so its first slot is always branch 1 by the
  tie-break; the script reports how often that happens and does not use that order.
* Hit criteria against the ground truth box (``box``, converted to inclusive coordinates) and
  object mask: **IoU >= 0.5**, or **inside >= 50 %** (at least half of the object's pixels lie in
  the patch), and **either**. Per branch: that branch's best patch. Winner: the branch of the
  top-1 patch; the confusion table is size class x winning branch.
* Text: ``anchornet_text(10, rfs=(3, 5, 7))``; the top-1 span (largest CAM value, as above) hits
  when it **covers** the planted trigram or its 1-D **IoU >= 0.5**, and **either**.
* Comparison: the zoo ``resnet`` trained on the same needle images (96 px). Boxes from its
  Grad-CAM and its CNN-Fixations map (``channel_reduction="count"``, smoothed by
  :func:`xaijax.fixations.heatmap`) by two rules: **WSOL** (threshold at 0.15 of the map's
  max, box of the largest 4-connected component: :func:`xaijax.metrics.box_from_map`; for
  fixations ``fixations.boxes(rule="heatmap")``), and **peak** (a 39 x 39 box, the middle
  AnchorNet RF, centred on the map's maximum and shifted inside the image). The same criteria;
  mean box area reported because "inside >= 50 %" favours large boxes.
* Downstream: the same resnet architecture trained (a) on full 96 px images (the comparison
  net above), (b) on full images resized to the patch size P = 48 (bicubic,
  ``anchornet.resize_full``), (c) on the top-3 AnchorNet patches of each training image cropped
  and resized to P (``anchornet.crop_patches``), each labelled with the image label. Test
  accuracy of (c) on the top-1 patch alone and on the mean logits of the top-3 patches. The
  early-exit cascade (``anchornet.early_exit_cascade`` with net (c): stage 0 the resized full
  image, stage j adds patch j) in the shape of the ICME table (papers.md 2(e)): thresholds,
  accuracy, mean FLOPs (XLA cost analysis, multiply-add = 2 FLOPs; AnchorNet's own FLOPs
  charged once past stage 0), mean exit stage, and the CPU wall time of one cascade run.

Runtime: 652 s wall, 510 s CPU of this process for the full run on the project's shared 2-core
VM (mean 1-minute load 5: other processes competed for the cores; CPU seconds are the stable
figure), AnchorNet training 250 of them; peak RSS 3.6 GiB. ``--small``: about 60 s. Two
virtual CPU devices (``xaijax.use_cpu_devices(2)``) so that training splits its batches.

Last result (2026-11-30, ``experiments/results/anchornet.md`` and ``anchornet.png``): AnchorNet
test accuracy 97.6 %, max |logit - (sum + bias)| 1.5e-5 in float32. Top-1 patch hit rate
(either criterion) 100.0 / 77.7 / 27.1 % for size classes 0 / 1 / 2 (67.0 % overall; IoU >=
0.5 alone 25.0 %): target 90 % missed for sizes 1 and 2. Each branch's own best patch hits
99.3 % (RF 23) on size 0, 100 % (RF 39) on size 1 and 95.3 % (RF 55) on size 2: the patches
are there, but the branch with the largest CAM value is RF 23 on 57-66 % of the images of
every size, so the multi-scale claim (largest RF wins on large objects) is missed; ranked by
raw logit contribution instead, 100 / 90.2 / 64.7 %. Text span hit rate 99.8 % (target met).
The zoo resnet (97.0 %): Grad-CAM WSOL boxes 94.8 %, CNN Fixations WSOL 91.6 % (larger boxes:
2224 and 3015 px² vs 925). Downstream: full 96 px 97.0 % at 33.6 MFLOPs, resized to 48 px
68.0 % at 8.2, top-1 patch 94.2 %, top-3 patches 99.4 %; the cascade reaches 98.0 % at 43.4
MFLOPs, but AnchorNet itself costs 30.8 MFLOPs (0.92x the full resnet), so no setting that uses
patches is 2x cheaper than the full image: that target is missed.

Every number here is measured on the *synthetic benchmark* of ``xaijax.data.synthetic`` with
small networks trained here; none is a reproduction of the paper's ImageNet results.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import xaijax
from xaijax import anchornet, attribution, metrics, models, training
from xaijax import fixations as fx
from xaijax.data import synthetic

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_MD = os.path.join(HERE, "results", "anchornet.md")
RESULTS_PNG = os.path.join(HERE, "results", "anchornet.png")

RFS = (23, 39, 55)
PATCH = 48
TOPK_DOWN = 3
PEAK_BOX = 39
FULL = dict(
    num_train=4000,
    num_test=500,
    an=dict(width=24, stem_width=16, features=64),
    an_steps=300,
    text_train=4000,
    text_steps=300,
    text=dict(width=32, features=32, embed_dim=32),
    cnn={},
    cnn_steps=600,
    down_steps=400,
    batch=32,
)
SMALL = dict(
    num_train=128,
    num_test=40,
    an=dict(width=8, stem_width=8, features=16),
    an_steps=4,
    text_train=128,
    text_steps=4,
    text=dict(width=8, features=8, embed_dim=8),
    cnn=dict(widths=(8, 8, 8, 8), stem_features=8),
    cnn_steps=4,
    down_steps=4,
    batch=16,
)
THRESHOLDS = [
    [0.0, 0.0, 0.0, 0.0],
    [0.2, 0.6, 0.9, 0.0],
    [0.4, 0.7, 0.9, 0.0],
    [0.6, 0.8, 0.9, 0.0],
    [0.8, 0.9, 0.9, 0.0],
    [0.95, 0.9, 0.9, 0.0],
    [1.0, 1.0, 1.0, 0.0],
]


class Clock:
    """Wall and CPU seconds of named parts of the run."""

    def __init__(self):
        self.parts: list[tuple[str, float, float]] = []

    def __call__(self, name: str):
        clock = self

        class _Span:
            def __enter__(self):
                self.t, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                clock.parts.append(
                    (name, time.perf_counter() - self.t, time.process_time() - self.c)
                )
                print(
                    f"  [{name}: {clock.parts[-1][1]:.0f} s wall, {clock.parts[-1][2]:.0f} s cpu]"
                )

        return _Span()


def batched(fn, x: np.ndarray, size: int):
    """``fn`` over fixed-shape batches of ``x`` (the last padded), results concatenated."""
    outs = []
    for lo in range(0, len(x), size):
        chunk = x[lo : lo + size]
        n = len(chunk)
        if n < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
        out = jax.tree.map(lambda a, n=n: np.asarray(a)[:n], fn(chunk))
        outs.append(out)
    return jax.tree.map(lambda *a: np.concatenate(a), *outs)


# --- hit criteria -------------------------------------------------------------------------------


def gt_inclusive(box: np.ndarray) -> np.ndarray:
    """``(y0, x0, y1, x1)`` exclusive -> inclusive ``(x1, y1, x2, y2)``."""
    y0, x0, y1, x1 = (box[..., i] for i in range(4))
    return np.stack([x0, y0, x1 - 1, y1 - 1], axis=-1).astype(np.float64)


def iou_incl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of inclusive ``(x1, y1, x2, y2)`` boxes ``[..., 4]`` (empty boxes: 0)."""
    ix = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    iy = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = ix * iy
    area = lambda c: (
        np.maximum(0, c[..., 2] - c[..., 0] + 1) * np.maximum(0, c[..., 3] - c[..., 1] + 1)
    )  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def inside_fraction(box: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fraction of each object's pixels inside inclusive ``box [N, 4]``; ``mask [N, H, W]``."""
    n, h, w = mask.shape
    ys, xs = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    b = box[:, :, None, None]
    inb = (xs >= b[:, 0]) & (xs <= b[:, 2]) & (ys >= b[:, 1]) & (ys <= b[:, 3])
    return (inb & mask).sum((1, 2)) / np.maximum(mask.sum((1, 2)), 1)


def hits(box: np.ndarray, gt_box: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    iou = iou_incl(box, gt_box) >= 0.5
    inside = inside_fraction(box, mask) >= 0.5
    return {"iou": iou, "inside": inside, "either": iou | inside}


def excl_to_incl(b: np.ndarray) -> np.ndarray:
    """xaijax.metrics ``(y0, x0, y1, x1)`` exclusive -> inclusive ``(x1, y1, x2, y2)``."""
    return gt_inclusive(np.asarray(b))


def peak_boxes(maps: np.ndarray, side: int) -> np.ndarray:
    """A ``side x side`` inclusive box centred on each map's maximum, shifted inside."""
    n, h, w = maps.shape
    flat = np.argmax(maps.reshape(n, -1), axis=1)
    cy, cx = flat // w, flat % w
    y1 = np.clip(cy - side // 2, 0, h - side)
    x1 = np.clip(cx - side // 2, 0, w - side)
    return np.stack([x1, y1, x1 + side - 1, y1 + side - 1], -1).astype(np.float64)


def rank_by_raw(p) -> np.ndarray:
    """Slot order of ``Patches`` by raw contribution (descending; invalid slots last)."""
    key = np.where(np.asarray(p.valid), np.asarray(p.raw_scores), -np.inf)
    return np.argsort(-key, axis=1, kind="stable")


def take_slots(a, order):
    a = np.asarray(a)
    return np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)


# --- parts --------------------------------------------------------------------------------------


def train_anchornet(cfg, train, clock):
    net = anchornet.anchornet_multi(10, rfs=RFS, **cfg["an"])
    with clock("AnchorNet training"):
        res = training.train(
            net,
            {"image": train["image"], "label": train["label"]},
            steps=cfg["an_steps"],
            batch_size=cfg["batch"],
            learning_rate=3e-3,
            seed=0,
            progress=False,
        )
    return net, res


def make_patch_fn(net, variables, topk: int = 2):
    """A jitted ``x -> (patches, logits, exactness error, pixel maps)`` (predicted class).

    Each slot's ``raw_scores`` is rescaled to the code's CAM, ``F(i, j) W_c`` (the contribution
    times the branch's number of locations), so that branches with fewer locations are not
    favoured when patches of different branches are compared.
    """
    explain = anchornet.contributions(net)
    rfs = net.receptive_fields()

    @jax.jit
    def one(x):
        c = explain(variables, x)
        logits = net.apply(variables, x, train=False)
        p = anchornet.informative_patches(
            c.location_map,
            rf=[r.rf[0] for r in rfs],
            jump=[r.jump[0] for r in rfs],
            offset=[r.offset[0] for r in rfs],
            topk=topk,
            iou_threshold=0.3,
            valid=c.valid,
        )
        count = jnp.sum(c.valid, axis=tuple(range(2, c.valid.ndim)))  # [B, branch]
        per_slot = jnp.take_along_axis(count, p.branch, axis=1)
        contrib = p.raw_scores
        p = p._replace(raw_scores=p.raw_scores * per_slot)
        axes = tuple(range(1, c.contributions.ndim - 1))
        err = jnp.max(jnp.abs(logits - (c.contributions.sum(axis=axes) + c.bias)), axis=-1)
        return p, logits, err, c.pixel_maps, contrib

    return one


def patch_metrics(p, test, num_branches: int):
    order = rank_by_raw(p)
    boxes = take_slots(p.boxes, order).astype(np.float64)
    branch = take_slots(p.branch, order)
    gt = gt_inclusive(test["box"])
    mask = test["object_mask"]
    top = hits(boxes[:, 0], gt, mask)
    winner = branch[:, 0]
    per_branch = {}
    raw_branch = np.asarray(p.branch)
    valid = np.asarray(p.valid)
    for b in range(num_branches):
        slot = np.argmax((raw_branch == b) & valid, axis=1)  # first = the branch's best
        bb = np.take_along_axis(np.asarray(p.boxes), slot[:, None, None], 1)[:, 0]
        per_branch[b] = hits(bb.astype(np.float64), gt, mask)
    return dict(
        order=order,
        boxes=boxes,
        top=top,
        winner=winner,
        per_branch=per_branch,
        norm_first_is_branch1=float(np.mean(np.asarray(p.branch)[:, 0] == 0)),
    )


def text_part(cfg, clock):
    tcfg = synthetic.TextConfig()
    tr = synthetic.make_texts(cfg["text_train"], seed=0, split="train", config=tcfg)
    te = synthetic.make_texts(cfg["num_test"], seed=0, split="test", config=tcfg)
    net = anchornet.anchornet_text(10, vocab_size=tcfg.vocab_size, rfs=(3, 5, 7), **cfg["text"])
    with clock("text AnchorNet training"):
        res = training.train(
            net,
            {"tokens": tr["tokens"], "label": tr["label"]},
            input_key="tokens",
            steps=cfg["text_steps"],
            batch_size=64 if cfg is FULL else 16,
            learning_rate=3e-3,
            seed=0,
            progress=False,
        )
    v = res.variables
    acc = training.evaluate(net, res.params, te["tokens"], te["label"], model_state=res.model_state)
    p, _, err, _, _ = batched(make_patch_fn(net, v), te["tokens"], 50)
    order = rank_by_raw(p)
    spans = take_slots(p.boxes, order)[:, 0]
    s0, s1 = te["span"][:, 0], te["span"][:, 1] - 1  # inclusive
    covers = (spans[:, 0] <= s0) & (spans[:, 1] >= s1)
    inter = np.maximum(0, np.minimum(spans[:, 1], s1) - np.maximum(spans[:, 0], s0) + 1)
    union = (spans[:, 1] - spans[:, 0] + 1) + (s1 - s0 + 1) - inter
    iou = inter / union >= 0.5
    win = take_slots(p.branch, order)[:, 0]
    return dict(
        accuracy=acc,
        covers=covers.mean(),
        iou=iou.mean(),
        either=(covers | iou).mean(),
        winner=np.bincount(win, minlength=3) / len(win),
        max_err=float(np.max(err)),
        example=(te["tokens"][0], te["span"][0], spans[0], int(te["label"][0])),
    )


def cnn_boxes(model, params, test, clock):
    """Grad-CAM and fixation maps of the zoo CNN, boxes by the WSOL and peak rules."""
    apply_fn = models.apply_fn(model)
    gcam = attribution.grad_cam(model, model.cam_layer)
    fix = fx.fixations(apply_fn, channel_reduction="count")
    out = {}
    with clock("Grad-CAM"):
        g = batched(lambda x: gcam(params, jnp.asarray(x)), test["image"], 50)
    with clock("CNN Fixations"):
        counts = batched(lambda x: fix(params, jnp.asarray(x)), test["image"], 50)
    fheat = batched(lambda c: fx.heatmap(jnp.asarray(c)), counts, 50)
    gt = gt_inclusive(test["box"])
    mask = test["object_mask"]
    rows = {
        "Grad-CAM, WSOL": excl_to_incl(metrics.box_from_map(jnp.asarray(g), threshold=0.15)),
        "Grad-CAM, peak 39 px": peak_boxes(g, PEAK_BOX),
        "CNN Fixations, WSOL": excl_to_incl(fx.boxes(jnp.asarray(counts), rule="heatmap")),
        "CNN Fixations, peak 39 px": peak_boxes(fheat, PEAK_BOX),
    }
    for name, b in rows.items():
        h = hits(b, gt, mask)
        area = np.maximum(0, b[:, 2] - b[:, 0] + 1) * np.maximum(0, b[:, 3] - b[:, 1] + 1)
        out[name] = dict(hits=h, area=float(area.mean()), boxes=b)
    return out


def train_cnn(cfg, x, y, clock, name, steps):
    model = models.get_model("resnet", 10, **cfg["cnn"])
    with clock(name):
        res = training.train(
            model,
            {"image": x, "label": y},
            steps=steps,
            batch_size=cfg["batch"],
            learning_rate=2e-3,
            seed=0,
            progress=False,
        )
    return model, res


def xla_flops(fn, example) -> float:
    cost = jax.jit(fn).lower(example).compile().cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


# --- report -------------------------------------------------------------------------------------


def pct(v) -> str:
    return f"{100 * float(np.mean(v)):.1f} %"


def figure(test, pm, pixel_maps, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    idx = []
    for k in range(3):
        idx += list(np.flatnonzero(test["size_class"] == k)[:2])
    colours = ["tab:cyan", "tab:orange", "tab:pink"]
    fig, axes = plt.subplots(2, len(idx), figsize=(2.3 * len(idx), 5.0))
    for col, i in enumerate(idx):
        ax = axes[0, col]
        ax.imshow(test["image"][i], interpolation="nearest")
        y0, x0, y1, x1 = test["box"][i]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="lime", lw=2))
        for b in range(len(RFS)):
            bb = pm["branch_boxes"][b][i]
            win = pm["winner"][i] == b
            ax.add_patch(
                Rectangle(
                    (bb[0] - 0.5, bb[1] - 0.5),
                    bb[2] - bb[0] + 1,
                    bb[3] - bb[1] + 1,
                    fill=False,
                    ec=colours[b],
                    lw=3 if win else 1.2,
                    ls="-" if win else "--",
                )
            )
        hit = "hit" if pm["top"]["either"][i] else "miss"
        ax.set_title(
            f"size {int(test['size_class'][i])}: wins RF {RFS[pm['winner'][i]]}\n({hit})",
            fontsize=9,
        )
        ax.axis("off")
        m = pixel_maps[i].sum(0)
        axes[1, col].imshow(m, cmap="RdBu_r", vmin=-np.abs(m).max(), vmax=np.abs(m).max())
        axes[1, col].set_title("contribution map", fontsize=8)
        axes[1, col].axis("off")
    fig.suptitle(
        "AnchorNet on the needle benchmark (synthetic): GT box green; best patch per branch "
        f"(RF {RFS[0]} cyan, {RFS[1]} orange, {RFS[2]} pink), winner thick",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    xaijax.use_cpu_devices(2)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny run-through (~1 min)")
    parser.add_argument("--no-write", action="store_true", help="do not write the results")
    args = parser.parse_args(argv)
    cfg = SMALL if args.small else FULL
    clock = Clock()
    cpu0, wall0, load0 = time.process_time(), time.perf_counter(), os.getloadavg()[0]
    ncfg = synthetic.needle_config(96)
    with clock("data"):
        train = synthetic.make_images(cfg["num_train"], seed=0, split="train", config=ncfg)
        test = synthetic.make_images(cfg["num_test"], seed=0, split="test", config=ncfg)
    sizes = test["size_class"]

    # 1. AnchorNet: accuracy, contributions, patches.
    net, res = train_anchornet(cfg, train, clock)
    v = res.variables
    acc = training.evaluate(
        net, res.params, test["image"], test["label"], model_state=res.model_state
    )
    patch_fn = make_patch_fn(net, v)
    with clock("AnchorNet contributions + patches (test)"):
        p, _, err, pixel_maps, contrib = batched(patch_fn, test["image"], 50)
    pm = patch_metrics(p, test, len(RFS))
    pm_alt = patch_metrics(p._replace(raw_scores=contrib), test, len(RFS))
    pm["branch_boxes"] = {}
    for b in range(len(RFS)):
        slot = np.argmax((np.asarray(p.branch) == b) & np.asarray(p.valid), axis=1)
        pm["branch_boxes"][b] = np.take_along_axis(np.asarray(p.boxes), slot[:, None, None], 1)[
            :, 0
        ]
    print(f"AnchorNet test accuracy {100 * acc:.1f} %, max |logit - (sum + bias)| {err.max():.2e}")

    # 2. Text.
    txt = text_part(cfg, clock)
    print(f"text: accuracy {100 * txt['accuracy']:.1f} %, span hit (either) {pct(txt['either'])}")

    # 3. Zoo CNN on the full 96 px images; Grad-CAM and fixation boxes.
    cnn, cres = train_cnn(
        cfg, train["image"], train["label"], clock, "resnet training (96 px)", cfg["cnn_steps"]
    )
    cnn_acc = training.evaluate(cnn, cres.params, test["image"], test["label"])
    comp = cnn_boxes(cnn, cres.params, test, clock)

    # 4. Downstream: resized full images vs top-3 patches; the cascade.
    cascade_api = True
    try:
        from xaijax.anchornet import (
            cascade_table,
            crop_patches,
            early_exit_cascade,
            resize_full,
            stage_flops,
        )
    except ImportError:
        cascade_api = False
        print("NOTE: xaijax.anchornet has no cascade API yet: downstream section skipped.")
    down = None
    if cascade_api:
        with clock("AnchorNet patches (train)"):
            ptr = batched(patch_fn, train["image"], 50)[0]
            tr_boxes = take_slots(ptr.boxes, rank_by_raw(ptr))[:, :TOPK_DOWN]
            tr_crops = np.concatenate(
                [
                    np.asarray(
                        crop_patches(
                            jnp.asarray(train["image"][lo : lo + 100]),
                            jnp.asarray(tr_boxes[lo : lo + 100]),
                            size=PATCH,
                        )
                    )
                    for lo in range(0, len(tr_boxes), 100)
                ]
            )
            tr_full = np.asarray(resize_full(jnp.asarray(train["image"]), size=PATCH))
        te_boxes = pm["boxes"][:, :TOPK_DOWN].astype(np.int32)
        te_crops = np.asarray(
            crop_patches(jnp.asarray(test["image"]), jnp.asarray(te_boxes), size=PATCH)
        )
        te_full = np.asarray(resize_full(jnp.asarray(test["image"]), size=PATCH))
        small_net, sres = train_cnn(
            cfg,
            tr_full,
            train["label"],
            clock,
            f"resnet training (full at {PATCH} px)",
            cfg["down_steps"],
        )
        patch_net, pres = train_cnn(
            cfg,
            tr_crops.reshape((-1, PATCH, PATCH, 3)),
            np.repeat(train["label"], TOPK_DOWN),
            clock,
            f"resnet training (top-{TOPK_DOWN} patches at {PATCH} px)",
            cfg["down_steps"],
        )
        small_acc = training.evaluate(small_net, sres.params, te_full, test["label"])
        papply = models.apply_fn(patch_net)
        plog = batched(
            lambda c: papply(pres.params, jnp.asarray(c).reshape((-1, PATCH, PATCH, 3))).reshape(
                (c.shape[0], TOPK_DOWN, -1)
            ),
            te_crops,
            50,
        )
        top1_acc = float(np.mean(plog[:, 0].argmax(-1) == test["label"]))
        mean_acc = float(np.mean(plog.mean(1).argmax(-1) == test["label"]))
        f_full96 = stage_flops(models.apply_fn(cnn), cres.params, patch_size=96, channels=3)
        f_patch = stage_flops(papply, pres.params, patch_size=PATCH, channels=3)
        f_anchor = xla_flops(
            lambda x: net.apply(v, x, train=False), jnp.zeros((1, 96, 96, 3), jnp.float32)
        )
        with clock("cascade (one run, all stages)"):
            cres_ = early_exit_cascade(
                papply,
                pres.params,
                jnp.asarray(test["image"]),
                jnp.asarray(te_boxes),
                patch_size=PATCH,
                thresholds=THRESHOLDS[1],
                selector_flops=f_anchor,
            )
            jax.block_until_ready(cres_.logits)
        # CPU wall time per image of one jitted cascade run (after compilation) and of the
        # full-image net, same batch.
        t = time.perf_counter()
        jax.block_until_ready(
            early_exit_cascade(
                papply,
                pres.params,
                jnp.asarray(test["image"]),
                jnp.asarray(te_boxes),
                patch_size=PATCH,
                thresholds=THRESHOLDS[1],
                selector_flops=f_anchor,
            ).logits
        )
        cascade_ms = 1000 * (time.perf_counter() - t) / len(test["label"])
        full_fn = jax.jit(lambda x: models.apply_fn(cnn)(cres.params, x))
        jax.block_until_ready(full_fn(jnp.asarray(test["image"])))
        t = time.perf_counter()
        jax.block_until_ready(full_fn(jnp.asarray(test["image"])))
        full_ms = 1000 * (time.perf_counter() - t) / len(test["label"])
        an_fn = jax.jit(lambda x: net.apply(v, x, train=False))
        jax.block_until_ready(an_fn(jnp.asarray(test["image"])))
        t = time.perf_counter()
        jax.block_until_ready(an_fn(jnp.asarray(test["image"])))
        an_ms = 1000 * (time.perf_counter() - t) / len(test["label"])
        table = cascade_table(cres_, test["label"], THRESHOLDS, selector_flops=f_anchor)
        down = dict(
            small_acc=small_acc,
            top1_acc=top1_acc,
            mean_acc=mean_acc,
            f_full96=f_full96,
            f_patch=f_patch,
            f_anchor=f_anchor,
            table=table,
            cascade_ms=cascade_ms,
            full_ms=full_ms,
            an_ms=an_ms,
        )

    cpu_total = time.process_time() - cpu0
    wall_total = time.perf_counter() - wall0
    load = (load0 + os.getloadavg()[0]) / 2
    md, ok = report(
        argv,
        pm_alt,
        cfg,
        acc,
        err,
        pm,
        sizes,
        txt,
        cnn_acc,
        comp,
        down,
        clock,
        cpu_total,
        wall_total,
        load,
    )
    print(md)
    if not args.no_write:
        os.makedirs(os.path.dirname(RESULTS_MD), exist_ok=True)
        with open(RESULTS_MD, "w") as f:
            f.write(md)
        figure(test, pm, pixel_maps, RESULTS_PNG)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB; total {wall_total:.0f} s wall, {cpu_total:.0f} s cpu")
    del ok
    return 0


def report(
    argv,
    pm_alt,
    cfg,
    acc,
    err,
    pm,
    sizes,
    txt,
    cnn_acc,
    comp,
    down,
    clock,
    cpu_total,
    wall_total,
    load,
):
    S = len(RFS)
    L = [
        "# AnchorNet on the needle benchmark (synthetic benchmark)",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'experiments/anchornet.py', *argv])}`  ",
        f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, Python "
        f"{platform.python_version()}, jax {jax.__version__}, 2 virtual CPU devices.  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}. Total {wall_total:.0f} s wall, "
        f"{cpu_total:.0f} s CPU of this process, mean 1-minute load {load:.1f}.  ",
        f"Data: `needle_config(96)` (10 classes, 12 distractors, size classes 0/1/2 = object "
        f"diameter 0.25/0.40/0.60 of the side), {cfg['num_train']} train / {cfg['num_test']} test "
        "images; image-level labels only. Every number is measured on this synthetic benchmark.",
        "",
        "## AnchorNet (multi-branch, RF 23 / 39 / 55 px, jump 4, no SE)",
        "",
        f"Test accuracy **{100 * acc:.1f} %** ({cfg['an_steps']} steps of {cfg['batch']}). "
        f"Exactness on the test set: max |logit - (sum of contributions + bias)| = "
        f"{float(np.max(err)):.1e} (float32).",
        "",
        "Top-1 patch (largest CAM value F(i, j) W_c of the predicted class over all branches) "
        "hit rate:",
        "",
        "| size class | n | IoU >= 0.5 | inside >= 50 % | either | target (either) | met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    targets_missed = []
    for k in (0, 1, 2, None):
        m = np.ones_like(sizes, bool) if k is None else sizes == k
        e = float(np.mean(pm["top"]["either"][m]))
        L.append(
            f"| {'all' if k is None else k} | {m.sum()} | {pct(pm['top']['iou'][m])} | "
            f"{pct(pm['top']['inside'][m])} | {pct(pm['top']['either'][m])} | 90 % | "
            f"{'yes' if e >= 0.9 else 'NO'} |"
        )
        if e < 0.9:
            targets_missed.append(
                f"top-1 hit rate (either), size {'all' if k is None else k}: {100 * e:.1f} %"
            )
    L += [
        "",
        "Per branch (that branch's best patch), hit rate (either / IoU / inside) per size class:",
        "",
        "| branch (RF) | size 0 | size 1 | size 2 | all |",
        "|---|---|---|---|---|",
    ]
    for b in range(S):
        h = pm["per_branch"][b]
        cells = []
        for k in (0, 1, 2, None):
            m = np.ones_like(sizes, bool) if k is None else sizes == k
            cells.append(f"{pct(h['either'][m])} / {pct(h['iou'][m])} / {pct(h['inside'][m])}")
        L.append(f"| {b + 1} ({RFS[b]} px) | " + " | ".join(cells) + " |")
    L += [
        "",
        "Which branch wins (holds the top-1 patch), size class x winning branch (row fractions):",
        "",
        "| size class | " + " | ".join(f"branch {b + 1} (RF {RFS[b]})" for b in range(S)) + " |",
        "|---|" + "---:|" * S,
    ]
    for k in range(3):
        m = sizes == k
        frac = np.bincount(pm["winner"][m], minlength=S) / max(m.sum(), 1)
        L.append(f"| {k} | " + " | ".join(f"{100 * f:.1f} %" for f in frac) + " |")
    small_win = (
        np.bincount(pm["winner"][sizes == 0], minlength=S).argmax() if np.any(sizes == 0) else -1
    )
    large_win = (
        np.bincount(pm["winner"][sizes == 2], minlength=S).argmax() if np.any(sizes == 2) else -1
    )
    claim = small_win == 0 and large_win == S - 1
    L += [
        "",
        f"Multi-scale claim (smallest-RF branch wins most often on size 0, largest on size 2): "
        f"**{'met' if claim else 'NOT met'}** (size 0 mostly branch {small_win + 1}, size 2 mostly "
        f"branch {large_win + 1}).",
        f"The library's merged order (scores divided by each branch's maximum) puts branch 1 "
        f"first in {100 * pm['norm_first_is_branch1']:.0f} % of the images: every branch's best "
        "patch scores exactly 1.0 and the stable sort keeps branch order, so that order cannot "
        "say which branch wins; the CAM value is used above.",
        "",
        "Ranked by the raw contribution to the logit instead (CAM / number of locations, which "
        "favours the branches with fewer locations): top-1 hit rate (either) and winner "
        "fractions per size class:",
        "",
        "| size class | either | " + " | ".join(f"branch {b + 1}" for b in range(S)) + " |",
        "|---|---:|" + "---:|" * S,
    ]
    for k in range(3):
        m = sizes == k
        frac = np.bincount(pm_alt["winner"][m], minlength=S) / max(m.sum(), 1)
        L.append(
            f"| {k} | {pct(pm_alt['top']['either'][m])} | "
            + " | ".join(f"{100 * f:.1f} %" for f in frac)
            + " |"
        )
    L.append("")
    if not claim:
        targets_missed.append(
            f"multi-scale claim: size 0 mostly branch {small_win + 1}, size 2 mostly branch "
            f"{large_win + 1}"
        )
    L += [
        "## Text (planted key trigram, anchornet_text RF 3 / 5 / 7 tokens)",
        "",
        f"Test accuracy {100 * txt['accuracy']:.1f} %; max |logit - (sum + bias)| "
        f"{txt['max_err']:.1e}. Top-1 span hit rate: covers the trigram {pct(txt['covers'])}, "
        f"IoU >= 0.5 {pct(txt['iou'])}, **either {pct(txt['either'])}** (target 90 %: "
        f"{'met' if txt['either'] >= 0.9 else 'NOT met'}). Winning branch (RF 3 / 5 / 7): "
        + " / ".join(f"{100 * w:.0f} %" for w in txt["winner"])
        + ".",
        "",
    ]
    if txt["either"] < 0.9:
        targets_missed.append(f"text span hit rate (either): {100 * txt['either']:.1f} %")
    L += [
        "## Comparison: zoo resnet (96 px) Grad-CAM and CNN-Fixations boxes",
        "",
        f"resnet test accuracy {100 * cnn_acc:.1f} % ({cfg['cnn_steps']} steps). Same criteria "
        "(either / IoU >= 0.5 / inside >= 50 %), all sizes and per size class; mean box area "
        "in px².",
        "",
        "| method | all | size 0 | size 1 | size 2 | mean box area |",
        "|---|---|---|---|---|---:|",
    ]
    an_area = np.mean(
        (pm["boxes"][:, 0, 2] - pm["boxes"][:, 0, 0] + 1)
        * (pm["boxes"][:, 0, 3] - pm["boxes"][:, 0, 1] + 1)
    )
    rows = [("AnchorNet top-1 patch", pm["top"], an_area)] + [
        (n, c["hits"], c["area"]) for n, c in comp.items()
    ]
    for name, h, area in rows:
        cells = []
        for k in (None, 0, 1, 2):
            m = np.ones_like(sizes, bool) if k is None else sizes == k
            cells.append(f"{pct(h['either'][m])} / {pct(h['iou'][m])} / {pct(h['inside'][m])}")
        L.append(f"| {name} | " + " | ".join(cells) + f" | {area:.0f} |")
    L.append("")
    if down is not None:
        g = 1e6
        L += [
            f"## Downstream (resnet, patch size {PATCH} px) and the early-exit cascade",
            "",
            "| input | test accuracy | FLOPs / image (M) |",
            "|---|---:|---:|",
            f"| full image, 96 px (the comparison net) | {100 * cnn_acc:.1f} % | "
            f"{down['f_full96'] / g:.1f} |",
            f"| full image resized to {PATCH} px | {100 * down['small_acc']:.1f} % | "
            f"{down['f_patch'] / g:.1f} |",
            f"| AnchorNet top-1 patch at {PATCH} px (+ selector) | "
            f"{100 * down['top1_acc']:.1f} % | {(down['f_patch'] + down['f_anchor']) / g:.1f} |",
            f"| mean logits of the top-{TOPK_DOWN} patches (+ selector) | "
            f"{100 * down['mean_acc']:.1f} % | "
            f"{(TOPK_DOWN * down['f_patch'] + down['f_anchor']) / g:.1f} |",
            "",
            f"AnchorNet (selector) forward: {down['f_anchor'] / g:.1f} MFLOPs at 96 px. FLOPs: XLA "
            "cost analysis of one example (a multiply-add counts 2).",
            "",
            f"Cascade (net trained on patches; stage 0 = full image resized to {PATCH} px, stage j "
            f"adds patch j; exit when the top softmax > the stage threshold):",
            "",
            "| stage thresholds | accuracy | mean MFLOPs | FLOPs vs full 96 px | mean exit stage |",
            "|---|---:|---:|---:|---:|",
        ]
        best = None
        for r in down["table"]:
            ratio = down["f_full96"] / r["mean_flops"]
            L.append(
                f"| {r['thresholds']} | {100 * r['accuracy']:.1f} % | {r['mean_flops'] / g:.1f} | "
                f"{ratio:.2f}x fewer | {r['mean_exit_stage']:.2f} |"
            )
            uses_patches = r["mean_exit_stage"] > 0
            if uses_patches and ratio >= 2 and (best is None or r["accuracy"] > best["accuracy"]):
                best = r
        L += [
            "",
            f"CPU wall time per image (jitted, batch {len(sizes)}, after compilation): cascade "
            f"(all stages run, as the library computes them) {down['cascade_ms']:.2f} ms, "
            f"AnchorNet alone {down['an_ms']:.2f} ms, full-image resnet at 96 px "
            f"{down['full_ms']:.2f} ms.",
            "",
        ]
        if best is None:
            targets_missed.append(
                "downstream: no cascade setting using patches at >= 2x fewer FLOPs than 96 px"
            )
            L += [
                "Target (within 2 points of the full 96 px image at >= 2x fewer FLOPs): **NOT "
                "met**: no setting that uses patches (mean exit stage > 0) costs >= 2x fewer "
                "FLOPs than the full image at 96 px.",
                "",
            ]
        else:
            gap = 100 * (cnn_acc - best["accuracy"])
            L.append(
                f"Target (within 2 points of the full 96 px image at >= 2x fewer FLOPs; only "
                f"settings that use patches, mean exit stage > 0): best setting at >= 2x fewer "
                f"FLOPs is {best['thresholds']} with "
                f"{100 * best['accuracy']:.1f} % vs {100 * cnn_acc:.1f} % ({gap:+.1f} points "
                f"behind): **{'met' if gap <= 2 else 'NOT met'}**."
            )
            L.append("")
            if gap > 2:
                targets_missed.append(
                    f"downstream: {gap:.1f} points behind full at >= 2x fewer FLOPs"
                )
    L += ["## Time", "", "| part | wall s | cpu s |", "|---|---:|---:|"]
    L += [f"| {n} | {w:.0f} | {c:.0f} |" for n, w, c in clock.parts]
    L += [
        "",
        "## Targets missed",
        "",
        *(f"- {t}" for t in targets_missed or ["none"]),
        "",
    ]
    return "\n".join(L), not targets_missed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
