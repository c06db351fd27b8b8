"""One manager node, as a separate OS process: the cross-process test's and benchmark's worker.

    python -m benchmarks._node --port PORT --store URL --shops N --duration S [...]

Opens the store, runs a `TokenManager` whose `ShopifyOAuth` reaches a
FakeShopify served on loopback (``--port``), and until the duration is up
calls ``valid_token`` for its shops round-robin, making an Admin API call
with ``tokens.auth(key)`` after each (``--api``). With ``--client-credentials``
the keys are client-credentials keys, minted (the first one too) by the nodes. Prints one JSON line:
calls, errors, valid_token latency percentiles (µs) and API outcomes. The
fake's credentials come from SHOPTOKEN_CLIENT_ID / SHOPTOKEN_CLIENT_SECRET.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from typing import TypedDict

import httpx
import trio

from shoptoken import RefreshPolicy, ShopifyOAuth, ShopTokenError, TokenKey, open_token_manager
from shoptoken.stores import open_store
from shoptoken.testing import LoopbackTransport

from ._report import percentile


class NodeResult(TypedDict):
    """What one node reports (its JSON line)."""

    calls: int
    errors: dict[str, int]
    p50_us: float | None
    p99_us: float | None
    p999_us: float | None
    max_us: float | None
    api: dict[str, int]
    refreshes: int
    adopted: int


def shop_keys(
    count: int, prefix: str = "node-shop", *, client_credentials: bool = False
) -> list[TokenKey]:
    """The keys every node and the parent agree on (offline, or client-credentials keys)."""
    make = TokenKey.client_credentials if client_credentials else TokenKey.offline
    return [make(f"{prefix}-{i:05d}") for i in range(count)]


async def node(args: argparse.Namespace) -> NodeResult:
    """Run one node until ``args.duration`` is up; return its figures."""
    keys = shop_keys(args.shops, args.prefix, client_credentials=args.client_credentials)
    policy = RefreshPolicy(
        refresh_before=args.refresh_before,
        jitter=args.jitter,
        skew=args.skew,
        retry_initial=0.05,
        retry_max=0.5,
        lock_timeout=args.lock_timeout,
        node_spread=args.node_spread,
    )
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    api: Counter[int] = Counter()
    http = httpx.AsyncClient(transport=LoopbackTransport(args.port), timeout=10)
    oauth = ShopifyOAuth(
        os.environ["SHOPTOKEN_CLIENT_ID"], os.environ["SHOPTOKEN_CLIENT_SECRET"], http=http
    )
    async with (
        open_store(args.store) as store,
        oauth,
        open_token_manager(oauth, store, policy=policy) as tokens,
        httpx.AsyncClient(transport=LoopbackTransport(args.port), timeout=10) as shop_api,
    ):
        if args.warm:
            # Every shop active (loaded, its refresher running) before the clock starts.
            for key in keys:
                await tokens.valid_token(key)
        # Start together: the parent gives every node the same wall time.
        await trio.sleep(max(0.0, args.start_at - time.time()))
        deadline = trio.current_time() + args.duration
        calls = 0
        while trio.current_time() < deadline:
            key = keys[calls % len(keys)]
            calls += 1
            start = time.perf_counter_ns()
            try:
                await tokens.valid_token(key)
            except ShopTokenError as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append((time.perf_counter_ns() - start) / 1000)
            if args.api:
                response = await shop_api.get(
                    f"https://{key.shop}/admin/api/2026-10/shop.json", auth=tokens.auth(key)
                )
                api[response.status_code] += 1
            await trio.sleep(args.pause)
    # Read after the manager's exit, which lets a refresh in flight finish.
    stats = tokens.statistics()
    await http.aclose()
    return {
        "calls": calls,
        "errors": dict(errors),
        "p50_us": percentile(latencies, 50) if latencies else None,
        "p99_us": percentile(latencies, 99) if latencies else None,
        "p999_us": percentile(latencies, 99.9) if latencies else None,
        "max_us": max(latencies) if latencies else None,
        "api": {str(status): n for status, n in api.items()},
        "refreshes": stats.refreshes_succeeded,
        "adopted": stats.refreshes_adopted,
    }


def main() -> None:
    """Parse arguments, run the node, print its JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._node")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--shops", type=int, required=True)
    parser.add_argument("--prefix", default="node-shop")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--refresh-before", type=float, default=2.0)
    parser.add_argument("--jitter", type=float, default=1.0)
    parser.add_argument("--skew", type=float, default=0.5)
    parser.add_argument("--lock-timeout", type=float, default=10.0)
    parser.add_argument("--node-spread", type=float, default=0.0)
    parser.add_argument("--warm", action="store_true", help="activate every shop before starting")
    parser.add_argument("--pause", type=float, default=0.01)
    parser.add_argument("--api", action="store_true")
    parser.add_argument(
        "--client-credentials", action="store_true", help="client-credentials keys (minted)"
    )
    args = parser.parse_args()
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    print(json.dumps(trio.run(node, args)), flush=True)


if __name__ == "__main__":
    main()
