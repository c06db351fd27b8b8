"""FakeShopify's token exchange: session tokens checked as Shopify does, and migration."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
import trio
import trio.testing

from shoptoken import InvalidSessionToken, TokenKey
from shoptoken.testing import FakeShopify

from . import ID_TOKEN, OFFLINE, ONLINE, SHOP, TOKEN_EXCHANGE, api_status, body, refresh, send_grant

WEEK = 7 * 86400.0


async def exchange(fake: FakeShopify, subject: str, *, online: bool = False, **extra: str) -> Any:
    """POST a session token exchange; return (status, JSON body)."""
    params = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": ID_TOKEN,
        "requested_token_type": ONLINE if online else OFFLINE,
        **extra,
    }
    response = await send_grant(fake, params)
    return response.status_code, body(response)


async def migrate(fake: FakeShopify, token: str, shop: str = SHOP, **extra: str) -> Any:
    """POST a migration (token exchange of a non-expiring token)."""
    params = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": token,
        "subject_token_type": OFFLINE,
        "expiring": "1",
        "requested_token_type": OFFLINE,
        **extra,
    }
    response = await send_grant(fake, params, shop)
    return response.status_code, body(response)


async def test_session_token_has_app_bridge_shape(endpoint: FakeShopify) -> None:
    """iss, dest, aud, sub, exp, nbf, iat, jti, sid; HS256 with the client secret."""
    token = endpoint.session_token(SHOP, user_id=42, expires_in=60)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(
        token,
        endpoint.client_secret,
        algorithms=["HS256"],
        audience=endpoint.client_id,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    now = int(endpoint.clock())
    assert claims.pop("jti")
    assert claims.pop("sid")
    assert claims == {
        "iss": f"https://{SHOP}/admin",
        "dest": f"https://{SHOP}",
        "aud": endpoint.client_id,
        "sub": "42",
        "exp": now + 60,
        "nbf": now,
        "iat": now,
    }
    assert "aud" not in jwt.decode(
        endpoint.session_token(SHOP, aud=None), options={"verify_signature": False}
    )


async def test_offline_exchange(endpoint: FakeShopify) -> None:
    """An offline exchange gives a non-expiring token, or an expiring pair with expiring=1."""
    status, data = await exchange(endpoint, endpoint.session_token(SHOP))
    assert status == 200
    assert set(data) == {"access_token", "scope"}
    status, pair = await exchange(endpoint, endpoint.session_token(SHOP), expiring="1")
    assert (status, pair["expires_in"]) == (200, 3600)
    assert endpoint.refresh_token_works(SHOP, pair["refresh_token"])
    assert not endpoint.is_valid(SHOP, data["access_token"])  # one offline token per shop
    assert endpoint.statistics(SHOP).token_exchanges == 2


async def test_online_exchange(endpoint: FakeShopify) -> None:
    """An online exchange gives the session's user a token: no refresh token, associated_user."""
    status, data = await exchange(endpoint, endpoint.session_token(SHOP, user_id=9), online=True)
    assert status == 200
    assert "refresh_token" not in data
    assert data["associated_user"]["id"] == 9
    assert data["associated_user_scope"] == data["scope"]
    assert await api_status(endpoint, data["access_token"]) == 200


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        (lambda f: f.session_token(SHOP, secret="shpss_" + "9" * 32), "signed with another key"),
        (lambda f: f.session_token(SHOP, aud="another-app"), "another app's audience"),
        (lambda f: f.session_token(SHOP, expires_in=-11), "expired beyond the leeway"),
        (lambda f: f.session_token(SHOP, nbf=int(f.clock()) + 11), "not valid yet"),
        (lambda f: f.session_token(SHOP, dest="https://other.myshopify.com"), "another shop"),
        (lambda f: f.session_token(SHOP, iss="https://other.myshopify.com/admin"), "other iss"),
        (lambda f: f.session_token(SHOP, sub=None), "no sub"),
        (lambda f: f.session_token(SHOP, alg="none"), "unsigned"),
        (lambda f: f.session_token(SHOP, alg="HS512"), "another algorithm"),
        (lambda _: "not.a.jwt", "garbage"),
        (lambda f: f.session_token(SHOP, sub="shop"), "sub not a user, online"),
    ],
)
async def test_bad_session_tokens_are_invalid_subject_token(
    endpoint: FakeShopify, forge: Any, why: str
) -> None:
    """Every forged or stale session token answers 400 invalid_subject_token."""
    status, data = await exchange(endpoint, forge(endpoint), online=True)
    assert (status, data["error"]) == (400, "invalid_subject_token"), why
    assert endpoint.statistics(SHOP).session_tokens_rejected == 1


