"""SQLiteStore specifics: the file's format, its whole-file lock, connections, misuse."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest
import trio

from shoptoken import LockTimeout, PersistenceError, Token, TokenKey
from shoptoken.stores import SQLiteStore

KEY = TokenKey.offline("my-store")
OTHER = TokenKey.offline("other-store")
TOKEN = Token(
    access_token="shpat_one",
    refresh_token="shprt_one",
    expires_at=datetime(2030, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
)


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_file_format(tmp_path: Path) -> None:
    """WAL mode; one row per key; datetimes as integer microseconds; generation counts saves."""
    path = tmp_path / "tokens.db"
    async with SQLiteStore(path) as store:
        await store.save_tokens(KEY, TOKEN)
        await store.save_tokens(KEY, TOKEN)
        async with store.locked(KEY, timeout=1.0) as handle:
            await handle.save(TOKEN)
    assert _rows(path, "PRAGMA journal_mode") == [("wal",)]
    [row] = _rows(
        path,
        "SELECT key, kind, shop, subject, expires_at, typeof(expires_at), generation"
        " FROM shoptoken_tokens",
    )
    micros = 1_893_456_000_000_001  # 2030-01-01T00:00:00.000001Z
    assert row == (
        "offline:my-store.myshopify.com",
        "offline",
        "my-store.myshopify.com",
        None,
        micros,
        "integer",
        3,
    )


async def test_documented_schema_is_the_one_used(tmp_path: Path) -> None:
    """A table created from SQLiteStore.schema_sql() (as in docs/stores.md) is used as is."""
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute(SQLiteStore.schema_sql("app_tokens"))
    conn.close()
    async with SQLiteStore(path, table="app_tokens") as store:
        await store.save_tokens(KEY, TOKEN)
        assert await store.load_tokens(KEY) == TOKEN
    assert _rows(path, "SELECT count(*) FROM app_tokens") == [(1,)]


async def test_lock_covers_the_whole_file(tmp_path: Path) -> None:
    """While one key is locked, other keys' locks and other writers wait; readers do not."""
    path = tmp_path / "tokens.db"
    async with (
        SQLiteStore(path) as store,
        SQLiteStore(path, busy_timeout=0.2) as other,
    ):
        await store.save_tokens(OTHER, TOKEN)
        async with store.locked(KEY, timeout=1.0):
            with pytest.raises(LockTimeout):
                async with other.locked(OTHER, timeout=0.2):
                    pytest.fail("granted while the file is locked")
            with pytest.raises(PersistenceError, match=r"locked for 0\.2 s"):
                await other.save_tokens(OTHER, TOKEN)
            with trio.fail_after(0.5):
                assert await other.load_tokens(OTHER) == TOKEN


async def test_writers_wait_for_a_lock_held_in_the_same_process(tmp_path: Path) -> None:
    """A save waits (in trio, not in a thread) for a locked() block to end, then lands."""
    async with SQLiteStore(tmp_path / "tokens.db", max_threads=1) as store:
        async with trio.open_nursery() as nursery, store.locked(KEY, timeout=1.0) as handle:
            nursery.start_soon(store.save_tokens, OTHER, TOKEN)
            await trio.sleep(0.1)
            # The waiting save holds no worker thread: the only one is free.
            await handle.save(TOKEN)
            assert await store.load_tokens(OTHER) is None
        assert await store.load_tokens(OTHER) == TOKEN


async def test_connections_are_pooled_and_bounded(tmp_path: Path) -> None:
    """Many concurrent operations use at most max_threads pooled connections, all idle after."""
    async with SQLiteStore(tmp_path / "tokens.db", max_threads=3) as store:
        await store.save_tokens(KEY, TOKEN)
        async with trio.open_nursery() as nursery:
            for _ in range(40):
                nursery.start_soon(store.load_tokens, KEY)
                nursery.start_soon(store.save_tokens, OTHER, TOKEN)
        assert 1 <= len(store._pool.idle()) <= 3
        assert not any(conn.in_transaction for conn in store._pool.idle())


async def test_cancelled_locked_leaves_nothing_open(tmp_path: Path) -> None:
    """A locked() cancelled mid-block rolls back and returns its connection."""
    async with SQLiteStore(tmp_path / "tokens.db") as store:
        await store.save_tokens(KEY, TOKEN)
        with trio.move_on_after(0.05):
            async with store.locked(KEY, timeout=1.0) as handle:
                await handle.save(Token(access_token="shpat_rolled_back"))
                await trio.sleep_forever()
        assert not store._writer.locked()
        assert not any(conn.in_transaction for conn in store._pool.idle())
        assert await store.load_tokens(KEY) == TOKEN


