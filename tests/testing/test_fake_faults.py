"""FakeShopify's fault injection in process: each kind, scoping, and seeded plans."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import trio
import trio.testing

from shoptoken import MemoryStore, RefreshFailed, TokenKey, open_token_manager
from shoptoken.testing import Endpoint, FakeShopify, Fault, FaultKind, FaultPlan, trio_wall_clock

from . import SHOP, TOKEN_URL, api_status, body, refresh


@pytest.mark.parametrize(
    ("step", "status", "retry_after", "errors"),
    [
        (503, 503, None, "Service Unavailable"),
        (500, 500, None, "Internal Server Error"),
        (520, 520, None, "Unknown Error"),
        (429, 429, "2", "Too Many Requests"),
        (Fault.rate_limited(0.5), 429, "0.5", "Too Many Requests"),
    ],
)
async def test_status_faults(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    endpoint: FakeShopify,
    autojump_clock: trio.testing.MockClock,
    step: int | Fault,
    status: int,
    retry_after: str | None,
    errors: str,
) -> None:
    """An error status (429 with Retry-After), and the grant not performed."""
    first = endpoint.install(SHOP)
    endpoint.fail_next(step)
    response = await refresh(endpoint, first.refresh_token or "")
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    assert body(response) == {"errors": errors}
    assert endpoint.refreshes == {}
    await trio.sleep(float(retry_after or 0))
    assert (await refresh(endpoint, first.refresh_token or "")).status_code == 200
    assert endpoint.throttled == 0


async def test_a_processed_status_fault_performs_the_grant(endpoint: FakeShopify) -> None:
    """A 520 after processing: the pair rotated, the answer lost; recovery gets it back."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    endpoint.fail_next(Fault.http(520, processed=True))
    assert (await refresh(endpoint, r0)).status_code == 520
    assert endpoint.refreshes == {SHOP: 1}
    assert (await refresh(endpoint, r0)).status_code == 200
    assert endpoint.recovered == 1


async def test_drop_raises_what_httpx_raises(endpoint: FakeShopify) -> None:
    """A drop is RemoteProtocolError; a reset is ReadError; neither performs the grant."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    endpoint.fail_next(Fault.drop(), Fault.drop(reset=True), FaultKind.DROP)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await refresh(endpoint, r0)
    with pytest.raises(httpx.ReadError, match="reset"):
        await refresh(endpoint, r0)
    with pytest.raises(httpx.RemoteProtocolError):
        await refresh(endpoint, r0)
    assert endpoint.refreshes == {}
    assert endpoint.refresh_token_works(SHOP, r0)
    assert endpoint.recovered == 0


async def test_lost_response_is_recoverable(endpoint: FakeShopify) -> None:
    """A drop after processing rotated the pair; the old refresh token recovers it."""
    first = endpoint.install(SHOP)
    endpoint.fail_next(Fault.drop(processed=True))
    with pytest.raises(httpx.RemoteProtocolError):
        await refresh(endpoint, first.refresh_token or "")
    assert endpoint.refreshes == {SHOP: 1}
    assert not endpoint.is_valid(SHOP, first.access_token)
    assert (await refresh(endpoint, first.refresh_token or "")).status_code == 200
    assert endpoint.recovered == 1


async def test_scripted_exception_is_raised_as_is(endpoint: FakeShopify) -> None:
    """fail_next(exception) raises that very exception."""
    error = httpx.ConnectError("connection refused")
    endpoint.fail_next(error)
    with pytest.raises(httpx.ConnectError) as caught:
        await refresh(endpoint, "x")
    assert caught.value is error


async def test_truncated_body_really_stops_short(endpoint: FakeShopify) -> None:
    """200 with Content-Length, half the body, then a protocol error; the grant happened."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    endpoint.fail_next(Fault.truncate(0.5))
    received: list[bytes] = []

    async def read(response: httpx.Response) -> None:
        async for chunk in response.aiter_raw():
            received.append(chunk)

    async with endpoint.http_client() as client:
        payload = {
            "client_id": endpoint.client_id,
            "client_secret": endpoint.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": r0,
        }
        async with client.stream("POST", TOKEN_URL, json=payload) as response:
            assert response.status_code == 200
            declared = int(response.headers["Content-Length"])
            with pytest.raises(httpx.RemoteProtocolError):
                await read(response)
    received = [b"".join(received)]
    assert 0 < len(received[0]) == declared // 2
    assert received[0].startswith(b'{"access_token": ')
    assert endpoint.refreshes == {SHOP: 1}


async def test_not_json_body(endpoint: FakeShopify) -> None:
    """A complete 200 HTML page; ShopifyOAuth calls it an unusable, transient answer."""
    endpoint.fail_next(FaultKind.NOT_JSON)
    key = TokenKey.offline(SHOP)
    token = endpoint.install(SHOP)
    async with endpoint.oauth() as oauth:
        with pytest.raises(RefreshFailed) as caught:
            await oauth.refresh(key, token)
    assert caught.value.transient
    assert caught.value.error == "invalid_response"
    endpoint.fail_next(Fault.not_json(502))
    response = await refresh(endpoint, token.refresh_token or "")
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"
    assert response.text.startswith("<!DOCTYPE html>")


