"""Command-line entry points: the ``xaijax`` console script (``xaijax.cli.main``) with
``xaijax explain`` (``python -m xaijax.cli.explain``: a dataset explained into a resumable store)
and ``xaijax demo`` (``python -m xaijax.cli.demo``: the main job, ``make demo``)."""
