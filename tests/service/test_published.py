"""The published view: never looser than the manager, and its reads count as use."""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable

import pytest
import trio
import trio.testing

from shoptoken import EventKind, MemoryStore, Token, TokenEvent, open_token_manager
from shoptoken._core._state import KeyState
from shoptoken._service._published import Published
from shoptoken.testing import FakeShopify

from .._managers import KEY, installed
from ._harness import Freezer, running, wait_until


def _token(name: str) -> Token:
    return Token(access_token=f"shpat_{name}", refresh_token=f"shprt_{name}")


def _watched(view: Published) -> KeyState:
    return KeyState(KEY, observer=view)


def test_every_transition_keeps_the_entry_no_looser_than_the_state() -> None:
    """Install publishes; distrust, death and retirement withdraw; a new pair replaces."""
    view = Published()
    state = _watched(view)
    first, second = _token("a"), _token("b")
    state.install(first, 100.0, 200.0, 300.0)
    entry = view.entries[KEY]
    assert (entry.token, entry.fresh_until) == (first, 100.0)
    state.distrust()  # a refresh took off: the old token may be revoked any moment
    assert KEY not in view.entries
    assert entry.fresh_until == -math.inf  # a reader holding it finds it expired
    state.install(second, 150.0, 250.0, 300.0)
    newer = view.entries[KEY]
    assert (newer.token, newer.fresh_until) == (second, 150.0)
    state.reschedule(120.0)
    assert view.entries[KEY].fresh_until == 120.0
    assert newer.fresh_until == -math.inf  # replaced, never left loose
    state.mark_dead(400.0)
    assert KEY not in view.entries
    state.install(first, 100.0, 200.0, 300.0)
    state.retire()
    assert KEY not in view.entries
    assert state.fresh_until == -math.inf


def test_a_retired_states_late_news_leaves_the_current_entry() -> None:
    """A dropped state that lands a flight later must not withdraw its successor's entry."""
    view = Published()
    old, new = _watched(view), _watched(view)
    old.install(_token("a"), 100.0, 200.0, 300.0)
    old.retire()
    new.install(_token("b"), 100.0, 200.0, 300.0)
    old.retire()  # any later transition of the old state
    assert view.entries[KEY].token == _token("b")


def test_reads_carry_over_to_a_replacing_entry() -> None:
    """The last read stamp survives a new pair; last_used reports it."""
    view = Published()
    state = _watched(view)
    assert view.last_used(state) == -math.inf
    state.install(_token("a"), 100.0, 200.0, 300.0)
    view.entries[KEY].read_at = 42.0
    state.install(_token("b"), 150.0, 250.0, 300.0)
    assert view.last_used(state) == 42.0


@pytest.mark.parametrize("reads", [True, False])
def test_reads_of_the_view_keep_a_key_from_parking(reads: bool) -> None:
    """Read only through the view, a key stays active; unread, it parks (and is withdrawn)."""
    with running(idle_after=0.3) as h:
        service = h.service
        view = service._thread.published.entries
        pause = threading.Event()
        for _ in range(10):  # a second of real time; the keeper wakes to park at 0.3 s
            h.clock.now += 0.1
            if reads:
                assert KEY in view  # so the read below is one of the view
                assert service.valid_token(KEY) == h.token
            pause.wait(0.1)
        if reads:
            assert service.statistics().keys_parked == 0
            return
        wait_until(lambda: service.statistics().keys_parked == 1)
        assert KEY not in view  # withdrawn as it parked
        assert service.valid_token(KEY) == h.token  # loaded again
        assert KEY in view


async def test_published_reads_keep_counting_as_use_across_rotations(
    autojump_clock: trio.testing.MockClock, clock: Callable[[], float], endpoint: FakeShopify
) -> None:
    """A key read every minute from the view only never parks, however many rotations.

    Each rotation withdraws the entry before its request; the reads made on it
    stay counted as the key's use.
    """
    store = MemoryStore()
    await installed(endpoint, store)
    view = Published()
    events: list[TokenEvent] = []
    async with (
        endpoint.oauth(clock=clock) as oauth,
        open_token_manager(
            oauth,
            store,
            clock=clock,
            rng=random.Random(7),
            observer=view,
            hooks=[events.append],
        ) as tokens,
    ):
        await tokens.valid_token(KEY)  # the one hop: the key's first use
        for _ in range(30 * 60):  # 30 hours (the idle window is 24), a read each minute
            await trio.sleep(60)
            entry = view.entries.get(KEY)
            if entry is not None and clock() < entry.fresh_until:
                entry.read_at = clock()  # what TokenService.valid_token does on a hit
            else:
                await tokens.valid_token(KEY)  # a miss crosses to the trio thread
    assert endpoint.refreshes[KEY.shop] >= 30
    assert [e for e in events if e.kind is EventKind.KEY_PARKED] == []


def test_a_service_closed_with_a_short_timeout_serves_nothing_more() -> None:
    """close(timeout=...) may return before the thread ends: the view is closed at once."""
    freezer = Freezer()
    with running(hooks=(freezer.hook,)) as h, freezer.frozen(h):
        assert h.service.valid_token(KEY) == h.token  # published
        h.service.close(timeout=0.2)  # the thread is busy: close returns at its timeout
        with pytest.raises(RuntimeError):
            h.service.valid_token(KEY)

        async def read() -> Token:
            return await h.service.aio.valid_token(KEY)

        with pytest.raises(RuntimeError):
            asyncio.run(read())
