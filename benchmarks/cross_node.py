"""Cross-node: 4 and 16 worker processes sharing PostgreSQL, 1,000 shops, 10 rotations each.

Every node runs its own `TokenManager` on one PostgreSQL table and calls
``valid_token`` for all shops round-robin; a FakeShopify served on loopback
counts refresh requests. Targets: exactly one refresh request per shop per
rotation, zero refused refresh tokens; reported with the p50/p99 latency of
``valid_token`` during rotations, as the nodes measured it.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import attrs
import trio

from shoptoken.stores import open_store
from shoptoken.testing import FakeShopify, serve_loopback

from ._node import NodeResult, shop_keys
from ._report import Figure, Section

DSN = os.environ.get("SHOPTOKEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).parent.parent


async def _round(nodes: int, shops: int, rotations: int, lifetime: float) -> list[Figure]:
    import psycopg  # noqa: PLC0415 - the postgres extra

    schema = f"shoptoken_bench_{secrets.token_hex(4)}"
    refresh_before, jitter = lifetime * 0.4, lifetime * 0.1
    # Every shop rotates about every (lifetime - refresh_before - jitter/2).
    period = lifetime - refresh_before - jitter / 2
    duration = rotations * period
    conn = await trio.to_thread.run_sync(lambda: psycopg.connect(DSN, autocommit=True))
    conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        # Small pools: 16 nodes x 4 connections stay under PostgreSQL's 100.
        store_url = f"{DSN}?schema={schema}&max_connections=4"
        fake = FakeShopify(access_lifetime=lifetime)
        keys = shop_keys(shops, "bench-shop")
        env = dict(os.environ, SHOPTOKEN_CLIENT_ID=fake.client_id)
        env["SHOPTOKEN_CLIENT_SECRET"] = fake.client_secret
        results: list[NodeResult] = []
        async with serve_loopback(fake) as server, open_store(store_url) as store:
            await store.create_schema()
            # Time for every node to start and load its shops first (--warm).
            start_at = time.time() + 2.0 + nodes * shops * 0.0012
            # Steady state from the first second: first rotations spread evenly
            # over one period, as in a fleet installed over time (the fake's own
            # record of the access token's expiry does not matter here).
            for i, key in enumerate(keys):
                expires = start_at + refresh_before + jitter + period * i / shops
                token = fake.install(key.shop)
                moved = attrs.evolve(token, expires_at=datetime.fromtimestamp(expires, UTC))
                await store.save_tokens(key, moved)

            async def run() -> None:
                done = await trio.run_process(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks._node",
                        "--port",
                        str(server.port),
                        "--store",
                        store_url,
                        "--shops",
                        str(shops),
                        "--prefix",
                        "bench-shop",
                        "--duration",
                        str(duration),
                        "--start-at",
                        str(start_at),
                        "--refresh-before",
                        str(refresh_before),
                        "--jitter",
                        str(jitter),
                        "--skew",
                        str(lifetime * 0.05),
                        "--node-spread",
                        str(jitter),
                        "--warm",
                        "--pause",
                        "0.005",
                    ],
                    capture_stdout=True,
                    env=env,
                    cwd=ROOT,
                )
                results.append(json.loads(done.stdout.decode().strip().splitlines()[-1]))

            async with trio.open_nursery() as nursery:
                for _ in range(nodes):
                    nursery.start_soon(run)
        per_shop = [fake.statistics(key.shop) for key in keys]
    finally:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()
    rotated = sum(s.refreshes for s in per_shop)
    requests = rotated + sum(s.refreshes_rejected for s in per_shop)
    rejected = sum(s.refreshes_rejected for s in per_shop)
    replayed = sum(s.refreshes_recovered for s in per_shop)
    refused = rejected + replayed
    p50 = sorted(r["p50_us"] or 0.0 for r in results)
    p99 = sorted(r["p99_us"] or 0.0 for r in results)
    p999 = sorted(r["p999_us"] or 0.0 for r in results)
    worst = max(r["max_us"] or 0.0 for r in results)
    errors = sum(sum(r["errors"].values()) for r in results)
    calls = sum(r["calls"] for r in results)
    label = f"{nodes} nodes"
    return [
        Figure(f"{label}: rotations per shop (min)", min(s.refreshes for s in per_shop), ""),
        Figure(f"{label}: rotations per shop (max)", max(s.refreshes for s in per_shop), ""),
        Figure(
            f"{label}: refresh requests per rotation",
            requests / rotated,
            "",
            None,
            "== 1",
            requests == rotated,
        ),
        Figure(
            f"{label}: refresh tokens refused or replayed", refused, "", None, "== 0", refused == 0
        ),
        Figure(f"{label}: of which refused (invalid_grant)", rejected, ""),
        Figure(f"{label}: of which replayed (a lost answer, recovered)", replayed, ""),
        Figure(f"{label}: valid_token calls", calls, ""),
        Figure(f"{label}: valid_token errors", errors, "", None, "== 0", errors == 0),
        Figure(f"{label}: valid_token p50 (median node)", p50[len(p50) // 2], "us"),
        Figure(f"{label}: valid_token p99 (worst node)", p99[-1], "us"),
        Figure(f"{label}: valid_token p99.9 (worst node)", p999[-1], "us"),
        Figure(f"{label}: valid_token max (any node)", worst, "us"),
        Figure(f"{label}: refreshes per second", rotated / duration, "/s"),
        Figure(f"{label}: refreshes per second the schedule needs", shops / period, "/s"),
    ]


async def run(quick: bool) -> Section:
    """Run the 4- and 16-node rounds (small ones with ``quick``)."""
    # (nodes, shops, rotations, token lifetime in seconds)
    # Token lifetimes fit this 2-core machine: every node reads each new pair
    # once (in a thread, through psycopg), so 16 nodes need a slower pace.
    plan = (
        [(2, 20, 2, 3.0)]
        if quick
        else [(1, 1_000, 10, 20.0), (4, 1_000, 10, 20.0), (16, 1_000, 10, 60.0)]
    )
    figures: list[Figure] = []
    for nodes, shops, rotations, lifetime in plan:
        figures += await _round(nodes, shops, rotations, lifetime)
    _, shops_, rotations_, _ = plan[-1]
    lifetimes = ", ".join(f"{life:.0f} s ({n} node{'s' * (n > 1)})" for n, _, _, life in plan)
    return Section(
        "5. Cross-node: processes sharing PostgreSQL, against FakeShopify on loopback",
        figures,
        [
            (
                f"{shops_:,} shops, about {rotations_} rotations each; token lifetimes "
                f"{lifetimes}; node_spread = jitter; each node loads every shop first, "
                "then calls valid_token for every shop in turn, 5 ms apart."
            )
        ],
    )
