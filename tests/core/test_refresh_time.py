"""One refresh time for a token, wherever it is asked (issue 14).

The manager that obtained it, a manager that loads it after a restart, and
``shoptoken status`` all place it by the same rule.

A lead time longer than half the token's life would make a token stale as
soon as it is obtained; the rule refreshes it at mid-life instead. That rule
needs the time the token was obtained, so the token carries it and the
stores keep it.
"""

from __future__ import annotations

import pytest
import trio

from shoptoken import EventKind, MemoryStore, RefreshPolicy, TokenEvent
from shoptoken._core._schedule import Freshness, freshness
from shoptoken.testing import FakeShopify

from .._managers import KEY, Clock, installed, manager

LEAD = 3000.0  # more than half of the fake's 3600 s lifetime: mid-life (1800 s) wins


def _refreshes(events: list[TokenEvent]) -> list[float]:
    """When each refresh was sent (its new token expires the fake's 3600 s later)."""
    return [
        e.expires_at.timestamp() - 3600.0
        for e in events
        if e.kind is EventKind.REFRESH_SUCCEEDED and e.expires_at is not None
    ]


@pytest.mark.parametrize("restart_at", [0.0, 1000.0])
async def test_a_loaded_token_refreshes_at_the_same_time_as_the_obtained_one(
    autojump_clock: trio.testing.MockClock,
    clock: Clock,
    endpoint: FakeShopify,
    restart_at: float,
) -> None:
    """Installed at 0 and loaded at ``restart_at``: the refreshes come at 1800, 3600, ...

    (The stores keep ``obtained_at``: tests/stores/test_contract.py's round trip.)
    """
    start, store = clock(), MemoryStore()
    await installed(endpoint, store)
    await trio.sleep(restart_at)
    events: list[TokenEvent] = []
    async with manager(
        endpoint, clock, store, events=events, refresh_before=LEAD, jitter=0.0
    ) as tokens:
        await tokens.valid_token(KEY)
        assert endpoint.refreshes == {}
        await trio.sleep(3 * 1800.0 - restart_at + 1)
    assert [at - start for at in _refreshes(events)] == [1800.0, 3600.0, 5400.0]
    stored = await store.load_tokens(KEY)
    assert stored is not None
    assert stored.obtained_at is not None
    assert stored.obtained_at.timestamp() == start + 5400.0


async def test_status_says_what_the_manager_does(
    autojump_clock: trio.testing.MockClock, clock: Clock, endpoint: FakeShopify
) -> None:
    """The state `shoptoken status` shows comes from the same rule: fresh until mid-life."""
    token = endpoint.install(KEY.shop)
    policy = RefreshPolicy(refresh_before=LEAD, jitter=0.0)
    start = clock()
    assert freshness(token, KEY, start + 1799.0, policy) is Freshness.FRESH
    assert freshness(token, KEY, start + 1800.0, policy) is Freshness.STALE
