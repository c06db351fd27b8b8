"""Client-credentials keys minted across OS processes: one mint per expiry (SQLite, PostgreSQL).

Four real processes share one store (a real SQLite file, or a schema on the
real PostgreSQL server) and one FakeShopify on loopback, on the real clock
with 4-second tokens. Nothing is stored at the start: the nodes race for
each shop's first token, then for every re-mint. The fake ends a shop's
previous client credentials token at each new grant, so a second mint for
the same expiry would revoke a token another node is serving.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import trio
from benchmarks._node import NodeResult, shop_keys

from shoptoken.stores import open_store
from shoptoken.testing import FakeShopify, serve_loopback

from ._store_urls import store_url as temporary_store
from .test_cross_process import run_node

NODES = 4
SHOPS = 6
DURATION = 7.0
LIFETIME = 4.0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_nodes_mint_each_shop_once_per_expiry(tmp_path: Path, backend: str) -> None:
    """Four processes, nothing stored: one first mint per shop, then one mint per expiry."""
    async with temporary_store(backend, tmp_path, "shoptoken_ccproc") as store_url:
        fake = FakeShopify(client_credentials_lifetime=LIFETIME)
        keys = shop_keys(SHOPS, client_credentials=True)
        env = dict(os.environ, SHOPTOKEN_CLIENT_ID=fake.client_id)
        env["SHOPTOKEN_CLIENT_SECRET"] = fake.client_secret
        async with serve_loopback(fake) as server, open_store(store_url) as store:
            create = getattr(store, "create_schema", None)
            if create is not None:
                await create()
            start_at = time.time() + 3.0  # every node starts together, after Python's start-up
            results: list[NodeResult] = []

            async def run() -> None:
                node = await run_node(server.port, store_url, start_at, env, "--client-credentials")
                results.append(node)

            async with trio.open_nursery() as nursery:
                for _ in range(NODES):
                    nursery.start_soon(run)
            stored = {key: await store.load_tokens(key) for key in keys}

    assert len(results) == NODES
    assert all(r["errors"] == {} for r in results), results
    mints = fake.mints
    # Every grant was made (and counted) by exactly one node, none refused.
    assert sum(mints.values()) == sum(r["refreshes"] for r in results)
    assert fake.grants_lost == 0
    for key in keys:
        # 7 s of calls (a node slow to start runs a little later) and 4 s
        # tokens minted again 2-2.5 s into their life: the first mint and 2-4
        # re-mints. Four nodes minting alike would make four times as many.
        assert 3 <= mints[key.shop] <= 5, mints
        assert fake.statistics(key.shop).mints_rejected == 0
        token = stored[key]
        assert token is not None
        assert token.refresh_token is None
        assert fake.is_valid(key.shop, token.access_token)  # the stored token is the live one
    # Every Admin API call succeeded: no node served a token another node's mint had ended.
    statuses = [status for r in results for status in r["api"]]
    assert set(statuses) == {"200"}, results
