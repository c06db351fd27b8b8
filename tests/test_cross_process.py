"""Single flight across OS processes: N nodes share one store and one FakeShopify on loopback.

Real processes, a real SQLite file, the real PostgreSQL server and real
sockets, on the real clock: 4-second tokens, so each shop rotates several
times while four nodes call ``valid_token`` (and the Admin API through
``tokens.auth``) for the same shops.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import cast

import pytest
import trio
from benchmarks._node import NodeResult, shop_keys

from shoptoken.stores import open_store
from shoptoken.testing import FakeShopify, serve_loopback

from ._store_urls import store_url as temporary_store

ROOT = Path(__file__).parent.parent
NODES = 4
SHOPS = 6
DURATION = 7.0


async def run_node(
    port: int, store: str, start_at: float, env: dict[str, str], *extra: str
) -> NodeResult:
    """Run one ``benchmarks._node`` process against the loopback fake; its JSON result."""
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "benchmarks._node",
            "--port",
            str(port),
            "--store",
            store,
            "--shops",
            str(SHOPS),
            "--duration",
            str(DURATION),
            "--start-at",
            str(start_at),
            "--refresh-before",
            "1.5",
            "--jitter",
            "0.5",
            "--skew",
            "0.5",
            "--api",
            *extra,
        ],
        capture_stdout=True,
        capture_stderr=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return cast("NodeResult", json.loads(result.stdout.decode().strip().splitlines()[-1]))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_nodes_refresh_each_shop_once_per_rotation(tmp_path: Path, backend: str) -> None:
    """Four processes on one store: one refresh per shop per rotation, none refused, none lost."""
    async with temporary_store(backend, tmp_path, "shoptoken_xproc") as store_url:
        fake = FakeShopify(access_lifetime=4.0)
        keys = shop_keys(SHOPS)
        env = dict(os.environ, SHOPTOKEN_CLIENT_ID=fake.client_id)
        env["SHOPTOKEN_CLIENT_SECRET"] = fake.client_secret
        async with serve_loopback(fake) as server, open_store(store_url) as store:
            create = getattr(store, "create_schema", None)
            if create is not None:
                await create()
            for key in keys:
                await store.save_tokens(key, fake.install(key.shop))
            # Python start-up takes about a second; all nodes begin together after it.
            start_at = time.time() + 3.0
            results: list[NodeResult] = []

            async def run(i: int) -> None:
                results.append(await run_node(server.port, store_url, start_at, env))

            async with trio.open_nursery() as nursery:
                for i in range(NODES):
                    nursery.start_soon(run, i)
            stored = {key: await store.load_tokens(key) for key in keys}

    assert len(results) == NODES
    assert all(r["errors"] == {} for r in results), results
    # Each rotation was done by exactly one node: no refresh token was ever
    # presented twice (a second use is refused, or needs the recovery window).
    assert (fake.rejected, fake.recovered) == (0, 0)
    total = sum(fake.refreshes.values())
    assert total == sum(r["refreshes"] for r in results)
    for key in keys:
        # 10 s from install to the end, a refresh every 2-2.5 s.
        assert 3 <= fake.refreshes[key.shop] <= 5, fake.refreshes
        token = stored[key]
        assert token is not None
        # Nothing lost: the stored pair is the live one.
        assert fake.refresh_token_works(key.shop, token.refresh_token or "")
        assert fake.is_valid(key.shop, token.access_token)
    # Every Admin API call the app made succeeded (a node whose cached token
    # another node had rotated got a 401, refreshed-or-adopted, and retried).
    statuses = [status for r in results for status in r["api"]]
    assert set(statuses) == {"200"}, results
