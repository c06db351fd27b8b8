"""TokenManager: the decision table, single flight, persistence, supervision, parking."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import attrs
import httpx
import pytest
import trio
import trio.testing

from shoptoken import (
    EventKind,
    LockTimeout,
    MemoryStore,
    NoToken,
    PersistenceError,
    ReauthorizationRequired,
    RefreshFailed,
    RefreshPolicy,
    Token,
    TokenEvent,
    TokenKey,
    TokenKind,
    open_token_manager,
)
from shoptoken._core._schedule import jitter_offset
from shoptoken.testing import FakeShopify

from ._managers import KEY, SHOP, Clock, expiring, installed, manager
from .fakes import FlakyStore, PlainStore, at

# -- the decision table -------------------------------------------------------


async def test_no_token_raises_no_token_without_http(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A key with nothing stored raises NoToken and sends no request."""
    async with manager(endpoint, clock) as tokens:
        with pytest.raises(NoToken):
            await tokens.valid_token(KEY)
        assert endpoint.requests == 0
        assert tokens.statistics().keys_known == 0


async def test_fresh_token_is_served_without_lock_io_or_checkpoint(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A fresh cached token returns even inside a cancelled scope: no checkpoint, no I/O."""
    store = FlakyStore()
    token = await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        assert await tokens.valid_token(KEY) == token
        loads = store.loads
        with trio.CancelScope() as scope:
            scope.cancel()
            # Any checkpoint here would raise Cancelled.
            assert await tokens.valid_token(KEY) == token
            assert await tokens.valid_token(TokenKey.offline("MY-STORE.myshopify.com")) == token
        assert not scope.cancelled_caught
        assert store.loads == loads
        assert endpoint.requests == 0


async def test_first_use_loads_once_under_many_concurrent_callers(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """100 concurrent first callers cause exactly one load_tokens call."""
    store = FlakyStore(load_latency=1.0)
    token = await installed(endpoint, store)
    results: list[Token] = []
    async with manager(endpoint, clock, store) as tokens:

        async def call() -> None:
            results.append(await tokens.valid_token(KEY))

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(call)
    assert store.loads == 1
    assert results == [token] * 100


async def test_load_failure_raises_persistence_error_and_next_use_retries(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A failed load is an error (never 'no token') for all who share it; the next use retries."""
    store = FlakyStore(fail_loads=1, load_latency=1.0)
    token = await installed(endpoint, store)
    errors: list[BaseException] = []
    async with manager(endpoint, clock, store) as tokens:

        async def call() -> None:
            try:
                await tokens.valid_token(KEY)
            except PersistenceError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(call)
        assert len(errors) == 10
        assert store.loads == 1
        assert "database unavailable" in str(errors[0])
        assert await tokens.valid_token(KEY) == token
        assert store.loads == 2
        assert tokens.statistics().loads_failed == 1


async def test_stale_token_is_refreshed_single_flight(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Past its refresh time (but not expired) a token is refreshed before it is served."""
    store = MemoryStore()
    old = await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        await trio.sleep(3600 - 200)  # inside the 300 s lead, outside the 60 s skew
        start = endpoint.refreshes.get(SHOP, 0)
        new = await tokens.valid_token(KEY)
        assert new != old
        assert endpoint.is_valid(SHOP, new.access_token)
        assert endpoint.refreshes[SHOP] == start + (0 if start else 1)
        assert await store.load_tokens(KEY) == new


async def test_stale_refresh_failure_keeps_serving_the_valid_token(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A stale token whose refresh got a 503 is still served (and reported) while valid."""
    store = PlainStore()
    stale = expiring(clock, 200)
    await store.save_tokens(KEY, stale)
    endpoint.fail_next(503)
    events: list[TokenEvent] = []
    async with manager(endpoint, clock, store, events=events) as tokens:
        assert await tokens.valid_token(KEY) == stale  # serves, refreshes in the background
        await trio.sleep(0.5)  # the refresh failed; the backoff runs
        assert await tokens.valid_token(KEY) == stale
        assert tokens.statistics().refreshes_failed == 1
        assert tokens.statistics().stale_served == 1
    served = [e for e in events if e.kind is EventKind.STALE_SERVED]
    assert len(served) == 1
    assert served[0].error is not None
    assert "503" in served[0].error


def test_stale_while_error_is_deprecated() -> None:
    """Setting stale_while_error warns that it has no effect any more."""
    with pytest.warns(DeprecationWarning, match="no effect"):
        RefreshPolicy(stale_while_error=True)


async def test_hard_expired_token_waits_for_the_refresh(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Inside the skew a token is never served: callers wait for the refresh (latency 2 s)."""
    store = MemoryStore()
    await installed(endpoint, store)
    endpoint.latency = 2.0
    async with manager(endpoint, clock, store) as tokens:
        await trio.sleep(3600 - 30)
        before = trio.current_time()
        token = await tokens.valid_token(KEY)
        assert trio.current_time() - before == 2.0
        assert endpoint.is_valid(SHOP, token.access_token)


async def test_non_expiring_token_is_served_as_is_without_a_task(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A legacy non-expiring token is returned as is, with no refresher task and no request."""
    store = PlainStore()
    legacy = Token(access_token="shpat_legacy_SECRET")
    await store.save_tokens(KEY, legacy)
    async with manager(endpoint, clock, store) as tokens:
        assert await tokens.valid_token(KEY) == legacy
        await trio.sleep(10 * 86400)
        assert await tokens.valid_token(KEY) == legacy
        assert tokens.statistics().keys_active == 0
    assert endpoint.requests == 0


async def test_expired_refresh_token_requires_reauthorization_without_http(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A token whose refresh token has expired raises ReauthorizationRequired, no request sent."""
    store = PlainStore()
    dead = Token(
        access_token="shpat_a_SECRET",
        refresh_token="shprt_r_SECRET",
        expires_at=at(clock, 30),
        refresh_token_expires_at=at(clock, -1),
    )
    await store.save_tokens(KEY, dead)
    async with manager(endpoint, clock, store) as tokens:
        with pytest.raises(ReauthorizationRequired):
            await tokens.valid_token(KEY)
        assert tokens.statistics().keys_reauthorization_required == 1
    assert endpoint.requests == 0


async def test_invalid_grant_stops_http_until_put_token(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """invalid_grant marks the key: no more requests until put_token installs a new pair."""
    store = PlainStore()
    await store.save_tokens(KEY, expiring(clock, 30))  # unknown to Shopify: revoked
    events: list[TokenEvent] = []
    async with manager(endpoint, clock, store, events=events) as tokens:
        with pytest.raises(ReauthorizationRequired):
            await tokens.valid_token(KEY)
        assert endpoint.requests == 1
        for _ in range(5):
            with pytest.raises(ReauthorizationRequired):
                await tokens.valid_token(KEY)
        await trio.sleep(7200)
        assert endpoint.requests == 1
        fresh = endpoint.install(SHOP)
        await tokens.put_token(KEY, fresh)
        assert await tokens.valid_token(KEY) == fresh
        assert tokens.statistics().keys_reauthorization_required == 0
    reauth = [e for e in events if e.kind is EventKind.REAUTHORIZATION_REQUIRED]
    assert len(reauth) == 1


async def test_token_without_refresh_token_is_served_until_hard_expiry(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A token without refresh token serves until expiry - skew, then needs re-auth."""
    store = PlainStore()
    online = expiring(clock, 1000, refresh=None)
    await store.save_tokens(KEY, online)
    async with manager(endpoint, clock, store) as tokens:
        assert await tokens.valid_token(KEY) == online
        await trio.sleep(1000 - 60)
        with pytest.raises(ReauthorizationRequired):
            await tokens.valid_token(KEY)
    assert endpoint.requests == 0


# -- single flight ---------------------------------------------------------------


async def test_thousand_callers_on_an_expired_token_cause_one_refresh(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """1,000 concurrent callers on an expired token: one request, one re-read, one token for all."""
    store = FlakyStore()
    await installed(endpoint, store)
    endpoint.latency = 0.05
    results: list[Token] = []
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        autojump_clock.jump(3600)  # straight past expiry: the refresher never ran
        before = endpoint.requests
        locks = store.locks

        async def call() -> None:
            results.append(await tokens.valid_token(KEY))

        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(call)
        assert endpoint.requests == before + 1
        # One flight took the store's lock and re-read the token, not 1,000.
        assert store.locks == locks + 1
    assert len(results) == 1000
    assert len(set(results)) == 1
    assert endpoint.is_valid(SHOP, results[0].access_token) or endpoint.rejected == 0


async def test_callers_joining_a_failing_refresh_each_get_its_error(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A herd on an expired token whose one refresh fails: one request, every caller raises."""
    store = MemoryStore()
    await installed(endpoint, store)
    endpoint.latency = 0.05
    errors: list[Exception] = []
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        autojump_clock.jump(3600)
        before = endpoint.requests
        endpoint.fail_next(500)

        async def call() -> None:
            try:
                await tokens.valid_token(KEY)
            except RefreshFailed as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(call)
        assert endpoint.requests == before + 1
    assert len(errors) == 200
    assert len({id(e) for e in errors}) == 200  # each its own copy


async def test_proactive_refresh_stays_in_its_window_for_48_hours(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """For 48 h refreshes start in [exp-lead-jitter, exp-lead] with the latest refresh token."""
    store = MemoryStore()
    await installed(endpoint, store)
    events: list[tuple[float, TokenEvent]] = []
    expiries: list[float] = []
    async with manager(
        endpoint, clock, store, hooks=(lambda e: events.append((clock(), e)),)
    ) as tokens:
        served_expired = 0
        for _ in range(48 * 6):  # the app uses the token every 10 minutes
            token = await tokens.valid_token(KEY)
            assert token.expires_at is not None
            expiries.append(token.expires_at.timestamp())
            served_expired += not endpoint.is_valid(SHOP, token.access_token)
            await trio.sleep(600)
        assert served_expired == 0
    starts = [t for t, e in events if e.kind is EventKind.REFRESH_STARTED]
    period = 3600 - 300 - jitter_offset(KEY, 60)
    assert len(starts) == math.floor(48 * 3600 / period)
    # Each refresh starts inside the window of the token it replaces, at the
    # key's own fixed offset in it.
    exp = sorted(set(expiries))
    for start, expires in zip(starts, exp, strict=False):
        assert expires - 360 <= start <= expires - 300
        assert start == pytest.approx(expires - 300 - jitter_offset(KEY, 60), abs=1e-6)
    # Every refresh presented the latest refresh token: none was refused, and
    # none needed Shopify's recovery window.
    assert (endpoint.rejected, endpoint.recovered) == (0, 0)


async def test_cancelled_caller_does_not_cancel_the_refresh_or_its_save(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A caller cancelled mid-refresh leaves the rotation to complete and be saved."""
    store = MemoryStore()
    await installed(endpoint, store)
    endpoint.latency = 10.0
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        autojump_clock.jump(3600)
        with trio.move_on_after(1) as scope:
            await tokens.valid_token(KEY)
        assert scope.cancelled_caught
        await trio.sleep(20)
        saved = await store.load_tokens(KEY)
        assert saved is not None
        assert endpoint.is_valid(SHOP, saved.access_token)
        assert await tokens.valid_token(KEY) == saved
    assert endpoint.refreshes[SHOP] == 1


async def test_refresh_token_adopts_a_pair_refreshed_by_another_process(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """refresh_token re-reads the store: a pair another node saved meanwhile is adopted."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        elsewhere = endpoint.install(SHOP)  # another node rotated and saved
        await store.save_tokens(KEY, elsewhere)
        assert await tokens.refresh_token(KEY) == elsewhere
        assert endpoint.requests == 0
        assert tokens.statistics().refreshes_adopted == 1
        forced = await tokens.refresh_token(KEY)
        assert forced != elsewhere
        assert endpoint.refreshes[SHOP] == 1


async def test_tokens_are_dated_by_the_managers_clock(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A new token expires at the manager's send time + expires_in, whatever the client's clock."""
    store = MemoryStore()
    await installed(endpoint, store)
    oauth = endpoint.oauth(clock=lambda: 0.0)  # a client with a broken clock
    async with oauth, open_token_manager(oauth, store, clock=clock) as tokens:
        await trio.sleep(100)
        sent = clock()
        token = await tokens.refresh_token(KEY)
    assert token.expires_at == datetime.fromtimestamp(sent + 3600, UTC)


async def test_concurrent_refreshes_are_capped(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """With max_concurrent_refreshes=4, 20 due keys refresh 4 at a time."""
    store = MemoryStore()
    keys = [TokenKey.offline(f"shop-{i}") for i in range(20)]
    for key in keys:
        await installed(endpoint, store, key)
    endpoint.latency = 1.0
    async with manager(endpoint, clock, store, max_concurrent_refreshes=4) as tokens:
        autojump_clock.jump(3600)
        before = trio.current_time()
        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(tokens.valid_token, key)
        assert trio.current_time() - before == 5.0


# -- persistence -------------------------------------------------------------------


async def test_save_failure_serves_the_new_pair_and_retries_until_it_lands(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A failed save keeps the new pair in memory, serves it, retries, and loses nothing."""
    store = FlakyStore()
    await installed(endpoint, store)
    events: list[TokenEvent] = []
    async with manager(endpoint, clock, store, events=events) as tokens:
        await tokens.valid_token(KEY)
        autojump_clock.jump(3600)
        store.fail_saves = 3
        new = await tokens.valid_token(KEY)
        assert endpoint.is_valid(SHOP, new.access_token)
        stats = tokens.statistics()
        assert stats.saves_pending == 1
        assert stats.saves_failed == 1
        await trio.sleep(60)
        assert await store.load_tokens(KEY) == new
        assert tokens.statistics().saves_pending == 0
        assert tokens.statistics().saves_failed == 3
        # The next rotation uses the pair that was only in memory for a while.
        autojump_clock.jump(3600)
        newer = await tokens.valid_token(KEY)
        assert endpoint.is_valid(SHOP, newer.access_token)
    assert endpoint.rejected == 0
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.PERSISTENCE_FAILED) == 3
    assert kinds.count(EventKind.PERSISTENCE_RECOVERED) == 1
    failed = next(e for e in events if e.kind is EventKind.PERSISTENCE_FAILED)
    assert failed.error is not None
    assert new.access_token not in failed.error
    assert "[redacted]" in failed.error


async def test_put_token_save_failure_raises_and_changes_nothing(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """put_token whose save fails raises PersistenceError and installs nothing."""
    store = FlakyStore(fail_saves=1)
    token = endpoint.install(SHOP)
    async with manager(endpoint, clock, store) as tokens:
        with pytest.raises(PersistenceError) as info:
            await tokens.put_token(KEY, token)
        assert token.access_token not in str(info.value)
        with pytest.raises(NoToken):
            await tokens.valid_token(KEY)
        await tokens.put_token(KEY, token)
        assert await tokens.valid_token(KEY) == token


async def test_plain_callback_without_capabilities_works(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A two-method TokenCallback is enough: refreshes re-read with load_tokens and save."""
    store = PlainStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        await trio.sleep(3 * 3600)
        token = await tokens.valid_token(KEY)
        assert store.tokens[KEY] == token
        assert endpoint.refreshes[SHOP] == 3
        await tokens.forget(KEY)  # no delete_tokens: dropped from memory only
        assert KEY in store.tokens


async def test_forget_deletes_and_stops_refreshing(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Forget deletes the stored pair and stops the key's refresher."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        await tokens.forget(KEY)
        assert await store.load_tokens(KEY) is None
        await trio.sleep(5 * 3600)
        assert endpoint.requests == 0
        with pytest.raises(NoToken):
            await tokens.valid_token(KEY)
        assert tokens.statistics().keys_known == 0


async def test_fetch_token_returns_the_stored_token_without_refreshing(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """fetch_token returns even an expired token as stored, with no request and no task."""
    store = PlainStore()
    old = expiring(clock, -100)
    await store.save_tokens(KEY, old)
    async with manager(endpoint, clock, store) as tokens:
        assert await tokens.fetch_token(KEY) == old
        assert tokens.statistics().keys_active == 0
        with pytest.raises(NoToken):
            await tokens.fetch_token(TokenKey.offline("other"))
    assert endpoint.requests == 0


# -- supervision, parking, shutdown --------------------------------------------------


async def test_crashing_refresher_is_restarted_and_others_are_unaffected(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A bug in one key's keeper task is logged and the task restarted; other keys keep going."""
    store = MemoryStore()
    other = TokenKey.offline("other-store")
    await installed(endpoint, store)
    await installed(endpoint, store, other)
    crashes = {"left": 0}

    def buggy_clock() -> float:
        # The keeper's first act is to read the clock: a bug there crashes it.
        if crashes["left"] and trio.lowlevel.current_task().name == "shoptoken.keeper":
            crashes["left"] -= 1
            raise ZeroDivisionError("bug")
        return clock()

    events: list[TokenEvent] = []
    async with manager(endpoint, buggy_clock, store, events=events) as tokens:
        crashes["left"] = 2
        await tokens.valid_token(KEY)  # KEY's keeper starts, and crashes twice
        await trio.sleep(60)
        assert crashes["left"] == 0
        await tokens.valid_token(other)
        await trio.sleep(3 * 3600)
        assert tokens.statistics().refresher_crashes == 2
        assert endpoint.refreshes[SHOP] == 3
        assert endpoint.refreshes[other.shop] == 3
    crashed = [e for e in events if e.kind is EventKind.REFRESHER_CRASHED]
    assert [e.attempt for e in crashed] == [1, 2]
    assert all(e.error == "ZeroDivisionError: bug" and e.key == KEY for e in crashed)


async def test_transient_failures_are_retried_with_backoff_before_expiry(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Failed scheduled refreshes (5xx, 429, network) are retried; no expired token is served."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        endpoint.fail_next(500, 520, httpx.ConnectError("down"), 429)
        await trio.sleep(3600)
        token = await tokens.valid_token(KEY)
        assert endpoint.is_valid(SHOP, token.access_token)
        assert tokens.statistics().refreshes_failed == 4
        assert endpoint.refreshes[SHOP] == 1


async def test_idle_keys_park_and_the_sweeper_keeps_their_refresh_tokens_alive(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """An idle key parks (no task); near refresh-token expiry the sweeper refreshes it."""
    endpoint.refresh_lifetime = 10 * 86400
    store = MemoryStore()
    await installed(endpoint, store)
    events: list[TokenEvent] = []
    async with manager(endpoint, clock, store, events=events, idle_after=86400) as tokens:
        await tokens.valid_token(KEY)
        await trio.sleep(86400 + 3600)
        stats = tokens.statistics()
        assert (stats.keys_parked, stats.keys_active, stats.keys_known) == (1, 0, 1)
        parked_refreshes = endpoint.refreshes[SHOP]
        await trio.sleep(2 * 86400)  # day 3: nothing yet
        assert endpoint.refreshes[SHOP] == parked_refreshes
        await trio.sleep(5 * 86400)  # past day 10 - 7 = day ~3.9 + ...: keep-alive ran
        assert endpoint.refreshes[SHOP] > parked_refreshes
        assert tokens.statistics().keys_parked == 1
        await trio.sleep(30 * 86400)  # a month unused: still alive
        token = await tokens.valid_token(KEY)
        assert endpoint.is_valid(SHOP, token.access_token)
    assert endpoint.rejected == 0
    assert any(e.kind is EventKind.KEY_PARKED for e in events)


async def test_body_exception_reaches_the_caller_unwrapped(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """An exception raised in the manager's block is not wrapped in an ExceptionGroup."""
    with pytest.raises(KeyError, match="boom"):
        async with manager(endpoint, clock):
            raise KeyError("boom")


async def test_exit_waits_for_an_in_flight_refresh_and_save(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Leaving the block lets a refresh in flight finish and be saved."""
    store = MemoryStore()
    await installed(endpoint, store)
    endpoint.latency = 5.0
    start = trio.current_time()
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        autojump_clock.jump(3600)
        with trio.move_on_after(1):
            await tokens.valid_token(KEY)
    assert trio.current_time() - start == 3600 + 5.0
    saved = await store.load_tokens(KEY)
    assert saved is not None
    assert endpoint.is_valid(SHOP, saved.access_token)


async def test_outer_cancellation_still_lets_the_refresh_and_save_finish(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancelling the whole manager from outside does not cut a rotation Shopify performed."""
    store = MemoryStore()
    await installed(endpoint, store)
    endpoint.latency = 5.0
    with trio.move_on_after(3600 + 1) as outer:
        async with manager(endpoint, clock, store) as tokens:
            await tokens.valid_token(KEY)
            autojump_clock.jump(3600)
            await tokens.valid_token(KEY)
    assert outer.cancelled_caught
    saved = await store.load_tokens(KEY)
    assert saved is not None
    assert endpoint.refreshes[SHOP] == 1
    assert endpoint.is_valid(SHOP, saved.access_token)


async def test_exit_wait_is_bounded_by_shutdown_grace(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A refresh that hangs is cut after shutdown_grace seconds."""
    store = MemoryStore()
    await installed(endpoint, store)
    endpoint.latency = 1000.0
    async with manager(endpoint, clock, store, shutdown_grace=10.0) as tokens:
        await tokens.valid_token(KEY)
        autojump_clock.jump(3600)
        with trio.move_on_after(1):
            await tokens.valid_token(KEY)
        start = trio.current_time()
    assert trio.current_time() - start == 10.0


async def test_closed_manager_refuses_calls(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """After its block ends the manager raises RuntimeError, even for a cached key."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
    with pytest.raises(RuntimeError, match="closed"):
        await tokens.valid_token(KEY)
    with pytest.raises(RuntimeError, match="closed"):
        await tokens.put_token(KEY, endpoint.install(SHOP))


async def test_statistics_is_a_frozen_snapshot(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """statistics() counts keys and refreshes, and the snapshot does not change afterwards."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        before = tokens.statistics()
        await tokens.refresh_token(KEY)
        after = tokens.statistics()
        assert (before.keys_known, before.keys_active, before.refreshes_succeeded) == (1, 1, 0)
        assert after.refreshes_succeeded == 1
        assert before.refreshes_succeeded == 0
        with pytest.raises(AttributeError):
            before.keys_known = 5  # type: ignore[misc]


# -- routing, misuse, ordering ---------------------------------------------------


@attrs.define
class CountingRefresher:
    """A refresher for customer keys: new pair each time, counts calls."""

    clock: Clock
    calls: int = 0

    async def refresh(self, key: TokenKey, token: Token, *, clock: Clock | None = None) -> Token:
        """Issue the next pair."""
        self.calls += 1
        await trio.lowlevel.checkpoint()
        return Token(
            access_token=f"cust_access_{self.calls}",
            refresh_token=f"cust_refresh_{self.calls}",
            expires_at=at(clock or self.clock, 3600),
        )


async def test_one_manager_routes_refreshes_by_key_kind(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A mapping of kinds to refreshers serves Admin and customer keys side by side."""
    store = MemoryStore()
    await installed(endpoint, store)
    customer = TokenKey.customer("my-store", "gid://shopify/Customer/7")
    await store.save_tokens(customer, expiring(clock, 30))
    customers = CountingRefresher(clock)
    async with (
        endpoint.oauth() as oauth,
        open_token_manager(
            {TokenKind.OFFLINE: oauth, TokenKind.CUSTOMER: customers}, store, clock=clock
        ) as tokens,
    ):
        assert (await tokens.valid_token(customer)).access_token == "cust_access_1"
        await tokens.valid_token(KEY)
        await trio.sleep(2 * 3600)
        assert endpoint.refreshes[SHOP] == 2
        assert customers.calls == 3
        online = TokenKey.online("my-store", 42)
        await store.save_tokens(online, expiring(clock, 30))
        with pytest.raises(RefreshFailed, match="no refresher is configured for online") as info:
            await tokens.valid_token(online)
        assert not info.value.transient


async def test_misuse_is_refused_before_the_manager_starts() -> None:
    """A callback or refresher without the needed methods raises TypeError, unwrapped."""
    with pytest.raises(TypeError, match="not a TokenCallback"):
        async with open_token_manager(CountingRefresher(time.time), object()):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match="not a Refresher"):
        async with open_token_manager(object(), MemoryStore()):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match="keyed by TokenKind"):
        async with open_token_manager({"offline": CountingRefresher(time.time)}, MemoryStore()):  # type: ignore[dict-item]
            pass


async def test_the_new_pair_is_saved_before_any_caller_receives_it(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Callers of an expiring key get the new pair only once save_tokens has returned."""
    received: list[tuple[float, Token]] = []
    saved_at: dict[str, float] = {}

    @attrs.define(eq=False)
    class SlowStore(PlainStore):
        async def save_tokens(self, key: TokenKey, token: Token) -> None:
            await trio.sleep(3)
            await super().save_tokens(key, token)
            saved_at[token.access_token] = trio.current_time()

    store = SlowStore()
    await PlainStore.save_tokens(store, KEY, endpoint.install(SHOP))
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        autojump_clock.jump(3600)

        async def call() -> None:
            token = await tokens.valid_token(KEY)
            received.append((trio.current_time(), token))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(call)
    assert len({token for _, token in received}) == 1
    for when, token in received:
        assert when >= saved_at[token.access_token]


async def test_lock_timeout_reaches_the_caller_and_the_refresher_retries(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """When another holder keeps the store's lock, callers get LockTimeout; later it recovers."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store, lock_timeout=5) as tokens:
        await tokens.valid_token(KEY)
        autojump_clock.jump(3600)
        async with store.locked(KEY, timeout=1):  # another process holds the row
            before = trio.current_time()
            with pytest.raises(LockTimeout):
                await tokens.valid_token(KEY)
            assert trio.current_time() - before == 5
        with pytest.raises(LockTimeout):  # inside the backoff: no new attempt, the same error
            await tokens.valid_token(KEY)
        await trio.sleep(RefreshPolicy().retry_initial)  # the keeper retries when it ends
        token = await tokens.valid_token(KEY)
        assert endpoint.is_valid(SHOP, token.access_token)


async def test_plain_store_reread_adopts_another_processes_pair(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Without locked(), the refresh still re-reads load_tokens and adopts a newer stored pair."""
    store = PlainStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        await trio.sleep(3000)  # stale soon; another process refreshes first
        elsewhere = endpoint.install(SHOP)
        await store.save_tokens(KEY, elsewhere)
        await trio.sleep(400)
        assert await tokens.valid_token(KEY) == elsewhere
        assert tokens.statistics().refreshes_adopted == 1
    assert endpoint.refreshes.get(SHOP, 0) == 0


async def test_a_pending_save_never_overwrites_a_newer_pair_from_another_node(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A save retried after another node stored a newer pair adopts that pair instead."""
    store = FlakyStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        autojump_clock.jump(3600)
        store.fail_saves = 1
        mine = await tokens.valid_token(KEY)
        assert tokens.statistics().saves_pending == 1
        await trio.sleep(0.1)
        newer = endpoint.install(SHOP)  # another node rotated later and saved
        await MemoryStore.save_tokens(store, KEY, newer)
        await trio.sleep(10)
        assert await store.load_tokens(KEY) == newer
        assert await tokens.valid_token(KEY) == newer
        assert mine != newer
        stats = tokens.statistics()
        assert (stats.saves_pending, stats.refreshes_adopted) == (0, 1)


async def test_closing_while_the_sweeper_loads_a_parked_key_is_clean(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A keep-alive load that finishes after the manager began closing stops quietly."""

    @attrs.define(eq=False)
    class ThreadLikeStore(MemoryStore):
        async def load_tokens(self, key: TokenKey) -> Token | None:
            # Like trio.to_thread: the load runs to its end despite cancellation.
            with trio.CancelScope(shield=True):
                await trio.sleep(5)
                token = await super().load_tokens(key)
            return token  # noqa: RET504 - a return inside the scope reads to mypy as maybe skipped

    store = ThreadLikeStore()
    events: list[TokenEvent] = []
    async with manager(
        endpoint,
        clock,
        store,
        events=events,
        idle_after=60,
        sweep_interval=30,
        keepalive_before=100 * 86400,
    ) as tokens:
        await tokens.put_token(KEY, endpoint.install(SHOP))
        await trio.sleep(92)  # parked at 60; the sweep at 90 is loading it now
        assert tokens.statistics().keys_parked == 0
    assert not [e for e in events if e.kind is EventKind.REFRESHER_CRASHED]


async def test_put_token_during_a_slow_first_load_wins(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A token installed while the first load is still reading is not overwritten by it."""

    @attrs.define(eq=False)
    class ReadThenStall(MemoryStore):
        async def load_tokens(self, key: TokenKey) -> Token | None:
            token = await super().load_tokens(key)  # read the old row...
            await trio.sleep(5)  # ...and answer late
            return token

    store = ReadThenStall()
    old = await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        loaded: list[Token] = []

        async def first_use() -> None:
            loaded.append(await tokens.valid_token(KEY))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first_use)
            await trio.sleep(1)
            fresh = endpoint.install(SHOP)  # re-installed while the load reads
            await tokens.put_token(KEY, fresh)
        assert await tokens.valid_token(KEY) == fresh
        assert await store.load_tokens(KEY) == fresh
        assert loaded in ([old], [fresh])


async def test_a_pair_still_unsaved_at_exit_is_reported(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Saves failing until the manager exits: the unsaved pair is reported at the cut."""
    store = FlakyStore()
    await installed(endpoint, store)
    events: list[TokenEvent] = []
    async with manager(endpoint, clock, store, events=events, shutdown_grace=5) as tokens:
        await tokens.valid_token(KEY)
        store.fail_saves = 1_000
        await tokens.refresh_token(KEY)
        assert tokens.statistics().saves_pending == 1
    last = events[-1]
    assert (last.kind, last.reason) == (EventKind.PERSISTENCE_FAILED, "cut at shutdown_grace")


@pytest.mark.parametrize("status", [429, 504], ids=["not-rotated", "outcome-unknown"])
async def test_a_failed_keepalive_is_tried_again(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock, status: int
) -> None:
    """A parked key's keep-alive that fails is retried (re-parked, or kept until it lands)."""
    events: list[TokenEvent] = []
    async with manager(
        endpoint,
        clock,
        events=events,
        idle_after=60,
        sweep_interval=30,
        keepalive_before=100 * 86400,  # a parked key is due its keep-alive at once
    ) as tokens:
        await tokens.put_token(KEY, endpoint.install(SHOP))
        await trio.sleep(75)  # parked at 60
        assert tokens.statistics().keys_parked == 1
        endpoint.fail_next(status)  # the sweep at 90: its keep-alive is refused
        await trio.sleep(20)
        assert [e for e in events if e.kind is EventKind.REFRESH_FAILED]
        await trio.sleep(600)
        assert endpoint.statistics(SHOP).refreshes >= 1
        stats = tokens.statistics()
        assert (stats.keys_parked, stats.keys_reauthorization_required) == (1, 0)


async def test_one_refused_keepalive_does_not_let_a_refresh_token_die(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """An idle shop whose day-83 keep-alive meets one 429 is still served at day 91."""
    async with manager(endpoint, clock, idle_after=60) as tokens:
        await tokens.put_token(KEY, endpoint.install(SHOP))
        await trio.sleep(83 * 86400 - 1800)  # parked long ago; its keep-alive is due next sweep
        assert tokens.statistics().keys_parked == 1
        endpoint.fail_next(429)
        await trio.sleep(8 * 86400)  # day 91: the first refresh token has expired
        token = await tokens.valid_token(KEY)
        assert endpoint.is_valid(SHOP, token.access_token)
