"""``shoptoken demo``: a real run in a child process, and the pieces it is made of."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
from rich.console import Console

from shoptoken import EventKind, TokenEvent, TokenKey
from shoptoken.cli._demo_board import Board, error_gist, plain_line, render_table
from shoptoken.cli._demo_plan import demo_faults, demo_policy, shop_names
from shoptoken.cli._demo_report import Report
from shoptoken.cli._display import State
from shoptoken.stores import SQLiteStore
from shoptoken.testing import Fault

from .conftest import FAKE_TOKEN, child_env, spawn


def _figure(output: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)}\s+(\S+)\s*$", output, flags=re.MULTILINE)
    assert match is not None, f"no {label!r} in:\n{output}"
    return match[1]


def test_demo_runs_and_no_call_uses_an_expired_token() -> None:
    """Two shops, 4 s tokens, 6 s with faults and a restart: exit 0, zero expired-token calls."""
    args = ("demo", "--shops", "2", "--lifetime", "4", "--duration", "6", "--fault-rate", "0.3")
    with spawn(*args, env=child_env()) as process:
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stdout + stderr
    assert stderr == ""
    assert not FAKE_TOKEN.search(stdout)
    assert "Traceback" not in stdout
    assert _figure(stdout, "API calls made with an expired token") == "0"
    assert _figure(stdout, "API calls made with a revoked token") == "0"
    assert _figure(stdout, "refreshes rejected by Shopify") == "0"
    assert _figure(stdout, "shops installed (authorization-code flow)") == "2"
    assert _figure(stdout, "tokens usable after the restart") == "2/2"
    assert int(_figure(stdout, "refreshes")) >= 2  # about 2 per shop in 6 s of 4 s tokens
    assert int(_figure(stdout, "API calls")) > 20
    assert "a new one opens the same store" in stdout
    assert re.search(r"^t=\s*\d+\.\ds phase 2/2: ", stdout, flags=re.MULTILINE)
    assert stdout.rstrip().endswith("Shopify accepted every refresh.")


def test_policy_scales_with_the_lifetime() -> None:
    """Refresh at 50-60 % of a token's life, never serve its last 10 %."""
    policy = demo_policy(10)
    assert (policy.refresh_before, policy.jitter, policy.skew) == (4, 1, 1)
    assert policy.retry_max == 1
    assert policy.retry_initial == pytest.approx(0.2)
    assert {fault.kind for fault in demo_faults(10)} >= {f.kind for f in demo_faults(4)}
    assert set(Fault.lost_answers()) <= set(demo_faults(10))


def test_shop_names_are_distinct() -> None:
    """Any number of shops gets distinct valid names."""
    names = shop_names(12)
    assert len(set(names)) == 12
    assert all(TokenKey.offline(name) for name in names)


def _report(**changes: int | None) -> Report:
    figures: dict[str, int | None] = {
        "installed": 2,
        "refreshes": 5,
        "recovered": 1,
        "lost_answers": 0,
        "faults": 1,
        "reauthorizations": 0,
        "survived": 2,
        "api_calls": 30,
        "postponed": 0,
        "rejected_refreshes": 0,
        "expired_calls": 0,
        "revoked_calls": 0,
    }
    figures.update(changes)
    return Report(elapsed=6.0, interrupted=False, **figures)  # type: ignore[arg-type]


def test_verdict() -> None:
    """The run fails on an expired- or revoked-token call, a rejected refresh or a lost token."""
    assert _report().ok
    assert _report().verdict().startswith("OK: ")
    assert not _report(expired_calls=1).ok
    assert "1 API calls made with an expired token" in _report(expired_calls=1).verdict()
    revoked = _report(revoked_calls=3)
    assert not revoked.ok
    assert "3 API calls made with a revoked token" in revoked.verdict()
    assert "expired" not in revoked.verdict()
    assert not _report(unknown_calls=1).ok
    figures = dict(revoked.figures())
    assert (
        figures["API calls made with an expired token"],
        figures["API calls made with a revoked token"],
    ) == ("0", "3")
    assert not _report(rejected_refreshes=2).ok
    assert "1 tokens lost in the restart" in _report(survived=1).verdict()
    assert _report(survived=None).ok


