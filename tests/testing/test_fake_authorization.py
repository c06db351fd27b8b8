"""FakeShopify's authorization code grant and its signed callback queries."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest
import trio
import trio.testing

from shoptoken import InvalidCallback, ReauthorizationRequired, RefreshFailed
from shoptoken.testing import FakeShopify

from . import SHOP, api_status, body, post_grant

CODE_USED = "The authorization code was not found or was already used"


def independent_hmac(query: dict[str, str], secret: str) -> str:
    """Shopify's documented signature, computed here from scratch."""
    message = "&".join(f"{key}={query[key]}" for key in sorted(query) if key != "hmac")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


async def test_callback_query_is_signed_as_shopify_signs(endpoint: FakeShopify) -> None:
    """The query carries code, host, shop, state, timestamp and a matching hex HMAC."""
    query = endpoint.callback_query(SHOP, state="nonce-1")
    assert set(query) == {"code", "host", "shop", "state", "timestamp", "hmac"}
    assert query["shop"] == SHOP
    assert query["state"] == "nonce-1"
    assert query["timestamp"] == str(int(endpoint.clock()))
    padded = query["host"] + "=" * (-len(query["host"]) % 4)
    assert base64.b64decode(padded) == b"admin.shopify.com/store/my-store"
    assert query["hmac"] == independent_hmac(query, endpoint.client_secret)
    assert query["hmac"] != independent_hmac(query, "another-secret")


def test_callback_signature_escapes_delimiters() -> None:
    """A value holding & or % is escaped before signing, so it cannot pose as a pair."""
    from shoptoken.testing._callback import query_signature

    secret = "shpss_" + "0" * 32
    tricky = query_signature({"a": "1&b=2", "c": "50%"}, secret)
    expected = hmac.new(secret.encode(), b"a=1%26b=2&c=50%25", hashlib.sha256).hexdigest()
    assert tricky == expected
    assert tricky != query_signature({"a": "1", "b": "2", "c": "50%"}, secret)


async def test_codes_are_single_use(endpoint: FakeShopify) -> None:
    """A code works once; its reuse gets Shopify's 400 invalid_request answer."""
    code = endpoint.authorization_code(SHOP, scopes=["read_orders", "write_products"])
    first = await post_grant(endpoint, code=code)
    assert first.status_code == 200
    assert body(first) == {
        "access_token": body(first)["access_token"],
        "scope": "read_orders,write_products",
    }
    again = await post_grant(endpoint, code=code)
    assert again.status_code == 400
    assert body(again) == {"error": "invalid_request", "error_description": CODE_USED}
    assert endpoint.statistics(SHOP).codes_exchanged == 1


async def test_code_without_expiring_gives_a_non_expiring_token(endpoint: FakeShopify) -> None:
    """No ``expiring``: an access token only, no expires_in, valid for good."""
    data = body(await post_grant(endpoint, code=endpoint.authorization_code(SHOP)))
    assert set(data) == {"access_token", "scope"}
    assert await api_status(endpoint, data["access_token"]) == 200


async def test_code_with_expiring_gives_an_expiring_pair(endpoint: FakeShopify) -> None:
    """``expiring: "1"`` (or 1, or a form field) gives an expiring pair."""
    for expiring, form in (("1", False), ("1", True)):
        code = endpoint.authorization_code(SHOP)
        data = body(await post_grant(endpoint, form=form, code=code, expiring=expiring))
        assert data["expires_in"] == 3600
        assert data["refresh_token_expires_in"] == 90 * 86400
        assert endpoint.refresh_token_works(SHOP, data["refresh_token"])
    async with endpoint.http_client() as client:
        code = endpoint.authorization_code(SHOP)
        response = await client.post(
            f"https://{SHOP}/admin/oauth/access_token",
            json={
                "client_id": endpoint.client_id,
                "client_secret": endpoint.client_secret,
                "code": code,
                "expiring": 1,
            },
        )
    assert "refresh_token" in body(response)


async def test_online_code_gives_a_users_token(endpoint: FakeShopify) -> None:
    """A per-user code gives an online token: expiring, no refresh token, associated_user."""
    code = endpoint.authorization_code(SHOP, online=True, user_id=42, scopes="read_orders")
    data = body(await post_grant(endpoint, code=code, expiring="1"))
    assert "refresh_token" not in data
    assert data["expires_in"] == 86399
    assert data["associated_user"]["id"] == 42
    assert data["associated_user_scope"] == "read_orders"
    assert endpoint.is_valid(SHOP, data["access_token"])


async def test_codes_are_bound_to_their_shop_and_expire(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """A code is refused at another shop, after 10 minutes, and once the app is uninstalled."""
    code = endpoint.authorization_code(SHOP)
    elsewhere = await post_grant(endpoint, "other-store.myshopify.com", code=code)
    assert body(elsewhere)["error_description"] == CODE_USED
    stale = endpoint.authorization_code(SHOP)
    await trio.sleep(600)
    assert body(await post_grant(endpoint, code=stale))["error_description"] == CODE_USED
    revoked = endpoint.authorization_code(SHOP)
    endpoint.revoke(SHOP)
    assert body(await post_grant(endpoint, code=revoked))["error_description"] == CODE_USED
    # The first code was not spent by the attempt elsewhere... but it is 10 minutes old.
    assert body(await post_grant(endpoint, code=code))["error_description"] == CODE_USED


async def test_a_new_offline_token_replaces_the_old_one(endpoint: FakeShopify) -> None:
    """Re-authorizing (expiring or not) replaces the shop's offline token."""
    legacy = endpoint.install_non_expiring(SHOP)
    data = body(await post_grant(endpoint, code=endpoint.authorization_code(SHOP), expiring="1"))
    assert not endpoint.is_valid(SHOP, legacy.access_token)
    assert endpoint.is_valid(SHOP, data["access_token"])
    again = body(await post_grant(endpoint, code=endpoint.authorization_code(SHOP)))
    assert not endpoint.is_valid(SHOP, data["access_token"])
    assert not endpoint.refresh_token_works(SHOP, data["refresh_token"])
    assert endpoint.is_valid(SHOP, again["access_token"])


async def test_authorize_walks_the_real_flow(
    endpoint: FakeShopify, clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """authorize(): ShopifyOAuth verifies the signed callback and exchanges its code."""
    async with endpoint.oauth() as oauth:
        token = await endpoint.authorize(oauth, "MY-STORE", ["read_orders", "write_orders"])
        online = await endpoint.authorize(oauth, SHOP, "read_orders", online=True, user_id=7)
    assert token.refresh_token is not None
    assert token.scope == "read_orders,write_orders"
    assert endpoint.is_valid(SHOP, token.access_token)
    assert endpoint.refresh_token_works(SHOP, token.refresh_token)
    assert online.associated_user_id == 7
    assert online.refresh_token is None
    assert endpoint.statistics(SHOP).codes_exchanged == 2


async def test_shopify_oauth_rejects_what_the_fake_flags(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """A tampered callback fails verification; a reused code fails the exchange."""
    async with endpoint.oauth() as oauth:
        query = endpoint.callback_query(SHOP, state="s")
        with pytest.raises(InvalidCallback):
            oauth.verify_callback({**query, "shop": "evil.myshopify.com"}, state="s")
        with pytest.raises(InvalidCallback):
            oauth.verify_callback(query, state="other")
        verified = oauth.verify_callback(query, state="s")
        await oauth.exchange_code(verified["shop"], query["code"])
        with pytest.raises((ReauthorizationRequired, RefreshFailed)):
            await oauth.exchange_code(SHOP, query["code"])
