"""Client-credentials keys: minted by the manager, re-minted before expiry, never re-authorized."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    NoToken,
    ReauthorizationRequired,
    RefreshFailed,
    ShopifyOAuth,
    ShopTokenError,
    Token,
    TokenEvent,
    TokenKey,
    TokenKind,
)
from shoptoken.testing import FakeShopify, Fault, serve_loopback

from ._logs import captured_events
from ._managers import Clock, manager
from .fakes import FlakyStore, PlainStore

KEY = TokenKey.client_credentials("my-store")
SHOP = KEY.shop
DAY = 86399.0


def test_a_client_credentials_key_round_trips_through_its_text() -> None:
    """``client_credentials:SHOP`` is a stable id: parsed back, shop-wide, mintable."""
    assert str(KEY) == "client_credentials:my-store.myshopify.com"
    assert TokenKey.parse(str(KEY)) == KEY
    assert KEY.kind is TokenKind.CLIENT_CREDENTIALS
    assert KEY.subject is None
    assert KEY.mintable
    assert not TokenKey.offline("my-store").mintable
    with pytest.raises(ValueError, match="takes no subject"):
        TokenKey(SHOP, TokenKind.CLIENT_CREDENTIALS, "42")


async def test_mint_sends_the_grant_and_dates_the_token(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """`ShopifyOAuth.mint`: a ~24 h token without refresh token, valid at the fake."""
    async with endpoint.oauth(clock=clock) as oauth:
        token = await oauth.mint(KEY)
        again = await oauth.refresh(KEY, token)  # a refresh of such a key mints again
        with pytest.raises(ValueError, match="client_credentials"):
            await oauth.mint(TokenKey.offline("my-store"))
    assert token.refresh_token is None
    assert token.expires_at is not None
    assert token.expires_at.timestamp() == clock() + DAY
    # The strict reading: a new grant ends the previous token.
    assert endpoint.is_valid(SHOP, again.access_token)
    assert not endpoint.is_valid(SHOP, token.access_token)
    assert endpoint.mints == {SHOP: 2}


async def test_a_wrong_client_secret_is_refused_as_the_apps_failure(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """401 ``invalid_client``: not transient, the app's credentials, no secret in the message."""
    wrong = "shpss_wrong0secret0of0the0app000000000"
    async with ShopifyOAuth(
        endpoint.client_id, wrong, http=endpoint.http_client(), clock=clock
    ) as oauth:
        with pytest.raises(RefreshFailed) as info:
            await oauth.mint(KEY)
    assert info.value.app_credentials_rejected
    assert not info.value.transient
    assert wrong not in str(info.value)
    assert endpoint.mints == {}


