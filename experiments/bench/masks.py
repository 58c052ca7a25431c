"""Visual Summaries masks: batched xaijax (A1 + A2) against a PyTorch port of the authors' loop.

Claim checked (issue 13, item 5): ``xaijax.masks.smooth_mask`` then ``crisp_mask``, one jitted
program for a whole batch, is >= 10x faster per image than the authors' one-image PyTorch loop
on the same CPU, and its binarised crisp masks agree with the port's (IoU >= 0.8).

Command (needs the `bench` extra: torch 2.13.0 CPU, scipy; `make bench` sets it up):

    .venv-bench/bin/python experiments/bench/masks.py                 # full: 16 images, 300 + 150
    .venv-bench/bin/python experiments/bench/masks.py --quick --images 2 --out /tmp/m.md  # smoke

The PyTorch side is a faithful port of ``compute_heatmap`` in mcarletti/interpretable-visual-
summaries (explain.py, main.py, utils.py, regularizers.py; papers.md 4(b) Stage A), one image at
a time as the code runs:

- null image ``cv2.GaussianBlur(x, (11, 11), 10)`` on the [0, 1] image: OpenCV is not in the
  bench environment, so it is computed here in NumPy/SciPy with the same numbers (11 taps of
  ``exp(-t^2 / (2 * 10^2))``, normalised, OpenCV's default BORDER_REFLECT_101 = scipy's
  ``mode="mirror"``, separable), once per image before the loop;
- A1 (smooth): an ``H/8 x W/8`` mask initialised by the code's ``load_mask(..., 'circular')``
  (zeros where ``x^2 + y^2 <= (n//2)^2`` on the grid ``x, y in [-n//2, n - n//2)``); each
  iteration ``nn.Upsample(mode='bilinear')`` (modern PyTorch: ``align_corners=False``), then
  ``scipy.ndimage.gaussian_filter(sigma=5)`` on the host written into the tensor's ``.data``
  (no gradient through the blur: straight-through, as ``utils.BlurTensor``), ``x' = x * M +
  null * (1 - M)``, loss ``softmax(model(x'))[c] + 0.5 * mean|1 - m| + 0.01 * TV_3(m)`` (the
  "bmvc" preset), Adam lr 0.1, 300 iterations, ``clamp_(0, 1)``; final ``M`` = blurred
  upsampling of the final mask (explain.py at a225043), heat mask ``h = 1 - (M - min M) / max
  M``;
- A2 (crisp): full-resolution mask initialised as main.py does, from the saved PNG of ``h``:
  ``1 - uint8(255 h) / 255``; no blur; loss ``p_c + 0.01 L1 + 1.0 TV_3 + 2.0 LASSO``; 150
  iterations; same Adam, clamp and heat mask.

``c`` is the arg-max class of the unperturbed image in both. The model is the zoo VGG
(``models.get_model("vgg", 10)``) trained as experiments/gallery.py trains it (300 steps on 6000
synthetic images, lr 2e-3; the same ``train_or_restore`` cache entry ``gallery-vgg``), with its
weights ported to PyTorch (conv kernels HWIO -> OIHW, dense kernel transposed), as
experiments/bench/attribution.py ports its CNN. Images: the synthetic test split at 64 px (mask
8 x 8). ``--untrained`` uses the initial weights instead (seconds only: no meaningful target).

Reported: seconds per image for xaijax (one jitted call on the whole batch, after a warm-up
call; the warm-up minus the timed call is reported as the compile time) and for the torch loop
(per image, ``torch.set_num_threads(os.cpu_count())``), their ratio; agreement per image: IoU of
the binarised crisp heat masks (``h > 128/255``, Stage B's threshold), Pearson correlation of the
smooth heat masks; both implementations' target probability and drops. ``--same-init`` gives the
port xaijax's circular initialisation instead of the code's (to separate that difference from
the rest; see the notes the script writes).

A flat smooth mask (the optimiser keeps or deletes everything evenly: ``M`` constant up to
float noise) makes the code's heat mask ``1 - (M - min M) / max M`` an amplified copy of that
noise, which then initialises A2: both implementations reproduce this, but their crisp masks then
differ arbitrarily. The agreement lines are therefore given over all images and over those whose
smooth heat mask has a range of at least 0.01.

Expected runtime: ``--images 4`` (300 + 150 iterations) took 5.5 minutes on the 2-core CPU VM
under a load average of 5 (torch 38 s per image, xaijax 17 s per image; xaijax runs its whole
batch twice, warm-up and timed); the default 16 images take about four times as long.
``--quick --images 2`` (30 + 15 iterations) under a minute once the model is cached (the first
run trains it: a few minutes).

Known cost on CPU (measured 2026-11-30, jax 0.10.2, batch 4, this VM): 50 gradient steps of the
VGG take 0.4-0.7 s as 50 jitted calls or in a fully unrolled ``lax.scan`` but 3.7-4.9 s in a
rolled ``lax.scan`` (unroll 1; unroll 5: 3.7 s), and ``smooth_mask(iterations=50)`` takes 5.5
s: xaijax's one-scan program pays XLA CPU's while-loop cost, not the model's.
Last result: experiments/results/bench_masks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np

SIZE, CLASSES, SCALE = 64, 10, 8
A1 = {"iterations": 300, "l1": 0.5, "tv": 0.01, "lasso": 0.0}  # "bmvc" preset
A2 = {"iterations": 150, "l1": 0.01, "tv": 1.0, "lasso": 2.0}
TV_BETA, LR, MASK_SIGMA = 3.0, 0.1, 5.0
NULL_TAPS, NULL_SIGMA = 11, 10.0
FLAT = 1e-2  # heat masks with a smaller range are left out of the correlation


def timeit(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPU cores"


# ------------------------------------------------------------------------------- model and data
def load_model(untrained: bool):
    """The zoo VGG and its parameters (trained as experiments/gallery.py, cached)."""
    import jax
    import jax.numpy as jnp

    from xaijax import models, training
    from xaijax.data import synthetic

    net = models.get_model("vgg", CLASSES)
    if untrained:
        params = net.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))["params"]
        return net, params, None
    train = synthetic.make_images(6000, seed=0, split="train")
    result = training.train_or_restore(
        "gallery-vgg",
        net,
        {"image": train["image"], "label": train["label"]},
        input_key="image",
        steps=300,
        batch_size=32,
        learning_rate=2e-3,
        seed=0,
        progress=False,
    )
    return net, result.params, result


def test_images(n: int) -> np.ndarray:
    from xaijax.data import synthetic

    return synthetic.make_images(n, seed=1, split="test")["image"]


# --------------------------------------------------------------------------------------- xaijax
def run_xaijax(net, params, x: np.ndarray, it1: int, it2: int) -> dict:
    import jax
    import jax.numpy as jnp

    from xaijax import masks, models

    apply_fn = models.apply_fn(net)
    sm = masks.smooth_mask(apply_fn, preset="bmvc", iterations=it1)
    cm = masks.crisp_mask(apply_fn, iterations=it2, smooth=sm)
    xj = jnp.asarray(x)
    start = time.perf_counter()
    jax.block_until_ready(cm(params, xj))
    first = time.perf_counter() - start
    start = time.perf_counter()
    crisp = jax.block_until_ready(cm(params, xj))
    seconds = time.perf_counter() - start
    smooth = jax.block_until_ready(sm(params, xj))  # the A1 half alone, for the comparison
    labels = jnp.argmax(apply_fn(params, xj), -1)

    @jax.jit
    def step(xx):  # one gradient of p_c with respect to the input, the work of one iteration
        def total(z):
            return jnp.sum(jax.nn.softmax(apply_fn(params, z))[jnp.arange(len(z)), labels])

        return jax.grad(total)(xx)

    step_s = timeit(lambda: jax.block_until_ready(step(xj)), 5)
    return {
        "seconds": seconds,
        "first": first,
        "smooth": np.asarray(smooth.map),
        "crisp": np.asarray(crisp.map),
        "target_prob": np.asarray(crisp.target_prob),
        "smooth_drop": np.asarray(smooth.drop),
        "crisp_drop": np.asarray(crisp.drop),
        "blurred_prob": np.asarray(crisp.blurred_prob),
        "label": np.asarray(labels),
        "step": step_s / len(x),
        "crisp_mask": np.asarray(crisp.mask),
    }


# ---------------------------------------------------------------------------------------- torch
def null_image(img: np.ndarray) -> np.ndarray:
    """``cv2.GaussianBlur(img, (11, 11), 10)`` of one ``[H, W, C]`` image, in NumPy/SciPy."""
    from scipy import ndimage

    t = np.arange(NULL_TAPS, dtype=np.float64) - (NULL_TAPS - 1) / 2
    k = np.exp(-(t**2) / (2 * NULL_SIGMA**2))
    k /= k.sum()
    out = ndimage.correlate1d(img.astype(np.float64), k, axis=0, mode="mirror")
    out = ndimage.correlate1d(out, k, axis=1, mode="mirror")
    return out.astype(np.float32)


def code_circular(n: int) -> np.ndarray:
    """main.py ``load_mask(None, (n, n), 'circular')``: 0 inside the disk, 1 outside."""
    mask = np.zeros((n, n), np.float32)
    radius, cx, cy = n // 2, n // 2, n // 2
    xx, yy = np.ogrid[-cx : n - cx, -cy : n - cy]
    mask[xx * xx + yy * yy > radius * radius] = 1.0
    return mask


def torch_model(net, params):
    """The zoo VGG (``head="gap"``) in PyTorch with the Flax weights."""
    import torch
    from torch import nn

    widths, convs = net.widths, net.convs_per_block

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList()
            cin = 3
            for w in widths:
                layers = []
                for _ in range(convs):
                    layers += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU()]
                    cin = w
                self.blocks.append(nn.Sequential(*layers))
            self.head = nn.Linear(cin, CLASSES)

        def forward(self, x):
            for i, block in enumerate(self.blocks):
                if i > 0:
                    x = nn.functional.max_pool2d(x, 2)
                x = block(x)
            return self.head(x.mean(dim=(2, 3)))

    model = VGG().eval()
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            for j in range(convs):
                conv = block[2 * j]
                p = params[f"block{i + 1}"][f"conv{j + 1}"]
                conv.weight.copy_(torch.tensor(np.asarray(p["kernel"]).transpose(3, 2, 0, 1)))
                conv.bias.copy_(torch.tensor(np.asarray(p["bias"])))
        model.head.weight.copy_(torch.tensor(np.asarray(params["head"]["kernel"]).T))
        model.head.bias.copy_(torch.tensor(np.asarray(params["head"]["bias"])))
    for p in model.parameters():
        p.requires_grad = False  # utils.load_model freezes the network
    return model


def compute_heatmap(torch, model, img, null, mask_init, cfg, blur: bool):
    """explain.compute_heatmap for one image: ``(M, target_prob, output_prob, blurred_prob, c)``."""
    from scipy.ndimage import gaussian_filter
    from torch.nn import functional as F

    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    xb = torch.from_numpy(np.ascontiguousarray(null.transpose(2, 0, 1)))[None]
    mask = torch.from_numpy(mask_init.astype(np.float32)[None, None].copy()).requires_grad_(True)
    shape = img.shape[:2]

    def upsample_blur(m):
        up = F.interpolate(m, size=shape, mode="bilinear", align_corners=False)
        if blur:  # utils.BlurTensor: host blur written into .data (no gradient through it)
            up.data = torch.from_numpy(gaussian_filter(up.data.numpy(), sigma=MASK_SIGMA))
        return up

    def tv(m):
        a = m[0, 0]
        return torch.mean(torch.abs(a[:-1, :] - a[1:, :]).pow(TV_BETA)) + torch.mean(
            torch.abs(a[:, :-1] - a[:, 1:]).pow(TV_BETA)
        )

    optimizer = torch.optim.Adam([mask], lr=LR)
    with torch.no_grad():
        targets = torch.softmax(model(x), dim=1)
    category = int(torch.argmax(targets[0]))
    target_prob = float(targets[0, category])
    for _ in range(cfg["iterations"]):
        big = upsample_blur(mask).expand(1, 3, *shape)
        outputs = torch.softmax(model(x * big + xb * (1 - big)), dim=1)
        loss = (
            outputs[0, category]
            + cfg["l1"] * torch.mean(torch.abs(1 - mask))
            + cfg["tv"] * tv(mask)
            + cfg["lasso"] * torch.mean(torch.abs((1 - mask) * mask))
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        mask.data.clamp_(0, 1)
    with torch.no_grad():
        big = upsample_blur(mask)
        output_prob = float(torch.softmax(model(x * big + xb * (1 - big)), dim=1)[0, category])
        blurred_prob = float(torch.softmax(model(xb), dim=1)[0, category])
    return big[0, 0].detach().numpy(), target_prob, output_prob, blurred_prob, category


def heat(big: np.ndarray) -> np.ndarray:
    """utils.save: ``h = 1 - (M - min M) / max M``."""
    return 1.0 - (big - big.min()) / big.max()


def run_torch(net, params, x: np.ndarray, it1: int, it2: int, same_init: bool) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    model = torch_model(net, params)
    n = SIZE // SCALE
    if same_init:
        from xaijax.masks import circular_init

        init = np.asarray(circular_init((n, n)))
    else:
        init = code_circular(n)
    out = {k: [] for k in ("smooth", "crisp", "target_prob", "smooth_drop", "crisp_drop")}
    out.update(seconds=[], blurred_prob=[], label=[])
    for img in x:
        start = time.perf_counter()
        null = null_image(img)
        m1, p_t, p_m1, p_b, c = compute_heatmap(
            torch, model, img, null, init, {**A1, "iterations": it1}, blur=True
        )
        h1 = heat(m1)
        init2 = 1.0 - np.float32(np.uint8(255 * h1)) / 255  # mask.png written and read back
        m2, _, p_m2, _, _ = compute_heatmap(
            torch, model, img, null, init2, {**A2, "iterations": it2}, blur=False
        )
        out["seconds"].append(time.perf_counter() - start)
        out["smooth"].append(h1)
        out["crisp"].append(heat(m2))
        out["target_prob"].append(p_t)
        out["smooth_drop"].append((p_t - p_m1) / p_t)
        out["crisp_drop"].append((p_t - p_m2) / p_t)
        out["blurred_prob"].append(p_b)
        out["label"].append(c)
    res = {k: np.asarray(v) for k, v in out.items()}
    xt = torch.from_numpy(np.ascontiguousarray(x[0].transpose(2, 0, 1)))[None]

    c0 = int(out["label"][0])

    def step():  # one gradient of p_c with respect to one input, the work of one iteration
        xx = xt.clone().requires_grad_(True)
        torch.softmax(model(xx), dim=1)[0, c0].backward()

    res["step"] = timeit(step, 20)
    res["threads"] = torch.get_num_threads()
    res["version"] = torch.__version__
    return res


# ------------------------------------------------------------------------------------ agreement
def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="number of test images (16)")
    parser.add_argument(
        "--quick", action="store_true", help="30 + 15 iterations instead of 300 + 150 (smoke run)"
    )
    parser.add_argument(
        "--untrained", action="store_true", help="initial weights (timing only; no training)"
    )
    parser.add_argument(
        "--same-init",
        action="store_true",
        help="give the torch port xaijax's circular initialisation instead of the code's",
    )
    parser.add_argument(
        "--xaijax-only",
        action="store_true",
        help="time the batched xaijax side alone on the default backend (a GPU figure; no "
        "torch port, no agreement)",
    )
    parser.add_argument("--out", default="experiments/results/bench_masks.md")
    args = parser.parse_args()
    it1, it2 = (30, 15) if args.quick else (A1["iterations"], A2["iterations"])
    load_start = os.getloadavg()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

    import jax

    net, params, trained = load_model(args.untrained)
    x = test_images(args.images)
    ours = run_xaijax(net, params, x, it1, it2)
    if args.xaijax_only:
        device = jax.devices()[0]
        text = (
            f"# xaijax.masks A1 + A2 alone ({date})\n\n"
            f"Command: `experiments/bench/masks.py --xaijax-only --images {args.images}"
            f"{' --quick' if args.quick else ''}{' --untrained' if args.untrained else ''}`  \n"
            f"Device: {device.platform} ({device.device_kind}), jax {jax.__version__}; "
            f"{it1} + {it2} iterations, {len(x)} synthetic 64 px images in one batch.\n\n"
            f"- seconds per image (A1 + A2, batched, after a warm-up call): "
            f"{ours['seconds'] / len(x):.4f}\n"
            f"- first call, whole batch (compile + run): {ours['first']:.1f} s\n"
            f"- one gradient of p_c w.r.t. the input: {ours['step'] * 1e3:.3f} ms per image\n"
        )
        print(text)
        with open(args.out, "w") as fh:
            fh.write(text)
        return
    port = run_torch(net, params, x, it1, it2, args.same_init)
    load_end = os.getloadavg()

    ours_per = ours["seconds"] / len(x)
    port_per = float(np.mean(port["seconds"]))
    thr = 128 / 255
    ious = np.array(
        [iou(a > thr, b > thr) for a, b in zip(ours["crisp"], port["crisp"], strict=True)]
    )
    # A smooth mask that deletes (or keeps) everything evenly has a heat mask of range ~0, whose
    # normalisation amplifies float noise: its correlation means nothing, so it is left out.
    flat = np.array(
        [
            min(np.ptp(a), np.ptp(b)) < FLAT
            for a, b in zip(ours["smooth"], port["smooth"], strict=True)
        ]
    )
    corr = np.array(
        [
            np.nan if fl else pearson(a, b)
            for a, b, fl in zip(ours["smooth"], port["smooth"], flat, strict=True)
        ]
    )
    smooth_diff = np.max(np.abs(ours["smooth"] - port["smooth"]), axis=(1, 2))
    crisp_corr = np.array(
        [pearson(a, b) for a, b in zip(ours["crisp"], port["crisp"], strict=True)]
    )
    area_ours = np.mean(ours["crisp"] > thr, axis=(1, 2))
    area_port = np.mean(port["crisp"] > thr, axis=(1, 2))

    extra = ours["first"] - ours["seconds"]  # noisy under load: first call minus timed call
    compile_s = f"{extra:.1f}" if extra > 0 else "n/a: the timed call was the slower one"

    def f(v):
        return f"{np.nanmean(v):.3f}"

    rows = [
        ("seconds per image (A1 + A2)", f"{port_per:.3f}", f"{ours_per:.4f}"),
        ("speed-up (torch / xaijax)", "", f"{port_per / ours_per:.1f}x"),
        (
            "first call, whole batch (compile + run), seconds",
            "n/a",
            f"{ours['first']:.1f} (compile about {compile_s})",
        ),
        (
            "one gradient of p_c w.r.t. the input, ms per image",
            f"{port['step'] * 1e3:.2f} (batch 1)",
            f"{ours['step'] * 1e3:.2f} (batch {len(x)})",
        ),
        ("mean target prob", f(port["target_prob"]), f(ours["target_prob"])),
        ("mean blurred prob", f(port["blurred_prob"]), f(ours["blurred_prob"])),
        ("mean smooth drop", f(port["smooth_drop"]), f(ours["smooth_drop"])),
        ("mean crisp drop", f(port["crisp_drop"]), f(ours["crisp_drop"])),
        ("mean salient area of crisp mask (h > 128/255)", f(area_port), f(area_ours)),
    ]
    lines = ["| | PyTorch port (one image at a time) | xaijax (batched, jitted) |"]
    lines += ["|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    agree = [
        f"- crisp-mask IoU (h > 128/255), per image: mean {np.mean(ious):.3f}, "
        f"min {np.min(ious):.3f} over all {len(x)} images (target >= 0.8); over the "
        f"{int(np.sum(~flat))} images whose smooth mask is not flat: mean "
        f"{np.mean(ious[~flat]) if (~flat).any() else float('nan'):.3f}, min "
        f"{np.min(ious[~flat]) if (~flat).any() else float('nan'):.3f}",
        f"- Pearson correlation of the smooth heat masks: mean {np.nanmean(corr):.3f}, "
        f"min {np.nanmin(corr) if np.isfinite(corr).any() else float('nan'):.3f} over "
        f"{int(np.sum(~flat))} images ({int(np.sum(flat))} left out: a heat mask of range "
        f"< {FLAT}, i.e. a mask that is constant: nothing or everything deleted evenly)",
        f"- max |h_xaijax - h_port| of the smooth heat masks: mean over images "
        f"{np.mean(smooth_diff):.2e}, largest {np.max(smooth_diff):.2e}",
        f"- Pearson correlation of the crisp heat masks: mean {np.nanmean(crisp_corr):.3f}",
        f"- same explained class (arg-max) in both: "
        f"{int(np.sum(ours['label'] == port['label']))}/{len(x)}",
        f"- per-image IoU: {', '.join(f'{v:.2f}' for v in ious)}",
        f"- over the images whose smooth mask is not flat: mean crisp drop "
        f"{f(port['crisp_drop'][~flat])} (port), {f(ours['crisp_drop'][~flat])} (xaijax); "
        f"smooth drop {f(port['smooth_drop'][~flat])}, {f(ours['smooth_drop'][~flat])}",
    ]
    model_line = (
        "untrained zoo VGG (initial weights)"
        if trained is None
        else "zoo VGG trained as experiments/gallery.py (300 steps, cache entry gallery-vgg)"
    )
    cmd = "experiments/bench/masks.py" + (f" --images {args.images}" if args.images != 16 else "")
    cmd += (" --quick" if args.quick else "") + (" --untrained" if args.untrained else "")
    cmd += " --same-init" if args.same_init else ""
    notes = [
        f"- {len(x)} synthetic test images, {SIZE}x{SIZE}, mask {SIZE // SCALE}x{SIZE // SCALE}; "
        f"{it1} + {it2} iterations; {model_line}",
        "- torch port: " + ("xaijax's" if args.same_init else "the code's") + " circular "
        "initialisation; null image in NumPy/SciPy with cv2.GaussianBlur's numbers (OpenCV not "
        "installed); A2 initialised from the 8-bit heat mask as main.py reads mask.png",
        f"- machine: {machine()}; {date}; load average {load_start[0]:.2f} at start, "
        f"{load_end[0]:.2f} at end (1 min)",
        f"- jax {jax.__version__}, torch {port['version']} (threads {port['threads']}); "
        "xaijax: one call on the whole batch (after a warm-up call), time / images",
    ]
    if args.quick:
        notes.append("- quick run (30 + 15 iterations): agreement figures are not the claim")
    text = "\n".join(lines + [""] + agree + [""] + notes)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write("# Visual Summaries masks: xaijax batched vs the authors' PyTorch loop\n\n")
        fh.write(f"Command: `.venv-bench/bin/python {cmd}`\n\n{text}\n")


if __name__ == "__main__":
    main()
