"""``xaijax explain``: a command-line run writes the store that ``explain_dataset`` writes for the
same explainer, model and data; resumes; and every bad argument is one line and exit status 2."""

from __future__ import annotations

import inspect
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

import xaijax
from xaijax import models, segmentation, superpixels, training
from xaijax.cli import _registry, explain
from xaijax.cli import main as cli_main
from xaijax.data import synthetic
from xaijax.data import tfds as xtfds
from xaijax.pipeline import _store, explain_dataset, open_results

ROOT = pathlib.Path(__file__).resolve().parents[2]
USER_MODULE = "xaijax_cli_test_models"
WIDTHS = '{"widths": [4, 8]}'

#: A tiny run: a small VGG on 10 synthetic 24 px test images, two batches of 8 (the last one
#: padded) over the 4 fake CPU devices of tests/conftest.py.
BASE = {
    "--model": "zoo:vgg",
    "--random-init": None,
    "--model-kwargs": WIDTHS,
    "--data": "synthetic:images",
    "--split": "test",
    "--num": "10",
    "--data-options": '{"image_size": 24}',
    "--method": "gradient",
    "--batch-size": "8",
    "--no-progress": None,
}


def argv(base: dict, out, **changes) -> list[str]:
    """``base`` with ``changes`` (``--flag=None`` drops it; ``"__flag"``: ``--flag``)."""
    opts = dict(base)
    extra = []
    for k, val in changes.items():
        flag = "--" + k.replace("_", "-")
        if k == "o":
            extra += [x for o in val for x in ("-o", o)]
        elif val is None:
            opts.pop(flag, None)
        else:
            opts[flag] = None if val is True else val
    if out is not None:
        opts["--out"] = str(out)
    flat = []
    for k, val in opts.items():
        flat += [k] if val is None else [k, val]
    return flat + extra


def run(capsys, args: list[str]) -> tuple[int, str, str]:
    code = explain.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def source(num=10, size=24):
    return synthetic.SyntheticSource(
        "images", split="test", num=num, config=synthetic.ImageConfig(image_size=size)
    )


def tiny_vgg(num_classes=10, seed=0):
    net = models.get_model("vgg", num_classes, widths=(4, 8))
    key = jax.random.key(seed, impl="rbg")  # --random-init's key (seed 0)
    params = jax.jit(lambda x: net.init(key, x))(source()[0]["image"][None])["params"]
    return net, params


def assert_same_store(got, want):
    assert got.manifest == want.manifest  # explainer, options, params, source, settings
    for name in want.names:
        np.testing.assert_allclose(got.read(name), want.read(name), rtol=1e-6, atol=1e-7)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """An importable module of models (``xaijax_cli_test_models``) in ``tmp_path``."""
    code = """
        import jax.numpy as jnp
        import numpy as np

        def apply_fn(w, x):  # global average pool, then a linear head: any image size
            return x.mean(axis=(1, 2)) @ w

        def load(scale=1.0):
            w = np.linspace(-1.0, 1.0, 30, dtype=np.float32).reshape(3, 10)
            return apply_fn, jnp.asarray(w) * scale

        def nan_model():  # NaN scores (a square root of negative numbers): NaN maps
            return (lambda w, x: jnp.sqrt(x.mean(axis=(1, 2)) - 2.0) @ w), load()[1]

        not_callable = 3

        def bad():
            return 3
    """
    d = tmp_path / "user"
    d.mkdir()
    (d / f"{USER_MODULE}.py").write_text(textwrap.dedent(code))
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.delitem(sys.modules, USER_MODULE, raising=False)
    yield __import__(USER_MODULE)
    sys.modules.pop(USER_MODULE, None)


# --- runs equal to explain_dataset -------------------------------------------------------------


def _ig(m):
    return xaijax.integrated_gradients(m, steps=4)


def _smoothgrad(m):
    return xaijax.smooth(xaijax.gradient(m), num_samples=2)


