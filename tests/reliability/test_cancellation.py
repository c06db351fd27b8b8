"""Cancellation: callers cancelled mid-refresh, and managers shut down mid-refresh.

Every rotation Shopify performs must reach the store. The fake records every
pair it issues and the store every pair it saves, so after the manager has
exited the test counts exactly which rotations were lost. Token requests go
through a transport that waits a seeded random time both before the fake
rotates and after (the answer is on its way back), and the store takes time
to load and save, so cancellations land at every stage of a refresh.

Run: ``pytest tests/reliability/test_cancellation.py -s``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

from shoptoken import (
    EventHook,
    EventKind,
    MemoryStore,
    ReauthorizationRequired,
    RefreshPolicy,
    ShopifyOAuth,
    ShopTokenError,
    Token,
    TokenEvent,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.testing import trio_wall_clock

from . import Clock, RecordingShopify, quiet_logs, report, seeded

SEED = 1234
DAY = 86400.0


@attrs.define(eq=False)
class RecordingStore(MemoryStore):
    """A MemoryStore that takes ``latency`` per call and remembers every refresh token saved."""

    latency: float = 0.0
    fail_saves: bool = False
    saved: set[str] = attrs.field(factory=set)

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load, slowly."""
        await trio.sleep(self.latency)
        return await super().load_tokens(key)

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Save slowly (or fail), and remember the refresh token once saved."""
        await trio.sleep(self.latency)
        if self.fail_saves:
            raise OSError("disk full")
        await super().save_tokens(key, token)
        assert token.refresh_token is not None
        self.saved.add(token.refresh_token)


@attrs.define(eq=False)
class SlowShopify:
    """An in-process transport: waits before the fake rotates and after (the answer in transit).

    Each wait is drawn from ``[0, before]`` and ``[0, after]`` with a seeded
    generator, or is exactly ``before``/``after`` when ``exact``.
    """

    fake: RecordingShopify
    before: float = 0.0
    after: float = 0.0
    exact: bool = False
    rng: random.Random = attrs.field(factory=lambda: seeded(SEED))

    def _wait(self, most: float) -> float:
        return most if self.exact else self.rng.uniform(0, most)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer through the fake, late."""
        await trio.sleep(self._wait(self.before))
        response = await self.fake.handle(request)
        await trio.sleep(self._wait(self.after))
        return response

    def oauth(self, clock: Clock) -> ShopifyOAuth:
        """A ShopifyOAuth reaching the fake through this transport."""
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
        return ShopifyOAuth(self.fake.client_id, self.fake.client_secret, http=http, clock=clock)


@asynccontextmanager
async def manager(
    shopify: SlowShopify,
    clock: Clock,
    store: Any,
    hooks: Sequence[EventHook] = (),
    **policy: Any,
) -> AsyncIterator[TokenManager]:
    """A manager reaching the fake through ``shopify``, on the test clock."""
    oauth = shopify.oauth(clock)
    async with (
        oauth,
        open_token_manager(
            oauth, store, policy=RefreshPolicy(**policy), clock=clock, hooks=hooks
        ) as tokens,
    ):
        yield tokens


async def fleet(n: int, prefix: str) -> tuple[RecordingShopify, RecordingStore, list[TokenKey]]:
    """``n`` shops installed at the fake and in a recording store."""
    fake = RecordingShopify(clock=trio_wall_clock())
    store = RecordingStore()
    keys = [TokenKey.offline(f"{prefix}-{i:03d}") for i in range(n)]
    for key in keys:
        await store.save_tokens(key, fake.install(key.shop))
    return fake, store, keys


async def lost(fake: RecordingShopify, store: RecordingStore, keys: list[TokenKey]) -> int:
    """Rotations Shopify performed whose pair never reached the store."""
    count = 0
    for key in keys:
        count += sum(1 for refresh in fake.issued[key.shop] if refresh not in store.saved)
    return count


