"""``xaijax explain``: explain a whole dataset into a resumable store, from the command line.

Drives :func:`xaijax.pipeline.explain_dataset`: a model (a zoo model and its checkpoint, or
``module:function`` of your own), a random-access source (the synthetic benchmark or a
prepared TFDS dataset), a method of the library with its options, and a store directory. The
batch is laid over every device of every process; a rerun of the same command resumes.

    xaijax explain --list-methods
    xaijax explain --model zoo:vgg --checkpoint ckpt/vgg --data synthetic:images --split test \\
        --num 512 --method integrated_gradients -o steps=32 --batch-size 64 --out out/ig
    python -m xaijax.cli.explain --help

Every bad argument is one line on stderr, ``xaijax explain: error: <what>; <how to fix>``, and
exit status 2 (no traceback); see :data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import json
import os
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from xaijax import errors
from xaijax.cli import _registry

PROG = "xaijax explain"

#: What the exit status says.
EXIT_CODES = {
    0: "the store is complete (written now, or already)",
    1: "the run stopped on an xaijax error in the data or the results (NaN/Inf inputs or "
    "maps, a label outside the model's classes): fix the data; a rerun resumes",
    2: "a bad argument, found before any work: the command line, or the model, checkpoint, "
    "data, method, options or --out it names (also a store at --out written by another run)",
    130: "interrupted (Ctrl-C): rerun the same command to resume",
}

_DATA_KINDS = ("images", "videos", "texts")
_INPUT_KEYS = ("image", "video", "tokens")
#: Errors in the data or the results met while the run goes on (exit 1); others are exit 2.
_RUN_ERRORS = (
    errors.NonFiniteInputError,
    errors.NonFiniteOutputError,
    errors.TargetOutOfRangeError,
)
#: What to do on the command line, appended to the library's messages (which name Python
#: arguments).
_HINTS = {
    errors.ManifestMismatchError: "on the command line: --no-resume deletes that store and "
    "starts again, or choose another --out",
    errors.CheckpointMismatchError: "on the command line: pass the fields the model was "
    "trained with, --num-classes N --model-kwargs '{\"widths\": [...]}'",
}


class UsageError(Exception):
    """A bad argument: printed as one line, exit status 2."""


# --- the parser ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(f"{message}; see `{PROG} --help`")


def _epilog() -> str:
    codes = "\n".join(
        textwrap.fill(f"{k:>5}  {v}", 92, subsequent_indent=" " * 7) for k, v in EXIT_CODES.items()
    )
    return f"""\
