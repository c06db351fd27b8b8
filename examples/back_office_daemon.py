"""A merchant's own back-office daemon: client-credentials tokens, minted and kept valid.

An app of the developer's own organization, installed on the stores that
organization owns, gets its Admin API token with the client credentials
grant: client id and secret in, a token of about 24 hours out, no refresh
token. The daemon never installs or stores a token itself: the first
``valid_token`` of each ``TokenKey.client_credentials(shop)`` key mints one,
the manager mints the next a few minutes before expiry, and the store keeps
them across restarts. The fake Shopify fails a fifth of the token requests;
three days run under trio's mock clock in about a second, with a restart
half way. No token is ever printed.

    python examples/back_office_daemon.py              # 72 hours of 4 stores
    python examples/back_office_daemon.py --hours 24 --stores 10
"""

from __future__ import annotations

import argparse
import functools
import logging
from datetime import UTC, datetime

import attrs
import httpx
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    RefreshPolicy,
    ShopifyOAuth,
    ShopTokenError,
    TokenEvent,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.testing import FakeShopify, Fault, FaultPlan, trio_wall_clock

# -- Where a real daemon's settings go ---------------------------------------------------
# The app's credentials (Dev Dashboard > your app > Settings). A real daemon
# reads them from its environment or secret store.
CLIENT_ID = "example-back-office-client-id"
CLIENT_SECRET = "example-back-office-client-secret-not-real"
API_VERSION = "2026-10"
GRAPHQL_URL = "https://{shop}/admin/api/{version}/graphql.json"
# What a back office does: restock, reprice, report. Here: read the inventory.
INVENTORY_QUERY = "{ inventoryItems(first: 50) { nodes { id sku tracked } } }"
STORE_NAMES = ("acme-eu", "acme-us", "acme-uk", "acme-outlet")
EVERY = 600.0  # seconds between two runs of one store's job


@attrs.define
class Tally:
    """What the jobs did."""

    calls: int = 0
    failed: int = 0
    reauthorizations: int = 0

    def __call__(self, event: TokenEvent) -> None:
        """The manager's event hook: count the keys that would need the merchant."""
        self.reauthorizations += event.kind is EventKind.REAUTHORIZATION_REQUIRED


async def inventory_job(
    key: TokenKey, tokens: TokenManager, http: httpx.AsyncClient, tally: Tally, start_after: float
) -> None:
    """Read ``key``'s inventory every `EVERY` seconds, until cancelled."""
    auth = tokens.auth(key)  # X-Shopify-Access-Token from valid_token: minted on first use
    url = GRAPHQL_URL.format(shop=key.shop, version=API_VERSION)
    await trio.sleep(start_after)
    while True:
        try:
            response = await http.post(url, json={"query": INVENTORY_QUERY}, auth=auth)
            response.raise_for_status()
        except (ShopTokenError, httpx.HTTPError) as exc:
            tally.failed += 1  # a mint failed while no valid token was at hand; next run retries
            print(f"{key.shop}: job failed ({type(exc).__name__}); the next run retries")
        else:
            tally.calls += 1
        await trio.sleep(EVERY)


async def run_daemon(
    shopify: FakeShopify, keys: list[TokenKey], store: MemoryStore, hours: float, tally: Tally
) -> None:
    """Run the daemon's jobs for ``hours`` (trio time), its tokens kept in ``store``."""
    clock = shopify.clock
    # Shopify's timing: mint again 5 minutes before expiry (plus up to a
    # minute of per-store jitter); retry a failed grant with backoff,
    # honouring Retry-After; park a store's key after a day without use.
    policy = RefreshPolicy()
    async with (
        # One connection pool for grants and API calls. Against real Shopify:
        # httpx.AsyncClient(timeout=30), the same URLs over the network; here
        # the fake answers them in process.
        shopify.http_client(timeout=30) as http,
        ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http, clock=clock) as oauth,
        open_token_manager(oauth, store, policy=policy, clock=clock, hooks=[tally]) as tokens,
        trio.open_nursery() as nursery,
    ):
        for index, key in enumerate(keys):
            spread = 1 + EVERY * index / len(keys)  # not all stores at once
            nursery.start_soon(inventory_job, key, tokens, http, tally, spread)
        started = trio.current_time()
        hour = 0.0
        while hour < hours:
            hour = min(hour + 12, hours)
            await trio.sleep_until(started + hour * 3600)
            print(
                f"{wall(clock())}  {tally.calls:5} inventory reads, "
                f"{sum(shopify.mints.values()):2} tokens minted, "
                f"{sum(shopify.api_calls_rejected.values())} API calls rejected"
            )
        nursery.cancel_scope.cancel()  # this run's time is up (a deploy, say)


