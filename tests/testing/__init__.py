"""Tests of shoptoken.testing: FakeShopify is an oracle for the rest, so it is tested as one.

These helpers talk to the fake in raw HTTP, never through shoptoken's own
clients, so the fake's answers are checked exactly as Shopify sends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx

from shoptoken.testing import FakeShopify

SHOP: Final = "my-store.myshopify.com"
TOKEN_URL: Final = f"https://{SHOP}/admin/oauth/access_token"
SHOP_URL: Final = f"https://{SHOP}/admin/api/2026-10/shop.json"
GRAPHQL_URL: Final = f"https://{SHOP}/admin/api/2026-10/graphql.json"
TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN: Final = "urn:ietf:params:oauth:token-type:id_token"
OFFLINE: Final = "urn:shopify:params:oauth:token-type:offline-access-token"
ONLINE: Final = "urn:shopify:params:oauth:token-type:online-access-token"


async def post_grant(
    fake: FakeShopify, shop: str = SHOP, *, form: bool = False, **params: str
) -> httpx.Response:
    """POST a grant with the fake's credentials to ``shop``'s token endpoint."""
    return await send_grant(fake, params, shop, form=form)


async def send_grant(
    fake: FakeShopify, params: Mapping[str, str], shop: str = SHOP, *, form: bool = False
) -> httpx.Response:
    """POST ``params`` and the fake's credentials to ``shop``'s token endpoint."""
    body = {"client_id": fake.client_id, "client_secret": fake.client_secret, **params}
    async with fake.http_client() as client:
        url = f"https://{shop}/admin/oauth/access_token"
        if form:
            return await client.post(url, data=body)
        return await client.post(url, json=body)


async def refresh(fake: FakeShopify, refresh_token: str, shop: str = SHOP) -> httpx.Response:
    """POST a refresh grant."""
    return await post_grant(fake, shop, grant_type="refresh_token", refresh_token=refresh_token)


async def api_status(fake: FakeShopify, access_token: str, url: str = SHOP_URL) -> int:
    """The status of an Admin API GET with ``access_token``."""
    async with fake.http_client() as client:
        response = await client.get(url, headers={"X-Shopify-Access-Token": access_token})
    return response.status_code


def body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a response."""
    data = response.json()
    assert isinstance(data, dict)
    return data
