"""The decision table, as one pure function: what to do with a key now.

Every path asks `decide`: the hot path's cached answer (``fresh_until`` is
precisely the time up to which `decide` says `Action.SERVE`), the slow path
of `TokenManager.valid_token`, and the re-read under the store's lock (where
the stored token is judged as if it were the cached one). No other code
repeats these conditions.

=========================================  =======================
a key's state at ``now``                   action
=========================================  =======================
re-authorization required, recheck due     RECHECK (re-read store)
re-authorization required                  REAUTHORIZE
no token held, not loaded yet              LOAD
refresh token expired                      REAUTHORIZE
servable (not suspect, before hard expiry)
  before its refresh time, or no expiry    SERVE
  stale, refresh running or in backoff     SERVE
  stale                                    SERVE_AND_REFRESH
not servable (hard-expired, suspect, or
nothing stored for a mintable key)
  cannot be refreshed nor minted           REAUTHORIZE
  a refresh is in flight                   JOIN
  inside a backoff or Retry-After window   RETRY_LATER
  otherwise                                REFRESH
=========================================  =======================

"Suspect" is a token Shopify may already have revoked: a rotation of it
answered (and is not committed yet), its answer was lost (the outcome is
unknown), or a forced refresh is replacing it. It is never served again.

A *mintable* key (`TokenKey.mintable`: client credentials) is renewed
without a refresh token: its "refresh" is a new client credentials grant.
It is refreshed like any other (a set time before expiry, single flight,
backoff), and it is never REAUTHORIZE for lack of a refresh token; when the
store holds nothing for it (*vacant*), its first use mints its first token.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from .._token import Token
    from ._flight import Flight


class Action(enum.Enum):
    """What the manager does for a caller of `valid_token`."""

    SERVE = "serve"
    """Return the held token."""
    SERVE_AND_REFRESH = "serve_and_refresh"
    """Return the held token and start a refresh in the background."""
    JOIN = "join"
    """Wait for the refresh in flight and return its token."""
    REFRESH = "refresh"
    """Start a refresh and wait for it."""
    RETRY_LATER = "retry_later"
    """Raise `RefreshFailed` with ``retry_after`` at once: no request now."""
    REAUTHORIZE = "reauthorize"
    """Raise `ReauthorizationRequired`."""
    RECHECK = "recheck"
    """Re-read the store: another process may have stored a new pair."""
    LOAD = "load"
    """Load the key from the store first."""


class DecisionInput(Protocol):
    """What `decide` reads: a `KeyState`, or a `StoredView` of a re-read token."""

    @property
    def token(self) -> Token | None: ...
    @property
    def stale_at(self) -> float: ...
    @property
    def hard_at(self) -> float: ...
    @property
    def dead_at(self) -> float: ...
    @property
    def suspect(self) -> bool: ...
    @property
    def dead(self) -> bool: ...
    @property
    def recheck_at(self) -> float: ...
    @property
    def retry_at(self) -> float: ...
    @property
    def flight(self) -> Flight | None: ...
    @property
    def mintable(self) -> bool: ...
    @property
    def vacant(self) -> bool: ...


def _renewable(state: DecisionInput, token: Token | None) -> bool:
    """Whether a new token can be had without the merchant: refreshed, or minted."""
    return state.mintable or (token is not None and token.refreshable)


def decide(state: DecisionInput, now: float) -> Action:  # noqa: PLR0911 - one return per row of the table
    """Return the decision table's action for ``state`` at wall time ``now``."""
    if state.dead:
        return Action.RECHECK if now >= state.recheck_at else Action.REAUTHORIZE
    token = state.token
    if token is None and not state.vacant:
        return Action.LOAD
    if now >= state.dead_at:
        return Action.REAUTHORIZE
    renewable = _renewable(state, token)
    if token is not None and not state.suspect and now < state.hard_at:
        if now < state.stale_at or not renewable:
            return Action.SERVE
        if state.flight is not None or now < state.retry_at:
            return Action.SERVE
        return Action.SERVE_AND_REFRESH
    if not renewable:
        return Action.REAUTHORIZE
    if state.flight is not None:
        return Action.JOIN
    if now < state.retry_at:
        return Action.RETRY_LATER
    return Action.REFRESH


def fresh_until(state: DecisionInput) -> float:
    """The wall time up to which `decide` answers `Action.SERVE` without a thought.

    The hot path caches this; it is ``-inf`` whenever the slow path must
    decide. (A stale token whose refresh is running is served by the slow
    path: it must count as use and stay cheap, not skip the table.)
    """
    if state.dead or state.suspect or state.token is None:
        return -math.inf
    return min(state.stale_at, state.hard_at, state.dead_at)


def join_from(state: DecisionInput) -> float:
    """The wall time from which `decide` answers `Action.JOIN` (until ``dead_at``).

    The herd's fast path caches this: ``join_from <= now < dead_at`` is
    exactly `decide` saying JOIN. ``inf`` when there is nothing to join.
    """
    token = state.token
    if state.flight is None or state.dead or not _renewable(state, token):
        return math.inf
    if token is None:
        return -math.inf if state.vacant else math.inf
    return -math.inf if state.suspect else state.hard_at


@attrs.frozen
class StoredView:
    """A token re-read from the store, judged as if it were the held one.

    Under the store's lock nothing is in flight and no backoff applies (this
    is the refresh), so `decide` answers SERVE (adopt it, no request),
    SERVE_AND_REFRESH or REFRESH (rotate it), or REAUTHORIZE.
    """

    token: Token
    stale_at: float
    hard_at: float
    dead_at: float
    suspect: bool
    dead: bool = False
    recheck_at: float = math.inf
    retry_at: float = -math.inf
    flight: Flight | None = None
    mintable: bool = False
    vacant: bool = False
