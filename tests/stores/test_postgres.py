"""PostgresStore specifics: schema, generations, lost updates, connections, failures."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
import trio

from shoptoken import PersistenceError, Token, TokenKey

from .conftest import pg_execute

psycopg = pytest.importorskip("psycopg")
psycopg_pool = pytest.importorskip("psycopg_pool")

from shoptoken.stores import PostgresStore  # noqa: E402 - after the extras are known present

KEY = TokenKey.offline("my-store")
OTHER = TokenKey.offline("other-store")
TOKEN = Token(
    access_token="shpat_one",
    refresh_token="shprt_one",
    expires_at=datetime(2030, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
)


@attrs.frozen
class Table:
    """A fresh table in the run's schema."""

    dsn: str
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        """The quoted schema.table."""
        return f'"{self.schema}"."{self.name}"'

    def store(self, **kwargs: Any) -> PostgresStore:
        """A PostgresStore on this table."""
        return PostgresStore(self.dsn, schema=self.schema, table=self.name, **kwargs)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of one query (blocking)."""
        with psycopg.connect(self.dsn) as conn:
            rows: list[tuple[Any, ...]] = conn.execute(sql).fetchall()
        return rows


@pytest.fixture
async def table(pg_dsn: str, pg_schema: str) -> Table:
    """A table created with create_schema()."""
    table = Table(pg_dsn, pg_schema, f"t_{secrets.token_hex(4)}")
    async with table.store() as store:
        await store.create_schema()
    return table


async def test_schema_matches_the_documented_sql(table: Table) -> None:
    """create_schema() creates PostgresStore.schema_sql()'s columns and types."""
    columns = table.rows(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"  # noqa: S608 - test names
        f" WHERE table_schema = '{table.schema}' AND table_name = '{table.name}'"
        " ORDER BY ordinal_position"
    )
    assert [c[0] for c in columns] == [
        "key",
        "kind",
        "shop",
        "subject",
        "access_token",
        "refresh_token",
        "scope",
        "expires_at",
        "refresh_token_expires_at",
        "associated_user_id",
        "associated_user_scope",
        "obtained_at",
        "refresh_generation",
        "updated_at",
    ]
    types = {name: kind for name, kind, _ in columns}
    assert types["expires_at"] == types["obtained_at"] == "timestamp with time zone"
    assert types["refresh_generation"] == "bigint"
    assert PostgresStore.schema_sql().startswith("CREATE TABLE IF NOT EXISTS")


async def test_create_schema_is_idempotent_and_concurrent(pg_dsn: str, pg_schema: str) -> None:
    """Many create_schema() calls at once, in a new schema, all succeed."""
    schema = f"{pg_schema}_new"
    stores = [PostgresStore(pg_dsn, schema=schema) for _ in range(4)]
    try:
        async with trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(store.create_schema)
        await stores[0].create_schema()
        await stores[0].save_tokens(KEY, TOKEN)
        assert await stores[1].load_tokens(KEY) == TOKEN
    finally:
        for store in stores:
            await store.aclose()
        await trio.to_thread.run_sync(pg_execute, pg_dsn, f'DROP SCHEMA "{schema}" CASCADE')


async def test_refresh_generation_counts_saves(table: Table) -> None:
    """Every save, plain or locked, increments refresh_generation."""
    async with table.store() as store:
        await store.save_tokens(KEY, TOKEN)
        await store.save_tokens(KEY, TOKEN)
        async with store.locked(KEY, timeout=1.0) as handle:
            await handle.save(TOKEN)
            await handle.save(TOKEN)
    assert table.rows(f"SELECT refresh_generation FROM {table.qualified}") == [(4,)]  # noqa: S608 - test names


async def test_lost_update_on_a_new_key_is_refused(table: Table) -> None:
    """A key inserted by someone else after locked() found no row: the locked save raises."""
    async with table.store() as store, table.store() as other:

        async def race() -> None:
            async with store.locked(KEY, timeout=1.0) as handle:
                assert handle.token is None
                await other.save_tokens(KEY, TOKEN)
                await handle.save(Token(access_token="shpat_late"))

        with pytest.raises(PersistenceError, match="changed after it was locked"):
            await race()
        assert await store.load_tokens(KEY) == TOKEN


async def test_lost_update_on_a_changed_generation_is_refused(table: Table) -> None:
    """A locked save whose read generation no longer matches writes nothing."""
    async with table.store() as store:
        await store.save_tokens(KEY, TOKEN)

        async def stale() -> None:
            async with store.locked(KEY, timeout=1.0) as handle:
                handle._generation = 99  # as if the row had been rewritten meanwhile
                await handle.save(Token(access_token="shpat_late"))

        with pytest.raises(PersistenceError, match="changed after it was locked"):
            await stale()
        assert await store.load_tokens(KEY) == TOKEN


async def test_connections_come_back(table: Table) -> None:
    """After cancelled, failed and finished locked() blocks every connection is back and idle."""
    async with table.store(max_connections=2) as store, table.store() as other:
        await store.save_tokens(KEY, TOKEN)
        async with other.locked(KEY, timeout=1.0):
            for _ in range(3):  # cancelled while waiting for the row lock
                with trio.move_on_after(0.05):
                    async with store.locked(KEY, timeout=5.0):
                        pytest.fail("granted while held")
        for _ in range(3):  # cancelled while holding it
            with trio.move_on_after(0.05):
                async with store.locked(KEY, timeout=1.0) as handle:
                    await handle.save(Token(access_token="shpat_rolled_back"))
                    await trio.sleep_forever()
        assert store._connections.slots.value == 2
        stats = store._connections.pool.get_stats()
        assert stats["pool_available"] == stats["pool_size"]
        assert await other.load_tokens(KEY) == TOKEN
        with trio.fail_after(1.0):
            async with other.locked(KEY, timeout=0.5):
                pass


