"""Data for xaijax: a procedural benchmark with ground truth, real datasets, and a batcher.

* :mod:`xaijax.data.synthetic`: deterministic images, videos and texts with masks, parts,
  attributes, keypoints and key spans (a *synthetic benchmark*).
* :mod:`xaijax.data.tfds`: caltech_birds2011, cifar10, imagenet2012, imdb_reviews and ucf101
  through ``tfds.data_source`` in the same batch format.
* :func:`batches`: a plain NumPy batcher over any random-access source (both of the above are
  also readable by ``grain.MapDataset.source``).

The explanation methods never import this package; it stands beside them, like ``models``
and ``training``.

>>> from xaijax.data import batches, synthetic
>>> src = synthetic.SyntheticSource("texts", num=10)
>>> [b["tokens"].shape for b in batches(src, batch_size=4)]
[(4, 64), (4, 64), (2, 64)]
"""

from xaijax.data import synthetic, tfds
from xaijax.data._batching import ArraySource, batches

__all__ = ["ArraySource", "batches", "synthetic", "tfds"]
