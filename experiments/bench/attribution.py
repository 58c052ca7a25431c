"""xaijax attributions against Captum: the same CNN, the same weights, the same batch.

Claim checked: xaijax's gradient-family attributions equal Captum's, and are no slower.

Command (needs the `bench` extra: torch 2.13.0 CPU, captum; `make bench` sets it up):

    .venv-bench/bin/python experiments/bench/attribution.py            # full table
    .venv-bench/bin/python experiments/bench/attribution.py --quick    # fewer repeats
    .venv-bench/bin/python experiments/bench/attribution.py --quick --x64   # + float64 column
    .venv-bench/bin/python experiments/bench/attribution.py --smoke --out /tmp/bench.md
    python3 experiments/bench/attribution.py --gpu --quick --batch 256 \
        --out experiments/results/bench_attribution_gpu_256.md   # on a GPU machine

Setup: a 4-conv CNN (3->32->32, maxpool, 32->64->64, maxpool, global mean, dense 64->10, ReLU
after each conv), identical weights ported from Flax to PyTorch, batch 32 of 64x64 RGB in [0, 1),
random targets. Methods: gradient (Captum Saliency, abs=False), IG (32 Gauss-Legendre steps, zero
baseline), SmoothGrad (16 samples, absolute sigma 0.15), Grad-CAM (last conv, ReLU, bilinear
upsampling) and occlusion (8x8 window, stride 4, zero fill); every xaijax explainer explains
the logits (the model's default score), as Captum's do. xaijax runs in a fresh process per
column:

- "1 device": plain JAX (``import xaijax`` configures nothing, so one CPU device);
- "opt-in": ``xaijax.use_cpu_devices()`` before any JAX computation (two CPU devices per core)
  and the batch and targets sharded over them with ``xaijax.shard_batch`` inside every timed
  call, so each timing covers the same work as the former "default" column (which placed the
  batch inside the explainer call): putting the batch over the devices and explaining it. The
  explainers run on the sharded batch with no collective and return sharded results. The
  forward row runs the jitted model on the sharded batch too.

Every timed call is the explainer value built once (``xaijax.gradient(apply_fn)`` etc.) called
on ``(params, x, t)``, with its boundary checks (shape, dtype, one on-device finiteness and
target-range boolean) and waiting for the result (``block_until_ready``); Captum's calls build
their attribution object inside, as before.

The difference column is max|a_xaijax - a_captum| / max|a_captum| over the batch, in float32 and
(``--x64``) in float64: in float32 the two frameworks' convolutions round differently, which can
flip a max-pool's arg-max at near-ties and move a gradient to a neighbouring pixel. SmoothGrad
has no difference column: the two libraries draw different noise.

``--gpu`` runs both libraries on the first GPU (torch ``cuda``, JAX's default backend) with one
xaijax column ("1 GPU"); every torch timing waits for ``torch.cuda.synchronize()``. There IG and
SmoothGrad evaluate all their steps or samples at once in both libraries (xaijax
``chunk_size=steps``/``num_samples``, Captum's default), since one step at a time leaves a GPU
idle; occlusion evaluates 8 windows at once in both. ``--batch`` changes the batch size (32).
On a GPU both libraries use TF32 for float32 convolutions by default, which makes the float32
differences larger (occlusion's logit differences most); ``--no-tf32`` turns it off in both
(``JAX_DEFAULT_MATMUL_PRECISION=highest``, torch's ``allow_tf32`` flags) to check that.

``--smoke`` is a run-through of the script (one repeat, batch 4, IG 4 steps, SmoothGrad 2
samples, no peak-memory subprocesses): its numbers mean nothing. ``--out`` writes the table
elsewhere than experiments/results/bench_attribution.md.

Expected runtime: about 9 minutes with ``--quick`` and 15 with ``--quick --x64`` on the 2-core
CPU machine (Captum's occlusion and IG dominate); ``--smoke`` about 1 minute (3 with ``--x64``).
Last results (2026-11-30, quiet VM, after Core v2): experiments/results/bench_attribution.md
(``--quick``) and bench_attribution_x64.md (``--quick --x64``, written with
``--out experiments/results/bench_attribution_x64.md``), both in the README. The tables before
them (2026-11-22, columns "1 dev" and "default": import-time devices, batch placed by xaijax)
are in git history.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

BATCH, SIZE, CLASSES = 32, 64, 10
GPU = False  # --gpu: both libraries on the first GPU
IG_STEPS, SG_SAMPLES, SG_SIGMA = 32, 16, 0.15
WINDOW, STRIDE = 8, 4

#: The xaijax columns: worker mode -> column label.
MODES = {"plain": "1 device", "opt-in": "opt-in"}


def smoke_settings() -> None:
    """``--smoke``: a tiny run-through of every code path (set in every process)."""
    global BATCH, IG_STEPS, SG_SAMPLES
    BATCH, IG_STEPS, SG_SAMPLES = 4, 4, 2


def make_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {
        "conv1": (3, 3, 3, 32),
        "conv2": (3, 3, 32, 32),
        "conv3": (3, 3, 32, 64),
        "conv4": (3, 3, 64, 64),
    }
    w = {}
    for name, shape in shapes.items():
        fan_in = shape[0] * shape[1] * shape[2]
        w[name + "/kernel"] = rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        w[name + "/bias"] = rng.normal(0, 0.05, shape[-1]).astype(np.float32)
    w["head/kernel"] = rng.normal(0, np.sqrt(1.0 / 64), (64, CLASSES)).astype(np.float32)
    w["head/bias"] = np.zeros(CLASSES, np.float32)
    return w


def make_batch(seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.random((BATCH, SIZE, SIZE, 3), dtype=np.float32)
    t = rng.integers(0, CLASSES, BATCH).astype(np.int64)
    return x, t


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up (compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# ----------------------------------------------------------------------------------------- JAX
def run_xaijax(mode: str, repeats: int, x64: bool) -> dict:
    """One xaijax column, in a fresh process: ``mode`` is ``"plain"`` or ``"opt-in"``."""
    import xaijax  # configures nothing in JAX

    if mode == "opt-in":
        xaijax.use_cpu_devices()  # two CPU devices per core; before any JAX computation
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    if x64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if x64 else jnp.float32

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            for name, width in [("conv1", 32), ("conv2", 32), ("conv3", 64), ("conv4", 64)]:
                x = nn.relu(
                    nn.Conv(width, (3, 3), padding=1, name=name, param_dtype=dtype, dtype=dtype)(x)
                )
                if name in ("conv2",):
                    x = nn.max_pool(x, (2, 2), (2, 2))
            x = nn.max_pool(x, (2, 2), (2, 2))
            return nn.Dense(CLASSES, name="head", param_dtype=dtype, dtype=dtype)(x.mean((1, 2)))

    w = make_weights()
    params = {k.split("/")[0]: {} for k in w}
    for k, val in w.items():
        layer, leaf = k.split("/")
        params[layer][leaf] = jnp.asarray(val, dtype)
    model = CNN()
    apply_fn = jax.jit(lambda p, xx: model.apply({"params": p}, xx))
    x_np, t_np = make_batch()
    x = jnp.asarray(x_np, dtype)
    t = jnp.asarray(t_np, jnp.int32)
    if mode == "opt-in":
        # The caller puts the batch over the devices, in every timed call (the work the former
        # "default" column's explainers did inside the call); parameters stay as they are.
        batch = lambda: xaijax.shard_batch((x, t))  # noqa: E731
    else:
        batch = lambda: (x, t)  # noqa: E731
    key = jax.random.key(0)
    grad = xaijax.gradient(apply_fn)
    ig = xaijax.integrated_gradients(
        apply_fn, steps=IG_STEPS, method="gausslegendre", chunk_size=IG_STEPS if GPU else 1
    )
    sg = xaijax.smooth(
        grad,
        num_samples=SG_SAMPLES,
        noise=SG_SIGMA,
        relative_noise=False,
        chunk_size=SG_SAMPLES if GPU else 1,
    )
    gc = xaijax.grad_cam(model, "conv4")
    occ = xaijax.occlusion(apply_fn, window=WINDOW, stride=STRIDE, fill=0.0, chunk_size=8)
    methods = {
        "forward": lambda: apply_fn(params, batch()[0]),
        "gradient": lambda: grad(params, *batch()),
        "integrated_gradients": lambda: ig(params, *batch()),
        "smoothgrad": lambda: sg(params, *batch(), key=key),
        "grad_cam": lambda: gc(params, *batch()),
        "occlusion": lambda: occ(params, *batch()),
    }
    devices = len(batch()[0].sharding.device_set)
    out = {"mode": mode, "devices": devices, "shard_ms": None, "times": {}, "maps": {}}
    if mode == "opt-in":  # the placement alone, for the notes
        out["shard_ms"] = 1e3 * timeit(lambda: jax.block_until_ready(batch()), repeats)
    for name, fn in methods.items():
        out["times"][name] = timeit(lambda fn=fn: jax.block_until_ready(fn()), repeats)
        if name != "forward":
            out["maps"][name] = np.asarray(fn(), np.float64).tolist() if x64 else None
    if not x64:
        os.makedirs("out/bench", exist_ok=True)
        np.savez(
            f"out/bench/xaijax_{mode}.npz",
            **{n: np.asarray(methods[n]()) for n in methods if n != "forward"},
        )
    return out


# --------------------------------------------------------------------------------------- torch
def torch_setup(x64: bool):
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count() or 2)
    dtype = torch.float64 if x64 else torch.float32
    device = "cuda" if GPU else "cpu"
    if os.environ.get("XAIJAX_BENCH_NO_TF32"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
            self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
            self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
            self.relu1, self.relu2, self.relu3, self.relu4 = (nn.ReLU() for _ in range(4))
            self.pool1, self.pool2 = nn.MaxPool2d(2), nn.MaxPool2d(2)
            self.head = nn.Linear(64, CLASSES)

        def forward(self, x):
            x = self.pool1(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
            x = self.pool2(self.relu4(self.conv4(self.relu3(self.conv3(x)))))
            return self.head(x.mean(dim=(2, 3)))

    model = CNN().to(dtype).eval().to(device)
    w = make_weights()
    with torch.no_grad():
        for name in ("conv1", "conv2", "conv3", "conv4"):
            conv = getattr(model, name)  # HWIO -> OIHW
            conv.weight.copy_(torch.tensor(w[name + "/kernel"].transpose(3, 2, 0, 1), dtype=dtype))
            conv.bias.copy_(torch.tensor(w[name + "/bias"], dtype=dtype))
        model.head.weight.copy_(torch.tensor(w["head/kernel"].T, dtype=dtype))
        model.head.bias.copy_(torch.tensor(w["head/bias"], dtype=dtype))
    x_np, t_np = make_batch()
    x = torch.tensor(x_np.transpose(0, 3, 1, 2), dtype=dtype, device=device)  # NCHW
    t = torch.tensor(t_np, device=device)
    return torch, model, x, t


def run_captum(repeats: int, x64: bool) -> dict:
    from captum.attr import (
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    torch, model, x, t = torch_setup(x64)

    def grad_cam():
        a = LayerGradCam(model, model.conv4).attribute(x, target=t, relu_attributions=True)
        return LayerAttribution.interpolate(a, (SIZE, SIZE), interpolate_mode="bilinear")

    methods = {
        "forward": lambda: model(x),
        "gradient": lambda: Saliency(model).attribute(x, target=t, abs=False),
        "integrated_gradients": lambda: IntegratedGradients(model).attribute(
            x, baselines=0.0, target=t, n_steps=IG_STEPS, method="gausslegendre"
        ),
        "smoothgrad": lambda: NoiseTunnel(Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=SG_SAMPLES, stdevs=SG_SIGMA, target=t, abs=False
        ),
        "grad_cam": grad_cam,
        "occlusion": lambda: Occlusion(model).attribute(
            x,
            sliding_window_shapes=(3, WINDOW, WINDOW),
            strides=(3, STRIDE, STRIDE),
            baselines=0.0,
            target=t,
            perturbations_per_eval=8,
        ),
    }
    if GPU:  # wait for the GPU's work in every timed call
        methods = {n: (lambda f=f: (f(), torch.cuda.synchronize())[0]) for n, f in methods.items()}
    out = {"times": {}, "maps": {}}
    for name, fn in methods.items():
        if name == "forward":
            with torch.no_grad():
                out["times"][name] = timeit(fn, repeats)
            continue
        out["times"][name] = timeit(fn, repeats)
        a = fn().detach().cpu().numpy()
        a = a[:, 0] if a.ndim == 4 and a.shape[1] == 1 else a.transpose(0, 2, 3, 1)
        out["maps"][name] = a
    return out


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def ig_memory(steps: int, chunk_size: int) -> int:
    """Peak RSS (KiB) of one process running IG with the given steps and chunk size."""
    code = (
        "import resource, jax, jax.numpy as jnp, numpy as np, sys;"
        "sys.path.insert(0, 'experiments/bench');"
        "import attribution as b, xaijax, flax.linen as nn;"
        f"r = b.run_ig_only({steps}, {chunk_size});"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(res.stdout.strip().splitlines()[-1])


def run_ig_only(steps: int, chunk_size: int):
    import jax
    import jax.numpy as jnp

    import xaijax

    w = make_weights()
    x_np, t_np = make_batch()

    def apply_fn(p, x):
        for name in ("conv1", "conv2", "conv3", "conv4"):
            x = jax.lax.conv_general_dilated(
                x, p[name + "/kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            x = jax.nn.relu(x + p[name + "/bias"][None, None, None])
            if name in ("conv2", "conv4"):
                x = jax.lax.reduce_window(
                    x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
                )
        return x.mean((1, 2)) @ p["head/kernel"] + p["head/bias"][None]

    p = {k: jnp.asarray(v) for k, v in w.items()}
    ig = xaijax.integrated_gradients(apply_fn, steps=steps, chunk_size=chunk_size)
    return jax.block_until_ready(ig(p, jnp.asarray(x_np), jnp.asarray(t_np, jnp.int32)))


def main():
    global BATCH, GPU
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument(
        "--modes",
        nargs="*",
        choices=list(MODES),
        default=list(MODES),
        help="xaijax columns: plain (1 CPU device) and opt-in (xaijax.use_cpu_devices(), two "
        "CPU devices per core, batch sharded with xaijax.shard_batch)",
    )
    parser.add_argument("--x64", action="store_true", help="also compare in float64")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run-through: 1 repeat, batch 4, IG 4 steps, SmoothGrad 2 samples, no memory runs",
    )
    parser.add_argument(
        "--out",
        default="experiments/results/bench_attribution.md",
        help="where the table is written (markdown)",
    )
    parser.add_argument(
        "--gpu", action="store_true", help="both libraries on the first GPU (one xaijax column)"
    )
    parser.add_argument("--batch", type=int, default=BATCH, help="batch size (32)")
    parser.add_argument(
        "--no-tf32",
        action="store_true",
        help="GPU: full float32 convolutions and matmuls in both libraries (no TF32)",
    )
    parser.add_argument("--worker", choices=list(MODES), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-x64", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    BATCH, GPU = args.batch, args.gpu
    if args.no_tf32:  # before any JAX or torch computation, in this process and each worker
        os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
        os.environ["XAIJAX_BENCH_NO_TF32"] = "1"
    if args.smoke:
        smoke_settings()
    if GPU:
        args.modes = ["plain"]
        MODES["plain"] = "1 GPU"
    repeats = 1 if args.smoke else 3 if args.quick else 7
    if args.worker is not None:
        res = run_xaijax(args.worker, 1 if args.worker_x64 else repeats, args.worker_x64)
        print("RESULT " + json.dumps(res))
        return

    def worker(mode, x64=False):
        cmd = [sys.executable, __file__, "--worker", mode]
        cmd += (["--quick"] if args.quick else []) + (["--smoke"] if args.smoke else [])
        cmd += ["--batch", str(args.batch)] + (["--gpu"] if GPU else [])
        cmd += ["--no-tf32"] if args.no_tf32 else []
        if x64:
            cmd.append("--worker-x64")
        res = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
        if res.returncode != 0 or not lines:
            print(
                f"worker {mode!r} failed (exit {res.returncode}): {res.stderr[-600:]}",
                file=sys.stderr,
            )
            return None
        return json.loads(lines[-1][len("RESULT ") :])

    captum = run_captum(repeats, x64=False)
    results = {m: worker(m) for m in args.modes}
    failed = [m for m, r in results.items() if r is None]
    results = {m: r for m, r in results.items() if r is not None}
    modes = [m for m in args.modes if m in results]
    if not modes:
        sys.exit("every xaijax worker failed; see the messages above")
    diffs32 = {}
    for name in captum["maps"]:
        ours = np.load(f"out/bench/xaijax_{modes[0]}.npz")[name]
        diffs32[name] = rel_diff(ours, captum["maps"][name])
    diffs64 = {}
    if args.x64:
        cap64 = run_captum(1, x64=True)
        ours64 = worker("plain", x64=True)
        if ours64 is None:
            sys.exit("the float64 xaijax worker failed; see the message above")
        for name in cap64["maps"]:
            diffs64[name] = rel_diff(np.asarray(ours64["maps"][name]), cap64["maps"][name])

    import torch

    header = ["method", "captum ms"]
    for m in modes:
        header += [f"xaijax ms ({MODES[m]})", f"xaijax/captum ({MODES[m]})"]
    header += ["max rel. diff fp32"] + (["max rel. diff fp64"] if args.x64 else [])
    rows = []
    for name in [
        "forward",
        "gradient",
        "integrated_gradients",
        "smoothgrad",
        "grad_cam",
        "occlusion",
    ]:
        row = [name, f"{captum['times'][name] * 1e3:.1f}"]
        for m in modes:
            ours = results[m]["times"][name]
            row += [f"{ours * 1e3:.1f}", f"{ours / captum['times'][name]:.2f}"]
        if name in ("forward", "smoothgrad"):
            row += ["n/a"] + (["n/a"] if args.x64 else [])
        else:
            row += [f"{diffs32[name]:.1e}"] + ([f"{diffs64[name]:.1e}"] if args.x64 else [])
        rows.append(row)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    ratios = [
        f"- IG time / ({IG_STEPS} x gradient time), {MODES[m]}: "
        f"{results[m]['times']['integrated_gradients'] / (IG_STEPS * results[m]['times']['gradient']):.2f}"  # noqa: E501
        for m in modes
    ]
    ratios += [
        f"- opt-in: {results[m]['devices']} CPU devices; `xaijax.shard_batch` of the batch and "
        f"targets alone takes {results[m]['shard_ms']:.2f} ms (included in every opt-in timing)"
        for m in modes
        if m == "opt-in"
    ]
    if not args.smoke and not GPU:  # two more processes of IG alone
        mem32 = ig_memory(32, 32)
        mem256 = ig_memory(256, 32)
        ratios.append(
            f"- peak RSS of IG, 256 steps / 32 steps (chunk_size=32): "
            f"{mem256 / 1024:.0f} MiB / {mem32 / 1024:.0f} MiB = {mem256 / mem32:.2f}"
        )
    where = (
        f"GPU {torch.cuda.get_device_name(0)}, "
        if GPU
        else f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
    )
    env = (
        f"jax {__import__('jax').__version__}, torch {torch.__version__}, "
        f"captum {__import__('captum').__version__}, {where}median of {repeats} runs"
    )
    notes = [f"- the xaijax worker {MODES[m]!r} failed; no figures" for m in failed]
    if args.smoke:
        notes.append(
            f"- smoke run (batch {BATCH}, IG {IG_STEPS} steps, SmoothGrad {SG_SAMPLES} "
            "samples, 1 repeat): these numbers mean nothing"
        )
    text = "\n".join(lines + [""] + ratios + notes + ["", env])
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(
            f"# xaijax vs Captum (synthetic random CNN, batch {BATCH} of 64x64 RGB"
            + (", on a GPU)\n\n" if GPU else ")\n\n")
        )
        f.write(
            ("Command: `python3" if GPU else "Command: `.venv-bench/bin/python")
            + " experiments/bench/attribution.py"
            + (" --gpu" if GPU else "")
            + (f" --batch {BATCH}" if BATCH != 32 else "")
            + (" --no-tf32" if args.no_tf32 else "")
            + (" --quick" if args.quick else "")
            + (" --smoke" if args.smoke else "")
            + (" --x64" if args.x64 else "")
            + "`\n\n"
        )
        f.write(text + "\n")


if __name__ == "__main__":
    main()
