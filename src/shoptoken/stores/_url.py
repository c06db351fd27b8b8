"""store_from_url: a store chosen by configuration (``SHOPTOKEN_STORE=sqlite:///tokens.db``)."""

from __future__ import annotations

import os
import re
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import trio

from ._memory import MemoryStore
from ._sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._protocol import Store

#: Query parameters read by `store_from_url` itself (all others go to libpq).
_OURS: Final = (
    "busy_timeout",
    "connect_timeout",
    "encrypt_key_env",
    "lock_hold_timeout",
    "max_connections",
    "schema",
    "table",
)
_MAX_POOL: Final = 10_000
_STORE_ONLY: Final = frozenset(_OURS) - {"encrypt_key_env"}
_POSTGRES_ONLY: Final = frozenset(
    {"schema", "max_connections", "lock_hold_timeout", "connect_timeout"}
)
_EXPECTED: Final = "expected memory://, sqlite:///PATH or postgresql://..."
_KNOWN_HINT: Final = (
    "ours are table, schema, max_connections, busy_timeout, lock_hold_timeout,"
    " connect_timeout and encrypt_key_env; others must be libpq's (docs/stores.md)"
)


def store_from_url(url: str) -> Store:
    """Build the store a URL names.

    - ``memory://``: a `MemoryStore`.
    - ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``: a
      `SQLiteStore` (``?table=NAME``).
    - ``postgresql://...`` or ``postgres://...``: a `PostgresStore` on that
      libpq URL (``?table=NAME&schema=NAME&max_connections=N``, N the pool
      size, and the store's ``busy_timeout``, ``lock_hold_timeout`` (or
      ``none``) and ``connect_timeout`` in seconds; other parameters, such
      as ``sslmode``, go to libpq, which must know them). Its table must
      exist (`PostgresStore.create_schema`).
    - ``busy_timeout`` also applies to ``sqlite:``.
    - ``?encrypt_key_env=NAME`` on any of them wraps the store in an
      `EncryptedStore` with the keys in environment variable NAME
      (``kid:BASE64[,kid:BASE64...]``, see `EncryptedStore.parse_keys`).

    SQLite and PostgreSQL stores hold connections: close them with
    ``aclose()``, or use `open_store`.

    Raises:
        ValueError: Unknown scheme, malformed URL or parameters, or a missing
            key variable. Messages never repeat the URL (it may hold a password).
    """
    if not isinstance(url, str):
        msg = f"store URL must be a str, not {type(url).__name__}"
        raise TypeError(msg)
    parts = urlsplit(url)
    params, passed = _parameters(parts.query)
    store = _plain_store(parts, params, passed)
    variable = params.get("encrypt_key_env")
    if variable is None:
        return store
    from ._encrypted import EncryptedStore  # noqa: PLC0415 - needs the optional crypto extra

    text = os.environ.get(variable)
    if not text:
        msg = f"environment variable {variable[:100]!a} (encrypt_key_env) is not set"
        raise ValueError(msg)
    return EncryptedStore(store, EncryptedStore.parse_keys(text))


def _parameters(query: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Our parameters, and the others (for libpq)."""
    ours: dict[str, str] = {}
    others: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _OURS:
            others.append((name, value))
        elif name in ours:
            msg = f"store URL parameter {name!r} is given twice"
            raise ValueError(msg)
        else:
            ours[name] = value
    return ours, others


def _plain_store(
    parts: SplitResult, params: dict[str, str], passed: list[tuple[str, str]]
) -> Store:
    scheme = parts.scheme.lower()
    table = params.get("table") or "shoptoken_tokens"
    if scheme == "memory":
        if parts.netloc or parts.path.strip("/") or passed or _STORE_ONLY & params.keys():
            msg = "memory:// takes no path or parameters other than encrypt_key_env"
            raise ValueError(msg)
        return MemoryStore()
    if scheme == "sqlite":
        path = unquote(parts.path[1:])  # sqlite:///a.db -> "a.db"; sqlite:////a.db -> "/a.db"
        if parts.netloc or not path or passed or _POSTGRES_ONLY & params.keys():
            msg = (
                "SQLite store URLs are sqlite:///relative.db or sqlite:////absolute/path.db,"
                " with optional ?table=NAME&busy_timeout=SECONDS&encrypt_key_env=NAME"
            )
            raise ValueError(msg)
        busy = _seconds(params, "busy_timeout")
        return SQLiteStore(path, table=table, busy_timeout=30.0 if busy is None else busy)
    if scheme in {"postgresql", "postgres"}:
        from ._postgres import PostgresStore  # noqa: PLC0415 - needs the optional postgres extra

        conninfo = urlunsplit(parts._replace(query=urlencode(passed)))
        _check_libpq_url(conninfo, parts)
        busy = _seconds(params, "busy_timeout")
        hold = params.get("lock_hold_timeout", "")
        return PostgresStore(
            conninfo,
            table=table,
            schema=params.get("schema") or None,
            max_connections=_pool_size(params.get("max_connections")),
            busy_timeout=30.0 if busy is None else busy,
            lock_hold_timeout=None
            if hold.lower() == "none"
            else _seconds(params, "lock_hold_timeout", 120.0),
            connect_timeout=_seconds(params, "connect_timeout"),
        )
    msg = f"unsupported store URL scheme {scheme!a}: {_EXPECTED}"
    raise ValueError(msg)


def _seconds(params: dict[str, str], name: str, default: float | None = None) -> float | None:
    """Parameter ``name`` as a positive number of seconds (``default`` when absent)."""
    text = params.get(name)
    if text is None:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        msg = f"store URL parameter {name} must be a positive number of seconds"
        raise ValueError(msg)
    return seconds


def _check_libpq_url(conninfo: str, parts: SplitResult) -> None:
    """Refuse what libpq would refuse (an unknown parameter, a malformed URL) up front.

    Raises:
        ValueError: libpq's reason, without the URL's password.
    """
    from ._pg_pool import psycopg  # noqa: PLC0415 - needs the optional postgres extra

    try:
        psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        reason = str(exc).strip().split("\n", 1)[0]
        unknown = re.fullmatch(r'invalid URI query parameter: "(.*)"', reason)
        if unknown:
            msg = f'unknown PostgreSQL URL parameter "{unknown.group(1)[:100]}"'
            raise ValueError(f"{msg}: {_KNOWN_HINT}") from None
        for secret in {parts.password, _raw_password(parts)} - {None, ""}:
            reason = reason.replace(str(secret), "***")
        raise ValueError(f"malformed PostgreSQL URL: {reason}") from None


def _raw_password(parts: SplitResult) -> str | None:
    """The password as written in the URL (still percent-encoded)."""
    userinfo, at, _host = parts.netloc.rpartition("@")
    return userinfo.partition(":")[2] if at else None


def _pool_size(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= _MAX_POOL:
        msg = f"store URL parameter max_connections must be a whole number from 1 to {_MAX_POOL}"
        raise ValueError(msg)
    return int(text)


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """`store_from_url` as an async context manager that closes the store on exit.

    Yields:
        The store, typed as a `Store`: every capability, ``create_schema()``
        and ``aclose()``.

    Raises:
        ValueError: As `store_from_url`.
    """
    store = store_from_url(url)
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
