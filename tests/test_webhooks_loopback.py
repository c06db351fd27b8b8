"""Webhooks end to end: FakeShopify signs and POSTs them to an app served on loopback.

Real clock, real sockets: the app's endpoint (`webhook_app` under hypercorn)
verifies each delivery, skips repeated ones and hands the rest to
`handle_webhook`; the manager refreshes over loopback HTTP to the fake. The
same endpoint is also called in-process on trio's mock clock, where a
delivery's timing matters (Shopify's 5 s timeout).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

from shoptoken import (
    Delivery,
    InvalidWebhook,
    MemoryStore,
    NoToken,
    PersistenceError,
    SeenWebhooks,
    ShopifyOAuth,
    Token,
    TokenKey,
    TokenManager,
    Webhook,
    handle_webhook,
    open_token_manager,
)
from shoptoken.stores import open_store
from shoptoken.testing import FakeShopify, LoopbackServer, serve_app, serve_loopback, webhook_app

from ._managers import KEY, installed, manager
from ._store_urls import store_url

SHOP = "my-store.myshopify.com"
OFFLINE = TokenKey.offline(SHOP)
ONLINE = TokenKey.online(SHOP, 42)
CUSTOMER_NUMERIC = TokenKey.customer(SHOP, "207119551")
CUSTOMER_GID = TokenKey.customer(SHOP, "gid://shopify/Customer/207119551")
OTHER_CUSTOMER = TokenKey.customer(SHOP, "gid://shopify/Customer/5")
OTHER_SHOP = TokenKey.offline("other-store")
Store = Any


@attrs.define(eq=False)
class HeldAnswers(httpx.AsyncBaseTransport):
    """Routes to the loopback fake; while ``holding``, keeps each answer until ``release``."""

    inner: httpx.AsyncBaseTransport
    holding: bool = False
    sent: int = 0
    answered: trio.Event = attrs.Factory(trio.Event)
    release: trio.Event = attrs.Factory(trio.Event)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; hold its answer while asked to."""
        self.sent += 1
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if self.holding:
            self.answered.set()
            await self.release.wait()
        return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


@attrs.define(eq=False)
class Receiver:
    """The endpoint of docs/webhooks.md ("The endpoint"), recording what it did."""

    verify: Callable[[bytes, Mapping[str, str]], Webhook]
    tokens: TokenManager
    seen: SeenWebhooks = attrs.Factory(SeenWebhooks)
    handled: list[Webhook] = attrs.Factory(list)
    handling: trio.Event = attrs.Factory(trio.Event)
    statuses: list[int] = attrs.Factory(list)

    async def __call__(self, body: bytes, headers: Mapping[str, str]) -> int:
        """``POST /webhooks``: the status answered (also recorded in ``statuses``)."""
        status = await self.answer(body, headers)
        self.statuses.append(status)
        return status

    async def answer(self, body: bytes, headers: Mapping[str, str]) -> int:
        """Verify, skip repeats (409 while the first is being handled), handle."""
        try:
            webhook = self.verify(body, headers)
        except InvalidWebhook:
            return 401
        delivery = self.seen.begin(webhook)
        if delivery is Delivery.DONE:
            return 200  # a repeat: already handled
        if delivery is Delivery.IN_PROGRESS:
            return 409  # not handled yet: Shopify delivers it again later
        self.handling.set()
        try:
            await handle_webhook(self.tokens, webhook)
        except PersistenceError:
            self.seen.discard(webhook)  # Shopify delivers it again: handle that one
            return 500
        except BaseException:
            self.seen.discard(webhook)
            raise
        self.seen.done(webhook)
        self.handled.append(webhook)
        return 200


@attrs.define(eq=False)
class App:
    """The app under test: its manager, its webhook endpoint and that endpoint's URL."""

    tokens: TokenManager
    url: str
    endpoint: Receiver

    @property
    def handled(self) -> list[Webhook]:
        """The webhooks the endpoint handled."""
        return self.endpoint.handled

    @property
    def statuses(self) -> list[int]:
        """The statuses the endpoint answered."""
        return self.endpoint.statuses


@asynccontextmanager
async def running_app(
    fake: FakeShopify, store: Store, transport: httpx.AsyncBaseTransport
) -> AsyncIterator[App]:
    """A manager refreshing through ``transport``, and its webhook endpoint on loopback."""
    async with httpx.AsyncClient(transport=transport) as http:
        oauth = ShopifyOAuth(fake.client_id, fake.client_secret, http=http, clock=fake.clock)
        async with open_token_manager(oauth, store, clock=fake.clock) as tokens:
            receiver = Receiver(oauth.verify_webhook, tokens)
            async with serve_app(webhook_app(receiver)) as url:
                yield App(tokens, f"{url}/webhooks", receiver)


