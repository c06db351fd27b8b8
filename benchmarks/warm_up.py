"""Starting a fleet from a real store: `TokenManager.warm_up` against lazy first use.

100,000 keys (2,000 with ``--quick``) stored in a MemoryStore, a SQLite file
and a PostgreSQL table (a throwaway schema; left out, with a note, when the
server is unreachable) are started by:

- ``warm_up()``: every stored key, listed and loaded in batches of 1,000;
- lazy first use: one ``valid_token`` per key, one after the other (the
  SQL stores with a tenth of the keys in the full run, the time scaled to
  the fleet: a thread round trip per key is the whole cost);

beside trio's floor for the same start, measured in the same run: one
MemoryStore load (a checkpoint) and one bare task spawned and parked per key.
Each start runs in a child process of its own (a clean heap), repeated and
interleaved; the table gives medians and spreads, and the cyclic garbage
collector's share of each start (timed with ``gc.callbacks``).

The last rows time what an app can do about the collector around a start:
``gc.disable()`` during it and ``gc.freeze()`` after it, or a larger
generation-0 threshold; each with the full collection that follows it.

    python -m benchmarks.warm_up CASE N [DSN SCHEMA]   # one child measurement
"""

from __future__ import annotations

import gc
import json
import logging
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from shoptoken import MemoryStore, Token, TokenKey, open_token_manager
from shoptoken.stores import SQLiteStore, _codec
from shoptoken.stores._schema import PostgresStatements, SQLiteStatements

from ._report import Figure, Section, median_spread

#: What each child measures: where the keys come from, and how they start.
CASES = (
    "floor",
    "memory-warm",
    "sqlite-warm",
    "postgres-warm",
    "memory-lazy",
    "sqlite-lazy",
    "postgres-lazy",
    "memory-warm-gc-off",
    "memory-warm-gen0",
)
#: Lazy first uses through a SQL store run on this fraction of the fleet (full run).
_LAZY_SQL_SHARE = 10
_TABLE = "shoptoken_tokens"


