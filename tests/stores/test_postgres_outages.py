"""An unreachable or misconfigured PostgreSQL fails fast, with its real cause, in one line.

Against the real test server: a closed port, a missing database, a server
that accepts and never answers, and URL parameters libpq does not know.
"""

from __future__ import annotations

import logging
import socket
from functools import partial
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio

from shoptoken import PersistenceError, TokenKey
from shoptoken.stores import open_store, store_from_url

psycopg = pytest.importorskip("psycopg")

from shoptoken.stores import PostgresStore  # noqa: E402 - after the extra is known present

KEY = TokenKey.offline("my-store")
# Far above what any of these tests may take: a test that waits for it has failed.
SLOW = 60.0


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def with_netloc(dsn: str, *, port: int | None = None, database: str | None = None) -> str:
    """``dsn`` on 127.0.0.1 with another port and/or database."""
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    netloc = f"{user}@127.0.0.1:{port or parts.port or 5432}"
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit(parts._replace(netloc=netloc, path=path))


async def first_use_fails(url: str) -> tuple[str, float]:
    """The one-line message of the first load through ``url``, and how long it took."""
    start = trio.current_time()
    with trio.fail_after(SLOW):
        async with open_store(url) as store:
            with pytest.raises(PersistenceError) as info:
                await store.load_tokens(KEY)
    message = str(info.value)
    assert "\n" not in message
    return message, trio.current_time() - start


async def test_closed_port_fails_at_once_with_the_cause(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A closed port: "Connection refused" at once, and the pool never retries in the logs."""
    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    message, took = await first_use_fails(with_netloc(pg_dsn, port=closed_port()))
    assert "Connection refused" in message
    assert message.startswith("PostgreSQL connection failed: OperationalError")
    assert took < 5
    assert not [record for record in caplog.records if record.name.startswith("psycopg.pool")]


async def test_missing_database_names_it(pg_dsn: str) -> None:
    """A database that does not exist is named in the error, at once."""
    message, took = await first_use_fails(with_netloc(pg_dsn, database="shoptoken_no_such_db"))
    assert 'database "shoptoken_no_such_db" does not exist' in message
    assert took < 5


async def test_create_schema_reports_the_cause(pg_dsn: str) -> None:
    """create_schema() on a closed port fails as fast, with the same cause."""
    async with open_store(with_netloc(pg_dsn, port=closed_port())) as store:
        with trio.fail_after(SLOW), pytest.raises(PersistenceError, match="Connection refused"):
            await store.create_schema()


async def test_a_silent_server_fails_within_connect_timeout(pg_dsn: str) -> None:
    """A server that accepts and never answers fails after connect_timeout from the URL."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _never_answer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        url = with_netloc(pg_dsn, port=port) + "?connect_timeout=2"
        message, took = await first_use_fails(url)
        nursery.cancel_scope.cancel()
    assert "timeout" in message
    assert 1.5 < took < 5


async def test_cancellation_ends_the_connection_attempt_at_once(pg_dsn: str) -> None:
    """A cancelled first use (Ctrl-C) returns at once, not after the connect timeout."""
    seen = trio.Event()

    async def answer_nothing(stream: trio.SocketStream) -> None:
        seen.set()
        await _never_answer(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, answer_nothing, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        url = with_netloc(pg_dsn, port=port) + "?connect_timeout=30"
        async with open_store(url) as store:
            with trio.CancelScope() as scope:
                nursery.start_soon(_cancel_when, seen, scope)
                await store.load_tokens(KEY)
            start = trio.current_time()
        assert scope.cancelled_caught
        assert trio.current_time() - start < 5
        nursery.cancel_scope.cancel()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _never_answer(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("shema=s", 'unknown PostgreSQL URL parameter "shema"'),
        ("sslmode=require&tabel=t", 'unknown PostgreSQL URL parameter "tabel"'),
        ("busy_timeout=0", "busy_timeout must be a positive number"),
        ("lock_hold_timeout=x", "lock_hold_timeout must be a positive number"),
        ("connect_timeout=-1", "connect_timeout must be a positive number"),
    ],
)
def test_bad_parameters_are_refused_up_front(query: str, match: str) -> None:
    """Misspelt or invalid parameters raise a one-line ValueError before any connection."""
    with pytest.raises(ValueError, match=match) as info:
        store_from_url(f"postgresql://app:hunter2@127.0.0.1/db?{query}")
    assert "hunter2" not in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_url_does_not_repeat_the_password() -> None:
    """A malformed URL: libpq's refusal is passed on without the password."""
    with pytest.raises(ValueError, match="PostgreSQL URL") as info:
        store_from_url("postgresql://app:hun%zzter2@127.0.0.1/db")
    assert "hun" not in str(info.value)


def test_pool_settings_come_from_the_url() -> None:
    """busy_timeout, lock_hold_timeout, connect_timeout and max_connections are read."""
    store = store_from_url(
        "postgresql://app@127.0.0.1/db?sslmode=disable&busy_timeout=7.5"
        "&lock_hold_timeout=none&connect_timeout=4&max_connections=3"
    )
    assert isinstance(store, PostgresStore)
    assert store.settings() == {
        "busy_timeout": 7.5,
        "lock_hold_timeout": None,
        "connect_timeout": 4.0,
        "max_connections": 3,
    }
    assert store._connections.pool.conninfo == "postgresql://app@127.0.0.1/db?sslmode=disable"


def test_connect_timeout_defaults_to_a_few_seconds() -> None:
    """Without connect_timeout, a connection attempt is bounded by 5 s, not the pool's 30."""
    store = store_from_url("postgresql://app@127.0.0.1/db")
    assert isinstance(store, PostgresStore)
    assert store.settings()["connect_timeout"] == 5.0


def test_a_dsn_keeps_its_own_connect_timeout() -> None:
    """A DSN passed to PostgresStore keeps its connect_timeout; the argument overrides it."""
    dsn = "postgresql://app@127.0.0.1/db?connect_timeout=9"
    assert PostgresStore(dsn).settings()["connect_timeout"] == 9.0
    assert PostgresStore(dsn, connect_timeout=3).settings()["connect_timeout"] == 3.0
