"""viz.show_results: a grid drawn from a real store written by explain_dataset.

Oracles: the explainer called on the source's images directly (the map panels equal
``show_grid`` of those maps), the model's softmax (the row titles' prediction) and
xaijax.metrics (their energy in the mask and pointing game).
"""

from __future__ import annotations

import ast
import doctest
import pathlib
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax
from xaijax import errors, metrics, viz
from xaijax.data import ArraySource
from xaijax.pipeline import explain_dataset, open_results
from xaijax.viz import _results

N, S, C = 10, 8, 3  # examples, image size, classes


def f(p, x):
    return x.reshape(len(x), -1) @ p


class Two(NamedTuple):
    grad: jax.Array  # [B, S, S, 3]: a channel map
    spatial: jax.Array  # [B, S, S]: a map
    score: jax.Array  # [B]: not a map


def two(params, x, target):
    g = xaijax.gradient(f).run(params, x, target)
    return Two(g, jnp.abs(g).sum(-1), f(params, x)[jnp.arange(len(x)), target])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(N, S, S, 3)).astype(np.float32)
    label = rng.integers(0, C, N).astype(np.int32)
    mask = np.zeros((N, S, S), bool)
    mask[:, 2:6, 1:5] = True
    w = jnp.asarray(rng.normal(size=(S * S * 3, C)).astype(np.float32))
    return ArraySource({"image": images, "label": label, "mask": mask}), w


@pytest.fixture(scope="module")
def store(data, tmp_path_factory):
    """Gradients with targets, top-2 classes and metrics against the masks."""
    src, w = data
    out = tmp_path_factory.mktemp("viz") / "grad"
    kw = dict(input_key="image", target_key="label", mask_key="mask", top_k=2, progress=False)
    return explain_dataset(xaijax.gradient(f), w, src, out, batch_size=4, **kw)


@pytest.fixture(scope="module")
def two_store(data, tmp_path_factory):
    """A NamedTuple result (two maps and a score), float16, no target field or masks."""
    src, w = data
    out = tmp_path_factory.mktemp("viz") / "two"
    e = xaijax.explainer(two, f)
    return explain_dataset(
        e, w, src, out, batch_size=4, input_key="image", dtype="float16", progress=False
    )


def picture(ax) -> np.ndarray:
    return np.asarray(ax.get_images()[0].get_array(), np.float32)


def cells(fig, rows: int) -> np.ndarray:
    panels = [ax for ax in fig.axes if ax.get_images()]
    return np.array(panels, dtype=object).reshape(rows, -1)


def test_default_rows_columns_and_titles_come_from_the_store(data, store):
    src, w = data
    x, label, mask = src.get_batch(range(N)).values()
    fig = viz.show_results(store, src)
    grid = cells(fig, 4)  # the first 4 written
    assert grid.shape == (4, 3)  # image | mask | gradient
    assert [ax.get_title() for ax in grid[0]] == ["image", "mask", "gradient"]
    assert len(fig.axes) == 12 + 1  # the panels and the map column's colour bar
    # Row titles: the oracle is the model and xaijax.metrics on the images themselves.
    logits = np.asarray(f(w, x))
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    grad = np.asarray(xaijax.gradient(f)(w, x, label))
    energy = np.asarray(metrics.energy_in_mask(jnp.abs(grad).sum(-1), mask))
    hit = np.asarray(metrics.pointing_game(jnp.abs(grad).sum(-1), mask))
    for i in range(4):
        want = (
            f"#{i}, label {label[i]}\n"
            f"pred {logits[i].argmax()} (p {probs[i].max():.2f})\n"
            f"EiM {energy[i]:.2f}, {'hit' if hit[i] else 'miss'}"
        )
        assert grid[i, 0].get_ylabel() == want
        np.testing.assert_allclose(picture(grid[i, 0]), x[i], atol=1e-6)
        np.testing.assert_allclose(picture(grid[i, 1]), mask[i, ..., None].repeat(3, -1))
    # The map panels: show_grid of the explainer's own maps of those images.
    ref = viz.show_grid(x[:4], {"gradient": grad[:4]})
    for a, b in zip(grid[:, 2], cells(ref, 4)[:, 1], strict=True):
        np.testing.assert_allclose(picture(a), picture(b), atol=1e-5)


