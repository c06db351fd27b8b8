"""Watch shoptoken keep three shops' tokens fresh against a fake Shopify.

Tokens here live 8 seconds (Shopify's live 60 minutes), so a refresh
happens every few seconds. The fake Shopify fails some requests on purpose;
the manager retries them and never hands out an expired token. No token is
ever printed.

    python examples/refresh_demo.py            # about 20 s of real time
    python examples/refresh_demo.py --quick    # the same hours under trio's mock clock
"""

from __future__ import annotations

import argparse
import logging
import random

import httpx
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    RefreshPolicy,
    ShopTokenError,
    TokenEvent,
    TokenKey,
    open_token_manager,
)
from shoptoken.testing import FakeShopify, trio_wall_clock

SHOPS = ("alpha-store", "beta-store", "gamma-store")
FAULT_RATE = 0.01  # of the app's calls, each queueing one fault at the token endpoint
FAULTS: tuple[int | Exception, ...] = (503, 429, httpx.ConnectError("connection reset"))


async def main(duration: float) -> int:
    """Run the demo for ``duration`` seconds (trio time); return the exit status."""
    clock = trio_wall_clock()
    shopify = FakeShopify(clock=clock, access_lifetime=8, latency=0.05)
    store = MemoryStore()
    keys = [TokenKey.offline(shop) for shop in SHOPS]
    for key in keys:
        await store.save_tokens(key, shopify.install(key.shop))

    def show(event: TokenEvent) -> None:
        if event.kind in (EventKind.REFRESH_SUCCEEDED, EventKind.REFRESH_FAILED):
            outcome = "refreshed" if event.kind is EventKind.REFRESH_SUCCEEDED else "failed"
            detail = event.error or f"new token expires {event.expires_at:%H:%M:%S}"
            print(f"t={trio.current_time():6.2f}s  {event.key.shop:32} {outcome:9} {detail}")

    # Short tokens need short lead times: refresh 3 s (+ up to 1 s) before expiry.
    # While a refresh fails, the still-valid token keeps being served.
    policy = RefreshPolicy(refresh_before=3, jitter=1, skew=1, retry_initial=0.2, retry_max=1)
    rng = random.Random(7)
    expired_served = calls = postponed = 0
    async with (
        shopify.oauth() as oauth,
        open_token_manager(oauth, store, policy=policy, clock=clock, hooks=[show]) as tokens,
    ):
        with trio.move_on_after(duration):
            while True:
                # The app: an API call for a random shop every 100 ms, with a
                # network fault injected into the token endpoint now and then.
                if rng.random() < FAULT_RATE:
                    shopify.fail_next(rng.choice(FAULTS))
                key = rng.choice(keys)
                await trio.sleep(0.1)
                try:
                    token = await tokens.valid_token(key)
                except ShopTokenError as exc:
                    # Only when the token expired AND its refresh just failed:
                    # an app postpones this call; the manager keeps retrying.
                    print(f"t={trio.current_time():6.2f}s  {key.shop:32} postponed {exc!s:.60}")
                    postponed += 1
                    continue
                calls += 1
                expired_served += not shopify.is_valid(key.shop, token.access_token)
        stats = tokens.statistics()
    print(
        f"\n{calls} API calls ({postponed} postponed), {stats.refreshes_succeeded} refreshes, "
        f"{stats.refreshes_failed} failed attempts retried, "
        f"{shopify.rejected} refresh tokens rejected, "
        f"{expired_served} calls with an expired token"
    )
    return 1 if expired_served or shopify.rejected else 0


def run() -> int:
    """Parse the command line and run the demo."""
    # The library never configures logging; this app shows errors only.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to run")
    parser.add_argument(
        "--quick", action="store_true", help="run an hour of token lifetimes under a mock clock"
    )
    args = parser.parse_args()
    if args.quick:
        return trio.run(main, 3600.0, clock=trio.testing.MockClock(autojump_threshold=0))
    return trio.run(main, args.duration)


if __name__ == "__main__":
    raise SystemExit(run())
