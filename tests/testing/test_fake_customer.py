"""FakeShopify's Customer Account API: discovery, PKCE logins, refresh rotation."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import jwt
import pytest
import trio
import trio.testing

from shoptoken import ReauthorizationRequired, TokenKey
from shoptoken.testing import FakeShopify

from . import SHOP, body

VERIFIER = "v" * 64
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=")
REDIRECT = "https://shop.example.com/account/callback"


def token_url(fake: FakeShopify) -> str:
    """The shop's customer token endpoint."""
    return f"https://shopify.com/authentication/{fake.shop_id(SHOP)}/oauth/token"


async def customer_grant(
    fake: FakeShopify, *, auth: tuple[str | bytes, str | bytes] | None = None, **params: str
) -> tuple[int, dict[str, Any]]:
    """POST a form-encoded grant to the customer token endpoint."""
    async with fake.http_client() as client:
        response = await client.post(
            token_url(fake),
            data={"client_id": fake.customer_client_id, **params},
            auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth,
        )
    return response.status_code, body(response)


async def login(fake: FakeShopify, customer_id: str = "42") -> dict[str, Any]:
    """Log a customer in with PKCE; return the token answer."""
    code = fake.customer_login(
        SHOP, customer_id, code_challenge=CHALLENGE.decode(), redirect_uri=REDIRECT
    )
    status, data = await customer_grant(
        fake,
        grant_type="authorization_code",
        code=code,
        code_verifier=VERIFIER,
        redirect_uri=REDIRECT,
    )
    assert status == 200, data
    return data


async def test_discovery_document_points_at_shopify_com(endpoint: FakeShopify) -> None:
    """The shop's OpenID configuration names the endpoints under its shop id."""
    async with endpoint.http_client() as client:
        response = await client.get(f"https://{SHOP}/.well-known/openid-configuration")
    data = body(response)
    base = f"https://shopify.com/authentication/{endpoint.shop_id(SHOP)}"
    assert data["authorization_endpoint"] == f"{base}/oauth/authorize"
    assert data["token_endpoint"] == f"{base}/oauth/token"
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert endpoint.shop_id(SHOP) == FakeShopify().shop_id("my-store")  # stable


async def test_pkce_login_gives_a_customer_pair(endpoint: FakeShopify) -> None:
    """A login with the right verifier gives access, refresh and id tokens."""
    data = await login(endpoint)
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 3600
    claims = jwt.decode(data["id_token"], options={"verify_signature": False})
    assert claims["sub"] == "gid://shopify/Customer/42"
    assert claims["aud"] == endpoint.customer_client_id
    assert endpoint.customer_token_valid(SHOP, data["access_token"])
    assert endpoint.statistics(SHOP).customer_logins == 1


async def test_login_codes_check_verifier_redirect_and_single_use(endpoint: FakeShopify) -> None:
    """A wrong verifier or redirect_uri, or a reused code, is 400 invalid_grant."""
    code = endpoint.customer_login(
        SHOP, 1, code_challenge=CHALLENGE.decode(), redirect_uri=REDIRECT
    )
    status, data = await customer_grant(
        endpoint,
        grant_type="authorization_code",
        code=code,
        code_verifier="w" * 64,
        redirect_uri=REDIRECT,
    )
    assert (status, data["error"]) == (400, "invalid_grant")
    for verifier, redirect in ((VERIFIER, "https://evil.example/cb"), (VERIFIER, REDIRECT)):
        code = endpoint.customer_login(
            SHOP, 1, code_challenge=CHALLENGE.decode(), redirect_uri=REDIRECT
        )
        first = await customer_grant(
            endpoint,
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
            redirect_uri=redirect,
        )
        again = await customer_grant(
            endpoint,
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
            redirect_uri=REDIRECT,
        )
        assert again[0] == 400
    assert first[0] == 200


