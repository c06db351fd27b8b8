"""TokenManager.warm_up: a fleet loaded in batches, through the same per-key loading as a first use.

Under trio's mock clock, over a FakeShopify in process: figures and states
are asserted exactly.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    NoToken,
    PersistenceError,
    ReauthorizationRequired,
    Token,
    TokenEvent,
    TokenKey,
    WarmUpFigures,
)
from shoptoken.testing import FakeShopify

from .._managers import Clock, manager
from ..fakes import PlainStore, at

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

FRESH = [TokenKey.offline(f"fresh-{i}") for i in range(5)]
STALE = TokenKey.offline("stale")
EXPIRED = TokenKey.offline("expired")
DEAD = TokenKey.offline("dead")
MISSING = [TokenKey.offline("missing-1"), TokenKey.customer("missing-2", "7")]


@attrs.define(eq=False)
class CountingStore(MemoryStore):
    """A MemoryStore that counts every key it loads, one at a time or in bulk, and can stall."""

    loaded: Counter[TokenKey] = attrs.field(factory=Counter)
    bulk_calls: int = 0
    #: load_many calls after this many stall until cancelled.
    stall_after: int | None = None
    latency: float = 0.0

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Count, wait ``latency``, load."""
        self.loaded[key] += 1
        await trio.sleep(self.latency)
        return await super().load_tokens(key)

    async def load_many(self, keys: Sequence[TokenKey]) -> dict[TokenKey, Token]:
        """Count, wait ``latency`` (or for ever past ``stall_after``), load."""
        self.bulk_calls += 1
        if self.stall_after is not None and self.bulk_calls > self.stall_after:
            await trio.sleep_forever()
        self.loaded.update(keys)
        await trio.sleep(self.latency)
        return await super().load_many(keys)


async def _fleet(endpoint: FakeShopify, clock: Clock, store: MemoryStore | PlainStore) -> None:
    """Store fresh keys, a stale one, an expired one and one whose refresh token expired."""
    for key in FRESH:
        await store.save_tokens(key, endpoint.install(key.shop))
    stale = endpoint.install(STALE.shop)
    # Obtained an hour before its expiry, as Shopify's are (past mid-life: stale).
    await store.save_tokens(
        STALE, attrs.evolve(stale, expires_at=at(clock, 100), obtained_at=at(clock, -3500))
    )
    expired = endpoint.install(EXPIRED.shop)
    await store.save_tokens(EXPIRED, attrs.evolve(expired, expires_at=at(clock, -10)))
    dead = endpoint.install(DEAD.shop)
    await store.save_tokens(
        DEAD,
        attrs.evolve(dead, expires_at=at(clock, -10), refresh_token_expires_at=at(clock, -5)),
    )


ALL = [*FRESH, STALE, EXPIRED, DEAD, *MISSING]


