"""A trio daemon that syncs orders for many shops while their tokens rotate.

One worker task per shop, all in one nursery, calls the Admin API every few
minutes through ``tokens.auth(key)`` on a shared `httpx.AsyncClient`: the
header comes from ``valid_token``, so a worker never sees a token expire.
Shopify's tokens live 60 minutes here as in production, and the fake
Shopify fails a fifth of the token requests on purpose; the manager refreshes
each shop a few minutes before expiry and retries the failures. Hours of it
run under trio's mock clock in about a second. No token is ever printed.

    python examples/order_sync_daemon.py              # 4 hours of 8 shops
    python examples/order_sync_daemon.py --hours 24 --shops 50
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import signal
from datetime import UTC, datetime

import attrs
import httpx
import trio
import trio.testing

from shoptoken import (
    MemoryStore,
    ReauthorizationRequired,
    RefreshPolicy,
    ShopifyOAuth,
    ShopTokenError,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.testing import FakeShopify, Fault, FaultPlan, trio_wall_clock

# -- Where a real app's settings go ---------------------------------------------------
# The app's credentials (Partner Dashboard > your app > Client credentials). A
# real daemon reads them from its environment or secret store; the fake
# Shopify below is built to accept these placeholders.
CLIENT_ID = "example-app-client-id"
CLIENT_SECRET = "example-app-client-secret-not-a-real-one"
# The Admin API the workers call. These are Shopify's real URLs: the demo
# sends them to the fake through an in-process transport (see `shopify_http`).
API_VERSION = "2026-10"
GRAPHQL_URL = "https://{shop}/admin/api/{version}/graphql.json"
# A real sync pages through the orders updated since its last run.
ORDERS_QUERY = "{ orders(first: 50, sortKey: UPDATED_AT) { nodes { id name updatedAt } } }"
SHOP_NAMES = (
    "acme-outdoor",
    "bright-books",
    "cedar-coffee",
    "delta-denim",
    "ember-candles",
    "fjord-knits",
    "granite-gear",
    "harbor-tea",
)
SYNC_EVERY = 120.0  # seconds between two syncs of one shop


def shopify_http(shopify: FakeShopify) -> httpx.AsyncClient:
    """The HTTP client every Shopify request goes through.

    Against real Shopify this is ``httpx.AsyncClient(timeout=30)``: the same
    URLs, sent over the network. Here the fake answers them in process.
    """
    return shopify.http_client(timeout=30)


@attrs.define
class ShopSync:
    """What one shop's worker did."""

    syncs: int = 0
    failures: int = 0
    stopped: str | None = None


async def sync_shop(
    key: TokenKey,
    tokens: TokenManager,
    http: httpx.AsyncClient,
    report: ShopSync,
    *,
    start_after: float,
) -> None:
    """Sync ``key``'s orders every `SYNC_EVERY` seconds, until cancelled.

    A failed sync is tried again next round; only a shop that must
    re-authorize the app stops its worker (the others carry on).
    """
    auth = tokens.auth(key)  # X-Shopify-Access-Token from valid_token; a 401 refreshes once
    url = GRAPHQL_URL.format(shop=key.shop, version=API_VERSION)
    await trio.sleep(start_after)
    while True:
        try:
            response = await http.post(url, json={"query": ORDERS_QUERY}, auth=auth)
            response.raise_for_status()
        except ReauthorizationRequired:
            report.stopped = "the merchant must re-authorize the app"
            print(f"{key.shop}: {report.stopped}; its worker stops")
            return
        except (ShopTokenError, httpx.HTTPError) as exc:
            report.failures += 1  # refresh failed and token expired, or a network error
            print(f"{key.shop}: sync failed ({type(exc).__name__}); next round retries")
        else:
            report.syncs += 1
        await trio.sleep(SYNC_EVERY)