def _dsn() -> str:
    return os.environ.get(
        "SHOPTOKEN_BENCH_POSTGRES",
        os.environ.get("SHOPTOKEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
    )


def _keys(n: int) -> list[TokenKey]:
    return [TokenKey.offline(f"fleet-{i:06d}") for i in range(n)]


def _tokens(n: int) -> dict[TokenKey, Token]:
    now = time.time()
    expires = datetime.fromtimestamp(now + 3600, UTC)
    refresh_expires = datetime.fromtimestamp(now + 90 * 86400, UTC)
    return {
        key: Token(
            access_token=f"shpat_{secrets.token_hex(16)}",
            refresh_token=f"shprt_{secrets.token_hex(16)}",
            scope="read_orders,write_products",
            expires_at=expires,
            refresh_token_expires_at=refresh_expires,
        )
        for key in _keys(n)
    }


# -- filling the SQL stores (once per run, straight through the drivers) ------------------


def _fill_sqlite(path: Path, n: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        sql = SQLiteStatements.build(_TABLE)
        conn.execute(sql.create)
        now = time.time_ns() // 1000
        rows = [
            (*_codec.encode(key, token, _codec.to_micros), now) for key, token in _tokens(n).items()
        ]
        conn.execute("BEGIN")
        conn.executemany(sql.upsert, rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _postgres(dsn: str, sql: str, rows: list[tuple[object, ...]] | None = None) -> bool:
    """Run ``sql`` (for each of ``rows``), autocommit; False when the server is unreachable."""
    try:
        import psycopg  # noqa: PLC0415 - optional extra

        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            if rows is None:
                conn.execute(sql)
            else:
                with conn.cursor() as cursor:
                    cursor.executemany(sql, rows)
    except Exception:  # noqa: BLE001 - any failure means "leave PostgreSQL out"
        return False
    return True


def _fill_postgres(dsn: str, schema: str, n: int) -> bool:
    sql = PostgresStatements.build(_TABLE, schema)
    if not (_postgres(dsn, sql.create_schema or "") and _postgres(dsn, sql.create)):
        return False
    rows = [_codec.encode(key, token, lambda when: when) for key, token in _tokens(n).items()]
    return _postgres(dsn, sql.upsert, rows)


# -- one child measurement -----------------------------------------------------------------


class _Never:
    async def refresh(self, key: TokenKey, token: Token, **_: object) -> Token:
        raise AssertionError("nothing is due during the benchmark")


class _GCTimer:
    """Seconds the cyclic collector ran, and its full collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began
            self.full += info["generation"] == 2


def _store(source: str, n: int, where: list[str]) -> Any:
    if source in {"floor", "memory"}:
        return MemoryStore(_tokens(n))
    if source == "sqlite":
        return SQLiteStore(where[0])
    from shoptoken.stores import PostgresStore  # noqa: PLC0415 - optional extra

    return PostgresStore(where[0], schema=where[1], table=_TABLE)


async def _child(case: str, n: int, where: list[str]) -> dict[str, float]:
    source, _, how = case.partition("-")
    store = _store(source, n, where)
    keys = _keys(n)
    gc.collect()
    timer = _GCTimer()
    if how == "warm-gen0":
        gc.set_threshold(50_000, 20, 10)
    if source == "floor":
        return await _floor(store, keys, timer)
    async with open_token_manager(_Never(), store) as tokens:
        start = time.perf_counter()
        if how == "warm-gc-off":
            gc.disable()
        if how.startswith("warm"):
            figures = await tokens.warm_up()
            loaded = figures.loaded
        else:
            for key in keys:
                await tokens.valid_token(key)
            loaded = len(keys)
        await trio.lowlevel.checkpoint()  # the keeper tasks take their first step
        seconds = time.perf_counter() - start
        if how == "warm-gc-off":
            gc.freeze()  # what the start made is never walked again
            gc.enable()
        gc_seconds = timer.seconds
        after = time.perf_counter()
        gc.collect()  # the next full collection, as the app's heap will see it
        next_full = time.perf_counter() - after
        active = tokens.statistics().keys_active
    aclose = getattr(store, "aclose", None)
    if aclose is not None:
        await aclose()
    if loaded != n or active != n:
        raise RuntimeError(f"{case}: {loaded} loaded, {active} active of {n}")
    return {"seconds": seconds, "gc_seconds": gc_seconds, "full": timer.full, "next": next_full}


async def _floor(store: MemoryStore, keys: list[TokenKey], timer: _GCTimer) -> dict[str, float]:
    """Load every key from the store and spawn one parked bare task each."""

    async def park() -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        for key in keys:
            await store.load_tokens(key)
            nursery.start_soon(park, name="floor")
        await trio.lowlevel.checkpoint()
        seconds = time.perf_counter() - start
        gc_seconds = timer.seconds
        nursery.cancel_scope.cancel()
    return {"seconds": seconds, "gc_seconds": gc_seconds, "full": timer.full, "next": 0.0}


def _measure(case: str, n: int, where: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.warm_up", case, str(n), *where],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- the run ----------------------------------------------------------------------------


async def run(quick: bool) -> Section:
    """Fill the stores, measure every case in child processes, report against the targets."""
    n = 2_000 if quick else 100_000
    repeats = 1 if quick else 3
    notes = [
        f"{n:,} keys; medians of {repeats} interleaved runs per figure, each in a fresh process",
    ]
    dsn, schema = _dsn(), f"shoptoken_bench_{secrets.token_hex(4)}"
    samples: dict[str, list[dict[str, float]]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fleet.db"
        await trio.to_thread.run_sync(_fill_sqlite, path, n)
        postgres = await trio.to_thread.run_sync(_fill_postgres, dsn, schema, n)
        if not postgres:
            notes.append("PostgreSQL unreachable: set SHOPTOKEN_BENCH_POSTGRES to include it")
        where = {"sqlite": [str(path)], "postgres": [dsn, schema]}
        try:
            for _ in range(repeats):
                for case in CASES:
                    source, _, how = case.partition("-")
                    if source == "postgres" and not postgres:
                        continue
                    size = n
                    if how == "lazy" and source in where and not quick:
                        size = n // _LAZY_SQL_SHARE
                    m = await trio.to_thread.run_sync(_measure, case, size, where.get(source, []))
                    m["scale"] = n / size
                    samples[case].append(m)
        finally:
            if postgres:
                await trio.to_thread.run_sync(
                    _postgres, dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'
                )
    return Section("Starting a fleet: warm-up and lazy first use", _figures(samples), notes)


def _figures(samples: dict[str, list[dict[str, float]]]) -> list[Figure]:
    def seconds(case: str) -> tuple[float, tuple[float, float]]:
        return median_spread([m["seconds"] * m["scale"] for m in samples[case]])

    floor, floor_spread = seconds("floor")
    # "The MemoryStore start" of the issue: one first use per key (load + keeper).
    memory, _ = seconds("memory-lazy")
    memory_warm, _ = seconds("memory-warm")
    figures = [
        Figure("trio floor: a load + a parked task per key", floor, "s", floor_spread),
        Figure(
            "MemoryStore start (first use per key) / trio floor",
            memory / floor,
            "x",
            None,
            "<= 1.3x",
            memory / floor <= 1.3,
        ),
        Figure("MemoryStore warm-up / trio floor", memory_warm / floor, "x"),
    ]
    for case in CASES[1:]:
        if not samples[case]:
            continue
        value, spread = seconds(case)
        gc_share = statistics.median(m["gc_seconds"] / m["seconds"] for m in samples[case])
        scaled = " (scaled from a tenth)" if samples[case][0]["scale"] > 1 else ""
        name = f"{case}: start all{scaled}"
        if case in {"sqlite-warm", "postgres-warm"}:
            ratio = value / memory
            figures.append(Figure(name, value, "s", spread, "<= 5 s", value <= 5))
            figures.append(
                Figure(f"{case} / MemoryStore start", ratio, "x", None, "<= 1.5x", ratio <= 1.5)
            )
            figures.append(Figure(f"{case} / MemoryStore warm-up", value / memory_warm, "x"))
        else:
            figures.append(Figure(name, value, "s", spread))
        figures.append(Figure(f"{case}: share of the start in the collector", gc_share * 100, "%"))
        if case.startswith("memory-warm"):
            nxt = statistics.median(m["next"] for m in samples[case])
            figures.append(Figure(f"{case}: the next full collection", nxt * 1000, "ms"))
    floor_gc = statistics.median(m["gc_seconds"] / m["seconds"] for m in samples["floor"])
    figures.append(Figure("trio floor: share in the collector", floor_gc * 100, "%"))
    return figures


if __name__ == "__main__":
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    print(json.dumps(trio.run(_child, sys.argv[1], int(sys.argv[2]), sys.argv[3:])))
