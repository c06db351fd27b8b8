"""FakeShopify's refresh grant: rotation, one active pair, the recovery window, revocation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from shoptoken import MemoryStore, ReauthorizationRequired, TokenKey, open_token_manager
from shoptoken.testing import FakeShopify

from . import SHOP, api_status, body, post_grant, refresh

DAY = 86400.0


async def test_every_refresh_rotates_both_tokens(endpoint: FakeShopify) -> None:
    """A refresh answers a new access and refresh token with Shopify's lifetimes."""
    first = endpoint.install(SHOP)
    response = await refresh(endpoint, first.refresh_token or "")
    assert response.status_code == 200
    data = body(response)
    assert set(data) == {
        "access_token",
        "scope",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
    }
    assert data["access_token"] != first.access_token
    assert data["refresh_token"] != first.refresh_token
    assert (data["expires_in"], data["refresh_token_expires_in"]) == (3600, 90 * 86400)
    assert data["scope"] == "read_orders"
    assert endpoint.refreshes == {SHOP: 1}


async def test_form_encoded_refresh_is_accepted(endpoint: FakeShopify) -> None:
    """Shopify takes form bodies as well as JSON: so does the fake."""
    first = endpoint.install(SHOP)
    response = await post_grant(
        endpoint, form=True, grant_type="refresh_token", refresh_token=first.refresh_token or ""
    )
    assert response.status_code == 200


async def test_only_one_pair_is_active(endpoint: FakeShopify) -> None:
    """A new pair revokes every older access token at once."""
    first = endpoint.install(SHOP)
    second = body(await refresh(endpoint, first.refresh_token or ""))
    assert not endpoint.is_valid(SHOP, first.access_token)
    assert endpoint.is_valid(SHOP, second["access_token"])
    assert await api_status(endpoint, first.access_token) == 401
    assert await api_status(endpoint, second["access_token"]) == 200
    # Installing again (a new authorization) replaces the pair, with no recovery.
    endpoint.install(SHOP)
    assert not endpoint.is_valid(SHOP, second["access_token"])
    assert not endpoint.refresh_token_works(SHOP, second["refresh_token"])
    assert not endpoint.refresh_token_works(SHOP, first.refresh_token or "")


async def test_previous_refresh_token_works_until_its_replacement_is_used(
    endpoint: FakeShopify,
) -> None:
    """Recovery window: R0 works again until R1 (its replacement) is first used."""
    first = endpoint.install(SHOP)
    r0 = first.refresh_token or ""
    lost = body(await refresh(endpoint, r0))  # the answer the app never saved
    recovered = await refresh(endpoint, r0)
    assert recovered.status_code == 200
    r2 = body(recovered)["refresh_token"]
    assert endpoint.statistics(SHOP).refreshes_recovered == 1
    assert endpoint.recovered == 1
    # The lost pair was replaced by the recovered one: its tokens are dead.
    assert not endpoint.is_valid(SHOP, lost["access_token"])
    assert not endpoint.refresh_token_works(SHOP, lost["refresh_token"])
    # R0 still works (R2, its latest replacement, is unused)...
    assert endpoint.refresh_token_works(SHOP, r0)
    # ...until R2 is used: then R0 is retired for good.
    assert (await refresh(endpoint, r2)).status_code == 200
    replay = await refresh(endpoint, r0)
    assert replay.status_code == 400
    assert body(replay)["error"] == "invalid_grant"
    assert endpoint.rejected == 1


