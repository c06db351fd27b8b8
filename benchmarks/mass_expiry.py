"""Mass expiry: 10,000 shops installed in the same second, simulated under the mock clock.

One-hour tokens, 200 ms refresh latency, at most 16 refreshes at once. An
app calls ``valid_token`` for random shops throughout and checks each token
with the fake Shopify. Reports the spread of refresh start times, the peak
of concurrent refresh requests and the tokens served expired (target 0).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import attrs
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    RefreshPolicy,
    TokenEvent,
    TokenKey,
    open_token_manager,
)
from shoptoken.testing import FakeShopify, trio_wall_clock

from ._report import Figure, Section

if TYPE_CHECKING:
    import httpx


@attrs.define(eq=False)
class _PeakShopify(FakeShopify):
    """Counts the refresh requests being served at once."""

    in_flight: int = 0
    peak: int = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super().handle(request)
        finally:
            self.in_flight -= 1


async def _simulate(shops: int) -> Section:
    clock = trio_wall_clock()
    shopify = _PeakShopify(clock=clock, latency=0.2)
    store = MemoryStore()
    keys = [TokenKey.offline(f"shop-{i:05d}") for i in range(shops)]
    for key in keys:
        await store.save_tokens(key, shopify.install(key.shop))
    starts: list[float] = []

    def on_event(event: TokenEvent) -> None:
        if event.kind is EventKind.REFRESH_STARTED:
            starts.append(clock())

    rng = random.Random(1)
    served = expired = 0
    policy = RefreshPolicy(max_concurrent_refreshes=16)
    async with (
        shopify.oauth() as oauth,
        open_token_manager(oauth, store, policy=policy, clock=clock, hooks=[on_event]) as tokens,
    ):
        for key in keys:
            await tokens.valid_token(key)
        installed_at = clock()
        # The app: 20 calls per simulated second for 70 minutes.
        for _ in range(70 * 60):
            for key in rng.sample(keys, 20):
                token = await tokens.valid_token(key)
                served += 1
                expired += not shopify.is_valid(key.shop, token.access_token)
            await trio.sleep(1)
    first = sorted(t - installed_at for t in starts)[:shops]
    return Section(
        f"4. Mass expiry: {shops:,} shops installed together (mock clock)",
        [
            Figure("first refresh, earliest", first[0], "s after install"),
            Figure("first refresh, latest", first[-1], "s after install"),
            Figure("spread of first refreshes", first[-1] - first[0], "s"),
            Figure(
                "peak concurrent refresh requests",
                shopify.peak,
                "",
                None,
                "<= 16",
                shopify.peak <= 16,
            ),
            Figure("refreshes", sum(shopify.refreshes.values()), ""),
            Figure("tokens served", served, ""),
            Figure("tokens served expired", expired, "", None, "== 0", expired == 0),
            Figure(
                "refresh tokens rejected", shopify.rejected, "", None, "== 0", shopify.rejected == 0
            ),
        ],
        ["Tokens expire 3600 s after install; refreshes are due 300 s + 0..60 s jitter before."],
    )


async def run(quick: bool) -> Section:
    """Run the simulation on its own mock clock."""
    shops = 1_000 if quick else 10_000
    # A fresh trio run with an autojumping clock: the whole simulation takes
    # seconds of real time.
    return await trio.to_thread.run_sync(
        lambda: trio.run(_simulate, shops, clock=trio.testing.MockClock(autojump_threshold=0))
    )
