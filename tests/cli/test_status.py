"""``shoptoken status`` on a real SQLite file: every state, as a table and as JSON."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from shoptoken import Token, TokenKey
from shoptoken.stores import EncryptedStore, SQLiteStore

from .conftest import Cli, save


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(time.time() + seconds, UTC)


DAY = 86400.0


def _states() -> dict[TokenKey, tuple[Token, str]]:
    """Tokens in every state, dated from now, and the state each must show."""
    return {
        TokenKey.offline("fresh-shop"): (
            Token("shpat_fake_a", "shprt_fake_a", "read_orders", _at(3000), _at(80 * DAY)),
            "fresh",
        ),
        TokenKey.offline("stale-shop"): (
            Token("shpat_fake_b", "shprt_fake_b", "", _at(200), _at(80 * DAY)),
            "stale",
        ),
        TokenKey.offline("expired-shop"): (
            Token("shpat_fake_c", "shprt_fake_c", "", _at(-100), _at(80 * DAY)),
            "expired",
        ),
        TokenKey.offline("dead-shop"): (
            Token("shpat_fake_d", "shprt_fake_d", "", _at(-100), _at(-DAY)),
            "needs re-auth",
        ),
        TokenKey.offline("legacy-shop"): (
            Token("shpat_fake_e", scope="read_orders"),
            "non-expiring",
        ),
        TokenKey.online("fresh-shop", 42): (Token("shpua_fake_f", None, "", _at(3000)), "fresh"),
        TokenKey.online("stale-shop", 7): (
            Token("shpua_fake_g", None, "", _at(-5)),
            "needs re-auth",
        ),
    }


def _seed(db: str) -> dict[TokenKey, tuple[Token, str]]:
    states = _states()
    save(db, {key: token for key, (token, _) in states.items()})
    return states


def test_json_lists_every_key_with_its_state(offline_cli: Cli, db: str) -> None:
    """--json gives one object per key: state, kind and expiries, and no token."""
    states = _seed(db)
    result = offline_cli.invoke("status", "--json", "--store", db)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["key"]: row["state"] for row in rows} == {
        str(key): state for key, (_, state) in states.items()
    }
    fresh = next(row for row in rows if row["key"] == "offline:fresh-shop.myshopify.com")
    assert fresh["kind"] == "offline"
    assert fresh["scope"] == "read_orders"
    assert 2990 < fresh["expires_in"] <= 3000
    assert 80 * DAY - 10 < fresh["refresh_token_expires_in"] <= 80 * DAY
    assert datetime.fromisoformat(fresh["expires_at"]) > datetime.now(UTC)
    legacy = next(row for row in rows if row["key"] == "offline:legacy-shop.myshopify.com")
    assert legacy["expires_in"] is None
    assert legacy["refreshable"] is False
    online = next(row for row in rows if row["kind"] == "online" and row["subject"] == "42")
    assert online["shop"] == "fresh-shop.myshopify.com"


def test_table_shows_each_key_and_a_total(offline_cli: Cli, db: str) -> None:
    """The table has a row per key with its state, and a line of totals."""
    states = _seed(db)
    result = offline_cli.invoke("status", "--store", db)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    for key, (_, state) in states.items():
        row = next(line for line in lines if f" {key} " in line)
        assert f" {state} " in row
    assert "never" in next(line for line in lines if "legacy-shop" in line)
    assert lines[-1] == ("7 keys: 2 fresh, 1 stale, 1 expired, 2 needs re-auth, 1 non-expiring")


def test_policy_options_move_the_stale_line(offline_cli: Cli, db: str) -> None:
    """--refresh-before decides which tokens count as stale, as it does for `run`."""
    _seed(db)
    result = offline_cli.invoke(
        "status", "--json", "--store", db, "--refresh-before", "100", "--jitter", "0"
    )
    states = {row["key"]: row["state"] for row in json.loads(result.stdout)}
    assert states["offline:stale-shop.myshopify.com"] == "fresh"


def test_a_lead_beyond_half_the_lifetime_is_stale_at_mid_life_as_for_run(
    offline_cli: Cli, db: str
) -> None:
    """With --refresh-before above half the lifetime, a token is fresh until mid-life.

    That is when `run` refreshes it (the one rule of tests/core/test_refresh_time.py).
    """
    young, old = TokenKey.offline("young-shop"), TokenKey.offline("old-shop")
    save(
        db,
        {
            key: Token("shpat_fake_h", "shprt_fake_h", "", _at(3600 - age), obtained_at=_at(-age))
            for key, age in ((young, 1000.0), (old, 2000.0))
        },
    )
    result = offline_cli.invoke(
        "status", "--json", "--store", db, "--refresh-before", "3000", "--jitter", "0"
    )
    states = {row["key"]: row["state"] for row in json.loads(result.stdout)}
    assert states == {str(young): "fresh", str(old): "stale"}


def test_empty_store(offline_cli: Cli, db: str) -> None:
    """An empty store says so; its JSON is an empty array."""
    save(db, {})
    assert offline_cli.invoke("status", "--store", db).stdout.startswith("No tokens in sqlite://")
    assert json.loads(offline_cli.invoke("status", "--json", "--store", db).stdout) == []


def test_encrypted_store(offline_cli: Cli, db: str) -> None:
    """With SHOPTOKEN_ENCRYPTION_KEY an encrypted store reads as any other (expiries are clear)."""
    text = EncryptedStore.format_key("k1", EncryptedStore.generate_key())
    offline_cli.secrets.append(text.split(":", 1)[1])
    key, (token, _) = next(iter(_states().items()))

    async def seed() -> None:
        inner = SQLiteStore(db.removeprefix("sqlite:///"))
        async with EncryptedStore(inner, EncryptedStore.parse_keys(text)) as store:
            await store.save_tokens(key, token)

    trio.run(seed)
    env = {"SHOPTOKEN_ENCRYPTION_KEY": text}
    result = offline_cli.invoke("status", "--json", "--store", db, env=env)
    assert [(row["key"], row["state"]) for row in json.loads(result.stdout)] == [
        (str(key), "fresh")
    ]
    wrong = EncryptedStore.format_key("k1", EncryptedStore.generate_key())
    offline_cli.secrets.append(wrong.split(":", 1)[1])
    refused = offline_cli.invoke("status", "--store", db, env={"SHOPTOKEN_ENCRYPTION_KEY": wrong})
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: ")


def test_status_never_writes(offline_cli: Cli, db: str) -> None:
    """`shoptoken status` on an empty SQLite file writes nothing: no table, no WAL files."""
    path = Path(db.removeprefix("sqlite:///"))
    path.touch()
    assert offline_cli.invoke("status", "--store", db).stdout.startswith("No tokens in sqlite://")
    assert json.loads(offline_cli.invoke("status", "--json", "--store", db).stdout) == []
    assert path.stat().st_size == 0
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_unreachable_postgres_fails_fast(offline_cli: Cli) -> None:
    """Status on a closed PostgreSQL port: one line with the cause, exit 1, no 30 s wait."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    result = offline_cli.invoke("status", "--store", f"postgresql://postgres:pw@127.0.0.1:{port}/x")
    assert time.monotonic() - start < 10
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "Connection refused" in lines[0]
    assert "pw" not in lines[0]


def test_misspelt_postgres_parameter_is_a_usage_error(offline_cli: Cli) -> None:
    """A URL parameter libpq does not know is refused before any connection."""
    pytest.importorskip("psycopg")
    result = offline_cli.invoke("status", "--store", "postgresql://u:pw@127.0.0.1/x?shema=app")
    assert result.exit_code == 2
    assert 'unknown PostgreSQL URL parameter "shema"' in result.stderr
