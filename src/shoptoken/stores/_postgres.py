"""PostgresStore: tokens in a PostgreSQL table, with per-key row locks across nodes.

``locked(key)`` holds ONE connection for its whole block: ``SELECT ... FOR
UPDATE`` of the key's row, the handle's saves and the commit all run on it.
The wait for the row lock is cut in slices (``lock_timeout`` of at most
`_LOCK_SLICE` ms each, retried until the caller's timeout), so a worker
thread never blocks for long and a cancelled ``locked()`` stops waiting
within one slice. However the block ends, its transaction is committed
(normal exit; shielded from cancellation, since the pair may be in use
already) or rolled back, and the connection is back in the pool, before
``locked()`` returns.
"""

from __future__ import annotations

import enum
import functools
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Self

import attrs
import trio

from .._errors import LockTimeout, PersistenceError
from .._keys import normalize_shop
from . import _codec
from ._pg_pool import (
    DRIVER_ERRORS,
    ConnectionPool,
    PgConnections,
    cause,
    dsn_connect_timeout,
    failure,
    psycopg,
)
from ._schema import DEFAULT_TABLE, PostgresStatements, postgres_table

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from datetime import datetime
    from types import TracebackType

    from .._keys import TokenKey
    from .._token import Token

#: Longest single wait for a row lock inside a worker thread, in ms: bounds
#: how late the cancellation of a waiting ``locked()`` takes effect.
_LOCK_SLICE: Final = 100
# Any constant: serializes concurrent create_schema() calls (CREATE ... IF NOT
# EXISTS races with itself in PostgreSQL).
_SCHEMA_LOCK_ID: Final = 0x73686F70746F6B  # "shoptok"


#: The advisory lock namespace of keys without a row yet (``locked()`` of a first token).
_ABSENT_ROW_CLASS: Final = 0x73686F70  # "shop"
_ABSENT_ROW_LOCK: Final = "SELECT pg_advisory_xact_lock(%s::int4, hashtext(%s))"


class _Wait(enum.Enum):
    NOT_GRANTED = enum.auto()


def _as_is(value: datetime) -> datetime:
    return value  # Token holds aware UTC datetimes; timestamptz keeps the instant exactly


def _locked_row(key: TokenKey, row: tuple[object, ...] | None) -> tuple[Token | None, int | None]:
    if row is None:
        return None, None
    generation = row[-1]
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise PersistenceError(f"stored row for {key} is corrupt (refresh_generation)", key=key)
    return _codec.decode(key, row[:-1], _codec.aware_utc), generation


def _fetch_one(conn: psycopg.Connection[Any], *, sql: str, key: str) -> tuple[object, ...] | None:
    row: tuple[object, ...] | None = conn.execute(sql, (key,)).fetchone()
    return row


def _fetch_many(
    conn: psycopg.Connection[Any], *, sql: str, keys: list[str]
) -> list[tuple[object, ...]]:
    return conn.execute(sql, (keys,)).fetchall()


def _fetch_keys(conn: psycopg.Connection[Any], *, sql: str, after: str) -> list[object]:
    return [row[0] for row in conn.execute(sql, (after, _codec.LIST_BATCH))]


def _execute(conn: psycopg.Connection[Any], *, sql: str, args: tuple[object, ...]) -> None:
    conn.execute(sql, args)


@attrs.define(eq=False)
class _PostgresLocked:
    """What `PostgresStore.locked` yields: the re-read token and a save inside the lock."""

    token: Token | None
    _generation: int | None
    _write: Callable[[Token, int | None], Awaitable[int]]

    async def save(self, token: Token) -> None:
        """Write ``token`` inside the locked transaction (committed when the block exits).

        Raises:
            PersistenceError: The database failed, or the row changed since it
                was read (a lost update; nothing is written).
        """
        self._generation = await self._write(token, self._generation)
        self.token = token


