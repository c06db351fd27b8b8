"""FakeShopify is strict where Shopify is.

Revoked access tokens, the recovery window's end, lost answers, the app's
client secrets, and Retry-After windows.
"""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

from shoptoken.testing import FakeShopify, Fault, FaultKind

from . import SHOP, api_status, body, post_grant, refresh, send_grant

HOUR = 3600.0


async def test_rotation_revokes_the_previous_access_token_at_once(endpoint: FakeShopify) -> None:
    """A call with the access token a refresh replaced is 401, counted as revoked."""
    first = endpoint.install(SHOP)
    second = body(await refresh(endpoint, first.refresh_token or ""))
    assert await api_status(endpoint, first.access_token) == 401
    assert await api_status(endpoint, second["access_token"]) == 200
    stats = endpoint.statistics(SHOP)
    assert (stats.api_calls, stats.api_calls_rejected) == (2, 1)
    assert (stats.api_calls_revoked, stats.api_calls_expired) == (1, 0)
    assert endpoint.api_calls_revoked == {SHOP: 1}
    assert endpoint.api_calls_expired == {}


async def test_expired_and_revoked_calls_are_counted_apart(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """Past its expiry: expired; replaced after expiring: still expired; unknown: neither."""
    first = endpoint.install(SHOP)
    await trio.sleep(HOUR)
    assert await api_status(endpoint, first.access_token) == 401
    # Replaced once it had already expired: it died of age, not of the rotation.
    await refresh(endpoint, first.refresh_token or "")
    assert await api_status(endpoint, first.access_token) == 401
    assert await api_status(endpoint, "shpat_never_issued") == 401
    stats = endpoint.statistics(SHOP)
    assert (stats.api_calls_rejected, stats.api_calls_expired, stats.api_calls_revoked) == (3, 2, 0)


async def test_uninstall_and_reinstall_revoke(endpoint: FakeShopify) -> None:
    """Tokens killed by an uninstall or replaced by a new install count as revoked."""
    online_code = endpoint.authorization_code(SHOP, online=True)
    online = body(await post_grant(endpoint, code=online_code))["access_token"]
    first = endpoint.install(SHOP)
    second = endpoint.install(SHOP)
    endpoint.revoke(SHOP)
    for token in (first.access_token, second.access_token, online):
        assert await api_status(endpoint, token) == 401
    assert endpoint.statistics(SHOP).api_calls_revoked == 3


async def test_using_the_new_access_token_ends_the_recovery_window(
    endpoint: FakeShopify,
) -> None:
    """Once the new pair's access token is used, the previous refresh token is invalid_grant."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    new = body(await refresh(endpoint, r0))
    assert endpoint.refresh_token_works(SHOP, r0)
    assert await api_status(endpoint, new["access_token"]) == 200
    assert not endpoint.refresh_token_works(SHOP, r0)
    replay = await refresh(endpoint, r0)
    assert (replay.status_code, body(replay)["error"]) == (400, "invalid_grant")
    # The new pair itself is untouched.
    assert (await refresh(endpoint, new["refresh_token"])).status_code == 200


async def test_old_refresh_token_rotates_again_until_the_new_pair_is_used(
    endpoint: FakeShopify,
) -> None:
    """Inside the window the old refresh token gives a new pair; the unused one dies."""
    first = endpoint.install(SHOP)
    r0 = first.refresh_token or ""
    unused = body(await refresh(endpoint, r0))
    again = body(await refresh(endpoint, r0))
    assert again["access_token"] != unused["access_token"]
    assert await api_status(endpoint, unused["access_token"]) == 401
    assert not endpoint.refresh_token_works(SHOP, unused["refresh_token"])
    assert await api_status(endpoint, again["access_token"]) == 200
    assert body(await refresh(endpoint, r0))["error"] == "invalid_grant"
    stats = endpoint.statistics(SHOP)
    assert (stats.refreshes, stats.refreshes_recovered, stats.api_calls_revoked) == (2, 1, 1)


async def test_an_expired_new_access_token_does_not_end_the_window(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """A refused call is no use of the pair: the previous refresh token still works."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    new = body(await refresh(endpoint, r0))
    await trio.sleep(HOUR)
    assert await api_status(endpoint, new["access_token"]) == 401
    assert endpoint.refresh_token_works(SHOP, r0)


@pytest.mark.parametrize("fault", Fault.lost_answers(), ids=repr)
async def test_lost_answers_rotate_in_process(endpoint: FakeShopify, fault: Fault) -> None:
    """Each lost answer: no usable reply, yet Shopify rotated; the old refresh token recovers."""
    first = endpoint.install(SHOP)
    endpoint.fail_next(fault)
    try:
        response = await refresh(endpoint, first.refresh_token or "")
    except httpx.TransportError:
        pass
    else:
        assert response.status_code >= 500
        assert "access_token" not in response.text
    assert endpoint.refreshes == {SHOP: 1}
    assert endpoint.grants_lost == endpoint.statistics(SHOP).grants_lost == 1
    assert await api_status(endpoint, first.access_token) == 401
    assert endpoint.statistics(SHOP).api_calls_revoked == 1
    recovered = await refresh(endpoint, first.refresh_token or "")
    assert recovered.status_code == 200
    assert endpoint.recovered == 1


async def test_a_lost_answer_of_a_refused_grant_is_no_lost_grant(endpoint: FakeShopify) -> None:
    """A processed fault on a refresh Shopify refused loses nothing: grants_lost stays 0."""
    endpoint.install(SHOP)
    endpoint.fail_next(Fault.http(502, processed=True))
    assert (await refresh(endpoint, "shprt_unknown")).status_code == 502
    assert endpoint.rejected == 1
    assert endpoint.grants_lost == 0


def test_lost_answers_cover_every_way_of_losing_one() -> None:
    """Timeout, close, reset, 502, 504 and 520, each after processing."""
    assert all(fault.processed for fault in Fault.lost_answers())
    drops = {(f.reset, f.timeout) for f in Fault.lost_answers() if f.kind is FaultKind.DROP}
    assert drops == {(False, False), (True, False), (False, True)}
    statuses = {f.status for f in Fault.lost_answers() if f.kind is FaultKind.STATUS}
    assert statuses == {502, 504, 520}


async def test_timed_out_waits_then_raises_read_timeout(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """Fault.timed_out(delay=...) holds the request that long, then httpx.ReadTimeout."""
    first = endpoint.install(SHOP)
    endpoint.fail_next(Fault.timed_out(delay=30.0))
    start = trio.current_time()
    with pytest.raises(httpx.ReadTimeout):
        await refresh(endpoint, first.refresh_token or "")
    assert trio.current_time() - start == 30.0
    assert endpoint.refreshes == {}  # not processed: nothing rotated


@pytest.mark.parametrize("grant", ["refresh", "code", "token_exchange"])
async def test_wrong_client_secret_is_invalid_client_for_every_grant(
    endpoint: FakeShopify, grant: str
) -> None:
    """Refresh, code and token exchange all answer 401 invalid_client, spending nothing."""
    token = endpoint.install(SHOP)
    params = {
        "refresh": {"grant_type": "refresh_token", "refresh_token": token.refresh_token or ""},
        "code": {"code": endpoint.authorization_code(SHOP), "expiring": "1"},
        "token_exchange": {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": endpoint.session_token(SHOP),
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
        },
    }[grant]
    response = await send_grant(endpoint, {**params, "client_secret": "shpss_" + "0" * 32})
    assert (response.status_code, body(response)["error"]) == (401, "invalid_client")
    assert endpoint.statistics(SHOP).clients_rejected == 1
    assert endpoint.is_valid(SHOP, token.access_token)
    assert (await send_grant(endpoint, params)).status_code == 200


async def test_client_secret_rotation(endpoint: FakeShopify) -> None:
    """Both secrets work until the old one is revoked; callbacks are signed with the old one."""
    old = endpoint.client_secret
    token = endpoint.install(SHOP)
    new = endpoint.rotate_client_secret()
    assert (endpoint.client_secret, endpoint.old_client_secret, endpoint.signing_secret) == (
        new,
        old,
        old,
    )
    with pytest.raises(RuntimeError, match="revoke"):
        endpoint.rotate_client_secret()
    with_old = await post_grant(
        endpoint,
        client_secret=old,
        grant_type="refresh_token",
        refresh_token=token.refresh_token or "",
    )
    assert with_old.status_code == 200
    # A real client configured with both secrets walks the code flow and refreshes.
    async with endpoint.oauth() as oauth:
        installed = await endpoint.authorize(oauth, SHOP)
    endpoint.revoke_old_client_secret()
    assert endpoint.signing_secret == new
    refused = await post_grant(
        endpoint,
        client_secret=old,
        grant_type="refresh_token",
        refresh_token=installed.refresh_token or "",
    )
    assert (refused.status_code, body(refused)["error"]) == (401, "invalid_client")
    accepted = await post_grant(
        endpoint, grant_type="refresh_token", refresh_token=installed.refresh_token or ""
    )
    assert accepted.status_code == 200


async def test_session_tokens_signed_with_either_secret_during_rotation(
    endpoint: FakeShopify,
) -> None:
    """A token exchange takes a session token signed with the old or the new secret."""
    old = endpoint.client_secret
    new = endpoint.rotate_client_secret("shpss_" + "7" * 32)
    params = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
    }
    for secret in (old, new):
        subject = endpoint.session_token(SHOP, secret=secret)
        assert (await send_grant(endpoint, {**params, "subject_token": subject})).status_code == 200
    endpoint.revoke_old_client_secret()
    stale = await send_grant(
        endpoint, {**params, "subject_token": endpoint.session_token(SHOP, secret=old)}
    )
    assert body(stale)["error"] == "invalid_subject_token"


async def test_retry_after_window_refuses_early_requests(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """Inside a 429's Retry-After the token endpoint answers 429 again (counted); then it works."""
    token = endpoint.install(SHOP)
    endpoint.fail_next(Fault.rate_limited(5.0))
    assert (await refresh(endpoint, token.refresh_token or "")).status_code == 429
    await trio.sleep(1.5)
    early = await refresh(endpoint, token.refresh_token or "")
    assert (early.status_code, early.headers["Retry-After"]) == (429, "3.5")
    assert endpoint.statistics(SHOP).token_requests_throttled == 1
    assert endpoint.throttled == 1
    assert endpoint.refreshes == {}
    # Another shop is not in this shop's window.
    other = endpoint.install("other-store")
    assert (
        await refresh(endpoint, other.refresh_token or "", shop="other-store.myshopify.com")
    ).status_code == 200
    await trio.sleep(3.5)
    assert (await refresh(endpoint, token.refresh_token or "")).status_code == 200
    assert endpoint.throttled == 1
