"""Loading: a key's first load (single flight), and a fleet's warm-up, a batch at a time.

Both go through the same per-key loading state. A key being loaded has
``state.loading`` set (the shared `UNWAITED` marker until someone waits,
then a `Flight`), and whoever set it settles it exactly once (`Loader.settle`),
however the load ends: with a token, with an error, or cancelled. So a
`valid_token` during a warm-up waits for the warm-up's load of its key
instead of loading it again, a warm-up waits for a lazy load already in
flight instead of starting another, and a cancelled warm-up leaves no key
stuck loading (its unsettled keys are dropped; their next use loads them).

A warm-up does once per batch what a first use does once per key: one
store call (``load_many`` when the store has it), one read of the clock.
"""

from __future__ import annotations

import itertools
from contextlib import aclosing
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._errors import NoToken, PersistenceError
from .._events import EventKind, TokenEvent
from ._decision import Action, decide
from ._flight import UNWAITED, Flight

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Iterable, Sequence

    from .._keys import TokenKey
    from .._token import Token
    from ._context import Core
    from ._state import KeyState
    from ._supervision import Supervision

#: Keys per store call when warming up, unless told otherwise.
WARM_UP_BATCH: Final = 1000
#: A batch whose first this many loads all fail means the store is failing, not
#: some rows: the warm-up stops (rather than wait out every key's failure).
_FAILING: Final = 3


@attrs.frozen
class WarmUpFigures:
    """What a `TokenManager.warm_up` did (in a progress event: so far).

    Every key asked for is counted once, in ``loaded``, ``dead``,
    ``missing`` or ``failed``.

    Attributes:
        loaded: Keys now in memory with a token, counted as used, their
            keeper task started (``refreshing`` included).
        refreshing: Of ``loaded``, keys whose refresh was due (stale or
            expired): their keepers refresh them now, in the background.
        dead: Keys whose stored token cannot be renewed (re-authorization
            required; `valid_token` raises `ReauthorizationRequired`).
        missing: Keys with nothing stored.
        failed: Keys the store failed to load (`PersistenceError`; their
            next use tries again).
        seconds: Seconds the warm-up took (trio's clock).
    """

    loaded: int = 0
    refreshing: int = 0
    dead: int = 0
    missing: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def keys(self) -> int:
        """Keys looked at: ``loaded + dead + missing + failed``."""
        return self.loaded + self.dead + self.missing + self.failed


@attrs.define(eq=False)
class _Tally:
    loaded: int = 0
    refreshing: int = 0
    dead: int = 0
    missing: int = 0
    failed: int = 0

    def freeze(self, seconds: float) -> WarmUpFigures:
        return WarmUpFigures(
            self.loaded, self.refreshing, self.dead, self.missing, self.failed, seconds
        )


