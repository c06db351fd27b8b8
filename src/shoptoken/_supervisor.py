"""Supervisor: one refresher task per active key, and the keep-alive sweeper.

A refresher task only sleeps until its key's refresh time and asks the
manager to refresh; every decision stays in the manager and `_schedule`.
"""

from __future__ import annotations

import math
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


@attrs.define(eq=False)
class Supervisor:
    """Starts, restarts and parks the refresher tasks of one `TokenManager`."""

    _manager: TokenManager

    def start(self, slot: Slot) -> None:
        """Start the key's refresher task unless it runs or has nothing to do."""
        manager = self._manager
        token = slot.token
        if (
            slot.task is not None
            or manager._closed
            or slot.dead
            or token is None
            or not token.refreshable
            or token.expires_at is None
        ):
            return
        # Claim the slot now, so two callers cannot start two tasks.
        slot.task = trio.CancelScope()
        manager._background.start_soon(self._supervise, slot, slot.task)

    async def _supervise(self, slot: Slot, scope: trio.CancelScope) -> None:
        """Run the key's refresh loop; restart it with backoff if it crashes."""
        manager = self._manager
        try:
            with scope:
                while True:
                    try:
                        await self._refresh_loop(slot)
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
                    else:
                        return
        finally:
            if slot.task is scope:
                slot.task = None

    async def _refresh_loop(self, slot: Slot) -> None:
        """Sleep until the key is due, refresh it, repeat; return to stop (park, dead)."""
        manager = self._manager
        policy = manager._policy
        failures = 0
        retry_at = -math.inf
        failed_token = None
        while True:
            token = slot.token
            if slot.dead or token is None or manager._slots.get(slot.key) is not slot:
                return
            if failures and token is not failed_token:
                failures = 0  # someone else replaced the token: back to the schedule
            now = manager._clock()
            idle_at = slot.used + policy.idle_after
            if now >= idle_at and manager.park(slot):
                return
            due = retry_at if failures else slot.stale_at
            wake_at = min(due, idle_at) if now < idle_at else due
            if now < wake_at:
                await self._sleep_until(slot, wake_at)
                continue
            try:
                await manager._rotator.refresh(slot, reason="retry" if failures else "scheduled")
            except (ReauthorizationRequired, NoToken):
                return
            except ShopTokenError as exc:
                failures += 1
                failed_token = slot.token
                delay = _schedule.backoff(
                    failures,
                    policy,
                    rand=manager._rng.random(),
                    retry_after=getattr(exc, "retry_after", None),
                )
                retry_at = manager._clock() + delay
            else:
                failures = 0

    async def _sleep_until(self, slot: Slot, wall_time: float) -> None:
        """Sleep until the manager's wall clock reads ``wall_time``, or until woken.

        The deadline is on trio's clock; we re-read the wall clock after
        waking, so a wall-clock jump only delays or advances one check.
        """
        delay = wall_time - self._manager._clock()
        with trio.CancelScope(deadline=trio.current_time() + delay) as wake:
            slot.wake = wake
            try:
                await trio.sleep_forever()
            finally:
                slot.wake = None

    async def sweep(self) -> None:
        """Refresh parked keys whose refresh token nears expiry (runs until cancelled)."""
        manager = self._manager
        policy = manager._policy
        async for _ in trio_util.periodic(policy.sweep_interval):
            now = manager._clock()
            due = [
                key
                for key, expires in manager._parked.items()
                if expires - policy.keepalive_before <= now
            ]
            for key in due:
                try:
                    await self._keepalive(key)
                except ShopTokenError as exc:
                    # Stays parked; the next pass tries again.
                    manager._emitter.emit(
                        TokenEvent(
                            EventKind.REFRESH_FAILED, key, error=describe(exc), reason="keepalive"
                        )
                    )

    async def _keepalive(self, key: TokenKey) -> None:
        manager = self._manager
        if key not in manager._parked:
            return
        slot = await manager._activate(key, use=False)
        if slot.dead or slot.token is None:
            return
        await manager._rotator.refresh(slot, reason="keepalive", replacing=slot.token)
        if slot.task is None:
            manager.park(slot)
