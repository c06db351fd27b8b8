"""SQLite connections shared by worker threads, and waiting out a busy database from trio.

The standard library's blocking ``sqlite3`` runs in worker threads
(`trio.to_thread.run_sync`, bounded by a `trio.CapacityLimiter`). A worker
takes an idle connection (or opens one), uses it, and gives it back, so a
connection is never used by two threads at once (they are opened with
``check_same_thread=False`` for that hand-over only).

Waiting for a lock never happens inside SQLite: every connection has
``busy_timeout`` 0, and an attempt that meets a busy database is retried from
trio after a short sleep, until a deadline. No worker thread sits blocked
while another process holds the lock, a cancelled wait ends at once, and a
thread only ever runs short statements.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
from typing import TYPE_CHECKING, Final, TypeVar

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

# Retry delays while another connection holds the lock: SQLite's own busy
# handler sleeps 1, 2, 5, 10, 15, 20, 25, ... ms; this is about that curve.
_FIRST_DELAY: Final = 0.001
_MAX_DELAY: Final = 0.025
# SQLITE_BUSY and SQLITE_LOCKED, with their extended codes (low byte).
_BUSY_CODES: Final = frozenset({5, 6})


class Busy(enum.Enum):
    """The database is locked by another connection: try again later."""

    BUSY = enum.auto()


BUSY: Final = Busy.BUSY


def is_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" errors."""
    return (
        isinstance(exc, sqlite3.OperationalError)
        and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _BUSY_CODES
    )


def finish(conn: sqlite3.Connection, *, commit: bool) -> None:
    """Commit or roll back the open transaction, if any (in a worker thread)."""
    if conn.in_transaction:
        conn.execute("COMMIT" if commit else "ROLLBACK")


def in_transaction(conn: sqlite3.Connection, *, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(conn)`` between ``BEGIN IMMEDIATE`` and ``COMMIT``, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        finish(conn, commit=False)
        raise
    return result


@attrs.define(eq=False)
class SQLitePool:
    """Connections to one database file for up to ``size`` worker threads."""

    path: str
    size: int
    limiter: trio.CapacityLimiter = attrs.field(init=False)
    closed: bool = attrs.field(init=False, default=False)
    _idle: list[sqlite3.Connection] = attrs.field(init=False, factory=list)
    _idle_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self.limiter = trio.CapacityLimiter(self.size)

    async def thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread (waits for it even when cancelled)."""
        return await trio.to_thread.run_sync(fn, limiter=self.limiter)

    def take(self) -> sqlite3.Connection | Busy:
        """An idle connection or a new one; `BUSY` if opening one met a lock (worker thread)."""
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            # A save must be durable when it returns: sync the WAL on every commit.
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException as exc:
            conn.close()
            # Even a pragma reads the schema, which another connection may be changing.
            if is_busy(exc):
                return BUSY
            raise
        return conn

    def give(self, conn: sqlite3.Connection) -> None:
        """Roll back what is open and keep the connection for reuse (worker thread)."""
        try:
            finish(conn, commit=False)
        except sqlite3.Error:
            conn.close()
            return
        with self._idle_lock:
            if not self.closed and len(self._idle) < self.size:
                self._idle.append(conn)
                return
        conn.close()

    def attempt(self, fn: Callable[[sqlite3.Connection], T]) -> T | Busy:
        """``fn`` on a pooled connection, or `BUSY` if it met a lock (worker thread)."""
        conn = self.take()
        if conn is BUSY:
            return BUSY
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                return BUSY
            raise
        finally:
            self.give(conn)

    async def retry(self, attempt: Callable[[], T | Busy], deadline: float) -> T | Busy:
        """Run ``attempt`` in a thread until it is not `BUSY` or ``deadline`` (trio time) passes."""
        delay = _FIRST_DELAY
        while True:
            result = await self.thread(attempt)
            if result is not BUSY:
                return result
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return BUSY
            await trio.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_DELAY)

    def idle(self) -> list[sqlite3.Connection]:
        """The idle connections (a copy, for tests and statistics)."""
        with self._idle_lock:
            return list(self._idle)

    async def aclose(self) -> None:
        """Close the idle connections; busy ones are closed when given back."""
        self.closed = True
        with self._idle_lock:
            idle, self._idle = self._idle, []
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_close_all, idle)


def _close_all(conns: list[sqlite3.Connection]) -> None:
    for conn in conns:
        conn.close()
