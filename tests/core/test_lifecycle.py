"""The token lifecycle at its edges: lost answers, Retry-After, a wrong secret, re-auth, commits.

Each test pins one behaviour that once went wrong (issue 11); they run on a
FakeShopify in process, under trio's mock clock.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import pytest
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    ReauthorizationRequired,
    RefreshFailed,
    ShopifyOAuth,
    Token,
    TokenEvent,
    TokenKey,
)
from shoptoken.testing import FakeShopify, Fault

from .._managers import KEY, SHOP, Clock, installed, manager
from ..fakes import FlakyStore, PlainStore, at

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


# -- 1. a rotation whose answer was lost: the old access token is revoked --------------


@pytest.mark.parametrize(
    "lost",
    [
        Fault.drop(processed=True),
        Fault.drop(reset=True, processed=True),
        Fault.http(502, processed=True),
        Fault.http(504, processed=True),
        Fault.http(520, processed=True),
        Fault.raise_(httpx.ReadTimeout("timed out"), processed=True),
    ],
    ids=["closed", "reset", "502", "504", "520", "read-timeout"],
)
async def test_forced_refresh_with_a_lost_answer_never_serves_the_revoked_token(
    lost: Fault, endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """After a forced refresh whose answer was lost, the old token is never served again."""
    store = MemoryStore()
    old = await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        assert await tokens.valid_token(KEY) == old
        endpoint.fail_next(lost)
        with pytest.raises(RefreshFailed) as info:
            await tokens.refresh_token(KEY)
        assert info.value.outcome_unknown
        assert not endpoint.is_valid(SHOP, old.access_token)  # Shopify rotated: old is revoked
        assert tokens.statistics().keys_suspect == 1
        # Inside the prompt retry's backoff: no token, never the old one.
        with pytest.raises(RefreshFailed) as info:
            await tokens.valid_token(KEY)
        assert info.value.retry_after is not None
        assert 0 < info.value.retry_after <= 1.0
        await trio.sleep(1.0)  # the keeper retried with the old refresh token
        new = await tokens.valid_token(KEY)
        assert new != old
        assert endpoint.is_valid(SHOP, new.access_token)
        assert endpoint.recovered == 1  # the previous refresh token was accepted
        assert tokens.statistics().refreshes_outcome_unknown == 1
        assert tokens.statistics().keys_suspect == 0


async def test_scheduled_refresh_with_a_lost_answer_is_retried_promptly(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A scheduled rotation that lost its answer: callers wait, never get the revoked token."""
    store = MemoryStore()
    await installed(endpoint, store)
    served: list[bool] = []
    refused = 0
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        endpoint.fail_next(Fault.drop(processed=True), Fault.drop(processed=True))
        for _ in range(3600):  # a caller a second, across two lost rotations
            try:
                token = await tokens.valid_token(KEY)
            except RefreshFailed:
                refused += 1
            else:
                served.append(endpoint.is_valid(SHOP, token.access_token))
            await trio.sleep(1)
        assert tokens.statistics().refreshes_outcome_unknown == 2
    assert all(served), "a revoked token was served"
    assert endpoint.recovered >= 1
    assert refused <= 3  # only inside the prompt retries' short backoffs


