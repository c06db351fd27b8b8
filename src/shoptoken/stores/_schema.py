"""The SQL of the two SQL stores: one table, the same columns, each database's types.

Table and schema names are validated identifiers, always double-quoted, so
no statement here is ever built from untrusted text.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from . import _codec

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
DEFAULT_TABLE: Final = "shoptoken_tokens"


def quoted(name: object, what: str) -> str:
    """``"name"``, after checking it is a plain identifier.

    Raises:
        ValueError: ``name`` is not ``[A-Za-z_][A-Za-z0-9_]*`` (at most 63 long).
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        msg = f"{what} must be a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63)"
        raise ValueError(msg)
    return f'"{name}"'


def sqlite_table(table: str = DEFAULT_TABLE) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of `SQLiteStore`'s table."""
    return f"""CREATE TABLE IF NOT EXISTS {quoted(table, "table")} (
    key                      TEXT PRIMARY KEY NOT NULL,  -- str(TokenKey)
    kind                     TEXT NOT NULL,     -- offline | online | customer
    shop                     TEXT NOT NULL,     -- name.myshopify.com
    subject                  TEXT,              -- user id / customer id, NULL offline
    access_token             TEXT NOT NULL,
    refresh_token            TEXT,
    scope                    TEXT NOT NULL,
    expires_at               INTEGER,           -- microseconds since 1970-01-01 UTC
    refresh_token_expires_at INTEGER,           -- microseconds since 1970-01-01 UTC
    associated_user_id       INTEGER,
    associated_user_scope    TEXT,
    obtained_at              INTEGER,           -- microseconds since 1970-01-01 UTC
    generation               INTEGER NOT NULL DEFAULT 1,  -- +1 on every save
    updated_at               INTEGER NOT NULL   -- microseconds since 1970-01-01 UTC
)"""


def postgres_table(table: str = DEFAULT_TABLE, schema: str | None = None) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of `PostgresStore`'s table."""
    return f"""CREATE TABLE IF NOT EXISTS {qualified(table, schema)} (
    key                      text PRIMARY KEY,   -- str(TokenKey)
    kind                     text NOT NULL,      -- offline | online | customer
    shop                     text NOT NULL,      -- name.myshopify.com
    subject                  text,               -- user id / customer id, NULL offline
    access_token             text NOT NULL,
    refresh_token            text,
    scope                    text NOT NULL,
    expires_at               timestamptz,
    refresh_token_expires_at timestamptz,
    associated_user_id       bigint,
    associated_user_scope    text,
    obtained_at              timestamptz,
    refresh_generation       bigint NOT NULL DEFAULT 1,  -- +1 on every save
    updated_at               timestamptz NOT NULL DEFAULT now()
)"""


def qualified(table: str, schema: str | None) -> str:
    """The quoted ``"schema"."table"`` (or just ``"table"``)."""
    name = quoted(table, "table")
    return name if schema is None else f"{quoted(schema, 'schema')}.{name}"


_READ: Final = ", ".join(_codec.READ_COLUMNS)
_WRITE: Final = ", ".join(_codec.WRITE_COLUMNS)
# What a read of a table not yet upgraded asks for: NULL in the newest column.
_READ_BEFORE_UPGRADE: Final = ", ".join(
    "NULL" if c == _codec.OBTAINED_AT else c for c in _codec.READ_COLUMNS
)