def test_indices_in_the_given_order_and_an_int(data, store):
    src, _ = data
    fig = viz.show_results(store, src, [9, 2, 9])
    grid = cells(fig, 3)
    assert [ax.get_ylabel().split(",")[0] for ax in grid[:, 0]] == ["#9", "#2", "#9"]
    np.testing.assert_allclose(picture(grid[0, 0]), src[9]["image"], atol=1e-6)
    one = viz.show_results(store, src, np.int64(7))
    assert cells(one, 1)[0, 0].get_ylabel().startswith("#7, label ")


def test_default_columns_are_the_maps_of_the_image(data, two_store):
    src, w = data
    assert two_store["grad"].dtype.numpy_dtype == np.float16
    fig = viz.show_results(two_store, src, [0, 1])
    grid = cells(fig, 2)
    assert [ax.get_title() for ax in grid[0]] == ["image", "grad", "spatial"]  # not "score"
    # No target field, no masks: the class explained is the predicted one; no metrics line.
    target = int(np.argmax(np.asarray(f(w, src[1]["image"][None]))))
    assert grid[1, 0].get_ylabel().splitlines()[0] == f"#1, class {target}"
    assert len(grid[1, 0].get_ylabel().splitlines()) == 2
    only = viz.show_results(two_store, src, [0], names="spatial")
    assert [ax.get_title() for ax in cells(only, 1)[0]] == ["image", "spatial"]


def test_grid_kwargs_replace_the_defaults(data, store):
    src, _ = data
    fig = viz.show_results(
        store, src, [0, 1], references={}, titles=["∂ score"], method="heat_map", colorbar=False
    )
    grid = cells(fig, 2)
    assert [ax.get_title() for ax in grid[0]] == ["image", "∂ score"]
    assert len(fig.axes) == 4  # no mask column, no colour bar


def test_unknown_and_non_map_names_are_named_errors(data, store, two_store):
    src, _ = data
    with pytest.raises(errors.InvalidArgumentError, match="no array 'saliency'.*'map'"):
        viz.show_results(store, src, names="saliency")
    with pytest.raises(errors.InputShapeError, match="'top_classes' is \\[2\\] per example"):
        viz.show_results(store, src, names=["map", "top_classes"])
    with pytest.raises(errors.InputShapeError, match="'score' is \\[\\] per example"):
        viz.show_results(two_store, src, names="score")


def test_an_unwritten_example_is_a_named_error(data, tmp_path):
    src, w = data

    class Unreadable:  # example 4 cannot be read: the run stops in batch 1, after batch 0
        def __len__(self):
            return N

        def __getitem__(self, i):
            if i == 4:
                raise RuntimeError("example 4 is unreadable")
            return src[i]

    out = tmp_path / "partial"
    with pytest.raises(RuntimeError, match="unreadable"):
        explain_dataset(
            xaijax.gradient(f),
            w,
            Unreadable(),
            out,
            batch_size=4,
            input_key="image",
            progress=False,
        )
    partial = open_results(out)
    assert partial.read("index").tolist() == [0, 1, 2, 3] + [-1] * 6
    with pytest.raises(errors.InvalidArgumentError, match=r"Examples \[5, 9\] are not written"):
        viz.show_results(partial, src, [1, 5, 9])
    fig = viz.show_results(partial, src, [3])  # written examples draw
    assert cells(fig, 1)[0, 0].get_ylabel().startswith("#3, class ")
    assert len(cells(viz.show_results(partial, src), 4)) == 4  # the 4 written


