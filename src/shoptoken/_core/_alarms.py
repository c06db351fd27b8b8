"""AlarmClock: every keeper task sleeps on one shared heap of wake times.

A keeper task exists once per active key, so its size is the fleet's size.
Rather than a timed cancel scope each (a `CancelScope`, a cancel status with
two sets and a deadline entry per task), every keeper parks with
`trio.lowlevel.wait_task_rescheduled` and one alarm task wakes it.

Invariants:

- A sleeping key's ``sleeper`` is its parked task and ``sleep_until`` the
  trio time it sleeps until; both are reset (to None and nan) whenever the
  sleep ends, whoever ends it (`wake`, the alarm, a cancellation).
- A heap entry whose deadline no longer equals its key's ``sleep_until`` is
  stale (the sleep ended early) and is skipped; stale entries are swept out
  whenever the heap has doubled since the last sweep (amortized O(1)).
- `AlarmClock.sleep_until` is a plain function that returns trio's
  ``wait_task_rescheduled`` awaitable: the keeper awaits it directly, so a
  sleeping keeper holds no coroutine of ours (one object less per active key).
- The alarm task's own sleep ends at the earliest live deadline: a new
  earlier sleep moves it.
- Only this module (and `KeyState.abort_sleep`, the abort function it
  hands trio) touches ``sleeper`` and ``sleep_until``.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ._state import KeyState

#: A heap entry: wake time (trio clock), a tie-breaker, the sleeping key.
_Alarm = tuple[float, int, "KeyState"]


@attrs.define(eq=False)
class AlarmClock:
    """Sleeps keeper tasks until a trio time, or until they are woken."""

    _alarms: list[_Alarm] = attrs.field(factory=list, init=False)
    #: Sweep stale entries once the heap grows past this.
    _sweep_at: int = attrs.field(default=64, init=False)
    _ticket: int = attrs.field(default=0, init=False)
    #: The alarm task's own sleep, until the earliest alarm (None until it runs).
    _timer: trio.CancelScope | None = attrs.field(default=None, init=False)

    def sleep_until(self, state: KeyState, deadline: float) -> Awaitable[object]:
        """Sleep until ``deadline`` (trio time) or until `wake` is called for ``state``.

        Called by the sleeping task itself, which awaits the result at once:
        ``await alarms.sleep_until(state, deadline)``.
        """
        self._ticket += 1
        heapq.heappush(self._alarms, (deadline, self._ticket, state))
        timer = self._timer
        if timer is not None and deadline < timer.deadline:
            timer.deadline = deadline
        state.sleeper = trio.lowlevel.current_task()
        state.sleep_until = deadline
        # A bound method, made per sleep: the smallest abort function.
        return trio.lowlevel.wait_task_rescheduled(state.abort_sleep)  # noqa: ASYNC105 - awaited by our caller, at once

    async def run(self) -> None:
        """Wake each sleeper at its time (runs until cancelled)."""
        alarms = self._alarms
        while True:
            now = trio.current_time()
            while alarms and alarms[0][0] <= now:
                deadline, _, state = heapq.heappop(alarms)
                if state.sleep_until == deadline:
                    wake(state)
            if len(alarms) > self._sweep_at:
                alarms[:] = [a for a in alarms if a[2].sleep_until == a[0]]
                heapq.heapify(alarms)
                self._sweep_at = 2 * len(alarms) + 64
            with trio.CancelScope(deadline=alarms[0][0] if alarms else math.inf) as timer:
                self._timer = timer
                await trio.sleep_forever()


def wake(state: KeyState) -> None:
    """Wake the key's keeper task now if it sleeps (to reschedule, or to stop)."""
    task = state.sleeper
    if task is not None:
        state.sleeper = None
        state.sleep_until = math.nan
        trio.lowlevel.reschedule(task)
