"""SQLiteStore: tokens in one SQLite file, with a lock that holds across processes.

Statements run in worker threads on pooled connections (`SQLitePool`), and
a locked database is waited for from trio, never inside a thread. Within
one process, writers first queue on a `trio.Lock` (first come, first
served, no polling among ourselves); across processes, SQLite's write lock
(``BEGIN IMMEDIATE``) decides.
"""

from __future__ import annotations

import enum
import functools
import os
import sqlite3
import time
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import attrs
import trio

from .._errors import LockTimeout, PersistenceError
from .._keys import normalize_shop
from . import _codec
from ._schema import DEFAULT_TABLE, SQLiteStatements, sqlite_table
from ._sqlite_pool import BUSY, Busy, SQLitePool, finish, in_transaction, is_busy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from datetime import datetime
    from types import TracebackType

    from .._keys import TokenKey
    from .._token import Token

T = TypeVar("T")


def _fspath(path: str | os.PathLike[str]) -> str:
    return os.fspath(path)


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        msg = f"{attribute.alias} must be a positive number, not {value!r}"
        raise ValueError(msg)


def _row(key: TokenKey, token: Token) -> tuple[object, ...]:
    return (*_codec.encode(key, token, _codec.to_micros), time.time_ns() // 1000)


# What the driver raises: its own errors, and for values it cannot store (an
# int beyond 64 bits, a str with lone surrogates) Python's.
_DRIVER_ERRORS: Final = (sqlite3.Error, OverflowError, UnicodeError)


def _failure(what: str, key: TokenKey | None, exc: Exception) -> PersistenceError:
    # These messages name tables, constraints and types, never values.
    return PersistenceError(f"SQLite {what} failed: {type(exc).__name__}: {exc}", key=key)


def _begin_and_read(
    conn: sqlite3.Connection, *, select: str, key: str
) -> tuple[object, ...] | Busy | None:
    """Take the write lock (or report `BUSY`) and read the key's row inside it."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            return BUSY
        raise
    row: tuple[object, ...] | None = conn.execute(select, (key,)).fetchone()
    return row


def _fetch_one(conn: sqlite3.Connection, *, sql: str, key: str) -> tuple[object, ...] | None:
    row: tuple[object, ...] | None = conn.execute(sql, (key,)).fetchone()
    return row


def _fetch_many(
    conn: sqlite3.Connection, *, sql: str, keys: Sequence[str]
) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for i in range(0, len(keys), _codec.LOAD_BATCH):
        chunk = keys[i : i + _codec.LOAD_BATCH]
        rows += conn.execute(f"{sql}({', '.join('?' * len(chunk))})", chunk).fetchall()
    return rows


def _fetch_keys(conn: sqlite3.Connection, *, sql: str, after: str) -> list[object]:
    return [row[0] for row in conn.execute(sql, (after, _codec.LIST_BATCH))]


def _execute(conn: sqlite3.Connection, *, sql: str, args: tuple[object, ...]) -> None:
    conn.execute(sql, args)


def _columns(conn: sqlite3.Connection, name: str) -> set[str]:
    """The table's column names (none when there is no such table)."""
    return {row[0] for row in conn.execute("SELECT name FROM pragma_table_info(?)", (name,))}


def _fetch_table(conn: sqlite3.Connection, *, name: str) -> _Table:
    columns = _columns(conn, name)
    if not columns:
        return _Table.MISSING
    return _Table.CURRENT if _codec.OBTAINED_AT in columns else _Table.BEFORE_UPGRADE


def _init(conn: sqlite3.Connection, *, name: str, sql: SQLiteStatements) -> None:
    # WAL: readers never wait for the writer, and a commit is one append.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(sql.create)
    if _codec.OBTAINED_AT not in _columns(conn, name):
        # A table of an earlier version: one ALTER, atomic, and safe to race
        # (a process that loses the race finds the column there).
        try:
            conn.execute(sql.upgrade)
        except sqlite3.OperationalError:
            if _codec.OBTAINED_AT not in _columns(conn, name):
                raise


class _Table(enum.Enum):
    """What a read found of the store's table."""

    MISSING = "missing"
    BEFORE_UPGRADE = "before upgrade"
    CURRENT = "current"


@attrs.define(eq=False)
class _SQLiteLocked:
    """What `SQLiteStore.locked` yields: the re-read token and a save inside the lock."""

    token: Token | None
    _write: Callable[[Token], Awaitable[None]]

    async def save(self, token: Token) -> None:
        """Write ``token`` inside the lock's transaction (committed when the block exits)."""
        await self._write(token)
        self.token = token


@attrs.define(eq=False)
class SQLiteStore:
    """Tokens in a SQLite file (WAL mode), shared safely by the processes of one host.

    One row per key in table ``shoptoken_tokens`` (`schema_sql` shows it),
    created on the first write: a load or listing of a file without it finds
    nothing and writes nothing. Datetimes are stored as integer microseconds
    since the epoch, so they come back exactly. Every save is one atomic
    upsert of the whole pair, durable (``synchronous=FULL``) when it returns.

    ``locked(key)`` takes SQLite's write lock (``BEGIN IMMEDIATE``), which
    holds across processes but covers the whole file: while one refresh holds
    it, other writers (of any key, in any process) wait; readers never do.
    That suits one host with up to some hundreds of shops; `PostgresStore`
    locks per key, across nodes. Inside a ``locked`` block, write through the
    handle's ``save``, not the store's ``save_tokens`` or ``delete_tokens``.

    Use it as an async context manager, or call `aclose` when done.

    Args:
        path: The database file (created if missing).
        max_threads: Worker threads, and pooled connections, at most.
        busy_timeout: Seconds a save, delete or load waits while another
            writer holds the database before `PersistenceError`.
        table: Table name (a plain identifier).
    """

    _path: str = attrs.field(converter=_fspath, alias="path")
    _max_threads: int = attrs.field(
        default=4, kw_only=True, alias="max_threads", validator=_positive
    )
    _busy_timeout: float = attrs.field(
        default=30.0, kw_only=True, alias="busy_timeout", validator=_positive
    )
    _table: str = attrs.field(default=DEFAULT_TABLE, kw_only=True, alias="table")
    _sql: SQLiteStatements = attrs.field(init=False, repr=False)
    _pool: SQLitePool = attrs.field(init=False, repr=False)
    _writer: trio.Lock = attrs.field(init=False, factory=trio.Lock, repr=False)
    _ready_lock: trio.Lock = attrs.field(init=False, factory=trio.Lock, repr=False)
    _ready: bool = attrs.field(init=False, default=False, repr=False)
    # The table as a read saw it (writes still make sure of WAL mode and the
    # newest column first).
    _found: _Table = attrs.field(init=False, default=_Table.MISSING, repr=False)

    def __attrs_post_init__(self) -> None:
        if self._path in {"", ":memory:"} or self._path.startswith("file:"):
            msg = "SQLiteStore needs a file path (use MemoryStore for tokens in memory)"
            raise ValueError(msg)
        self._sql = SQLiteStatements.build(self._table)
        self._pool = SQLitePool(self._path, self._max_threads)

    @staticmethod
    def schema_sql(table: str = DEFAULT_TABLE) -> str:
        """The ``CREATE TABLE IF NOT EXISTS`` statement of the store's table."""
        return sqlite_table(table)

    # -- the TokenCallback --------------------------------------------------------

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Return the stored token, or None.

        Raises:
            PersistenceError: The database failed or the row is corrupt.
        """
        table = await self._table_state()
        if table is _Table.MISSING:
            return None  # nothing stored yet; reading never creates the table
        # Reading never upgrades the table either: an old one reads without obtained_at.
        select = self._sql.select if table is _Table.CURRENT else self._sql.select_before_upgrade
        read = functools.partial(_fetch_one, sql=select, key=str(key))
        row = await self._run("load", key, read)
        return None if row is None else _codec.decode(key, row, _codec.from_micros)

    async def load_many(self, keys: Sequence[TokenKey]) -> dict[TokenKey, Token]:
        """Return the stored token of each of ``keys`` that has one (a query per 500 keys).

        Raises:
            PersistenceError: The database failed or a row is corrupt.
        """
        table = await self._table_state() if keys else _Table.MISSING
        if table is _Table.MISSING:
            await trio.lowlevel.checkpoint()
            return {}
        asked = {str(key): key for key in keys}
        # As load_tokens: a table not yet upgraded reads without obtained_at.
        select = (
            self._sql.select_many
            if table is _Table.CURRENT
            else self._sql.select_many_before_upgrade
        )
        read = functools.partial(_fetch_many, sql=select, keys=list(asked))
        rows = await self._run("load", None, read)
        return _codec.decode_many(asked, rows, _codec.from_micros)

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Store the whole pair atomically, replacing any previous one (durable on return).

        Raises:
            PersistenceError: The database failed or stayed locked for ``busy_timeout``.
        """
        write = functools.partial(_execute, sql=self._sql.upsert, args=_row(key, token))
        await self._write("save", key, write)

    async def delete_tokens(self, key: TokenKey) -> None:
        """Delete the pair; no error if absent.

        Raises:
            PersistenceError: The database failed or stayed locked for ``busy_timeout``.
        """
        await self._write(
            "delete", key, functools.partial(_execute, sql=self._sql.delete, args=(str(key),))
        )

    async def delete_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        """Delete every pair of ``shop`` in one statement; return the keys deleted.

        Args:
            shop: The shop's domain.
            before: When given, only pairs obtained before it (or of unknown
                ``obtained_at``) are deleted.

        Raises:
            InvalidShopDomain: Bad shop domain.
            PersistenceError: The database failed or stayed locked for ``busy_timeout``.
        """
        deleted: list[TokenKey] = []
        domain = normalize_shop(shop)
        args: tuple[object, ...]
        if before is None:
            sql, args = self._sql.delete_shop, (domain,)
        else:
            sql, args = self._sql.delete_shop_before, (domain, _codec.to_micros(before))

        def delete(conn: sqlite3.Connection) -> None:
            deleted[:] = [_codec.parse_key(row[0]) for row in conn.execute(sql, args)]

        await self._write("delete", None, delete)
        return deleted

    async def list_keys(self) -> AsyncIterator[TokenKey]:
        """Yield every stored key, a batch per query (keys saved meanwhile may appear).

        Raises:
            PersistenceError: The database failed or a stored key is invalid.
        """
        if await self._table_state() is _Table.MISSING:
            return  # nothing stored yet; reading never creates the table

        async def page(after: str) -> list[object]:
            fetch = functools.partial(_fetch_keys, sql=self._sql.page, after=after)
            return await self._run("listing", None, fetch)

        # aclosing: a caller that stops early closes the pages too, not the GC.
        async with aclosing(_codec.keys_in_pages(page)) as keys:
            async for key in keys:
                yield key

    @asynccontextmanager
    async def locked(
        self,
        key: TokenKey,
        *,
        timeout: float,  # noqa: ASYNC109 - SupportsLocked passes the timeout as data
    ) -> AsyncIterator[_SQLiteLocked]:
        """Take the database's write lock, across processes, and re-read ``key``.

        The handle's ``save`` writes inside the transaction, committed when
        the block exits normally (even if cancelled meanwhile: the pair may
        be in use) and rolled back when it raises.

        Raises:
            LockTimeout: The lock was not granted within ``timeout`` seconds.
            PersistenceError: The database failed, the row is corrupt, or the
                commit failed.
        """
        await self._ensure_ready()
        deadline = trio.current_time() + timeout
        try:
            self._writer.acquire_nowait()
        except trio.WouldBlock:
            with trio.move_on_at(deadline) as scope:
                await self._writer.acquire()
            if scope.cancelled_caught:
                raise LockTimeout(
                    f"lock on {key} not granted within {timeout} s", key=key
                ) from None
        try:
            conn = await self._retry_or_fail("lock", key, self._pool.take, deadline)
            if conn is BUSY:
                raise LockTimeout(f"lock on {key} not granted within {timeout} s", key=key)
            try:
                begin = functools.partial(
                    _begin_and_read, conn, select=self._sql.select, key=str(key)
                )
                row = await self._retry_or_fail("lock", key, begin, deadline)
                if row is BUSY:
                    raise LockTimeout(f"lock on {key} not granted within {timeout} s", key=key)
                token = None if row is None else _codec.decode(key, row, _codec.from_micros)
                yield _SQLiteLocked(token, functools.partial(self._save_locked, conn, key))
                with trio.CancelScope(shield=True):
                    try:
                        await self._pool.thread(functools.partial(finish, conn, commit=True))
                    except _DRIVER_ERRORS as exc:
                        raise _failure("commit", key, exc) from exc
            finally:
                # Rolls back whatever is still open (an exception, a cancellation).
                with trio.CancelScope(shield=True):
                    await self._pool.thread(functools.partial(self._pool.give, conn))
        finally:
            self._writer.release()

    async def create_schema(self) -> None:
        """Create the table if it does not exist (first use does it too).

        Raises:
            PersistenceError: The database failed.
        """
        await self._ensure_ready()

    # -- lifetime -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the pooled connections; the store cannot be used afterwards."""
        await self._pool.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- machinery ----------------------------------------------------------------

    async def _retry_or_fail(
        self, what: str, key: TokenKey | None, attempt: Callable[[], T | Busy], deadline: float
    ) -> T | Busy:
        try:
            return await self._pool.retry(attempt, deadline)
        except _DRIVER_ERRORS as exc:
            raise _failure(what, key, exc) from exc

    async def _run(
        self,
        what: str,
        key: TokenKey | None,
        fn: Callable[[sqlite3.Connection], T],
        deadline: float | None = None,
    ) -> T:
        """``fn`` on a pooled connection, retried while the database is locked."""
        if deadline is None:
            deadline = trio.current_time() + self._busy_timeout
        result = await self._retry_or_fail(
            what, key, functools.partial(self._pool.attempt, fn), deadline
        )
        if result is BUSY:
            raise PersistenceError(
                f"SQLite {what} failed: database locked for {self._busy_timeout} s", key=key
            )
        return result

    async def _write(
        self, what: str, key: TokenKey | None, fn: Callable[[sqlite3.Connection], None]
    ) -> None:
        await self._ensure_ready()
        # One deadline for both waits: our own writers, then other processes'.
        deadline = trio.current_time() + self._busy_timeout
        with trio.move_on_at(deadline) as scope:
            await self._writer.acquire()
        if scope.cancelled_caught:
            raise PersistenceError(
                f"SQLite {what} failed: database locked for {self._busy_timeout} s", key=key
            )
        try:
            await self._run(what, key, functools.partial(in_transaction, fn=fn), deadline)
        finally:
            self._writer.release()

    async def _save_locked(self, conn: sqlite3.Connection, key: TokenKey, token: Token) -> None:
        write = functools.partial(_execute, conn, sql=self._sql.upsert, args=_row(key, token))
        try:
            await self._pool.thread(write)
        except _DRIVER_ERRORS as exc:
            raise _failure("save", key, exc) from exc

    async def _table_state(self) -> _Table:
        """What is there of the table, found without writing to the file."""
        if self._pool.closed:
            msg = "this SQLiteStore is closed"
            raise RuntimeError(msg)
        if self._ready:
            return _Table.CURRENT
        if self._found is not _Table.MISSING:
            return self._found
        look = functools.partial(_fetch_table, name=self._table)
        self._found = await self._run("load", None, look)
        return self._found

    async def _ensure_ready(self) -> None:
        if self._pool.closed:
            msg = "this SQLiteStore is closed"
            raise RuntimeError(msg)
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                init = functools.partial(_init, name=self._table, sql=self._sql)
                await self._run("schema creation", None, init)
                self._ready = True
