"""Contention across nodes: a refresh that is not urgent leaves a held store lock to its holder.

Every node computes the same refresh time for a shop (the jitter is per key),
so every node wakes for it at once. Only one may rotate; the others must not
queue on the store's lock holding pooled connections while the winner talks
to Shopify. A scheduled refresh of a still-valid token waits at most
``stale_lock_timeout`` for the lock, then serves its token, looks again
after a backoff, and adopts the winner's pair without taking the lock.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from shoptoken import (
    EventKind,
    LockTimeout,
    MemoryStore,
    RefreshPolicy,
    Token,
    TokenEvent,
    open_token_manager,
)
from shoptoken._core._schedule import jitter_offset
from shoptoken.testing import FakeShopify

from ._managers import KEY, SHOP, installed, manager
from .fakes import FlakyStore

Clock = Callable[[], float]


def _stale_at(token: Token, policy: RefreshPolicy) -> float:
    assert token.expires_at is not None
    return token.expires_at.timestamp() - policy.refresh_before - jitter_offset(KEY, policy.jitter)


def _kinds(events: list[TokenEvent], *kinds: EventKind) -> list[EventKind]:
    return [e.kind for e in events if e.kind in kinds]


async def test_a_stale_refresh_leaves_a_held_lock_to_its_holder_and_adopts_its_pair(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Another node holds the lock while rotating: we serve our token, then adopt its pair."""
    store = FlakyStore()
    token = await installed(endpoint, store)
    events: list[TokenEvent] = []
    policy = RefreshPolicy(retry_jitter=0)
    async with manager(endpoint, clock, store, events=events, retry_jitter=0) as tokens:
        await tokens.valid_token(KEY)
        due = _stale_at(token, policy)
        await trio.sleep(due - clock() - 1)
        async with endpoint.oauth(clock=clock) as other, store.locked(KEY, timeout=1) as held:
            # Another node holds the lock across its rotation of this shop.
            await trio.sleep(1 + policy.stale_lock_timeout + 0.1)
            assert _kinds(events, EventKind.REFRESH_DEFERRED) == [EventKind.REFRESH_DEFERRED]
            assert store.locks == 2  # ours (the try) and the holder's
            deferred = next(e for e in events if e.kind is EventKind.REFRESH_DEFERRED)
            assert deferred.retry_in == policy.retry_initial
            assert deferred.reason == "scheduled"
            # Still valid: served at once, without waiting for the lock.
            before = trio.current_time()
            assert await tokens.valid_token(KEY) == token
            assert trio.current_time() == before
            newer = await other.refresh(KEY, token, clock=clock)
            await held.save(newer)
        loads = store.loads
        await trio.sleep(policy.retry_initial + 0.1)
        # The next look reads the store without its lock and adopts the pair.
        assert await tokens.valid_token(KEY) == newer
        assert (store.loads, store.locks) == (loads + 1, 2)
        stats = tokens.statistics()
        assert (stats.refreshes_deferred, stats.refreshes_adopted) == (1, 1)
        assert stats.refreshes_succeeded == 0
    assert endpoint.refreshes[SHOP] == 1  # the other node's only