async def stop_on_signal(scope: trio.CancelScope) -> None:
    """Cancel ``scope`` (every worker) on SIGINT or SIGTERM: a clean stop, then the report."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def wall(clock_now: float) -> str:
    """``HH:MM`` of a wall-clock time."""
    return f"{datetime.fromtimestamp(clock_now, UTC):%H:%M}"


async def main(hours: float, shop_count: int) -> int:
    """Run the daemon for ``hours`` (trio time) and report; return the exit status."""
    clock = trio_wall_clock()  # 2026-01-01 00:00 UTC, advancing with trio's clock
    shopify = FakeShopify(clock=clock, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    # A fifth of the token requests fail: 503, 429, dropped or reset connections.
    failures = (Fault.http(503), Fault.rate_limited(), Fault.drop(), Fault.drop(reset=True))
    shopify.faults = FaultPlan(rate=0.2, seed=11, choices=failures)
    names = [*SHOP_NAMES, *(f"shop-{i:03}" for i in range(len(SHOP_NAMES), shop_count))]
    keys = [TokenKey.offline(name) for name in names[:shop_count]]
    reports = {key: ShopSync() for key in keys}
    print(f"syncing orders of {len(keys)} shops for {hours:g} h; tokens live 60 min")

    # A real daemon keeps tokens in a database (shoptoken.stores.SQLiteStore or
    # PostgresStore); they outlive the process there. Memory suits a demo.
    store = MemoryStore()
    # Shopify's timing (refresh 5 minutes before expiry, plus up to a minute
    # of per-shop jitter); while a refresh keeps failing, the old token is
    # served as long as it is still valid rather than failing the sync.
    policy = RefreshPolicy()
    async with (
        shopify_http(shopify) as http,  # one connection pool for tokens and API calls
        ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http, clock=clock) as oauth,
        open_token_manager(oauth, store, policy=policy, clock=clock) as tokens,
    ):
        for key in keys:
            # What the app's OAuth callback does when a merchant installs it.
            await tokens.put_token(key, shopify.install(key.shop))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal, nursery.cancel_scope)
            for index, key in enumerate(keys):
                spread = SYNC_EVERY * index / len(keys)  # not all shops at once
                worker = functools.partial(
                    sync_shop, key, tokens, http, reports[key], start_after=spread
                )
                nursery.start_soon(worker)
            started = trio.current_time()
            for hour in range(1, math.ceil(hours) + 1):
                await trio.sleep_until(started + min(hour, hours) * 3600)
                print(
                    f"{wall(clock())}  {sum(r.syncs for r in reports.values()):5} syncs, "
                    f"{sum(shopify.refreshes.values()):3} token rotations, "
                    f"{sum(shopify.api_calls_rejected.values())} API calls rejected"
                )
            nursery.cancel_scope.cancel()  # the demo's time is up
        stats = tokens.statistics()

    made = sum(shopify.api_calls.values())
    rejected = sum(shopify.api_calls_rejected.values())
    failed = sum(r.failures for r in reports.values())
    stopped = sum(r.stopped is not None for r in reports.values())
    fewest, most = (
        min(shopify.refreshes.values(), default=0),
        max(shopify.refreshes.values(), default=0),
    )
    per_shop = f"{fewest}" if fewest == most else f"{fewest} to {most}"
    print(
        f"\n{made} API calls made, {rejected} rejected; {failed} syncs failed, "
        f"{stopped} workers stopped\n"
        f"{stats.refreshes_succeeded} token rotations ({per_shop} per shop), "
        f"{stats.refreshes_failed} failed refresh attempts retried, "
        f"{shopify.rejected} refresh tokens rejected"
    )
    return 1 if rejected or failed or stopped or shopify.rejected else 0


def run() -> int:
    """Parse the command line and run the daemon under trio's mock clock."""
    # The library never configures logging; this app shows errors only.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hours", type=float, default=4.0, help="virtual hours to run")
    parser.add_argument("--shops", type=int, default=len(SHOP_NAMES), help="number of shops")
    args = parser.parse_args()
    # A real daemon runs on the real clock: trio.run(main, ...) with no clock=
    # and tokens dated by time.time (open_token_manager's default).
    mock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(main, args.hours, args.shops, clock=mock)


if __name__ == "__main__":
    raise SystemExit(run())
