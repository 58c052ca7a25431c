"""Public generators and the random-access source of the synthetic benchmark."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xaijax import errors
from xaijax.data.synthetic import _common as c
from xaijax.data.synthetic import _images, _texts, _videos
from xaijax.data.synthetic._config import ImageConfig, TextConfig, VideoConfig

_KINDS = {
    "images": (ImageConfig, _images.sample_params, _images.render),
    "videos": (VideoConfig, _videos.sample_params, _videos.render),
    "texts": (TextConfig, _texts.sample_params, _texts.render),
}


def _make(kind: str, func: str, num, seed, split, config) -> dict[str, np.ndarray]:
    cls, sample, render = _KINDS[kind]
    config = c.check_config(config, cls, func)
    num, seed, split = c.check_num(num), c.check_seed(seed), c.check_split(split)
    return c.generate(kind, num, seed, split, config, sample, render)


def make_images(
    num: int, *, seed: int = 0, split: str = "train", config: ImageConfig | None = None
) -> dict[str, np.ndarray]:
    """Renders ``num`` part-based object images with pixel-exact ground truth.

    Synthetic benchmark (xaijax papers note, section 8): one object per image, made of the
    parts :data:`PART_NAMES` whose shape, colour, texture and size follow the class row of
    :func:`class_attribute_matrix`; random position, scale and rotation on a textured background
    with distractor shapes. Deterministic: the same ``(seed, split, config)`` gives
    byte-identical arrays, example ``i`` does not depend on ``num``, and splits use disjoint
    seeds. Labels come in blocks of ``C`` consecutive examples holding every class once.

    Args:
      num: number of images ``N`` (> 0).
      seed: non-negative seed.
      split: ``"train"``, ``"validation"`` or ``"test"``; the spurious background cue (if
        enabled in ``config``) is only planted in ``"train"``.
      config: an :class:`ImageConfig`; None for the defaults (64x64, 10 classes).

    Returns:
      A dict of NumPy arrays (``H = W = config.image_size``, ``P = 5`` parts, ``A = 95``):

      * ``image`` float32 ``[N, H, W, 3]`` in [0, 1]; ``label`` int32 ``[N]``;
      * ``object_mask`` bool ``[N, H, W]``; ``part_masks`` bool ``[N, P, H, W]`` (visible
        pixels of each part; they partition ``object_mask``); ``part_present`` bool ``[N, P]``;
      * ``box`` float32 ``[N, 4]``: tight box ``(y0, x0, y1, x1)`` of ``object_mask`` in pixels,
        ``y1``/``x1`` exclusive;
      * ``attributes`` float32 ``[N, A]`` 0/1: the class attributes of the parts present;
      * ``keypoints`` float32 ``[N, P, 2]``: ``(y, x)`` of a pixel centre inside each part (the
        pixel holding the part centre when visible), ``(-1, -1)`` for absent parts;
      * ``background_pattern`` int32 ``[N]``: which of the ``C`` background patterns was drawn
        (equal to ``label`` where the spurious cue was planted); ``scale`` float32 ``[N]``;
      * with ``config.scale_choices``: ``size_class`` int32 ``[N]``, the index of the object's
        scale in ``scale_choices``;
      * with ``config.two_objects``: ``label2`` int32 ``[N]`` (!= ``label``), ``object_mask2``
        bool ``[N, H, W]`` (disjoint from ``object_mask``) and ``box2`` float32 ``[N, 4]``; part
        masks, keypoints and attributes describe the first object.

    Raises:
      InvalidArgumentError: ``num`` <= 0, a negative seed, an unknown split or a bad config.

    >>> from xaijax.data import synthetic
    >>> d = synthetic.make_images(4, seed=0)
    >>> d["image"].shape, d["part_masks"].shape, d["label"].dtype
    ((4, 64, 64, 3), (4, 5, 64, 64), dtype('int32'))
    """
    return _make("images", "make_images", num, seed, split, config)


def make_videos(
    num: int, *, seed: int = 0, split: str = "train", config: VideoConfig | None = None
) -> dict[str, np.ndarray]:
    """Renders ``num`` clips in which the label is the motion of one object.

    Synthetic benchmark: an elongated body with a differently coloured head moves according to
    :data:`MOTION_NAMES` ``[label]`` over a static textured background with static distractors.
    Colours, size, start pose and position are random and independent of the label.
    Deterministic like :func:`make_images`.

    Args:
      num: number of clips ``N`` (> 0).
      seed: non-negative seed.
      split: ``"train"``, ``"validation"`` or ``"test"``.
      config: a :class:`VideoConfig`; None for the defaults (16 frames of 32x32, 10 classes).

    Returns:
      ``video`` float32 ``[N, T, H, W, 3]`` in [0, 1]; ``label`` int32 ``[N]``;
      ``object_mask`` bool ``[N, T, H, W]``; ``box`` float32 ``[N, T, 4]`` (tight box per frame);
      ``keypoints`` float32 ``[N, T, 2]``: ``(y, x)`` of the head centre in every frame.

    >>> from xaijax.data import synthetic
    >>> synthetic.make_videos(2)["video"].shape
    (2, 16, 32, 32, 3)
    """
    return _make("videos", "make_videos", num, seed, split, config)


def make_texts(
    num: int, *, seed: int = 0, split: str = "train", config: TextConfig | None = None
) -> dict[str, np.ndarray]:
    """Draws ``num`` token sequences whose label is set by a planted key n-gram.

    Synthetic benchmark (text variant): tokens are uniform on ``[2, V)`` except for the key
    n-gram of the class (:func:`key_ngrams`) at a uniform position; no key of any class occurs
    anywhere else, so the span is the only evidence for the label.

    Args:
      num: number of sequences ``N`` (> 0).
      seed: non-negative seed.
      split: ``"train"``, ``"validation"`` or ``"test"``.
      config: a :class:`TextConfig`; None for the defaults (length 64, vocabulary 200, 10
        classes, trigrams).

    Returns:
      ``tokens`` int32 ``[N, L]``; ``label`` int32 ``[N]``; ``span`` int32 ``[N, 2]``
      ``(start, end)`` with ``end`` exclusive; ``span_mask`` bool ``[N, L]``.

    >>> from xaijax.data import synthetic
    >>> t = synthetic.make_texts(3)
    >>> t["tokens"].shape, t["span"].shape
    ((3, 64), (3, 2))
    """
    return _make("texts", "make_texts", num, seed, split, config)


class SyntheticSource:
    """Random-access view of a synthetic split: ``len(src)`` and ``src[i]`` -> one example.

    ``src[i]`` equals ``make_<kind>(num, seed=seed, split=split, config=config)`` at ``i``, key
    for key and byte for byte, but only renders what is asked: the (cheap) parameters of the
    256-example chunk holding ``i`` are sampled once and cached, and the example is rendered on
    its own. It follows grain's ``RandomAccessDataSource`` protocol (also the batched
    ``_getitems``), so ``grain.MapDataset.source(src).batch(8)`` works, and
    :func:`xaijax.data.batches` renders whole batches at once through :meth:`get_batch`.

    Args:
      kind: ``"images"``, ``"videos"`` or ``"texts"``.
      split: ``"train"``, ``"validation"`` or ``"test"``.
      num: number of examples (> 0).
      seed: non-negative seed.
      config: the matching config (:class:`ImageConfig`, :class:`VideoConfig` or
        :class:`TextConfig`); None for its defaults.

    >>> from xaijax.data import synthetic
    >>> src = synthetic.SyntheticSource("texts", split="test", num=100, seed=1)
    >>> len(src), src[7]["tokens"].shape
    (100, (64,))
    """

    def __init__(
        self,
        kind: str,
        split: str = "train",
        num: int = 1000,
        seed: int = 0,
        config=None,
    ):
        if kind not in _KINDS:
            raise errors.InvalidArgumentError(
                f"`kind` must be one of {list(_KINDS)}, got {kind!r}."
            )
        cls, self._sample, self._render = _KINDS[kind]
        self.kind = kind
        self.config = c.check_config(config, cls, "SyntheticSource")
        self.num = c.check_num(num)
        self.seed = c.check_seed(seed)
        self.split = c.check_split(split)
        self._chunks: dict[int, c.Params] = {}

    def __repr__(self) -> str:
        return (
            f"SyntheticSource({self.kind!r}, split={self.split!r}, num={self.num}, "
            f"seed={self.seed}, config={self.config!r})"
        )

    def __len__(self) -> int:
        return self.num

    def _params(self, chunk: int) -> c.Params:
        params = self._chunks.get(chunk)
        if params is None:
            rng = c.chunk_rng(self.seed, self.split, self.kind, chunk)
            params = self._sample(rng, self.config, self.split, c.CHUNK_SIZE)
            self._chunks[chunk] = params
        return params

    def _index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"SyntheticSource indices must be integers, got {type(i).__name__}.")
        j = int(i) + (self.num if i < 0 else 0)
        if not 0 <= j < self.num:
            raise IndexError(f"index {int(i)} out of range for a source of {self.num} examples")
        return j

    def get_batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Renders examples ``indices`` at once: a dict of arrays with a leading batch axis."""
        idx = np.array([self._index(i) for i in indices], np.int64)
        if idx.size == 0:
            raise errors.InvalidArgumentError("`indices` must not be empty.")
        chunk, offset = np.divmod(idx, c.CHUNK_SIZE)
        params = c.concat(
            [c.take(self._params(int(k)), offset[chunk == k]) for k in np.unique(chunk)]
        )
        order = np.concatenate([np.flatnonzero(chunk == k) for k in np.unique(chunk)])
        out = self._render(params, self.config)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return {k: v[inverse] for k, v in out.items()}

    def __getitem__(self, i) -> dict[str, np.ndarray]:
        batch = self.get_batch([i])
        return {k: v[0] for k, v in batch.items()}

    def _getitems(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        """grain's batched read: a list of per-example dicts."""
        batch = self.get_batch(list(indices))
        return [{k: v[j] for k, v in batch.items()} for j in range(len(indices))]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_chunks"] = {}  # parameters are re-sampled on demand in other processes
        return state
