"""IG called eagerly against IG under the caller's ``jax.jit`` (issue 10 target: jit within 1.2x).

The case of the issue: the zoo VGG (10 classes, untrained weights: speed does not depend on
them), 32 synthetic 64 px images, 16 Gauss-Legendre steps, ``chunk_size`` 4 and 1. Under jit,
``chunked_sum`` unrolls the chunks (``xaijax.attribution._common.UNROLL_LIMIT``); the column
"jit, fori_loop" forces the while loop the landed code used, to show why. Times are the minimum
of ``--repeats`` interleaved calls after a warm-up; one CPU device.

Command (about 3 minutes on the 2-core VM; the second line on a GPU machine):

    .venv/bin/python experiments/bench/ig_jit.py
    python3 experiments/bench/ig_jit.py --images 256 --repeats 10 \
        --out experiments/results/ig_jit_gpu.md

Last printed (2-core x86_64 VM, 2026-11-30, see experiments/results/ig_jit.md):
    see the results file.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp

import xaijax
from xaijax import models
from xaijax.attribution import _common
from xaijax.data import synthetic


def _timed(fn, *args, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=32, help="batch size (32)")
    parser.add_argument("--out", default="experiments/results/ig_jit.md")
    args = parser.parse_args()

    net = models.get_model("vgg", 10)
    x = jnp.asarray(synthetic.make_images(args.images, seed=0, split="test")["image"])
    params = net.init(jax.random.key(0), x[:1])["params"]
    apply_fn = models.apply_fn(net)
    target = jnp.zeros(args.images, jnp.int32)
    rows = []
    for chunk in (4, 1):
        ig = xaijax.integrated_gradients(apply_fn, steps=16, chunk_size=chunk)
        jitted = jax.jit(ig)
        jax.block_until_ready((ig(params, x, target), jitted(params, x, target)))
        limit = _common.UNROLL_LIMIT
        _common.UNROLL_LIMIT = 1  # the landed code's while loop, for comparison
        try:
            looped = jax.jit(xaijax.integrated_gradients(apply_fn, steps=16, chunk_size=chunk))
            jax.block_until_ready(looped(params, x, target))
        finally:
            _common.UNROLL_LIMIT = limit
        eager_t = jit_t = loop_t = float("inf")
        for _ in range(args.repeats):  # interleaved, so load changes hit all three alike
            eager_t = min(eager_t, _timed(ig, params, x, target, repeats=1))
            jit_t = min(jit_t, _timed(jitted, params, x, target, repeats=1))
            loop_t = min(loop_t, _timed(looped, params, x, target, repeats=1))
        rows.append((chunk, eager_t, jit_t, loop_t))
        print(
            f"chunk_size={chunk}: eager {eager_t * 1e3:.4g} ms, jit {jit_t * 1e3:.4g} ms "
            f"({jit_t / eager_t:.2f}x), jit with fori_loop {loop_t * 1e3:.4g} ms "
            f"({loop_t / eager_t:.2f}x)",
            flush=True,
        )
    lines = [
        f"# IG eager vs under jax.jit (zoo VGG, {args.images} images of 64 px, 16 steps, one"
        f" {jax.devices()[0].platform.upper()} device)",
        "",
        f"Command: `.venv/bin/python experiments/bench/ig_jit.py`; {jax.devices()[0].device_kind},"
        f" {len(jax.devices())} device(s). Synthetic data, untrained weights.",
        "",
        "| chunk_size | eager (ms) | jax.jit (ms) | jit / eager | jit, fori_loop (ms) "
        "| loop / eager |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for chunk, e, j, lp in rows:
        lines.append(
            f"| {chunk} | {e * 1e3:.4g} | {j * 1e3:.4g} | {j / e:.2f} | {lp * 1e3:.4g} "
            f"| {lp / e:.2f} |"
        )
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
