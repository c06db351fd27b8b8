"""TokenManager.auth: httpx.Auth that takes its header from valid_token."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import trio.testing

from shoptoken import MemoryStore, ReauthorizationRequired, Token, TokenKey, open_token_manager
from shoptoken.testing import FakeShopify

from .fakes import at

KEY = TokenKey.offline("my-store")


def admin_api(shopify: FakeShopify, seen: list[str]) -> httpx.MockTransport:
    """A fake Admin API: 200 for a valid token, 401 otherwise; records the tokens it saw."""

    def handle(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("X-Shopify-Access-Token", "")
        seen.append(token)
        if shopify.is_valid(request.url.host, token):
            return httpx.Response(200, json={"shop": {"name": "My Store"}})
        return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})

    return httpx.MockTransport(handle)


async def test_auth_sets_the_header_from_valid_token(
    endpoint: FakeShopify, clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """Requests carry X-Shopify-Access-Token of the key's valid token."""
    store = MemoryStore()
    token = endpoint.install(KEY.shop)
    await store.save_tokens(KEY, token)
    seen: list[str] = []
    async with (
        endpoint.oauth() as oauth,
        open_token_manager(oauth, store, clock=clock) as tokens,
        httpx.AsyncClient(transport=admin_api(endpoint, seen), auth=tokens.auth(KEY)) as client,
    ):
        response = await client.get(f"https://{KEY.shop}/admin/api/2026-10/shop.json")
    assert response.status_code == 200
    assert seen == [token.access_token]


async def test_a_401_forces_one_refresh_and_one_retry(
    endpoint: FakeShopify, clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """A token revoked behind our back (401) is refreshed once and the request retried once."""
    store = MemoryStore()
    token = endpoint.install(KEY.shop)
    await store.save_tokens(KEY, token)
    seen: list[str] = []
    async with endpoint.oauth() as oauth, open_token_manager(oauth, store, clock=clock) as tokens:
        await tokens.valid_token(KEY)
        # Shopify no longer accepts the access token we hold (an operator
        # restored an old row, say), while its refresh token still works.
        newer = endpoint.install(KEY.shop)
        async with httpx.AsyncClient(
            transport=admin_api(endpoint, seen), auth=tokens.auth(KEY)
        ) as client:
            await tokens.put_token(
                KEY,
                Token(
                    access_token="shpat_revoked_SECRET",
                    refresh_token=newer.refresh_token,
                    expires_at=newer.expires_at,
                ),
            )
            response = await client.post(
                f"https://{KEY.shop}/admin/api/2026-10/graphql.json", json={"query": "{shop{name}}"}
            )
    assert response.status_code == 200
    assert len(seen) == 2
    assert seen[0] == "shpat_revoked_SECRET"
    assert endpoint.is_valid(KEY.shop, seen[1])
    assert endpoint.refreshes[KEY.shop] == 1


async def test_a_second_401_is_returned_not_retried_forever(
    endpoint: FakeShopify, clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """If the refreshed token is refused too, the 401 reaches the app after one retry."""
    store = MemoryStore()
    await store.save_tokens(KEY, endpoint.install(KEY.shop))
    calls = []

    def always_401(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401)

    transport = httpx.MockTransport(always_401)
    async with (
        endpoint.oauth() as oauth,
        open_token_manager(oauth, store, clock=clock) as tokens,
        httpx.AsyncClient(transport=transport, auth=tokens.auth(KEY)) as client,
    ):
        response = await client.get(f"https://{KEY.shop}/admin/api/2026-10/shop.json")
    assert response.status_code == 401
    assert len(calls) == 2
    assert endpoint.refreshes[KEY.shop] == 1


async def test_auth_raises_reauthorization_required_for_a_dead_key(
    endpoint: FakeShopify, clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """A key that needs re-authorization raises before any request is sent."""
    store = MemoryStore()
    await store.save_tokens(KEY, endpoint.install(KEY.shop))
    endpoint.install(KEY.shop)  # the stored pair is now revoked
    sent: list[httpx.Request] = []
    async with endpoint.oauth() as oauth, open_token_manager(oauth, store, clock=clock) as tokens:
        await tokens.fetch_token(KEY)
        autojump_clock.jump(3600)
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(lambda request: _record(sent, request)),
            auth=tokens.auth(KEY),
        ) as client:
            with pytest.raises(ReauthorizationRequired):
                await client.get(f"https://{KEY.shop}/admin/api/2026-10/shop.json")
    assert sent == []


def _record(sent: list[httpx.Request], request: httpx.Request) -> httpx.Response:
    sent.append(request)
    return httpx.Response(200)


def test_auth_refuses_sync_clients() -> None:
    """A sync httpx.Client cannot use the manager's auth: it says so."""
    from shoptoken._auth import ManagerAuth

    auth = ManagerAuth(None, KEY)  # type: ignore[arg-type]
    transport = httpx.MockTransport(lambda _: httpx.Response(200))
    with httpx.Client(transport=transport, auth=auth) as c, pytest.raises(RuntimeError):
        c.get("https://my-store.myshopify.com/")
    assert "SECRET" not in repr(auth)


async def test_customer_keys_send_the_authorization_header(
    clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """A customer key's token goes in Authorization, as the Customer Account API wants."""
    customer = TokenKey.customer("my-store", "gid://shopify/Customer/1")
    store = MemoryStore()
    token = Token(access_token="shcat_customer_SECRET", expires_at=at(clock, 3600))
    await store.save_tokens(customer, token)
    seen: list[httpx.Headers] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200)

    async with (
        open_token_manager({}, store, clock=clock) as tokens,
        httpx.AsyncClient(transport=httpx.MockTransport(api), auth=tokens.auth(customer)) as c,
    ):
        await c.post("https://shopify.com/1/account/customer/api/2026-10/graphql")
    assert seen[0]["Authorization"] == "shcat_customer_SECRET"
    assert "X-Shopify-Access-Token" not in seen[0]
