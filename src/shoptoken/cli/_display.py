"""What the commands show: a token's state, durations, and the consoles they print on."""

from __future__ import annotations

import enum
import sys
from typing import TYPE_CHECKING, Final

from rich.console import Console

from .._core._schedule import Freshness, freshness

if TYPE_CHECKING:
    from .._core._policy import RefreshPolicy
    from .._keys import TokenKey
    from .._token import Token

# Wide enough that a pipe or a CI log never wraps a table row.
_PLAIN_WIDTH: Final = 200


class State(enum.Enum):
    """A token's state as the commands show it. The value is the label."""

    FRESH = "fresh"
    STALE = "stale"
    REFRESHING = "refreshing"
    EXPIRED = "expired"
    NEEDS_REAUTH = "needs re-auth"
    NON_EXPIRING = "non-expiring"


STYLES: Final = {
    State.FRESH: "green",
    State.STALE: "yellow",
    State.REFRESHING: "cyan",
    State.EXPIRED: "red",
    State.NEEDS_REAUTH: "bold red",
    State.NON_EXPIRING: "magenta",
}

_FROM_FRESHNESS: Final = {
    Freshness.FRESH: State.FRESH,
    Freshness.STALE: State.STALE,
    Freshness.EXPIRED: State.EXPIRED,
    Freshness.DEAD: State.NEEDS_REAUTH,
    Freshness.NON_EXPIRING: State.NON_EXPIRING,
}


def token_state(token: Token, key: TokenKey, now: float, policy: RefreshPolicy) -> State:
    """Where ``token`` stands at wall time ``now``, by the manager's own rules.

    Expired refresh tokens, and expired tokens that cannot be refreshed
    (online tokens), need re-authorization.
    """
    return _FROM_FRESHNESS[freshness(token, key, now, policy)]


def seconds_until(moment: float | None, now: float) -> float | None:
    """Seconds from ``now`` to ``moment`` (negative when past), None for never."""
    return None if moment is None else moment - now


def format_duration(seconds: float | None) -> str:
    """``"4.2s"``, ``"12m 5s"``, ``"5h 3m"``, ``"89d 23h"``; ``"… ago"`` when past; ``"never"``."""
    if seconds is None:
        return "never"
    past = seconds < 0
    value = abs(seconds)
    if value < 10:  # noqa: PLR2004 - tenths matter only for the demo's short lifetimes
        text = f"{value:.1f}s"
    elif value < 60:  # noqa: PLR2004 - a minute
        text = f"{value:.0f}s"
    elif value < 3600:  # noqa: PLR2004 - an hour
        text = f"{int(value // 60)}m {int(value % 60)}s"
    elif value < 86400:  # noqa: PLR2004 - a day
        text = f"{int(value // 3600)}h {int(value % 3600 // 60)}m"
    else:
        text = f"{int(value // 86400)}d {int(value % 86400 // 3600)}h"
    return f"{text} ago" if past else text


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): live and coloured on a terminal, plain otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return Console(stderr=stderr, width=None if terminal else _PLAIN_WIDTH, highlight=False)
