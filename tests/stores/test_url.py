"""store_from_url and open_store: which store a URL names, and refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoptoken import MemoryStore, Token, TokenCallback, TokenKey
from shoptoken.stores import EncryptedStore, PostgresStore, SQLiteStore, open_store, store_from_url

KEY = TokenKey.offline("my-store")
TOKEN = Token(access_token="shpat_x", refresh_token="shprt_x")


def test_memory() -> None:
    """memory:// is a MemoryStore."""
    assert isinstance(store_from_url("memory://"), MemoryStore)


def test_sqlite_relative_and_absolute() -> None:
    """Three slashes: a relative path; four: an absolute one; ?table= is passed on."""
    relative = store_from_url("sqlite:///data/tokens.db?table=app_tokens")
    assert isinstance(relative, SQLiteStore)
    assert (relative._path, relative._table) == ("data/tokens.db", "app_tokens")
    absolute = store_from_url("sqlite:////var/lib/app/tokens.db")
    assert isinstance(absolute, SQLiteStore)
    assert absolute._path == "/var/lib/app/tokens.db"


async def test_sqlite_url_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative sqlite URL opens a file relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    async with open_store("sqlite:///tokens.db") as store:
        await store.save_tokens(KEY, TOKEN)
    async with open_store(f"sqlite:///{tmp_path}/tokens.db") as store:
        assert await store.load_tokens(KEY) == TOKEN
    assert (tmp_path / "tokens.db").exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_parameters(scheme: str) -> None:
    """Our parameters are taken out; libpq's stay in the connection string."""
    store = store_from_url(f"{scheme}://u:pw@db:5432/app?sslmode=require&schema=s&table=t")
    assert isinstance(store, PostgresStore)
    assert (store._schema, store._table) == ("s", "t")
    assert store._connections.pool.conninfo == f"{scheme}://u:pw@db:5432/app?sslmode=require"


async def test_postgres_url_works(pg_dsn: str, pg_schema: str) -> None:
    """A postgresql:// URL gives a working store."""
    async with open_store(f"{pg_dsn}?schema={pg_schema}&table=from_url") as store:
        assert isinstance(store, PostgresStore)
        await store.create_schema()
        await store.save_tokens(KEY, TOKEN)
        assert await store.load_tokens(KEY) == TOKEN


async def test_encryption_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """?encrypt_key_env=NAME wraps the store with the keys in $NAME."""
    keys = EncryptedStore.format_key("k1", EncryptedStore.generate_key())
    monkeypatch.setenv("APP_TOKEN_KEYS", keys)
    url = f"sqlite:///{tmp_path}/tokens.db?encrypt_key_env=APP_TOKEN_KEYS"
    async with open_store(url) as store:
        assert isinstance(store, EncryptedStore)
        await store.save_tokens(KEY, TOKEN)
        assert await store.load_tokens(KEY) == TOKEN
    async with open_store(f"sqlite:///{tmp_path}/tokens.db") as raw:
        stored = await raw.load_tokens(KEY)
        assert stored is not None
        assert stored.access_token.startswith("v1:k1:")
    assert isinstance(store_from_url("memory://?encrypt_key_env=APP_TOKEN_KEYS"), EncryptedStore)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis://u:hunter2@host/0", "unsupported store URL scheme 'redis'"),
        ("tokens.db", "unsupported store URL scheme ''"),
        ("sqlite://host/tokens.db", "sqlite:///relative.db"),
        ("sqlite:///", "sqlite:///relative.db"),
        ("sqlite:///t.db?mode=ro", "sqlite:///relative.db"),
        ("memory://x", "memory://"),
        ("memory://?table=t", "memory://"),
        ("sqlite:///t.db?table=a&table=b", "twice"),
        ("sqlite:///t.db?table=bad-name", "identifier"),
        ("memory://?encrypt_key_env=SHOPTOKEN_TEST_UNSET_VARIABLE", "is not set"),
    ],
)
def test_refusals(url: str, match: str) -> None:
    """Bad URLs raise a one-line ValueError that never repeats the URL's password."""
    os.environ.pop("SHOPTOKEN_TEST_UNSET_VARIABLE", None)
    with pytest.raises(ValueError, match=match) as info:
        store_from_url(url)
    assert "\n" not in str(info.value)
    assert "hunter2" not in str(info.value)


def test_postgres_pool_size_comes_from_the_url() -> None:
    """max_connections sizes a PostgresStore's pool; a bad value is a one-line ValueError."""
    pytest.importorskip("psycopg")
    store = store_from_url("postgresql://postgres@127.0.0.1/test?max_connections=3")
    assert type(store).__name__ == "PostgresStore"
    for bad in ("0", "x", "-1", "10001"):
        with pytest.raises(ValueError, match="max_connections"):
            store_from_url(f"postgresql://postgres@127.0.0.1/test?max_connections={bad}")
    with pytest.raises(ValueError, match="SQLite"):
        store_from_url("sqlite:///a.db?max_connections=2")


@pytest.mark.parametrize("scheme", ["memory://", "sqlite:///tokens.db", "encrypted"])
async def test_open_store_yields_a_full_store(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_store's store has create_schema, aclose and every capability, with no cast."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_TOKEN_KEYS", EncryptedStore.format_key("k", bytes(32)))
    url = "sqlite:///tokens.db?encrypt_key_env=APP_TOKEN_KEYS" if scheme == "encrypted" else scheme
    async with open_store(url) as store:
        assert isinstance(store, TokenCallback)
        await store.create_schema()
        await store.save_tokens(KEY, TOKEN)
        async with store.locked(KEY, timeout=1) as handle:
            assert handle.token == TOKEN
        assert [key async for key in store.list_keys()] == [KEY]
        await store.delete_tokens(KEY)
        assert await store.load_tokens(KEY) is None
