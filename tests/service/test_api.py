"""The synchronous and asyncio APIs: the trio API's answers and errors, from other threads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trio

from shoptoken import (
    MemoryStore,
    NoToken,
    PersistenceError,
    ReauthorizationRequired,
    ServiceTimeout,
    ShopifyOAuth,
    Token,
    TokenKey,
    TokenKind,
    TokenService,
)
from shoptoken.testing import FakeShopify

from .._managers import KEY
from ..fakes import FlakyStore
from ._harness import Freezer, running, stored, wait_until

OTHER = TokenKey.offline("other-store")


def test_a_fresh_token_is_read_without_the_service_thread() -> None:
    """With the service's thread frozen, fresh reads answer (sync and asyncio); misses wait."""
    freezer = Freezer()
    with running(hooks=(freezer.hook,)) as h:
        service = h.service
        with freezer.frozen(h):
            for _ in range(1000):
                assert service.valid_token(KEY) is h.token

            async def read() -> Token:
                return await service.aio.valid_token(KEY)

            assert asyncio.run(read()) is h.token
            with pytest.raises(ServiceTimeout):  # a miss needs the thread: it waits
                service.valid_token(OTHER, timeout=0.1)
        assert h.fake.requests == 1  # FROZEN's refresh, nothing for KEY


def test_every_method_answers_like_the_trio_api() -> None:
    """put, fetch, refresh, forget and statistics, sync and asyncio, with the trio API's errors."""
    with running() as h:
        service = h.service
        assert service.fetch_token(KEY) == h.token
        new = service.refresh_token(KEY)
        assert new != h.token
        assert h.fake.is_valid(KEY.shop, new.access_token)
        assert service.valid_token(KEY) == new
        # A rejected token that was already replaced: the current one, no refresh.
        assert service.refresh_token(KEY, rejected=h.token) == new
        assert service.statistics().refreshes_succeeded == 1
        with pytest.raises(NoToken) as no_token:
            service.valid_token(OTHER)
        assert no_token.value.key == OTHER
        with pytest.raises(TypeError, match="Token"):
            service.put_token(OTHER, "not a token")  # type: ignore[arg-type]

        async def asyncio_side() -> None:
            aio = service.aio
            assert await aio.fetch_token(KEY) == new
            newer = await aio.refresh_token(KEY)
            assert await aio.valid_token(KEY) == newer
            await aio.put_token(OTHER, h.fake.install(OTHER.shop))
            assert (await aio.statistics()).keys_known == 2
            await aio.forget(OTHER)
            with pytest.raises(NoToken):
                await aio.valid_token(OTHER)

        asyncio.run(asyncio_side())
        service.forget(KEY)
        with pytest.raises(NoToken):
            service.valid_token(KEY)


def test_a_dead_key_raises_reauthorization_required_in_both_apis() -> None:
    """A revoked app: the refresh answers invalid_grant; both APIs raise the same class."""
    with running() as h:
        h.fake.revoke(KEY.shop)
        h.expire()
        with pytest.raises(ReauthorizationRequired):
            h.service.valid_token(KEY)

        async def again() -> None:
            with pytest.raises(ReauthorizationRequired):
                await h.service.aio.valid_token(KEY)

        asyncio.run(again())


def test_a_store_outage_behaves_as_under_trio() -> None:
    """Failed loads raise PersistenceError (unwrapped); a failed save is served and retried."""
    store = FlakyStore()
    with running(store, retry_initial=0.01, retry_max=0.02) as h:
        service = h.service
        other = h.fake.install(OTHER.shop)
        trio.run(store.save_tokens, OTHER, other)  # stored, not in memory: loaded on use
        store.fail_loads = 2
        with pytest.raises(PersistenceError):
            service.valid_token(OTHER)

        async def load_fails() -> None:
            with pytest.raises(PersistenceError):
                await service.aio.valid_token(OTHER)

        asyncio.run(load_fails())
        assert service.valid_token(OTHER) == other  # the store answers again
        # The save of a rotated pair fails twice: the new pair is served at once.
        store.fail_saves = 2
        h.expire()
        new = service.valid_token(KEY)
        assert h.fake.is_valid(KEY.shop, new.access_token)
        wait_until(lambda: service.statistics().saves_pending == 0)
        assert stored(store, KEY) == new
        assert service.statistics().saves_failed == 2