@asynccontextmanager
async def app_store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A MemoryStore, a SQLiteStore on a real file, or a PostgresStore on the test server."""
    if kind == "memory":
        yield MemoryStore()
        return
    async with store_url(kind, tmp_path, "webhooks") as url, open_store(url) as store:
        await store.create_schema()
        yield store


def later(fake: FakeShopify, seconds: float) -> datetime:
    """The fake's time plus ``seconds``."""
    return datetime.fromtimestamp(fake.clock(), UTC) + timedelta(seconds=seconds)


@pytest.fixture
async def served() -> AsyncIterator[LoopbackServer]:
    """The fake, served on loopback."""
    async with serve_loopback(FakeShopify()) as server:
        yield server


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
async def test_uninstall_during_an_in_flight_refresh(
    served: LoopbackServer, tmp_path: Path, kind: str
) -> None:
    """Uninstalled while a rotation's answer is on its way: no token stays, no request follows."""
    fake = served.fake
    held = HeldAnswers(served.transport())
    async with app_store(kind, tmp_path) as store, running_app(fake, store, held) as app:
        tokens = app.tokens
        await tokens.put_token(OFFLINE, fake.install(SHOP))
        await tokens.put_token(
            ONLINE, Token(access_token="shpua_fake_u", expires_at=later(fake, 86000))
        )
        # Stored by another process (a storefront): known only to the store.
        await store.save_tokens(CUSTOMER_GID, Token(access_token="shcat_fake_c", refresh_token="r"))
        await store.save_tokens(OTHER_SHOP, fake.install("other-store"))
        held.holding = True
        outcome: list[BaseException | Token] = []

        async def refresh() -> None:
            try:
                outcome.append(await tokens.refresh_token(OFFLINE))
            except NoToken as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refresh)
            await held.answered.wait()  # Shopify rotated; its answer is on the way back
            rotated = fake.statistics(SHOP).refreshes
            assert rotated == 1
            answers: list[httpx.Response | None] = []

            async def uninstall() -> None:
                answers.append(await fake.uninstall(SHOP, app.url))

            nursery.start_soon(uninstall)
            with trio.fail_after(5):
                await app.endpoint.handling.wait()
            # forget_shop drops the keys from memory before its first checkpoint.
            assert tokens.statistics().keys_known == 0
            held.holding = False
            held.release.set()
        assert [a.status_code for a in answers if a is not None] == [200]
        assert isinstance(outcome[0], NoToken)  # the rotated pair was never served
        assert [w.topic for w in app.handled] == ["app/uninstalled"]
        for key in (OFFLINE, ONLINE, CUSTOMER_GID):
            assert await store.load_tokens(key) is None
        assert await store.load_tokens(OTHER_SHOP) is not None
        sent = held.sent
        with pytest.raises(NoToken):
            await tokens.valid_token(OFFLINE)
        await trio.sleep(0.2)
        assert held.sent == sent == 1
        assert tokens.statistics().keys_known == 0
        # A reinstall starts the shop afresh.
        await tokens.put_token(OFFLINE, fake.install(SHOP))
        renewed = await tokens.refresh_token(OFFLINE)
        assert fake.is_valid(SHOP, renewed.access_token)
        assert await store.load_tokens(OFFLINE) == renewed


async def test_wrong_signature_and_duplicate_delivery(served: LoopbackServer) -> None:
    """A forged delivery gets 401 and changes nothing; a repeated one is handled once."""
    fake = served.fake
    store = MemoryStore()
    async with running_app(fake, store, served.transport()) as app:
        await app.tokens.put_token(OFFLINE, fake.install(SHOP))
        forged = fake.webhook("app/uninstalled", SHOP, secret="shpss_not_the_app_secret_0000000000")
        assert (await fake.send_webhook(app.url, forged)).status_code == 401
        assert await store.load_tokens(OFFLINE) is not None
        delivery = fake.webhook("app/uninstalled", SHOP)
        fake.revoke(SHOP)
        for _ in range(2):
            assert (await fake.send_webhook(app.url, delivery)).status_code == 200
        assert app.statuses == [401, 200, 200]
        assert [w.webhook_id for w in app.handled] == [delivery.webhook_id]
        assert len(store) == 0


