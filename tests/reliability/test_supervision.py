"""Supervision: bugs in a refresher, in a user's TokenCallback or in an event hook.

Each is injected into one key (or one hook) of a small fleet; the manager
must report it (an event or a log line) and keep serving and rotating every
other key, and the broken key once the bug is gone.

Run: ``pytest tests/reliability/test_supervision.py -s``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    PersistenceError,
    RefreshFailed,
    RefreshPolicy,
    ShopTokenError,
    Token,
    TokenEvent,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.testing import trio_wall_clock

from .._logs import captured_events
from . import Clock, EventTally, RecordingShopify, quiet_logs, report

HOUR = 3600.0


@asynccontextmanager
async def manager(
    fake: RecordingShopify,
    clock: Clock,
    store: Any,
    hooks: list[Any],
    *,
    refresher: Any = None,
    seed: int | None = None,
    **policy: Any,
) -> AsyncIterator[TokenManager]:
    """A manager over the fake (or ``refresher``), on the test clock."""
    oauth = fake.oauth(clock=fake.clock)
    async with (
        oauth,
        open_token_manager(
            refresher or oauth,
            store,
            policy=RefreshPolicy(**policy),
            clock=clock,
            hooks=hooks,
            rng=None if seed is None else random.Random(seed),
        ) as tokens,
    ):
        yield tokens


async def fleet(
    n: int, prefix: str, store: MemoryStore | None = None
) -> tuple[RecordingShopify, Clock, MemoryStore, list[TokenKey]]:
    """``n`` shops installed at a fake and in a store, on one clock."""
    clock = trio_wall_clock()
    fake = RecordingShopify(clock=clock)
    store = store if store is not None else MemoryStore()
    keys = [TokenKey.offline(f"{prefix}-{i:02d}") for i in range(n)]
    for key in keys:
        await MemoryStore.save_tokens(store, key, fake.install(key.shop))
    return fake, clock, store, keys


@attrs.define
class Traffic:
    """What the app saw: calls made, refused (by error type), invalid tokens served."""

    calls: int = 0
    refused: dict[str, int] = attrs.field(factory=dict)
    invalid: int = 0


async def traffic(
    tokens: TokenManager,
    fake: RecordingShopify,
    keys: list[TokenKey],
    until: float,
    gap: float = 60.0,
) -> Traffic:
    """Call ``valid_token`` for each key every ``gap`` s until trio time ``until``."""
    seen = Traffic()

    async def one(key: TokenKey) -> None:
        while trio.current_time() < until:
            seen.calls += 1
            try:
                token = await tokens.valid_token(key)
            except ShopTokenError as exc:
                name = type(exc).__name__
                seen.refused[name] = seen.refused.get(name, 0) + 1
            else:
                seen.invalid += not fake.is_valid(key.shop, token.access_token)
            await trio.sleep(gap)

    async with trio.open_nursery() as nursery:
        for key in keys:
            nursery.start_soon(one, key)
    return seen


def rotations(fake: RecordingShopify, key: TokenKey) -> int:
    """Refreshes Shopify performed for ``key``."""
    return len(fake.issued[key.shop]) - 1


# -- a refresher that raises -------------------------------------------------------------


async def test_a_crashing_refresher_is_restarted_and_the_fleet_is_unaffected(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One key's refresher raises on every wake for 3 h: it is restarted with capped backoff.

    The other 19 keys rotate on schedule; the broken key is still served
    (its callers refresh it on the slow path), and once the bug is gone its
    refresher is back on schedule.
    """
    fake, clock, store, keys = await fleet(20, "crash")
    broken = keys[0]
    bug = {"on": True, "raised": 0}
    keeper: dict[str, trio.lowlevel.Task] = {}

    def buggy_clock() -> float:
        # The broken key's keeper task is the first keeper to read the clock
        # (its key is used first); from then on its clock reads raise.
        task = trio.lowlevel.current_task()
        if task.name == "shoptoken.keeper":
            keeper.setdefault("broken", task)
            if bug["on"] and task is keeper["broken"]:
                bug["raised"] += 1
                raise ZeroDivisionError("bug in the refresher")
        return clock()

    events: list[TokenEvent] = []
    with quiet_logs():
        async with manager(fake, buggy_clock, store, [events.append], seed=7) as tokens:
            await tokens.valid_token(broken)
            await trio.lowlevel.checkpoint()  # its keeper starts, and is the first
            during = await traffic(tokens, fake, keys, 3 * HOUR)
            bug["on"] = False
            stats_during = tokens.statistics()
            broken_rotations_during = rotations(fake, broken)
            after = await traffic(tokens, fake, keys, 9 * HOUR)
            stats = tokens.statistics()
    crashed = [e for e in events if e.kind is EventKind.REFRESHER_CRASHED]
    delays = [e.retry_in for e in crashed if e.retry_in is not None]
    broken_reasons = [
        e.reason for e in events if e.key == broken and e.kind is EventKind.REFRESH_STARTED
    ]
    others = [rotations(fake, key) for key in keys[1:]]
    report(
        "refresher crashing for 3 h",
        crashes=stats.refresher_crashes,
        first_delays=[round(d, 1) for d in delays[:8]],
        restarts_of_the_count=sum(1 for e in crashed if e.attempt == 1),
        longest_delay=max(delays),
        broken_key_rotations_during=broken_rotations_during,
        broken_key_refresh_reasons=",".join(r or "" for r in broken_reasons),
        other_keys_rotations=f"{min(others)}-{max(others)}",
        calls_during=during.calls,
        refused_during=during.refused,
        invalid_served=during.invalid + after.invalid,
        keys_active=stats.keys_active,
    )
    assert stats.refresher_crashes == bug["raised"] == len(crashed)
    assert stats_during.refresher_crashes > 50
    assert all(
        e.key == broken and e.error == "ZeroDivisionError: bug in the refresher" for e in crashed
    )
    # Attempts count consecutive crashes; a rotation (here by a caller) resets them.
    attempts = [e.attempt for e in crashed]
    assert attempts[0] == 1
    assert all(b in (a + 1, 1) for a, b in itertools.pairwise(attempts))
    assert max(delays) <= RefreshPolicy().retry_max
    # Served all along: a stale key is refreshed by its callers when its task cannot.
    assert during.invalid == after.invalid == 0
    assert during.refused == after.refused == {}
    assert broken_rotations_during >= 3
    assert set(broken_reasons[:3]) == {"stale"}
    # After the bug: back on schedule, like every other key.
    assert broken_reasons[-1] == "scheduled"
    assert all(n >= 9 for n in others)
    assert stats.keys_active == len(keys)


