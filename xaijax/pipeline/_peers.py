"""The processes of one multi-process run: barriers, small exchanges and error propagation over
the key-value store of JAX's coordination service (the one ``jax.distributed.initialize`` starts).

Without it a process that fails (a bad example in its rows, a full disk) leaves the others
waiting at the next barrier until the coordination service times out minutes later, with a
Gloo or barrier error that names nothing. Here the failing process publishes its error, and
every other process raises :class:`~xaijax.errors.PeerProcessError` naming it at its next batch
or barrier. One process (the usual single-host case) uses none of this.
"""

from __future__ import annotations

import hashlib
import itertools
import time

import jax

from xaijax import errors

_RUNS = itertools.count()  # the same sequence on every process: SPMD programs call in step


def _client():
    from jax._src import distributed  # the coordination service's client (as orbax uses it)

    return distributed.global_state.client


class Peers:
    """The run's processes. ``run`` names the run (the store's path); calls are numbered so
    that two runs into the same store in one cluster never share keys."""

    def __init__(self, run: str, poll_s: float = 0.02):
        self.pid, self.count = jax.process_index(), jax.process_count()
        self.client = _client() if self.count > 1 else None
        digest = hashlib.sha256(run.encode()).hexdigest()[:16]
        self.prefix = f"xaijax/pipeline/{digest}/{next(_RUNS)}"
        self.poll_s = poll_s

    def fail(self, exc: BaseException) -> None:
        """Publishes this process's error for the others (the first error wins)."""
        if self.client is None or isinstance(exc, errors.PeerProcessError):
            return
        text = f"process {self.pid}: {type(exc).__name__}: {exc}"
        try:
            self.client.key_value_set(f"{self.prefix}/error", text[:2000])
        except Exception:  # noqa: BLE001 - another process's error is already there
            pass

    def check(self) -> None:
        """Raises :class:`PeerProcessError` when another process has failed."""
        if self.client is None:
            return
        try:
            text = self.client.key_value_try_get(f"{self.prefix}/error")
        except Exception:  # noqa: BLE001 - NOT_FOUND: no process has failed
            return
        raise errors.PeerProcessError(
            f"Another process of this run failed ({text}), so this one stopped too. Every batch "
            "recorded so far is kept: fix the cause and rerun the same command on every "
            "process to resume."
        )

    def gather(self, name: str, value: str) -> list[str]:
        """Every process's ``value`` (in process order), once all have given theirs; a barrier
        that raises :class:`PeerProcessError` instead of waiting for a process that failed."""
        if self.client is None:
            return [value]
        key = f"{self.prefix}/{name}/"
        self.client.key_value_set(f"{key}{self.pid:06d}", value)
        while True:
            self.check()
            entries = self.client.key_value_dir_get(key)
            if len(entries) >= self.count:
                return [v for _, v in sorted(entries)]
            time.sleep(self.poll_s)

    def barrier(self, name: str) -> None:
        self.gather(name, "")