async def test_two_managers_due_together_rotate_once(
    clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Two nodes on one store, due at the same instant, slow Shopify: one request, one pair."""
    endpoint = FakeShopify(clock=clock, latency=3.0)
    store = MemoryStore()
    token = await installed(endpoint, store)
    events: list[list[TokenEvent]] = [[], []]
    async with (
        manager(endpoint, clock, store, events=events[0], retry_jitter=0) as first,
        manager(endpoint, clock, store, events=events[1], retry_jitter=0) as second,
    ):
        await first.valid_token(KEY)
        await second.valid_token(KEY)
        await trio.sleep(_stale_at(token, RefreshPolicy()) - clock() + 10)
        one, two = await first.valid_token(KEY), await second.valid_token(KEY)
        assert one == two != token
        assert endpoint.is_valid(SHOP, one.access_token)
        counts = sorted(
            (m.statistics().refreshes_succeeded, m.statistics().refreshes_adopted)
            for m in (first, second)
        )
        assert counts == [(0, 1), (1, 0)]
        # The loser never queued for the winner's 3 s: it tried for 0.05 s, came
        # back 1 s later (the winner still busy), tried again, and 2 s later
        # read the winner's pair without the lock.
        deferred = [e for log in events for e in log if e.kind is EventKind.REFRESH_DEFERRED]
        assert [e.retry_in for e in deferred] == [1, 2]
    assert endpoint.refreshes[SHOP] == 1
    assert await store.load_tokens(KEY) == one


async def test_deferrals_back_off_and_never_pass_the_hard_expiry(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A lock held forever: deferrals grow by the backoff; at hard expiry the refresh waits."""
    store = MemoryStore()
    token = await installed(endpoint, store)
    deferred: list[tuple[float, TokenEvent]] = []

    def hook(event: TokenEvent) -> None:
        if event.kind is EventKind.REFRESH_DEFERRED:
            deferred.append((clock(), event))

    settings = {"retry_jitter": 0, "retry_initial": 10, "retry_max": 80, "lock_timeout": 5}
    policy = RefreshPolicy(**settings)  # type: ignore[arg-type]
    async with (
        endpoint.oauth(clock=clock) as oauth,
        open_token_manager(oauth, store, policy=policy, clock=clock, hooks=[hook]) as tokens,
    ):
        await tokens.valid_token(KEY)
        assert token.expires_at is not None
        hard_at = token.expires_at.timestamp() - policy.skew
        due = _stale_at(token, policy)
        async with store.locked(KEY, timeout=1):
            await trio.sleep(hard_at - clock() - 0.01)
            # Each look waits stale_lock_timeout, then backs off: 10, 20, 40, 80, 80, ...
            looked = due + policy.stale_lock_timeout
            retries = [event.retry_in or 0.0 for _, event in deferred]
            for n, ((when, _), retry_in) in enumerate(zip(deferred, retries, strict=True)):
                assert when == pytest.approx(looked)
                assert retry_in == pytest.approx(min(10 * 2**n, 80, hard_at - when))
                looked = when + retry_in + policy.stale_lock_timeout
            assert len(deferred) >= 4
            assert deferred[-1][0] + retries[-1] == pytest.approx(hard_at)
            # Every deferral served the token; nothing failed.
            assert await tokens.valid_token(KEY) == token
            assert tokens.statistics().refreshes_failed == 0
            # Past hard expiry a caller must wait for the lock, up to lock_timeout.
            await trio.sleep(0.02)
            with pytest.raises(LockTimeout):
                await tokens.valid_token(KEY)
        await trio.sleep(policy.retry_initial)  # the failure's backoff, then the keeper retries
        fresh = await tokens.valid_token(KEY)
        assert fresh != token
        assert endpoint.is_valid(SHOP, fresh.access_token)


async def test_forced_refresh_waits_for_the_lock_even_when_the_token_is_valid(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """refresh_token (and auth's 401 retry) replace a token that may be revoked: no deferral."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with (
        endpoint.oauth(clock=clock) as oauth,
        open_token_manager(
            oauth, store, policy=RefreshPolicy(lock_timeout=5), clock=clock
        ) as tokens,
    ):
        await tokens.valid_token(KEY)
        async with store.locked(KEY, timeout=1):
            before = trio.current_time()
            with pytest.raises(LockTimeout):
                await tokens.refresh_token(KEY)
            assert trio.current_time() - before == 5
        assert tokens.statistics().refreshes_deferred == 0


def test_stale_lock_timeout_is_validated() -> None:
    """Negative, or longer than lock_timeout, is refused."""
    with pytest.raises(ValueError, match="stale_lock_timeout"):
        RefreshPolicy(stale_lock_timeout=-1)
    with pytest.raises(ValueError, match="stale_lock_timeout"):
        RefreshPolicy(stale_lock_timeout=10, lock_timeout=5)
    assert RefreshPolicy().stale_lock_timeout == 0.05


async def test_node_spread_lets_the_other_nodes_adopt_without_the_lock(
    clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """With node_spread, nodes wake apart: one rotates under the lock, the rest just read."""
    endpoint = FakeShopify(clock=clock, latency=0.2)
    store = FlakyStore()
    token = await installed(endpoint, store)
    due = _stale_at(token, RefreshPolicy())
    rotated_at: list[float] = []

    def hook(event: TokenEvent) -> None:
        if event.kind in (EventKind.REFRESH_SUCCEEDED, EventKind.REFRESH_ADOPTED):
            rotated_at.append(clock())

    async with (
        # Each node its own randomness (seeded: offsets of 4, 29 and 7 s, seconds apart).
        manager(endpoint, clock, store, hooks=(hook,), seed=1, node_spread=30) as first,
        manager(endpoint, clock, store, hooks=(hook,), seed=2, node_spread=30) as second,
        manager(endpoint, clock, store, hooks=(hook,), seed=3, node_spread=30) as third,
    ):
        nodes = (first, second, third)
        for node in nodes:
            await node.valid_token(KEY)
        await trio.sleep(due - clock() + 30)
        assert len(rotated_at) == 3
        assert all(due <= when < due + 30.2 for when in rotated_at)
        stats = [node.statistics() for node in nodes]
        assert sorted(s.refreshes_succeeded for s in stats) == [0, 0, 1]
        assert sorted(s.refreshes_adopted for s in stats) == [0, 1, 1]
        assert sum(s.refreshes_deferred for s in stats) == 0
        assert store.locks == 1  # only the first to wake took the lock
        assert len({await node.valid_token(KEY) for node in nodes}) == 1
    assert endpoint.refreshes[SHOP] == 1


async def test_node_spread_is_capped_before_the_hard_expiry(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """An offset larger than the time left is capped at half of it: never past hard expiry."""
    store = MemoryStore()
    token = await installed(endpoint, store)
    policy = RefreshPolicy(node_spread=10_000)
    assert token.expires_at is not None
    due, hard = _stale_at(token, policy), token.expires_at.timestamp() - policy.skew
    started: list[float] = []

    def hook(event: TokenEvent) -> None:
        if event.kind is EventKind.REFRESH_STARTED:
            started.append(clock())

    async with (
        endpoint.oauth(clock=clock) as oauth,
        open_token_manager(oauth, store, policy=policy, clock=clock, hooks=[hook]) as tokens,
    ):
        await tokens.valid_token(KEY)
        await trio.sleep(hard - clock())
        assert len(started) == 1
        assert due <= started[0] <= (due + hard) / 2
    with pytest.raises(ValueError, match="node_spread"):
        RefreshPolicy(node_spread=-1)