@pytest.mark.parametrize("store_kind", ["plain", "locked"])
async def test_a_lost_answer_is_marked_in_the_store_for_the_next_process(
    store_kind: str, endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A process that exits right after a lost rotation leaves the pair marked expired.

    The next process (a restart, another node) loads it, refreshes it with
    the old refresh token (the recovery window) and never serves the
    revoked access token.
    """
    store = PlainStore() if store_kind == "plain" else MemoryStore()
    old = await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        endpoint.fail_next(Fault.drop(processed=True))
        with pytest.raises(RefreshFailed):
            await tokens.refresh_token(KEY)
    stored = await store.load_tokens(KEY)
    assert stored is not None
    assert stored.access_token == old.access_token
    assert stored.expires_at is not None
    assert stored.expires_at.timestamp() <= clock()  # marked: never served as is
    async with manager(endpoint, clock, store) as restarted:
        token = await restarted.valid_token(KEY)
        assert endpoint.is_valid(SHOP, token.access_token)
        assert endpoint.recovered == 1


async def test_a_definite_503_keeps_the_forced_token(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A forced refresh answered 503 did not rotate: the still-valid token is served again."""
    store = MemoryStore()
    old = await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        endpoint.fail_next(503)
        with pytest.raises(RefreshFailed) as info:
            await tokens.refresh_token(KEY)
        assert not info.value.outcome_unknown
        assert await tokens.valid_token(KEY) == old
        assert endpoint.is_valid(SHOP, old.access_token)


# -- 2. Retry-After holds for a hard-expired key ----------------------------------------


async def test_retry_after_holds_for_a_hard_expired_key(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """An expired idle shop, a caller a second, 429 Retry-After 60: one request in the window."""
    store = PlainStore()
    token = endpoint.install(SHOP)
    await store.save_tokens(KEY, attrs.evolve(token, expires_at=at(clock, -10)))
    endpoint.fail_next(Fault.rate_limited(60))
    async with manager(endpoint, clock, store) as tokens:
        refused: list[float | None] = []
        for _ in range(59):
            try:
                await tokens.valid_token(KEY)
            except RefreshFailed as exc:
                refused.append(exc.retry_after)
            await trio.sleep(1)
        assert endpoint.requests == 1
        assert len(refused) == 59
        assert refused[1] == pytest.approx(59.0)  # counted down, not reset
        await trio.sleep(2)
        fresh = await tokens.valid_token(KEY)
        assert endpoint.is_valid(SHOP, fresh.access_token)
        assert endpoint.requests == 2


# -- 3. a wrong client secret is the app's failure, not the shops' ---------------------


def wrong_secret(endpoint: FakeShopify, clock: Clock, **kwargs: Any) -> ShopifyOAuth:
    """The app's OAuth client with a client secret Shopify refuses."""
    return ShopifyOAuth(
        endpoint.client_id,
        "shpss_not-the-right-secret-at-all-0000",
        http=endpoint.http_client(),
        clock=clock,
        **kwargs,
    )


async def test_invalid_client_marks_no_shop_and_pauses_refreshing(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """401 invalid_client: RefreshFailed (not re-auth), no shop marked, one probe at a time."""
    store = MemoryStore()
    keys = [TokenKey.offline(f"shop-{i}") for i in range(5)]
    for key in keys:
        token = endpoint.install(key.shop)
        await store.save_tokens(key, attrs.evolve(token, expires_at=at(clock, -10)))
    events: list[TokenEvent] = []
    async with (
        wrong_secret(endpoint, clock) as oauth,
        manager(endpoint, clock, store, events=events, refresher=oauth, retry_jitter=0) as tokens,
    ):
        errors: list[RefreshFailed] = []

        async def call(key: TokenKey) -> None:
            try:
                await tokens.valid_token(key)
            except RefreshFailed as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(call, key)
        assert len(errors) == 5
        assert all(e.app_credentials_rejected and not e.transient for e in errors)
        assert tokens.statistics().keys_reauthorization_required == 0
        sent = endpoint.requests
        assert sent <= 5  # those already in flight when the first answer came
        await trio.sleep(600)  # ten minutes of keepers retrying: one probe at a time
        # One probe per pause: 1, 2, 4, ... 64, then 120 s (retry_max) apart.
        probes = endpoint.requests - sent
        assert probes == 10
        assert tokens.statistics().keys_reauthorization_required == 0
    kinds = [e.kind for e in events]
    assert EventKind.REAUTHORIZATION_REQUIRED not in kinds
    assert kinds.count(EventKind.APP_CREDENTIALS_REJECTED) == endpoint.requests
    # A refresh held back by the pause sends nothing, and says it did not start one.
    assert kinds.count(EventKind.REFRESH_STARTED) == endpoint.requests


@attrs.define
class SecretRotation:
    """A refresher that answers invalid_client until the app's secret is fixed."""

    inner: ShopifyOAuth
    rejections: int

    async def refresh(self, key: TokenKey, token: Token, *, clock: Clock | None = None) -> Token:
        """Refuse the first ``rejections`` requests as Shopify does a wrong secret."""
        await trio.lowlevel.checkpoint()
        if self.rejections:
            self.rejections -= 1
            raise RefreshFailed(
                "invalid_client", key=key, status=401, error="invalid_client", transient=False
            )
        return await self.inner.refresh(key, token, clock=clock)


async def test_refreshing_resumes_by_itself_once_a_probe_succeeds(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """After invalid_client the manager probes with backoff and resumes once a probe passes."""
    store = MemoryStore()
    await installed(endpoint, store)
    oauth = endpoint.oauth(clock=clock)
    fixing = SecretRotation(oauth, rejections=3)
    async with oauth, manager(endpoint, clock, store, refresher=fixing) as tokens:
        await tokens.valid_token(KEY)
        await trio.sleep(3600)  # its refresh time passed; three probes were refused
        token = await tokens.valid_token(KEY)
        assert endpoint.is_valid(SHOP, token.access_token)
        assert fixing.rejections == 0
        stats = tokens.statistics()
        assert stats.app_credentials_rejected == 3
        assert stats.keys_reauthorization_required == 0


async def test_old_client_secret_is_tried_on_invalid_client(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """With old_client_secret set, a grant refused invalid_client is sent again with it."""
    store = MemoryStore()
    await installed(endpoint, store)
    oauth = wrong_secret(endpoint, clock, old_client_secret=endpoint.client_secret)
    async with oauth, manager(endpoint, clock, store, refresher=oauth) as tokens:
        new = await tokens.refresh_token(KEY)
        assert endpoint.is_valid(SHOP, new.access_token)
        assert endpoint.requests == 2
        assert tokens.statistics().app_credentials_rejected == 0


# -- 4. a key marked for re-authorization re-reads the store -------------------------------


async def test_a_dead_key_finds_the_pair_another_process_stored(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A dead key re-reads the store at most every 30 s and serves a pair stored elsewhere."""
    store = FlakyStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        endpoint.expire_refresh_token(SHOP)
        await tokens.valid_token(KEY)
        with pytest.raises(ReauthorizationRequired):
            await tokens.refresh_token(KEY)
        reinstalled = await installed(endpoint, store)  # the web app's new install
        loads = store.loads
        with pytest.raises(ReauthorizationRequired):
            await tokens.valid_token(KEY)
        assert store.loads == loads  # inside 30 s: no store read
        await trio.sleep(30)
        assert await tokens.valid_token(KEY) == reinstalled
        assert store.loads == loads + 1
        assert tokens.statistics().keys_reauthorization_required == 0
        assert tokens.statistics().keys_active == 1


async def test_the_sweeper_rechecks_dead_keys(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Nobody asks for a dead key: the sweeper re-reads it and revives it with its keeper."""
    store = MemoryStore()
    await installed(endpoint, store)
    events: list[TokenEvent] = []
    async with manager(endpoint, clock, store, events=events) as tokens:
        endpoint.expire_refresh_token(SHOP)
        with pytest.raises(ReauthorizationRequired):
            await tokens.refresh_token(KEY)
        await installed(endpoint, store)
        await trio.sleep(3700)  # one sweep (hourly)
        assert tokens.statistics().keys_reauthorization_required == 0
        assert tokens.statistics().keys_active == 1
    assert EventKind.KEY_REAUTHORIZED in [e.kind for e in events]


# -- 5. commit before serve ---------------------------------------------------------------


@attrs.define(eq=False)
class SlowCommits(MemoryStore):
    """A MemoryStore whose locked saves commit (become visible) a second after the save."""

    committed: dict[TokenKey, Token] = attrs.field(factory=dict)

    @asynccontextmanager
    async def locked(self, key: TokenKey, *, timeout: float) -> AsyncIterator[Any]:  # noqa: ASYNC109 - the protocol's signature
        """Lock; a save inside is committed when the block exits, after a second."""
        async with MemoryStore.locked(self, key, timeout=timeout) as handle:
            yield handle
            await trio.sleep(1)  # the COMMIT
            token = await self.load_tokens(key)
            if token is not None:
                self.committed[key] = token


async def test_a_rotated_pair_is_served_only_after_its_commit(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """No caller gets the new pair before the store commits it, nor the revoked old one."""
    store = SlowCommits()
    old = await installed(endpoint, store)
    store.committed[KEY] = old
    served: list[tuple[Token, Token | None]] = []
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        for _ in range(4 * 3600):  # a caller every quarter second, across the rotation
            token = await tokens.valid_token(KEY)
            served.append((token, store.committed.get(KEY)))
            await trio.sleep(0.25)
    assert any(t != old for t, _ in served)  # it rotated
    for token, committed in served:
        assert token == committed, "served a pair before its commit"


# -- 6. a valid token is always served ------------------------------------------------------


async def test_auth_keeps_working_while_a_stale_tokens_refresh_fails(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A stale token whose refreshes get 503s still authenticates API calls through auth()."""
    store = MemoryStore()
    token = await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        endpoint.fail_next(*[503] * 8)
        await trio.sleep(3600 - 200)  # stale: 200 s left, its refreshes failing
        async with endpoint.http_client(auth=tokens.auth(KEY)) as shop:
            for _ in range(5):
                response = await shop.get(f"https://{SHOP}/admin/api/2025-10/shop.json")
                assert response.status_code == 200
                assert await tokens.valid_token(KEY) == token
                await trio.sleep(1)
        assert tokens.statistics().refreshes_failed >= 5
        assert tokens.statistics().stale_served >= 5


@attrs.define(eq=False)
class HangingStore(PlainStore):
    """A plain store whose loads hang while it is down."""

    hanging: bool = False

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load, or hang forever while down."""
        if self.hanging:
            await trio.sleep_forever()
        return await PlainStore.load_tokens(self, key)


async def test_a_down_store_does_not_stall_callers_of_a_valid_token(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """With the store hanging, a stale but valid token comes back at once; refresh retried."""
    store = HangingStore()
    token = await installed(endpoint, store)
    async with manager(endpoint, clock, store, store_timeout=30) as tokens:
        await tokens.valid_token(KEY)
        store.hanging = True  # the store goes down
        await trio.sleep(3600 - 300 - 60)  # the earliest refresh time (300 s lead, 60 s jitter)
        for _ in range(240):
            before = trio.current_time()
            assert await tokens.valid_token(KEY) == token
            assert trio.current_time() == before
            await trio.sleep(1)
        assert tokens.statistics().loads_failed >= 2  # re-reads cut at store_timeout, retried
        store.hanging = False
        await trio.sleep(120)
        fresh = await tokens.valid_token(KEY)
        assert fresh != token
        assert endpoint.is_valid(SHOP, fresh.access_token)


# -- 7. refresh_token counts as use ---------------------------------------------------------


async def test_refresh_token_counts_as_use(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A key touched only through refresh_token() stays active (does not park at once)."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.refresh_token(KEY)
        await trio.sleep(60)
        stats = tokens.statistics()
        assert stats.keys_parked == 0
        assert stats.keys_active == 1


# -- drain: calls already made with a token reach Shopify before its rotation -------------


@pytest.mark.parametrize(("drain", "revoked_in_flight"), [(0.0, True), (1.0, False)])
async def test_drain_lets_calls_in_flight_land_before_the_rotation(
    drain: float,
    revoked_in_flight: bool,
    endpoint: FakeShopify,
    clock: Clock,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """API calls take 0.9 s: without a drain one lands after the rotation revoked its token."""
    store = MemoryStore()
    await installed(endpoint, store)
    landed_revoked = 0
    async with manager(endpoint, clock, store, drain=drain) as tokens:

        async def api_call() -> None:
            nonlocal landed_revoked
            token = await tokens.valid_token(KEY)
            await trio.sleep(0.9)  # the request travels to Shopify
            landed_revoked += not endpoint.is_valid(SHOP, token.access_token)

        async with trio.open_nursery() as nursery:
            for _ in range(4000):  # a call every second, across the first rotation
                nursery.start_soon(api_call)
                await trio.sleep(1)
        assert tokens.statistics().refreshes_succeeded == 1
    assert bool(landed_revoked) is revoked_in_flight