async def test_figures_and_states_of_a_mixed_fleet(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Missing, dead, expired, stale and fresh keys are counted and left in the right state."""
    store = CountingStore()
    await _fleet(endpoint, clock, store)
    events: list[TokenEvent] = []
    async with manager(endpoint, clock, store, events=events, idle_after=3600) as tokens:
        figures = await tokens.warm_up(ALL, batch_size=3)
        assert figures == WarmUpFigures(
            loaded=7, refreshing=2, dead=1, missing=2, failed=0, seconds=0.0
        )
        assert figures.keys == len(ALL)
        assert store.bulk_calls == 4
        # Each key loaded once (the stale key's refresh, which may run already, re-reads it).
        assert store.loaded[STALE] in {1, 2}
        del store.loaded[STALE]
        assert store.loaded == Counter(dict.fromkeys(ALL, 1)) - Counter([STALE])
        progress = [e.progress for e in events if e.kind is EventKind.WARM_UP_PROGRESS]
        assert [p.keys for p in progress if p is not None] == [3, 6, 9, 10]
        await trio.sleep(1)  # the keepers refresh the stale and the expired key
        stats = tokens.statistics()
        assert (stats.keys_active, stats.keys_parked, stats.keys_reauthorization_required) == (
            7,
            0,
            1,
        )
        assert stats.refreshes_succeeded == 2
        assert endpoint.refreshes == {STALE.shop: 1, EXPIRED.shop: 1}
        for key in FRESH:
            assert await tokens.valid_token(key) == await store.load_tokens(key)
        with pytest.raises(ReauthorizationRequired):
            await tokens.valid_token(DEAD)
        for key in MISSING:
            with pytest.raises(NoToken):
                await tokens.valid_token(key)
        assert tokens.statistics().loads_failed == 0
    dead = [e.key for e in events if e.kind is EventKind.REAUTHORIZATION_REQUIRED]
    assert dead == [DEAD]


async def test_warmed_keys_count_as_used_then_park_and_reload(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Warmed keys stay active until idle_after, then park, and load lazily again on use."""
    store = CountingStore()
    await _fleet(endpoint, clock, store)
    async with manager(endpoint, clock, store, idle_after=600, sweep_interval=60) as tokens:
        await tokens.warm_up(FRESH)
        await trio.sleep(599)
        assert tokens.statistics().keys_active == len(FRESH)
        await trio.sleep(2)
        stats = tokens.statistics()
        assert (stats.keys_active, stats.keys_parked) == (0, len(FRESH))
        assert await tokens.valid_token(FRESH[0]) == await store.load_tokens(FRESH[0])
        assert store.loaded[FRESH[0]] == 3  # warm-up, the lazy reload, and this test's read


async def test_every_stored_key_when_none_given(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Without keys, the store is listed and each stored key loaded once."""
    store = CountingStore()
    await _fleet(endpoint, clock, store)
    async with manager(endpoint, clock, store) as tokens:
        figures = await tokens.warm_up(batch_size=4)
        assert (figures.loaded, figures.dead, figures.missing) == (7, 1, 0)
        assert store.bulk_calls == 2
        assert sum(store.loaded.values()) == 8


async def test_a_plain_callback_loads_one_key_at_a_time(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A two-method callback is warmed up key by key; without keys it cannot be listed."""
    store = PlainStore()
    await _fleet(endpoint, clock, store)
    async with manager(endpoint, clock, store) as tokens:
        figures = await tokens.warm_up(ALL)
        assert (figures.loaded, figures.refreshing, figures.dead, figures.missing) == (7, 2, 1, 2)
        with pytest.raises(TypeError, match="cannot list its keys"):
            await tokens.warm_up()
        with pytest.raises(ValueError, match="batch_size"):
            await tokens.warm_up(ALL, batch_size=0)


@attrs.define(eq=False)
class BrokenBulkStore(MemoryStore):
    """A store whose load_many always fails and one key of which cannot be read."""

    broken: TokenKey | None = None

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load, failing for ``broken``."""
        if key == self.broken:
            await trio.lowlevel.checkpoint()
            msg = "row is corrupt"
            raise OSError(msg)
        return await super().load_tokens(key)

    async def load_many(self, keys: Sequence[TokenKey]) -> dict[TokenKey, Token]:
        """Fail, as a batch with one corrupt row does."""
        await trio.lowlevel.checkpoint()
        msg = "one row is corrupt"
        raise OSError(msg)


async def test_a_failed_batch_is_loaded_key_by_key(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """When a batch fails, its keys load one by one and only the key at fault fails."""
    store = BrokenBulkStore(broken=FRESH[2])
    await _fleet(endpoint, clock, store)
    async with manager(endpoint, clock, store) as tokens:
        figures = await tokens.warm_up(ALL)
        assert (figures.loaded, figures.failed, figures.dead, figures.missing) == (6, 1, 1, 2)
        assert tokens.statistics().loads_failed == 1
        assert await tokens.valid_token(FRESH[1]) == await store.load_tokens(FRESH[1])


async def test_cancelled_halfway_leaves_a_usable_manager(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A warm-up cancelled in its second batch leaves no key loading; waiters load it themselves."""
    store = CountingStore(stall_after=1)
    await _fleet(endpoint, clock, store)
    got: dict[TokenKey, Token] = {}

    async def use(key: TokenKey) -> None:
        got[key] = await tokens.valid_token(key)

    async def wait_then_use() -> None:
        await trio.sleep(1)  # the second batch's load has stalled by then
        await use(FRESH[4])

    async def cancel_later() -> None:
        await trio.sleep(2)
        warming.cancel()

    async with manager(endpoint, clock, store) as tokens:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as warming:
                nursery.start_soon(wait_then_use)
                nursery.start_soon(cancel_later)
                await tokens.warm_up(FRESH, batch_size=3)
        assert warming.cancelled_caught
        assert store.bulk_calls == 2
        assert store.loaded[FRESH[4]] == 1  # the waiter's own load, after the cancellation
        assert tokens.statistics().keys_known == 4  # three warmed, one loaded by its waiter
        assert got[FRESH[4]] == await store.load_tokens(FRESH[4])
        assert await tokens.valid_token(FRESH[3]) == await store.load_tokens(FRESH[3])
        store.stall_after = None
        figures = await tokens.warm_up(ALL)
        assert (figures.loaded, figures.dead, figures.missing) == (7, 1, 2)
        assert tokens.statistics().keys_active == 7


async def test_warm_up_and_first_uses_load_each_key_once(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """First uses begun before and during a warm-up share its loads: one load per key."""
    store = CountingStore(latency=1.0)
    await _fleet(endpoint, clock, store)
    served: Counter[TokenKey] = Counter()

    async def use(key: TokenKey) -> None:
        await tokens.valid_token(key)
        served[key] += 1

    async def warm() -> None:
        results.append(await tokens.warm_up(FRESH))

    results: list[WarmUpFigures] = []
    async with manager(endpoint, clock, store) as tokens:
        async with trio.open_nursery() as nursery:
            for key in FRESH[:2]:  # their lazy loads are in flight when the warm-up starts
                nursery.start_soon(use, key)
            await trio.sleep(0.5)
            nursery.start_soon(warm)
            await trio.sleep(0.1)
            for key in FRESH:  # these wait for the warm-up's (or the lazy) load
                nursery.start_soon(use, key)
        assert results == [WarmUpFigures(loaded=5, seconds=1.0)]
        assert store.loaded == Counter(dict.fromkeys(FRESH, 1))
        assert served == Counter({**dict.fromkeys(FRESH, 1), FRESH[0]: 2, FRESH[1]: 2})


@attrs.define(eq=False)
class DownStore(BrokenBulkStore):
    """A store that is down: every load fails."""

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Fail."""
        await trio.lowlevel.checkpoint()
        msg = "connection refused"
        raise OSError(msg)


async def test_a_store_that_is_down_stops_the_warm_up(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """When a batch's bulk load and its first key-by-key loads all fail, warm_up raises."""
    store = DownStore()
    await _fleet(endpoint, clock, store)
    async with manager(endpoint, clock, store) as tokens:
        with pytest.raises(PersistenceError, match="connection refused"):
            await tokens.warm_up(ALL, batch_size=5)
        stats = tokens.statistics()
        assert (stats.loads_failed, stats.keys_known) == (3, 0)  # no key left loading


async def test_bulk_results_that_are_not_tokens_fall_back_to_single_loads(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A load_many that returns something else than Tokens is not trusted: keys load one by one."""

    @attrs.define(eq=False)
    class WrongBulk(CountingStore):
        async def load_many(self, keys: Sequence[TokenKey]) -> dict[TokenKey, Token]:
            await trio.lowlevel.checkpoint()
            return dict.fromkeys(keys, "not a token")  # type: ignore[arg-type]

    store = WrongBulk()
    await _fleet(endpoint, clock, store)
    async with manager(endpoint, clock, store) as tokens:
        figures = await tokens.warm_up(FRESH)
        assert figures.loaded == len(FRESH)
        assert store.loaded == Counter(dict.fromkeys(FRESH, 1))  # each loaded alone, once


async def test_a_failed_listing_is_a_persistence_error(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """warm_up() without keys reports a listing that fails as PersistenceError."""

    @attrs.define(eq=False)
    class BrokenListing(MemoryStore):
        async def list_keys(self) -> AsyncIterator[TokenKey]:
            await trio.lowlevel.checkpoint()
            yield FRESH[0]
            msg = "cursor lost"
            raise OSError(msg)

    store = BrokenListing()
    await _fleet(endpoint, clock, store)
    async with manager(endpoint, clock, store) as tokens:
        with pytest.raises(PersistenceError, match="list_keys failed: OSError: cursor lost"):
            await tokens.warm_up()


async def test_a_client_credentials_key_with_nothing_stored_is_missing_and_mints_on_use(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Warm-up counts it missing and leaves it vacant; its first use mints (no NoToken)."""
    store = CountingStore()
    minted = TokenKey.client_credentials("back-office")
    async with manager(endpoint, clock, store) as tokens:
        for _ in range(2):  # the second warm-up finds the key vacant in memory
            figures = await tokens.warm_up([minted])
            assert (figures.loaded, figures.missing) == (0, 1)
        assert endpoint.mints == {}
        token = await tokens.valid_token(minted)
        assert endpoint.mints == {minted.shop: 1}
        assert await store.load_tokens(minted) == token
    assert store.bulk_calls == 1  # the second warm-up did not load it again
