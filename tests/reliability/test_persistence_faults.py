"""Persistence faults: a store that fails half its calls, slows down, or hangs.

What must hold while the store misbehaves: every token handed out is valid
at Shopify, every rotated pair is eventually saved (``saves_pending`` back to
0), nothing is lost (the stored pair is Shopify's current one), and the
events and `statistics()` account for every failure the store injected.

Run: ``pytest tests/reliability/test_persistence_faults.py -s``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    ReauthorizationRequired,
    RefreshPolicy,
    ShopTokenError,
    Token,
    TokenCallback,
    TokenEvent,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.stores import SQLiteStore
from shoptoken.testing import trio_wall_clock

from . import Clock, EventTally, RecordingShopify, quiet_logs, report, seeded

SEED = 3


class StoreDown(OSError):
    """What the misbehaving store raises."""


@attrs.define(eq=False)
class ChaosStore:
    """A `TokenCallback` over a real store that fails, slows down or hangs on demand.

    Failures are drawn from a seeded generator at ``fail_rate``; ``latency``
    is added to every call; ``hang`` names the operations ("load", "save")
    that never return while set, ``broken`` those that always fail. It
    counts what it injected, to check the manager's accounting against.
    """

    inner: Any
    rng: random.Random = attrs.field(factory=lambda: seeded(SEED))
    fail_rate: float = 0.0
    latency: float = 0.0
    hang: frozenset[str] = frozenset()
    broken: frozenset[str] = frozenset()
    calls: dict[str, int] = attrs.field(factory=lambda: {"load": 0, "save": 0, "lock": 0})
    failed: dict[str, int] = attrs.field(factory=lambda: {"load": 0, "save": 0, "lock": 0})

    async def misbehave(self, operation: str, key: TokenKey) -> None:
        """Sleep, hang or raise as configured, for one call of ``operation``."""
        self.calls[operation] += 1
        if operation in self.hang:
            await trio.sleep_forever()
        if self.latency:
            await trio.sleep(self.latency)
        else:
            await trio.lowlevel.checkpoint()
        if operation in self.broken or (self.fail_rate and self.rng.random() < self.fail_rate):
            self.failed[operation] += 1
            raise StoreDown(f"store unavailable during {operation} of {key}")

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load from the inner store, unless this call fails."""
        await self.misbehave("load", key)
        token: Token | None = await self.inner.load_tokens(key)
        return token

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Save to the inner store, unless this call fails."""
        await self.misbehave("save", key)
        await self.inner.save_tokens(key, token)


@attrs.define(eq=False)
class _ChaosHandle:
    store: ChaosStore
    key: TokenKey
    handle: Any

    @property
    def token(self) -> Token | None:
        token: Token | None = self.handle.token
        return token

    async def save(self, token: Token) -> None:
        await self.store.misbehave("save", self.key)
        await self.handle.save(token)


@attrs.define(eq=False)
class LockingChaosStore(ChaosStore):
    """A `ChaosStore` that also has the inner store's cross-process ``locked``."""

    @asynccontextmanager
    async def locked(self, key: TokenKey, *, timeout: float) -> AsyncIterator[_ChaosHandle]:  # noqa: ASYNC109 - the protocol's signature
        """Take the inner store's lock (or fail to), and save through it (or fail to)."""
        await self.misbehave("lock", key)
        async with self.inner.locked(key, timeout=timeout) as handle:
            yield _ChaosHandle(self, key, handle)


@attrs.define
class Outcome:
    """What the app saw during a run."""

    calls: int = 0
    served_invalid: int = 0
    refused: dict[str, int] = attrs.field(factory=dict)
    longest_wait: float = 0.0
    most_saves_pending: int = 0


async def install(fake: RecordingShopify, store: Any, keys: list[TokenKey]) -> None:
    """Install every key at Shopify and in the (inner) store."""
    for key in keys:
        await store.save_tokens(key, fake.install(key.shop))


