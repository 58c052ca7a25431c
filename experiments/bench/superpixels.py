"""xaijax SLIC, LIME and GWS against scikit-image and the ``lime`` package, on one CPU.

Claims checked (GitHub issue "Gradient-weighted superpixels", item 5 and targets):

(a) ``xaijax.segmentation.slic`` against ``skimage.segmentation.slic`` on the same synthetic
    images (64x64 and 224x224, batch 32, ``n_segments=100``, ``compactness=10``): time ratio,
    boundary recall (2-pixel tolerance) and undersegmentation error against the synthetic part
    maps (background + one label per visible part), and label agreement with scikit-image.
    Target: no slower than scikit-image for a batch, boundary recall within 0.05 of it.
(b) ``xaijax.surrogates.lime`` against ``lime.lime_image.LimeImageExplainer`` on the same model
    (the ``vgg`` of experiments/gws_vs_lime.py, its logits: the classifier is saturated, so its
    probabilities carry almost no signal) and the same segments (scikit-image SLIC,
    ``n_segments=50``), 1000 samples, mean-colour fill: time ratio, and the correlation of the
    coefficients when both use the same sample masks (the masks the ``lime`` package draws from
    its ``RandomState`` are replayed into xaijax). Target: >= 10x faster, correlation >= 0.99.
(c) GWS (the scorers of experiments/gws_vs_lime.py, mean and sum pooling) against the
    ``lime`` package: time ratio and Spearman rank agreement with its coefficients.
    Target: >= 100x faster.

Devices: two CPU devices (``xaijax.use_cpu_devices(2)``, the explicit opt-in since Core v2,
as experiments/gws_vs_lime.py asks); xaijax's SLIC gets the batch sharded over them
(``xaijax.shard_batch``, inside the timed call) and returns it to one device, which is what
xaijax's former automatic placement did. LIME and GWS run on one device, as before (the trained
parameters are committed to one device, which turned the former placement off). Both LIMEs
explain the logits (the xaijax model's default score; the ``lime`` package gets the same
logits as its ``classifier_fn``); xaijax LIME evaluates 256 perturbed images per model call,
as before (``chunk_size = 256 // images``).

Command (needs the ``bench`` extra: scikit-image, lime; ``make bench`` sets it up)::

    .venv-bench/bin/python experiments/bench/superpixels.py            # full tables
    .venv-bench/bin/python experiments/bench/superpixels.py --quick    # fewer images
    .venv-bench/bin/python experiments/bench/superpixels.py --smoke --out /tmp/bench_sp.md

``--smoke`` is ``--quick`` with the model trained for a few steps only (a run-through of the
script, about 1 minute; its numbers mean nothing); ``--out`` writes the results elsewhere.

Expected runtime: about 2-6 minutes on the project's 2-core CPU VM (the 1000 forward passes per
image of both LIMEs dominate); the model is restored from out/checkpoints (trained first if
missing, ~5 minutes). All data are the *synthetic benchmark* of xaijax.data.synthetic.

Last result (experiments/results/bench_superpixels.md, rerun on the current code on 2026-11-30
23:31, quiet VM, load ~1.8): (a) xaijax SLIC (batch spread over the CPU devices) 2.03x the speed
of scikit-image at 64x64 and 1.33x at 224x224 (batch 32; scikit-image's own time moves by +-25 %
between runs and VMs), boundary recall 0.995 / 0.996 and 0.901 / 0.936, label agreement
0.92-0.94; (b) xaijax LIME 1.2x faster than the lime package (0.56 vs 0.68 s per image: both are
bound by the same 1000 forward passes on this CPU), 15x on LIME's own work, coefficients
correlated at 1.000000 on shared masks; (c) GWS with gradient x (input - fill) 295x faster than
the lime package at Spearman rho 0.69, IG from the fill image 17x at rho 0.77.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import gws_vs_lime as experiment  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from lime import lime_image  # noqa: E402
from scipy import ndimage  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from skimage.segmentation import slic as sk_slic  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from xaijax import models  # noqa: E402
from xaijax.data import synthetic  # noqa: E402
from xaijax.segmentation import slic  # noqa: E402
from xaijax.superpixels import superpixel_scores  # noqa: E402
from xaijax.surrogates import fill_image, lime  # noqa: E402

RESULTS = os.path.join(os.path.dirname(HERE), "results", "bench_superpixels.md")
N_SEGMENTS, COMPACTNESS = 100, 10.0
LIME_SEGMENTS, LIME_SAMPLES = 50, 1000


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- (a) segmentation quality ----------------------------------------------------------------


def part_map(d: dict) -> np.ndarray:
    """Ground-truth regions: 0 background, k + 1 for the visible pixels of part k."""
    parts = d["part_masks"]  # [N, P, H, W]
    labels = np.zeros(parts.shape[:1] + parts.shape[2:], np.int32)
    for k in range(parts.shape[1]):
        labels[parts[:, k]] = k + 1
    return labels


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label."""
    b = np.zeros(labels.shape, bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b


def boundary_recall(segments: np.ndarray, truth: np.ndarray, tol: int = 2) -> float:
    """Share of ground-truth boundary pixels within ``tol`` pixels of a segment boundary."""
    gt = boundaries(truth)
    near = ndimage.binary_dilation(boundaries(segments), np.ones((2 * tol + 1,) * 2, bool))
    return float((gt & near).sum() / max(gt.sum(), 1))


def undersegmentation(segments: np.ndarray, truth: np.ndarray) -> float:
    """Neubert & Protzel's corrected undersegmentation error: leakage over region borders."""
    table = np.zeros((truth.max() + 1, segments.max() + 1))
    np.add.at(table, (truth.ravel(), segments.ravel()), 1)
    sizes = table.sum(0, keepdims=True)
    return float(np.minimum(table, sizes - table)[table > 0].sum() / truth.size)


def best_match(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels of ``a`` whose segment's majority label in ``b`` they carry."""
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a.ravel(), b.ravel()), 1)
    return float(table.max(1).sum() / a.size)


