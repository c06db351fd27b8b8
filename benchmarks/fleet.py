"""Fleet scale: 1k, 10k and 100k active keys, each kept fresh by its supervised keeper.

Each size runs in its own process, for clean memory figures:

- resident memory per active key, token included (RSS growth / keys), and
  Python heap per key (tracemalloc);
- time to start them all: first ``valid_token`` of every key, which loads it
  from the store and starts its task;
- CPU used while nothing is due (target ~0: no polling);
- memory per parked key (the keys idle past ``idle_after``, under trio's
  mock clock), from tracemalloc.

The start time is set against trio's own floor for the same shape, measured
in the same process: one bare task spawned per key, each parking at once,
one scheduler pass per key (the store's load is one checkpoint), with the
same store building the same tokens.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import secrets
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime

import attrs
import trio
import trio.lowlevel
import trio.testing

from shoptoken import RefreshPolicy, Token, TokenKey, open_token_manager

from ._report import Figure, Section

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE


@attrs.define(eq=False)
class _RowStore:
    """Rows as bytes, a new Token per load: like a database, the store shares nothing."""

    rows: dict[TokenKey, tuple[bytes, bytes, float, float]]

    async def load_tokens(self, key: TokenKey) -> Token | None:
        await trio.lowlevel.checkpoint()
        access, refresh, expires, refresh_expires = self.rows[key]
        return Token(
            access_token=access.decode(),
            refresh_token=refresh.decode(),
            scope="read_orders,write_products",
            expires_at=datetime.fromtimestamp(expires, UTC),
            refresh_token_expires_at=datetime.fromtimestamp(refresh_expires, UTC),
        )

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        raise AssertionError("nothing is due during the benchmark")


class _NeverRefresher:
    async def refresh(self, key: TokenKey, token: Token, **_: object) -> Token:
        raise AssertionError("nothing is due during the benchmark")


def _fleet(n: int, now: float) -> tuple[list[TokenKey], _RowStore]:
    keys = [TokenKey.offline(f"fleet-{i:06d}") for i in range(n)]
    rows = {
        key: (
            f"shpat_{secrets.token_hex(16)}".encode(),
            f"shprt_{secrets.token_hex(16)}".encode(),
            now + 3600,
            now + 90 * 86400,
        )
        for key in keys
    }
    return keys, _RowStore(rows)


async def _active(n: int, idle: float) -> dict[str, float]:
    keys, store = _fleet(n, time.time())
    gc.collect()
    before = _rss()
    async with open_token_manager(_NeverRefresher(), store) as tokens:
        start = time.perf_counter()
        for key in keys:
            await tokens.valid_token(key)
        await trio.lowlevel.checkpoint()  # the refresher tasks take their first step
        started = time.perf_counter() - start
        await trio.sleep(0.5)
        gc.collect()
        grown = _rss() - before
        cpu = time.process_time()
        await trio.sleep(idle)
        cpu_share = (time.process_time() - cpu) / idle
        active = tokens.statistics().keys_active
    return {"start_s": started, "rss_per_key": grown / n, "cpu_share": cpu_share, "active": active}


async def _floor(n: int) -> float:
    """Seconds to load every key from the store and spawn one parked bare task each."""
    keys, store = _fleet(n, time.time())
    gc.collect()

    async def park() -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        for key in keys:
            await store.load_tokens(key)
            nursery.start_soon(park, name="floor")
        await trio.lowlevel.checkpoint()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


async def _parked(n: int) -> dict[str, float]:
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    keys, store = _fleet(n, now)

    def clock() -> float:
        return now + trio.current_time()

    policy = RefreshPolicy(idle_after=600)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    async with open_token_manager(_NeverRefresher(), store, policy=policy, clock=clock) as tokens:
        for key in keys:
            await tokens.valid_token(key)
        await trio.sleep(1)
        gc.collect()
        active = tracemalloc.get_traced_memory()[0] - base
        await trio.sleep(policy.idle_after + 60)
        gc.collect()
        parked = tracemalloc.get_traced_memory()[0] - base
        stats = tokens.statistics()
    tracemalloc.stop()
    return {
        "heap_per_active_key": active / n,
        "heap_per_parked_key": parked / n,
        "parked": stats.keys_parked,
    }


def _child(n: int, idle: float) -> None:
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    active = trio.run(_active, n, idle)
    parked = trio.run(_parked, n, clock=trio.testing.MockClock(autojump_threshold=0))
    # Last: what it frees would otherwise flatter the memory figures above.
    gc.collect()
    parked["floor_s"] = trio.run(_floor, n)
    print(json.dumps(active | parked))


def _measure(n: int, idle: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.fleet", str(n), str(idle)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def run(quick: bool) -> Section:
    """Measure each fleet size in a child process."""
    sizes, idle = ((1_000, 5_000), 0.5) if quick else ((1_000, 10_000, 100_000), 3.0)
    figures = []
    for n in sizes:
        m = await trio.to_thread.run_sync(_measure, n, idle)
        if m["active"] != n or m["parked"] != n:
            raise RuntimeError(f"fleet setup went wrong: {m}")
        big = n == max(sizes)
        figures += [
            Figure(
                f"{n:,} keys: RSS per active key",
                m["rss_per_key"],
                "bytes",
                None,
                "<= 4096" if big else None,
                m["rss_per_key"] <= 4096 if big else None,
            ),
            Figure(f"{n:,} keys: heap per active key", m["heap_per_active_key"], "bytes"),
            Figure(
                f"{n:,} keys: time to start all",
                m["start_s"],
                "s",
                None,
                "<= 3 s" if big else None,
                m["start_s"] <= 3 if big else None,
            ),
            Figure(f"{n:,} keys: trio floor: load + spawn a parked task", m["floor_s"], "s"),
            Figure(
                f"{n:,} keys: CPU while idle",
                m["cpu_share"] * 100,
                "% of a core",
                None,
                "~0 (< 1%)" if big else None,
                m["cpu_share"] < 0.01 if big else None,
            ),
            Figure(
                f"{n:,} keys: heap per parked key",
                m["heap_per_parked_key"],
                "bytes",
                None,
                "<= 1024" if big else None,
                m["heap_per_parked_key"] <= 1024 if big else None,
            ),
        ]
    return Section(
        "3. Fleet scale: active keys, each kept fresh (a keeper task when due, an alarm between)",
        figures,
        [f"CPU measured over {idle} s with nothing due; targets apply to the largest size."],
    )


if __name__ == "__main__":
    _child(int(sys.argv[1]), float(sys.argv[2]))