async def use(
    tokens: TokenManager, fake: RecordingShopify, keys: list[TokenKey], until: float, gap: float
) -> Outcome:
    """Call ``valid_token`` for each key every ``gap`` seconds until ``until`` (trio time)."""
    outcome = Outcome()

    async def one(key: TokenKey) -> None:
        while trio.current_time() < until:
            outcome.calls += 1
            started = trio.current_time()
            try:
                token = await tokens.valid_token(key)
            except ShopTokenError as exc:  # PersistenceError, RefreshFailed, LockTimeout
                name = type(exc).__name__
                outcome.refused[name] = outcome.refused.get(name, 0) + 1
            else:
                if not fake.is_valid(key.shop, token.access_token):
                    outcome.served_invalid += 1
            outcome.longest_wait = max(outcome.longest_wait, trio.current_time() - started)
            pending = tokens.statistics().saves_pending
            outcome.most_saves_pending = max(outcome.most_saves_pending, pending)
            await trio.sleep(gap)

    async with trio.open_nursery() as nursery:
        for key in keys:
            nursery.start_soon(one, key)
    return outcome


@asynccontextmanager
async def manager(
    fake: RecordingShopify,
    clock: Clock,
    store: TokenCallback,
    hooks: list[Any],
    **policy: Any,
) -> AsyncIterator[TokenManager]:
    """A manager over the fake, on the test clock, its retry jitter seeded (reproducible)."""
    oauth = fake.oauth(clock=clock)
    async with (
        oauth,
        open_token_manager(
            oauth,
            store,
            policy=RefreshPolicy(**policy),
            clock=clock,
            hooks=hooks,
            rng=random.Random(SEED),
        ) as tokens,
    ):
        yield tokens


async def lost_and_behind(
    fake: RecordingShopify, inner: Any, keys: list[TokenKey]
) -> tuple[int, int]:
    """Pairs whose stored refresh token is dead, and pairs one rotation behind Shopify."""
    lost = behind = 0
    for key in keys:
        stored = await inner.load_tokens(key)
        assert stored is not None
        assert stored.refresh_token is not None
        if not fake.refresh_token_works(key.shop, stored.refresh_token):
            lost += 1
        elif stored.refresh_token != fake.current(key.shop):
            behind += 1
    return lost, behind


async def half_failing_run(
    name: str, store: ChaosStore, inner: Any, keys: list[TokenKey], hours: float
) -> None:
    """Run ``keys`` for ``hours`` on a store failing half its calls; check and report."""
    clock = trio_wall_clock()
    fake = RecordingShopify(clock=clock)
    await install(fake, inner, keys)
    tally = EventTally()
    events: list[TokenEvent] = []
    store.fail_rate = 0.5
    with quiet_logs():
        async with manager(fake, clock, store, [tally, events.append]) as tokens:
            outcome = await use(tokens, fake, keys, hours * 3600, gap=30)
            pending_at_end = tokens.statistics().saves_pending
            # No more calls: the saves still pending land by themselves.
            with trio.fail_after(600):
                while tokens.statistics().saves_pending:  # noqa: ASYNC110 - polls statistics() as a monitor would
                    await trio.sleep(1)
            stats = tokens.statistics()
        lost, behind = await lost_and_behind(fake, inner, keys)
    first_failures = sum(
        1 for e in events if e.kind is EventKind.PERSISTENCE_FAILED and e.attempt == 1
    )
    report(
        name,
        keys=len(keys),
        hours=hours,
        store_calls=sum(store.calls.values()),
        store_failures=sum(store.failed.values()),
        refreshes=sum(fake.refreshes.values()),
        app_calls=outcome.calls,
        served_invalid=outcome.served_invalid,
        refused=outcome.refused,
        saves_failed=stats.saves_failed,
        loads_failed=stats.loads_failed,
        persistence_failed_events=tally[EventKind.PERSISTENCE_FAILED],
        pairs_left_unsaved=first_failures,
        persistence_recovered_events=tally[EventKind.PERSISTENCE_RECOVERED],
        most_saves_pending_seen=outcome.most_saves_pending,
        saves_pending_at_end_of_traffic=pending_at_end,
        saves_pending=stats.saves_pending,
        reauthorizations=stats.keys_reauthorization_required,
        pairs_lost=lost,
        pairs_behind=behind,
    )
    assert outcome.served_invalid == 0
    assert stats.saves_pending == 0
    assert (lost, behind) == (0, 0)
    assert stats.keys_reauthorization_required == 0
    assert fake.rejected == 0
    # The accounting matches what the store injected, failure for failure.
    assert stats.saves_failed == store.failed["save"]
    assert stats.loads_failed == store.failed["load"]
    assert tally[EventKind.PERSISTENCE_FAILED] == stats.saves_failed
    # Every pair that missed its first save was saved later, exactly once reported.
    assert tally[EventKind.PERSISTENCE_RECOVERED] == first_failures
    assert first_failures > 0
    assert outcome.most_saves_pending > 0