def bench_slic(size: int, batch: int, repeats: int) -> dict:
    d = synthetic.make_images(batch, seed=1, split="test", config=synthetic.ImageConfig(size))
    x = d["image"]
    truth = part_map(d)
    segment = slic(N_SEGMENTS, COMPACTNESS)
    # The batch sharded over the CPU devices (each loops over its own share), back on one device.
    run = lambda: experiment.on_devices(segment, x)  # noqa: E731
    ours = np.asarray(jax.block_until_ready(run()))  # compiles
    ours_s = median_time(run, repeats)

    def run_sk():
        return [
            sk_slic(im, n_segments=N_SEGMENTS, compactness=COMPACTNESS, start_label=0) for im in x
        ]

    theirs = np.stack(run_sk())
    sk_s = median_time(run_sk, repeats)
    return dict(
        size=size,
        batch=batch,
        ours_s=ours_s,
        sk_s=sk_s,
        ours_n=np.mean([s.max() + 1 for s in ours]),
        sk_n=np.mean([s.max() + 1 for s in theirs]),
        ours_br=np.mean([boundary_recall(s, t) for s, t in zip(ours, truth, strict=True)]),
        sk_br=np.mean([boundary_recall(s, t) for s, t in zip(theirs, truth, strict=True)]),
        ours_ue=np.mean([undersegmentation(s, t) for s, t in zip(ours, truth, strict=True)]),
        sk_ue=np.mean([undersegmentation(s, t) for s, t in zip(theirs, truth, strict=True)]),
        agree=np.mean(
            [min(best_match(a, b), best_match(b, a)) for a, b in zip(ours, theirs, strict=True)]
        ),
        ari=np.mean(
            [adjusted_rand_score(a.ravel(), b.ravel()) for a, b in zip(ours, theirs, strict=True)]
        ),
    )


