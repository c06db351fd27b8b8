"""KeyState: everything the manager knows about one key in memory, as a state machine.

Phases (derived from the fields, never stored apart from them)::

    VACANT ──first mint──▶ LIVE
      ▲
    LOADING ──load──▶ LIVE ◀──install (a new pair)── SUSPECT
                       │ ▲                              ▲
                       │ └──────trust (not rotated)─────┤
                       ├──rotation answered / lost / forced──┘
                       └──invalid_grant, expired──▶ DEAD ──recheck finds a pair──▶ LIVE

- LOADING: no token yet; its first load runs (``loading``) or failed.
- VACANT: a mintable key (client credentials) the store holds nothing
  for: its first mint is due (``vacant``).
- LIVE: a token that may be served until its hard expiry.
- SUSPECT: a token Shopify may already have revoked; never served again.
- DEAD: re-authorization required; the store is re-read at most every
  ``RefreshPolicy.recheck_interval`` seconds (``recheck_at``).

Invariant: ``fresh_until`` and ``join_from`` (what the hot path reads)
always equal `_decision.fresh_until` and `_decision.join_from` of the state,
except that a retired state keeps ``-inf`` and ``inf``. Only the methods
below change the fields they depend on, and each re-derives them.
"""

from __future__ import annotations

import enum
import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from ._decision import fresh_until, join_from

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .._keys import TokenKey
    from .._token import Token
    from ._flight import Flight


class StateObserver(Protocol):
    """Watches every key's served answer from outside the manager (the thread-hosted service).

    ``changed`` runs synchronously inside each transition, after
    ``fresh_until`` is re-derived and before anything else happens in the
    trio thread, so a copy of the answer kept elsewhere is never looser
    than the manager's. ``last_used`` reports uses the manager did not see
    (reads of that copy), so such keys do not park.
    """

    def changed(self, state: KeyState) -> None:
        """``state``'s token or ``fresh_until`` may have changed."""

    def last_used(self, state: KeyState) -> float:
        """The wall time of the key's latest use seen by the observer (or -inf)."""


class Phase(enum.Enum):
    """A key's phase (see the module docstring)."""

    LOADING = "loading"
    VACANT = "vacant"
    LIVE = "live"
    SUSPECT = "suspect"
    DEAD = "dead"


