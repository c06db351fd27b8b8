"""Crash consistency: manager processes SIGKILLed at random moments lose no token pair.

A worker process (`_crash_worker.py`) runs a `TokenManager` on SQLite or
PostgreSQL against a FakeShopify served on loopback by the test process,
with 2-second tokens so each shop rotates about once a second. The test
kills it with SIGKILL at seeded random moments: while it starts, while it
recovers, at any moment of its run, and, deterministically, right after
Shopify's answer to a refresh and before the save (the worker kills itself
there). Saves are slowed at random so the crash window is often hit.

After each kill the test reads the store and the fake and classifies each
shop: its stored pair is the current one (saved), or Shopify rotated it and
the new pair was never saved (unsaved: the crash window), or the stored
refresh token no longer works (lost). Then the next worker starts on the
same store and must bring every shop back with one Admin API call through
``tokens.auth`` (a 401 forces a refresh that presents the stored refresh
token, which Shopify's recovery window still accepts), with no
re-authorization.

`test_failed_save_then_second_rotation_needs_reauthorization` reproduces
the one window the docs say still loses a pair (docs/concepts.md, "The
crash window"): a store that keeps failing until a further rotation, then a
crash.

Real processes, real sockets, the real clock. The seed comes from
SHOPTOKEN_CRASH_SEED (printed with the figures); ``--long`` runs 200 kills
per backend instead of 20.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from shoptoken import TokenCallback, TokenKey
from shoptoken.stores import open_store
from shoptoken.testing import FakeShopify, LoopbackServer, serve_loopback

from .._store_urls import store_url as shared_store_url
from . import report

ROOT = Path(__file__).parents[2]
WORKER = Path(__file__).with_name("_crash_worker.py")
SEED = int(os.environ.get("SHOPTOKEN_CRASH_SEED", "20260828"))
SHOPS = ["crash-a", "crash-b", "crash-c"]
#: 2 s tokens refreshed 1-1.3 s before expiry: each shop rotates every 0.7-1 s.
POLICY = {"refresh_before": 1.0, "jitter": 0.3, "skew": 0.2}
ACCESS_LIFETIME = 2.0
#: Every request to the fake takes this long, so kills also land mid-request.
LATENCY = 0.02
#: Worker start-up (interpreter already warm), recovery, a self-kill: generous bounds.
STEP_TIMEOUT = 20.0


# --- stores ---------------------------------------------------------------------------------------


@asynccontextmanager
async def store_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty store of ``backend``."""
    async with shared_store_url(backend, tmp_path, "shoptoken_crash") as url:
        yield url


# --- workers --------------------------------------------------------------------------------------


