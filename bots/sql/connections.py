"""A per-process cache of idle connections to bots' own databases.

Opening a PostgreSQL connection costs several milliseconds, so a connection
is handed back after a successful statement and reused by the next one for
the same bot. Nothing is opened at import time: a cache filled before a fork
(gunicorn ``--preload``, the Celery prefork parent) is left alone in the
child, which opens its own.
"""

import os
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


@dataclass
class _Idle(Generic[C]):
    connection: C
    since: float


class ConnectionCache(Generic[C]):
    """Idle connections by key; a connection is used by one thread at a time.

    A taken connection belongs to its caller until it gives it back (or
    closes it); at most ``idle_max`` wait per key and ``idle_total_max`` in
    all (the least recently used go first: a catalogue of many bots must
    not hold a connection per bot in every process), none longer than
    ``idle_seconds``.
    """

    def __init__(
        self,
        *,
        idle_max: int = 2,
        idle_total_max: int = 4,
        idle_seconds: float = 300.0,
    ) -> None:
        self._idle_max = idle_max
        self._idle_total_max = idle_total_max
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle: dict[Hashable, list[_Idle[C]]] = {}
        self._pid = os.getpid()
        self._generation = 0
        # Connections inherited through a fork: closing them in the child
        # would end the parent's sessions, so they are only kept referenced.
        self._inherited: list[C] = []

    def _after_fork(self) -> None:
        if self._pid != os.getpid():
            for entries in self._idle.values():
                self._inherited.extend(entry.connection for entry in entries)
            self._idle = {}
            self._pid = os.getpid()

    def _expired_pop(self, now: float) -> list[C]:
        expired: list[C] = []
        for key, entries in list(self._idle.items()):
            fresh = [e for e in entries if now - e.since < self._idle_seconds]
            expired += [e.connection for e in entries if e not in fresh]
            if fresh:
                self._idle[key] = fresh
            else:
                del self._idle[key]

        return expired

    def take(self, key: Hashable) -> tuple[C | None, int]:
        """Return an idle connection for ``key`` (or None) and a generation."""
        with self._lock:
            self._after_fork()
            expired = self._expired_pop(time.monotonic())
            entries = self._idle.get(key)
            entry = entries.pop() if entries else None
            generation = self._generation
        for connection in expired:
            connection.close()

        return (entry.connection if entry else None), generation

    def give(self, key: Hashable, connection: C, generation: int) -> None:
        """Keep a healthy connection for the next statement, or close it."""
        with self._lock:
            entries = self._idle.setdefault(key, [])
            keep = (
                self._pid == os.getpid()
                and generation == self._generation
                and len(entries) < self._idle_max
            )
            if keep:
                entries.append(_Idle(connection, time.monotonic()))
            surplus = self._surplus_pop()
        if not keep:
            connection.close()
        for extra in surplus:
            extra.close()

    def _surplus_pop(self) -> list[C]:
        idle = sorted(
            (
                (entry.since, key, entry)
                for key, group in self._idle.items()
                for entry in group
            ),
            key=lambda item: item[0],
        )
        surplus = idle[: max(len(idle) - self._idle_total_max, 0)]
        for _since, key, entry in surplus:
            self._idle[key].remove(entry)
            if not self._idle[key]:
                del self._idle[key]

        return [entry.connection for _since, _key, entry in surplus]

    def close_key(self, key: Hashable) -> None:
        """Close the idle connections of one key."""
        with self._lock:
            self._after_fork()
            entries = self._idle.pop(key, [])
        for entry in entries:
            entry.connection.close()

    def close_all(self) -> None:
        """Close every idle connection; those in use are closed when given back."""
        with self._lock:
            self._after_fork()
            entries = [entry for group in self._idle.values() for entry in group]
            self._idle = {}
            self._generation += 1
        for entry in entries:
            entry.connection.close()
