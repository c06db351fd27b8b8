"""``shoptoken run``: JSON logs, clean stops on SIGTERM and SIGINT, store outages."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    PersistenceError,
    RefreshPolicy,
    TokenEvent,
    TokenKey,
    WarmUpFigures,
)
from shoptoken.cli._run import Daemon, WarmUpBar
from shoptoken.testing import FakeShopify

from .._logs import captured_events
from .conftest import FAKE_TOKEN, Served, child_env, install_stale, load, save, spawn

STALE = TokenKey.offline("stale-store")
FRESH = TokenKey.offline("fresh-store")
DEAD = TokenKey.offline("dead-store")


class Lines:
    """A child's stdout, read line by line in a thread so a test can wait with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        """The first JSON line whose event is ``event``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            record: dict[str, Any] = json.loads(line)
            if record["event"] == event:
                return record
        raise AssertionError(f"no {event} in {self.seen}")

    def wait_for_all(self, *events: str, timeout: float = 15.0) -> None:
        """Wait until each of ``events`` was seen, in any order."""
        missing = set(events) - {json.loads(line)["event"] for line in self.seen}
        deadline = time.monotonic() + timeout
        while missing:
            record = self.wait_for(next(iter(missing)), timeout=deadline - time.monotonic())
            missing.discard(record["event"])
            missing -= {json.loads(line)["event"] for line in self.seen}

    def rest(self) -> list[dict[str, Any]]:
        """Every remaining line, as JSON, once the child has exited."""
        records = []
        while (line := self._queue.get(timeout=5)) is not None:
            self.seen.append(line)
            records.append(json.loads(line))
        return records


def _env(served: Served) -> dict[str, str]:
    return child_env(**served.env)


def test_sigterm_lets_the_refresh_in_flight_save(served: Served, db: str) -> None:
    """SIGTERM mid-refresh: the rotated pair is still saved, and the process exits 0."""
    old = install_stale(served.fake, STALE)
    save(db, {STALE: old})
    served.fake.latency = 1.0  # the refresh is in flight for a second
    with spawn("run", "--store", db, "--log-level", "debug", env=_env(served)) as process:
        lines = Lines(process)
        started = lines.wait_for("shoptoken.refresh.started")
        assert started["key"] == str(STALE)
        assert started["level"] == "debug"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        records = lines.rest()
        assert process.stderr is not None
        errors = process.stderr.read()
    events = [record["event"] for record in records]
    assert events.index("shoptoken.cli.run.stopping") < events.index("shoptoken.refresh.succeeded")
    assert events[-1] == "shoptoken.cli.run.stopped"
    assert records[-1]["refreshes_succeeded"] == 1
    new = load(db, STALE)
    assert new is not None
    assert new != old
    assert served.fake.is_valid(STALE.shop, new.access_token)
    assert served.fake.refreshes == {STALE.shop: 1}
    assert served.fake.rejected == 0
    output = "".join(lines.seen) + errors
    assert not FAKE_TOKEN.search(output)
    assert all(secret not in output for secret in served.fake.issued)
    assert served.fake.client_secret not in output


def test_ready_after_the_first_scan_and_sigint(served: Served, db: str) -> None:
    """The first scan is logged with its figures; SIGINT stops the daemon with status 0."""
    fresh = served.fake.install(FRESH.shop)
    dead = attrs.evolve(
        served.fake.install(DEAD.shop),
        refresh_token_expires_at=datetime.now(UTC) - timedelta(days=1),
    )
    save(db, {FRESH: fresh, DEAD: dead, TokenKey.customer("fresh-store", "c1"): fresh})
    with spawn("run", "--store", db, "--rescan", "0.2", env=_env(served)) as process:
        lines = Lines(process)
        ready = lines.wait_for("shoptoken.cli.run.ready")
        assert ready["keys"] == 3
        scan = next(json.loads(line) for line in lines.seen if "scan.finished" in line)
        assert (scan["active"], scan["needs_reauthorization"], scan["skipped"]) == (1, 1, 1)
        assert "timestamp" in scan
        lines.wait_for("shoptoken.cli.scan.finished")  # the rescan runs, and warns no more
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        events = [record["event"] for record in lines.rest()]
    assert events[-1] == "shoptoken.cli.run.stopped"
    warned = [line for line in lines.seen if "needs_reauthorization" in line and "key" in line]
    assert len([line for line in warned if "cli.key.needs_reauthorization" in line]) == 1
    assert served.fake.requests == 0