def wall(now: float) -> str:
    """``Day HH:MM`` of a wall-clock time."""
    return f"{datetime.fromtimestamp(now, UTC):%a %H:%M}"


async def main(hours: float, store_count: int) -> int:
    """Run the daemon for ``hours`` with a restart half way; report; return the exit status."""
    clock = trio_wall_clock()  # 2026-01-01 00:00 UTC, advancing with trio's clock
    shopify = FakeShopify(clock=clock, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    # A fifth of the token requests fail: 503, 429, a 520 after the grant was
    # made (its token is lost to us), dropped or reset connections.
    failures = (
        Fault.http(503),
        Fault.rate_limited(),
        Fault.http(520, processed=True),
        Fault.drop(),
        Fault.drop(reset=True),
    )
    shopify.faults = FaultPlan(rate=0.2, seed=5, choices=failures)
    names = [*STORE_NAMES, *(f"acme-{i:03}" for i in range(len(STORE_NAMES), store_count))]
    keys = [TokenKey.client_credentials(name) for name in names[:store_count]]
    # A real daemon keeps its tokens in a database that outlives it
    # (shoptoken.stores.SQLiteStore("tokens.db")); this one outlives both runs.
    store = MemoryStore()
    tally = Tally()
    print(
        f"back office of {len(keys)} stores for {hours:g} h; "
        "client credentials tokens live 24 h; nothing stored at start"
    )
    await run_daemon(shopify, keys, store, hours / 2, tally)
    before = sum(shopify.mints.values())
    stored = [await store.load_tokens(key) for key in keys]  # what the next run finds
    valid = sum(
        token is not None and shopify.is_valid(key.shop, token.access_token)
        for key, token in zip(keys, stored, strict=True)
    )
    print(f"restart: {valid} of {len(keys)} stored tokens still valid")
    await run_daemon(shopify, keys, store, hours / 2, tally)

    made = sum(shopify.api_calls.values())
    rejected = sum(shopify.api_calls_rejected.values())
    minted = sum(shopify.mints.values())
    per_store = sorted(shopify.mints.values())
    spread = (
        f"{per_store[0]}" if per_store[0] == per_store[-1] else f"{per_store[0]}-{per_store[-1]}"
    )
    print(
        f"\n{made} API calls made, {rejected} rejected; {tally.failed} jobs failed\n"
        f"{minted} tokens minted ({spread} per store, {minted - before} after the restart; "
        f"{shopify.grants_lost} lost in transit and minted again), "
        f"{tally.reauthorizations} re-authorizations"
    )
    return (
        1 if rejected or tally.reauthorizations else 0
    )  # a failed job (no token yet: its grant failed) runs again


def run() -> int:
    """Parse the command line and run the daemon under trio's mock clock."""
    # The library never configures logging; this daemon shows errors only.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hours", type=float, default=72.0, help="virtual hours to run")
    parser.add_argument("--stores", type=int, default=len(STORE_NAMES), help="number of stores")
    args = parser.parse_args()
    # A real daemon runs on the real clock: trio.run(main, ...) with no clock=
    # and tokens dated by time.time (open_token_manager's default).
    mock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(functools.partial(main, args.hours, args.stores), clock=mock)


if __name__ == "__main__":
    raise SystemExit(run())