@pytest.mark.parametrize(
    "method, options, factory, seed",
    [
        ("integrated_gradients", ["steps=4"], _ig, None),
        ("smoothgrad", ["num_samples=2"], _smoothgrad, 3),
    ],
    ids=["integrated_gradients", "smoothgrad"],
)
def test_a_run_writes_the_store_explain_dataset_writes(
    method, options, factory, seed, tmp_path, capsys
):
    extra = {} if seed is None else {"key": str(seed)}
    code, out, err = run(capsys, argv(BASE, tmp_path / "cli", method=method, o=options, **extra))
    assert code == 0, err
    assert f"store: {tmp_path / 'cli'}" in out and "10 explained now, 0 already done" in out
    net, params = tiny_vgg()
    want = explain_dataset(
        factory(xaijax.from_linen(net)),
        params,
        source(),
        tmp_path / "ref",
        batch_size=8,
        input_key="image",
        target_key="label",
        key=None if seed is None else jax.random.key(seed),
        progress=False,
    )
    got = open_results(tmp_path / "cli")
    assert got.complete and got.read("map").shape == (10, 24, 24, 3)
    assert_same_store(got, want)


def test_a_zoo_checkpoint_round_trip(tmp_path, capsys):
    net, params = tiny_vgg(num_classes=12, seed=5)  # 12 classes: read off the head
    training.save_checkpoint(tmp_path / "ckpt", params, step=7)
    args = argv(BASE, tmp_path / "cli", random_init=None, checkpoint=str(tmp_path / "ckpt"))
    code, out, err = run(capsys, args)
    assert code == 0, err
    want = explain_dataset(
        xaijax.gradient(xaijax.from_linen(net)),
        params,
        source(),
        tmp_path / "ref",
        batch_size=8,
        input_key="image",
        target_key="label",
        progress=False,
    )
    assert_same_store(open_results(tmp_path / "cli"), want)
    # The checkpoint of another width: the library's mismatch error, one line, with the flags.
    bad = argv(
        BASE,
        tmp_path / "bad",
        random_init=None,
        checkpoint=str(tmp_path / "ckpt"),
        model_kwargs='{"widths": [4, 16]}',
    )
    code, out, err = run(capsys, bad)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "CheckpointMismatchError" in err and "--model-kwargs" in err


def test_a_module_function_model(user_module, tmp_path, capsys):
    args = argv(
        BASE,
        tmp_path / "cli",
        model=f"{USER_MODULE}:load",
        random_init=None,
        model_kwargs='{"scale": 2.0}',
        method="gradient_x_input",
    )
    code, out, err = run(capsys, args)
    assert code == 0, err
    apply_fn, w = user_module.load(scale=2.0)
    want = explain_dataset(
        xaijax.gradient_x_input(apply_fn),
        w,
        source(),
        tmp_path / "ref",
        batch_size=8,
        input_key="image",
        target_key="label",
        progress=False,
    )
    assert_same_store(open_results(tmp_path / "cli"), want)


def test_tfds_mock_data(user_module, tmp_path, capsys):
    args = argv(
        BASE,
        tmp_path / "cli",
        model=f"{USER_MODULE}:load",
        random_init=None,
        model_kwargs=None,
        data="tfds:cifar10:test",
        split=None,
        num=None,
        data_dir=str(tmp_path),
        data_options='{"image_size": 16}',
        batch_size="4",
    )
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        code, out, err = run(capsys, args)
        assert code == 0, err
        src = xtfds.source("cifar10", "test", data_dir=tmp_path, image_size=16)
        apply_fn, w = user_module.load()
        want = explain_dataset(
            xaijax.gradient(apply_fn),
            w,
            src,
            tmp_path / "ref",
            batch_size=4,
            input_key="image",
            target_key="label",
            progress=False,
        )
    got = open_results(tmp_path / "cli")
    assert got.read("map").shape == (6, 16, 16, 3)
    assert_same_store(got, want)