async def test_a_bug_inside_one_keys_refresh_is_contained(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside one key's refresh fails that refresh only (outcome unknown)."""
    fake, clock, store, keys = await fleet(10, "rotbug")
    broken = keys[0]
    bug = {"on": True}
    oauth = fake.oauth(clock=clock)

    @attrs.define
    class BuggyRefresher:
        async def refresh(
            self, key: TokenKey, token: Token, *, clock: Clock | None = None
        ) -> Token:
            if key == broken and bug["on"]:
                raise RuntimeError("bug in the rotation")
            return await oauth.refresh(key, token, clock=clock)

    events: list[TokenEvent] = []
    with quiet_logs():
        async with manager(
            fake, clock, store, [events.append], refresher=BuggyRefresher()
        ) as tokens:
            during = await traffic(tokens, fake, keys, 2 * HOUR)
            bug["on"] = False
            after = await traffic(tokens, fake, keys, 4 * HOUR)
            stats = tokens.statistics()
    report(
        "rotation raising for 2 h",
        refused_during=during.refused,
        broken_key_rotations=rotations(fake, broken),
        other_keys_rotations=min(rotations(fake, key) for key in keys[1:]),
        refused_after=after.refused,
        refresher_crashes=stats.refresher_crashes,
        refreshes_failed=stats.refreshes_failed,
        events_naming_the_bug=sum(1 for e in events if e.error and "RuntimeError" in e.error),
    )
    assert set(during.refused) == {"RefreshFailed"}
    assert during.invalid == after.invalid == 0
    # Once fixed, only calls inside the last failure's backoff (at most
    # retry_max, 120 s: two calls a minute apart) are refused, with no request.
    assert sum(after.refused.values()) <= 2
    assert rotations(fake, broken) >= 1
    assert all(rotations(fake, key) >= 4 for key in keys[1:])


# -- bugs in a user's TokenCallback ---------------------------------------------------------


@attrs.define(eq=False)
class BuggyStore:
    """A plain two-method TokenCallback whose methods have a bug for one key while on."""

    inner: MemoryStore = attrs.field(factory=MemoryStore)
    broken: TokenKey | None = None
    load_bug: Callable[[], Any] | None = None
    save_bug: Callable[[], Any] | None = None
    on: bool = False

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load, or misbehave for the broken key."""
        if self.on and key == self.broken and self.load_bug is not None:
            await trio.lowlevel.checkpoint()
            return self.load_bug()  # type: ignore[no-any-return]  # garbage on purpose
        return await self.inner.load_tokens(key)

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Save, or misbehave for the broken key."""
        if self.on and key == self.broken and self.save_bug is not None:
            await trio.lowlevel.checkpoint()
            self.save_bug()
            return
        await self.inner.save_tokens(key, token)


def raises(exc: BaseException) -> Callable[[], Any]:
    """A bug that raises ``exc``."""

    def bug() -> Any:
        raise exc

    return bug


def garbage() -> Any:
    """A bug that returns a dict where a Token belongs."""
    return {"access_token": "shpat_x", "refresh_token": "shprt_x"}


#: case -> (the bug, from when it is on, what callers of the key see while it is).
CALLBACK_BUGS: dict[str, tuple[dict[str, Callable[[], Any]], str, set[str]]] = {
    "load raises TypeError at first use": (
        {"load_bug": raises(TypeError("unsupported operand"))},
        "start",
        {"PersistenceError"},
    ),
    "load raises KeyError at first use": (
        {"load_bug": raises(KeyError("shop_domain"))},
        "start",
        {"PersistenceError"},
    ),
    "load returns a dict at first use": ({"load_bug": garbage}, "start", {"PersistenceError"}),
    "load raises TypeError at the re-read": (
        {"load_bug": raises(TypeError("unsupported operand"))},
        "loaded",
        {"PersistenceError"},
    ),
    "load returns a dict at the re-read": ({"load_bug": garbage}, "loaded", {"PersistenceError"}),
    "save raises TypeError": (
        {"save_bug": raises(TypeError("not JSON serializable"))},
        "loaded",
        set(),
    ),
    "save raises KeyError": ({"save_bug": raises(KeyError("column"))}, "loaded", set()),
    "save returns a dict": ({"save_bug": garbage}, "loaded", set()),
}


@pytest.mark.parametrize("case", list(CALLBACK_BUGS))
async def test_a_bug_in_the_token_callback_is_reported_and_contained(
    case: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A TokenCallback bug for one key (3 h) is reported, counted and contained.

    Its callers get a ShopTokenError (a load) or are served from memory (a
    save); the manager and the other keys never notice.
    """
    bug, when, expected = CALLBACK_BUGS[case]
    store = BuggyStore(**bug)  # type: ignore[arg-type]
    fake, clock, _, keys = await fleet(6, "cb", store.inner)
    store.broken = keys[0]
    tally = EventTally()
    with quiet_logs():
        async with manager(fake, clock, store, [tally]) as tokens:
            if when == "loaded":
                for key in keys:
                    await tokens.valid_token(key)
            store.on = True
            during = await traffic(tokens, fake, keys, 3 * HOUR)
            stats_during = tokens.statistics()
            store.on = False
            after = await traffic(tokens, fake, keys, 6 * HOUR)
            stats = tokens.statistics()
    stored = await store.inner.load_tokens(keys[0])
    assert stored is not None
    report(
        f"TokenCallback bug: {case}",
        caller_saw=during.refused,
        invalid_served=during.invalid,
        loads_failed=stats_during.loads_failed,
        saves_failed=stats_during.saves_failed,
        saves_pending_during=stats_during.saves_pending,
        persistence_failed_events=tally[EventKind.PERSISTENCE_FAILED],
        refresh_failed_events=tally[EventKind.REFRESH_FAILED],
        other_keys_rotations=min(rotations(fake, key) for key in keys[1:]),
        after_fix_refused=after.refused,
        saves_pending_after=stats.saves_pending,
        stored_is_current=stored.refresh_token == fake.current(keys[0].shop),
    )
    assert set(during.refused) == expected
    assert during.invalid == after.invalid == 0
    assert sum(after.refused.values()) <= 2  # inside the last failure's backoff only
    assert stats.saves_pending == 0
    assert stats.keys_reauthorization_required == 0
    assert all(rotations(fake, key) >= 6 for key in keys[1:])
    assert stored.refresh_token == fake.current(keys[0].shop)
    if case == "save returns a dict":
        # A return value nobody reads: the save counts as done (nothing to detect).
        assert stats.saves_failed == 0
    elif case.startswith("save"):
        # Saves fail, the pair is served from memory and saved once fixed.
        assert stats_during.saves_pending == 1
        assert tally[EventKind.PERSISTENCE_FAILED] == stats.saves_failed > 0
        assert tally[EventKind.PERSISTENCE_RECOVERED] == 1
    elif "first use" in case:
        # Every failed first load is counted; each refused call met one.
        assert stats_during.loads_failed >= during.refused["PersistenceError"]
    elif "dict" not in case:
        # Every failed re-read is counted and reported (calls in its backoff meet none).
        assert tally[EventKind.REFRESH_FAILED] >= stats_during.loads_failed > 0


@pytest.mark.parametrize(
    "case", ["load raises TypeError at the re-read", "load returns a dict at the re-read"]
)
async def test_a_callback_bug_in_a_refresh_is_reported_by_an_event(
    case: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A re-read that fails during the scheduled refresh leaves an event behind."""
    store = BuggyStore(**CALLBACK_BUGS[case][0])  # type: ignore[arg-type]
    fake, clock, _, [key] = await fleet(1, "reread", store.inner)
    store.broken = key
    events: list[TokenEvent] = []
    with quiet_logs():
        async with manager(fake, clock, store, [events.append]) as tokens:
            await tokens.valid_token(key)  # loaded before the bug appears
            store.on = True
            await trio.sleep(3400)  # the scheduled refresh re-reads: the bug
            token = await tokens.valid_token(key)  # still valid: served all the same
            assert fake.is_valid(key.shop, token.access_token)
            await trio.sleep(200)  # past its hard expiry: no valid token left
            with pytest.raises(ShopTokenError) as caller_saw:
                await tokens.valid_token(key)
    assert any(e.error is not None and e.key == key for e in events)
    assert isinstance(caller_saw.value, PersistenceError)


# -- bugs in event hooks -------------------------------------------------------------------


async def test_broken_hooks_are_logged_and_never_stop_refreshing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Hooks raising TypeError or KeyError on every event are logged; the rest goes on."""
    fake, clock, store, keys = await fleet(5, "hook")
    seen: list[TokenEvent] = []

    def type_error(event: TokenEvent) -> None:
        raise TypeError(f"bad format for {event.kind}")

    def key_error(event: TokenEvent) -> None:
        sent: dict[TokenKey, int] = {}
        sent[event.key] += 1  # the bug: the key was never added

    def returns_garbage(event: TokenEvent) -> Any:
        return {"handled": event.kind}

    hooks = [type_error, key_error, returns_garbage, seen.append]
    with captured_events() as logs:
        async with manager(fake, clock, store, hooks) as tokens:
            result = await traffic(tokens, fake, keys, 6 * HOUR)
            stats = tokens.statistics()
    failed = [log for log in logs if log["event"] == "shoptoken.hook.failed"]
    by_hook = {log["hook"] for log in failed}
    report(
        "hooks raising on every event for 6 h",
        events_delivered_to_the_good_hook=len(seen),
        hook_failures_logged=len(failed),
        failing_hooks=sorted(by_hook),
        rotations=sum(rotations(fake, key) for key in keys),
        refused=result.refused,
        invalid_served=result.invalid,
    )
    assert result.invalid == 0
    assert result.refused == {}
    assert all(rotations(fake, key) >= 6 for key in keys)
    assert stats.refreshes_succeeded == sum(rotations(fake, key) for key in keys)
    # Every event reached the good hook, after two failing ones.
    assert len(seen) == len([log for log in logs if log["event"].startswith("shoptoken.")]) - len(
        failed
    )
    assert len(failed) == 2 * len(seen)
    assert by_hook == {
        f"{test_broken_hooks_are_logged_and_never_stop_refreshing.__qualname__}.<locals>.type_error",
        f"{test_broken_hooks_are_logged_and_never_stop_refreshing.__qualname__}.<locals>.key_error",
    }
    assert all(log["log_level"] == "error" and "error" in log for log in failed)


async def test_a_hook_raising_during_a_save_failure_does_not_lose_the_pair(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A hook that raises on persistence.failed (where it is most likely called) changes nothing."""
    store = BuggyStore(save_bug=raises(OSError("disk full")))
    fake, clock, _, [key] = await fleet(1, "hooksave", store.inner)
    store.broken = key

    def alert(event: TokenEvent) -> None:
        if event.kind is EventKind.PERSISTENCE_FAILED:
            raise RuntimeError("pager service down")

    with quiet_logs():
        async with manager(fake, clock, store, [alert]) as tokens:
            await tokens.valid_token(key)
            store.on = True
            await trio.sleep(3400)
            served = await tokens.valid_token(key)
            pending = tokens.statistics().saves_pending
            store.on = False
            await trio.sleep(300)
            stats = tokens.statistics()
    stored = await store.inner.load_tokens(key)
    assert stored is not None
    report(
        "hook raising on persistence.failed",
        saves_pending_then=pending,
        saves_failed=stats.saves_failed,
    )
    assert fake.is_valid(key.shop, served.access_token)
    assert pending == 1
    assert stats.saves_pending == 0
    assert stored == served
    # Still a working manager afterwards: errors surface as usual.
    fake.fail_next(500)
    async with manager(fake, clock, store, [alert]) as tokens:
        with pytest.raises(RefreshFailed):
            await tokens.refresh_token(key)
