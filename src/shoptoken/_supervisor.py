"""Supervisor: one refresher task per active key, its alarm clock, and the keep-alive sweeper.

A refresher task only sleeps until its key's refresh time and asks the
manager to refresh; every decision stays in the manager and `_schedule`.

The refresher tasks sleep on one shared alarm clock (a heap of wake times
served by a single task) rather than each in its own timed cancel scope: a
fleet of 100,000 tasks then costs no cancel scope, cancel status or pair of
sets per task, which makes them smaller and quicker to start.
"""

from __future__ import annotations

import heapq
import math
from contextlib import aclosing
from typing import TYPE_CHECKING

import attrs
import trio
import trio_util

from . import _schedule
from ._errors import NoToken, ReauthorizationRequired, ShopTokenError
from ._events import EventKind, TokenEvent, describe

if TYPE_CHECKING:
    from ._keys import TokenKey
    from ._manager import TokenManager
    from ._slot import Slot


#: A heap entry: wake time (trio clock), a tie-breaker, the sleeping slot.
_Alarm = tuple[float, int, "Slot"]


@attrs.define(eq=False)
class Supervisor:
    """Starts, restarts and parks the refresher tasks of one `TokenManager`."""

    _manager: TokenManager
    _alarms: list[_Alarm] = attrs.field(factory=list, init=False)
    _sleeping: int = attrs.field(default=0, init=False)
    _ticket: int = attrs.field(default=0, init=False)
    #: The alarm task's own sleep, until the earliest alarm (None until it runs).
    _timer: trio.CancelScope | None = attrs.field(default=None, init=False)

    def start(self, slot: Slot) -> None:
        """Start the key's refresher task unless it runs or has nothing to do."""
        manager = self._manager
        token = slot.token
        if (
            slot.running
            or manager._closed
            or slot.dead
            or token is None
            or not token.refreshable
            or token.expires_at is None
        ):
            return
        # Claim the slot now, so two callers cannot start two tasks. A fixed
        # name spares trio formatting one per task (100k tasks, 9 MB).
        slot.running = True
        manager._background.start_soon(self._refresher, slot, name="shoptoken.refresher")

    async def _refresher(self, slot: Slot) -> None:
        """Sleep until the key is due, refresh it, repeat; restart after a crash.

        One flat frame and no cancel scope (it sleeps on the shared alarm
        clock, which is also how it is woken to reschedule or to stop): this
        task exists once per active key, so its size is the fleet's size. It
        ends when the key parks, is forgotten or needs re-authorization.
        After a failed refresh it waits for the slot's ``retry_at``, which
        the rotator sets (backoff, Retry-After) whoever asked.
        """
        manager = self._manager
        try:
            while True:
                try:
                    token = slot.token
                    if (
                        manager._closed
                        or slot.dead
                        or token is None
                        or manager._slots.get(slot.key) is not slot
                    ):
                        return
                    now = manager._clock()
                    wake_at = self._next_wake(slot, now, slot.retry_at if slot.failures else None)
                    if wake_at is None:
                        return  # parked
                    if now < wake_at:
                        await self._sleep(slot, trio.current_time() + (wake_at - now))
                        continue  # re-read everything: woken early, or the wall clock moved
                    try:
                        await manager._rotator.refresh(
                            slot, reason="retry" if slot.failures else "scheduled"
                        )
                    except (ReauthorizationRequired, NoToken):
                        return
                    except ShopTokenError:
                        pass  # noted on the slot: retry_at is the next attempt
                except Exception as exc:  # noqa: BLE001 - supervision: log, back off, restart
                    slot.crashes += 1
                    manager._counters.refresher_crashes += 1
                    delay = _schedule.backoff(
                        slot.crashes, manager._policy, rand=manager._rng.random()
                    )
                    manager._emit(
                        EventKind.REFRESHER_CRASHED,
                        slot,
                        error=describe(exc),
                        attempt=slot.crashes,
                        retry_in=delay,
                    )
                    await trio.sleep(delay)
        finally:
            slot.running = False

    # -- the alarm clock -------------------------------------------------------

    async def _sleep(self, slot: Slot, deadline: float) -> None:
        """Sleep until ``deadline`` (trio time) or until `wake` is called for the slot."""
        self._ticket += 1
        heapq.heappush(self._alarms, (deadline, self._ticket, slot))
        timer = self._timer
        if timer is not None and deadline < timer.deadline:
            timer.deadline = deadline
        slot.sleeper = trio.lowlevel.current_task()
        slot.sleep_until = deadline
        self._sleeping += 1
        try:
            await trio.lowlevel.wait_task_rescheduled(slot.abort_sleep)
        finally:
            self._sleeping -= 1

    async def run_alarms(self) -> None:
        """Wake each sleeping refresher at its time (runs until cancelled)."""
        alarms = self._alarms
        while True:
            now = trio.current_time()
            while alarms and alarms[0][0] <= now:
                deadline, _, slot = heapq.heappop(alarms)
                # An entry is stale once its sleep ended early (woken, cancelled).
                if slot.sleep_until == deadline:
                    wake(slot)
            if len(alarms) > 2 * self._sleeping + 64:
                # Keys woken early (new token, forgotten) left entries behind.
                alarms[:] = [a for a in alarms if a[2].sleep_until == a[0]]
                heapq.heapify(alarms)
            with trio.CancelScope(deadline=alarms[0][0] if alarms else math.inf) as timer:
                self._timer = timer
                await trio.sleep_forever()

    def _next_wake(self, slot: Slot, now: float, retry_at: float | None) -> float | None:
        """When the refresher should next act; None once the key has parked."""
        manager = self._manager
        idle_at = slot.used + manager._policy.idle_after
        if now >= idle_at and manager.park(slot):
            return None
        due = slot.stale_at if retry_at is None else retry_at
        # A key that could not park (work in flight) is looked at again when due.
        return min(due, idle_at) if now < idle_at else due

    async def sweep(self) -> None:
        """Refresh parked keys whose refresh token nears expiry (runs until cancelled)."""
        manager = self._manager
        policy = manager._policy
        # aclosing: leaving the loop early must close the generator, not the GC.
        async with aclosing(trio_util.periodic(policy.sweep_interval)) as ticks:
            async for _ in ticks:
                now = manager._clock()
                due = [
                    key
                    for key, expires in manager._parked.items()
                    if expires - policy.keepalive_before <= now
                ]
                for key in due:
                    if manager._closed:
                        return
                    try:
                        await self._keepalive(key)
                    except ShopTokenError as exc:
                        # Stays parked; the next pass tries again.
                        manager._emitter.emit(
                            TokenEvent(
                                EventKind.REFRESH_FAILED,
                                key,
                                error=describe(exc),
                                reason="keepalive",
                            )
                        )

    async def _keepalive(self, key: TokenKey) -> None:
        """Refresh a parked key whose refresh token nears expiry, and park it again."""
        manager = self._manager
        if key not in manager._parked:
            return
        slot = await manager._activate(key, use=False)
        # A thread-backed load can finish after the manager began closing.
        if manager._closed or slot.dead or slot.token is None:
            return
        await manager._rotator.refresh(slot, reason="keepalive", replacing=slot.token)
        if not slot.running:
            manager.park(slot)


def wake(slot: Slot) -> None:
    """Wake the slot's refresher task now if it sleeps (to reschedule, or to stop)."""
    task = slot.sleeper
    if task is not None:
        slot.sleeper = None
        slot.sleep_until = math.nan
        trio.lowlevel.reschedule(task)