@attrs.define(eq=False)
class Loader:
    """First loads of keys, one at a time or a fleet's batch at a time.

    Attributes:
        core: The shared parts.
        supervision: Starts a loaded key's keeper task.
        state_for: The key's state, made (empty, to be loaded) if it has none.
    """

    core: Core
    supervision: Supervision
    state_for: Callable[[TokenKey], KeyState]

    # -- one key -----------------------------------------------------------------------

    async def load_one(self, state: KeyState) -> None:
        """Load a key's first token; waiters on ``state.loading`` share the outcome.

        A mintable key with nothing stored is left vacant: its first use mints.

        Raises:
            NoToken: Nothing is stored for the key.
            PersistenceError: The store failed.
        """
        state.loading = UNWAITED
        token: Token | None = None
        error: Exception | None = None
        settled = False
        try:
            token = self._current(state, await self.core.store.load(state.key, bounded=False))
            if token is None:
                error = self._missing(state)
            else:
                self.settle(state, token, None)
            settled = True
        except PersistenceError as exc:
            error = exc
            self.settle(state, None, exc)
            settled = True
        finally:
            if not settled:
                self.settle(state, None, None)  # cancelled: waiters look again
        if error is not None:
            raise error

    def settle(self, state: KeyState, token: Token | None, error: Exception | None) -> None:
        """End the key's load: install ``token``, or drop the key (failed, missing, cancelled)."""
        waiters, state.loading = state.loading, None
        if token is not None:
            if state.token is None:  # else put_token installed a newer token meanwhile
                self.core.install(state, token)
        elif state.token is None and not state.vacant:
            self.core.drop(state)  # the next use loads again
        if waiters is not None and waiters is not UNWAITED:
            waiters.finish(error=error)

    def _current(self, state: KeyState, token: Token | None) -> Token | None:
        """``token``, unless a forget of the key began while it was read (then None)."""
        core = self.core
        if token is not None and (core.being_forgotten(state.key) or not core.is_current(state)):
            return None  # read before a forget deleted it
        return token

    def _missing(self, state: KeyState) -> NoToken | None:
        """Settle a key with nothing stored: vacant if mintable (no error), else `NoToken`."""
        key = state.key
        core = self.core
        if (
            key.mintable
            and state.token is None
            and core.is_current(state)
            and not core.being_forgotten(key)
        ):
            state.vacate()  # its first use mints
            self.settle(state, None, None)
            return None
        error = NoToken(f"no token stored for {key}", key=key)
        self.settle(state, None, error)
        return error

    # -- a fleet -----------------------------------------------------------------------

    async def warm_up(self, keys: Iterable[TokenKey] | None, batch_size: int) -> WarmUpFigures:
        """Load ``keys`` (all stored keys if None) in batches; see `TokenManager.warm_up`."""
        core = self.core
        core.check_open()
        start = trio.current_time()
        tally = _Tally()
        # aclosing: a cancelled warm-up closes its batches (and the store's listing) at once.
        async with aclosing(
            self._listed(batch_size) if keys is None else _batches(keys, batch_size)
        ) as batches:
            async for batch in batches:
                await self._warm_batch(batch, tally)
                core.emitter.emit(
                    TokenEvent(
                        EventKind.WARM_UP_PROGRESS,
                        batch[-1],
                        progress=tally.freeze(trio.current_time() - start),
                    )
                )
        return tally.freeze(trio.current_time() - start)

    async def _listed(self, size: int) -> AsyncGenerator[list[TokenKey], None]:
        async with self.core.store.listing() as keys:
            batch: list[TokenKey] = []
            async for key in keys:
                batch.append(key)
                if len(batch) >= size:
                    yield batch
                    batch = []
            if batch:
                yield batch

    async def _warm_batch(self, keys: Sequence[TokenKey], tally: _Tally) -> None:
        """Load one batch: claim the keys nobody loads yet, load them in one call, use them all."""
        claimed: list[KeyState] = []
        ready: list[KeyState] = []
        elsewhere: list[KeyState] = []
        try:
            self._sort(keys, claimed, ready, elsewhere, tally)
            if claimed:
                if self.core.store.bulk:
                    await self._load_batch(claimed, tally)
                else:
                    await self._load_each(claimed, tally)
        finally:
            for state in claimed:
                if state.loading is not None:  # cancelled before its load settled
                    self.settle(state, None, None)
        now = self._now()
        for state in ready:
            self._use(state, now, tally)
        again = await self._wait_for(elsewhere, tally)
        if again:
            await self._warm_batch(again, tally)

    def _sort(
        self,
        keys: Sequence[TokenKey],
        claimed: list[KeyState],
        ready: list[KeyState],
        elsewhere: list[KeyState],
        tally: _Tally,
    ) -> None:
        """Sort a batch's keys: in memory, loaded by another task, or claimed to load here."""
        for key in keys:
            state = self.state_for(key)
            if state.token is not None:
                ready.append(state)
            elif state.vacant:
                tally.missing += 1  # a mintable key with nothing stored: its first use mints
            elif state.loading is not None:
                elsewhere.append(state)  # a first use loads it now: wait for it below
            else:
                state.loading = UNWAITED
                claimed.append(state)  # appended at once: a failure settles it

    async def _load_batch(self, claimed: list[KeyState], tally: _Tally) -> None:
        core = self.core
        try:
            found = await core.store.load_many([state.key for state in claimed])
        except PersistenceError:
            # One corrupt row (or a failed call) fails the batch: load it key
            # by key, so that only the keys at fault fail.
            await self._load_each(claimed, tally)
            return
        now = self._now()
        for state in claimed:
            token = self._current(state, found.get(state.key))
            if token is None:
                tally.missing += 1
                self._missing(state)
            else:
                self.settle(state, token, None)
                self._use(state, now, tally)

    async def _load_each(self, claimed: list[KeyState], tally: _Tally) -> None:
        """Load one key at a time; raise if the first `_FAILING` loads all fail."""
        core = self.core
        answered = failures = 0
        for state in claimed:
            key = state.key
            try:
                token = await core.store.load(key, bounded=False)
            except PersistenceError as exc:
                tally.failed += 1
                failures += 1
                self.settle(state, None, exc)
                if not answered and failures >= _FAILING:
                    raise
                continue
            answered += 1
            token = self._current(state, token)
            if token is None:
                tally.missing += 1
                self._missing(state)
            else:
                self.settle(state, token, None)
                self._use(state, self._now(), tally)

    async def join(self, state: KeyState) -> Exception | None:
        """Wait for the key's load in flight; its error, or None (loaded, or loader cancelled)."""
        loading = state.loading
        if loading is None:
            return None
        if loading is UNWAITED:
            state.loading = loading = Flight()
        await loading.done().wait()
        return loading.error

    async def _wait_for(self, elsewhere: list[KeyState], tally: _Tally) -> list[TokenKey]:
        """Wait for loads another task runs; return the keys whose loader was cancelled."""
        again: list[TokenKey] = []
        for state in elsewhere:
            error = await self.join(state)
            current = self.core.states.get(state.key)
            if current is not None and current.token is not None:
                self._use(current, self._now(), tally)
            elif error is None:
                again.append(state.key)  # its loader was cancelled: ours to load
            elif isinstance(error, NoToken):
                tally.missing += 1
            else:
                tally.failed += 1
        return again

    def _now(self) -> tuple[float, float]:
        """The wall clock and trio's, read once for a batch."""
        return self.core.clock(), trio.current_time()

    def _use(self, state: KeyState, clocks: tuple[float, float], tally: _Tally) -> None:
        """Count a loaded key as used and start its keeper (or mark it dead)."""
        now, trio_now = clocks
        state.used = now
        if state.dead:
            tally.dead += 1
            return
        if now >= state.fresh_until:
            action = decide(state, now)
            if action is Action.REAUTHORIZE:
                self.core.mark_dead(state, "the refresh token expired")
                tally.dead += 1
                return
            if action is not Action.SERVE:
                tally.refreshing += 1
        tally.loaded += 1
        self.supervision.start_waiting(state, now, trio_now)


async def _batches(keys: Iterable[TokenKey], size: int) -> AsyncGenerator[list[TokenKey], None]:
    # Deduplicated, so that each key is counted once.
    unique = iter(dict.fromkeys(keys))
    while batch := list(itertools.islice(unique, size)):
        yield batch
