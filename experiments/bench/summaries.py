"""Seconds of ``xaijax.summaries.summarize`` (Visual Summaries Stage C) for one class, by step.

Issue 13's target: the summaries of one class from 100 images in under 5 minutes on the 2-core
CPU. The images are one class of xaijax's synthetic benchmark at 64 px; as heat masks (the
crisp masks' ``h``) the benchmark's ground-truth object masks stand in, so the timing covers
Stage C alone (the masks' own cost is in experiments/bench/masks.py). Each N runs twice in one
process: the first call includes compilation, the second is warm.

Command:

    .venv/bin/python experiments/bench/summaries.py --num 10 30 100
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import jax
import numpy as np

from xaijax import summaries
from xaijax.data import synthetic

STEPS = ("proposals", "descriptors", "lom", "prune", "affinity", "filter")


def one_class(n: int, label: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` test images of class ``label`` and their object masks as float heat."""
    data = synthetic.make_images(n * 12, seed=3, split="test")
    keep = np.flatnonzero(data["label"] == label)[:n]
    if len(keep) < n:
        raise SystemExit(f"only {len(keep)} images of class {label} in {n * 12}: raise the pool")
    return data["image"][keep], data["object_mask"][keep].astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--first-only", action="store_true", help="skip the warm second call")
    parser.add_argument("--out", default="experiments/results/bench_summaries.md")
    args = parser.parse_args()
    device = jax.devices()[0]
    lines = [
        "# Visual summaries, Stage C timing (`xaijax.summaries.summarize`)",
        "",
        f"Command: `experiments/bench/summaries.py --num {' '.join(map(str, args.num))}"
        f"{' --first-only' if args.first_only else ''}`  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
        f"{os.cpu_count()} cores, {device.platform} ({device.device_kind}), jax {jax.__version__}; "
        f"load {', '.join(f'{v:.2f}' for v in os.getloadavg())}. One synthetic class, 64 px, "
        "500 proposals per image, ground-truth object masks as heat (synthetic).",
        "",
        "| N | call | " + " | ".join(STEPS) + " | total (s) | kept boxes | summaries (accepted) |",
        "|---|---|" + "---|" * len(STEPS) + "---|---|---|",
    ]
    for n in args.num:
        images, heat = one_class(n)
        for call in ("first",) if args.first_only else ("first", "warm"):
            start = time.perf_counter()
            res = summaries.summarize(images, heat)
            total = time.perf_counter() - start
            steps = " | ".join(f"{res.seconds.get(s, float('nan')):.1f}" for s in STEPS)
            row = (
                f"| {n} | {call} | {steps} | {total:.1f} | {len(res.kept_image)} | "
                f"{len(res.clusters)} ({len(res.accepted)}) |"
            )
            print(row, flush=True)
            lines.append(row)
    lines += ["", "Target: 100 images in under 300 s on the 2-core CPU (first call)."]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
