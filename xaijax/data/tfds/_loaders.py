"""Real datasets through ``tfds.data_source`` (array_record, random access, no TensorFlow)."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import types
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from xaijax import errors
from xaijax._validation import check_choice, check_positive_int

#: Supported datasets and the kind of examples they give.
DATASETS = {
    "caltech_birds2011": "image",
    "cifar10": "image",
    "imagenet2012": "image",
    "imdb_reviews": "text",
    "ucf101": "video",
}
#: Default ``image_size`` per dataset.
DEFAULT_IMAGE_SIZE = {"caltech_birds2011": 224, "cifar10": 32, "imagenet2012": 224, "ucf101": 112}
CROPS = ("center", "squash")
PAD_ID, UNK_ID = 0, 1
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_TAG = re.compile(r"<[^>]*>")


# ---------------------------------------------------------------------------------------------
# Example transforms (pure NumPy/PIL; documented methods).
# ---------------------------------------------------------------------------------------------


def _crop_geometry(h: int, w: int, size: int, crop: str):
    """Scale factors and crop offsets mapping an ``h x w`` image to ``size x size``."""
    if crop == "squash":
        return size / h, size / w, size, size, 0, 0
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    return nh / h, nw / w, nh, nw, (nh - size) // 2, (nw - size) // 2


def resize_image(image: np.ndarray, size: int, *, crop: str = "center") -> np.ndarray:
    """Resizes an image to ``size x size`` float32 in [0, 1].

    Method: ``crop="center"`` scales the image so that its *shorter* side is ``size`` (Pillow
    bilinear, which low-pass filters when shrinking), then takes the central ``size x size``
    crop (the usual ImageNet evaluation transform); ``crop="squash"`` resizes both sides to
    ``size`` and ignores the aspect ratio. uint8 input is divided by 255; a single channel is
    repeated to RGB.

    Args:
      image: ``[h, w, c]`` uint8 (or float in [0, 1]) with ``c`` in {1, 3}.
      size: output side (> 0).
      crop: ``"center"`` or ``"squash"``.

    Returns:
      float32 ``[size, size, 3]``.

    >>> import numpy as np
    >>> resize_image(np.zeros((48, 64, 3), np.uint8), 32).shape
    (32, 32, 3)
    """
    from PIL import Image

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.dtype != np.uint8:
        image = np.clip(np.round(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    _, _, nh, nw, oy, ox = _crop_geometry(h, w, size, crop)
    pil = Image.fromarray(image[..., :3]).resize((nw, nh), Image.BILINEAR)
    out = np.asarray(pil, np.float32)[oy : oy + size, ox : ox + size] / np.float32(255.0)
    return np.ascontiguousarray(out)


def _resize_mask(mask: np.ndarray, h: int, w: int, size: int, crop: str) -> np.ndarray:
    """Nearest-neighbour version of :func:`resize_image` for a mask over an ``h x w`` image."""
    from PIL import Image

    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    _, _, nh, nw, oy, ox = _crop_geometry(h, w, size, crop)
    pil = Image.fromarray(mask.astype(np.uint8)).resize((nw, nh), Image.NEAREST)
    return np.asarray(pil)[oy : oy + size, ox : ox + size]


def _box(bbox, h: int, w: int, size: int, crop: str) -> np.ndarray:
    """tfds ``BBoxFeature`` (normalised ymin, xmin, ymax, xmax) -> pixel ``(y0, x0, y1, x1)`` in
    the resized/cropped frame, clipped to the image."""
    b = np.asarray(bbox, np.float64)
    sy, sx, _, _, oy, ox = _crop_geometry(h, w, size, crop)
    ys = np.sort(b[[0, 2]]) * h * sy - oy
    xs = np.sort(b[[1, 3]]) * w * sx - ox
    box = np.array([ys[0], xs[0], ys[1], xs[1]])
    return np.clip(box, 0.0, size).astype(np.float32)


def tokenize(
    text: str | bytes,
    *,
    seq_len: int = 256,
    vocab_size: int = 20000,
    vocab: Mapping[str, int] | None = None,
) -> tuple[np.ndarray, int]:
    """Turns a text into ``seq_len`` token ids with a simple, documented tokenizer.

    Method: decode UTF-8, lower-case, drop HTML tags (IMDB reviews contain ``<br />``), split
    into words matching ``[a-z0-9]+('[a-z]+)?``. Without ``vocab``, a word's id is
    ``2 + crc32(word) % (vocab_size - 2)`` (the hashing trick: no vocabulary file, stable
    across runs and machines); with ``vocab`` (e.g. from :func:`build_vocab`) it is
    ``vocab[word]``, or ``1`` (unknown) for other words. Sequences are truncated to their first
    ``seq_len`` words and padded with ``0``.

    Returns:
      ``(ids, length)``: int32 ``[seq_len]`` and the number of non-padding ids.

    >>> ids, n = tokenize("A good film.<br />Good!", seq_len=6, vocab={"good": 2, "film": 3})
    >>> ids.tolist(), n
    ([1, 2, 3, 2, 0, 0], 4)
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    words = _WORD.findall(_TAG.sub(" ", str(text).lower()))[:seq_len]
    if vocab is None:
        ids = [2 + zlib.crc32(w.encode("utf-8")) % (vocab_size - 2) for w in words]
    else:
        ids = [vocab.get(w, UNK_ID) for w in words]
    out = np.zeros(seq_len, np.int32)
    out[: len(ids)] = ids
    return out, len(ids)


def build_vocab(texts: Iterable[str | bytes], vocab_size: int) -> dict[str, int]:
    """The ``vocab_size - 2`` most frequent words of ``texts`` (ties alphabetical) -> ids 2, 3...

    Words are split as in :func:`tokenize`; ids 0 (padding) and 1 (unknown) are reserved.

    >>> build_vocab(["b a b", "c b a"], vocab_size=4)
    {'b': 2, 'a': 3}
    """
    counts: Counter[str] = Counter()
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        counts.update(_WORD.findall(_TAG.sub(" ", str(text).lower())))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(vocab_size - 2, 0)]
    return {w: 2 + i for i, (w, _) in enumerate(ranked)}


