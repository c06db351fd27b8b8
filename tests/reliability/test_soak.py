"""Fault soak: a fleet kept valid for days while 30 % of token requests fail.

Shops are installed over the first hour and used by an app that makes Admin
API calls through ``tokens.auth(key)`` at random; FakeShopify fails 30 % of
token requests with every transient fault it knows (5xx, 520 after the grant,
429 with ``Retry-After``, latency spikes, dropped and reset connections,
truncated and non-JSON bodies). At the end every shop must still be served
without re-authorization, and every stored refresh token must work.

Fast: ``pytest tests/reliability/test_soak.py`` (100 shops, 12 h).
Long: ``pytest tests/reliability/test_soak.py --long -s`` (1,000 shops, 48 h).
"""

from __future__ import annotations

import collections
import math
import random
import time

import attrs
import httpx
import pytest
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    RefreshFailed,
    RefreshPolicy,
    ShopifyOAuth,
    Token,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.testing import Fault, FaultKind, FaultPlan, trio_wall_clock

from . import Clock, EventTally, RecordingShopify, quiet_logs, report, seeded

API = "https://{shop}/admin/api/2025-01/shop.json"
SEED = 20260828


@attrs.define
class Figures:
    """What one soak measured."""

    shops: int
    hours: float
    token_requests: int = 0
    faults: collections.Counter[str] = attrs.field(factory=collections.Counter)
    refreshes: int = 0
    recovered: int = 0
    rejected: int = 0
    app_calls: int = 0
    served_invalid: int = 0
    api_calls: int = 0
    api_rejected: int = 0
    refused: int = 0
    hot_calls: int = 0
    hot_refused: int = 0
    forced: int = 0
    forced_refused: int = 0
    reauthorizations: int = 0
    retry_after_ignored: int = 0
    lost: int = 0
    behind: int = 0
    wall: float = 0.0


@attrs.define(eq=False)
class RetryAfterWatch:
    """An in-process transport to the fake that notes requests sent against ``Retry-After``."""

    fake: RecordingShopify
    until: dict[str, float] = attrs.field(factory=dict)
    ignored: int = 0
    requests: int = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Pass ``request`` to the fake; count token requests sent before a 429's delay."""
        shop = request.url.host
        token_request = request.url.path == "/admin/oauth/access_token"
        self.requests += token_request
        if token_request and trio.current_time() < self.until.get(shop, -math.inf):
            self.ignored += 1
        response = await self.fake.handle(request)
        if token_request and response.status_code == httpx.codes.TOO_MANY_REQUESTS:
            delay = float(response.headers["Retry-After"])
            self.until[shop] = trio.current_time() + delay
        return response