async def test_recovers_from_dropped_connections(table: Table) -> None:
    """Connections the server dropped while pooled (restart, failover) are replaced unseen."""
    async with table.store(max_connections=1) as store:
        await store.save_tokens(KEY, TOKEN)

        def drop_the_pooled_connection() -> None:
            with store._connections.pool.connection() as conn:
                pid = conn.info.backend_pid
            pg_execute(table.dsn, "SELECT pg_terminate_backend(%s)", (pid,))

        drop_the_pooled_connection()
        assert await store.load_tokens(KEY) == TOKEN
        drop_the_pooled_connection()
        async with store.locked(KEY, timeout=1.0) as handle:
            assert handle.token == TOKEN


async def test_borrowed_autocommit_pool(table: Table) -> None:
    """A pool passed in (of autocommit connections, even) still locks, and is left as found."""
    pool: Any = psycopg_pool.ConnectionPool(
        table.dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
    )
    await trio.to_thread.run_sync(pool.open)
    try:
        async with (
            PostgresStore(pool, schema=table.schema, table=table.name) as store,
            table.store() as other,
        ):
            await store.save_tokens(KEY, TOKEN)
            async with store.locked(KEY, timeout=1.0) as handle:
                await handle.save(Token(access_token="shpat_two"))
                with pytest.raises(Exception, match="not granted"):
                    async with other.locked(KEY, timeout=0.2):
                        pass
            assert await other.load_tokens(KEY) == Token(access_token="shpat_two")
        assert not pool.closed
        with pool.connection() as conn:
            assert conn.autocommit
    finally:
        await trio.to_thread.run_sync(pool.close)


async def test_lock_hold_timeout_frees_a_stuck_holder(table: Table) -> None:
    """A holder idle past lock_hold_timeout loses its session and lock; its commit fails."""
    async with table.store(lock_hold_timeout=0.3) as store, table.store() as other:
        await store.save_tokens(KEY, TOKEN)
        async with trio.open_nursery() as nursery:

            async def hold() -> None:
                async with store.locked(KEY, timeout=1.0) as handle:
                    await handle.save(Token(access_token="shpat_stuck"))
                    await trio.sleep(0.8)

            async def stuck() -> None:
                with pytest.raises(PersistenceError, match="commit"):
                    await hold()

            nursery.start_soon(stuck)
            await trio.sleep(0.05)
            start = trio.current_time()
            async with other.locked(KEY, timeout=2.0) as handle:
                assert 0.1 < trio.current_time() - start < 1.0
                assert handle.token == TOKEN


async def test_missing_table_names_the_fix(pg_dsn: str, pg_schema: str) -> None:
    """Using a table that does not exist says how to create it."""
    async with PostgresStore(pg_dsn, schema=pg_schema, table="never_created") as store:
        with pytest.raises(PersistenceError, match=r"42P01.*create_schema"):
            await store.load_tokens(KEY)


async def test_a_table_of_an_earlier_version_names_the_fix_and_upgrades(table: Table) -> None:
    """A table without obtained_at: reads say how to upgrade; create_schema() upgrades it."""
    token = attrs.evolve(TOKEN, obtained_at=datetime(2029, 12, 31, 23, 0, tzinfo=UTC))
    async with table.store() as store:
        await store.save_tokens(KEY, TOKEN)
        pg_execute(table.dsn, f"ALTER TABLE {table.qualified} DROP COLUMN obtained_at")
        with pytest.raises(PersistenceError, match=r"42703.*earlier shoptoken.*create_schema"):
            await store.load_tokens(KEY)
        await store.create_schema()
        await store.create_schema()  # idempotent
        assert await store.load_tokens(KEY) == TOKEN
        await store.save_tokens(KEY, token)
        assert await store.load_tokens(KEY) == token


async def test_errors_never_quote_a_row(table: Table) -> None:
    """A constraint violation's message (whose DETAIL quotes the row) leaks no token."""
    pg_execute(
        table.dsn,
        f"ALTER TABLE {table.qualified} ADD CHECK (length(access_token) < 5)",
    )
    async with table.store() as store:
        with pytest.raises(PersistenceError, match="23514") as info:
            await store.save_tokens(KEY, TOKEN)
    error = info.value
    assert "shpat_one" not in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


async def test_unreachable_server() -> None:
    """No server: PersistenceError with the refusal at once, not after busy_timeout."""
    async with PostgresStore("postgresql://postgres@127.0.0.1:9/test", busy_timeout=30) as store:
        start = trio.current_time()
        with pytest.raises(PersistenceError, match=r"PostgreSQL connection failed.*refused"):
            await store.load_tokens(KEY)
        assert trio.current_time() - start < 3.0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"table": "x; DROP TABLE y"}, ValueError),
        ({"schema": "bad-name"}, ValueError),
        ({"max_connections": 0}, ValueError),
        ({"busy_timeout": 0}, ValueError),
        ({"lock_hold_timeout": -1.0}, ValueError),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Bad constructor arguments raise at once."""
    with pytest.raises(error):
        PostgresStore("postgresql://localhost/x", **kwargs)


def test_repr_hides_the_dsn() -> None:
    """The store's repr never shows the connection string (it may hold a password)."""
    store = PostgresStore("postgresql://user:hunter2@localhost/x")
    assert "hunter2" not in repr(store)
