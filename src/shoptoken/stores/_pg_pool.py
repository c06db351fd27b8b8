"""PostgreSQL connections for trio: a psycopg_pool pool behind a trio semaphore.

psycopg's blocking API runs in worker threads (`trio.to_thread.run_sync`,
bounded by a `trio.CapacityLimiter`). A task first takes one of the pool's
slots from a `trio.Semaphore` of the pool's size, so a task waiting for a
connection waits in trio (cancellable), never blocked inside a thread.

Every connection goes back to the pool rolled back, with the autocommit
setting it came with: a pool passed in by the app may be shared with it.

Before our own pool opens, one connection is made and closed (the probe): a
server that refuses, a database that does not exist or a bad password fail
the first use at once with the server's own words, instead of the pool
retrying in the background until ``timeout`` ends in a bare ``PoolTimeout``.
The probe runs in a thread that a cancellation abandons (Ctrl-C is honoured
at once), bounded by libpq's ``connect_timeout``.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import trio

from .._errors import PersistenceError

try:
    import psycopg
    import psycopg.conninfo
    import psycopg.errors
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    msg = "PostgresStore needs the 'postgres' extra: pip install 'shoptoken[postgres]'"
    raise ImportError(msg) from exc

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._keys import TokenKey

# psycopg and ConnectionPool are re-exported: importing them through this
# module gives the friendly ImportError above when the extra is missing.
__all__ = [
    "DRIVER_ERRORS",
    "ConnectionPool",
    "Lease",
    "PgConnections",
    "cause",
    "dsn_connect_timeout",
    "failure",
    "psycopg",
]

T = TypeVar("T")

_UNDEFINED_TABLE: Final = "42P01"
_UNDEFINED_COLUMN: Final = "42703"
#: What the driver raises: its own errors, and for a str it cannot encode
#: (lone surrogates) Python's.
DRIVER_ERRORS: Final = (psycopg.Error, UnicodeError)
# Pooled connections tried before giving up on finding a live one.
_STALE_TRIES: Final = 3
#: libpq reads connect_timeout in whole seconds and treats 1 as 2.
_LIBPQ_MIN_CONNECT: Final = 2
#: Seconds a new connection may take by default: a down server is reported in
#: seconds, not after the pool's ``busy_timeout``.
_CONNECT_TIMEOUT: Final = 5.0
# What the probe allows beyond libpq's connect_timeout before giving up itself
# (libpq's own timeout normally ends it first, with its message).
_PROBE_MARGIN: Final = 1.0


def failure(what: str, key: TokenKey | None, exc: Exception) -> PersistenceError:
    """Our error for a driver error, without the server's DETAIL (it may quote a row)."""
    sqlstate = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    primary = exc.diag.message_primary if isinstance(exc, psycopg.Error) and sqlstate else None
    text = primary or str(exc).split("\n", 1)[0]
    code = f" [{sqlstate}]" if sqlstate else ""
    hint = {
        _UNDEFINED_TABLE: (
            " (create the table: PostgresStore.create_schema() or the SQL in docs/stores.md)"
        ),
        _UNDEFINED_COLUMN: (
            " (a table of an earlier shoptoken: upgrade it with PostgresStore.create_schema()"
            " or the ALTER TABLE in docs/stores.md)"
        ),
    }.get(sqlstate or "", "")
    return PersistenceError(
        f"PostgreSQL {what} failed: {type(exc).__name__}{code}: {text}{hint}", key=key
    )


def cause(exc: Exception) -> Exception | None:
    """``exc`` to chain, or None when its DETAIL (a row's values: tokens) would be printed."""
    return None if isinstance(exc, psycopg.Error) and exc.diag.message_detail else exc


def dsn_connect_timeout(conninfo: str) -> float:
    """The DSN's own ``connect_timeout``, else `_CONNECT_TIMEOUT`."""
    try:
        text = psycopg.conninfo.conninfo_to_dict(conninfo).get("connect_timeout")
    except psycopg.Error:
        return _CONNECT_TIMEOUT  # malformed: the connection attempt reports it
    try:
        seconds = float(str(text))
    except ValueError:
        return _CONNECT_TIMEOUT
    return seconds if seconds > 0 else _CONNECT_TIMEOUT


def _connect_and_close(conninfo: str, connect_timeout: int) -> None:
    """One connection made and closed at once (worker thread; nothing left open if abandoned)."""
    psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout).close()


@attrs.frozen
class Lease:
    """A connection taken from the pool, and the autocommit setting to give it back with."""

    conn: psycopg.Connection[Any]
    autocommit: bool