@attrs.define(eq=False, init=False)
class PostgresStore:
    """Tokens in a PostgreSQL table, with per-key row locks that hold across nodes.

    One row per key. The table is not created implicitly: call
    `create_schema` once, or add `schema_sql` to your migrations (see
    docs/stores.md). Every save is one atomic upsert of the whole pair and
    increments ``refresh_generation``.

    ``locked(key)`` runs ``SELECT ... FOR UPDATE`` on the key's row (a key
    without a row takes a transaction-scoped advisory lock on the key
    instead, and the handle's token is None); its save checks
    ``refresh_generation`` and refuses a lost update.

    Use it as an async context manager, or call `aclose` when done (a pool
    passed in is left open: it is yours).

    Args:
        conninfo: A libpq connection string or URL, or an open psycopg_pool
            `ConnectionPool` to borrow connections from.
        table: Table name (a plain identifier).
        schema: Schema of the table; None means the connection's search_path.
        max_connections: Size of the pool created from ``conninfo`` (20: a
            ``locked()`` block holds a connection during its refresh, and the
            manager runs up to 16 at once); with a pool passed in, how many of
            its connections to use at most (its ``max_size`` by default).
        busy_timeout: Seconds an operation waits for a connection before
            `PersistenceError`.
        lock_hold_timeout: Seconds a ``locked()`` transaction may stay idle
            (as during the refresh request it guards) before the server ends
            the session and frees the row: this bounds how long a node that
            froze or lost its network keeps others from refreshing the key.
            Its commit then fails, and the manager retries the save. None
            keeps the server's ``idle_in_transaction_session_timeout``.
        connect_timeout: Seconds a new connection may take (libpq's
            ``connect_timeout``: whole seconds, at least 2). None takes the
            DSN's ``connect_timeout``, else 5. The first use connects once
            before the pool opens, so a refused connection, a missing
            database or a bad password fail at once with the server's reason.
    """

    _connections: PgConnections = attrs.field(repr=False)
    _table: str
    _schema: str | None
    _lock_hold_timeout: float | None = attrs.field(repr=False)
    _sql: PostgresStatements = attrs.field(repr=False)

    def __init__(
        self,
        conninfo: str | ConnectionPool[Any],
        *,
        table: str = DEFAULT_TABLE,
        schema: str | None = None,
        max_connections: int | None = None,
        busy_timeout: float = 30.0,
        lock_hold_timeout: float | None = 120.0,
        connect_timeout: float | None = None,
    ) -> None:
        for name, value in (
            ("busy_timeout", busy_timeout),
            ("lock_hold_timeout", lock_hold_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if value is not None and (isinstance(value, bool) or not value > 0):
                msg = f"{name} must be a positive number of seconds"
                raise ValueError(msg)
        if max_connections is not None and (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            msg = "max_connections must be a positive int"
            raise ValueError(msg)
        self._sql = PostgresStatements.build(table, schema)
        self._table = table
        self._schema = schema
        self._lock_hold_timeout = lock_hold_timeout
        if isinstance(conninfo, ConnectionPool):
            size = max_connections or conninfo.max_size
            self._connections = PgConnections(
                conninfo, owned=False, timeout=busy_timeout, size=size
            )
        elif isinstance(conninfo, str):
            self._connections = PgConnections.create(
                conninfo,
                size=max_connections or 20,
                timeout=busy_timeout,
                connect_timeout=connect_timeout or dsn_connect_timeout(conninfo),
            )
        else:
            msg = "conninfo must be a connection string or a psycopg_pool.ConnectionPool"
            raise TypeError(msg)

    def settings(self) -> dict[str, float | int | None]:
        """The store's timeouts (seconds) and pool size, as `store_from_url` reads them."""
        connections = self._connections
        return {
            "busy_timeout": connections.timeout,
            "lock_hold_timeout": self._lock_hold_timeout,
            "connect_timeout": float(connections.connect_timeout),
            "max_connections": connections.size,
        }

    @staticmethod
    def schema_sql(table: str = DEFAULT_TABLE, schema: str | None = None) -> str:
        """The ``CREATE TABLE IF NOT EXISTS`` statement of the store's table."""
        return postgres_table(table, schema)

    @staticmethod
    def upgrade_sql(table: str = DEFAULT_TABLE, schema: str | None = None) -> str:
        """The ``ALTER TABLE`` that upgrades a table of an earlier version (idempotent).

        `create_schema` runs it too; an app that manages its schema with
        migrations adds it as one.
        """
        return PostgresStatements.build(table, schema).upgrade

    # -- the TokenCallback --------------------------------------------------------

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Return the stored token, or None.

        Raises:
            PersistenceError: The database failed or the row is corrupt.
        """
        read = functools.partial(_fetch_one, sql=self._sql.select, key=str(key))
        row = await self._connections.transaction("load", key, read, single_statement=True)
        return None if row is None else _codec.decode(key, row, _codec.aware_utc)

    async def load_many(self, keys: Sequence[TokenKey]) -> dict[TokenKey, Token]:
        """Return the stored token of each of ``keys`` that has one (one ``= ANY(...)`` query).

        Raises:
            PersistenceError: The database failed or a row is corrupt.
        """
        asked = {str(key): key for key in keys}
        read = functools.partial(_fetch_many, sql=self._sql.select_many, keys=list(asked))
        rows = await self._connections.transaction("load", None, read, single_statement=True)
        return _codec.decode_many(asked, rows, _codec.aware_utc)

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Store the whole pair atomically, replacing any previous one (committed on return).

        Raises:
            PersistenceError: The database failed.
        """
        row = _codec.encode(key, token, _as_is)
        write = functools.partial(_execute, sql=self._sql.upsert, args=row)
        await self._connections.transaction("save", key, write, single_statement=True)

    async def delete_tokens(self, key: TokenKey) -> None:
        """Delete the pair; no error if absent.

        Raises:
            PersistenceError: The database failed.
        """
        delete = functools.partial(_execute, sql=self._sql.delete, args=(str(key),))
        await self._connections.transaction("delete", key, delete, single_statement=True)

    async def delete_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        """Delete every pair of ``shop`` in one statement; return the keys deleted.

        A row locked by a refresh in flight (``locked``) is deleted once that
        refresh commits: its new pair does not outlive the delete.

        Args:
            shop: The shop's domain.
            before: When given, only pairs obtained before it (or of unknown
                ``obtained_at``) are deleted.

        Raises:
            InvalidShopDomain: Bad shop domain.
            PersistenceError: The database failed.
        """
        domain = normalize_shop(shop)
        args: tuple[object, ...]
        if before is None:
            sql, args = self._sql.delete_shop, (domain,)
        else:
            sql, args = self._sql.delete_shop_before, (domain, before)

        def delete(conn: psycopg.Connection[Any]) -> list[TokenKey]:
            return [_codec.parse_key(row[0]) for row in conn.execute(sql, args)]

        return await self._connections.transaction("delete", None, delete, single_statement=True)

    async def list_keys(self) -> AsyncIterator[TokenKey]:
        """Yield every stored key, a batch per query (keyset pagination).

        Raises:
            PersistenceError: The database failed or a stored key is invalid.
        """

        async def page(after: str) -> list[object]:
            fetch = functools.partial(_fetch_keys, sql=self._sql.page, after=after)
            return await self._connections.transaction(
                "listing", None, fetch, single_statement=True
            )

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
    ) -> AsyncIterator[_PostgresLocked]:
        """Lock ``key``'s row (``SELECT ... FOR UPDATE``) and re-read it.

        The handle's ``save`` writes inside the transaction, committed when
        the block exits normally (even if cancelled meanwhile: the pair may
        be in use) and rolled back when it raises.

        Raises:
            LockTimeout: The row lock (or a connection) was not granted within
                ``timeout`` seconds.
            PersistenceError: The database failed, the row is corrupt, or the
                commit failed.
        """
        connections = self._connections
        await connections.ensure_open()
        deadline = trio.current_time() + timeout
        if not await connections.acquire_slot(deadline):
            raise LockTimeout(
                f"lock on {key} not granted within {timeout} s (no free connection)", key=key
            )
        try:
            try:
                lease = await connections.thread(functools.partial(connections.getconn, check=True))
            except DRIVER_ERRORS as exc:
                raise failure("lock", key, exc) from cause(exc)
            try:
                row = await self._wait_for_row_lock(lease.conn, key, deadline)
                if row is _Wait.NOT_GRANTED:
                    raise LockTimeout(f"lock on {key} not granted within {timeout} s", key=key)
                token, generation = _locked_row(key, row)
                write = functools.partial(self._save_locked, lease.conn, key)
                yield _PostgresLocked(token, generation, write)
                with trio.CancelScope(shield=True):
                    try:
                        await connections.thread(lease.conn.commit)
                    except DRIVER_ERRORS as exc:
                        raise failure("commit", key, exc) from cause(exc)
            finally:
                # Rolls back whatever is still open (an exception, a cancellation).
                with trio.CancelScope(shield=True):
                    await connections.thread(functools.partial(connections.putconn, lease))
        finally:
            connections.slots.release()

    async def create_schema(self) -> None:
        """Create the schema (when one is set) and the table, if they do not exist.

        Safe to run from many processes at once, and on every start.

        Raises:
            PersistenceError: The database failed (for instance, no CREATE privilege).
        """
        await self._connections.transaction("schema creation", None, self._create)

    # -- lifetime -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the pool this store created (a pool passed in stays open)."""
        await self._connections.aclose()

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

    async def _wait_for_row_lock(
        self, conn: psycopg.Connection[Any], key: TokenKey, deadline: float
    ) -> tuple[object, ...] | _Wait | None:
        while True:
            remaining = deadline - trio.current_time()
            wait_ms = max(1, min(_LOCK_SLICE, int(remaining * 1000)))
            attempt = functools.partial(self._try_lock, conn, str(key), wait_ms)
            try:
                row = await self._connections.thread(attempt)
            except DRIVER_ERRORS as exc:
                raise failure("lock", key, exc) from cause(exc)
            if row is not _Wait.NOT_GRANTED or trio.current_time() >= deadline:
                return row

    def _try_lock(
        self, conn: psycopg.Connection[Any], key: str, wait_ms: int
    ) -> tuple[object, ...] | _Wait | None:
        """One slice of waiting for the row lock (worker thread)."""
        if self._lock_hold_timeout is None:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{wait_ms}ms",))
        else:
            conn.execute(
                "SELECT set_config('lock_timeout', %s, true),"
                " set_config('idle_in_transaction_session_timeout', %s, true)",
                (f"{wait_ms}ms", f"{round(self._lock_hold_timeout * 1000)}ms"),
            )
        try:
            row: tuple[object, ...] | None = conn.execute(self._sql.lock, (key,)).fetchone()
            if row is None:
                # No row to lock (a client-credentials key's first mint): a
                # transaction-scoped advisory lock on the key stands in for it,
                # so nodes racing to create the row take turns; the next one
                # then finds (and locks) the row the first committed.
                conn.execute(_ABSENT_ROW_LOCK, (_ABSENT_ROW_CLASS, key))
                row = conn.execute(self._sql.lock, (key,)).fetchone()
        except psycopg.errors.LockNotAvailable:  # SQLSTATE 55P03
            conn.rollback()
            return _Wait.NOT_GRANTED
        return row

    async def _save_locked(
        self, conn: psycopg.Connection[Any], key: TokenKey, token: Token, generation: int | None
    ) -> int:
        row = _codec.encode(key, token, _as_is)
        write = functools.partial(self._write_locked, conn, row, generation)
        try:
            new = await self._connections.thread(write)
        except DRIVER_ERRORS as exc:
            raise failure("save", key, exc) from cause(exc)
        if new is None:
            raise PersistenceError(
                f"PostgreSQL save of {key} refused: the row changed after it was locked",
                key=key,
            )
        return new

    def _write_locked(
        self, conn: psycopg.Connection[Any], row: tuple[object, ...], generation: int | None
    ) -> int | None:
        """Insert (no row was there) or update the read generation; None on a lost update."""
        if generation is None:
            found = conn.execute(self._sql.insert_locked, row).fetchone()
        else:
            found = conn.execute(self._sql.update_locked, (*row[1:], row[0], generation)).fetchone()
        return None if found is None else int(found[0])

    def _create(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
        if self._sql.create_schema is not None:
            conn.execute(self._sql.create_schema)
        conn.execute(self._sql.create)
        conn.execute(self._sql.upgrade)