async def stored_is_current(fake: RecordingShopify, store: RecordingStore, key: TokenKey) -> bool:
    """Whether the store holds Shopify's current pair for ``key``."""
    stored = await MemoryStore.load_tokens(store, key)
    assert stored is not None
    return stored.refresh_token == fake.current(key.shop)


# -- callers cancelled at random points -------------------------------------------------


async def test_callers_cancelled_at_random_points_lose_no_rotation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """2,000 callers over 20 keys, each giving up after a random 0-4 s: no rotation is lost."""
    fake, store, keys = await fleet(20, "cancel")
    store.latency = 0.5
    shopify = SlowShopify(fake, before=1.0, after=1.0)
    clock = trio_wall_clock()
    rng = seeded(SEED)
    figures = {
        "callers": 0,
        "cancelled": 0,
        "cancelled_mid_refresh": 0,
        "completed": 0,
    }
    invalid = 0

    async def caller(tokens: TokenManager, key: TokenKey, start: float, patience: float) -> None:
        nonlocal invalid
        await trio.sleep_until(start)
        figures["callers"] += 1
        force = rng.random() < 0.5
        with trio.move_on_after(patience) as scope:
            try:
                token = await (tokens.refresh_token(key) if force else tokens.valid_token(key))
            except ShopTokenError:
                return
            if not fake.is_valid(key.shop, token.access_token):
                invalid += 1
            figures["completed"] += 1
        if scope.cancelled_caught:
            figures["cancelled"] += 1
            if tokens.statistics().refreshes_in_flight:
                figures["cancelled_mid_refresh"] += 1

    with quiet_logs():
        async with manager(shopify, clock, store) as tokens:
            async with trio.open_nursery() as nursery:
                for _ in range(2000):
                    key = rng.choice(keys)
                    start = rng.uniform(0, 4 * 3600)
                    nursery.start_soon(caller, tokens, key, start, rng.uniform(0, 4))
            stats = tokens.statistics()
    rotations = sum(len(fake.issued[key.shop]) - 1 for key in keys)
    pairs_lost = await lost(fake, store, keys)
    behind = [key for key in keys if not await stored_is_current(fake, store, key)]
    report(
        "cancelled callers",
        keys=len(keys),
        rotations=rotations,
        refreshes_succeeded=stats.refreshes_succeeded,
        served_invalid=invalid,
        pairs_lost=pairs_lost,
        stores_behind=len(behind),
        **figures,
    )
    assert figures["cancelled_mid_refresh"] > 100
    assert invalid == 0
    assert pairs_lost == 0
    assert behind == []
    assert fake.rejected == fake.recovered == 0


async def test_no_token_is_served_while_a_forced_refresh_revokes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """During a forced refresh, valid_token waits for the new pair rather than serve the old."""
    fake, store, [key] = await fleet(1, "forced")
    shopify = SlowShopify(fake, after=5.0, exact=True)  # rotated at once, answer 5 s later
    clock = trio_wall_clock()
    async with manager(shopify, clock, store) as tokens, trio.open_nursery() as nursery:
        await tokens.valid_token(key)
        nursery.start_soon(tokens.refresh_token, key)
        await trio.sleep(1)
        assert len(fake.issued[key.shop]) == 2  # Shopify has rotated: the old token is dead
        token = await tokens.valid_token(key)
        assert fake.is_valid(key.shop, token.access_token)


# -- the manager shut down mid-refresh --------------------------------------------------


