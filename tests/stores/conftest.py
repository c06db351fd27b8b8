"""Fixtures for the store tests: every store as a `Backend`, PostgreSQL when reachable.

PostgreSQL comes from ``SHOPTOKEN_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each run uses its own schema
(random name, dropped at the end) and each test its own table. Without a
server the PostgreSQL cases are skipped, except with ``CI=true``, where an
unreachable server fails them: CI must not pass by skipping.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from shoptoken import MemoryStore, Token, TokenKey
from shoptoken.stores import SQLiteStore

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
KEYS = {"k2": bytes(range(32)), "k1": bytes(range(100, 132))}

# A store as the tests use it: every capability, typed loosely on purpose.
Store = Any
Corruption = Callable[[TokenKey], Awaitable[None]]


@attrs.define(eq=False)
class Backend:
    """One kind of store under test, able to open more instances on the same storage.

    Attributes:
        name: The parametrization id.
        transactional: ``locked()`` commits on exit and rolls back on error
            (MemoryStore's handle writes through at once).
        streams: ``list_keys`` queries page by page (it sees keys saved while
            it iterates), rather than iterating a snapshot.
        per_key_locks: A lock on one key leaves the others free (not SQLite).
        cross_process: The lock holds across processes.
    """

    name: str
    open_store: Callable[[], Awaitable[Store]]
    transactional: bool = False
    streams: bool = False
    per_key_locks: bool = True
    cross_process: bool = False
    corruptions: dict[str, Corruption] = attrs.Factory(dict)
    insert_bad_key: Callable[[str], Awaitable[None]] | None = None
    #: The ciphertext tests apply.
    encrypted: bool = False
    opened: list[Store] = attrs.Factory(list)

    async def open(self) -> Store:
        """Another store instance on the same storage (closed at teardown)."""
        store = await self.open_store()
        self.opened.append(store)
        return store

    async def aclose(self) -> None:
        """Close every opened instance."""
        for store in reversed(self.opened):
            aclose = getattr(store, "aclose", None)
            if aclose is not None:
                await aclose()


# -- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test server's DSN; skip (fail with CI=true) when it is unreachable."""
    psycopg = pytest.importorskip("psycopg")
    dsn = os.environ.get("SHOPTOKEN_TEST_POSTGRES", DEFAULT_DSN)
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        message = (
            f"PostgreSQL unreachable ({type(exc).__name__}); set SHOPTOKEN_TEST_POSTGRES"
            f" to a server's URL (default {DEFAULT_DSN})"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return dsn


@pytest.fixture(scope="session")
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A schema of this test run's own, dropped at the end."""
    import psycopg

    schema = f"shoptoken_test_{secrets.token_hex(6)}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def pg_execute(dsn: str, sql: str, args: tuple[object, ...] = ()) -> None:
    """Run one statement in its own committed transaction (blocking)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, args)


def pg_backend(name: str, dsn: str, schema: str) -> Backend:
    """A PostgresStore on a fresh table of the run's schema."""
    from shoptoken.stores import PostgresStore

    table = f"t_{secrets.token_hex(4)}"
    qualified = f'"{schema}"."{table}"'
    created = False

    async def open_store() -> Store:
        nonlocal created
        store = PostgresStore(dsn, schema=schema, table=table, max_connections=4)
        if not created:
            await store.create_schema()
            created = True
        return store

    def corrupt(column: str, value: object) -> Corruption:
        async def apply(key: TokenKey) -> None:
            sql = f"UPDATE {qualified} SET {column} = %s WHERE key = %s"  # noqa: S608 - test names
            await trio.to_thread.run_sync(pg_execute, dsn, sql, (value, str(key)))

        return apply

    async def insert_bad_key(text: str) -> None:
        sql = (
            f"INSERT INTO {qualified} (key, kind, shop, access_token, scope)"  # noqa: S608 - test names
            " VALUES (%s, 'offline', 'x', 'a', '')"
        )
        await trio.to_thread.run_sync(pg_execute, dsn, sql, (text,))

    return Backend(
        name,
        open_store,
        transactional=True,
        streams=True,
        cross_process=True,
        corruptions={
            "unknown kind": corrupt("kind", "bogus"),
            "kind of another key": corrupt("kind", "online"),
            "empty access token": corrupt("access_token", ""),
            "infinite expiry": corrupt("expires_at", "infinity"),
        },
        insert_bad_key=insert_bad_key,
    )


# -- SQLite and memory -----------------------------------------------------------------


def sqlite_execute(path: Path, sql: str, args: tuple[object, ...] = ()) -> None:
    """Run one statement in autocommit (blocking)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


def sqlite_backend(name: str, path: Path) -> Backend:
    """A SQLiteStore on a fresh file."""

    async def open_store() -> Store:
        return SQLiteStore(path)

    def corrupt(column: str, value: object) -> Corruption:
        async def apply(key: TokenKey) -> None:
            sql = f"UPDATE shoptoken_tokens SET {column} = ? WHERE key = ?"  # noqa: S608 - test names
            await trio.to_thread.run_sync(sqlite_execute, path, sql, (value, str(key)))

        return apply

    async def insert_bad_key(text: str) -> None:
        sql = (
            "INSERT INTO shoptoken_tokens (key, kind, shop, access_token, scope, updated_at)"
            " VALUES (?, 'offline', 'x', 'a', '', 0)"
        )
        await trio.to_thread.run_sync(sqlite_execute, path, sql, (text,))

    return Backend(
        name,
        open_store,
        transactional=True,
        streams=True,
        per_key_locks=False,
        cross_process=True,
        corruptions={
            "unknown kind": corrupt("kind", "bogus"),
            "kind of another key": corrupt("kind", "customer"),
            "empty access token": corrupt("access_token", ""),
            # Column affinity turns 42 into "42" in a TEXT column: use blobs.
            "access token not text": corrupt("access_token", b"\x00\xff"),
            "expiry not an integer": corrupt("expires_at", "2030-01-01T00:00:00"),
            "expiry a float": corrupt("expires_at", 1.5),
            "expiry out of range": corrupt("expires_at", 2**62),
            "user id not an integer": corrupt("associated_user_id", "forty-two"),
            "scope not text": corrupt("scope", b"\x01"),
        },
        insert_bad_key=insert_bad_key,
    )


def memory_backend(name: str) -> Backend:
    """One MemoryStore, shared by every "instance" (it has no storage of its own)."""
    store = MemoryStore()

    async def open_store() -> Store:
        await trio.lowlevel.checkpoint()
        return store

    return Backend(name, open_store)


# -- encryption over any of them ---------------------------------------------------------


def encrypted_backend(name: str, inner: Backend) -> Backend:
    """An EncryptedStore with `KEYS` over ``inner``; corruptions rewrite ciphertexts."""
    from shoptoken.stores import EncryptedStore

    inners: list[Store] = []

    async def open_store() -> Store:
        store = await inner.open_store()
        inners.append(store)
        return EncryptedStore(store, KEYS)

    def rewrite(change: Callable[[Token], Token]) -> Corruption:
        async def apply(key: TokenKey) -> None:
            raw = inners[0]
            stored = await raw.load_tokens(key)
            await raw.save_tokens(key, change(stored))

        return apply

    def tampered(token: Token) -> Token:
        value = token.access_token
        flipped = value[:-6] + ("A" if value[-6] != "A" else "B") + value[-5:]
        return attrs.evolve(token, access_token=flipped)

    def moved(token: Token) -> Token:
        other = EncryptedStore(MemoryStore(), KEYS)
        sealed = other._seal(TokenKey.offline("another-store"), Token(access_token="x"))
        return attrs.evolve(token, access_token=sealed.access_token)

    def swapped(token: Token) -> Token:
        assert token.refresh_token is not None
        return attrs.evolve(
            token, access_token=token.refresh_token, refresh_token=token.access_token
        )

    return Backend(
        name,
        open_store,
        transactional=inner.transactional,
        streams=inner.streams,
        per_key_locks=inner.per_key_locks,
        cross_process=inner.cross_process,
        corruptions={
            "garbage ciphertext": rewrite(lambda t: attrs.evolve(t, access_token="v1:k2:garbage!")),
            "plaintext": rewrite(lambda t: attrs.evolve(t, access_token="shpat_plain")),
            "unknown key id": rewrite(
                lambda t: attrs.evolve(t, access_token=t.access_token.replace(":k2:", ":k9:"))
            ),
            "tampered ciphertext": rewrite(tampered),
            "ciphertext moved from another key": rewrite(moved),
            "access and refresh swapped": rewrite(swapped),
        },
        insert_bad_key=inner.insert_bad_key,
        encrypted=True,
    )


BACKENDS = [
    "memory",
    "sqlite",
    "postgres",
    "encrypted-memory",
    "encrypted-sqlite",
    "encrypted-postgres",
]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``requires`` marker."""
    config.addinivalue_line(
        "markers",
        "requires(capability, reason): skip backends whose Backend.capability is false",
    )


def _make_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    base = name.removeprefix("encrypted-")
    if base == "memory":
        plain = memory_backend(name)
    elif base == "sqlite":
        plain = sqlite_backend(name, tmp_path / "tokens.db")
    else:
        plain = pg_backend(
            name, request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema")
        )
    return encrypted_backend(name, plain) if name.startswith("encrypted-") else plain


@pytest.fixture(params=BACKENDS)
def backend_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The parametrized store, not yet opened (PostgreSQL requested only when used).

    Skips here, in a synchronous fixture, keep their reason (pytest-trio drops
    the reason of a skip raised inside an async test).
    """
    backend = _make_backend(request.param, request, tmp_path)
    for marker in request.node.iter_markers("requires"):
        if not getattr(backend, marker.args[0]):
            pytest.skip(f"{backend.name}: {marker.kwargs['reason']}")
    return backend


@pytest.fixture
async def backend(backend_spec: Backend) -> AsyncIterator[Backend]:
    """The parametrized store kind; every instance it opens is closed afterwards."""
    try:
        yield backend_spec
    finally:
        await backend_spec.aclose()


@pytest.fixture
async def store(backend: Backend) -> Store:
    """A first instance of the parametrized store."""
    return await backend.open()
