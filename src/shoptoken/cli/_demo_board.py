"""The demo's scoreboard: what happened to each shop, and how it is shown.

The manager's events (a hook) and the demo's app loop update it; the
display reads it. Rendering is pure: rows in, a rich table or a plain line
out. No token is ever kept here, only times and counts.

The live table has a fixed width: every column has its own width from the
first frame on, errors included, so the table never jumps when the first
error appears. An error is shown as its gist (`error_gist`), short enough to
fit its column, and it is cleared once the shop recovers: its next refresh
succeeds (or it is authorized again), or, for an API call's error, its next
API call succeeds.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import attrs
from rich.table import Table
from rich.text import Text

from .._events import EventKind, TokenEvent
from ._display import STYLES, State, format_duration

if TYPE_CHECKING:
    from .._keys import TokenKey

#: Width of each column of the live table: (header, width).
_COLUMNS: Final = (
    ("shop", 15),
    ("state", 13),
    ("expires in", 10),
    ("refreshes", 9),
    ("retried", 7),
    ("API calls", 9),
    ("last error", 40),
)
_ERROR_WIDTH: Final = _COLUMNS[-1][1]
#: Rewrites that shorten the manager's refresh errors to their gist.
_GIST: Final = (
    (re.compile(r"^token refresh "), ""),
    (re.compile(r"; transient$"), ""),
    (re.compile(r"^failed \((HTTP \d+): ([^)]*)\)"), r"\1 \2"),
    (re.compile(r"^got no usable answer \(([^)]*)\)"), r"no answer (\1)"),
    (re.compile(r"^got an unusable (HTTP \d+) answer \(([^)]*)\)"), r"\1: \2"),
    (re.compile(r"retry after "), "retry in "),
)

_SETTLED: Final = frozenset(
    {
        EventKind.REFRESH_SUCCEEDED,
        EventKind.REFRESH_FAILED,
        EventKind.REFRESH_ADOPTED,
        EventKind.REAUTHORIZATION_REQUIRED,
    }
)


@attrs.define(eq=False)
class ShopRow:
    """One shop as the demo shows it.

    Attributes:
        key: The shop's offline key.
        state: Its token's state at the last display tick.
        expires_at: The current token's expiry (epoch seconds), if known.
        refreshing: A refresh request is in flight.
        needs_reauth: The manager said the merchant must authorize again.
        refreshes: Refreshes that returned a new pair.
        failures: Refresh attempts that failed.
        pending: Failed attempts not yet followed by a successful refresh.
        recovered: Failed attempts followed by a successful refresh.
        api_calls: Admin API calls the fake received for this shop.
        postponed: API calls the app put off: no valid token could be had yet.
        reauthorizations: Times the app sent the merchant through the flow again.
        last_error: The shop's current problem: the last refresh failure
            (scrubbed of secrets by the manager) until a refresh succeeds, or
            an API call's failure until a call succeeds.
    """

    key: TokenKey
    state: State = State.FRESH
    expires_at: float | None = None
    refreshing: bool = False
    needs_reauth: bool = False
    refreshes: int = 0
    failures: int = 0
    pending: int = 0
    recovered: int = 0
    api_calls: int = 0
    postponed: int = 0
    reauthorizations: int = 0
    last_error: str | None = None
    _api_error: bool = False

    def on_event(self, event: TokenEvent) -> None:
        """Follow one of the manager's events for this shop."""
        kind = event.kind
        if kind is EventKind.REFRESH_STARTED:
            self.refreshing = True
        elif kind in _SETTLED:
            self.refreshing = False
        if kind in (EventKind.REFRESH_SUCCEEDED, EventKind.REFRESH_ADOPTED):
            self.refreshes += kind is EventKind.REFRESH_SUCCEEDED
            self.recovered += self.pending
            self.pending = 0
            self._set_error(None)
            if event.expires_at is not None:
                self.expires_at = event.expires_at.timestamp()
        elif kind is EventKind.REFRESH_FAILED:
            self.failures += 1
            self.pending += 1
            self._set_error(event.error)
        elif kind is EventKind.REAUTHORIZATION_REQUIRED:
            self.needs_reauth = True
            self._set_error(event.error)

    def _set_error(self, error: str | None, *, api: bool = False) -> None:
        self.last_error, self._api_error = error, api

    def api_failed(self, error: str) -> None:
        """An API call failed (not for want of a token): shown until a call succeeds."""
        if self.last_error is None or self._api_error:
            self._set_error(error, api=True)

    def api_succeeded(self) -> None:
        """An API call succeeded: an API call's error is over (a refresh's is not)."""
        if self._api_error:
            self._set_error(None)

    def reauthorized(self) -> None:
        """The merchant authorized the app again: the shop is back, its error cleared."""
        self.needs_reauth = False
        self.reauthorizations += 1
        self._set_error(None)

    def shown_state(self, stored: State) -> State:
        """The state to show, given the state of the token the manager holds."""
        if self.needs_reauth:
            return State.NEEDS_REAUTH
        if self.refreshing:
            return State.REFRESHING
        return stored