async def test_public_clients_must_use_pkce(endpoint: FakeShopify) -> None:
    """A code without a challenge needs a confidential client (HTTP Basic)."""
    code = endpoint.customer_login(SHOP, 1)
    status, data = await customer_grant(endpoint, grant_type="authorization_code", code=code)
    assert (status, data["error"]) == (400, "invalid_request")
    code = endpoint.customer_login(SHOP, 1)
    secret = endpoint.customer_client_secret or ""
    status, _ = await customer_grant(
        endpoint,
        auth=(endpoint.customer_client_id, secret),
        grant_type="authorization_code",
        code=code,
    )
    assert status == 200


async def test_refresh_rotates_and_rejects_replays(endpoint: FakeShopify) -> None:
    """Each refresh rotates both tokens; a spent refresh token is 400 invalid_grant."""
    first = await login(endpoint)
    status, second = await customer_grant(
        endpoint, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200
    assert second["refresh_token"] != first["refresh_token"]
    assert "id_token" not in second
    status, replay = await customer_grant(
        endpoint, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert (status, replay["error"]) == (400, "invalid_grant")
    assert endpoint.customer_refresh_token_works(SHOP, second["refresh_token"])
    stats = endpoint.statistics(SHOP)
    assert (stats.customer_refreshes, stats.customer_refreshes_rejected) == (1, 1)


async def test_client_authentication(endpoint: FakeShopify) -> None:
    """A wrong Basic secret or client id is 401 invalid_client; JSON bodies are refused."""
    first = await login(endpoint)
    refresh_token = first["refresh_token"]
    params = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    wrong = await customer_grant(
        endpoint,
        auth=(endpoint.customer_client_id, "nope"),
        grant_type="refresh_token",
        refresh_token=refresh_token,
    )
    assert wrong[0] == 401
    other = await customer_grant(
        endpoint, client_id="shp_other", grant_type="refresh_token", refresh_token=refresh_token
    )
    assert other[0] == 401
    async with endpoint.http_client() as client:
        as_json = await client.post(
            token_url(endpoint), json={"client_id": endpoint.customer_client_id, **params}
        )
        unknown_shop = await client.post(
            "https://shopify.com/authentication/1/oauth/token", data=params
        )
    assert body(as_json)["error"] == "invalid_request"
    assert unknown_shop.status_code == 404
    assert endpoint.customer_refresh_token_works(SHOP, first["refresh_token"])


async def test_customer_api_and_expiry(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """The Customer Account API takes a live token, refuses it after expiry or logout."""
    data = await login(endpoint)
    url = f"https://{SHOP}/customer/api/2026-10/graphql"
    async with endpoint.http_client() as client:
        ok = await client.post(url, headers={"Authorization": data["access_token"]}, json={})
        assert body(ok)["data"]["customer"]["id"] == "gid://shopify/Customer/42"
        await trio.sleep(3600)
        late = await client.post(url, headers={"Authorization": data["access_token"]}, json={})
        assert late.status_code == 401
    again = await login(endpoint)
    endpoint.log_out_customer(SHOP, 42)
    assert not endpoint.customer_token_valid(SHOP, again["access_token"])
    assert not endpoint.customer_refresh_token_works(SHOP, again["refresh_token"])
    assert endpoint.api_calls_rejected == {SHOP: 1}


@pytest.mark.parametrize("confidential", [False, True])
async def test_customer_account_oauth_over_the_fake(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock, confidential: bool
) -> None:
    """CustomerAccountOAuth logs in, refreshes, and needs a new login after logout."""
    code = endpoint.customer_login(
        SHOP, 42, code_challenge=CHALLENGE.decode(), redirect_uri=REDIRECT
    )
    key = TokenKey.customer(SHOP, "gid://shopify/Customer/42")
    async with endpoint.customer_oauth(SHOP, confidential=confidential, discover=True) as customers:
        await customers.discover()
        token = await customers.exchange_code(code, REDIRECT, code_verifier=VERIFIER)
        refreshed = await customers.refresh(key, token)
        assert endpoint.customer_token_valid(SHOP, refreshed.access_token)
        endpoint.log_out_customer(SHOP)
        with pytest.raises(ReauthorizationRequired):
            await customers.refresh(key, refreshed)
    assert isinstance(endpoint.transport(), httpx.MockTransport)