async def test_leeway_is_ten_seconds(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """A token 9 s past exp is still accepted; 10 s past is not."""
    token = endpoint.session_token(SHOP, expires_in=60)
    await trio.sleep(69)
    assert (await exchange(endpoint, token))[0] == 200
    await trio.sleep(1)
    assert (await exchange(endpoint, token))[0] == 400


async def test_exchange_reinstalls_a_revoked_shop(endpoint: FakeShopify) -> None:
    """A valid session token means the merchant opened the app: installed again."""
    endpoint.install(SHOP)
    endpoint.revoke(SHOP)
    status, data = await exchange(endpoint, endpoint.session_token(SHOP), expiring="1")
    assert status == 200
    assert (await refresh(endpoint, data["refresh_token"])).status_code == 200


async def test_shopify_oauth_exchanges_over_the_fake(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """ShopifyOAuth.exchange_session_token gets offline and online keys from the fake."""
    async with endpoint.oauth() as oauth:
        key, token = await oauth.exchange_session_token(
            endpoint.session_token(SHOP, user_id=5), online=False
        )
        assert key == TokenKey.offline(SHOP)
        assert token.refresh_token is not None
        key, token = await oauth.exchange_session_token(
            endpoint.session_token(SHOP, user_id=5), online=True
        )
        assert key == TokenKey.online(SHOP, 5)
        with pytest.raises(InvalidSessionToken):
            await oauth.exchange_session_token(
                endpoint.session_token(SHOP, secret="shpss_" + "1" * 32), online=False
            )


async def test_migration_swaps_a_non_expiring_token_for_a_pair(endpoint: FakeShopify) -> None:
    """Migration gives an expiring pair; the old token dies for the Admin API."""
    legacy = endpoint.install_non_expiring(SHOP)
    assert await api_status(endpoint, legacy.access_token) == 200
    status, pair = await migrate(endpoint, legacy.access_token)
    assert status == 200
    assert pair["expires_in"] == 3600
    assert await api_status(endpoint, legacy.access_token) == 401
    assert await api_status(endpoint, pair["access_token"]) == 200
    assert endpoint.statistics(SHOP).migrations == 1


async def test_migration_retry_returns_the_same_pair_for_seven_days(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """A lost migration answer is recovered by retrying with the old token, within 7 days."""
    legacy = endpoint.install_non_expiring(SHOP).access_token
    _, pair = await migrate(endpoint, legacy)
    await trio.sleep(2 * 3600)  # the access token has expired meanwhile
    status, again = await migrate(endpoint, legacy)
    assert status == 200
    assert (again["access_token"], again["refresh_token"]) == (
        pair["access_token"],
        pair["refresh_token"],
    )
    assert again["expires_in"] == 3600  # extended
    assert again["refresh_token_expires_in"] == 90 * 86400 - 2 * 3600  # not extended
    assert endpoint.is_valid(SHOP, pair["access_token"])
    await trio.sleep(WEEK)
    assert (await migrate(endpoint, legacy))[1]["error"] == "invalid_subject_token"


async def test_migration_retry_ends_with_the_first_refresh(endpoint: FakeShopify) -> None:
    """Once the migrated pair is refreshed, the old token is dead for good."""
    legacy = endpoint.install_non_expiring(SHOP).access_token
    _, pair = await migrate(endpoint, legacy)
    assert (await refresh(endpoint, pair["refresh_token"])).status_code == 200
    status, data = await migrate(endpoint, legacy)
    assert (status, data["error"]) == (400, "invalid_subject_token")


async def test_migration_refusals(endpoint: FakeShopify) -> None:
    """Unknown or expiring subjects, a missing expiring=1, and revoked shops are refused."""
    expiring = endpoint.install(SHOP)
    assert (await migrate(endpoint, expiring.access_token))[1]["error"] == "invalid_subject_token"
    assert (await migrate(endpoint, "shpat_unknown"))[1]["error"] == "invalid_subject_token"
    legacy = endpoint.install_non_expiring(SHOP).access_token
    assert (await migrate(endpoint, legacy, expiring="0"))[1]["error"] == "invalid_request"
    endpoint.revoke(SHOP)
    assert (await migrate(endpoint, legacy))[1]["error"] == "invalid_subject_token"


async def test_non_expiring_tokens_stop_at_the_cutoff(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """With non_expiring_until set, legacy tokens fail the API and migration afterwards."""
    endpoint.non_expiring_until = endpoint.clock() + 3600
    legacy = endpoint.install_non_expiring(SHOP).access_token
    other = endpoint.install_non_expiring("other-store").access_token
    assert (await migrate(endpoint, legacy))[0] == 200
    await trio.sleep(3600)
    assert not endpoint.is_valid("other-store", other)
    status, data = await migrate(endpoint, other, shop="other-store.myshopify.com")
    assert (status, data["error"]) == (400, "invalid_subject_token")


async def test_shopify_oauth_migrates_over_the_fake(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """ShopifyOAuth.migrate_to_expiring gets a refreshable pair; a retry gets the same."""
    legacy = endpoint.install_non_expiring(SHOP)
    async with endpoint.oauth() as oauth:
        token = await oauth.migrate_to_expiring(SHOP, legacy)
        again = await oauth.migrate_to_expiring(SHOP, legacy.access_token)
    assert token.refresh_token is not None
    assert again.access_token == token.access_token
    assert endpoint.refresh_token_works(SHOP, token.refresh_token)