async def test_a_store_failing_half_its_calls_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """50 % of loads and saves fail for 6 h (plain store): valid tokens, every save lands."""
    keys = [TokenKey.offline(f"half-{i:02d}") for i in range(20)]
    inner = MemoryStore()
    await half_failing_run("store failing 50% (plain)", ChaosStore(inner), inner, keys, 6)


@pytest.fixture
def thread_clock() -> trio.testing.MockClock:
    """A mock clock that jumps only after 2 ms of real idleness (SQLite works in threads)."""
    return trio.testing.MockClock(autojump_threshold=0.002)


async def test_a_sqlite_file_failing_half_its_calls_loses_nothing(
    thread_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """50 % of SQLite lock, load and save calls fail for 3 h: nothing lost, all accounted."""
    keys = [TokenKey.offline(f"lite-{i:02d}") for i in range(8)]
    async with SQLiteStore(tmp_path / "tokens.db") as inner:
        store = LockingChaosStore(inner)
        clock = trio_wall_clock()
        fake = RecordingShopify(clock=clock)
        await install(fake, inner, keys)
        tally = EventTally()
        store.fail_rate = 0.5
        with quiet_logs():
            async with manager(fake, clock, store, [tally]) as tokens:
                outcome = await use(tokens, fake, keys, 3 * 3600, gap=60)
                with trio.fail_after(600):
                    while tokens.statistics().saves_pending:  # noqa: ASYNC110 - polls statistics() as a monitor would
                        await trio.sleep(1)
                stats = tokens.statistics()
            lost, behind = await lost_and_behind(fake, inner, keys)
    report(
        "sqlite store failing 50% (locked)",
        keys=len(keys),
        hours=3,
        store_calls=sum(store.calls.values()),
        store_failures=store.failed,
        refreshes=sum(fake.refreshes.values()),
        loads_failed=stats.loads_failed,
        app_calls=outcome.calls,
        served_invalid=outcome.served_invalid,
        refused=outcome.refused,
        saves_failed=stats.saves_failed,
        persistence_failed_events=tally[EventKind.PERSISTENCE_FAILED],
        persistence_recovered_events=tally[EventKind.PERSISTENCE_RECOVERED],
        most_saves_pending_seen=outcome.most_saves_pending,
        saves_pending=stats.saves_pending,
        pairs_lost=lost,
        pairs_behind=behind,
    )
    assert outcome.served_invalid == 0
    assert stats.saves_pending == 0
    assert (lost, behind) == (0, 0)
    assert stats.keys_reauthorization_required == 0
    assert fake.rejected == 0
    # A failed save attempt is a failed save, or a failed lock taken to retry one.
    assert store.failed["save"] <= stats.saves_failed <= store.failed["save"] + store.failed["lock"]
    assert stats.loads_failed == store.failed["load"]
    assert tally[EventKind.PERSISTENCE_FAILED] == stats.saves_failed


async def test_a_slow_store_delays_callers_but_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every store call takes 45 s for 3 h (beyond lock_timeout): callers wait, nothing fails."""
    keys = [TokenKey.offline(f"slow-{i:02d}") for i in range(10)]
    clock = trio_wall_clock()
    fake = RecordingShopify(clock=clock)
    inner = MemoryStore()
    await install(fake, inner, keys)
    store = LockingChaosStore(inner, latency=45.0)
    tally = EventTally()
    with quiet_logs():
        async with manager(fake, clock, store, [tally]) as tokens:
            slow = await use(tokens, fake, keys, 3 * 3600, gap=20)
            store.latency = 0.0
            fast = await use(tokens, fake, keys, 6 * 3600, gap=20)
            stats = tokens.statistics()
        lost, behind = await lost_and_behind(fake, inner, keys)
    report(
        "store slow (45 s a call) for 3 h",
        keys=len(keys),
        refreshes=sum(fake.refreshes.values()),
        app_calls_slow=slow.calls,
        longest_wait_slow=slow.longest_wait,
        refused_slow=slow.refused,
        app_calls_after=fast.calls,
        longest_wait_after=fast.longest_wait,
        served_invalid=slow.served_invalid + fast.served_invalid,
        saves_failed=stats.saves_failed,
        pairs_lost=lost,
        pairs_behind=behind,
    )
    assert slow.served_invalid == fast.served_invalid == 0
    assert slow.refused == fast.refused == {}
    assert stats.saves_failed == stats.loads_failed == 0
    assert (lost, behind) == (0, 0)
    # A caller waits at most for one load, one lock, one save: the refresh it joined.
    assert slow.longest_wait <= 3 * 45.0
    assert fast.longest_wait == 0.0


# -- saves failing for a token's lifetime, then a crash -------------------------------------


@pytest.mark.parametrize("minutes", [30, 60])
async def test_a_crash_after_saves_failed_for_a_whole_token_lifetime(
    minutes: int, autojump_clock: trio.testing.MockClock
) -> None:
    """Saves fail (reads work) from just before a rotation, then the process dies.

    Within one refresh interval (54-55 min) the stored pair's refresh token
    is the previous one of Shopify's current pair: a restart recovers. Past
    the next rotation, which used the unsaved refresh token, it is dead:
    the shop needs re-authorization. (The manager's exit stands for the
    crash: its grace ends the save retries with the pair unsaved.)
    """
    key = TokenKey.offline(f"lifetime-{minutes}")
    clock = trio_wall_clock()
    fake = RecordingShopify(clock=clock)
    inner = MemoryStore()
    await install(fake, inner, [key])
    store = ChaosStore(inner)
    events: list[TokenEvent] = []
    rotated_at: list[float] = []

    def hook(event: TokenEvent) -> None:
        events.append(event)
        if event.kind is EventKind.REFRESH_SUCCEEDED:
            rotated_at.append(trio.current_time())

    with quiet_logs():
        async with manager(fake, clock, store, [hook]) as tokens:
            await tokens.valid_token(key)
            await trio.sleep(3000)  # the first scheduled refresh is at 3240-3300 s
            store.broken = frozenset({"save"})
            failing_since = trio.current_time()
            await trio.sleep(minutes * 60)
            pending = tokens.statistics().saves_pending
        store.broken = frozenset()
        rotations = len(fake.issued[key.shop]) - 1
        stored = await inner.load_tokens(key)
        assert stored is not None
        assert stored.refresh_token is not None
        works = fake.refresh_token_works(key.shop, stored.refresh_token)
        async with manager(fake, clock, store, []) as tokens:
            try:
                token = await tokens.valid_token(key)
            except ReauthorizationRequired:
                outcome = "reauthorization"
            else:
                assert fake.is_valid(key.shop, token.access_token)
                outcome = "recovered"
    started = [e for e in events if e.kind is EventKind.REFRESH_STARTED]
    report(
        f"saves failing {minutes} min, then a crash",
        rotations_while_failing=rotations,
        first_unsaved_rotation_at_s=rotated_at[0],
        fatal_rotation_after_s=rotated_at[1] - rotated_at[0] if rotations > 1 else None,
        saves_pending=pending,
        persistence_failed_events=sum(1 for e in events if e.kind is EventKind.PERSISTENCE_FAILED),
        stored_refresh_token_works=works,
        restart=outcome,
    )
    assert failing_since == 3000
    assert len(started) == rotations
    assert pending == 1
    if minutes == 30:
        assert (rotations, works, outcome) == (1, True, "recovered")
    else:
        assert (rotations, works, outcome) == (2, False, "reauthorization")


# -- a store call that never returns ------------------------------------------------------


@pytest.mark.parametrize("operation", ["save", "load"])
async def test_a_hanging_store_call_does_not_block_the_key_forever(
    operation: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A save (or re-read) that never returns must not hold the key's callers forever.

    A hanging save should count as a failed one: the rotated pair is served
    from memory and reported. A hanging re-read should fail the refresh, so
    callers get an error rather than wait without end.
    """
    key = TokenKey.offline("hang")
    clock = trio_wall_clock()
    fake = RecordingShopify(clock=clock)
    inner = MemoryStore()
    await install(fake, inner, [key])
    store = ChaosStore(inner)
    events: list[TokenEvent] = []
    token: Token | None = None
    async with manager(fake, clock, store, [events.append]) as tokens:
        await tokens.valid_token(key)
        store.hang = frozenset({operation})
        await trio.sleep(3600)  # the scheduled refresh ran into the hang
        # The old access token has expired (and with a hanging save, Shopify
        # has revoked it too): a caller now needs the refresh's outcome.
        with trio.move_on_after(3600) as waited:
            try:
                token = await tokens.valid_token(key)
            except ShopTokenError:
                assert operation == "load"
        assert not waited.cancelled_caught, "valid_token still waits an hour later"
    if operation == "save":
        assert token is not None
        assert fake.is_valid(key.shop, token.access_token)
        assert any(e.kind is EventKind.PERSISTENCE_FAILED for e in events)
    hung = [e.error for e in events if e.error and "did not return within 60 s" in e.error]
    assert hung, "the hang is reported as such"


async def test_hanging_saves_of_some_keys_do_not_stop_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """16 keys whose saves hang (the refresh cap) must not stop a 17th key's refreshes."""
    keys = [TokenKey.offline(f"stuck-{i:02d}") for i in range(16)]
    healthy = TokenKey.offline("healthy")
    clock = trio_wall_clock()
    fake = RecordingShopify(clock=clock)
    inner = MemoryStore()
    await install(fake, inner, [*keys, healthy])

    @attrs.define(eq=False)
    class HangsForSome(ChaosStore):
        async def save_tokens(self, key: TokenKey, token: Token) -> None:
            if key != healthy:
                await trio.sleep_forever()
            await super().save_tokens(key, token)

    store = HangsForSome(inner)
    async with manager(fake, clock, store, []) as tokens:
        for key in [*keys, healthy]:
            await tokens.valid_token(key)
        await trio.sleep(2 * 3600)
        with trio.move_on_after(60) as waited:
            token = await tokens.valid_token(healthy)
        assert not waited.cancelled_caught, "the healthy key waits for a refresh slot"
        assert fake.is_valid(healthy.shop, token.access_token)


# -- reporting ------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["load", "lock"])
async def test_a_refresh_stopped_by_the_store_is_reported(
    operation: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A scheduled refresh that fails at the store's re-read or lock is reported by an event."""
    key = TokenKey.offline("unreported")
    clock = trio_wall_clock()
    fake = RecordingShopify(clock=clock)
    inner = MemoryStore()
    await install(fake, inner, [key])
    store = LockingChaosStore(inner) if operation == "lock" else ChaosStore(inner)
    events: list[TokenEvent] = []
    with quiet_logs():
        async with manager(fake, clock, store, [events.append]) as tokens:
            await tokens.valid_token(key)
            store.fail_rate = 1.0
            await trio.sleep(3400)  # the scheduled refresh and its retries fail in the store
            assert store.failed[operation] > 3
            assert fake.refreshes == {}
    reported = [
        e
        for e in events
        if e.kind is EventKind.REFRESH_FAILED and e.error is not None and "StoreDown" in e.error
    ]
    assert len(reported) == store.failed[operation]