def _frames(video) -> np.ndarray:
    # Stored clips decode to a list of frames, mocked ones to one array.
    return np.stack(video) if isinstance(video, list | tuple) else np.asarray(video)


def _image_example(ex, size: int, crop: str) -> dict[str, np.ndarray]:
    image = np.asarray(ex["image"])
    out = {"image": resize_image(image, size, crop=crop), "label": np.int32(ex["label"])}
    h, w = image.shape[:2]
    if "segmentation_mask" in ex:  # caltech_birds2011
        mask = np.asarray(ex["segmentation_mask"])
        if mask.ndim == 3:
            mask = mask[..., 0]
        if mask.shape != (h, w):  # only mocked data disagree: bring the mask onto the image
            from PIL import Image

            mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((w, h), Image.NEAREST))
        out["object_mask"] = _resize_mask(mask, h, w, size, crop) >= 128
    if "bbox" in ex:
        out["box"] = _box(ex["bbox"], h, w, size, crop)
    return out


def _video_example(ex, size: int, crop: str, num_frames: int) -> dict[str, np.ndarray]:
    frames = _frames(ex["video"])
    pick = np.round(np.linspace(0, len(frames) - 1, num_frames)).astype(np.int64)
    video = np.stack([resize_image(frames[i], size, crop=crop) for i in pick])
    return {"video": video, "label": np.int32(ex["label"])}


def _text_example(ex, seq_len: int, vocab_size: int, vocab) -> dict[str, np.ndarray]:
    tokens, length = tokenize(ex["text"], seq_len=seq_len, vocab_size=vocab_size, vocab=vocab)
    return {"tokens": tokens, "label": np.int32(ex["label"]), "length": np.int32(length)}


