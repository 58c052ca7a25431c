"""xaijax attributions against Captum: the same CNN, the same weights, the same batch.

Claim checked: xaijax's gradient-family attributions equal Captum's, and are no slower.

Command (needs the `bench` extra: torch 2.13.0 CPU, captum; `make bench` sets it up):

    .venv-bench/bin/python experiments/bench/attribution.py            # full table
    .venv-bench/bin/python experiments/bench/attribution.py --quick    # fewer repeats

Setup: a 4-conv CNN (3->32->32, maxpool, 32->64->64, maxpool, global mean, dense 64->10, ReLU
after each conv), identical weights ported from Flax to PyTorch, batch 32 of 64x64 RGB in [0, 1),
random targets. Methods: gradient (Captum Saliency, abs=False), IG (32 Gauss-Legendre steps, zero
baseline), SmoothGrad (16 samples, absolute sigma 0.15), Grad-CAM (last conv, ReLU, bilinear
upsampling) and occlusion (8x8 window, stride 4, zero fill). xaijax runs in its own process per
column: on 1 CPU device, on N devices with the batch sharded by the caller (``--devices N``), and
with xaijax's default (``0``: two CPU devices per core, the batch placed by xaijax itself).

The difference column is max|a_xaijax - a_captum| / max|a_captum| over the batch, in float32 and
(``--x64``) in float64: in float32 the two frameworks' convolutions round differently, which can
flip a max-pool's arg-max at near-ties and move a gradient to a neighbouring pixel. SmoothGrad
has no difference column: the two libraries draw different noise.

Expected runtime: about 20 minutes with ``--quick --x64`` on the 2-core CPU machine (Captum's
occlusion and IG dominate). The last result is in experiments/results/bench_attribution.md and
the README.
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
IG_STEPS, SG_SAMPLES, SG_SIGMA = 32, 16, 0.15
WINDOW, STRIDE = 8, 4


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
def run_xaijax(devices: int, repeats: int, x64: bool) -> dict:
    import jax

    if devices > 0:  # 0: xaijax's default (two CPU devices per core, batch placed by xaijax)
        jax.config.update("jax_num_cpu_devices", devices)
    if x64:
        jax.config.update("jax_enable_x64", True)
    import flax.linen as nn
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    import xaijax

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
    if devices > 1:  # the caller shards the batch itself, by jit with shardings
        mesh = jax.make_mesh((devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
        x = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
        t = jax.device_put(t, NamedSharding(mesh, PartitionSpec("data")))
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    key = jax.random.key(0)
    methods = {
        "forward": lambda: apply_fn(params, x),
        "gradient": lambda: xaijax.gradient(apply_fn)(params, x, t),
        "integrated_gradients": lambda: ig(params, x, t),
        "smoothgrad": lambda: sg(params, x, t, key=key),
        "grad_cam": lambda: gc(params, x, t),
        "occlusion": lambda: occ(params, x, t),
    }
    grad = xaijax.gradient(apply_fn)
    methods["gradient"] = lambda: grad(params, x, t)
    ig = xaijax.integrated_gradients(apply_fn, steps=IG_STEPS, method="gausslegendre", batch_size=1)
    sg = xaijax.smooth(grad, samples=SG_SAMPLES, noise=SG_SIGMA, relative_noise=False, batch_size=1)
    gc = xaijax.grad_cam(model, "conv4")
    occ = xaijax.occlusion(apply_fn, window=WINDOW, stride=STRIDE, fill=0.0, batch_size=8)
    out = {"devices": devices, "times": {}, "maps": {}}
    for name, fn in methods.items():
        out["times"][name] = timeit(lambda fn=fn: jax.block_until_ready(fn()), repeats)
        if name != "forward":
            out["maps"][name] = np.asarray(fn(), np.float64).tolist() if x64 else None
    if not x64:
        os.makedirs("out/bench", exist_ok=True)
        np.savez(
            f"out/bench/xaijax_{devices}.npz",
            **{n: np.asarray(methods[n]()) for n in methods if n != "forward"},
        )
    return out


# --------------------------------------------------------------------------------------- torch
def torch_setup(x64: bool):
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count() or 2)
    dtype = torch.float64 if x64 else torch.float32

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

    model = CNN().to(dtype).eval()
    w = make_weights()
    with torch.no_grad():
        for name in ("conv1", "conv2", "conv3", "conv4"):
            conv = getattr(model, name)  # HWIO -> OIHW
            conv.weight.copy_(torch.tensor(w[name + "/kernel"].transpose(3, 2, 0, 1), dtype=dtype))
            conv.bias.copy_(torch.tensor(w[name + "/bias"], dtype=dtype))
        model.head.weight.copy_(torch.tensor(w["head/kernel"].T, dtype=dtype))
        model.head.bias.copy_(torch.tensor(w["head/bias"], dtype=dtype))
    x_np, t_np = make_batch()
    x = torch.tensor(x_np.transpose(0, 3, 1, 2), dtype=dtype)  # NCHW
    t = torch.tensor(t_np)
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
    out = {"times": {}, "maps": {}}
    for name, fn in methods.items():
        if name == "forward":
            with torch.no_grad():
                out["times"][name] = timeit(fn, repeats)
            continue
        out["times"][name] = timeit(fn, repeats)
        a = fn().detach().numpy()
        a = a[:, 0] if a.ndim == 4 and a.shape[1] == 1 else a.transpose(0, 2, 3, 1)
        out["maps"][name] = a
    return out


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def ig_memory(steps: int, batch_size: int) -> int:
    """Peak RSS (KiB) of one process running IG with the given steps and chunk size."""
    code = (
        "import resource, jax, jax.numpy as jnp, numpy as np, sys;"
        "sys.path.insert(0, 'experiments/bench');"
        "import attribution as b, xaijax, flax.linen as nn;"
        f"r = b.run_ig_only({steps}, {batch_size});"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(res.stdout.strip().splitlines()[-1])


def run_ig_only(steps: int, batch_size: int):
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
    ig = xaijax.integrated_gradients(apply_fn, steps=steps, batch_size=batch_size)
    return jax.block_until_ready(ig(p, jnp.asarray(x_np), jnp.asarray(t_np, jnp.int32)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument(
        "--devices",
        type=int,
        nargs="*",
        default=[1, 0],
        help="host CPU device counts to shard the batch over (0: xaijax's default, two devices "
        "per core, with the batch placed by xaijax itself)",
    )
    parser.add_argument("--x64", action="store_true", help="also compare in float64")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-x64", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    if args.worker is not None:
        res = run_xaijax(args.worker, 1 if args.worker_x64 else repeats, args.worker_x64)
        print("RESULT " + json.dumps(res))
        return

    def worker(devices, x64=False):
        cmd = [sys.executable, __file__, "--worker", str(devices)] + (
            ["--quick"] if args.quick else []
        )
        if x64:
            cmd.append("--worker-x64")
        res = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
        if res.returncode != 0 or not lines:
            # XLA:CPU runs a sharded program's devices as threads that meet at every collective;
            # on a 2-core machine they can miss the 40 s rendezvous and XLA aborts the process.
            why = [ln for ln in res.stderr.splitlines() if "rendezvous" in ln.lower()]
            print(
                f"worker with {devices} device(s) failed (exit {res.returncode}): "
                + (why[-1][:300] if why else res.stderr[-300:]),
                file=sys.stderr,
            )
            return None
        return json.loads(lines[-1][len("RESULT ") :])

    captum = run_captum(repeats, x64=False)
    results = {d: worker(d) for d in args.devices}
    failed = [d for d, r in results.items() if r is None]
    results = {d: r for d, r in results.items() if r is not None}
    args.devices = [d for d in args.devices if d in results]
    diffs32 = {}
    for name in captum["maps"]:
        ours = np.load(f"out/bench/xaijax_{args.devices[0]}.npz")[name]
        diffs32[name] = rel_diff(ours, captum["maps"][name])
    diffs64 = {}
    if args.x64:
        cap64 = run_captum(1, x64=True)
        ours64 = worker(1, x64=True)
        for name in cap64["maps"]:
            diffs64[name] = rel_diff(np.asarray(ours64["maps"][name]), cap64["maps"][name])

    import torch

    header = ["method", "captum ms"]
    for d in args.devices:
        label = "default" if d == 0 else f"{d} dev"
        header += [f"xaijax ms ({label})", f"xaijax/captum ({label})"]
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
        for d in args.devices:
            ours = results[d]["times"][name]
            row += [f"{ours * 1e3:.1f}", f"{ours / captum['times'][name]:.2f}"]
        if name in ("forward", "smoothgrad"):
            row += ["n/a"] + (["n/a"] if args.x64 else [])
        else:
            row += [f"{diffs32[name]:.1e}"] + ([f"{diffs64[name]:.1e}"] if args.x64 else [])
        rows.append(row)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    ratios = [
        f"- IG time / (32 x gradient time), {'default' if d == 0 else f'{d} device(s)'}: "
        f"{results[d]['times']['integrated_gradients'] / (IG_STEPS * results[d]['times']['gradient']):.2f}"  # noqa: E501
        for d in args.devices
    ]
    mem32 = ig_memory(32, 32)
    mem256 = ig_memory(256, 32)
    ratios.append(
        f"- peak RSS of IG, 256 steps / 32 steps (batch_size=32): "
        f"{mem256 / 1024:.0f} MiB / {mem32 / 1024:.0f} MiB = {mem256 / mem32:.2f}"
    )
    env = (
        f"jax {__import__('jax').__version__}, torch {torch.__version__}, "
        f"captum {__import__('captum').__version__}, {os.cpu_count()} CPU cores, "
        f"torch threads {torch.get_num_threads()}, median of {repeats} runs"
    )
    notes = [
        f"- the worker with {d} host devices (0: default) aborted (XLA:CPU collective "
        "rendezvous timeout); no figures"
        for d in failed
    ]
    text = "\n".join(lines + [""] + ratios + notes + ["", env])
    print(text)
    os.makedirs("experiments/results", exist_ok=True)
    with open("experiments/results/bench_attribution.md", "w") as f:
        f.write("# xaijax vs Captum (synthetic random CNN, batch 32 of 64x64 RGB)\n\n")
        f.write(
            "Command: `.venv-bench/bin/python experiments/bench/attribution.py"
            + (" --quick" if args.quick else "")
            + (" --x64" if args.x64 else "")
            + "`\n\n"
        )
        f.write(text + "\n")


if __name__ == "__main__":
    main()
