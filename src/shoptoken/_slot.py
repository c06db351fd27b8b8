"""Per-key state held by the manager, and its statistics snapshot."""

from __future__ import annotations

import copy
import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._keys import TokenKey
    from ._token import Token


def copy_error(error: Exception) -> Exception:
    """Return a copy of ``error`` chained to it, for one more caller to raise.

    Many callers share one refresh's or load's failure; each raises its own
    copy, so a thousand waiters do not pile tracebacks onto one object.
    """
    clone = copy.copy(error).with_traceback(None)
    clone.__cause__ = error
    return clone


@attrs.define(eq=False)
class Flight:
    """One refresh in flight for a key; every waiting caller gets its outcome."""

    done: trio.Event = attrs.Factory(trio.Event)
    token: Token | None = None
    error: Exception | None = None
    #: The token a forced refresh replaces (Shopify revokes it as it rotates).
    replacing: Token | None = None

    def result(self) -> Token:
        """The finished refresh's token, or raise (a copy of) its error."""
        if self.error is not None:
            raise copy_error(self.error)
        assert self.token is not None  # noqa: S101 - set whenever error is None
        return self.token


@attrs.define(eq=False)
class Slot:
    """Everything the manager knows about one active key.

    ``fresh_until`` is what the hot path reads: the wall time until which
    ``token`` may be returned without any further thought. It is ``-inf``
    whenever the slow path must decide (no token, re-authorization needed).
    """

    key: TokenKey
    token: Token | None = None
    fresh_until: float = -math.inf
    #: When to refresh: the schedule's time, pushed later by a deferral.
    stale_at: float = math.inf
    hard_at: float = math.inf
    dead_at: float = math.inf
    used: float = 0.0
    loaded: bool = False
    dead: bool = False
    _lock: trio.Lock | None = attrs.field(default=None, init=False)
    flight: Flight | None = None
    load_error: Exception | None = None
    #: While a first load runs: True, or the Event its waiters wait on.
    loading: trio.Event | Literal[True] | None = None
    unsaved: Token | None = None
    saving: bool = False
    running: bool = False
    #: The refresher task while it sleeps, and until when (trio time; nan when awake).
    sleeper: trio.lowlevel.Task | None = None
    sleep_until: float = math.nan
    crashes: int = 0
    #: Consecutive refreshes left to another lock holder (reset by a new token).
    deferrals: int = 0
    #: Consecutive failed refreshes, the last failure, and the wall time before
    #: which it is not retried (backoff, or Shopify's Retry-After); reset by a new token.
    failures: int = 0
    last_error: Exception | None = None
    retry_at: float = -math.inf

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the key's lock (loads, refreshes, installs, saves).

        The `trio.Lock` exists only while someone holds or waits for it: a
        fleet of idle keys keeps none (about 300 bytes each).
        """
        if self._lock is None:
            self._lock = trio.Lock()
        lock = self._lock
        async with lock:
            yield
        # release() hands a contended lock straight to a waiter: keep it then.
        if self._lock is lock and not lock.locked() and not lock.statistics().tasks_waiting:
            self._lock = None

    def abort_sleep(self, _: object) -> trio.lowlevel.Abort:
        """Let the sleeping refresher be cancelled (the manager is closing)."""
        self.sleeper = None
        self.sleep_until = math.nan
        return trio.lowlevel.Abort.SUCCEEDED

    def busy(self) -> bool:
        """True while the slot must stay in memory (work or an unsaved pair)."""
        return (
            self.flight is not None
            or self.unsaved is not None
            or self.saving
            or self.loading is not None
            or self._lock is not None
        )


@attrs.frozen
class TokenManagerStatistics:
    """A snapshot of a `TokenManager`'s state and counters.

    Attributes:
        keys_known: Keys in memory plus parked keys.
        keys_active: Keys in memory with a running refresher task.
        keys_parked: Keys parked after ``idle_after`` without use.
        keys_reauthorization_required: Keys waiting for a new authorization.
        refreshes_in_flight: Refreshes running now.
        refreshes_succeeded: Refresh requests that returned a new pair.
        refreshes_failed: Refresh requests that failed (any reason).
        refreshes_adopted: Refreshes avoided because the store already had a
            newer pair (refreshed by another task, process or node).
        refreshes_deferred: Refreshes of a still-valid token left to another
            holder of the store's lock, to be looked at again after a backoff.
        saves_failed: Failed attempts to persist a rotated pair.
        saves_pending: Rotated pairs held in memory until a save lands.
        loads_failed: Failed ``load_tokens`` calls.
        stale_served: Stale tokens returned under ``stale_while_error``.
        refresher_crashes: Unexpected exceptions in refresher tasks.
    """

    keys_known: int
    keys_active: int
    keys_parked: int
    keys_reauthorization_required: int
    refreshes_in_flight: int
    refreshes_succeeded: int
    refreshes_failed: int
    refreshes_adopted: int
    refreshes_deferred: int
    saves_failed: int
    saves_pending: int
    loads_failed: int
    stale_served: int
    refresher_crashes: int


@attrs.define
class Counters:
    """The manager's running counters (mutable; snapshotted by `statistics`)."""

    refreshes_succeeded: int = 0
    refreshes_failed: int = 0
    refreshes_adopted: int = 0
    refreshes_deferred: int = 0
    saves_failed: int = 0
    loads_failed: int = 0
    stale_served: int = 0
    refresher_crashes: int = 0
