"""The ``xaijax`` console script: ``xaijax explain ...`` and ``xaijax demo ...``.

Each command is its own module (``python -m xaijax.cli.explain``, ``python -m
xaijax.cli.demo``); this only dispatches to their ``main``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = {
    "explain": "explain a dataset into a resumable store (xaijax.pipeline)",
    "demo": "train a zoo model on the synthetic benchmark, compare every method, write a report",
}

USAGE = "usage: xaijax {explain,demo} [options]   (xaijax COMMAND --help for each)\n\n" + "\n".join(
    f"  {name:<8} {what}" for name, what in COMMANDS.items()
)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``xaijax COMMAND ...``; returns the command's exit status (2: no such command)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not argv or argv[0] not in COMMANDS:
        got = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(
            f"xaijax: error: {got}; use one of: {', '.join(COMMANDS)} (xaijax --help)",
            file=sys.stderr,
        )
        return 2
    command, rest = argv[0], argv[1:]
    if command == "explain":
        from xaijax.cli import explain

        return explain.main(rest)
    from xaijax.cli import demo

    return demo.main(rest)


if __name__ == "__main__":
    sys.exit(main())