def test_lifecycle_errors_are_clear() -> None:
    """Before start, after close and on a second start: RuntimeError saying which."""
    fake = FakeShopify()
    service = TokenService(fake.oauth(), "memory://")
    with pytest.raises(RuntimeError, match="not started"):
        service.valid_token(KEY)
    with service:
        with pytest.raises(RuntimeError, match="cannot start"):
            service.start()
        service.put_token(KEY, fake.install(KEY.shop))
        assert service.valid_token(KEY)
    with pytest.raises(RuntimeError, match="closed"):
        service.valid_token(KEY)

    async def closed() -> None:
        with pytest.raises(RuntimeError, match="closed"):
            await service.aio.valid_token(KEY)

    asyncio.run(closed())
    service.close()  # again: nothing happens


def test_bad_parts_fail_at_construction_or_start() -> None:
    """A bad refresher or store fails at once; a bad store URL fails start(), unwrapped."""
    fake = FakeShopify()
    with pytest.raises(TypeError, match="Refresher"):
        TokenService(object(), "memory://")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TokenCallback"):
        TokenService(fake.oauth(), object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        TokenService(fake.oauth(), "memory://", timeout=0)
    service = TokenService(fake.oauth(), "nosuch://x")
    with pytest.raises(ValueError, match="scheme"):
        service.start()
    with pytest.raises(RuntimeError):
        service.valid_token(KEY)


def test_a_store_url_is_opened_and_closed_in_the_service_thread(tmp_path: Path) -> None:
    """``sqlite:///...``: the service opens the store, and the pair survives a restart."""
    fake = FakeShopify()
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    with TokenService(fake.oauth(), url) as service:
        service.put_token(KEY, fake.install(KEY.shop))
        token = service.refresh_token(KEY)
    with TokenService(fake.oauth(), url) as service:
        assert service.fetch_token(KEY) == token


def test_a_slow_answer_raises_service_timeout_and_the_refresh_goes_on() -> None:
    """A caller that waits too little gets ServiceTimeout; the refresh still lands."""
    with running(latency=0.3) as h:
        h.expire()
        with pytest.raises(ServiceTimeout) as timed_out:
            h.service.valid_token(KEY, timeout=0.05)
        assert isinstance(timed_out.value, TimeoutError)
        new = h.service.valid_token(KEY)
        assert h.fake.is_valid(KEY.shop, new.access_token)
        assert h.fake.statistics(KEY.shop).refreshes == 1


def test_the_service_thread_cannot_wait_on_itself() -> None:
    """A hook calling the service on a miss gets RuntimeError instead of a deadlock."""
    seen: list[BaseException] = []
    box: list[TokenService] = []

    def hook(_: object) -> None:
        if box and not seen:
            try:
                box[0].valid_token(OTHER)
            except RuntimeError as exc:
                seen.append(exc)

    with running(hooks=(hook,)) as h:
        box.append(h.service)
        h.service.refresh_token(KEY)
    assert seen
    assert "own thread" in str(seen[0])


def test_sync_and_async_auth_refresh_once_on_a_401() -> None:
    """httpx.Client and httpx.AsyncClient: a 401 forces one refresh and one retry."""
    with running() as h:
        calls: list[str] = []

        def api(request: httpx.Request) -> httpx.Response:
            token = request.headers["X-Shopify-Access-Token"]
            calls.append(token)
            # The first token sent is refused, as if revoked elsewhere.
            return httpx.Response(401 if len(calls) == 1 else 200, json={})

        url = f"https://{KEY.shop}/admin/api/2025-01/shop.json"
        auth = h.service.auth(KEY)
        assert "shpat" not in repr(auth)
        with httpx.Client(transport=httpx.MockTransport(api), auth=auth) as client:
            assert client.get(url).status_code == 200
        assert calls[0] == h.token.access_token
        assert calls[1] != calls[0]
        assert h.service.statistics().refreshes_succeeded == 1

        async def asyncio_side() -> int:
            transport = httpx.MockTransport(api)
            async with httpx.AsyncClient(transport=transport, auth=auth) as client:
                return (await client.get(url)).status_code

        calls.clear()
        assert asyncio.run(asyncio_side()) == 200
        assert calls[1] != calls[0]
        assert h.service.statistics().refreshes_succeeded == 2


def test_clients_are_closed_in_the_service_thread() -> None:
    """close() closes the OAuth clients (a kind mapping too) and the resources it was given."""
    fake = FakeShopify()
    http = fake.http_client()
    oauth = ShopifyOAuth(fake.client_id, fake.client_secret, http=http)
    with TokenService({TokenKind.OFFLINE: oauth}, "memory://", resources=[http]) as service:
        installed = fake.install(KEY.shop)
        service.put_token(KEY, installed)
        assert service.refresh_token(KEY) != installed  # through the mapping's client
        assert not http.is_closed
    assert http.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        trio.run(oauth.refresh, KEY, fake.install(KEY.shop))


def test_webhooks_end_a_shops_tokens_from_both_apis() -> None:
    """app/uninstalled through the sync API, customers/redact through asyncio: gone everywhere."""
    customer = TokenKey.customer(OTHER.shop, "gid://shopify/Customer/7")
    with running() as h:
        service, fake = h.service, h.fake
        installed_at = datetime.fromtimestamp(h.clock.now, UTC)
        service.put_token(OTHER, fake.install(OTHER.shop))
        service.put_token(customer, Token("shcat_customer", "shcrt_customer", "", None))
        assert service.valid_token(KEY) == h.token  # published, read without a hop
        oauth = fake.oauth()
        h.clock.now += 1.0  # the merchant uninstalls after installing
        uninstall = fake.webhook("app/uninstalled", KEY.shop)
        assert service.handle_webhook(oauth.verify_webhook(uninstall.body, uninstall.headers)) == [
            KEY
        ]
        with pytest.raises(NoToken):
            service.valid_token(KEY)
        assert stored(h.store, KEY) is None

        async def redact() -> list[TokenKey]:
            request = fake.webhook("customers/redact", OTHER.shop, customer_id=7)
            return await service.aio.handle_webhook(
                oauth.verify_webhook(request.body, request.headers)
            )

        assert customer in asyncio.run(redact())
        assert stored(h.store, customer) is None
        assert service.valid_token(OTHER) is not None  # the shop's other keys stay
        # Obtained at installed_at, not before it: kept by both APIs.
        assert service.forget_shop(OTHER.shop, before=installed_at) == []
        assert asyncio.run(service.aio.forget_shop(OTHER.shop, before=installed_at)) == []
        assert service.forget_shop(OTHER.shop) == [OTHER]
        assert asyncio.run(service.aio.forget_shop(OTHER.shop)) == []
        assert stored(h.store, OTHER) is None


def test_warm_up_from_both_apis_publishes_the_fleet() -> None:
    """warm_up loads stored keys at start; their fresh tokens are then read without a hop."""
    store = MemoryStore()
    fake_keys = [TokenKey.offline(f"fleet-{i}") for i in range(5)]
    freezer = Freezer()
    with running(store, hooks=(freezer.hook,)) as h:
        for key in fake_keys:
            trio.run(store.save_tokens, key, h.fake.install(key.shop))
        figures = h.service.warm_up(fake_keys[:3], batch_size=2)
        assert (figures.loaded, figures.missing, figures.keys) == (3, 0, 3)
        aio_figures = asyncio.run(h.service.aio.warm_up(fake_keys[3:]))
        assert aio_figures.loaded == 2
        with freezer.frozen(h):  # no hop: every warmed key is in the published view
            assert [h.service.valid_token(key).access_token for key in fake_keys] == [
                stored(store, key).access_token  # type: ignore[union-attr]
                for key in fake_keys
            ]


class _SlowStore:
    """A plain store whose every load takes 50 ms (the warm-up loads key by key)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Wait, then load."""
        await trio.sleep(0.05)
        return await self.inner.load_tokens(key)

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Save at once."""
        await self.inner.save_tokens(key, token)


def test_a_warm_up_waits_until_done_beyond_the_services_timeout() -> None:
    """warm_up is not bounded by the service's timeout unless told: a start hook waits it out."""
    store = _SlowStore()
    fleet = [TokenKey.offline(f"fleet-{i}") for i in range(12)]
    with running(store, timeout=0.2) as h:  # 12 loads of 50 ms: longer than 0.2 s
        for key in fleet:
            trio.run(store.inner.save_tokens, key, h.fake.install(key.shop))
        assert h.service.warm_up(fleet, batch_size=5).loaded == 12
        assert asyncio.run(h.service.aio.warm_up(fleet)).loaded == 12  # in memory: counted
        with pytest.raises(ServiceTimeout):  # a caller that stops waiting
            h.service.warm_up([TokenKey.offline(f"more-{i}") for i in range(12)], timeout=0.1)