async def test_latency_and_spikes_use_trios_clock(
    endpoint: FakeShopify, autojump_clock: trio.testing.MockClock
) -> None:
    """Latency delays every request; a spike adds its delay once, then answers normally."""
    r0 = endpoint.install(SHOP).refresh_token or ""
    endpoint.latency = 0.25
    endpoint.fail_next(Fault.spike(30.0))
    start = trio.current_time()
    assert (await refresh(endpoint, r0)).status_code == 200
    assert trio.current_time() - start == 30.25
    start = trio.current_time()
    await api_status(endpoint, "x")
    assert trio.current_time() - start == 0.25


async def test_scripted_faults_target_token_endpoints_unless_told(endpoint: FakeShopify) -> None:
    """Admin API calls do not consume token-endpoint faults, and can get their own."""
    token = endpoint.install(SHOP)
    endpoint.fail_next(503)
    assert await api_status(endpoint, token.access_token) == 200
    assert (await refresh(endpoint, token.refresh_token or "")).status_code == 503
    endpoint.fail_next(502, endpoints=[Endpoint.ADMIN_API])
    assert await api_status(endpoint, token.access_token) == 502
    assert endpoint.injected == [
        (Endpoint.ADMIN_TOKEN, Fault.http(503)),
        (Endpoint.ADMIN_API, Fault.http(502)),
    ]


async def drive(fake: FakeShopify, requests: int) -> list[int]:
    """Send refreshes with a fresh pair each time; the statuses (599 for a transport error).

    Like a good client, it waits out a 429's ``Retry-After`` (on trio's clock).
    """
    statuses = []
    for _ in range(requests):
        token = fake.install(SHOP)
        try:
            response = await refresh(fake, token.refresh_token or "")
        except httpx.TransportError:
            statuses.append(599)
        else:
            statuses.append(response.status_code)
            await trio.sleep(float(response.headers.get("Retry-After", 0)))
    assert fake.throttled == 0
    return statuses


async def test_fault_plan_is_reproducible(autojump_clock: trio.testing.MockClock) -> None:
    """The same plan and requests give the same faults; another seed gives others."""
    plan = FaultPlan(rate=0.3, seed=1)
    clock = trio_wall_clock()
    first, second = FakeShopify(clock=clock, faults=plan), FakeShopify(clock=clock, faults=plan)
    other = FakeShopify(clock=clock)
    other.faults = FaultPlan(rate=0.3, seed=2)
    assert await drive(first, 60) == await drive(second, 60)
    await drive(other, 60)
    assert first.injected == second.injected
    assert first.injected != other.injected
    assert 8 <= len(first.injected) <= 30
    kinds = {fault.kind for _, fault in first.injected}
    assert len(kinds) >= 3


async def test_fault_plan_rate_and_scope(endpoint: FakeShopify) -> None:
    """Rate 1 fails every token request, not API calls; rate 0 fails none."""
    token = endpoint.install(SHOP)
    endpoint.faults = FaultPlan(rate=1.0, choices=[FaultKind.STATUS])
    assert await drive(endpoint, 5) == [503] * 5
    assert await api_status(endpoint, token.access_token) == 401  # replaced by drive()
    endpoint.faults = FaultPlan(rate=1.0, choices=[Fault.http(500)], endpoints=[Endpoint.ADMIN_API])
    assert await api_status(endpoint, token.access_token) == 500
    endpoint.faults = FaultPlan(rate=0.0)
    assert await drive(endpoint, 5) == [200] * 5


def test_fault_plan_validation() -> None:
    """A rate outside [0, 1], no choices, or a non-fault step is refused."""
    with pytest.raises(ValueError, match="rate"):
        FaultPlan(rate=1.5)
    with pytest.raises(ValueError, match="at least one"):
        FaultPlan(rate=0.5, choices=[])
    with pytest.raises(TypeError):
        FakeShopify().fail_next("503")  # type: ignore[arg-type]


async def test_manager_survives_a_faulty_shopify(
    endpoint: FakeShopify, clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """Twelve hours at a 30 % fault rate: the manager never serves a dead token."""
    endpoint.faults = FaultPlan(rate=0.3, seed=3)
    keys = [TokenKey.offline(f"shop-{i}") for i in range(3)]
    store = MemoryStore()
    for key in keys:
        await store.save_tokens(key, endpoint.install(key.shop))
    served_dead = 0
    async with endpoint.oauth() as oauth, open_token_manager(oauth, store, clock=clock) as tokens:
        for _ in range(12 * 6):
            for key in keys:
                try:
                    token = await tokens.valid_token(key)
                except RefreshFailed:
                    continue
                served_dead += not endpoint.is_valid(key.shop, token.access_token)
            await trio.sleep(600)
    assert len(endpoint.injected) > 5
    assert served_dead == 0
    assert endpoint.rejected == 0
