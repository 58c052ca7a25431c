"""``show_results``: the maps a dataset-scale run stored, drawn beside their images.

The store is read through the small surface :func:`xaijax.pipeline.open_results` gives
(``read(name, index)``, ``names``, ``manifest``), duck-typed: ``viz`` sits below ``pipeline``
in xaijax's imports and never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xaijax import errors
from xaijax._explainer import STORE_EXTRAS
from xaijax.viz._checks import shape_str
from xaijax.viz._plots import show_grid

#: Rows drawn when ``indices`` is None (the first examples written).
DEFAULT_ROWS = 4
#: The most rows one figure draws.
MAX_ROWS = 16
#: Per-example arrays of a store that are never map columns (the pipeline's bookkeeping, top-k
#: classes and metrics).
NOT_MAPS = STORE_EXTRAS
#: How many entries of the store's ``index`` array are read at a time when looking for the
#: first written examples.
_SCAN = 4096


def _check_results(results: Any) -> tuple[Mapping, tuple[str, ...], int]:
    """The store's manifest, array names and number of examples, or a named error."""
    read = getattr(results, "read", None)
    names = getattr(results, "names", None)
    manifest = getattr(results, "manifest", None)
    ok = (
        callable(read)
        and isinstance(manifest, Mapping)
        and isinstance(names, Sequence)
        and not isinstance(names, str)
    )
    if not ok:
        raise errors.InvalidArgumentError(
            "`results` must be a store opened with `xaijax.pipeline.open_results(out)` (or what "
            "`explain_dataset` returned): an object with `read(name, index)`, `names` and "
            f"`manifest`; got {type(results).__name__}."
        )
    names = tuple(str(n) for n in names)
    if "index" not in names:
        raise errors.InvalidArgumentError(
            f"`results` holds no 'index' array (it holds {list(names)}), so which examples are "
            "written is unknown: pass a store written by `xaijax.pipeline.explain_dataset`."
        )
    try:
        n = len(results)
    except TypeError:
        n = (manifest.get("source") or {}).get("len")
        if n is None:
            n = len(np.asarray(results.read("index")))
    return manifest, names, int(n)


def _first_written(results: Any, n: int, count: int) -> np.ndarray:
    """The first ``count`` examples written (``index >= 0``), reading the index in blocks."""
    found: list[np.ndarray] = []
    have = 0
    for start in range(0, n, _SCAN):
        block = np.asarray(results.read("index", slice(start, min(n, start + _SCAN))))
        hits = start + np.flatnonzero(block >= 0)
        found.append(hits[: count - have])
        have += len(found[-1])
        if have >= count:
            break
    idx = np.concatenate(found) if found else np.zeros(0, np.int64)
    if not len(idx):
        raise errors.InvalidArgumentError(
            "The store holds no written example yet (its 'index' array is -1 everywhere): run "
            "or resume `explain_dataset` first."
        )
    return idx


def _check_indices(results: Any, indices: Any, n: int) -> np.ndarray:
    """``indices`` as written example indices ``[k]``, 1 <= k <= MAX_ROWS, or a named error."""
    if indices is None:
        return _first_written(results, n, DEFAULT_ROWS)
    arr = np.asarray(indices)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer) or arr.ndim != 1:
        raise errors.InvalidArgumentError(
            f"`indices` must be example indices, an int or a list of ints (e.g. [0, 5, 9]), got "
            f"{indices!r}."
        )
    if not 1 <= len(arr) <= MAX_ROWS:
        raise errors.InvalidArgumentError(
            f"`indices` selects {len(arr)} examples; one figure draws 1 to {MAX_ROWS} rows: "
            f"draw several figures, e.g. `show_results(results, source, indices[:{MAX_ROWS}])`."
        )
    out = (arr < 0) | (arr >= n)
    if out.any():
        raise errors.InvalidArgumentError(
            f"`indices` {arr[out].tolist()} are outside the store's {n} examples [0, {n})."
        )
    arr = arr.astype(np.int64)
    written = np.asarray(results.read("index", arr))
    missing = arr[written < 0]
    if len(missing):
        raise errors.InvalidArgumentError(
            f"Examples {missing.tolist()} are not written yet (the store's 'index' is -1 there): "
            "the run was interrupted or is still going. Resume it (`explain_dataset(..., "
            "resume=True)`) or pick written examples, e.g. "
            "`np.flatnonzero(results.read('index') >= 0)[:4]`."
        )
    return arr