def test_gws_segments_each_image_with_slic_and_stores_the_map(tmp_path, capsys):
    args = argv(BASE, tmp_path / "cli", method="gws", o=["approx_segments=9", "reduce=sum"])
    code, out, err = run(capsys, args)
    assert code == 0, err
    got = open_results(tmp_path / "cli")
    net, params = tiny_vgg()
    x = jnp.asarray(np.stack([source()[i]["image"] for i in range(10)]))
    label = jnp.asarray([source()[i]["label"] for i in range(10)])
    segments = segmentation.slic(approx_segments=9, num_segments=18)(x)  # 18 = 2 * 9
    gws = superpixels.gws(xaijax.gradient(xaijax.from_linen(net)), "sum", num_segments=18)
    np.testing.assert_array_equal(got.read("segments"), np.asarray(segments))
    np.testing.assert_allclose(
        got.read("segment_scores"),
        np.asarray(gws(params, x, label, segments=segments)),
        rtol=1e-5,
        atol=1e-6,
    )
    assert got.manifest["options"]["approx_segments"] == 9
    assert got.manifest["inner"]["options"]["reduce"] == "sum"


def test_top_k_and_mask_key_reach_the_store(tmp_path, capsys):
    args = argv(BASE, tmp_path / "cli", method="grad_cam", top_k="2", mask_key="object_mask")
    code, out, err = run(capsys, args)
    assert code == 0, err
    got = open_results(tmp_path / "cli")
    assert got.read("top_classes").shape == (10, 2) and got.manifest["mask_key"] == "object_mask"
    masks = np.stack([source()[i]["object_mask"] for i in range(10)])
    maps = got.read("spatial_map")
    np.testing.assert_array_equal(
        got.read("pointing_game"), np.asarray(xaijax.metrics.pointing_game(maps, masks))
    )
    code, out, err = run(capsys, argv(BASE, tmp_path / "bad", mask_key="nope"))
    assert code == 2 and len(err.splitlines()) == 1 and "'nope' is not a field" in err


def test_token_ids_through_at_layer(tmp_path, capsys):
    args = argv(
        BASE,
        tmp_path / "cli",
        model="zoo:text1d",
        model_kwargs=None,
        data="synthetic:texts",
        num="4",
        data_options=None,
        batch_size="4",
        method="integrated_gradients",
        o=["steps=2"],
        at_layer="embed",
    )
    code, out, err = run(capsys, args)
    assert code == 0, err
    assert open_results(tmp_path / "cli").read("spatial_map").shape == (4, 64)  # one per token
    code, out, err = run(capsys, [a for a in args if a not in ("--at-layer", "embed")])
    assert code == 2 and len(err.splitlines()) == 1 and "--at-layer embed" in err


def test_a_second_run_resumes_and_does_nothing_new(tmp_path, capsys, monkeypatch):
    args = argv(BASE, tmp_path / "cli")
    assert run(capsys, args)[0] == 0
    first = open_results(tmp_path / "cli").read("map")
    finished = []
    real = _store.mark_done
    monkeypatch.setattr(_store, "mark_done", lambda p, pid, b: finished.append(b))
    code, out, err = run(capsys, args)
    assert code == 0 and finished == [] and "0 explained now, 10 already done" in out
    monkeypatch.setattr(_store, "mark_done", real)
    code, out, err = run(capsys, args + ["--no-resume"])
    assert code == 0 and "10 explained now, 0 already done" in out
    np.testing.assert_array_equal(open_results(tmp_path / "cli").read("map"), first)
    # Another method into the same store: the manifest check, one line, with the way out.
    code, out, err = run(capsys, argv(BASE, tmp_path / "cli", method="gradient_x_input"))
    assert code == 2 and len(err.splitlines()) == 1
    assert "ManifestMismatchError" in err and "--no-resume" in err