class TfdsSource:
    """A random-access source of mapped examples over a tfds data source.

    Built by :func:`source` (or :func:`from_data_source`); ``len(src)``, ``src[i]`` -> dict
    of NumPy arrays in the batch format of :mod:`xaijax.data.synthetic`, ``get_batch`` for
    :func:`xaijax.data.batches` and ``_getitems`` for grain.
    """

    def __init__(self, data_source, transform: Callable, description: str):
        self._data = data_source
        self._transform = transform
        self._description = description

    def __repr__(self) -> str:
        return f"TfdsSource({self._description}, {len(self)} examples)"

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, i) -> dict[str, np.ndarray]:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"TfdsSource indices must be integers, got {type(i).__name__}.")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {int(i)} out of range for a source of {n} examples")
        return self._transform(self._data[int(i) % n])

    def get_batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        examples = [self[i] for i in indices]
        return {k: np.stack([e[k] for e in examples]) for k in examples[0]}

    def _getitems(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        return [self[i] for i in indices]


def _transform_for(kind, *, image_size, crop, num_frames, seq_len, vocab_size, vocab, default):
    if kind not in ("image", "video", "text"):
        raise errors.InvalidArgumentError(
            f"`kind` must be 'image', 'video' or 'text', got {kind!r}."
        )
    check_choice(crop, "crop", CROPS)
    size = check_positive_int(default if image_size is None else image_size, "image_size")
    if kind == "image":
        return functools.partial(_image_example, size=size, crop=crop)
    if kind == "video":
        frames = check_positive_int(num_frames, "num_frames")
        return functools.partial(_video_example, size=size, crop=crop, num_frames=frames)
    seq_len = check_positive_int(seq_len, "seq_len")
    vocab_size = check_positive_int(vocab_size, "vocab_size")
    if vocab_size < 3:
        raise errors.InvalidArgumentError(
            f"`vocab_size` must be >= 3 (0 = padding, 1 = unknown), got {vocab_size}."
        )
    if vocab is not None:
        if not isinstance(vocab, Mapping):
            raise errors.InvalidArgumentError(
                f"`vocab` must be a dict word -> id (see build_vocab), got {type(vocab).__name__}."
            )
        bad = [i for i in vocab.values() if not 2 <= i < vocab_size]
        if bad:
            raise errors.InvalidArgumentError(
                f"`vocab` ids must lie in [2, vocab_size={vocab_size}), got e.g. {bad[0]}."
            )
    return functools.partial(_text_example, seq_len=seq_len, vocab_size=vocab_size, vocab=vocab)


@functools.cache
def _allow_video_features_without_tensorflow() -> None:
    """Lets tfds read video datasets (ucf101) without TensorFlow.

    ``tfds.features.Video.__init__`` calls ``tf.dtypes.as_dtype(dtype)`` (tfds 4.9.10), so any
    builder with a video feature fails to construct without TensorFlow, although reading its
    array_record files only needs the NumPy decoders of the underlying image sequence. When
    TensorFlow is not installed, this points the module's ``tf`` at a stand-in whose
    ``dtypes.as_dtype`` is ``np.dtype``; with TensorFlow it does nothing. It also imports the
    ucf101 builder module, which ``import tensorflow_datasets`` fails to register without TF.
    """
    if importlib.util.find_spec("tensorflow") is None:
        from tensorflow_datasets.core.features import video_feature

        video_feature.tf = types.SimpleNamespace(
            dtypes=types.SimpleNamespace(as_dtype=np.dtype), uint8=np.uint8, uint16=np.uint16
        )
    import tensorflow_datasets.video.ucf101  # noqa: F401  (registers the builder)


def from_data_source(
    data_source,
    kind: str,
    *,
    image_size: int | None = None,
    crop: str = "center",
    num_frames: int = 16,
    seq_len: int = 256,
    vocab_size: int = 20000,
    vocab: Mapping[str, int] | None = None,
) -> TfdsSource:
    """Maps any random-access source of tfds-style examples to the xaijax batch format.

    ``kind="image"`` reads ``image``/``label`` (and ``segmentation_mask``, ``bbox`` when
    present), ``"video"`` reads ``video``/``label`` and ``"text"`` reads ``text``/``label``;
    the options are those of :func:`source` (``image_size`` defaults to 224).
    """
    transform = _transform_for(
        kind,
        image_size=image_size,
        crop=crop,
        num_frames=num_frames,
        seq_len=seq_len,
        vocab_size=vocab_size,
        vocab=vocab,
        default=224,
    )
    return TfdsSource(data_source, transform, f"{kind} source")


def source(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    crop: str = "center",
    num_frames: int = 16,
    seq_len: int = 256,
    vocab_size: int = 20000,
    vocab: Mapping[str, int] | None = None,
) -> TfdsSource:
    """Opens a prepared real dataset as a random-access source in the xaijax batch format.

    Reads through ``tfds.data_source`` (array_record files, no TensorFlow, never downloads).
    Prepare a dataset once elsewhere, e.g. ``tfds build cifar10 --file_format=array_record
    --data_dir=DIR`` (ImageNet needs its manual download). Examples come out as:

    * images (cifar10, imagenet2012, caltech_birds2011): ``image`` float32
      ``[image_size, image_size, 3]`` in [0, 1] (:func:`resize_image`: shorter side to
      ``image_size``, bilinear, centre crop; or ``crop="squash"``), ``label`` int32;
      caltech_birds2011 adds ``object_mask`` bool (segmentation >= 128, nearest-neighbour
      resize) and ``box`` float32 ``(y0, x0, y1, x1)`` pixels in the output frame;
    * video (ucf101): ``video`` float32 ``[num_frames, S, S, 3]``: ``num_frames`` frames at
      ``round(linspace(0, F - 1, num_frames))`` (uniform in time; repeated if the clip is
      shorter), each resized like an image; ``label`` int32;
    * text (imdb_reviews): ``tokens`` int32 ``[seq_len]`` (:func:`tokenize`: hashing trick
      over ``vocab_size`` ids, or ``vocab``), ``label`` int32, ``length`` int32.

    Args:
      name: one of :data:`DATASETS`, optionally with a config/version (``"ucf101/ucf101_1"``).
      split: a tfds split string (``"train"``, ``"test"``, ``"train[:10%]"``...).
      data_dir: where the prepared dataset lives (must exist); None for tfds' default.
      image_size: output side for image and video datasets; None for the dataset's default
        (:data:`DEFAULT_IMAGE_SIZE`).
      crop: ``"center"`` or ``"squash"``.
      num_frames: frames per clip (video).
      seq_len: tokens per text (text).
      vocab_size: ids of the hashing tokenizer, or the bound for ``vocab`` ids (text).
      vocab: optional word -> id mapping (text).

    Returns:
      A :class:`TfdsSource`. Options that do not apply to the dataset's kind are ignored.

    Raises:
      InvalidArgumentError: an unknown dataset name, a missing ``data_dir``, a dataset that is
        not prepared there, or a bad option.

    >>> import tensorflow_datasets as tfds
    >>> from xaijax.data import tfds as xtfds
    >>> with tfds.testing.mock_data(num_examples=2):
    ...     src = xtfds.source("cifar10", split="train", image_size=16)
    ...     src[0]["image"].shape
    (16, 16, 3)
    """
    if not isinstance(name, str):
        raise errors.InvalidArgumentError(f"`name` must be a string, got {type(name).__name__}.")
    base = name.split("/")[0].split(":")[0]
    if base not in DATASETS:
        raise errors.InvalidArgumentError(
            f"Unknown dataset {name!r}: `name` must be one of {sorted(DATASETS)} "
            "(optionally with '/config' or ':version'). For other tfds datasets, open them with "
            "tfds.data_source and wrap them with from_data_source."
        )
    if data_dir is not None and not os.path.isdir(os.fspath(data_dir)):
        raise errors.InvalidArgumentError(
            f"`data_dir` {os.fspath(data_dir)!r} does not exist: pass the directory where the "
            f"dataset was prepared (e.g. `tfds build {base} --file_format=array_record "
            "--data_dir=DIR`), or None for tfds' default."
        )
    kind = DATASETS[base]
    transform = _transform_for(
        kind,
        image_size=image_size,
        crop=crop,
        num_frames=num_frames,
        seq_len=seq_len,
        vocab_size=vocab_size,
        vocab=vocab,
        default=DEFAULT_IMAGE_SIZE.get(base, 224),
    )
    import tensorflow_datasets as tfds

    if kind == "video":
        _allow_video_features_without_tensorflow()
    try:
        data = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # noqa: BLE001  (tfds raises many types; keep the cause chained)
        raise errors.InvalidArgumentError(
            f"Could not open {name!r} split {split!r} in data_dir={data_dir!r} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Prepare it once as "
            f"array_record: `tfds build {base} --file_format=array_record --data_dir=DIR`; "
            "xaijax never downloads data."
        ) from e
    return TfdsSource(data, transform, f"{name!r}, split={split!r}")
