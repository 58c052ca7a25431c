"""Dataset-scale explanation: a source explained into a resumable zarr v3 store.

:func:`explain_dataset` lays each batch over every device of every process (one jitted program,
no collective), reads the data ahead on a host thread, writes the results through tensorstore
and records every batch once its writes are durable, so an interrupted run resumes with nothing
lost or done twice. :func:`open_results` reads a store lazily, by example index.

>>> # res = xaijax.pipeline.explain_dataset(xaijax.gradient(model), params, source, "out",
>>> #                                       batch_size=64, input_key="image")
>>> # res.read("map", slice(0, 8)).shape
"""

from xaijax.pipeline._run import explain_dataset
from xaijax.pipeline._store import Results, open_results

__all__ = ["Results", "explain_dataset", "open_results"]