class FlakyListing(MemoryStore):
    """A MemoryStore whose listing fails while ``down`` is set."""

    down = False

    async def list_keys(self) -> AsyncIterator[TokenKey]:
        """Fail like an unreachable database, or list."""
        if self.down:
            raise PersistenceError("listing failed: the database is unreachable")
        async for key in super().list_keys():
            yield key


async def test_a_store_outage_after_start_is_logged_and_outlived(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Scans that fail after the start are logged; the daemon goes on and recovers."""
    fake = FakeShopify()
    store = FlakyListing()
    await store.save_tokens(FRESH, fake.install(FRESH.shop))
    with captured_events() as logs:
        async with fake.oauth() as oauth, trio.open_nursery() as nursery:
            daemon = Daemon(store, oauth, RefreshPolicy(), rescan=10)
            await nursery.start(daemon.run)
            store.down = True
            await trio.sleep(25)
            store.down = False
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
    events = [entry["event"] for entry in logs]
    assert events.count("shoptoken.cli.scan.failed") == 2
    assert events.count("shoptoken.cli.scan.finished") == 2
    assert events[-1] == "shoptoken.cli.scan.finished"
    assert daemon.statistics is not None
    assert daemon.statistics.keys_known == 1


async def test_a_stored_client_credentials_key_is_kept_minted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``shoptoken run`` keeps a client-credentials key it finds in the store: minted again."""
    fake = FakeShopify()
    minted = TokenKey.client_credentials("back-office")
    store = MemoryStore()
    async with fake.oauth() as oauth:
        first = await oauth.mint(minted)
        # As a daemon down for a day finds it: past its expiry.
        expired = attrs.evolve(first, expires_at=datetime.now(UTC) - timedelta(hours=1))
        await store.save_tokens(minted, expired)
        async with trio.open_nursery() as nursery:
            daemon = Daemon(store, oauth, RefreshPolicy(), rescan=3600)
            await nursery.start(daemon.run)
            nursery.cancel_scope.cancel()
    stored = await store.load_tokens(minted)
    assert stored is not None
    assert stored.access_token != first.access_token
    assert fake.is_valid(minted.shop, stored.access_token)
    assert fake.mints == {minted.shop: 2}
    assert daemon.statistics is not None
    assert daemon.statistics.keys_reauthorization_required == 0


async def test_the_start_warms_up_the_stored_keys(autojump_clock: trio.testing.MockClock) -> None:
    """The first scan loads every offline and online key in batches and logs the figures."""
    fake = FakeShopify()
    store = MemoryStore()
    for key in (FRESH, STALE):
        await store.save_tokens(key, fake.install(key.shop))
    await store.save_tokens(TokenKey.customer("fresh-store", "7"), fake.install(FRESH.shop))
    with captured_events() as logs:
        async with fake.oauth() as oauth, trio.open_nursery() as nursery:
            await nursery.start(Daemon(store, oauth, RefreshPolicy(), rescan=10).run)
            nursery.cancel_scope.cancel()
    warmed = [entry for entry in logs if entry["event"] == "shoptoken.cli.warm_up.finished"]
    assert len(warmed) == 1
    assert (warmed[0]["loaded"], warmed[0]["dead"], warmed[0]["missing"]) == (2, 0, 0)


def test_the_warm_up_bar_follows_progress_events() -> None:
    """The bar's count follows the keys of each progress event, and only while shown."""
    bar = WarmUpBar()
    event = TokenEvent(EventKind.WARM_UP_PROGRESS, FRESH, progress=WarmUpFigures(loaded=3, dead=1))
    bar(event)  # not shown: ignored
    with bar.showing(10) as progress:
        bar(TokenEvent(EventKind.KEY_PARKED, FRESH))
        assert progress.tasks[0].completed == 0
        bar(event)
        assert (progress.tasks[0].completed, progress.tasks[0].total) == (4, 10)
