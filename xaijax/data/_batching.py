"""A plain NumPy batcher over any random-access source (synthetic, tfds, or arrays in memory)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from xaijax import errors


class ArraySource:
    """Random-access source over a dict of arrays that share their first axis.

    ``ArraySource(make_images(1000))[i]`` is example ``i`` of every array, so in-memory data go
    through the same :func:`batches` (and grain) path as generated or real data.

    Args:
      arrays: a mapping from names to arrays ``[N, ...]`` (same ``N`` for all).

    >>> import numpy as np
    >>> src = ArraySource({"x": np.zeros((5, 2)), "y": np.arange(5)})
    >>> len(src), int(src[3]["y"])
    (5, 3)
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        if not isinstance(arrays, Mapping) or not arrays:
            raise errors.InvalidArgumentError(
                "`arrays` must be a non-empty dict of arrays with a shared first axis, got "
                f"{type(arrays).__name__}."
            )
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        sizes = {k: (v.shape[0] if v.ndim else None) for k, v in self._arrays.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise errors.InvalidArgumentError(
                f"All arrays must share their first (example) axis; got sizes {sizes}."
            )
        self._len = next(iter(sizes.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i) -> dict[str, np.ndarray]:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"ArraySource indices must be integers, got {type(i).__name__}.")
        if not -self._len <= i < self._len:
            raise IndexError(f"index {int(i)} out of range for a source of {self._len} examples")
        return {k: v[i] for k, v in self._arrays.items()}

    def get_batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Examples ``indices`` stacked along a new first axis."""
        idx = np.asarray(indices, np.int64)
        return {k: v[idx] for k, v in self._arrays.items()}

    def _getitems(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        batch = self.get_batch(indices)
        return [{k: v[j] for k, v in batch.items()} for j in range(len(indices))]


def _stack(examples: list):
    first = examples[0]
    if isinstance(first, Mapping):
        return {k: _stack([e[k] for e in examples]) for k in first}
    return np.stack([np.asarray(e) for e in examples])


def batches(
    source,
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    drop_remainder: bool = False,
    num_epochs: int | None = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields batches (dicts of stacked NumPy arrays) from a random-access source.

    Each epoch visits every index once, in order or in a permutation drawn from
    ``(shuffle_seed, epoch)``, so the order is reproducible and differs between epochs.
    Batches never straddle epochs; the last one of an epoch is smaller unless
    ``drop_remainder``. Sources with a ``get_batch(indices)`` method (synthetic, tfds and
    array sources) produce a whole batch at once; any other ``__len__``/``__getitem__`` source
    is read example by example and stacked.

    Args:
      source: a random-access source (``len(source)``, ``source[i]`` -> dict of arrays) or a
        dict of arrays with a shared first axis.
      batch_size: examples per batch (> 0).
      shuffle_seed: None for the natural order, else a non-negative seed.
      drop_remainder: drop the last, smaller batch of every epoch.
      num_epochs: passes over the data (> 0), or None to repeat forever.

    Yields:
      ``{name: array [B, ...]}`` with ``B = batch_size`` (or fewer at an epoch's end).

    Raises:
      InvalidArgumentError: a bad ``batch_size``, ``shuffle_seed`` or ``num_epochs``, an empty
        source, or ``drop_remainder`` with fewer examples than one batch.

    >>> import numpy as np
    >>> from xaijax.data import batches
    >>> [b["y"].tolist() for b in batches({"y": np.arange(5)}, 2)]
    [[0, 1], [2, 3], [4]]
    """
    if isinstance(source, Mapping):
        source = ArraySource(source)
    if not hasattr(source, "__len__") or not hasattr(source, "__getitem__"):
        raise errors.InvalidArgumentError(
            "`source` must support len() and integer indexing (a random-access source), or be "
            f"a dict of arrays; got {type(source).__name__}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise errors.InvalidArgumentError(
            f"`batch_size` must be a positive integer, got {batch_size!r}."
        )
    if shuffle_seed is not None and (
        isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int) or shuffle_seed < 0
    ):
        raise errors.InvalidArgumentError(
            f"`shuffle_seed` must be None or a non-negative integer, got {shuffle_seed!r}."
        )
    if num_epochs is not None and (
        isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs <= 0
    ):
        raise errors.InvalidArgumentError(
            f"`num_epochs` must be a positive integer or None (forever), got {num_epochs!r}."
        )
    n = len(source)
    if n == 0:
        raise errors.InvalidArgumentError("`source` is empty: there is nothing to batch.")
    if drop_remainder and batch_size > n:
        raise errors.InvalidArgumentError(
            f"`batch_size`={batch_size} exceeds the {n} examples of `source` and "
            "`drop_remainder=True` would drop them all: lower `batch_size`."
        )
    return _iterate(source, n, batch_size, shuffle_seed, drop_remainder, num_epochs)


def _iterate(source, n, batch_size, shuffle_seed, drop_remainder, num_epochs):
    get_batch = getattr(source, "get_batch", None)
    epoch = 0
    while num_epochs is None or epoch < num_epochs:
        if shuffle_seed is None:
            order = np.arange(n)
        else:
            order = np.random.default_rng([shuffle_seed, epoch]).permutation(n)
        stop = n - n % batch_size if drop_remainder else n
        for start in range(0, stop, batch_size):
            idx = [int(i) for i in order[start : start + batch_size]]
            if get_batch is not None:
                yield get_batch(idx)
            else:
                yield _stack([source[i] for i in idx])
        epoch += 1