def test_an_xaijax_error_during_the_run_is_one_line_and_exit_1(user_module, tmp_path, capsys):
    args = argv(
        BASE, tmp_path / "s", model=f"{USER_MODULE}:nan_model", random_init=None, model_kwargs=None
    )
    code, out, err = run(capsys, args)
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("xaijax explain: error: NonFiniteOutputError: ")


# --- bad arguments -------------------------------------------------------------------------


def _bad_cases(tmp_path):
    (tmp_path / "a_file").write_text("")
    user = dict(random_init=None, model_kwargs=None)  # module:function takes neither
    return {
        "unknown method": (dict(method="nosuch"), "unknown method 'nosuch'; choose one of"),
        "unknown option": (
            dict(method="integrated_gradients", o=["stepz=3"]),
            "unknown option(s) stepz for method 'integrated_gradients'; it takes steps,",
        ),
        "option of a method without options": (dict(o=["steps=3"]), "it takes no options"),
        "bad option value": (
            dict(method="integrated_gradients", o=["steps=-1"]),
            "--method integrated_gradients -o steps=-1: InvalidArgumentError: `steps`",
        ),
        "bad option type": (dict(method="occlusion", o=["window=abc"]), "`window`"),
        "option without a value": (dict(o=["steps"]), "-o 'steps' is not NAME=VALUE"),
        "unknown pixel method": (dict(method="gws", o=["pixel=lime"]), "not a pixel method"),
        "layer method without a layer": (
            dict(method="grad_cam", model=f"{USER_MODULE}:load", **user),
            "grad_cam needs the layer to explain",
        ),
        "unknown zoo model": (dict(model="zoo:nosuch"), "no such zoo model; choose one of"),
        "no module:function": (dict(model="vgg"), "neither zoo:<name> nor module:function"),
        "missing module": (dict(model="no_such_module_xyz:load", **user), "cannot import"),
        "missing function": (dict(model=f"{USER_MODULE}:nosuch", **user), "has no 'nosuch'"),
        "not callable": (dict(model=f"{USER_MODULE}:not_callable", **user), "non-callable"),
        "not a pair": (dict(model=f"{USER_MODULE}:bad", **user), "not a pair (model, params)"),
        "checkpoint flag for module:function": (
            dict(model=f"{USER_MODULE}:load"),
            "--random-init is for zoo models",
        ),
        "zoo without weights": (dict(random_init=None), "needs --checkpoint DIR"),
        "missing checkpoint dir": (
            dict(random_init=None, checkpoint=str(tmp_path / "nowhere")),
            "is not a directory",
        ),
        "unwritable out": (dict(out=str(tmp_path / "a_file" / "s")), "OutputPathError"),
        "out is a file": (dict(out=str(tmp_path / "a_file")), "is an existing file"),
        "unknown tfds dataset": (
            dict(data="tfds:mnist:test", split=None, num=None, data_options=None),
            "Unknown dataset 'mnist'",
        ),
        "tfds without a split": (dict(data="tfds:cifar10", split=None, num=None), "a split"),
        "unknown synthetic kind": (dict(data="synthetic:audio"), "synthetic benchmark has"),
        "bad data spec": (dict(data="images"), "is not synthetic:images|videos|texts"),
        "unknown data option": (
            dict(data_options='{"image_sz": 32}'),
            "ImageConfig has no field(s) image_sz",
        ),
        "bad data option value": (dict(data_options='{"image_size": 8}'), "`image_size`"),
        "bad JSON": (dict(model_kwargs="{widths: [4]}"), "--model-kwargs '{widths: [4]}' is not"),
        "unknown model field": (dict(model_kwargs='{"depth": 3}'), "unknown field(s) ['depth']"),
        "batch size not a multiple of devices": (
            dict(batch_size="6"),
            "--batch-size 6 is not a multiple of the 4 devices",
        ),
        "non-positive batch size": (dict(batch_size="0"), "--batch-size must be a positive"),
        "key of a deterministic method": (dict(key="1"), "deterministic and takes no --key"),
        "unknown input key": (dict(input_key="pixels"), "--input-key 'pixels' is not a field"),
        "unknown target key": (dict(target_key="class"), "--target-key 'class' is not a field"),
        "missing --out": (dict(), "--out is required"),
        "bad dtype": (dict(dtype="float64"), "invalid choice: 'float64'"),
        "unknown flag": (dict(colour="red"), "unrecognized arguments: --colour red"),
        "multi-host flags apart": (
            dict(coordinator_address="127.0.0.1:1234"),
            "together (missing --num-processes, --process-id)",
        ),
        "process id out of range": (
            dict(coordinator_address="127.0.0.1:1234", num_processes="2", process_id="2"),
            "--process-id 2 is outside 0 .. 1",
        ),
        "bad coordinator address": (
            dict(coordinator_address="localhost", num_processes="2", process_id="0"),
            "is not HOST:PORT",
        ),
        "checkpoint and random init": (
            dict(checkpoint=str(tmp_path)),
            "--checkpoint and --random-init contradict",
        ),
    }