methods (-o NAME=VALUE, repeated; values are read as JSON, then as Python literals, else as
strings; every option and default below is read off the library's factory signatures):
{_registry.table()}

examples:
  {PROG} --list-methods
  # a smoke run: a randomly initialised small VGG on 32 synthetic 32 px images
  {PROG} --model zoo:vgg --random-init --model-kwargs '{{"widths": [8, 16]}}' \\
      --data synthetic:images --num 32 --data-options '{{"image_size": 32}}' \\
      --method smoothgrad -o num_samples=4 --key 0 --batch-size 8 --out out/explain/smoke
  # a trained zoo model: the checkpoint of xaijax.training.train(..., checkpoint_dir=DIR)
  {PROG} --model zoo:resnet --checkpoint DIR --data tfds:cifar10:test --data-dir ~/tfds \\
      --method grad_cam --batch-size 256 --out out/explain/cifar10-gradcam
  # your own model: mypkg/models.py defines load(**kwargs) -> (model, params)
  {PROG} --model mypkg.models:load --model-kwargs '{{"size": "small"}}' \\
      --data synthetic:images --method lime -o num_samples=500 -o approx_segments=30 --out o
  # two hosts: run on each, with its --process-id
  {PROG} ... --coordinator-address 10.0.0.1:1234 --num-processes 2 --process-id 0

the store (a zarr v3 directory): xaijax.pipeline.open_results(OUT).read("map", slice(0, 8));
arrays "index", "target" and one per output (segment methods add "segments").

exit status:
{codes}
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``xaijax explain`` (its help lists every method)."""
    from xaijax import models
    from xaijax.data import synthetic

    synthetic_default = {
        n: p.default for n, p in inspect.signature(synthetic.SyntheticSource).parameters.items()
    }
    p = _Parser(
        prog=PROG,
        description=(
            "Explain every example of a dataset with one method of xaijax, into a resumable\n"
            "zarr v3 store (xaijax.pipeline.explain_dataset): the batch is laid over every\n"
            "device of every process, and rerunning the same command resumes."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--list-methods", action="store_true", help="print the methods and exit")

    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        metavar="SPEC",
        help=f"zoo:<name> (xaijax.models: {', '.join(models.MODEL_NAMES)}) or "
        "module:function returning (model, params), model an xaijax.Model, a flax.linen "
        "Module or apply_fn(params, x) -> logits; called with --model-kwargs",
    )
    g.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="zoo models: the checkpoint directory written by xaijax.training.save_checkpoint "
        "or train(checkpoint_dir=...). It holds no model config: the number of classes is "
        "read off the head's kernel, other fields come from --model-kwargs",
    )
    g.add_argument(
        "--checkpoint-step", type=int, metavar="N", help="the step to restore (default: latest)"
    )
    g.add_argument(
        "--random-init",
        action="store_true",
        help="zoo models without a checkpoint: parameters from "
        "model.init(jax.random.key(0, impl='rbg')) "
        "(smoke tests only; never implied)",
    )
    g.add_argument(
        "--num-classes",
        type=int,
        metavar="C",
        help="zoo models: logits of the head (default: read off the checkpoint; with "
        "--random-init, the synthetic data's classes)",
    )
    g.add_argument(
        "--model-kwargs",
        metavar="JSON",
        default="{}",
        help="zoo: fields of the model class, as at training, e.g. '{\"widths\": [8, 16]}'; "
        "module:function: its keyword arguments",
    )
    g.add_argument(
        "--score",
        choices=("logit", "probability", "log_probability"),
        help="the score explained (default: the model's own, logits for zoo models)",
    )

    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="SPEC",
        help="synthetic:images|videos|texts (xaijax.data.synthetic.SyntheticSource) or "
        "tfds:<name>:<split> (xaijax.data.tfds.source, a dataset prepared as array_record)",
    )
    g.add_argument(
        "--num",
        type=int,
        help=f"synthetic: number of examples (default {synthetic_default['num']})",
    )
    g.add_argument(
        "--split",
        help=f"synthetic: {', '.join(synthetic.SPLITS)} (default {synthetic_default['split']}); "
        "tfds: the split, when --data does not name it",
    )
    g.add_argument(
        "--seed", type=int, help=f"synthetic: the data seed (default {synthetic_default['seed']})"
    )
    g.add_argument("--data-dir", metavar="DIR", help="tfds: where the dataset was prepared")
    g.add_argument(
        "--data-options",
        metavar="JSON",
        default="{}",
        help="synthetic: fields of ImageConfig/VideoConfig/TextConfig, e.g. "
        "'{\"image_size\": 32}'; tfds: options of xaijax.data.tfds.source (image_size, crop, "
        "num_frames, seq_len, vocab_size)",
    )
    g.add_argument(
        "--input-key",
        help="the field given to the model (default: image, video or tokens, whichever the "
        "examples hold)",
    )
    g.add_argument(
        "--target-key",
        help="the field holding the class to explain (default: label when the examples hold it)",
    )
    g.add_argument(
        "--no-target",
        action="store_true",
        help="explain the class of highest score instead of --target-key",
    )

    g = p.add_argument_group("method")
    g.add_argument("--method", metavar="NAME", help="one of: " + ", ".join(_registry.METHODS))
    g.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option of the method (repeat for several; see the table below)",
    )
    g.add_argument(
        "--at-layer",
        metavar="LAYER",
        help="attribute to the output of a named layer (xaijax.at_layer), e.g. embed for "
        "text1d on token ids; methods whose result is a map",
    )
    g.add_argument(
        "--key",
        type=int,
        metavar="SEED",
        help="stochastic methods: the seed of jax.random.key (default 0); example i uses "
        "fold_in(key, i)",
    )

    g = p.add_argument_group("run and store")
    g.add_argument("--out", metavar="DIR", help="the store directory (created; resumed if there)")
    g.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help="examples per global batch, a multiple of the device count (default 8 per device)",
    )
    g.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue the store at --out (default); --no-resume deletes it first",
    )
    g.add_argument(
        "--dtype", choices=("float32", "float16"), default="float32", help="how maps are stored"
    )
    g.add_argument("--prefetch", type=int, default=2, metavar="N", help="batches read ahead")
    g.add_argument("--no-progress", action="store_true", help="no progress bar or closing line")
    g.add_argument(
        "--top-k",
        type=int,
        default=5,
        metavar="K",
        help="store the K most probable classes and their probabilities (0: none)",
    )
    g.add_argument(
        "--read-threads",
        type=int,
        default=0,
        metavar="N",
        help="read examples on N host threads through grain (slow per-example sources)",
    )
    g.add_argument(
        "--mask-key", metavar="FIELD", help="a ground-truth mask field to score the maps against"
    )

    g = p.add_argument_group(
        "multi-host (jax.distributed.initialize, called before anything else uses JAX)"
    )
    g.add_argument("--coordinator-address", metavar="HOST:PORT", help="process 0's address")
    g.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    g.add_argument("--process-id", type=int, metavar="I", help="this process, 0 .. N-1")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() and let it read the cluster's environment "
        "(SLURM, Cloud TPU, ...) for what the three options above leave out",
    )
    return p


# --- small parsers -------------------------------------------------------------------------


def _value(text: str) -> Any:
    """An option value: JSON, else a Python literal, else the string; lists become tuples."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return _tuples(parse(text))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def _tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(
                f"-o {pair!r} is not NAME=VALUE; write e.g. `-o steps=32` "
                "(`--list-methods` shows every method's options)"
            )
        if name in out:
            raise UsageError(f"option {name!r} is given twice; pass each -o NAME once")
        out[name] = _value(text)
    return out


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{flag} {text!r} is not JSON ({e.msg} at column {e.colno}); write an object, e.g. "
            f"{flag} '{{\"image_size\": 32}}' (double quotes inside single quotes)"
        ) from e
    if not isinstance(value, dict):
        raise UsageError(
            f'{flag} must be a JSON object {{"name": value, ...}}, got {type(value).__name__}'
        )
    return _tuples(value)