# --- (b, c) LIME and GWS against the lime package -------------------------------------------


def lime_package(image, segments, classifier_fn, label, seed):
    """The lime package on fixed segments; returns (coefficients [S], intercept, seconds)."""
    explainer = lime_image.LimeImageExplainer(random_state=seed)
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm progress bar
        exp = explainer.explain_instance(
            image.astype(np.float64),
            classifier_fn,
            labels=(label,),
            top_labels=None,
            hide_color=None,
            num_samples=LIME_SAMPLES,
            segmentation_fn=lambda img: segments,
            random_seed=0,  # given, so the explainer's RandomState only draws the samples
        )
    seconds = time.perf_counter() - t0
    coef = np.zeros(segments.max() + 1)
    for feature, weight in exp.local_exp[label]:
        coef[feature] = weight
    return coef, exp.intercept[label], seconds


def replayed_masks(seed: int, num_features: int) -> np.ndarray:
    """The samples ``LimeImageExplainer(random_state=seed)`` draws (``data_labels``)."""
    rs = np.random.RandomState(seed)
    data = rs.randint(0, 2, LIME_SAMPLES * num_features).reshape((LIME_SAMPLES, num_features))
    data[0, :] = 1
    return data.astype(np.float32)


def bench_lime(num_images: int, smoke: bool = False) -> dict:
    cfg = experiment.TASKS["image"]
    model, params = experiment.trained_model("image", cfg, progress=False, smoke=smoke)
    apply_fn = models.apply_fn(model)
    d = synthetic.make_images(num_images, seed=2, split="test")
    x = jnp.asarray(d["image"])
    target = np.asarray(jnp.argmax(apply_fn(params, x), -1))
    segs = [
        sk_slic(im, n_segments=LIME_SEGMENTS, compactness=COMPACTNESS, start_label=0)
        for im in d["image"]
    ]
    num = max(s.max() + 1 for s in segs)
    segments = jnp.asarray(np.stack(segs), jnp.int32)
    # The classifier is saturated (top probability ~1 on every sample), so LIME on probabilities
    # fits noise (experiments/results/gws_vs_lime.md); both LIMEs explain the logits instead.
    logits = jax.jit(lambda xx: apply_fn(params, xx))
    classifier_fn = lambda imgs: np.asarray(logits(jnp.asarray(imgs, jnp.float32)), np.float64)  # noqa: E731
    classifier_fn(d["image"][:10])  # compile the batch shape lime uses

    package = [
        lime_package(d["image"][i], segs[i], classifier_fn, int(target[i]), seed=i)
        for i in range(num_images)
    ]
    package_s = np.mean([p[2] for p in package])
    package_coef = np.zeros((num_images, num))
    for i, (coef, _, _) in enumerate(package):
        package_coef[i, : len(coef)] = coef

    # xaijax LIME replaying the package's masks, one image at a time (each has its own masks).
    chunk_size = max(1, experiment.LIME_INPUTS_PER_CALL // num_images)  # as before: 256 inputs
    explain = lime(apply_fn, num_samples=LIME_SAMPLES, num_segments=num, chunk_size=chunk_size)
    masks = np.zeros((num_images, LIME_SAMPLES, num), np.float32)
    for i in range(num_images):
        masks[i, :, : segs[i].max() + 1] = replayed_masks(i, segs[i].max() + 1)
    # A key is required by every stochastic explainer; the replayed masks make it unused.
    shared = explain(
        params, x, jnp.asarray(target), segments=segments, masks=masks, key=jax.random.key(0)
    )
    ours_coef = np.asarray(shared.coefficients)
    valid = np.stack([np.arange(num) <= s.max() for s in segs])
    corr = np.corrcoef(ours_coef[valid], package_coef[valid])[0, 1]
    per_image = [
        np.corrcoef(ours_coef[i, v], package_coef[i, v])[0, 1] for i, v in enumerate(valid)
    ]

    # Timing: xaijax LIME on the batch with its own sampling (after a compiling call).
    run = lambda: explain(params, x, jnp.asarray(target), segments=segments, key=jax.random.key(0))  # noqa: E731
    jax.block_until_ready(run())
    ours_s = median_time(run, 2) / num_images

    # The same two LIMEs around a model that costs next to nothing (logits linear in the mean
    # colour): what remains is each implementation's own work (sampling, perturbing, weighting,
    # fitting), which is what a faster model, or an accelerator, leaves to pay.
    colour_w = np.random.default_rng(0).normal(size=(3, 10))
    cheap_fn = lambda imgs: np.asarray(imgs, np.float64).mean((1, 2)) @ colour_w  # noqa: E731
    cheap_apply = lambda p, xx: xx.mean((1, 2)) @ p  # noqa: E731
    cheap_package_s = np.mean(
        [
            lime_package(d["image"][i], segs[i], cheap_fn, int(target[i]), seed=i)[2]
            for i in range(num_images)
        ]
    )
    cheap = lime(cheap_apply, num_samples=LIME_SAMPLES, num_segments=num, chunk_size=chunk_size)
    cheap_w = jnp.asarray(colour_w, jnp.float32)
    cheap_run = lambda: cheap(  # noqa: E731
        cheap_w, x, jnp.asarray(target), segments=segments, key=jax.random.key(0)
    )
    jax.block_until_ready(cheap_run())
    cheap_ours_s = median_time(cheap_run, 3) / num_images

    # (c) GWS scorers against the package's coefficients (fill: LIME's mean-colour image).
    gws_rows = []
    for name, scorer in experiment.scorers(model, apply_fn).items():
        for reduce in ("mean", "sum"):

            def gws_call(scorer=scorer, reduce=reduce):
                fill = fill_image(x, segments, num)
                a = scorer(params, x, jnp.asarray(target), fill)
                return superpixel_scores(a, segments, reduce, num_segments=num)

            scores = np.asarray(jax.block_until_ready(gws_call()))
            gws_s = median_time(gws_call, 3) / num_images
            rho = np.mean(
                [spearmanr(scores[i, v], package_coef[i, v]).statistic for i, v in enumerate(valid)]
            )
            gws_rows.append(dict(scorer=name, reduce=reduce, rho=rho, seconds=gws_s))
    return dict(
        n=num_images,
        segments=np.mean([s.max() + 1 for s in segs]),
        package_s=package_s,
        ours_s=ours_s,
        cheap_package_s=cheap_package_s,
        cheap_ours_s=cheap_ours_s,
        corr=corr,
        corr_min=float(np.min(per_image)),
        intercept_diff=float(
            np.max(np.abs(np.asarray(shared.intercept) - np.array([p[1] for p in package])))
        ),
        gws=gws_rows,
    )


def report(slic_rows, lime_res, elapsed) -> str:
    lines = [
        "# Superpixels, LIME and GWS against scikit-image and the lime package",
        "",
        "Written by `experiments/bench/superpixels.py` (synthetic benchmark images). Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, load average at "
        f"the end {os.getloadavg()[0]:.1f}; total run {elapsed:.0f} s. Times are medians of "
        "repeated runs after compilation; the machine is a shared VM, so treat +-15% as noise.",
        "",
        f"## (a) SLIC: xaijax vs scikit-image (n_segments={N_SEGMENTS}, compactness="
        f"{COMPACTNESS:g})",
        "",
        "| size | batch | xaijax s | skimage s | skimage/xaijax time | segments (x / sk) | "
        "boundary recall (x / sk) | underseg. error (x / sk) | label agreement | ARI |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in slic_rows:
        lines.append(
            f"| {r['size']} | {r['batch']} | {r['ours_s']:.3f} | {r['sk_s']:.3f} | "
            f"{r['sk_s'] / r['ours_s']:.2f}x | {r['ours_n']:.1f} / {r['sk_n']:.1f} | "
            f"{r['ours_br']:.3f} / {r['sk_br']:.3f} | {r['ours_ue']:.3f} / {r['sk_ue']:.3f} | "
            f"{r['agree']:.3f} | {r['ari']:.3f} |"
        )
    lines += [
        "",
        "Boundary recall: share of ground-truth part/background boundary pixels within 2 px of "
        "a superpixel boundary. Label agreement: pixels whose superpixel's majority label in "
        "the other segmentation they carry (the smaller of the two directions).",
        "",
    ]
    if lime_res:
        r = lime_res
        lines += [
            f"## (b) LIME: xaijax vs the lime package ({r['n']} images, {LIME_SAMPLES} samples, "
            f"{r['segments']:.1f} SLIC segments each)",
            "",
            "| | lime package | xaijax |",
            "|---|---|---|",
            f"| seconds per image, zoo vgg | {r['package_s']:.3f} | {r['ours_s']:.3f} |",
            f"| seconds per image, a model linear in the mean colour (LIME's own work) | "
            f"{r['cheap_package_s']:.4f} | {r['cheap_ours_s']:.4f} |",
            "",
            f"With the zoo model xaijax is {r['package_s'] / r['ours_s']:.1f}x faster: both spend "
            "nearly all their time in the same 1000 forward passes of the model. Without them "
            f"(the cheap model) xaijax is {r['cheap_package_s'] / r['cheap_ours_s']:.0f}x "
            "faster. With the lime package's own "
            f"sample masks replayed into xaijax, the coefficients correlate at {r['corr']:.6f} "
            f"(pooled; lowest per image {r['corr_min']:.6f}); largest intercept difference "
            f"{r['intercept_diff']:.2e}.",
            "",
            "## (c) GWS vs the lime package",
            "",
            "| scorer | pooling | Spearman rho vs lime package | s per image | faster than lime |",
            "|---|---|---|---|---|",
        ]
        for g in r["gws"]:
            lines.append(
                f"| {g['scorer']} | {g['reduce']} | {g['rho']:.3f} | {g['seconds']:.4f} | "
                f"{r['package_s'] / g['seconds']:.0f}x |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run-through: --quick with the model trained for a few steps (meaningless numbers)",
    )
    parser.add_argument("--skip-lime", action="store_true")
    parser.add_argument("--out", default=RESULTS, help="results file (markdown)")
    args = parser.parse_args(argv)
    experiment.use_devices()  # two CPU devices, before any JAX computation
    args.quick = args.quick or args.smoke
    t0 = time.perf_counter()
    repeats = 1 if args.quick else 3
    slic_rows = []
    for size in (64, 224):
        row = bench_slic(size, 32, repeats)
        slic_rows.append(row)
        print(
            f"slic {size}px x32: xaijax {row['ours_s']:.3f} s, skimage {row['sk_s']:.3f} s; "
            f"boundary recall {row['ours_br']:.3f} vs {row['sk_br']:.3f}",
            flush=True,
        )
    lime_res = None
    if not args.skip_lime:
        lime_res = bench_lime(4 if args.quick else 8, smoke=args.smoke)
        print(
            f"lime: package {lime_res['package_s']:.3f} s/image, xaijax {lime_res['ours_s']:.3f}"
            f" s/image, coefficient correlation {lime_res['corr']:.6f}; with a model of"
            f" negligible cost: package {lime_res['cheap_package_s']:.4f} s/image, xaijax"
            f" {lime_res['cheap_ours_s']:.4f} s/image",
            flush=True,
        )
        best = max(lime_res["gws"], key=lambda g: g["rho"])
        print(
            f"gws: best {best['scorer']} + {best['reduce']} rho {best['rho']:.3f}, "
            f"{lime_res['package_s'] / best['seconds']:.0f}x faster than the lime package",
            flush=True,
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report(slic_rows, lime_res, time.perf_counter() - t0))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