BAD = [
    "unknown method",
    "unknown option",
    "option of a method without options",
    "bad option value",
    "bad option type",
    "option without a value",
    "unknown pixel method",
    "layer method without a layer",
    "unknown zoo model",
    "no module:function",
    "missing module",
    "missing function",
    "not callable",
    "not a pair",
    "checkpoint flag for module:function",
    "zoo without weights",
    "missing checkpoint dir",
    "unwritable out",
    "out is a file",
    "unknown tfds dataset",
    "tfds without a split",
    "unknown synthetic kind",
    "bad data spec",
    "unknown data option",
    "bad data option value",
    "bad JSON",
    "unknown model field",
    "batch size not a multiple of devices",
    "non-positive batch size",
    "key of a deterministic method",
    "unknown input key",
    "unknown target key",
    "missing --out",
    "bad dtype",
    "unknown flag",
    "multi-host flags apart",
    "process id out of range",
    "bad coordinator address",
    "checkpoint and random init",
]


@pytest.mark.parametrize("case", BAD)
def test_a_bad_argument_is_one_line_and_exit_2(case, user_module, tmp_path, capsys, monkeypatch):
    changes, expected = _bad_cases(tmp_path)[case]
    monkeypatch.setattr(
        jax.distributed, "initialize", lambda **kw: pytest.fail("must not be reached")
    )
    out_dir = None if case == "missing --out" else changes.pop("out", tmp_path / "store")
    extra = ["--colour", "red"] if changes.pop("colour", None) else []
    args = argv(BASE, out_dir, **changes) + extra
    code, out, err = run(capsys, args)
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xaijax explain: error: ") and "Traceback" not in err
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "store").exists()  # nothing written before the error