@attrs.define(eq=False)
class KeyState:
    """One key's token, its times, and the work running for it."""

    key: TokenKey
    token: Token | None = None
    #: The hot path's answer: the wall time until which ``token`` is served as is.
    fresh_until: float = -math.inf
    #: The herd's answer: from this wall time (until ``dead_at``) callers join ``flight``.
    join_from: float = math.inf
    #: When to refresh: the schedule's time, pushed later by a deferral.
    stale_at: float = math.inf
    hard_at: float = math.inf
    dead_at: float = math.inf
    suspect: bool = False
    dead: bool = False
    #: The store holds nothing for this mintable key: its first mint is due.
    vacant: bool = False
    retired: bool = False
    recheck_at: float = -math.inf
    #: Consecutive failed refreshes, the last failure, and the wall time before
    #: which no request is made for the key (backoff, or Shopify's Retry-After).
    failures: int = 0
    last_error: Exception | None = None
    retry_at: float = -math.inf
    #: The refresh in flight; set and cleared with `take_off` and `land`.
    flight: Flight | None = None
    loading: Flight | None = None
    used: float = 0.0
    #: A rotated pair held in memory until its save lands.
    unsaved: Token | None = None
    #: The store held (or holds) a row for the key: it was loaded or saved. A
    #: re-read that then finds nothing means another process deleted it.
    stored: bool = False
    saving: bool = False
    #: Whether the key is kept: its keeper task runs, or its alarm is set.
    running: bool = False
    #: Owned by `AlarmClock`: the trio time the key's alarm rings at (nan: not set).
    sleep_until: float = math.nan
    crashes: int = 0
    #: Consecutive refreshes left to another holder of the store's lock.
    deferrals: int = 0
    _lock: trio.Lock | None = attrs.field(default=None, init=False)
    #: Told of every change of ``fresh_until`` (see `StateObserver`).
    observer: StateObserver | None = attrs.field(default=None, kw_only=True, repr=False)

    @property
    def phase(self) -> Phase:
        """The key's phase."""
        if self.dead:
            return Phase.DEAD
        if self.token is None:
            return Phase.VACANT if self.vacant else Phase.LOADING
        return Phase.SUSPECT if self.suspect else Phase.LIVE

    @property
    def mintable(self) -> bool:
        """Whether the key's token is minted (client credentials) rather than refreshed."""
        return self.key.mintable

    def _derive(self) -> None:
        if self.retired:
            self.fresh_until, self.join_from = -math.inf, math.inf
        else:
            self.fresh_until, self.join_from = fresh_until(self), join_from(self)
        if self.observer is not None:
            self.observer.changed(self)

    # -- transitions -----------------------------------------------------------------

    def install(self, token: Token, stale_at: float, hard_at: float, dead_at: float) -> None:
        """Make ``token`` the key's token (LIVE): a new pair, a load, an adopted one."""
        self.token = token
        self.stale_at, self.hard_at, self.dead_at = stale_at, hard_at, dead_at
        self.suspect = self.dead = self.vacant = False
        self.deferrals = self.failures = 0
        self.last_error, self.retry_at = None, -math.inf
        self._derive()

    def vacate(self) -> None:
        """The store holds nothing for this mintable key (VACANT): its first mint is due."""
        self.vacant = True
        self._derive()

    def take_off(self, flight: Flight) -> None:
        """``flight`` is the key's refresh in flight."""
        self.flight = flight
        self._derive()

    def land(self, flight: Flight) -> None:
        """``flight`` ended (if it is still the key's)."""
        if self.flight is flight:
            self.flight = None
            self._derive()

    def distrust(self) -> None:
        """The token may be revoked (SUSPECT): a rotation of it answered, was lost or is forced."""
        self.suspect = True
        self._derive()

    def trust(self) -> None:
        """A refresh of the suspect token definitely did not rotate it: LIVE again."""
        self.suspect = False
        self._derive()

    def mark_dead(self, recheck_at: float) -> None:
        """Re-authorization required (DEAD); the store is looked at again from ``recheck_at``."""
        self.dead = True
        self.recheck_at = recheck_at
        self._derive()

    def reschedule(self, stale_at: float) -> None:
        """Refresh at ``stale_at`` instead (a deferral)."""
        self.stale_at = stale_at
        self._derive()

    def note_failure(self, error: Exception, retry_at: float) -> None:
        """A refresh failed: no request for the key before ``retry_at``."""
        self.failures += 1
        self.last_error, self.retry_at = error, retry_at

    def clear_failures(self) -> None:
        """A refresh ended without failing (a new pair, an adopted one, a deferral)."""
        self.failures, self.last_error, self.retry_at = 0, None, -math.inf

    def retire(self) -> None:
        """The key left the manager (forgotten, parked, closed): never served from here."""
        self.retired = True
        self._derive()

    # -- the key's lock --------------------------------------------------------------

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the key's lock (refreshes, installs, saves, rechecks).

        The `trio.Lock` exists only while someone holds or waits for it: a
        fleet of idle keys keeps none.
        """
        if self._lock is None:
            self._lock = trio.Lock()
        lock = self._lock
        async with lock:
            yield
        # release() hands a contended lock straight to a waiter: keep it then.
        if self._lock is lock and not lock.locked() and not lock.statistics().tasks_waiting:
            self._lock = None

    def busy(self) -> bool:
        """True while the key must stay in memory (work, an unsaved or a suspect pair)."""
        return (
            self.flight is not None
            or self.unsaved is not None
            or self.saving
            or self.suspect
            or self.loading is not None
            or self._lock is not None
        )
