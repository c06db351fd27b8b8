"""One shop's Admin API tokens at the fake: the live ones, and the ones it ended.

A shop holds one offline token (an expiring pair, or a legacy non-expiring
token) and any number of online tokens. A token the fake ended (superseded
by a rotation or a new grant, or killed by an uninstall) is remembered for a
while, with its expiry, so that a later Admin API call with it can be told
apart: *revoked* (ended while it still had life left) or *expired* (its own
lifetime ran out first). Only the last `RETIRED_KEPT` ended tokens of a shop
are remembered; an older one counts as unknown.
"""

from __future__ import annotations

import enum
import hmac
from typing import Final

import attrs

#: How long the previous refresh token stays usable after a rotation.
RECOVERY_WINDOW: Final = 30 * 86400.0
#: Ended access tokens remembered per shop (to tell revoked from expired).
RETIRED_KEPT: Final = 64


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings, any characters."""
    return hmac.compare_digest(a.encode(), b.encode())


def seconds(delta: float) -> int:
    """Whole seconds for an ``expires_in``: rounded, at least 1."""
    return max(1, round(delta))


class TokenCheck(enum.Enum):
    """What an Admin API call with a given access token meets."""

    VALID = "valid"
    """Live: the call is served."""
    EXPIRED = "expired"
    """Past its own expiry (a non-expiring token: past ``non_expiring_until``)."""
    REVOKED = "revoked"
    """Ended before its expiry: superseded by a rotation or grant, or uninstalled."""
    UNKNOWN = "unknown"
    """Never issued for this shop (or ended too long ago to be remembered)."""


@attrs.define
class _Pair:
    """An expiring offline pair and its recovery and migration bookkeeping.

    ``previous_refresh`` is the refresh token this pair replaced: usable
    until ``previous_until``, or until this pair is first used (an Admin
    API call with its access token, or its refresh token presented).
    """

    access: str = attrs.field(repr=False)
    refresh: str = attrs.field(repr=False)
    expires_at: float
    refresh_expires_at: float
    previous_refresh: str | None = attrs.field(default=None, repr=False)
    previous_until: float = 0.0
    migrated_from: str | None = attrs.field(default=None, repr=False)
    migrated_until: float = 0.0


@attrs.define
class _Online:
    user_id: int
    scope: str
    expires_at: float


@attrs.define
class _Minted:
    """A client credentials token: no refresh token; a new grant replaces it."""

    access: str = attrs.field(repr=False)
    expires_at: float


@attrs.define
class _Ended:
    """An access token the fake ended: when, and when it would have expired."""

    ended_at: float
    expires_at: float | None


@attrs.define
class _Shop:
    """One shop's install state and tokens."""

    scope: str = "read_orders"
    installed: bool = True
    pair: _Pair | None = None
    non_expiring: str | None = attrs.field(default=None, repr=False)
    minted: _Minted | None = attrs.field(default=None, repr=False)
    online: dict[str, _Online] = attrs.field(factory=dict, repr=False)
    ended: dict[str, _Ended] = attrs.field(factory=dict, repr=False)

    def end_offline(self, now: float) -> None:
        """End the offline token (pair or non-expiring): it is being replaced or revoked."""
        if self.pair is not None:
            self._end(self.pair.access, now, self.pair.expires_at)
        if self.non_expiring is not None:
            self._end(self.non_expiring, now, None)
        self.pair = self.non_expiring = None

    def end_minted(self, now: float) -> None:
        """End the client credentials token: a new grant replaces it, or an uninstall."""
        if self.minted is not None:
            self._end(self.minted.access, now, self.minted.expires_at)
        self.minted = None

    def end_all(self, now: float) -> None:
        """End every token of the shop (an uninstall)."""
        self.end_offline(now)
        self.end_minted(now)
        for token, online in self.online.items():
            self._end(token, now, online.expires_at)
        self.online.clear()

    def _end(self, token: str, now: float, expires_at: float | None) -> None:
        self.ended[token] = _Ended(now, expires_at)
        while len(self.ended) > RETIRED_KEPT:
            del self.ended[next(iter(self.ended))]

    def check(self, token: str, now: float, non_expiring_until: float | None) -> TokenCheck:  # noqa: PLR0911 - one answer per kind of token
        """What an Admin API call with ``token`` meets at ``now``."""
        pair = self.pair
        if self.installed and pair is not None and same(pair.access, token):
            return _alive(now, pair.expires_at)
        if self.installed and self.non_expiring is not None and same(self.non_expiring, token):
            return _alive(now, non_expiring_until)
        minted = self.minted
        if self.installed and minted is not None and same(minted.access, token):
            return _alive(now, minted.expires_at)
        online = self.online.get(token) if self.installed else None
        if online is not None:
            return _alive(now, online.expires_at)
        ended = self.ended.get(token)
        if ended is None:
            return TokenCheck.UNKNOWN
        if ended.expires_at is not None and ended.expires_at <= ended.ended_at:
            return TokenCheck.EXPIRED  # it had expired before it was ended
        return TokenCheck.REVOKED

    def accepts(self, refresh_token: str, now: float) -> tuple[str, float] | None:
        """The recovery fallback the next pair keeps, if a refresh with ``refresh_token`` works."""
        pair = self.pair if self.installed else None
        if pair is None:
            return None
        if same(pair.refresh, refresh_token):
            if now >= pair.refresh_expires_at:
                return None
            # Kept until its replacement is first used: 30 days at most
            # after this rotation, and never past its own expiry.
            return refresh_token, min(now + RECOVERY_WINDOW, pair.refresh_expires_at)
        previous = pair.previous_refresh
        if previous is not None and now < pair.previous_until and same(previous, refresh_token):
            return previous, pair.previous_until
        return None


def _alive(now: float, expires_at: float | None) -> TokenCheck:
    return TokenCheck.VALID if expires_at is None or now < expires_at else TokenCheck.EXPIRED
