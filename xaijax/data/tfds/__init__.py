"""Real datasets in the xaijax batch format, read with ``tfds.data_source`` (no TensorFlow).

Datasets must be prepared once as array_record files (``tfds build NAME
--file_format=array_record --data_dir=DIR``); nothing here downloads. Supported:
caltech_birds2011, cifar10, imagenet2012 (images), imdb_reviews (text) and ucf101 (video,
readable without TensorFlow thanks to a small documented shim). Tests use
``tfds.testing.mock_data``.

>>> import tensorflow_datasets as tfds
>>> from xaijax.data import tfds as xtfds
>>> with tfds.testing.mock_data(num_examples=3):
...     src = xtfds.source("imdb_reviews", split="test", seq_len=32)
...     len(src), src[0]["tokens"].shape
(3, (32,))
"""

from xaijax.data.tfds._loaders import (
    CROPS,
    DATASETS,
    DEFAULT_IMAGE_SIZE,
    TfdsSource,
    build_vocab,
    from_data_source,
    resize_image,
    source,
    tokenize,
)

__all__ = [
    "CROPS",
    "DATASETS",
    "DEFAULT_IMAGE_SIZE",
    "TfdsSource",
    "build_vocab",
    "from_data_source",
    "resize_image",
    "source",
    "tokenize",
]