@attrs.define(eq=False)
class PgConnections:
    """The pool, its slots and worker threads, as one `PostgresStore` uses them.

    Attributes:
        pool: The psycopg_pool pool.
        owned: Whether we created the pool (and so open and close it).
        timeout: Seconds to wait for a connection.
        size: How many connections the store uses at most.
        connect_timeout: Seconds a new connection may take (libpq's
            ``connect_timeout``, in whole seconds, at least 2).
    """

    pool: ConnectionPool[Any]
    owned: bool
    timeout: float
    size: int
    connect_timeout: float = 5.0
    slots: trio.Semaphore = attrs.field(init=False)
    limiter: trio.CapacityLimiter = attrs.field(init=False)
    opened: bool = attrs.field(init=False, default=False)
    closed: bool = attrs.field(init=False, default=False)
    _open_lock: trio.Lock = attrs.field(init=False, factory=trio.Lock)

    def __attrs_post_init__(self) -> None:
        self.slots = trio.Semaphore(self.size)
        # At most one thread per slot holder: the limiter never makes one wait.
        self.limiter = trio.CapacityLimiter(self.size)

    @classmethod
    def create(
        cls, conninfo: str, *, size: int, timeout: float, connect_timeout: float
    ) -> PgConnections:
        """A pool of our own on ``conninfo``, opened on first use."""
        seconds = max(_LIBPQ_MIN_CONNECT, math.ceil(connect_timeout))
        pool: ConnectionPool[Any] = ConnectionPool(
            conninfo,
            kwargs={"connect_timeout": seconds},
            min_size=1,
            max_size=size,
            open=False,
            name="shoptoken",
            timeout=timeout,
        )
        return cls(pool, owned=True, timeout=timeout, size=size, connect_timeout=seconds)

    async def thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread (waits for it even when cancelled)."""
        return await trio.to_thread.run_sync(fn, limiter=self.limiter)

    async def ensure_open(self) -> None:
        """Start our own pool's workers, once; connection errors surface on use.

        Raises:
            RuntimeError: The store was closed.
        """
        if self.closed:
            msg = "this PostgresStore is closed"
            raise RuntimeError(msg)
        if self.opened or not self.owned:
            return
        async with self._open_lock:
            if not self.opened:
                await self._probe()
                await trio.to_thread.run_sync(functools.partial(self.pool.open, wait=False))
                self.opened = True

    async def _probe(self) -> None:
        """Connect once and close (abandoned on cancellation); the server's refusal if any.

        Raises:
            PersistenceError: The connection failed or took longer than ``connect_timeout``.
        """
        conninfo = self.pool.conninfo
        if not isinstance(conninfo, str):  # pragma: no cover - our own pools take a str
            return
        probe = functools.partial(_connect_and_close, conninfo, math.ceil(self.connect_timeout))
        with trio.move_on_after(self.connect_timeout + _PROBE_MARGIN):
            try:
                await trio.to_thread.run_sync(probe, abandon_on_cancel=True)
            except DRIVER_ERRORS as exc:
                raise failure("connection", None, exc) from cause(exc)
            return
        raise PersistenceError(
            f"PostgreSQL connection failed: no answer within {self.connect_timeout} s"
            " (connect_timeout)"
        )

    async def acquire_slot(self, deadline: float) -> bool:
        """Take a slot by ``deadline`` (trio time); False if none came free."""
        try:
            self.slots.acquire_nowait()
        except trio.WouldBlock:
            with trio.move_on_at(deadline):
                await self.slots.acquire()
                return True
            return False
        return True

    def getconn(self, *, autocommit: bool = False, check: bool = False) -> Lease:
        """A connection in the given commit mode (worker thread, holding a slot).

        Autocommit serves single statements (one round trip, no BEGIN and
        COMMIT); a ``locked()`` block needs a transaction. With ``check``, a
        connection the server dropped (restart, failover) is found by an
        empty round trip and replaced.
        """
        for _ in range(_STALE_TRIES):
            conn = self.pool.getconn(timeout=self.timeout)
            original = conn.autocommit
            try:
                if original != autocommit:  # a flag: no round trip
                    conn.autocommit = autocommit
                if check:
                    ConnectionPool.check_connection(conn)
            except psycopg.OperationalError:
                self.pool.putconn(conn)  # broken: the pool replaces it
                continue
            except BaseException:
                self.pool.putconn(conn)
                raise
            return Lease(conn, original)
        return self.getconn(autocommit=autocommit)  # all stale so far: give up checking

    def putconn(self, lease: Lease) -> None:
        """Roll back what is open and return the connection as it came (worker thread)."""
        conn = lease.conn
        try:
            if not conn.closed:
                conn.rollback()  # a no-op after a commit, and in autocommit
                if conn.autocommit != lease.autocommit:
                    conn.autocommit = lease.autocommit
        except psycopg.Error:
            pass  # the pool replaces a broken connection
        finally:
            self.pool.putconn(conn)

    def _committed(self, fn: Callable[[psycopg.Connection[Any]], T], *, autocommit: bool) -> T:
        for attempt in range(1, _STALE_TRIES + 1):
            lease = self.getconn(autocommit=autocommit)
            try:
                result = fn(lease.conn)
                lease.conn.commit()  # a no-op in autocommit
            except psycopg.OperationalError:
                # A connection the server dropped while it sat in the pool:
                # run again on a fresh one (every statement run this way is
                # idempotent). Not checking each checkout saves a round trip.
                if attempt == _STALE_TRIES or not lease.conn.broken:
                    raise
                continue
            finally:
                self.putconn(lease)
            return result
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def transaction(
        self,
        what: str,
        key: TokenKey | None,
        fn: Callable[[psycopg.Connection[Any]], T],
        *,
        single_statement: bool = False,
    ) -> T:
        """``fn(conn)`` in one committed transaction on a pooled connection.

        With ``single_statement``, ``fn`` runs one statement, in autocommit
        (atomic by itself), sparing the round trips of BEGIN and COMMIT.

        Raises:
            PersistenceError: No connection within ``timeout``, or the database failed.
        """
        await self.ensure_open()
        if not await self.acquire_slot(trio.current_time() + self.timeout):
            raise PersistenceError(
                f"PostgreSQL {what} failed: no connection free within {self.timeout} s", key=key
            )
        try:
            return await self.thread(
                functools.partial(self._committed, fn, autocommit=single_statement)
            )
        except DRIVER_ERRORS as exc:
            raise failure(what, key, exc) from cause(exc)
        finally:
            self.slots.release()

    async def aclose(self) -> None:
        """Close our own pool (a pool passed in stays open)."""
        if self.closed:
            return
        self.closed = True
        if self.owned and self.opened:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.pool.close)