def _read_source(source: Any, idx: np.ndarray, keys: Sequence[str], n: int) -> dict:
    """Fields ``keys`` of examples ``idx`` of ``source`` (``get_batch`` when it has one)."""
    if not hasattr(source, "__getitem__") and not hasattr(source, "get_batch"):
        raise errors.InvalidArgumentError(
            "`source` must be the random-access source the store was written from (len(source) "
            f"and source[i] -> dict of arrays), got {type(source).__name__}."
        )
    if hasattr(source, "__len__") and len(source) != n:
        raise errors.InvalidArgumentError(
            f"`source` holds {len(source)} examples but the store was written from one of {n}: "
            "pass the source the store was written from (the same split, size and seed)."
        )
    get_batch = getattr(source, "get_batch", None)
    if get_batch is not None:
        rows = get_batch([int(i) for i in idx])
        example = rows
    else:
        rows = [source[int(i)] for i in idx]
        example = rows[0]
    if not isinstance(example, Mapping):
        raise errors.InvalidArgumentError(
            f"`source[i]` must be a dict of arrays, got {type(example).__name__}: pass the "
            "random-access source the store was written from."
        )
    for key in keys:
        if key not in example:
            raise errors.InvalidArgumentError(
                f"The source's examples hold {list(example)}, not {key!r} (the store's "
                f"`input_key` / `target_key` / `mask_key`): pass the source the store was "
                "written from, or the field of the images with `input_key=`."
            )
    if get_batch is not None:
        return {k: np.asarray(rows[k]) for k in keys}
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in keys}


def _row_shape(results: Any, manifest: Mapping, name: str, i0: int) -> tuple[int, ...]:
    """The per-example shape of array ``name`` (from the manifest, else one row read)."""
    spec = (manifest.get("arrays") or {}).get(name)
    if isinstance(spec, Mapping) and "shape" in spec:
        return tuple(int(s) for s in spec["shape"][1:])
    return tuple(np.shape(results.read(name, int(i0))))


def _is_map(shape: tuple[int, ...], hw: tuple[int, int], channels: int) -> bool:
    """Whether a per-example shape is a map of an image of size ``hw``: ``[H, W]`` or
    ``[H, W, C]`` (C = 1 or the image's channels)."""
    return shape == hw or (len(shape) == 3 and shape[:2] == hw and shape[2] in {1, channels})


def _row_title(i: int, j: int, stored: dict, manifest: Mapping) -> str:
    """``"#12, label 3"`` / ``"pred 3 (p 0.91)"`` / ``"EiM 0.62, hit"``: what the store says."""
    target_key = manifest.get("target_key")
    head = f"#{i}"
    if "target" in stored:
        head += f", {target_key or 'class'} {int(stored['target'][j])}"
    lines = [head]
    if "top_classes" in stored:
        pred = f"pred {int(stored['top_classes'][j][0])}"
        if "top_probabilities" in stored:
            pred += f" (p {float(stored['top_probabilities'][j][0]):.2f})"
        lines.append(pred)
    metrics = []
    if "energy_in_mask" in stored:
        metrics.append(f"EiM {float(stored['energy_in_mask'][j]):.2f}")
    if "pointing_game" in stored:
        metrics.append("hit" if bool(stored["pointing_game"][j]) else "miss")
    if metrics:
        lines.append(", ".join(metrics))
    return "\n".join(lines)