@attrs.define(eq=False)
class Worker:
    """One `_crash_worker.py` process and everything it printed."""

    process: trio.Process
    events: list[dict[str, Any]] = attrs.field(factory=list)
    stderr: bytearray = attrs.field(factory=bytearray)
    imported: trio.Event = attrs.field(factory=trio.Event)
    recovered: trio.Event = attrs.field(factory=trio.Event)
    exited: trio.Event = attrs.field(factory=trio.Event)

    @classmethod
    async def spawn(cls, nursery: trio.Nursery, env: dict[str, str]) -> Worker:
        """Start an interpreter; it imports, then waits for `start`."""
        process = await trio.lowlevel.open_process(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        worker = cls(process)
        nursery.start_soon(worker._read_stdout)
        nursery.start_soon(worker._read_stderr)
        return worker

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                self.events.append(event)
                if event["event"] == "imported":
                    self.imported.set()
                elif event["event"] == "recovered":
                    self.recovered.set()
        await self.process.wait()
        self.exited.set()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.stderr += chunk

    async def start(self, config: dict[str, Any]) -> None:
        """Hand the worker its configuration: it opens the store and recovers."""
        assert self.process.stdin is not None
        with trio.fail_after(STEP_TIMEOUT):
            await self.imported.wait()
        await self.process.stdin.send_all(json.dumps(config).encode() + b"\n")

    async def wait_recovered(self) -> dict[str, str]:
        """The outcome of each shop's first API call in this worker."""
        with trio.move_on_after(STEP_TIMEOUT):
            await self.recovered.wait()
        if not self.recovered.is_set():
            pytest.fail(f"worker did not recover: {self.events[-20:]}\n{self.crashed_text()}")
        [event] = self.of("recovered")
        return dict(event["outcomes"])

    async def kill(self) -> None:
        """SIGKILL the worker (if it is still alive) and wait until it is gone."""
        if not self.exited.is_set():
            self.process.kill()
        await self.wait_exit()

    async def wait_exit(self) -> int:
        """Wait for the process to end; its return code."""
        with trio.fail_after(STEP_TIMEOUT):
            await self.exited.wait()
        assert self.process.returncode is not None
        return self.process.returncode

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The events of one kind, in order."""
        return [event for event in self.events if event["event"] == kind]

    def last_refresh_event(self, key: str) -> str | None:
        """``answered`` or ``saved``: the last refresh step the worker reported for ``key``."""
        steps = [e["event"] for e in self.events if e.get("key") == key]
        steps = [step for step in steps if step in ("answered", "saved")]
        return steps[-1] if steps else None

    def crashed_text(self) -> str:
        """The worker's stderr, for failure messages."""
        return bytes(self.stderr).decode(errors="replace")[-3000:]


Spawn = Callable[[], Awaitable[Worker]]


@asynccontextmanager
async def workers(fake: FakeShopify) -> AsyncIterator[Spawn]:
    """Start workers on demand; on the way out, kill any still running (a failed test's)."""
    env = dict(
        os.environ,
        SHOPTOKEN_CLIENT_ID=fake.client_id,
        SHOPTOKEN_CLIENT_SECRET=fake.client_secret,
    )
    spawned: list[Worker] = []
    async with trio.open_nursery() as nursery:

        async def spawn() -> Worker:
            worker = await Worker.spawn(nursery, env)
            spawned.append(worker)
            return worker

        try:
            yield spawn
        finally:
            for worker in spawned:
                if worker.process.returncode is None:
                    worker.process.kill()


def worker_config(server: LoopbackServer, url: str, **extra: Any) -> dict[str, Any]:
    """A worker's configuration: the fake's port, the store, the shops, the policy."""
    return {"port": server.port, "store": url, "shops": SHOPS, "policy": POLICY, **extra}


# --- what the store holds -------------------------------------------------------------------------


@attrs.frozen
class ShopState:
    """One shop after a kill: what the store holds against what Shopify holds.

    ``state`` is ``saved`` (the stored pair is Shopify's current one),
    ``unsaved`` (Shopify rotated and the new pair was never saved: the crash
    window; the stored refresh token still works, its replacement unused) or
    ``lost`` (the stored refresh token no longer works).
    """

    state: str
    stored_refresh: str = attrs.field(repr=False)
    current_refresh: str = attrs.field(repr=False)


async def classify(
    store: TokenCallback, fake: FakeShopify, shops: list[str] = SHOPS
) -> dict[str, ShopState]:
    """Compare each shop's stored pair with Shopify's current one."""
    states: dict[str, ShopState] = {}
    for shop in shops:
        key = TokenKey.offline(shop)
        stored = await store.load_tokens(key)
        assert stored is not None
        assert stored.refresh_token is not None
        pair = fake._admin.shops[key.shop].pair
        assert pair is not None
        if stored.refresh_token == pair.refresh:
            state = "saved"
        elif fake.refresh_token_works(key.shop, stored.refresh_token):
            state = "unsaved"
        else:
            state = "lost"
        states[shop] = ShopState(state, stored.refresh_token, pair.refresh)
    return states


@attrs.define
class Tally:
    """The figures of a kill campaign."""

    kills: Counter[str] = attrs.field(factory=Counter)
    in_window: Counter[str] = attrs.field(factory=Counter)
    episodes: set[tuple[str, str]] = attrs.field(factory=set)
    lost: list[str] = attrs.field(factory=list)
    outcomes: Counter[str] = attrs.field(factory=Counter)
    windows: list[float] = attrs.field(factory=list)
    widened: list[float] = attrs.field(factory=list)
    current: dict[str, str] = attrs.field(factory=dict)

    def record_kill(
        self, mode: str, worker: Worker, states: dict[str, ShopState], kill: int
    ) -> None:
        """Count one kill and what it left in the store."""
        self.kills[mode] += 1
        for shop, shop_state in states.items():
            rotated = self.current.get(shop) != shop_state.current_refresh
            self.current[shop] = shop_state.current_refresh
            if shop_state.state == "unsaved":
                self.episodes.add((shop, shop_state.stored_refresh))
                if not rotated:
                    # Left unsaved by an earlier kill; this worker died before
                    # it got to the shop.
                    self.in_window["carried over"] += 1
                elif worker.last_refresh_event(str(TokenKey.offline(shop))) == "answered":
                    self.in_window["answered, not saved"] += 1
                else:
                    # Shopify rotated; the answer never reached the worker.
                    self.in_window["answer in flight"] += 1
            elif shop_state.state == "lost":
                self.lost.append(f"kill {kill} ({mode}): {shop}")

    def record_worker(self, worker: Worker, save_delay: float) -> None:
        """Keep the save windows a worker measured (answer to commit)."""
        windows = [e["window"] for e in worker.of("saved") if e["window"] is not None]
        (self.widened if save_delay else self.windows).extend(windows)


def _ms(values: list[float]) -> dict[str, object]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def draw_plan(rng: random.Random) -> dict[str, Any]:
    """How the next worker dies: ``self`` (after its N-th refresh answer), ``early``, ``random``."""
    roll = rng.random()
    plan: dict[str, Any] = {"save_delay": rng.choice([0.0, 0.0, 0.05, 0.1, 0.2])}
    if roll < 0.25:
        plan.update(mode="self", die_after_refresh=rng.randint(1, 3))
    elif roll < 0.4:
        plan.update(mode="early", delay=rng.uniform(0.0, 0.4))
    else:
        # Each shop rotates every 0.7-1 s: a second covers every phase of a cycle.
        plan.update(mode="random", delay=rng.uniform(0.0, 1.0))
    return plan


# --- the campaign ---------------------------------------------------------------------------------


async def run_campaign(backend: str, kills: int, tmp_path: Path) -> Tally:
    """Kill ``kills`` workers in turn on one store; return what happened."""
    rng = random.Random(f"{SEED}-{backend}")
    fake = FakeShopify(access_lifetime=ACCESS_LIFETIME, latency=LATENCY)
    tally = Tally()
    async with (
        store_url(backend, tmp_path) as url,
        serve_loopback(fake) as server,
        open_store(url) as store,
        workers(fake) as spawn,
    ):
        create = getattr(store, "create_schema", None)
        if create is not None:
            await create()
        for shop in SHOPS:
            await store.save_tokens(TokenKey.offline(shop), fake.install(shop))
        tally.current = {
            shop: state.current_refresh for shop, state in (await classify(store, fake)).items()
        }
        upcoming = await spawn()
        for kill in range(1, kills + 1):
            worker, plan = upcoming, draw_plan(rng)
            config = worker_config(server, url, run_for=60.0, **plan)
            await worker.start(config)
            # The next interpreter starts while this worker runs.
            upcoming = await spawn()
            if plan["mode"] == "self":
                code = await worker.wait_exit()
                assert code == -9, worker.crashed_text()
            else:
                if plan["mode"] == "random":
                    tally.outcomes.update((await worker.wait_recovered()).values())
                await trio.sleep(plan["delay"])
                await worker.kill()
            if worker.recovered.is_set() and plan["mode"] != "random":
                tally.outcomes.update((await worker.wait_recovered()).values())
            # A request the worker sent just before dying may still be at the fake.
            await trio.sleep(LATENCY * 5)
            tally.record_kill(plan["mode"], worker, await classify(store, fake), kill)
            tally.record_worker(worker, plan["save_delay"])
        # The last restart: recover, then stop cleanly.
        await upcoming.start(worker_config(server, url, run_for=0.0))
        tally.outcomes.update((await upcoming.wait_recovered()).values())
        assert await upcoming.wait_exit() == 0, upcoming.crashed_text()
        final = await classify(store, fake)
        for shop in SHOPS:
            stored = await store.load_tokens(TokenKey.offline(shop))
            assert stored is not None
            assert fake.is_valid(TokenKey.offline(shop).shop, stored.access_token)
    assert {state.state for state in final.values()} == {"saved"}, final
    recoveries = sum(fake.statistics(shop).refreshes_recovered for shop in SHOPS)
    reauthorizations = tally.outcomes["ReauthorizationRequired"] + fake.rejected
    new_hits = sum(n for cause, n in tally.in_window.items() if cause != "carried over")
    report(
        f"crash {backend}",
        seed=SEED,
        kills=sum(tally.kills.values()),
        random_kills=tally.kills["random"],
        early_kills=tally.kills["early"],
        self_kills_after_answer=tally.kills["self"],
        window_hits=new_hits,
        answered_not_saved=tally.in_window["answered, not saved"],
        answer_in_flight=tally.in_window["answer in flight"],
        still_unsaved_at_next_kill=tally.in_window["carried over"],
        unsaved_pairs=len(tally.episodes),
        recoveries=recoveries,
        recovery_checks=sum(tally.outcomes.values()),
        reauthorizations=reauthorizations,
        lost_pairs=len(tally.lost),
    )
    report(f"crash {backend} save window, answer to commit", **_ms(tally.windows))
    report(f"crash {backend} save window, save slowed 50-200 ms", **_ms(tally.widened))
    # Every restart brought every shop back, without a re-authorization.
    assert tally.lost == []
    assert reauthorizations == 0
    assert set(tally.outcomes) == {"ok"}, tally.outcomes
    assert fake.rejected == 0
    # The window was really hit (the self-kills guarantee it), and every
    # unsaved pair was recovered through the old refresh token.
    assert tally.in_window["answered, not saved"] >= tally.kills["self"] > 0
    assert recoveries >= len(tally.episodes) > 0
    return tally


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_random_kills_lose_no_pair(backend: str, tmp_path: Path) -> None:
    """20 SIGKILLs at random moments (self-kills between answer and save among them): no loss."""
    tally = await run_campaign(backend, 20, tmp_path)
    assert sum(tally.kills.values()) == 20


@pytest.mark.long
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_random_kills_lose_no_pair_long(backend: str, tmp_path: Path) -> None:
    """200 SIGKILLs per backend: no lost pair, no re-authorization."""
    tally = await run_campaign(backend, 200, tmp_path)
    assert sum(tally.kills.values()) == 200


# --- the documented window ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_failed_save_then_second_rotation_needs_reauthorization(
    backend: str, tmp_path: Path
) -> None:
    """The documented window: a crash while a served pair is unsaved loses the shop.

    Shopify keeps the previous refresh token only until the new pair is
    first used: an API call with the new access token ends that window. The
    manager serves an unsaved pair from memory (DESIGN: availability while
    the save is retried), so once the app has used it, the stored pair is
    dead until the save lands.

    1. Saves fail; the worker rotates once, serves the pair from memory (its
       API calls use it), retries the save, and dies: the stored refresh
       token is dead. The restart needs re-authorization.
    2. After a new install, saves fail; the worker rotates, then rotates
       again with the unsaved refresh token, and dies: likewise lost.
    """
    fake = FakeShopify(access_lifetime=ACCESS_LIFETIME, latency=LATENCY)
    shop = SHOPS[0]
    key = TokenKey.offline(shop)
    async with (
        store_url(backend, tmp_path) as url,
        serve_loopback(fake) as server,
        open_store(url) as store,
        workers(fake) as spawn,
    ):
        create = getattr(store, "create_schema", None)
        if create is not None:
            await create()
        await store.save_tokens(key, fake.install(shop))

        async def run(**config: Any) -> Worker:
            worker = await spawn()
            await worker.start(
                {**worker_config(server, url, run_for=30.0), "shops": [shop], **config}
            )
            await worker.wait_exit()
            return worker

        # 1. Killed while the save kept failing, after the unsaved pair was used.
        first = await run(fail_saves=True, die_after_failed_saves=3)
        assert first.process.returncode == -9, first.crashed_text()
        [dying] = first.of("dying")
        assert dying["saves_pending"] == 1
        assert len(first.of("answered")) == 1
        before = (await classify(store, fake, [shop]))[shop].state
        recovered_before = fake.statistics(shop).refreshes_recovered
        restart = await run(run_for=0.0)
        after_restart = (await restart.wait_recovered())[key.shop]
        recovered = fake.statistics(shop).refreshes_recovered - recovered_before
        await store.save_tokens(key, fake.install(shop))  # the merchant installs again

        # 2. Killed after a further rotation used the unsaved refresh token.
        second = await run(fail_saves=True, die_after_refresh=2)
        assert second.process.returncode == -9, second.crashed_text()
        failures = second.of("save_failed")
        answers = second.of("answered")
        assert len(answers) == 2
        exposed = answers[1]["t"] - failures[0]["t"]
        lost_state = (await classify(store, fake, [shop]))[shop].state
        rejected_before = fake.rejected
        last = await run(run_for=0.0)
        outcome = (await last.wait_recovered())[key.shop]
        persistence_failed = len(second.of("shoptoken.persistence.failed"))

    report(
        f"crash {backend} failing store",
        killed_before_next_rotation=before,
        then_restart=after_restart,
        recoveries=recovered,
        killed_after_second_rotation=lost_state,
        then_restart_raised=outcome,
        refreshes_refused=fake.rejected - rejected_before,
        store_failing_before_second_rotation_s=exposed,
        failed_saves=len(failures),
        persistence_failed_events=persistence_failed,
    )
    assert (before, after_restart, recovered) == ("lost", "ReauthorizationRequired", 0)
    assert (lost_state, outcome) == ("lost", "ReauthorizationRequired")
    assert fake.rejected - rejected_before == 1
    # The alarm the docs tell operators to act on was raised all along.
    assert persistence_failed >= 1
    # The exposure is one refresh interval of the first unsaved pair.
    lifetime_lead = ACCESS_LIFETIME - POLICY["refresh_before"]
    assert lifetime_lead - POLICY["jitter"] - 0.3 <= exposed <= lifetime_lead + 0.3
