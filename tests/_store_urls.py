"""Store URLs for tests that hand a store to other processes: a SQLite file, a PostgreSQL schema."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

DSN = os.environ.get("SHOPTOKEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@asynccontextmanager
async def postgres_url(prefix: str) -> AsyncIterator[str]:
    """A fresh schema on the test server (skipped if unreachable, failed with CI=true)."""
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = await trio.to_thread.run_sync(lambda: psycopg.connect(DSN, connect_timeout=3))
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {DSN} is unreachable with CI=true: {type(exc).__name__}")
        pytest.skip(f"PostgreSQL at {DSN} is unreachable; set SHOPTOKEN_TEST_POSTGRES")
    schema = f"{prefix}_{secrets.token_hex(4)}"
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.commit()
        try:
            yield f"{DSN}?schema={schema}"
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            conn.commit()


@asynccontextmanager
async def store_url(backend: str, tmp_path: Path, prefix: str) -> AsyncIterator[str]:
    """The URL of an empty store: ``sqlite`` (a file in ``tmp_path``) or ``postgres``."""
    if backend == "postgres":
        async with postgres_url(prefix) as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'tokens.db'}"