def _one_line(e: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(e)).strip()
    if isinstance(e, errors.XaijaxError):
        text = f"{type(e).__name__}: {text}"
        for cls, hint in _HINTS.items():
            if isinstance(e, cls):
                text = f"{text.rstrip('.')}; {hint}"
        if isinstance(e, errors.InputDTypeError) and "token ids" in text:
            text = (
                f"{text.rstrip('.')}; on the command line: --at-layer embed (the zoo's text1d) "
                "or --method lime / kernel_shap"
            )
    return text


def _fail(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


# --- the steps -----------------------------------------------------------------------------


def _check_required(args: argparse.Namespace) -> None:
    missing = [f"--{n}" for n in ("model", "data", "method", "out") if getattr(args, n) is None]
    if missing:
        raise UsageError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required; e.g. "
            f"`{PROG} --model zoo:vgg --checkpoint DIR --data synthetic:images --method gradient "
            f"--out out/maps` (see --help)"
        )
    for flag in ("num", "batch_size", "prefetch", "num_classes"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")
    for flag in ("top_k", "read_threads"):
        if getattr(args, flag) < 0:
            raise UsageError(
                f"--{flag.replace('_', '-')} must be 0 or more, got {getattr(args, flag)}"
            )


def _init_distributed(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` when asked, before anything else touches JAX."""
    given = {
        "coordinator_address": args.coordinator_address,
        "num_processes": args.num_processes,
        "process_id": args.process_id,
    }
    named = {k: v for k, v in given.items() if v is not None}
    if not named and not args.distributed:
        return
    if not args.distributed and len(named) < 3:
        missing = [f"--{k.replace('_', '-')}" for k in given if k not in named]
        raise UsageError(
            f"multi-host runs need --coordinator-address, --num-processes and --process-id "
            f"together (missing {', '.join(missing)}); or add --distributed to let "
            "jax.distributed.initialize read the rest from the cluster's environment"
        )
    address = args.coordinator_address
    if address is not None and not re.fullmatch(r"\[?[\w.:-]*\w\]?:\d{1,5}", address):
        raise UsageError(
            f"--coordinator-address {address!r} is not HOST:PORT; e.g. 10.0.0.1:1234 "
            "(process 0's host, a free port)"
        )
    if args.num_processes is not None and args.num_processes < 1:
        raise UsageError(f"--num-processes must be >= 1, got {args.num_processes}")
    if args.process_id is not None and args.num_processes is not None:
        if not 0 <= args.process_id < args.num_processes:
            raise UsageError(
                f"--process-id {args.process_id} is outside 0 .. {args.num_processes - 1}; "
                "give each process its own id below --num-processes"
            )
    import jax

    try:
        jax.distributed.initialize(**named)
    except (RuntimeError, ValueError) as e:
        raise UsageError(
            f"jax.distributed.initialize({', '.join(f'{k}={v!r}' for k, v in named.items())}) "
            f"failed ({_one_line(e)}); check the coordinator's address and that every process "
            "starts with the same --num-processes"
        ) from e


def _source(args: argparse.Namespace):
    """The random-access source named by ``--data``."""
    kind, _, rest = args.data.partition(":")
    data_options = _json_object(args.data_options, "--data-options")
    if kind == "synthetic":
        if rest not in _DATA_KINDS:
            raise UsageError(
                f"--data {args.data!r}: the synthetic benchmark has {', '.join(_DATA_KINDS)}; "
                "write e.g. --data synthetic:images"
            )
        if args.data_dir is not None:
            raise UsageError("--data-dir is for tfds data; drop it for synthetic data")
        from xaijax.data import synthetic

        config_cls = {
            "images": synthetic.ImageConfig,
            "videos": synthetic.VideoConfig,
            "texts": synthetic.TextConfig,
        }[rest]
        fields = [f.name for f in dataclasses.fields(config_cls)]
        unknown = sorted(set(data_options) - set(fields))
        if unknown:
            raise UsageError(
                f"--data-options: {config_cls.__name__} has no field(s) {', '.join(unknown)}; it "
                f"has {', '.join(fields)}"
            )
        kwargs = {
            k: getattr(args, k) for k in ("num", "split", "seed") if getattr(args, k) is not None
        }
        return synthetic.SyntheticSource(rest, config=config_cls(**data_options), **kwargs)
    if kind == "tfds":
        name, split = _tfds_name_split(rest, args)
        for flag in ("num", "seed"):
            if getattr(args, flag) is not None:
                raise UsageError(
                    f"--{flag} is for synthetic data; for tfds choose examples with the split, "
                    f"e.g. tfds:{name}:test[:1000]"
                )
        from xaijax.data import tfds as xtfds

        params = inspect.signature(xtfds.source).parameters
        allowed = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY and n != "data_dir"]
        unknown = sorted(set(data_options) - set(allowed))
        if unknown:
            raise UsageError(
                f"--data-options: xaijax.data.tfds.source takes no {', '.join(unknown)}; it "
                f"takes {', '.join(allowed)}"
            )
        data_dir = None if args.data_dir is None else os.path.expanduser(args.data_dir)
        return xtfds.source(name, split, data_dir=data_dir, **data_options)
    raise UsageError(
        f"--data {args.data!r} is not synthetic:images|videos|texts or tfds:<name>:<split>; "
        "e.g. --data synthetic:images or --data tfds:cifar10:test --data-dir DIR"
    )


def _tfds_name_split(rest: str, args: argparse.Namespace) -> tuple[str, str]:
    parts = rest.split(":")
    name, tail = parts[0], parts[1:]
    if tail and re.fullmatch(r"\d+(\.\d+)*", tail[0]):  # a version: tfds:cifar10:3.0.2:test
        name, tail = f"{name}:{tail[0]}", tail[1:]
    split = ":".join(tail)
    if args.split is not None:
        if split and split != args.split:
            raise UsageError(
                f"--data names split {split!r} and --split {args.split!r}; give the split once"
            )
        split = args.split
    if not name or not split:
        raise UsageError(
            f"--data tfds:{rest} needs a dataset and a split; write e.g. tfds:cifar10:test"
        )
    return name, split


def _fields(source, args: argparse.Namespace) -> tuple[str, str | None, Any]:
    """``(input_key, target_key, first example)``, defaults from the examples' fields."""
    first = source[0]
    keys = list(first)
    if args.input_key is not None:
        if args.input_key not in first:
            raise UsageError(
                f"--input-key {args.input_key!r} is not a field of the examples; they hold "
                f"{', '.join(keys)}"
            )
        input_key = args.input_key
    else:
        found = [k for k in _INPUT_KEYS if k in first]
        if not found:
            raise UsageError(
                f"the examples hold {', '.join(keys)}, none of {', '.join(_INPUT_KEYS)}; pass "
                "--input-key FIELD"
            )
        input_key = found[0]
    if args.no_target:
        if args.target_key is not None:
            raise UsageError("--no-target and --target-key contradict each other; drop one")
        return input_key, None, first
    if args.target_key is not None:
        if args.target_key not in first:
            raise UsageError(
                f"--target-key {args.target_key!r} is not a field of the examples; they hold "
                f"{', '.join(keys)} (or pass --no-target to explain the predicted class)"
            )
        return input_key, args.target_key, first
    return input_key, ("label" if "label" in first else None), first


def _model(args: argparse.Namespace, source, x0) -> tuple[Any, Any, _registry.Context]:
    """``(model, params, context)`` from ``--model`` and its flags."""
    import numpy as np

    kwargs = _json_object(args.model_kwargs, "--model-kwargs")
    integer = np.issubdtype(np.asarray(x0).dtype, np.integer)
    spec = args.model
    if spec.startswith("zoo:"):
        return _zoo_model(args, spec[4:], kwargs, source, x0, integer)
    module_name, sep, fn_name = spec.partition(":")
    if not sep or not module_name or not fn_name.isidentifier():
        raise UsageError(
            f"--model {spec!r} is neither zoo:<name> nor module:function; write e.g. "
            "--model zoo:vgg or --model mypkg.models:load"
        )
    for flag in ("checkpoint", "random_init", "num_classes", "checkpoint_step"):
        if getattr(args, flag) not in (None, False):
            raise UsageError(
                f"--{flag.replace('_', '-')} is for zoo models; module:function loads its own "
                "weights (pass what it needs through --model-kwargs)"
            )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(
            f"--model {spec!r}: cannot import {module_name!r} ({_one_line(e)}); check the "
            "module path and that its directory is on PYTHONPATH"
        ) from e
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        what = "has no" if fn is None else "has a non-callable"
        raise UsageError(
            f"--model {spec!r}: module {module_name!r} {what} {fn_name!r}; name a function "
            "returning (model, params)"
        )
    result = fn(**kwargs)
    if not isinstance(result, tuple) or len(result) != 2:
        raise UsageError(
            f"--model {spec!r} returned {type(result).__name__}, not a pair (model, params); "
            "make it return (model, params)"
        )
    model, params = result
    from flax import linen as nn

    import xaijax

    cam_layer = None
    if isinstance(model, xaijax.Model):
        model = model if args.score is None else model.with_score(args.score)
    elif isinstance(model, nn.Module):
        cam_layer = getattr(model, "cam_layer", None)
        model = xaijax.from_linen(model, score=args.score or "logit")
    elif callable(model):
        model = xaijax.model(model, score=args.score or "logit")
    else:
        raise UsageError(
            f"--model {spec!r} returned a model of type {type(model).__name__}; return an "
            "xaijax.Model, a flax.linen.Module or a function apply_fn(params, x) -> logits"
        )
    ctx = _registry.Context(cam_layer, bool(integer), tuple(np.shape(x0)))
    return model, params, ctx


def _zoo_model(args, name: str, kwargs: dict, source, x0, integer: bool):
    import jax
    import numpy as np

    import xaijax
    from xaijax import models

    if name not in models.MODEL_NAMES:
        raise UsageError(
            f"--model zoo:{name}: no such zoo model; choose one of "
            f"{', '.join('zoo:' + n for n in models.MODEL_NAMES)}"
        )
    if args.checkpoint is None and not args.random_init:
        raise UsageError(
            f"--model zoo:{name} needs --checkpoint DIR (its trained weights); pass "
            "--random-init to explain random weights on purpose (smoke tests)"
        )
    if args.checkpoint is not None and args.random_init:
        raise UsageError("--checkpoint and --random-init contradict each other; drop one")
    if args.checkpoint is not None and not os.path.isdir(args.checkpoint):
        raise UsageError(
            f"--checkpoint {args.checkpoint!r} is not a directory; pass the directory that "
            "xaijax.training.save_checkpoint or train(checkpoint_dir=...) wrote"
        )
    num_classes = args.num_classes
    if num_classes is None and args.checkpoint is not None:
        from xaijax import training

        # The checkpoint holds no model config: read the tree once to size the head.
        saved = training.restore_checkpoint(args.checkpoint, step=args.checkpoint_step)
        num_classes = _head_classes(saved, args.checkpoint)
        del saved
    if num_classes is None:
        num_classes = getattr(getattr(source, "config", None), "num_classes", None)
        if num_classes is None:
            raise UsageError(f"--model zoo:{name} --random-init needs --num-classes C")
    module = models.get_model(name, num_classes, **kwargs)
    example = np.asarray(x0)[None]
    # An "rbg" key, as xaijax.training.train: XLA:CPU compiles the initialisers ~5x faster.
    init = lambda x: module.init(jax.random.key(0, impl="rbg"), x)["params"]  # noqa: E731
    if args.random_init:
        params = jax.jit(init)(example)
    else:
        from xaijax import training

        # Restored into the model's (abstract) tree: a mismatch is CheckpointMismatchError.
        abstract = jax.eval_shape(init, example)
        params = training.restore_checkpoint(args.checkpoint, abstract, step=args.checkpoint_step)
    model = xaijax.from_linen(module, score=args.score or "logit")
    ctx = _registry.Context(module.cam_layer, bool(integer), tuple(np.shape(x0)))
    return model, params, ctx


def _head_classes(saved, directory: str) -> int:
    import jax

    for path, leaf in jax.tree_util.tree_leaves_with_path(saved):
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        if names[-2:] == ["head", "kernel"]:
            return int(leaf.shape[-1])
    raise UsageError(
        f"cannot read the number of classes off the checkpoint in {directory!r} (it has no "
        "head/kernel parameter); pass --num-classes C"
    )


def _explainer(args: argparse.Namespace, model, ctx: _registry.Context):
    method = _registry.get(args.method)
    given = _options(args.option)
    try:
        if args.at_layer is None:
            return _registry.build(method, model, given, ctx)
        import xaijax

        return xaijax.at_layer(
            lambda m: _registry.build(method, m, given, ctx), model, args.at_layer
        )
    except errors.XaijaxError as e:
        shown = " ".join(f"-o {k}={v!r}" for k, v in given.items())
        at = f" --at-layer {args.at_layer}" if args.at_layer else ""
        raise UsageError(
            f"--method {method.name}{at} {shown}".rstrip() + f": {_one_line(e)}"
        ) from e


def _count_written(path: str) -> int:
    """Examples already in the store at ``path`` (0 when there is none)."""
    import numpy as np

    from xaijax import pipeline

    try:
        return int(np.count_nonzero(pipeline.open_results(path).read("index") >= 0))
    except (errors.XaijaxError, OSError, KeyError, ValueError):
        return 0


def run(args: argparse.Namespace) -> int:
    """Runs a parsed command line; :class:`UsageError` for bad arguments."""
    _check_required(args)
    method = _registry.get(args.method)  # before any JAX: name and options
    _registry.resolve(method, _options(args.option))
    if args.key is not None and args.key < 0:
        raise UsageError(f"--key must be a non-negative seed, got {args.key}")
    _init_distributed(args)

    import jax

    from xaijax import pipeline
    from xaijax.pipeline import _store

    path = _store.check_out(args.out)
    devices = jax.device_count()
    batch_size = args.batch_size or 8 * devices
    if batch_size % devices:
        raise UsageError(
            f"--batch-size {batch_size} is not a multiple of the {devices} devices (each "
            f"explains batch_size / devices examples); use e.g. "
            f"{devices * max(1, round(batch_size / devices))}"
        )
    source = _source(args)
    input_key, target_key, first = _fields(source, args)
    model, params, ctx = _model(args, source, first[input_key])
    explainer = _explainer(args, model, ctx)
    if explainer.stochastic:
        key = jax.random.key(0 if args.key is None else args.key)
    elif args.key is not None:
        raise UsageError(f"method {args.method!r} is deterministic and takes no --key; drop it")
    else:
        key = None
    extra = {"top_k": args.top_k, "mask_key": args.mask_key, "read_threads": args.read_threads}

    before = _count_written(path) if args.resume else 0
    start = time.perf_counter()
    try:
        results = pipeline.explain_dataset(
            explainer,
            params,
            source,
            path,
            batch_size=batch_size,
            input_key=input_key,
            target_key=target_key,
            key=key,
            dtype=args.dtype,
            resume=args.resume,
            prefetch=args.prefetch,
            progress=not args.no_progress,
            **extra,
        )
    except _RUN_ERRORS:
        raise
    except errors.XaijaxError as e:  # the run's own checks, before any batch: a bad argument
        raise UsageError(_one_line(e)) from e
    seconds = time.perf_counter() - start
    if jax.process_index() == 0:
        n = len(results)
        arrays = ", ".join(
            f"{name} {results[name].dtype.numpy_dtype.name}{list(results[name].shape)}"
            for name in results.names
        )
        print(f"store: {results.path}")
        print(
            f"{explainer.name}: {n} examples in {seconds:.1f} s ({n - before} explained now, "
            f"{before} already done); arrays: {arrays}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``xaijax explain``: parses ``argv`` (``sys.argv[1:]`` by default), runs, returns the exit
    status (:data:`EXIT_CODES`). Bad arguments and xaijax errors are one line on stderr."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except UsageError as e:
        _fail(str(e))
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if args.list_methods:
        print(_registry.table())
        return 0
    try:
        return run(args)
    except UsageError as e:
        _fail(str(e))
        return 2
    except _RUN_ERRORS as e:
        _fail(_one_line(e))
        return 1
    except errors.XaijaxError as e:
        _fail(_one_line(e))
        return 2
    except KeyboardInterrupt:
        _fail("interrupted; rerun the same command to resume where it stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
