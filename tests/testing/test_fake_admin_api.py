"""FakeShopify's small Admin API: 200 for a live token, 401 otherwise, every call counted."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio
import trio.testing

from shoptoken import MemoryStore, TokenKey, open_token_manager
from shoptoken.testing import FakeShopify

from . import GRAPHQL_URL, SHOP, SHOP_URL, api_status, body


async def test_live_token_gets_200_and_shop_data(endpoint: FakeShopify) -> None:
    """shop.json (GET) and graphql.json (POST) answer a live token with the shop."""
    token = endpoint.install(SHOP).access_token
    async with endpoint.http_client(headers={"X-Shopify-Access-Token": token}) as client:
        rest = await client.get(SHOP_URL)
        graphql = await client.post(GRAPHQL_URL, json={"query": "{ shop { name } }"})
    assert body(rest) == {"shop": {"name": "my-store", "myshopify_domain": SHOP}}
    assert body(graphql)["data"]["shop"]["name"] == "my-store"
    assert endpoint.api_calls == {SHOP: 2}
    assert endpoint.api_calls_rejected == {}


async def test_dead_tokens_get_401_and_are_counted(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """Expired, replaced, unknown, other shops' and missing tokens: 401, counted as rejected."""
    expired = endpoint.install(SHOP).access_token
    await trio.sleep(3600)
    replaced = endpoint.install(SHOP).access_token
    endpoint.install(SHOP)
    other_shop = endpoint.install("other-store").access_token
    for token in (expired, replaced, "shpat_unknown", other_shop, ""):
        assert await api_status(endpoint, token) == 401
    async with endpoint.http_client() as client:
        response = await client.get(SHOP_URL)
    assert body(response) == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }
    assert endpoint.statistics(SHOP).api_calls == 6
    assert endpoint.statistics(SHOP).api_calls_rejected == 6


async def test_an_access_token_dies_exactly_at_expiry(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """200 one second before expires_at, 401 at it."""
    token = endpoint.install(SHOP).access_token
    await trio.sleep(3599)
    assert await api_status(endpoint, token) == 200
    await trio.sleep(1)
    assert await api_status(endpoint, token) == 401


async def test_counts_expired_tokens_an_app_really_sent(
    endpoint: FakeShopify, clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """A day of API calls through the manager's auth: none rejected by the fake."""
    key = TokenKey.offline(SHOP)
    store = MemoryStore()
    await store.save_tokens(key, endpoint.install(SHOP))
    async with (
        endpoint.oauth() as oauth,
        open_token_manager(oauth, store, clock=clock) as tokens,
        endpoint.http_client(auth=tokens.auth(key)) as api,
    ):
        for _ in range(24 * 4):
            assert (await api.get(SHOP_URL)).status_code == 200
            await trio.sleep(900)
    assert endpoint.api_calls == {SHOP: 96}
    assert endpoint.api_calls_rejected == {}
    assert endpoint.statistics(SHOP).refreshes >= 24


async def test_unknown_paths_and_methods_are_404(endpoint: FakeShopify) -> None:
    """Only the emulated endpoints answer; they are not counted as API calls."""
    token = endpoint.install(SHOP).access_token
    async with endpoint.http_client(headers={"X-Shopify-Access-Token": token}) as client:
        for response in (
            await client.get(f"https://{SHOP}/admin/api/2026-10/products.json"),
            await client.delete(SHOP_URL),
            await client.get(f"https://{SHOP}/admin/oauth/access_token"),
        ):
            assert response.status_code == 404
    assert endpoint.api_calls == {}
    assert endpoint.requests == 3


async def test_in_process_transport_refuses_foreign_urls(endpoint: FakeShopify) -> None:
    """Other hosts, plain http and explicit ports raise ForeignHostError, even in process."""
    import pytest

    from shoptoken.testing import ForeignHostError

    async with endpoint.http_client() as client:
        for url in (
            "https://example.com/admin/oauth/access_token",
            f"http://{SHOP}/admin/oauth/access_token",
            f"https://{SHOP}:8443/admin/oauth/access_token",
            "https://my-store.myshopify.com.evil.com/",
            "https://-bad.myshopify.com/",
        ):
            with pytest.raises(ForeignHostError):
                await client.get(url)
    assert isinstance(ForeignHostError("x"), RuntimeError)
    assert not isinstance(ForeignHostError("x"), httpx.TransportError)
    assert endpoint.requests == 0
