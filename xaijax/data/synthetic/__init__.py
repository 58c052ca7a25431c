"""Procedural, fully deterministic benchmark data with ground truth (images, videos, texts).

Everything here is a *synthetic benchmark*: numbers measured on it must be labelled so and
never presented as reproductions of results on real datasets. Generation is vectorised NumPy
over chunks of 256 examples, each seeded by ``(seed, split, kind, chunk)``; the same arguments
give byte-identical arrays, and :class:`SyntheticSource` gives random access to the very same
examples (readable by grain and by :func:`xaijax.data.batches`).

* :func:`make_images`: part-based objects whose attributes follow a class-attribute matrix,
  with object/part masks, boxes, keypoints and attribute vectors; options for object scale,
  distractors, a train-only spurious background cue, missing parts and two objects;
  ``scale_choices`` (discrete object sizes, output ``size_class``) and :func:`needle_config`
  make the "needle" benchmark of multi-scale localisation (papers.md 2(g)).
* :func:`make_videos`: the class is the motion of an object; per-frame masks.
* :func:`make_texts`: the class is set by a planted key n-gram; the span is the ground truth.

>>> from xaijax.data import synthetic
>>> cfg = synthetic.ImageConfig(image_size=32, num_classes=4, scale_range=(0.8, 1.0))
>>> d = synthetic.make_images(8, seed=0, split="test", config=cfg)
>>> d["image"].shape, sorted(set(d["label"].tolist()))
((8, 32, 32, 3), [0, 1, 2, 3])
"""

from xaijax.data.synthetic._api import SyntheticSource, make_images, make_texts, make_videos
from xaijax.data.synthetic._common import (
    CHUNK_SIZE,
    COLOR_NAMES,
    PALETTE,
    SHAPE_NAMES,
    SPLITS,
)
from xaijax.data.synthetic._config import ImageConfig, TextConfig, VideoConfig, needle_config
from xaijax.data.synthetic._images import (
    ATTRIBUTE_NAMES,
    PART_NAMES,
    SIZE_NAMES,
    TEXTURE_NAMES,
    class_attribute_matrix,
)
from xaijax.data.synthetic._texts import key_ngrams
from xaijax.data.synthetic._videos import MOTION_NAMES

__all__ = [
    "ATTRIBUTE_NAMES",
    "CHUNK_SIZE",
    "COLOR_NAMES",
    "ImageConfig",
    "MOTION_NAMES",
    "PALETTE",
    "PART_NAMES",
    "SHAPE_NAMES",
    "SIZE_NAMES",
    "SPLITS",
    "SyntheticSource",
    "TEXTURE_NAMES",
    "TextConfig",
    "VideoConfig",
    "class_attribute_matrix",
    "key_ngrams",
    "make_images",
    "make_texts",
    "make_videos",
    "needle_config",
]