@attrs.frozen
class SQLiteStatements:
    """`SQLiteStore`'s statements for one table."""

    create: str
    upgrade: str
    """Adds the ``obtained_at`` column to a table created before it."""
    select: str
    select_before_upgrade: str
    """`select` on a table without ``obtained_at`` (read-only: never upgrades)."""
    upsert: str
    delete: str
    page: str
    delete_shop: str
    delete_shop_before: str
    #: Followed by ``(?, ?, ...)``: the rows of many keys, each with its key first.
    select_many: str
    select_many_before_upgrade: str

    @classmethod
    def build(cls, table: str) -> SQLiteStatements:
        """The statements on ``table`` (validated here)."""
        name = quoted(table, "table")
        marks = ", ".join("?" for _ in _codec.WRITE_COLUMNS)
        excluded = ", ".join(f"{c} = excluded.{c}" for c in _codec.WRITE_COLUMNS[1:])
        return cls(
            create=sqlite_table(table),
            upgrade=f"ALTER TABLE {name} ADD COLUMN {_codec.OBTAINED_AT} INTEGER",
            select=f"SELECT {_READ} FROM {name} WHERE key = ?",  # noqa: S608 - quoted identifier
            select_before_upgrade=f"SELECT {_READ_BEFORE_UPGRADE} FROM {name} WHERE key = ?",  # noqa: S608 - quoted identifier
            upsert=(
                f"INSERT INTO {name} ({_WRITE}, generation, updated_at)"  # noqa: S608 - quoted identifier
                f" VALUES ({marks}, 1, ?) ON CONFLICT (key) DO UPDATE SET {excluded},"
                " generation = generation + 1, updated_at = excluded.updated_at"
            ),
            delete=f"DELETE FROM {name} WHERE key = ?",  # noqa: S608 - quoted identifier
            page=f"SELECT key FROM {name} WHERE key > ? ORDER BY key LIMIT ?",  # noqa: S608 - quoted identifier
            delete_shop=f"DELETE FROM {name} WHERE shop = ? RETURNING key",  # noqa: S608 - quoted identifier
            delete_shop_before=(
                f"DELETE FROM {name} WHERE shop = ?"  # noqa: S608 - quoted identifier
                " AND (obtained_at IS NULL OR obtained_at < ?) RETURNING key"
            ),
            select_many=f"SELECT key, {_READ} FROM {name} WHERE key IN ",  # noqa: S608 - quoted identifier
            select_many_before_upgrade=(
                f"SELECT key, {_READ_BEFORE_UPGRADE} FROM {name} WHERE key IN "  # noqa: S608 - quoted identifier
            ),
        )


@attrs.frozen
class PostgresStatements:
    """`PostgresStore`'s statements for one table."""

    create: str
    create_schema: str | None
    upgrade: str
    """Adds the ``obtained_at`` column to a table created before it (idempotent)."""
    select: str
    lock: str
    upsert: str
    insert_locked: str
    update_locked: str
    delete: str
    page: str
    delete_shop: str
    delete_shop_before: str
    #: The rows of many keys (an array parameter), each with its key first.
    select_many: str

    @classmethod
    def build(cls, table: str, schema: str | None) -> PostgresStatements:
        """The statements on ``schema.table`` (validated here)."""
        name = qualified(table, schema)
        marks = ", ".join("%s" for _ in _codec.WRITE_COLUMNS)
        sets = ", ".join(f"{c} = %s" for c in _codec.WRITE_COLUMNS[1:])
        excluded = ", ".join(f"{c} = EXCLUDED.{c}" for c in _codec.WRITE_COLUMNS[1:])
        insert = (
            f"INSERT INTO {name} AS t ({_WRITE}, refresh_generation, updated_at)"  # noqa: S608 - quoted identifier
            f" VALUES ({marks}, 1, now())"
        )
        return cls(
            create=postgres_table(table, schema),
            create_schema=(
                None
                if schema is None
                else f"CREATE SCHEMA IF NOT EXISTS {quoted(schema, 'schema')}"
            ),
            upgrade=(
                f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {_codec.OBTAINED_AT} timestamptz"
            ),
            select=f"SELECT {_READ} FROM {name} WHERE key = %s",  # noqa: S608 - quoted identifier
            lock=f"SELECT {_READ}, refresh_generation FROM {name} WHERE key = %s FOR UPDATE",  # noqa: S608 - quoted identifier
            upsert=(
                f"{insert} ON CONFLICT (key) DO UPDATE SET {excluded},"
                " refresh_generation = t.refresh_generation + 1, updated_at = now()"
            ),
            insert_locked=f"{insert} ON CONFLICT (key) DO NOTHING RETURNING refresh_generation",
            update_locked=(
                f"UPDATE {name} SET {sets}, refresh_generation = refresh_generation + 1,"  # noqa: S608 - quoted identifier
                " updated_at = now() WHERE key = %s AND refresh_generation = %s"
                " RETURNING refresh_generation"
            ),
            delete=f"DELETE FROM {name} WHERE key = %s",  # noqa: S608 - quoted identifier
            page=f"SELECT key FROM {name} WHERE key > %s ORDER BY key LIMIT %s",  # noqa: S608 - quoted identifier
            delete_shop=f"DELETE FROM {name} WHERE shop = %s RETURNING key",  # noqa: S608 - quoted identifier
            delete_shop_before=(
                f"DELETE FROM {name} WHERE shop = %s"  # noqa: S608 - quoted identifier
                " AND (obtained_at IS NULL OR obtained_at < %s) RETURNING key"
            ),
            select_many=f"SELECT key, {_READ} FROM {name} WHERE key = ANY(%s)",  # noqa: S608 - quoted identifier
        )