def show_results(
    results: Any,
    source: Any,
    indices: int | Sequence[int] | np.ndarray | None = None,
    *,
    names: str | Sequence[str] | None = None,
    input_key: str | None = None,
    **grid_kwargs: Any,
) -> Any:
    """Draws the maps a dataset-scale run stored, beside the images they explain.

    A :func:`show_grid` with a row per example: the image (read from ``source``), the
    ground-truth mask when the run scored against one (``mask_key``), then one column per stored
    map. Each row is labelled with what the store holds for that example: its index and the
    class explained (``"#12, label 3"``: the source's ``target_key`` field, or ``"class"``, the
    predicted class, without one), the model's top class and its probability
    (``"pred 3 (p 0.91)"``) and the per-example metrics (``"EiM 0.62, hit"``: energy in the mask
    and the pointing game). Only the rows drawn are read from the store.

    Args:
      results: the store, :func:`xaijax.pipeline.open_results` of an
        :func:`~xaijax.pipeline.explain_dataset` run (or what that returned); any object with
        ``read(name, index)``, ``names`` and ``manifest`` will do.
      source: the random-access source the store was written from (``source[i]`` -> a dict of
        arrays, or ``source.get_batch(indices)``); its images are ``[H, W]`` or ``[H, W, C]``.
      indices: the examples to draw (an int or up to :data:`MAX_ROWS` = 16 ints), in that order;
        None: the first 4 written.
      names: the stored arrays to draw, one column each; None: every array whose per-example
        shape is a map of the image, ``[H, W]`` or ``[H, W, C]`` (not ``index``, ``target``,
        ``top_*`` or the metrics). The run's single result (``"map"``) is titled with the
        explainer's name.
      input_key: the images' field of ``source``; None: the store's ``input_key``.
      **grid_kwargs: passed to :func:`show_grid` (``method``, ``sign``, ``colorbar``,
        ``panel_size``...); ``titles``, ``row_titles`` and ``references`` replace the defaults
        above (``references={}`` leaves the mask column out).

    Returns:
      The ``matplotlib.figure.Figure``.

    Raises:
      InvalidArgumentError: ``results`` is not a store; ``indices`` not ints, more than 16,
        outside the store or not written yet (its ``index`` is -1 there: an interrupted run);
        a ``name`` the store does not hold; a ``source`` of another length, without the store's
        fields, or whose targets differ from those stored (not the source of the store).
      InputShapeError: the images are not ``[H, W(, C)]``, or a named array (or every stored
        array, when ``names`` is None) is not a map of the images' size.
      MissingDependencyError: matplotlib is not installed.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, os, tempfile, xaijax
      >>> from xaijax import viz
      >>> from xaijax.data import ArraySource
      >>> rng = np.random.default_rng(0)
      >>> src = ArraySource({"image": rng.uniform(size=(8, 6, 6, 3)).astype(np.float32)})
      >>> w = jnp.asarray(rng.normal(size=(6 * 6 * 3, 4)).astype(np.float32))
      >>> out = os.path.join(tempfile.mkdtemp(), "maps")
      >>> res = xaijax.pipeline.explain_dataset(
      ...     xaijax.gradient(lambda p, x: x.reshape(len(x), -1) @ p), w, src, out,
      ...     batch_size=8, mesh=jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("b",)),
      ...     progress=False)
      >>> fig = viz.show_results(res, src, [0, 5])  # 2 rows: image | gradient
      >>> [ax.get_title() for ax in fig.axes[:2]], fig.axes[0].get_ylabel().splitlines()[0]
      (['image', 'gradient'], '#0, class 1')
    """
    manifest, stored_names, n = _check_results(results)
    idx = _check_indices(results, indices, n)
    input_key = input_key if input_key is not None else manifest.get("input_key")
    if not isinstance(input_key, str):
        raise errors.InvalidArgumentError(
            "The store names no `input_key`: say which field of the source holds the images "
            "with `input_key=` (e.g. `input_key='image'`)."
        )
    target_key = manifest.get("target_key")
    mask_key = manifest.get("mask_key") if "references" not in grid_kwargs else None
    fields = [input_key] + [k for k in (target_key, mask_key) if k and k != input_key]
    data = _read_source(source, idx, fields, n)
    images = data[input_key]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
        raise errors.InputShapeError(
            f"show_results draws images, but the source's {input_key!r} is "
            f"{shape_str(images.shape[1:])} per example, not [H, W] or [H, W, C] (C = 1, 3 or "
            "4): videos and texts need their own figures (`show_video`, `show_text`)."
        )
    hw = tuple(int(s) for s in images.shape[1:3])
    channels = int(images.shape[3]) if images.ndim == 4 else 1

    shapes = {m: _row_shape(results, manifest, m, idx[0]) for m in stored_names}
    maps = [m for m in stored_names if m not in NOT_MAPS and _is_map(shapes[m], hw, channels)]
    if names is None:
        if not maps:
            raise errors.InputShapeError(
                f"The store holds no map of the images' size {shape_str(hw)}: its arrays are "
                + ", ".join(f"{m} {shape_str(shapes[m])}" for m in stored_names)
                + " per example. Pass the source the store was written from, or draw scores "
                "that are not maps another way."
            )
        names = maps
    else:
        names = [names] if isinstance(names, str) else list(names)
        for m in names:
            if m not in stored_names:
                raise errors.InvalidArgumentError(
                    f"The store holds no array {m!r}; it holds {list(stored_names)} (maps of "
                    f"the images: {maps})."
                )
            if not _is_map(shapes[m], hw, channels):
                raise errors.InputShapeError(
                    f"{m!r} is {shape_str(shapes[m])} per example, not a map of the images' "
                    f"size {shape_str(hw)} (or {shape_str(hw)[:-1]}, C]): pick among {maps}."
                )
        if not names:
            raise errors.InvalidArgumentError(f"`names` is empty: pick among {maps}.")

    extras = [m for m in NOT_MAPS[1:] if m in stored_names]
    stored = {m: np.asarray(results.read(m, idx)) for m in extras}
    if target_key and "target" in stored:
        source_target = np.asarray(data[target_key]).reshape(len(idx))
        differ = source_target != stored["target"]
        if differ.any():
            raise errors.InvalidArgumentError(
                f"`source` is not the source of this store: examples {idx[differ][:8].tolist()} "
                f"have {target_key!r} {source_target[differ][:8].tolist()} in `source` but "
                f"{stored['target'][differ][:8].tolist()} in the store. Pass the source the "
                "store was written from (the same split, size, seed and order)."
            )
    explainer = manifest.get("explainer")
    result = manifest.get("result")
    columns = {m: np.asarray(results.read(m, idx), np.float32) for m in names}
    kwargs = dict(grid_kwargs)
    kwargs.setdefault("titles", [explainer if m == result and explainer else m for m in names])
    kwargs.setdefault(
        "row_titles", [_row_title(int(i), j, stored, manifest) for j, i in enumerate(idx)]
    )
    if mask_key and tuple(data[mask_key].shape[1:]) == hw:
        kwargs["references"] = {mask_key: data[mask_key].astype(np.float32)}
    return show_grid(images, columns, **kwargs)