async def test_compliance_topics(served: LoopbackServer) -> None:
    """customers/redact forgets that customer's keys; data_request nothing; shop/redact all."""
    fake = served.fake
    store = MemoryStore()
    async with running_app(fake, store, served.transport()) as app:
        await app.tokens.put_token(OFFLINE, fake.install(SHOP))
        for key in (CUSTOMER_NUMERIC, CUSTOMER_GID, OTHER_CUSTOMER):
            await store.save_tokens(key, Token(access_token=f"shcat_fake_{key.subject}"))
        await app.tokens.fetch_token(CUSTOMER_GID)  # one of them held in memory too
        request = fake.webhook("customers/data_request", SHOP, customer_id=207119551)
        assert (await fake.send_webhook(app.url, request)).status_code == 200
        assert len(store) == 4
        request = fake.webhook(
            "customers/redact", SHOP, customer_id="gid://shopify/Customer/207119551"
        )
        assert request.body.count(b'"id":207119551') == 1  # Shopify sends the numeric id
        assert (await fake.send_webhook(app.url, request)).status_code == 200
        assert sorted(map(str, [k async for k in store.list_keys()])) == sorted(
            map(str, [OFFLINE, OTHER_CUSTOMER])
        )
        with pytest.raises(NoToken):
            await app.tokens.fetch_token(CUSTOMER_GID)
        assert (
            await fake.send_webhook(app.url, fake.webhook("shop/redact", SHOP))
        ).status_code == 200
        assert len(store) == 0
        assert [w.topic for w in app.handled] == [
            "customers/data_request",
            "customers/redact",
            "shop/redact",
        ]


async def test_customers_redact_without_a_customer_is_refused(served: LoopbackServer) -> None:
    """A signed customers/redact whose payload names no customer raises InvalidWebhook."""
    fake = served.fake
    async with running_app(fake, MemoryStore(), served.transport()) as app:
        request = fake.webhook("customers/redact", SHOP, {"shop_id": 1, "shop_domain": SHOP})
        webhook = ShopifyOAuth(
            fake.client_id, fake.client_secret, http=httpx.AsyncClient()
        ).verify_webhook(request.body, request.headers)
        with pytest.raises(InvalidWebhook, match=r"customer\.id"):
            await handle_webhook(app.tokens, webhook)


async def test_uninstall_revokes_at_the_fake(served: LoopbackServer) -> None:
    """After FakeShopify.uninstall the shop's refresh is refused and its API calls get 401."""
    fake = served.fake
    token = fake.install(SHOP)
    assert await fake.uninstall(SHOP) is None
    assert not fake.is_valid(SHOP, token.access_token)
    assert token.refresh_token is not None
    assert not fake.refresh_token_works(SHOP, token.refresh_token)
    async with served.client() as client:
        answer = await client.get(
            f"https://{SHOP}/admin/api/2026-07/shop.json",
            headers={"X-Shopify-Access-Token": token.access_token},
        )
    assert answer.status_code == 401


async def test_send_webhook_refuses_foreign_hosts() -> None:
    """FakeShopify posts webhooks to loopback addresses only."""
    fake = FakeShopify()
    with pytest.raises(ValueError, match="loopback"):
        await fake.send_webhook(
            "https://example.com/webhooks", fake.webhook("orders/create", SHOP, {})
        )


# -- a repeat while the first delivery is still being handled (in-process, mock clock) -------


@attrs.define(eq=False)
class SlowFailingDeleteStore(MemoryStore):
    """delete_shop takes 6 s (longer than Shopify's 5 s delivery timeout), then fails once."""

    failures: int = 1

    async def delete_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        """Wait 6 s; fail the first time, then delete."""
        await trio.sleep(6)
        if self.failures:
            self.failures -= 1
            msg = "database connection lost"
            raise OSError(msg)
        return await super().delete_shop(shop, before=before)


async def test_a_repeat_during_a_slow_first_delivery_is_not_acknowledged(
    endpoint: FakeShopify, clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """A retry sent while the first delivery runs gets 409; only a handled delivery gets 200."""
    store = SlowFailingDeleteStore()
    await installed(endpoint, store)
    await trio.sleep(1)
    uninstall = endpoint.webhook("app/uninstalled", KEY.shop)
    async with (
        manager(endpoint, clock, store) as tokens,
        endpoint.oauth(clock=clock) as oauth,
        trio.open_nursery() as nursery,
    ):
        await tokens.valid_token(KEY)
        receive = Receiver(oauth.verify_webhook, tokens, SeenWebhooks(clock=trio.current_time))
        nursery.start_soon(receive, uninstall.body, uninstall.headers)
        await trio.sleep(5)  # Shopify gives up on it and delivers it again
        assert await receive(uninstall.body, uninstall.headers) == 409
        await trio.sleep(5)  # the first failed at 6 s
        assert receive.statuses == [409, 500]
        assert await store.load_tokens(KEY) is not None  # not acknowledged, not lost
        assert await receive(uninstall.body, uninstall.headers) == 200  # Shopify's next retry
        assert await store.load_tokens(KEY) is None
        assert await receive(uninstall.body, uninstall.headers) == 200  # a repeat: handled
    assert receive.statuses == [409, 500, 200, 200]
    assert [webhook.webhook_id for webhook in receive.handled] == [uninstall.webhook_id]