async def test_recovery_window_is_capped_at_30_days(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """The previous refresh token stops working 30 days after its first use."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    await refresh(endpoint, r0)
    await trio.sleep(30 * DAY - 1)
    assert endpoint.refresh_token_works(SHOP, r0)
    await trio.sleep(1)
    assert not endpoint.refresh_token_works(SHOP, r0)
    assert body(await refresh(endpoint, r0))["error"] == "invalid_grant"


async def test_recovery_never_outlives_the_token_itself(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """A refresh token used on day 80 of 90 is recoverable for 10 days, not 30."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    await trio.sleep(80 * DAY)
    await refresh(endpoint, r0)
    await trio.sleep(10 * DAY - 1)
    assert endpoint.refresh_token_works(SHOP, r0)
    await trio.sleep(1)
    assert not endpoint.refresh_token_works(SHOP, r0)


async def test_replayed_and_unknown_refresh_tokens_are_invalid_grant(
    endpoint: FakeShopify,
) -> None:
    """Retired, unknown and other shops' refresh tokens answer 400 invalid_grant."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    other = endpoint.install("other-store").refresh_token or ""
    r1 = body(await refresh(endpoint, r0))["refresh_token"]
    r2 = body(await refresh(endpoint, r1))["refresh_token"]
    for token in (r0, "shprt_made_up", other):
        response = await refresh(endpoint, token)
        assert (response.status_code, body(response)["error"]) == (400, "invalid_grant")
    assert (await refresh(endpoint, "x", shop="never-installed.myshopify.com")).status_code == 400
    assert endpoint.refresh_token_works(SHOP, r2)
    assert endpoint.statistics(SHOP).refreshes_rejected == 3


async def test_expired_refresh_token_is_invalid_grant(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """A refresh token dies after 90 days, or when expire_refresh_token says so."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    await trio.sleep(90 * DAY)
    assert body(await refresh(endpoint, r0))["error"] == "invalid_grant"
    r1 = endpoint.install(SHOP).refresh_token or ""
    endpoint.expire_refresh_token(SHOP)
    assert body(await refresh(endpoint, r1))["error"] == "invalid_grant"


async def test_revoked_app_answers_401_and_kills_every_token(endpoint: FakeShopify) -> None:
    """After uninstall a refresh is 401 invalid_request and no token works."""
    first = endpoint.install(SHOP)
    endpoint.revoke(SHOP)
    response = await refresh(endpoint, first.refresh_token or "")
    assert (response.status_code, body(response)["error"]) == (401, "invalid_request")
    assert not endpoint.is_valid(SHOP, first.access_token)
    assert endpoint.statistics(SHOP).refreshes_rejected == 1
    # Installing again brings the shop back.
    again = endpoint.install(SHOP)
    assert (await refresh(endpoint, again.refresh_token or "")).status_code == 200


async def test_wrong_client_credentials(endpoint: FakeShopify) -> None:
    """A wrong secret is 401 invalid_client; an unknown client id is Shopify's 400."""
    first = endpoint.install(SHOP)
    wrong_secret = await post_grant(
        endpoint,
        client_secret="shpss_wrong",
        grant_type="refresh_token",
        refresh_token=first.refresh_token or "",
    )
    assert (wrong_secret.status_code, body(wrong_secret)["error"]) == (401, "invalid_client")
    wrong_id = await post_grant(
        endpoint,
        client_id="another-app",
        grant_type="refresh_token",
        refresh_token=first.refresh_token or "",
    )
    assert (wrong_id.status_code, body(wrong_id)["error"]) == (400, "invalid_request")
    assert "api_key" in body(wrong_id)["error_description"]
    # Neither spent the refresh token.
    assert endpoint.refresh_token_works(SHOP, first.refresh_token or "")


def test_repr_shows_no_secret() -> None:
    """The fake's repr names its settings, never its client secrets or tokens."""
    fake = FakeShopify()
    token = fake.install(SHOP)
    text = repr(fake)
    assert "FakeShopify(" in text
    for secret in (
        fake.client_secret,
        fake.customer_client_secret or "",
        token.access_token,
        token.refresh_token or "",
    ):
        assert secret not in text


async def test_malformed_requests(endpoint: FakeShopify) -> None:
    """Bad bodies, unknown grants and unknown paths get OAuth errors, not crashes."""
    async with endpoint.http_client() as client:
        not_json = await client.post(f"https://{SHOP}/admin/oauth/access_token", content=b"{")
        nowhere = await client.get(f"https://{SHOP}/admin/oauth/nowhere")
    assert body(not_json)["error"] == "invalid_request"
    assert nowhere.status_code == 404
    unknown = await post_grant(endpoint, grant_type="password")
    assert body(unknown)["error"] == "unsupported_grant_type"
    missing = await post_grant(endpoint)
    assert body(missing)["error"] == "invalid_request"


async def test_shopify_oauth_maps_the_fakes_answers(
    endpoint: FakeShopify, clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """The real client over the fake: rotation works, a revoked shop needs re-authorization."""
    key = TokenKey.offline(SHOP)
    store = MemoryStore()
    await store.save_tokens(key, endpoint.install(SHOP))
    async with endpoint.oauth() as oauth, open_token_manager(oauth, store, clock=clock) as tokens:
        for _ in range(5):
            token = await tokens.valid_token(key)
            assert endpoint.is_valid(SHOP, token.access_token)
            await trio.sleep(3600)
        endpoint.revoke(SHOP)
        with pytest.raises(ReauthorizationRequired):
            await tokens.refresh_token(key)
    assert endpoint.statistics(SHOP).refreshes == 5
