"""AlarmClock: every active key waits for its next refresh on one shared heap of alarms.

A key between two refreshes needs no task: its keeper task sets the key's
alarm and ends, and when the alarm rings (or is rung early by `wake`) the
clock hands the key back to the supervision, which starts a keeper task
again. A fleet of 100,000 waiting keys is then 100,000 heap entries, not
100,000 parked tasks (each a `Task`, a context, coroutines and their
frames, which the cyclic garbage collector walks again and again while
the fleet starts).

Invariants:

- A key's alarm is set exactly when ``sleep_until`` is not nan (the trio
  time it rings at); it is reset to nan as it rings, whoever rings it (the
  alarm task at its time, or `wake`), and a key rings at most once per set.
- A heap entry whose deadline no longer equals its key's ``sleep_until`` is
  stale (rung early, or set again) and is skipped; stale entries are swept
  out whenever the heap has doubled since the last sweep (amortized O(1)).
- The alarm task's own sleep ends at the earliest live deadline: a new
  earlier alarm moves it.
- Only this module touches ``sleep_until``.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._state import KeyState

#: A heap entry: ring time (trio clock), a tie-breaker, the waiting key.
_Alarm = tuple[float, int, "KeyState"]


def _ignore(_: KeyState) -> None:
    """What a ringing alarm does until `AlarmClock.connect` says otherwise."""


@attrs.define(eq=False)
class AlarmClock:
    """Rings each key's alarm at its trio time, or earlier when woken."""

    _alarms: list[_Alarm] = attrs.field(factory=list, init=False)
    #: Sweep stale entries once the heap grows past this.
    _sweep_at: int = attrs.field(default=64, init=False)
    _ticket: int = attrs.field(default=0, init=False)
    #: The alarm task's own sleep, until the earliest alarm (None until it runs).
    _timer: trio.CancelScope | None = attrs.field(default=None, init=False)
    _ring: Callable[[KeyState], None] = attrs.field(default=_ignore, init=False)

    def connect(self, ring: Callable[[KeyState], None]) -> None:
        """Call ``ring(state)`` whenever a key's alarm rings (it must not raise)."""
        self._ring = ring

    def set(self, state: KeyState, deadline: float) -> None:
        """Ring ``state``'s alarm at ``deadline`` (trio time), unless woken first."""
        self._ticket += 1
        heapq.heappush(self._alarms, (deadline, self._ticket, state))
        timer = self._timer
        if timer is not None and deadline < timer.deadline:
            timer.deadline = deadline
        state.sleep_until = deadline

    def wake(self, state: KeyState) -> None:
        """Ring ``state``'s alarm now if it is set (to reschedule, or to stop)."""
        if not math.isnan(state.sleep_until):
            state.sleep_until = math.nan
            self._ring(state)

    def clear(self) -> None:
        """Drop every alarm without ringing it (the manager closes)."""
        for _, _, state in self._alarms:
            state.sleep_until = math.nan
        self._alarms.clear()

    async def run(self) -> None:
        """Ring each alarm at its time (runs until cancelled)."""
        alarms = self._alarms
        while True:
            now = trio.current_time()
            while alarms and alarms[0][0] <= now:
                deadline, _, state = heapq.heappop(alarms)
                if state.sleep_until == deadline:
                    state.sleep_until = math.nan
                    self._ring(state)
            if len(alarms) > self._sweep_at:
                alarms[:] = [a for a in alarms if a[2].sleep_until == a[0]]
                heapq.heapify(alarms)
                self._sweep_at = 2 * len(alarms) + 64
            with trio.CancelScope(deadline=alarms[0][0] if alarms else math.inf) as timer:
                self._timer = timer
                await trio.sleep_forever()