def test_bad_indices_are_named_errors(data, store):
    src, _ = data
    cases = {
        "outside the store's 10": [3, 10],
        "outside the store's 10 examples": -1,
        "1 to 16 rows": [],
        "must be example indices": [0.5],
        "must be example indices ": [True],
    }
    for match, indices in cases.items():
        with pytest.raises(errors.InvalidArgumentError, match=match.strip()):
            viz.show_results(store, src, indices)
    with pytest.raises(errors.InvalidArgumentError, match="17 examples; one figure draws 1 to 16"):
        viz.show_results(store, src, np.arange(17) % N)


class _Fake:
    """The duck type show_results needs (read, names, manifest), over another store."""

    def __init__(self, res, drop=()):
        self._res = res
        self.names = tuple(m for m in res.names if m not in drop)
        self.manifest = {k: v for k, v in res.manifest.items() if k != "arrays"}  # no shapes

    def read(self, name, index=slice(None)):
        return self._res.read(name, index)


def test_any_object_with_read_names_and_manifest_will_do(data, store):
    src, _ = data
    fake = _Fake(store, drop=("top_classes", "top_probabilities", "energy_in_mask"))
    grid = cells(viz.show_results(fake, src, [1, 2]), 2)
    assert [ax.get_title() for ax in grid[0]] == ["image", "mask", "gradient"]
    label = src[2]["label"]
    hit = "hit" if store.read("pointing_game", 2) else "miss"
    assert grid[1, 0].get_ylabel() == f"#2, label {label}\n{hit}"


def test_a_wrong_results_object_is_a_named_error(data, store):
    src, _ = data
    for bad in (store.path, {"map": np.zeros((N, S, S))}, np.zeros((N, S, S)), None):
        with pytest.raises(errors.InvalidArgumentError, match="open_results"):
            viz.show_results(bad, src)
    with pytest.raises(errors.InvalidArgumentError, match="no 'index' array"):
        viz.show_results(_Fake(store, drop=("index",)), src)


def test_a_mismatching_source_is_a_named_error(data, store):
    src, _ = data
    batch = src.get_batch(range(N))
    shorter = ArraySource({k: v[:-1] for k, v in batch.items()})
    with pytest.raises(errors.InvalidArgumentError, match="holds 9 examples .* one of 10"):
        viz.show_results(store, shorter)
    order = np.arange(N)[::-1]
    shuffled = ArraySource({k: v[order] for k, v in batch.items()})
    assert (batch["label"][:4] != batch["label"][order][:4]).any()
    with pytest.raises(errors.InvalidArgumentError, match="not the source of this store"):
        viz.show_results(store, shuffled)
    renamed = ArraySource({"pixels": batch["image"], "label": batch["label"]})
    with pytest.raises(errors.InvalidArgumentError, match="hold \\['pixels', 'label'\\], not"):
        viz.show_results(store, renamed)
    bigger = ArraySource({**batch, "image": np.repeat(np.repeat(batch["image"], 2, 1), 2, 2)})
    with pytest.raises(errors.InputShapeError, match="no map of the images' size \\[16, 16\\]"):
        viz.show_results(store, bigger, references={})
    flat = ArraySource({**batch, "image": batch["image"].reshape(N, -1)})
    with pytest.raises(errors.InputShapeError, match="draws images"):
        viz.show_results(store, flat)
    with pytest.raises(errors.InvalidArgumentError, match="random-access source"):
        viz.show_results(store, 42)


def test_viz_does_not_import_the_pipeline():
    viz_dir = pathlib.Path(_results.__file__).parent
    for path in viz_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any("pipeline" in m for m in mods), f"{path.name} imports {mods}"
    code = "import sys, xaijax.viz; print('xaijax.pipeline' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_png_of_it_reads(data, store, tmp_path):
    src, _ = data
    fig = viz.show_results(store, src)
    viz.save_png(tmp_path / "results.png", fig)
    assert (tmp_path / "results.png").stat().st_size > 5000


def test_docstring_example_runs():
    result = doctest.testmod(_results, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