@pytest.mark.parametrize("how", ["block-left", "outer-cancel"])
async def test_shutdown_mid_refresh_saves_every_rotation(
    how: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Leaving the block (or cancelling it) during 40 forced refreshes loses none of them."""
    fake, store, keys = await fleet(40, "shutdown")
    store.latency = 0.5
    shopify = SlowShopify(fake, before=1.0, after=1.0)
    clock = trio_wall_clock()
    rng = seeded(SEED)
    rounds = 25
    for _ in range(rounds):
        # A new manager each round; each is shut down at a random moment of
        # its refreshes (which take 0.5-3 s, 16 at a time).
        cut = rng.uniform(0, 6)
        with quiet_logs(), trio.move_on_after(cut if how == "outer-cancel" else 1e9):
            async with manager(shopify, clock, store) as tokens, trio.open_nursery() as callers:
                for key in keys:
                    callers.start_soon(tokens.refresh_token, key)
                if how == "block-left":
                    await trio.sleep(cut)
                    callers.cancel_scope.cancel()  # the block is left mid-refresh
        await trio.sleep(3600)  # between rounds: no manager runs
    rotations = sum(len(fake.issued[key.shop]) - 1 for key in keys)
    pairs_lost = await lost(fake, store, keys)
    behind = [key for key in keys if not await stored_is_current(fake, store, key)]
    report(
        f"shutdown mid-refresh ({how})",
        rounds=rounds,
        keys=len(keys),
        rotations=rotations,
        pairs_lost=pairs_lost,
        stores_behind=len(behind),
    )
    assert 0 < rotations < rounds * len(keys)  # some refreshes never started: cut first
    assert pairs_lost == 0
    assert behind == []


# -- a refresh longer than shutdown_grace ----------------------------------------------


@pytest.mark.parametrize("why", ["slow-answer", "failing-save"])
async def test_a_refresh_cut_by_shutdown_grace_is_recovered_by_the_next_manager(
    why: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A rotation cut after shutdown_grace is lost from the store; the next manager recovers it.

    ``slow-answer``: Shopify rotates, but its answer takes 30 s to arrive,
    longer than ``shutdown_grace`` (10 s). ``failing-save``: the answer
    arrives but every save fails, and the retries are cut after the grace.
    Either way the store keeps the old pair; Shopify's recovery window keeps
    its refresh token usable, and a new manager recovers without
    re-authorization.
    """
    fake, store, [key] = await fleet(1, why)
    shopify = SlowShopify(fake, after=30.0 if why == "slow-answer" else 0.0, exact=True)
    clock = trio_wall_clock()
    events: list[TokenEvent] = []
    old = await MemoryStore.load_tokens(store, key)
    assert old is not None
    assert old.refresh_token is not None
    async with manager(shopify, clock, store, [events.append], shutdown_grace=10.0) as tokens:
        await tokens.valid_token(key)
        await trio.sleep(3000)
        store.fail_saves = why == "failing-save"
        with trio.move_on_after(1):
            await tokens.refresh_token(key)  # forced, while the token is still fresh
        # Let the save-retry task start before the block ends: one that starts
        # after it is not bounded by the grace (the bug pinned by
        # test_shutdown_grace_bounds_a_save_retry_started_just_before_exit).
        await trio.sleep(0.1)
        closing = trio.current_time()
    waited = trio.current_time() - closing
    store.fail_saves = False
    stored = await MemoryStore.load_tokens(store, key)
    assert stored == old
    rotated = len(fake.issued[key.shop]) - 1
    works = fake.refresh_token_works(key.shop, old.refresh_token)
    still_valid = fake.is_valid(key.shop, old.access_token)
    kinds = [e.kind.value.removeprefix("shoptoken.") for e in events]

    # A new manager (a restart) on the same store, at once.
    async with (
        fake.http_client() as http,
        manager(shopify, clock, store) as tokens,
    ):
        fresh = await tokens.valid_token(key)
        served_revoked = not fake.is_valid(key.shop, fresh.access_token)
        response = await http.get(
            f"https://{key.shop}/admin/api/2025-01/shop.json", auth=tokens.auth(key)
        )
        recovered = await tokens.valid_token(key)
    report(
        f"refresh cut by shutdown_grace ({why})",
        exit_waited_s=waited,
        rotations_at_shopify=rotated,
        stored_is_old_pair=stored == old,
        old_refresh_token_works=works,
        old_access_token_valid=still_valid,
        events=",".join(kinds),
        restart_served_revoked_token=served_revoked,
        first_api_call_status=response.status_code,
        api_calls_rejected=fake.statistics(key.shop).api_calls_rejected,
        refreshes_recovered=fake.recovered,
        reauthorization=False,
    )
    assert waited == pytest.approx(10.0)
    assert rotated == 1  # Shopify rotated; the store never saw the pair
    assert works
    assert not still_valid
    # The restarted manager serves the stored (revoked) access token, since it
    # is not yet stale; the first API call gets a 401, auth() forces a refresh
    # with the old refresh token (recovery window) and the retry succeeds.
    assert served_revoked
    assert response.status_code == 200
    assert fake.statistics(key.shop).api_calls_rejected == 1
    assert fake.recovered == 1
    assert fake.is_valid(key.shop, recovered.access_token)
    assert await stored_is_current(fake, store, key)


async def test_shutdown_grace_bounds_a_save_retry_started_just_before_exit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Leaving the block right after a failed save takes at most shutdown_grace.

    Whether the retry task runs before the block's exit is up to trio's
    scheduler (half the time each way), so the case is tried 20 times.
    The store heals after 1,000 s, so a hung exit ends and is measured.
    """
    exits = []
    for attempt in range(20):
        fake, store, [key] = await fleet(1, f"race-{attempt:02d}")
        shopify = SlowShopify(fake)
        clock = trio_wall_clock()

        async def heal(store: RecordingStore = store) -> None:
            await trio.sleep(1000)
            store.fail_saves = False

        with quiet_logs():
            async with trio.open_nursery() as outside:
                async with manager(shopify, clock, store, shutdown_grace=10.0) as tokens:
                    await tokens.valid_token(key)
                    store.fail_saves = True
                    outside.start_soon(heal)
                    await tokens.refresh_token(key)  # its save fails: a retry task starts
                    closing = trio.current_time()
                exits.append(trio.current_time() - closing)
                outside.cancel_scope.cancel()
    report(
        "exit right after a failed save (20 tries)",
        longest_exit_s=max(exits),
        exits_past_grace=sum(1 for e in exits if e > 10.0),
    )
    assert max(exits) <= 10.0 + 1e-6  # the grace, give or take float rounding


async def test_a_pair_lost_at_shutdown_is_recovered_within_30_days_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After a rotation lost at shutdown, a restart recovers it on day 29, not on day 31."""
    outcomes: dict[float, str] = {}
    for days in (1.0, 29.0, 31.0):
        fake, store, [key] = await fleet(1, f"window-{days:g}")
        shopify = SlowShopify(fake, after=30.0, exact=True)
        clock = trio_wall_clock()
        async with manager(shopify, clock, store, shutdown_grace=10.0) as tokens:
            await tokens.valid_token(key)
            await trio.sleep(3000)
            with trio.move_on_after(1):
                await tokens.refresh_token(key)
        shopify.after = 0.0
        await trio.sleep(days * DAY)
        async with manager(shopify, clock, store) as tokens:
            try:
                token = await tokens.valid_token(key)
            except ReauthorizationRequired:
                outcomes[days] = "reauthorization"
            else:
                assert fake.is_valid(key.shop, token.access_token)
                outcomes[days] = "recovered"
        await trio.sleep(-trio.current_time() % DAY)  # the next case starts on a day boundary
    report(
        "pair lost at shutdown, restart after N days",
        **{f"day_{d:g}": o for d, o in outcomes.items()},
    )
    assert outcomes == {1.0: "recovered", 29.0: "recovered", 31.0: "reauthorization"}


async def test_a_refresh_cut_at_shutdown_is_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cutting a rotation at shutdown is reported, so operators know the store lags."""
    fake, store, [key] = await fleet(1, "cut-report")
    shopify = SlowShopify(fake, after=30.0, exact=True)
    clock = trio_wall_clock()
    events: list[TokenEvent] = []
    async with manager(shopify, clock, store, [events.append], shutdown_grace=10.0) as tokens:
        await tokens.valid_token(key)
        with trio.move_on_after(1):
            await tokens.refresh_token(key)
    assert [e.kind for e in events][-1] is not EventKind.REFRESH_STARTED
    last = events[-1]
    assert (last.kind, last.reason) == (EventKind.REFRESH_FAILED, "cut at shutdown_grace")