async def test_the_first_valid_token_mints_without_put_token(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Nothing stored: the first use mints once for 50 callers, each served a saved token."""
    store = PlainStore()
    results: list[Token] = []
    saved_when_served: list[bool] = []
    async with manager(endpoint, clock, store) as tokens:
        with pytest.raises(NoToken):
            await tokens.fetch_token(KEY)  # nothing minted yet: fetch_token never mints

        async def call() -> None:
            token = await tokens.valid_token(KEY)
            # No checkpoint since valid_token returned: what the store held then.
            saved_when_served.append(store.tokens.get(KEY) == token)
            results.append(token)

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(call)
        stats = tokens.statistics()
    assert endpoint.mints == {SHOP: 1}
    assert len({token.access_token for token in results}) == 1
    assert saved_when_served == [True] * 50
    assert endpoint.is_valid(SHOP, results[0].access_token)
    assert stats.refreshes_succeeded == 1


async def test_re_minted_a_set_time_before_expiry_and_never_reauthorized(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Proactive re-mint at ``expires_at - refresh_before`` (no jitter), day after day."""
    events: list[TokenEvent] = []
    start = clock()
    async with manager(
        endpoint, clock, events=events, refresh_before=600.0, jitter=0.0, idle_after=10 * DAY
    ) as tokens:
        first = await tokens.valid_token(KEY)
        await trio.sleep(DAY - 600.0 - 1)
        assert await tokens.valid_token(KEY) == first  # still fresh
        await trio.sleep(2)
        second = await tokens.valid_token(KEY)  # the keeper re-minted at its time
        await trio.sleep(3 * DAY)
        last = await tokens.valid_token(KEY)
    minted = [e for e in events if e.kind is EventKind.REFRESH_SUCCEEDED]
    assert second != first
    assert endpoint.mints == {SHOP: 5}
    assert [e.expires_at.timestamp() - DAY for e in minted if e.expires_at] == [
        start + n * (DAY - 600.0) for n in range(5)
    ]
    assert endpoint.is_valid(SHOP, last.access_token)
    assert not any(e.kind is EventKind.REAUTHORIZATION_REQUIRED for e in events)


async def test_a_stored_expired_token_is_minted_again_not_reauthorized(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A token loaded hard-expired (the daemon was down for days) is replaced by a mint."""
    store = MemoryStore()
    async with endpoint.oauth(clock=clock) as oauth:
        await store.save_tokens(KEY, await oauth.mint(KEY))
    await trio.sleep(3 * DAY)
    async with manager(endpoint, clock, store) as tokens:
        token = await tokens.valid_token(KEY)
    assert endpoint.is_valid(SHOP, token.access_token)
    assert await store.load_tokens(KEY) == token


async def test_a_lost_answer_never_serves_the_old_token(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A mint whose answer is lost (520 after the grant): the old token is withheld, minted anew."""
    async with manager(endpoint, clock, jitter=0.0, retry_initial=5.0, retry_jitter=0.0) as tokens:
        first = await tokens.valid_token(KEY)
        endpoint.fail_next(Fault.http(520, processed=True))
        await trio.sleep(first.expires_at.timestamp() - clock() - 299.0)  # type: ignore[union-attr]
        # The keeper's mint was lost: the first token may be revoked (it is, at the fake).
        assert not endpoint.is_valid(SHOP, first.access_token)
        with pytest.raises(RefreshFailed) as info:  # never the old token; the retry is due in 5 s
            await tokens.valid_token(KEY)
        await trio.sleep(5.0)
        token = await tokens.valid_token(KEY)
        stats = tokens.statistics()
    assert info.value.retry_after == pytest.approx(4.0)
    assert token != first
    assert endpoint.is_valid(SHOP, token.access_token)
    assert endpoint.mints == {SHOP: 3}
    assert stats.refreshes_outcome_unknown == 1


async def test_retry_after_and_backoff_bound_the_mints(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A first mint answered 429 Retry-After: callers get ``retry_after``; no request before it."""
    endpoint.fail_next(Fault.rate_limited(30.0))
    async with manager(endpoint, clock, retry_jitter=0.0) as tokens:
        with pytest.raises(RefreshFailed) as info:
            await tokens.valid_token(KEY)
        with pytest.raises(RefreshFailed) as again:
            await tokens.valid_token(KEY)
        assert again.value.retry_after == pytest.approx(30.0)
        assert endpoint.requests == 1
        await trio.sleep(30.0)
        token = await tokens.valid_token(KEY)
    assert info.value.retry_after == pytest.approx(30.0)
    assert endpoint.requests == 2
    assert endpoint.is_valid(SHOP, token.access_token)


async def test_a_failed_first_mint_is_retried_by_the_keeper(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Supervision: the first mint failed (503); the keeper retries it, no caller needed."""
    endpoint.fail_next(503)
    async with manager(endpoint, clock, retry_initial=10.0, retry_jitter=0.0) as tokens:
        with pytest.raises(RefreshFailed):
            await tokens.valid_token(KEY)
        await trio.sleep(11.0)
        assert endpoint.mints == {SHOP: 1}  # minted by the keeper at the end of the backoff
        requests = endpoint.requests
        token = await tokens.valid_token(KEY)
        assert endpoint.requests == requests  # served from memory
        assert tokens.statistics().keys_active == 1
    assert endpoint.is_valid(SHOP, token.access_token)


async def test_invalid_client_pauses_every_mint_of_the_app(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A revoked client secret: one 401 ``invalid_client`` pauses all keys; none is marked dead."""
    keys = [TokenKey.client_credentials(f"shop-{i}") for i in range(3)]
    events: list[TokenEvent] = []
    async with manager(endpoint, clock, events=events, retry_initial=10.0) as tokens:
        endpoint.rotate_client_secret()
        endpoint.revoke_old_client_secret()  # the app still sends the old one
        failures = []
        for key in keys:
            with pytest.raises(RefreshFailed) as info:
                await tokens.valid_token(key)
            failures.append(info.value)
        stats = tokens.statistics()
    assert failures[0].app_credentials_rejected
    assert all(not f.transient for f in failures)
    assert endpoint.statistics(keys[0].shop).clients_rejected == 1
    assert sum(endpoint.statistics(k.shop).clients_rejected for k in keys) == 1  # one probe
    assert stats.app_credentials_rejected == 1
    assert stats.keys_reauthorization_required == 0
    assert not any(e.kind is EventKind.REAUTHORIZATION_REQUIRED for e in events)


async def test_an_idle_key_parks_and_its_next_use_mints(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Parked: no task and nothing for the sweeper; the next use after expiry mints once."""
    async with manager(endpoint, clock, idle_after=3600.0, sweep_interval=600.0) as tokens:
        first = await tokens.valid_token(KEY)
        await trio.sleep(2 * 3600.0)
        assert tokens.statistics().keys_parked == 1
        await trio.sleep(2 * DAY)
        assert endpoint.mints == {SHOP: 1}  # parked: nobody re-minted it
        token = await tokens.valid_token(KEY)
        stats = tokens.statistics()
    assert token != first
    assert endpoint.mints == {SHOP: 2}
    assert stats.keys_active == 1


async def test_an_uninstalled_shop_is_reauthorization_required(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Not expiry but an uninstall (401): the key stays dead, with no new grant, until forgotten."""
    endpoint.revoke(SHOP)
    async with manager(endpoint, clock) as tokens:
        with pytest.raises(ReauthorizationRequired):
            await tokens.valid_token(KEY)
        await trio.sleep(31.0)  # past the recheck interval: the store still holds nothing
        with pytest.raises(ReauthorizationRequired):
            await tokens.valid_token(KEY)
        assert endpoint.statistics(SHOP).mints_rejected == 1
        endpoint.install(SHOP)  # the app is installed on the store again
        await tokens.forget(KEY)
        token = await tokens.valid_token(KEY)
    assert endpoint.is_valid(SHOP, token.access_token)
    assert endpoint.mints == {SHOP: 1}


async def test_refresh_token_of_a_vacant_key_mints(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """`refresh_token` on a key with nothing stored mints its first token."""
    async with manager(endpoint, clock) as tokens:
        token = await tokens.refresh_token(KEY)
        forced = await tokens.refresh_token(KEY)
        assert await tokens.valid_token(KEY) == forced
    assert token != forced
    assert endpoint.is_valid(SHOP, forced.access_token)
    assert endpoint.mints == {SHOP: 2}
    assert math.isfinite(forced.expires_at.timestamp())  # type: ignore[union-attr]


async def test_no_minted_token_or_client_secret_leaks(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Three days of mints with lost answers, failed saves and a wrong secret: no secret in text."""
    keys = [TokenKey.client_credentials(f"leak-{i}") for i in range(3)]
    store = FlakyStore()
    texts: list[str] = []
    events: list[TokenEvent] = []
    with captured_events() as logs:
        async with manager(endpoint, clock, store, events=events) as tokens:
            for hour in range(3 * 24):
                if hour % 24 in (0, 23):  # the first mints, and the re-mints ~6 minutes before 24 h
                    endpoint.fail_next(Fault.http(520, processed=True), 500, 429)
                    store.fail_saves = 1  # its message quotes the token it failed to write
                for key in keys:
                    try:
                        token = await tokens.valid_token(key)
                        texts += [repr(token), str(token)]
                    except ShopTokenError as exc:
                        texts += [str(exc), repr(exc), str(exc.__cause__)]
                await trio.sleep(3600)
            texts += [repr(tokens.statistics()), repr(tokens.auth(keys[0]))]
        async with ShopifyOAuth(
            endpoint.client_id, "shpss_wrong0secret0000000000000000000", http=endpoint.http_client()
        ) as wrong:
            with pytest.raises(RefreshFailed) as info:
                await wrong.mint(keys[0])
            texts += [str(info.value), repr(wrong)]
    texts += [repr(event) for event in events] + [repr(entry) for entry in logs]
    # The fake's own record of each shop's tokens: the live one and every one it ended.
    records = [endpoint._admin.shops[key.shop] for key in keys]
    minted = {token for record in records for token in record.ended}
    minted |= {record.minted.access for record in records if record.minted is not None}
    assert len(minted) >= 3 * 3
    assert any("[redacted]" in text for text in texts)  # the store's message was scrubbed
    secrets_ = [*minted, endpoint.client_secret, "shpss_wrong0secret0000000000000000000"]
    assert [(s, t) for s in secrets_ for t in texts if s in t] == []


async def test_the_grant_over_loopback() -> None:
    """Real sockets: a mint, a wrong secret (401 invalid_client), an uninstalled store (401)."""
    fake = FakeShopify()
    key = TokenKey.client_credentials("loop-back-office")
    with trio.fail_after(20):
        async with serve_loopback(fake) as server, server.oauth() as oauth:
            token = await oauth.mint(key)
            wrong = ShopifyOAuth(
                fake.client_id, "shpss_wrong0secret0000000000000000000", http=server.client()
            )
            with pytest.raises(RefreshFailed) as refused:
                await wrong.mint(key)
            fake.revoke(key.shop)
            with pytest.raises(ReauthorizationRequired):
                await oauth.mint(key)
    assert token.refresh_token is None
    assert refused.value.app_credentials_rejected
    assert fake.statistics(key.shop).mints == 1
    assert fake.statistics(key.shop).clients_rejected == 1
    assert fake.statistics(key.shop).mints_rejected == 1
    assert not fake.is_valid(key.shop, token.access_token)  # ended by the uninstall