def test_board_follows_the_events() -> None:
    """Failures count as recovered once a refresh succeeds; states come from the events."""
    key = TokenKey.offline("shop-a")
    board = Board.for_keys([key])
    row = board.rows[key]
    expires = datetime(2026, 1, 1, tzinfo=UTC)
    for kind in (EventKind.REFRESH_STARTED, EventKind.REFRESH_FAILED):
        board.on_event(TokenEvent(kind, key, error=f"RefreshFailed: {key}: HTTP 503"))
    board.on_event(TokenEvent(EventKind.REFRESH_STARTED, key))
    assert row.shown_state(State.STALE) is State.REFRESHING
    board.on_event(TokenEvent(EventKind.REFRESH_SUCCEEDED, key, expires_at=expires))
    assert (row.refreshes, row.failures, row.recovered, row.pending) == (1, 1, 1, 0)
    assert row.expires_at == expires.timestamp()
    assert row.shown_state(State.FRESH) is State.FRESH
    board.on_event(TokenEvent(EventKind.REAUTHORIZATION_REQUIRED, key, error="revoked"))
    assert row.shown_state(State.FRESH) is State.NEEDS_REAUTH
    board.on_event(TokenEvent(EventKind.REFRESH_STARTED, TokenKey.offline("unknown")))
    row.state = State.FRESH
    assert plain_line(board, elapsed=2.0, expired_calls=0, revoked_calls=2) == (
        "t=  2.0s phase 1/2: 1 fresh | refreshes 1, failures retried 1,"
        " API calls 0, with an expired token 0, with a revoked token 2"
    )
    table = render_table(board, now=expires.timestamp() - 4.2, title="t", caption="c")
    assert table.row_count == 1


def _width(board: Board) -> int:
    out = Console(width=200, record=True, color_system=None)
    out.print(render_table(board, now=0.0, title="t", caption="c"))
    return max(len(line) for line in out.export_text().splitlines())


def test_table_keeps_its_width_when_errors_appear() -> None:
    """Errors of any length leave the live table exactly as wide as without any."""
    keys = [TokenKey.offline(name) for name in shop_names(3)]
    board = Board.for_keys(keys)
    before = _width(board)
    long = "RefreshFailed: " + "a very long and unusual failure " * 10
    for key, error in zip(keys, [long, "RefreshFailed: x", None], strict=True):
        board.on_event(TokenEvent(EventKind.REFRESH_FAILED, key, error=error))
    assert _width(board) == before
    assert before <= 125


@pytest.mark.parametrize(
    ("error", "gist"),
    [
        (
            "token refresh failed (HTTP 503: Service Unavailable); transient",
            "HTTP 503 Service Unavailable",
        ),
        (
            "token refresh failed (HTTP 429: Too Many Requests); retry after 1 s",
            "HTTP 429 Too Many Requests; retry in 1 s",
        ),
        (
            "token refresh got no usable answer (RemoteProtocolError)",
            "no answer (RemoteProtocolError)",
        ),
        (
            (
                "token refresh got an unusable HTTP 200 answer"
                " (body is not usable token JSON); transient"
            ),
            "HTTP 200: body is not usable token JSON",
        ),
    ],
)
def test_error_gist_fits_its_column(error: str, gist: str) -> None:
    """The manager's errors lose their type, key and wording, not their meaning."""
    key = TokenKey.offline("shop-a")
    assert error_gist(f"RefreshFailed: {key}: {error}", key) == gist
    assert len(gist) <= 40


def test_error_is_cleared_when_the_shop_recovers() -> None:
    """A refresh error lasts until a refresh succeeds; an API call's until a call succeeds."""
    key = TokenKey.offline("shop-a")
    board = Board.for_keys([key])
    row = board.rows[key]
    board.on_event(TokenEvent(EventKind.REFRESH_FAILED, key, error="HTTP 503"))
    row.api_succeeded()  # the still-valid token is served: the refresh is not fixed
    assert row.last_error == "HTTP 503"
    row.api_failed("API call: ReadError")  # the refresh failure stays the shop's problem
    assert row.last_error == "HTTP 503"
    board.on_event(TokenEvent(EventKind.REFRESH_SUCCEEDED, key))
    assert row.last_error is None
    row.api_failed("API call: ReadError")
    assert row.last_error == "API call: ReadError"
    row.api_succeeded()
    assert row.last_error is None
    board.on_event(TokenEvent(EventKind.REAUTHORIZATION_REQUIRED, key, error="revoked"))
    assert (row.last_error, row.needs_reauth) == ("revoked", True)
    row.reauthorized()
    assert (row.last_error, row.needs_reauth, row.reauthorizations) == (None, False, 1)
    board.on_event(TokenEvent(EventKind.REFRESH_FAILED, key, error="HTTP 500"))
    board.on_event(TokenEvent(EventKind.REFRESH_ADOPTED, key))
    assert row.last_error is None


def test_demo_deletes_its_shops_from_a_named_store(tmp_path: Path) -> None:
    """With --store, the demo says it writes its shops there, and deletes them at the end."""
    path = tmp_path / "mine.db"
    args = ("demo", "--shops", "2", "--lifetime", "4", "--duration", "2", "--fault-rate", "0")
    with spawn(*args, "--store", f"sqlite:///{path}", env=child_env()) as process:
        stdout, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stdout + stderr
    assert "writes 2 demo shops into that store and deletes them at the end" in stdout
    assert f"Deleted the 2 demo shops from sqlite:///{path}" in " ".join(stdout.split())

    async def keys() -> list[TokenKey]:
        async with SQLiteStore(path) as store:
            return [key async for key in store.list_keys()]

    assert trio.run(keys) == []