@attrs.define(eq=False)
class Soak:
    """One soak: the fleet, the app's traffic, and the figures they produce."""

    shops: int
    hours: float
    seed: int = SEED
    clock: Clock = attrs.field(factory=trio_wall_clock)
    fake: RecordingShopify = attrs.field(init=False)
    watch: RetryAfterWatch = attrs.field(init=False)
    store: MemoryStore = attrs.field(factory=MemoryStore)
    tally: EventTally = attrs.field(factory=EventTally)
    keys: list[TokenKey] = attrs.field(init=False)
    installed: list[TokenKey] = attrs.field(factory=list)
    ready: dict[TokenKey, trio.Event] = attrs.field(init=False)
    figures: Figures = attrs.field(init=False)
    #: App tasks making about two API calls per shop and hour between them.
    workers: int = 8

    def __attrs_post_init__(self) -> None:
        self.fake = RecordingShopify(clock=self.clock)
        self.watch = RetryAfterWatch(self.fake)
        self.keys = [TokenKey.offline(f"soak-{i:04d}") for i in range(self.shops)]
        self.ready = {key: trio.Event() for key in self.keys}
        self.figures = Figures(self.shops, self.hours)

    @property
    def end(self) -> float:
        """When the app stops (trio time)."""
        return self.hours * 3600.0

    async def run(self) -> Figures:
        """Run the soak and return its figures (asserting nothing)."""
        started = time.perf_counter()
        oauth = ShopifyOAuth(
            self.fake.client_id,
            self.fake.client_secret,
            http=httpx.AsyncClient(transport=httpx.MockTransport(self.watch.handle)),
            clock=self.clock,
        )
        self.fake.faults = FaultPlan(rate=0.3, seed=self.seed)
        with quiet_logs():
            async with (
                oauth,
                self.fake.http_client() as http,
                open_token_manager(
                    oauth,
                    self.store,
                    policy=RefreshPolicy(),
                    clock=self.clock,
                    hooks=[self.tally],
                    rng=random.Random(self.seed),  # the retry jitter: reproducible figures
                ) as tokens,
            ):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.install, tokens)
                    for worker in range(self.workers):
                        nursery.start_soon(self.app, tokens, http, worker)
                    for key in self.keys[: max(5, self.shops // 100)]:
                        nursery.start_soon(self.hot, tokens, key)
                    nursery.start_soon(self.force, tokens)
                for key in self.keys:
                    await self.serve_at_the_end(tokens, key)
                self.figures.reauthorizations = tokens.statistics().keys_reauthorization_required
        await self.count_pairs()
        self.count_requests()
        self.figures.wall = time.perf_counter() - started
        return self.figures

    async def install(self, tokens: TokenManager) -> None:
        """Install the shops at random moments of the first hour (OAuth callbacks)."""
        rng = seeded(self.seed)
        times = sorted((rng.uniform(0, 3600), key) for key in self.keys)
        for at, key in times:
            await trio.sleep_until(at)
            await tokens.put_token(key, self.fake.install(key.shop))
            self.installed.append(key)
            self.ready[key].set()

    async def app(self, tokens: TokenManager, http: httpx.AsyncClient, worker: int) -> None:
        """Random shops, random moments: half ``valid_token``, half API calls via ``auth()``."""
        rng = seeded(self.seed * 100 + worker)
        mean_gap = self.workers * 3600.0 / (2 * self.shops)
        while True:
            await trio.sleep(rng.expovariate(1 / mean_gap))
            if trio.current_time() >= self.end:
                return
            if not self.installed:
                continue
            key = rng.choice(self.installed)
            self.figures.app_calls += 1
            try:
                if rng.random() < 0.5:
                    self.check_served(key, await tokens.valid_token(key))
                else:
                    response = await http.get(API.format(shop=key.shop), auth=tokens.auth(key))
                    response.raise_for_status()
            except RefreshFailed:
                self.figures.refused += 1  # a refresh failed and no valid token was at hand

    async def hot(self, tokens: TokenManager, key: TokenKey) -> None:
        """A busy shop: a call every 10 s, so calls land inside refresh windows."""
        await self.ready[key].wait()
        while trio.current_time() < self.end:
            self.figures.hot_calls += 1
            try:
                self.check_served(key, await tokens.valid_token(key))
            except RefreshFailed:
                self.figures.hot_refused += 1
            await trio.sleep(10)

    async def force(self, tokens: TokenManager) -> None:
        """Forced refreshes at random (another node's 401, an operator): about 10 an hour.

        Each revokes the key's access token as it rotates; with lost answers
        in the fault mix, some rotations' outcomes are unknown.
        """
        rng = seeded(self.seed + 7)
        while True:
            await trio.sleep(rng.expovariate(10 / 3600))
            if trio.current_time() >= self.end:
                return
            if not self.installed:
                continue
            key = rng.choice(self.installed)
            self.figures.forced += 1
            try:
                self.check_served(key, await tokens.refresh_token(key))
            except RefreshFailed:
                self.figures.forced_refused += 1

    def check_served(self, key: TokenKey, token: Token) -> None:
        """Count ``token`` if Shopify would refuse it now.

        Called with no checkpoint after ``valid_token`` returned: it is what
        an API call sent at once would meet.
        """
        if not self.fake.is_valid(key.shop, token.access_token):
            self.figures.served_invalid += 1

    async def serve_at_the_end(self, tokens: TokenManager, key: TokenKey) -> None:
        """Serve ``key`` once more, retrying a failing refresh as an app would."""
        for _ in range(100):
            try:
                token = await tokens.valid_token(key)
            except RefreshFailed:
                await trio.sleep(1)
            else:
                self.check_served(key, token)
                return
        self.figures.refused += 1

    async def count_pairs(self) -> None:
        """Lost pairs (stored refresh token dead) and pairs behind Shopify's current one."""
        for key in self.keys:
            stored = await self.store.load_tokens(key)
            assert stored is not None
            assert stored.refresh_token is not None
            if not self.fake.refresh_token_works(key.shop, stored.refresh_token):
                self.figures.lost += 1
            elif stored.refresh_token != self.fake.current(key.shop):
                self.figures.behind += 1  # an answer lost at exit: recoverable, not lost

    def count_requests(self) -> None:
        """What Shopify saw: requests, faults by kind, refreshes, API calls."""
        figures, fake = self.figures, self.fake
        figures.token_requests = self.watch.requests
        for _, fault in fake.injected:
            name = str(fault.status) if fault.kind is FaultKind.STATUS else fault.kind.value
            name += "+reset" if fault.reset else ""
            name += "+processed" if fault.processed else ""
            figures.faults[name] += 1
        figures.refreshes = sum(fake.refreshes.values())
        figures.recovered = fake.recovered
        figures.rejected = fake.rejected
        figures.api_calls = sum(fake.api_calls.values())
        figures.api_rejected = sum(fake.api_calls_rejected.values())
        figures.reauthorizations += self.tally[EventKind.REAUTHORIZATION_REQUIRED]
        figures.retry_after_ignored = self.watch.ignored


def check(figures: Figures) -> None:
    """Print the figures and assert the soak's promises."""
    report(
        f"soak {figures.shops} shops x {figures.hours:g} h",
        token_requests=figures.token_requests,
        faults_injected=sum(figures.faults.values()),
        refreshes=figures.refreshes,
        recovered_by_window=figures.recovered,
        refresh_rejected=figures.rejected,
        app_calls=figures.app_calls,
        api_calls=figures.api_calls,
        api_calls_rejected=figures.api_rejected,
        served_invalid=figures.served_invalid,
        refused_refresh_failed=figures.refused,
        hot_calls=figures.hot_calls,
        hot_refused=figures.hot_refused,
        forced_refreshes=figures.forced,
        forced_refused=figures.forced_refused,
        reauthorizations=figures.reauthorizations,
        retry_after_ignored=figures.retry_after_ignored,
        pairs_lost=figures.lost,
        pairs_behind=figures.behind,
        wall_seconds=figures.wall,
    )
    report("soak faults", **dict(sorted(figures.faults.items())))
    assert figures.served_invalid == 0
    assert figures.api_rejected == 0
    assert figures.reauthorizations == 0
    assert figures.rejected == 0
    assert figures.lost == 0
    # Every expected rotation happened: about one per shop and 55 minutes.
    assert figures.refreshes >= figures.shops * (figures.hours - 1)
    assert figures.forced > 0


async def test_fault_soak_short(autojump_clock: trio.testing.MockClock) -> None:
    """100 shops, 12 h, 30 % token faults (lost answers too), forced refreshes: no bad token.

    No revoked or expired token is served or used in an API call, no shop
    needs re-authorization, nothing is lost.
    """
    check(await Soak(100, 12).run())


@pytest.mark.long
async def test_fault_soak_long(autojump_clock: trio.testing.MockClock) -> None:
    """1,000 shops for 48 hours under 30 % token faults (``--long``)."""
    check(await Soak(1000, 48).run())


async def test_callers_of_a_stale_key_honour_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While Shopify answers 429 with Retry-After: 60, a caller a second sends no refresh."""
    clock = trio_wall_clock()
    fake = RecordingShopify(clock=clock)
    key = TokenKey.offline("rate-limited")
    store = MemoryStore()
    await store.save_tokens(key, fake.install(key.shop))
    fake.fail_next(*[Fault.rate_limited(60.0)] * 100)
    oauth = fake.oauth(clock=clock)
    refused = 0
    with quiet_logs():
        async with oauth, open_token_manager(oauth, store, clock=clock) as tokens:
            await tokens.valid_token(key)
            await trio.sleep(3300)  # stale since 3240-3300 s: the refresher met a 429
            before = fake.requests
            for _ in range(60):
                try:
                    await tokens.valid_token(key)
                except RefreshFailed:
                    refused += 1
                await trio.sleep(1)
            sent = fake.requests - before
    report("callers of a rate-limited stale key (60 s, 1 call/s)", requests=sent, refused=refused)
    # The refresher's own retry, due within the minute, at most.
    assert sent <= 1


async def test_a_lost_answer_never_serves_a_token_shopify_already_revoked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A refresh whose answer was lost (520 after the grant) never serves the revoked token.

    Shopify performed the refresh and so revoked the old access token, but
    the answer never arrived. The old token is suspect from then on: callers
    get `RefreshFailed` (never the revoked token) while the retries meet
    503s, and once the recovery window's retry lands, the new pair.
    """
    clock = trio_wall_clock()
    fake = RecordingShopify(clock=clock)
    key = TokenKey.offline("stale-served")
    store = MemoryStore()
    await store.save_tokens(key, fake.install(key.shop))
    oauth = fake.oauth(clock=clock)
    served_revoked = refused = 0
    with quiet_logs():
        async with (
            oauth,
            open_token_manager(oauth, store, policy=RefreshPolicy(), clock=clock) as tokens,
        ):
            await tokens.valid_token(key)
            fake.fail_next(Fault.http(520, processed=True), *[503] * 5)
            for _ in range(3600):  # a caller a second, across the lost rotation
                try:
                    token = await tokens.valid_token(key)
                except RefreshFailed:
                    refused += 1
                else:
                    served_revoked += not fake.is_valid(key.shop, token.access_token)
                await trio.sleep(1)
            stats = tokens.statistics()
    report(
        "a lost answer, then 503s",
        served_revoked=served_revoked,
        refused=refused,
        outcome_unknown=stats.refreshes_outcome_unknown,
        recovered=fake.recovered,
    )
    assert served_revoked == 0
    assert stats.refreshes_outcome_unknown == 1
    assert fake.recovered == 1
    assert refused > 0  # no valid token while the retries met 503s
