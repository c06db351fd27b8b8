"""The command's small pure helpers: durations, URLs, states, error folding."""

from __future__ import annotations

import click
import pytest
import trio

from shoptoken import NoToken, RefreshPolicy, Token, TokenKey
from shoptoken.cli._display import State, format_duration, token_state
from shoptoken.cli._errors import one_line, run_trio
from shoptoken.cli._options import redact_url, sqlite_path
from shoptoken.testing import EPOCH


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "never"),
        (4.25, "4.2s"),
        (-3.0, "3.0s ago"),
        (42.4, "42s"),
        (725, "12m 5s"),
        (5 * 3600 + 180, "5h 3m"),
        (89 * 86400 + 23 * 3600, "89d 23h"),
        (-2 * 86400, "2d 0h ago"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    """Durations read at a glance, in the largest two units."""
    assert format_duration(seconds) == text


def test_redact_url() -> None:
    """Only scheme, host, port and path are shown: no password, no parameters."""
    assert redact_url("postgresql://app:pw@db.internal:5432/tokens?sslmode=require&password=x") == (
        "postgresql://db.internal:5432/tokens"
    )
    assert redact_url("sqlite:///data/tokens.db?table=t") == "sqlite:///data/tokens.db"


def test_sqlite_path() -> None:
    """The file of a sqlite URL, as store_from_url reads it; None for other stores."""
    assert sqlite_path("sqlite:///rel/tokens.db") == "rel/tokens.db"
    assert sqlite_path("SQLITE:////abs/my%20tokens.db?table=x") == "/abs/my tokens.db"
    assert sqlite_path("postgresql://db/app") is None


def test_token_state_follows_the_manager() -> None:
    """The states are the decision table's rows, under the given policy."""
    from datetime import UTC, datetime, timedelta

    key = TokenKey.offline("shop")
    policy = RefreshPolicy(refresh_before=300, jitter=0, skew=60)
    now = EPOCH
    at = datetime.fromtimestamp(now, UTC)

    def token(expires: float | None, refresh: str | None = "r", dead: bool = False) -> Token:
        return Token(
            "a",
            refresh,
            expires_at=None if expires is None else at + timedelta(seconds=expires),
            refresh_token_expires_at=at - timedelta(seconds=1) if dead else None,
        )

    assert token_state(token(400), key, now, policy) is State.FRESH
    assert token_state(token(200), key, now, policy) is State.STALE
    assert token_state(token(30), key, now, policy) is State.EXPIRED
    assert token_state(token(400, dead=True), key, now, policy) is State.NEEDS_REAUTH
    assert token_state(token(30, refresh=None), key, now, policy) is State.NEEDS_REAUTH
    assert token_state(token(None, refresh=None), key, now, policy) is State.NON_EXPIRING


def test_one_line() -> None:
    """Whitespace folds to single spaces; long text is cut."""
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 400, limit=10) == "xxxxxxx..."


def test_run_trio_reports_expected_failures_in_one_line() -> None:
    """Operational failures, even inside an exception group, become ClickException."""

    async def fails_in_a_task() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_raise, NoToken("no token stored for offline:x"))

    with pytest.raises(click.ClickException, match="no token stored for offline:x"):
        run_trio(fails_in_a_task)

    async def bug() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_raise, KeyError("bug"))

    with pytest.raises(ExceptionGroup):  # a bug keeps its traceback
        run_trio(bug)


async def _raise(exc: Exception) -> None:
    await trio.lowlevel.checkpoint()
    raise exc
