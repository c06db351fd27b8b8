"""Store latency: load, save, and a locked refresh (lock + read + save + commit), per store.

Every operation is timed on its own (``time.perf_counter_ns``), one at a
time, after a warm-up; the table shows the median and the 99th percentile.
PostgreSQL comes from ``SHOPTOKEN_BENCH_POSTGRES`` (else
``SHOPTOKEN_TEST_POSTGRES``, else the local test server) and is left out,
with a note, when unreachable. SQLite runs on a file in a temporary
directory, with ``synchronous=FULL`` (every commit is fsynced).

    python -m benchmarks.stores            # 1000 runs per figure
    python -m benchmarks.stores --quick    # 50 runs: a few seconds
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from shoptoken import MemoryStore, Token, TokenKey
from shoptoken.stores import SQLiteStore

from ._report import Figure, Section, percentile

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

KEY = TokenKey.offline("bench-store")
TOKEN = Token(
    access_token="shpat_" + "a" * 32,
    refresh_token="shprt_" + "r" * 32,
    scope="read_orders,write_orders",
    expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    refresh_token_expires_at=datetime(2030, 3, 1, tzinfo=UTC),
)
OPERATIONS = ("load", "save", "locked refresh")
Store = Any


def _postgres_dsn() -> str:
    return os.environ.get(
        "SHOPTOKEN_BENCH_POSTGRES",
        os.environ.get("SHOPTOKEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
    )


def _postgres_reachable(dsn: str) -> bool:
    try:
        import psycopg  # noqa: PLC0415 - optional extra

        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except Exception:  # noqa: BLE001 - any failure means "leave PostgreSQL out"
        return False


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg  # noqa: PLC0415 - optional extra

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@asynccontextmanager
async def _stores(directory: Path, notes: list[str]) -> AsyncIterator[dict[str, Store]]:
    """Every store to measure, opened, closed on exit."""
    from shoptoken.stores import EncryptedStore  # noqa: PLC0415 - optional extra

    key = {"bench": EncryptedStore.generate_key()}
    async with AsyncExitStack() as stack:
        stores: dict[str, Store] = {"memory": MemoryStore()}
        sqlite = await stack.enter_async_context(SQLiteStore(directory / "bench.db"))
        stores["sqlite"] = sqlite
        stores["encrypted(sqlite)"] = EncryptedStore(sqlite, key)
        dsn = _postgres_dsn()
        if await trio.to_thread.run_sync(_postgres_reachable, dsn):
            from shoptoken.stores import PostgresStore  # noqa: PLC0415 - optional extra

            schema = f"shoptoken_bench_{secrets.token_hex(4)}"
            postgres = await stack.enter_async_context(PostgresStore(dsn, schema=schema))
            stack.push_async_callback(trio.to_thread.run_sync, _drop_schema, dsn, schema)
            await postgres.create_schema()
            stores["postgres"] = postgres
            stores["encrypted(postgres)"] = EncryptedStore(postgres, key)
        else:
            notes.append("PostgreSQL unreachable: set SHOPTOKEN_BENCH_POSTGRES to include it")
        yield stores


def _operations(store: Store) -> dict[str, Callable[[], Awaitable[object]]]:
    async def load() -> object:
        return await store.load_tokens(KEY)

    async def save() -> object:
        return await store.save_tokens(KEY, TOKEN)

    async def locked_refresh() -> object:
        async with store.locked(KEY, timeout=10.0) as handle:
            assert handle.token is not None  # noqa: S101 - the benchmark saved it
            await handle.save(TOKEN)
        return None

    return {"load": load, "save": save, "locked refresh": locked_refresh}


async def _latencies(operation: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    """Microseconds per call, one sample per call, after a warm-up."""
    for _ in range(max(5, runs // 10)):
        await operation()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        await operation()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


async def measure(*, quick: bool) -> tuple[dict[str, dict[str, tuple[float, float]]], list[str]]:
    """``{store: {operation: (median µs, p99 µs)}}`` and notes."""
    runs = 50 if quick else 1000
    notes = [f"{runs} runs per figure, one call at a time"]
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        async with _stores(Path(directory), notes) as stores:
            for name, store in stores.items():
                await store.save_tokens(KEY, TOKEN)
                results[name] = {}
                for operation, call in _operations(store).items():
                    samples = await _latencies(call, runs)
                    results[name][operation] = (percentile(samples, 50), percentile(samples, 99))
    return results, notes


def table(results: dict[str, dict[str, tuple[float, float]]]) -> str:
    """A text table: a row per store, median and p99 per operation, in µs."""
    header = ["store"] + [f"{op} {stat}" for op in OPERATIONS for stat in ("p50", "p99")]
    rows = [header]
    for name, figures in results.items():
        rows.append([name] + [f"{figures[op][i]:,.0f}" for op in OPERATIONS for i in (0, 1)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def run(quick: bool) -> Section:
    """The figures as a `Section` for ``python -m benchmarks``."""
    results, notes = await measure(quick=quick)
    figures = [
        Figure(f"{name} {operation} ({stat})", value, "µs")
        for name, by_operation in results.items()
        for operation, pair in by_operation.items()
        for stat, value in zip(("median", "p99"), pair, strict=True)
    ]
    return Section("Store latency (µs per operation)", figures, notes)


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stores", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="50 runs per figure (a few seconds)")
    args = parser.parse_args()
    results, notes = trio.run(lambda: measure(quick=args.quick))
    print("Store latency, µs per operation (p50 = median)\n")
    print(table(results))
    for note in notes:
        print(f"  {note}")


if __name__ == "__main__":
    main()