def test_multi_host_flags_reach_jax_distributed_initialize_first(tmp_path, capsys, monkeypatch):
    calls = []

    def initialize(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("coordinator unreachable (injected)")

    monkeypatch.setattr(jax.distributed, "initialize", initialize)
    monkeypatch.setattr(explain, "_source", lambda args: pytest.fail("data before JAX's init"))
    flags = ["--coordinator-address", "10.1.2.3:8476", "--num-processes", "4", "--process-id", "3"]
    code, out, err = run(capsys, argv(BASE, tmp_path / "s") + flags)
    assert calls == [{"coordinator_address": "10.1.2.3:8476", "num_processes": 4, "process_id": 3}]
    assert code == 2 and len(err.splitlines()) == 1 and "(injected)" in err
    calls.clear()
    code, out, err = run(capsys, argv(BASE, tmp_path / "s") + ["--distributed"])
    assert calls == [{}] and code == 2  # the cluster's environment: no arguments


# --- help and the console script ----------------------------------------------------------------


def test_help_lists_every_method_with_its_options(capsys):
    assert explain.main(["--help"]) == 0
    text = capsys.readouterr().out
    table = text.split("\nmethods (", 1)[1].split("\nexamples:", 1)[0]
    parts = re.split(r"^  (\w+)(?:,.*)?$", table, flags=re.M)  # [head, name, block, name, ...]
    blocks = {parts[i]: " ".join(parts[i + 1].split()) for i in range(1, len(parts), 2)}
    assert list(blocks) == list(_registry.METHODS)
    for name, method in _registry.METHODS.items():
        for fn in method.factories:  # every keyword of the library factory, with its default
            for p in inspect.signature(fn).parameters.values():
                if p.name in ("model", "explainer"):
                    continue
                shown = "REQUIRED" if p.default is p.empty else repr(p.default)
                if p.name in method.defaults:
                    shown = repr(method.defaults[p.name][0])
                assert f"{p.name}={shown}" in blocks[name], (name, p.name)
    assert "steps=50 (int)" in blocks["integrated_gradients"]
    stochastic = re.findall(r"^  (\w+), stochastic: takes --key$", table, flags=re.M)
    assert stochastic == ["smoothgrad", "rise", "lime", "kernel_shap"]
    assert "exit status" in text and "--coordinator-address" in text
    assert explain.main(["--list-methods"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name}" in listed for name in _registry.METHODS)


def test_help_in_a_fresh_process():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "xaijax.cli.explain", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert all(name in out.stdout for name in _registry.METHODS)


def test_jax_distributed_initialize_comes_before_any_backend_in_a_fresh_process(tmp_path):
    """Parsing, the help table (which builds every method) and the checks of the method and
    its options start no JAX backend, so ``jax.distributed.initialize`` can still run."""
    script = f"""
        import jax
        from jax._src import xla_bridge
        from xaijax.cli import explain

        def initialize(**kwargs):
            print("backends started:", xla_bridge.backends_are_initialized())
            raise RuntimeError("stop here")

        jax.distributed.initialize = initialize
        code = explain.main(["--model", "zoo:vgg", "--random-init", "--data", "synthetic:images",
                             "--method", "lime", "-o", "num_samples=10", "--out", {str(tmp_path)!r},
                             "--coordinator-address", "127.0.0.1:1", "--num-processes", "2",
                             "--process-id", "1"])
        print("exit", code)
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.stdout.split() == ["backends", "started:", "False", "exit", "2"], out.stderr


def test_the_xaijax_console_script(capsys, monkeypatch):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"xaijax": "xaijax.cli.main:main"}
    assert cli_main.main(["explain", "--list-methods"]) == 0
    assert "integrated_gradients" in capsys.readouterr().out
    from xaijax.cli import demo

    seen = []
    monkeypatch.setattr(demo, "main", lambda rest: seen.append(rest) or 0)
    assert cli_main.main(["demo", "--small"]) == 0 and seen == [["--small"]]
    for args in (["nope"], []):
        assert cli_main.main(args) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("xaijax: error: ")
    assert cli_main.main(["--help"]) == 0 and "explain" in capsys.readouterr().out


def test_the_readme_commands_run_as_written(tmp_path, capsys, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = [
        line
        for line in "\n".join(blocks).replace("\\\n", " ").splitlines()
        if line.startswith("xaijax ")
    ]
    assert len(commands) == 3
    monkeypatch.chdir(tmp_path)
    # The checkpoint the README assumes: a default VGG for the synthetic images (10 classes).
    net = models.get_model("vgg", 10)
    params = net.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    training.save_checkpoint("out/checkpoints/vgg", params, step=1)
    for command in commands:
        code = cli_main.main(shlex.split(command)[1:])
        captured = capsys.readouterr()
        assert code == 0, (command, captured.err)
    assert open_results("out/explain/vgg-grad-cam").read("spatial_map").shape == (16, 64, 64)
    assert open_results("out/explain/smoothgrad").complete
