"""Token sequences whose label is set by one planted key n-gram (synthetic benchmark)."""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from xaijax.data.synthetic import _common as c
from xaijax.data.synthetic._config import TextConfig, key_pool_size

PAD_ID, UNK_ID = 0, 1
_FIRST_TOKEN = 2


@functools.lru_cache(maxsize=32)
def _keys(num_classes: int, ngram_size: int, vocab_size: int, class_seed: int) -> np.ndarray:
    rng = np.random.default_rng([class_seed, 0x7E47])
    n = ngram_size
    pool_size = key_pool_size(n, num_classes)
    pool = rng.choice(np.arange(_FIRST_TOKEN, vocab_size), size=pool_size, replace=False)
    keys: list[tuple[int, ...]] = []
    while len(keys) < num_classes:
        key = tuple(int(t) for t in rng.permutation(pool)[:n])
        if key not in keys:
            keys.append(key)
    return np.array(keys, np.int32)


def key_ngrams(config: TextConfig | None = None) -> np.ndarray:
    """The key n-gram of every class.

    Keys are ordered tuples of distinct tokens drawn from a small shared pool (``2n`` tokens or
    a few more), so classes share tokens and only the *ordered* n-gram identifies the class;
    the pool tokens also occur as ordinary distractors.

    Args:
      config: a :class:`TextConfig`, None for the defaults.

    Returns:
      int32 ``[C, n]``.

    >>> from xaijax.data import synthetic
    >>> synthetic.key_ngrams().shape
    (10, 3)
    """
    config = c.check_config(config, TextConfig, "key_ngrams")
    keys = _keys(config.num_classes, config.ngram_size, config.vocab_size, config.class_seed)
    return keys.copy()


def sample_params(rng: np.random.Generator, cfg: TextConfig, split: str, n: int):
    """Draws ``n`` sequences: uniform distractors, the class key planted at a uniform position,
    and every accidental occurrence of any key elsewhere re-drawn away."""
    del split
    L, V, k = cfg.seq_len, cfg.vocab_size, cfg.ngram_size
    keys = _keys(cfg.num_classes, cfg.ngram_size, cfg.vocab_size, cfg.class_seed)
    label = c.balanced_labels(rng, cfg.num_classes, n)
    tokens = rng.integers(_FIRST_TOKEN, V, size=(n, L)).astype(np.int32)
    start = rng.integers(0, L - k + 1, size=n)
    rows = np.arange(n)
    tokens[rows[:, None], start[:, None] + np.arange(k)[None]] = keys[label]
    while True:
        win = sliding_window_view(tokens, k, axis=1)  # [n, L - k + 1, k]
        match = (win[:, :, None, :] == keys[None, None]).all(axis=-1).any(axis=-1)
        match[rows, start] = False
        i, j = np.nonzero(match)
        if i.size == 0:
            break
        # Change a token of the accidental window that lies outside the planted span.
        pos = np.where(j < start[i], j, j + k - 1)
        tokens[i, pos] = rng.integers(_FIRST_TOKEN, V, size=i.size)
    return {"tokens": tokens, "label": label, "start": start.astype(np.int32)}


def render(params: dict[str, np.ndarray], cfg: TextConfig) -> dict[str, np.ndarray]:
    """Adds the span ground truth to sampled sequences (see :func:`make_texts`)."""
    start = params["start"]
    end = start + np.int32(cfg.ngram_size)
    pos = np.arange(cfg.seq_len, dtype=np.int32)[None]
    return {
        "tokens": params["tokens"],
        "label": params["label"],
        "span": np.stack([start, end], axis=-1).astype(np.int32),
        "span_mask": (pos >= start[:, None]) & (pos < end[:, None]),
    }