async def test_closed_store_refuses_use(tmp_path: Path) -> None:
    """After aclose() the store raises RuntimeError and holds no connection."""
    store = SQLiteStore(tmp_path / "tokens.db")
    await store.save_tokens(KEY, TOKEN)
    await store.aclose()
    assert store._pool.idle() == []
    with pytest.raises(RuntimeError, match="closed"):
        await store.load_tokens(KEY)


async def test_unopenable_file_is_a_persistence_error(tmp_path: Path) -> None:
    """A path in a missing directory fails with PersistenceError, not sqlite3's error."""
    async with SQLiteStore(tmp_path / "missing" / "tokens.db") as store:
        with pytest.raises(PersistenceError, match="SQLite"):
            await store.load_tokens(KEY)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": ":memory:"}, "file path"),
        ({"path": "t.db", "table": "x; DROP TABLE y"}, "identifier"),
        ({"path": "t.db", "max_threads": 0}, "positive"),
        ({"path": "t.db", "busy_timeout": -1}, "positive"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    """Bad constructor arguments raise ValueError at once."""
    with pytest.raises(ValueError, match=match):
        SQLiteStore(**kwargs)  # type: ignore[arg-type]


async def test_reads_never_create_the_table(tmp_path: Path) -> None:
    """Loads and listings of a file without the table find nothing and leave the file as it was."""
    path = tmp_path / "tokens.db"
    path.touch()
    async with SQLiteStore(path) as store:
        assert await store.load_tokens(KEY) is None
        assert [key async for key in store.list_keys()] == []
    assert path.stat().st_size == 0
    async with SQLiteStore(path) as store:
        await store.save_tokens(KEY, TOKEN)
        assert await store.load_tokens(KEY) == TOKEN
        assert [key async for key in store.list_keys()] == [KEY]


def _table_of_an_earlier_version(path: Path) -> None:
    """The table as shoptoken created it before tokens carried obtained_at, with one row."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(SQLiteStore.schema_sql())
        conn.execute("ALTER TABLE shoptoken_tokens DROP COLUMN obtained_at")
        conn.execute(
            "INSERT INTO shoptoken_tokens (key, kind, shop, access_token, refresh_token, scope,"
            " expires_at, updated_at) VALUES (?, 'offline', ?, 'shpat_one', 'shprt_one', '', ?, 0)",
            (str(KEY), KEY.shop, 1_893_456_000_000_001),
        )
        conn.commit()
    finally:
        conn.close()


async def test_reads_of_a_table_of_an_earlier_version_never_upgrade_it(tmp_path: Path) -> None:
    """A table without obtained_at reads as before (None) and is left as it was."""
    path = tmp_path / "tokens.db"
    _table_of_an_earlier_version(path)
    before = path.read_bytes()
    async with SQLiteStore(path) as store:
        assert await store.load_tokens(KEY) == TOKEN
        assert [key async for key in store.list_keys()] == [KEY]
    assert path.read_bytes() == before


async def test_the_first_write_upgrades_a_table_of_an_earlier_version(tmp_path: Path) -> None:
    """The first write adds the column; the rows already there keep every field."""
    path = tmp_path / "tokens.db"
    _table_of_an_earlier_version(path)
    dated = attrs.evolve(TOKEN, obtained_at=datetime(2029, 12, 31, 23, 0, tzinfo=UTC))
    async with SQLiteStore(path) as store:
        await store.save_tokens(OTHER, dated)
        assert await store.load_tokens(KEY) == TOKEN
        assert await store.load_tokens(OTHER) == dated
    async with SQLiteStore(path) as store, store.locked(KEY, timeout=1.0) as handle:
        assert handle.token == TOKEN
    assert "obtained_at" in {row[1] for row in _rows(path, "PRAGMA table_info(shoptoken_tokens)")}


async def test_bulk_reads_of_a_table_of_an_earlier_version_never_upgrade_it(
    tmp_path: Path,
) -> None:
    """load_many on a table without obtained_at reads as load_tokens does, and writes nothing."""
    path = tmp_path / "tokens.db"
    _table_of_an_earlier_version(path)
    before = path.read_bytes()
    async with SQLiteStore(path) as store:
        assert await store.load_many([KEY, OTHER]) == {KEY: TOKEN}
    assert path.read_bytes() == before