@attrs.define(eq=False)
class Board:
    """Every shop's row, and the figures of the whole run."""

    rows: dict[TokenKey, ShopRow]
    installed: int = 0
    phase: int = 1
    survived: int | None = None
    restarted_at: float | None = None

    @classmethod
    def for_keys(cls, keys: list[TokenKey]) -> Board:
        """An empty board for ``keys``."""
        return cls({key: ShopRow(key) for key in keys})

    def on_event(self, event: TokenEvent) -> None:
        """The manager's hook: route each event to its shop's row."""
        row = self.rows.get(event.key)
        if row is not None:
            row.on_event(event)

    def manager_stopped(self) -> None:
        """A manager ended: nothing of it is in flight any more."""
        for row in self.rows.values():
            row.refreshing = False

    def total(self, field: str) -> int:
        """The sum of one counter over every shop."""
        return sum(int(getattr(row, field)) for row in self.rows.values())

    def states(self) -> str:
        """``"4 fresh, 1 refreshing"``: how many shops are in each state."""
        counts = dict.fromkeys(State, 0)
        for row in self.rows.values():
            counts[row.state] += 1
        return ", ".join(f"{count} {state.value}" for state, count in counts.items() if count)


def error_gist(text: str | None, key: TokenKey, width: int = _ERROR_WIDTH) -> str:
    """The gist of an error on one line of at most ``width`` characters.

    Without its exception type and key, and the manager's wording shortened
    (``token refresh failed (HTTP 503: Service Unavailable); transient``
    reads ``HTTP 503 Service Unavailable``); cut with an ellipsis only if
    still too long.
    """
    if not text:
        return ""
    text = " ".join(text.split())
    kind, sep, rest = text.partition(": ")
    if sep and kind.isidentifier():
        text = rest
    text = text.removeprefix(f"{key}: ")
    for pattern, replacement in _GIST:
        text = pattern.sub(replacement, text)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(board: Board, *, now: float, title: str, caption: str) -> Table:
    """The live table: one row per shop, the same width whatever the rows hold."""
    table = Table(title=title, caption=caption, header_style="bold", caption_justify="left")
    for header, width in _COLUMNS:
        left = header in ("shop", "state", "last error")
        table.add_column(
            header,
            width=width,
            no_wrap=True,
            overflow="ellipsis",
            justify="left" if left else "right",
        )
    for row in board.rows.values():
        expires = None if row.expires_at is None else row.expires_at - now
        table.add_row(
            Text(row.key.shop.removesuffix(".myshopify.com")),
            Text(row.state.value, style=STYLES[row.state]),
            format_duration(expires),
            str(row.refreshes),
            str(row.recovered),
            str(row.api_calls),
            Text(error_gist(row.last_error, row.key), style="dim"),
        )
    return table


def plain_line(board: Board, *, elapsed: float, expired_calls: int, revoked_calls: int) -> str:
    """One progress line for logs and pipes."""
    return (
        f"t={elapsed:5.1f}s phase {board.phase}/2: {board.states()} | "
        f"refreshes {board.total('refreshes')}, failures retried {board.total('recovered')}, "
        f"API calls {board.total('api_calls')}, with an expired token {expired_calls},"
        f" with a revoked token {revoked_calls}"
    )
