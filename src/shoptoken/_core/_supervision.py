"""Supervision: each active key's keeper, parking, and the sweeper.

A key's keeper task asks the rotator to refresh the key when it is due,
then sets the key's alarm and ends: between refreshes an active key has no
task, only an alarm (`AlarmClock`), which starts its keeper again. Every
decision stays in `_decision`, `_schedule` and the rotator. An unexpected
exception in one keeper is reported and the keeper restarted with backoff:
it never tears down the others. Keys not used for
``idle_after`` park (no task, a float of memory); the sweeper refreshes
parked keys whose refresh token nears its expiry, and re-reads the store for
keys marked for re-authorization.
"""

from __future__ import annotations

import math
from contextlib import aclosing
from typing import TYPE_CHECKING

import attrs
import trio
import trio_util

from .._errors import NoToken, ReauthorizationRequired, ShopTokenError
from .._events import EventKind, TokenEvent, describe

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._keys import TokenKey
    from ._context import Core
    from ._rotation import Rotator
    from ._state import KeyState


@attrs.define(eq=False)
class Supervision:
    """Starts, restarts and parks the keeper tasks of one manager.

    Attributes:
        core: The shared parts.
        rotator: Refreshes a key (``refresh``) and rechecks a dead one.
        load: Loads a key into memory without counting as use (the manager's).
    """

    core: Core
    rotator: Rotator
    load: Callable[[TokenKey], Awaitable[KeyState]]

    def __attrs_post_init__(self) -> None:
        self.core.alarms.connect(self._ring)

    def start(self, state: KeyState) -> None:
        """Start the key's keeper task unless it runs or has nothing to do."""
        if self._claim(state):
            self._spawn(state)

    def start_waiting(self, state: KeyState, now: float, trio_now: float) -> None:
        """Start keeping a key just loaded by a warm-up: its alarm, or a keeper if it is due.

        The keeper's first step done here, with the batch's clock readings
        (wall and trio time): a key that is not due gets no task at all.
        """
        if self._claim(state):
            wake_at = self.next_wake(state, now)
            if wake_at is not None and now < wake_at:
                self.core.alarms.set(state, trio_now + (wake_at - now))
            else:
                self._spawn(state)

    def _claim(self, state: KeyState) -> bool:
        """Claim the key for its keeper, unless it is kept already or has nothing to do."""
        if state.running or self.core.closed or state.dead or not _renewed(state):
            return False
        # Claimed now, so two callers cannot start two keepers.
        state.running = True
        return True

    def _ring(self, state: KeyState) -> None:
        """The key's alarm rang (it is due, or was woken): its keeper runs again."""
        if self.core.closed:
            state.running = False
        else:
            self._spawn(state)

    def _spawn(self, state: KeyState) -> None:
        # A fixed name spares trio formatting one per task.
        self.core.background.start_soon(self._keep, state, name="shoptoken.keeper")

    async def _keep(self, state: KeyState) -> None:
        """Refresh the key if due, else set its alarm and end; restart after a crash.

        One flat frame and no cancel scope: between refreshes a key has no
        task, only an alarm (which also wakes it early, to reschedule or to
        stop). It ends for good (``running`` cleared) when the key parks, is
        forgotten or needs re-authorization.
        """
        core = self.core
        waiting = False
        try:
            while True:
                try:
                    if (
                        core.closed
                        or state.dead
                        or (state.token is None and not state.vacant)
                        or not core.is_current(state)
                    ):
                        return
                    now = core.clock()
                    wake_at = self.next_wake(state, now)
                    if wake_at is None:
                        return  # parked
                    if now < wake_at:
                        # The alarm starts the next keeper: woken early, or at its time.
                        core.alarms.set(state, trio.current_time() + (wake_at - now))
                        waiting = True
                        return
                    try:
                        await self.rotator.refresh(
                            state, reason="retry" if state.failures else "scheduled"
                        )
                    except (ReauthorizationRequired, NoToken):
                        return
                    except ShopTokenError:
                        pass  # noted on the key: retry_at is the next attempt
                except Exception as exc:  # noqa: BLE001 - supervision: report, back off, restart
                    state.crashes += 1
                    core.counters.refresher_crashes += 1
                    delay = core.backoff(state.crashes)
                    core.emit(
                        EventKind.REFRESHER_CRASHED,
                        state,
                        error=describe(exc),
                        attempt=state.crashes,
                        retry_in=delay,
                    )
                    await trio.sleep(delay)
        finally:
            if not waiting:
                state.running = False

    def next_wake(self, state: KeyState, now: float) -> float | None:
        """When the keeper next acts (wall time); None once the key has parked."""
        idle_at = self.core.last_used(state) + self.core.policy.idle_after
        if now >= idle_at and self.park(state):
            return None
        due = state.retry_at if state.failures else state.stale_at
        # A key that could not park (work in flight) is looked at again when due.
        return min(due, idle_at) if now < idle_at else due

    def park(self, state: KeyState) -> bool:
        """Drop an idle key from memory, remembering when its refresh token expires."""
        core = self.core
        if state.busy() or state.dead or not core.is_current(state):
            return False
        core.drop(state)
        token = state.token
        rte = token.refresh_token_expires_at if token is not None else None
        core.parked[state.key] = math.inf if rte is None else rte.timestamp()
        core.emit(EventKind.KEY_PARKED, state)
        return True

    # -- the sweeper -----------------------------------------------------------------

    async def sweep(self) -> None:
        """Keep parked refresh tokens alive, and recheck dead keys (runs until cancelled)."""
        core = self.core
        policy = core.policy
        # aclosing: leaving the loop early must close the generator, not the GC.
        async with aclosing(trio_util.periodic(policy.sweep_interval)) as ticks:
            async for _ in ticks:
                now = core.clock()
                due = [
                    key
                    for key, expires in core.parked.items()
                    if expires - policy.keepalive_before <= now
                ]
                dead = [s for s in core.states.values() if s.dead and now >= s.recheck_at]
                for key in due:
                    if core.closed:
                        return
                    try:
                        await self._keepalive(key)
                    except ShopTokenError as exc:
                        # Parked again (the next pass tries again), or kept by a
                        # keeper until it lands (_keepalive).
                        core.emitter.emit(
                            TokenEvent(
                                EventKind.REFRESH_FAILED,
                                key,
                                error=describe(exc),
                                reason="keepalive",
                            )
                        )
                for state in dead:
                    if core.closed:
                        return
                    try:
                        await self.rotator.recheck(state)
                    except NoToken:
                        continue
                    self.start(state)

    async def _keepalive(self, key: TokenKey) -> None:
        """Refresh a parked key whose refresh token nears expiry, and park it again."""
        core = self.core
        if key not in core.parked:
            return
        state = await self.load(key)
        # A thread-backed load can finish after the manager began closing.
        if core.closed or state.dead or state.token is None:
            return
        try:
            await self.rotator.refresh(state, reason="keepalive", replacing=state.token)
        finally:
            # Loaded, the key is no longer among the parked ones: a failed
            # keep-alive (a 429, an unknown outcome, a failed save) goes to a
            # keeper, which retries it at its retry time and parks it once idle.
            if not state.running and not self.park(state):
                self.start(state)


def _renewed(state: KeyState) -> bool:
    """Whether the key has a keeper's work: an expiring token to renew, or a first mint to retry."""
    token = state.token
    if token is None:
        # A mintable key whose first mint failed: its keeper retries at retry_at.
        return state.vacant and state.failures > 0
    return (token.refreshable or state.mintable) and token.expires_at is not None
