"""Core: what the manager, the rotator and the supervision share, and nothing more.

The manager builds one `Core`; `Rotator` and `Supervision` receive it (and
each other's narrow entry points) instead of reaching into the manager. The
state changes every part needs (install a token, mark a key dead, retire it)
live here, so each is written once.
"""

from __future__ import annotations

import math
from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._errors import NoToken, ReauthorizationRequired
from .._events import Emitter, EventKind, TokenEvent
from . import _schedule
from ._alarms import AlarmClock
from ._decision import Action, StoredView, decide
from ._gate import AppGate

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator

    from .._keys import TokenKey
    from .._token import Token
    from ._policy import RefreshPolicy
    from ._refresher import Refresher
    from ._state import KeyState, StateObserver
    from ._statistics import Counters
    from ._store import StoreAdapter


@attrs.define(eq=False)
class Core:
    """The shared parts of one `TokenManager`.

    Attributes:
        refresher: The OAuth client(s) that turn a token into its successor.
        store: The user's store, behind its adapter.
        policy: The refresh policy.
        clock: The wall clock (epoch seconds); every token is dated with it.
        rng: The randomness of backoff jitter and node spread.
        emitter: Where events go (structlog and the app's hooks).
        critical: The nursery of refreshes and saves (shielded; graced at exit).
        background: The nursery of keeper tasks, the alarm clock and the sweeper.
        counters: The running counters (the store adapter counts failed loads in them).
        states: Every key in memory.
        parked: Parked keys, with the epoch time their refresh token expires.
        forgetting: The shops and keys a `Forgetter` is deleting now: a load
            of one of them finds nothing.
        observer: Told of every key's state change (the thread-hosted service's view).
    """

    refresher: Refresher
    store: StoreAdapter
    policy: RefreshPolicy
    clock: Callable[[], float]
    rng: random.Random
    emitter: Emitter
    critical: trio.Nursery
    background: trio.Nursery
    counters: Counters
    observer: StateObserver | None = attrs.field(default=None, kw_only=True)
    states: dict[TokenKey, KeyState] = attrs.field(factory=dict, init=False)
    parked: dict[TokenKey, float] = attrs.field(factory=dict, init=False)
    forgetting: Counter[str | TokenKey] = attrs.field(factory=Counter, init=False)
    alarms: AlarmClock = attrs.field(factory=AlarmClock, init=False)
    gate: AppGate = attrs.field(factory=AppGate, init=False)
    limiter: trio.CapacityLimiter = attrs.field(init=False)
    closed: bool = attrs.field(default=False, init=False)
    _shutdown_deadline: float = attrs.field(default=math.inf, init=False)
    _critical_scopes: set[trio.CancelScope] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        self.limiter = trio.CapacityLimiter(self.policy.max_concurrent_refreshes)

    # -- keys ---------------------------------------------------------------------------

    def is_current(self, state: KeyState) -> bool:
        """Whether ``state`` is still the key's state in memory."""
        return self.states.get(state.key) is state

    def being_forgotten(self, key: TokenKey) -> bool:
        """Whether ``key`` (or its whole shop) is being forgotten right now."""
        return bool(self.forgetting) and (key in self.forgetting or key.shop in self.forgetting)

    def last_used(self, state: KeyState) -> float:
        """The key's latest use, including uses only the observer saw."""
        if self.observer is None:
            return state.used
        return max(state.used, self.observer.last_used(state))

    def check_open(self) -> None:
        """Raise `RuntimeError` once the manager's block has ended."""
        if self.closed:
            msg = "this TokenManager is closed (its open_token_manager block has ended)"
            raise RuntimeError(msg)

    def install(self, state: KeyState, token: Token) -> None:
        """Make ``token`` the key's token and reschedule its keeper."""
        stale_at, hard_at, dead_at = _schedule.times(token, state.key, self.policy)
        spread = self.policy.node_spread
        if spread and stale_at < hard_at:
            # This node's own delay: nodes sharing a store do not all wake at once.
            stale_at += min(self.rng.random() * spread, (hard_at - stale_at) / 2)
        state.install(token, stale_at, hard_at, dead_at)
        if state.unsaved is not token:
            state.stored = True  # loaded, saved, or adopted from the store
        self.alarms.wake(state)

    def judge(self, key: TokenKey, token: Token, *, suspect: bool = False) -> Action:
        """`decide` about a token read from the store, as if it were the held one.

        Nothing is in flight and no backoff applies (this is the refresh, or
        a recheck), so the answer is SERVE (take it as is), SERVE_AND_REFRESH
        or REFRESH (rotate it), or REAUTHORIZE.
        """
        times = _schedule.times(token, key, self.policy)
        view = StoredView(token, *times, suspect=suspect, mintable=key.mintable)
        return decide(view, self.clock())

    def mark_dead(self, state: KeyState, why: str) -> None:
        """Mark the key for re-authorization (once), and stop its keeper."""
        if not state.dead:
            self.emit(EventKind.REAUTHORIZATION_REQUIRED, state, error=why)
        state.mark_dead(self.clock() + self.policy.recheck_interval)
        self.alarms.wake(state)

    def raise_if_dead(self, state: KeyState) -> Token:
        """Return the key's token; raise `ReauthorizationRequired` for a dead key."""
        if state.dead:
            raise ReauthorizationRequired(
                f"{state.key} needs re-authorization (put_token installs a new token)",
                key=state.key,
            )
        if state.token is None:
            raise NoToken(f"no token stored for {state.key}", key=state.key)
        return state.token

    def drop(self, state: KeyState) -> None:
        """Take the key out of memory and stop everything running for it."""
        if self.is_current(state):
            del self.states[state.key]
        state.retire()
        self.alarms.wake(state)  # its keeper wakes, sees the key gone, and ends

    def emit(self, kind: EventKind, state: KeyState, **fields: Any) -> None:
        """Report an event about ``state``'s key."""
        self.emitter.emit(TokenEvent(kind=kind, key=state.key, **fields))

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """The delay before retry ``attempt`` (the policy's backoff, jittered by ``rng``)."""
        return _schedule.backoff(
            attempt, self.policy, rand=self.rng.random(), retry_after=retry_after
        )

    # -- shielded work and shutdown ------------------------------------------------------

    @contextmanager
    def shielded(self) -> Iterator[trio.CancelScope]:
        """A shielded scope for a refresh or a save: bounded by ``shutdown_grace`` at exit."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = min(scope.deadline, self._shutdown_deadline)
            self._critical_scopes.add(scope)
            try:
                yield scope
            finally:
                self._critical_scopes.discard(scope)

    def close(self) -> None:
        """Stop serving, give shielded work ``shutdown_grace``, cancel the rest."""
        self.closed = True
        # Remembered: a save retry scheduled just before now registers later.
        self._shutdown_deadline = deadline = trio.current_time() + self.policy.shutdown_grace
        for scope in self._critical_scopes:
            scope.deadline = min(scope.deadline, deadline)
        self.background.cancel_scope.cancel()
        self.alarms.clear()
        for state in self.states.values():
            state.retire()  # the hot path now falls through to check_open
            state.running = False  # no keeper starts again
