"""Command-line entry points: ``python -m xaijax.cli.demo`` (the main job, ``make demo``)."""
