"""Output-path checks shared by the subpackages that write files (training, pipeline): a named
:class:`~xaijax.errors.OutputPathError` before any work, not an ``OSError`` after it.

A core module: it imports only :mod:`xaijax.errors`, never a subpackage.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from xaijax import errors

#: Name prefix of the probe directories (callers that list a directory skip these: another
#: process may be probing it at the same time).
PROBE_PREFIX = ".xaijax-probe-"


def check_writable_dir(path: Any, name: str, what: str) -> str:
    """Checks that the directory ``path`` exists and is writable, or can be created; returns it
    as an absolute path. Nothing is left behind: the directory is not created.

    The test is a real write (a probe directory made and removed in ``path``, or in its deepest
    existing ancestor when ``path`` is missing), so it also holds for root, for whom
    :func:`os.access` says yes on read-only or virtual file systems such as ``/proc``.

    Args:
      path: the directory (``str`` or ``os.PathLike``).
      name: how the caller's argument is called in messages (e.g. ``"directory"``).
      what: what would be written there, for messages (e.g. ``"the checkpoint"``).

    Raises:
      OutputPathError: ``path`` is not a path, is a regular file, lies below a regular file or
        cannot be written.
    """
    if not isinstance(path, str | os.PathLike):
        raise errors.OutputPathError(
            f"`{name}` must be a directory path (str or os.PathLike), got {type(path).__name__}."
        )
    full = os.path.abspath(os.fspath(path))
    if os.path.exists(full) and not os.path.isdir(full):
        raise errors.OutputPathError(
            f"`{name}`={full!r} is an existing file, not a directory, so {what} cannot be "
            "written there: give a directory path (it is created if missing)."
        )
    existing = full
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise errors.OutputPathError(
            f"`{name}`={full!r} cannot be created: {existing!r} is a regular file, not a "
            f"directory, so {what} cannot be written there. Choose a path under a directory."
        )
    try:
        probe = tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=existing)
    except OSError as e:
        verb = "written" if existing == full else "created"
        raise errors.OutputPathError(
            f"`{name}`={full!r} cannot be {verb}: making a directory in {existing!r} failed "
            f"({e.strerror or e}), so {what} would be lost. Choose a writable directory (it is "
            "created if missing) or fix the permissions."
        ) from e
    shutil.rmtree(probe, ignore_errors=True)
    return full
