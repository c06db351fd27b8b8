"""FakeShopify over real loopback HTTP: serving, routing, and faults on real sockets.

Real clock, short waits, 127.0.0.1 only. Each test is bounded by fail_after.
"""

from __future__ import annotations

import json
import sys

import httpx
import pytest
import trio

from shoptoken import TokenKey
from shoptoken.testing import (
    FakeShopify,
    Fault,
    FaultKind,
    ForeignHostError,
    LoopbackTransport,
    serve_loopback,
)

from . import SHOP, SHOP_URL, body

LIMIT = 5.0


def refresh_body(fake: FakeShopify, refresh_token: str) -> dict[str, str]:
    """The JSON body of a refresh grant."""
    return {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    }


async def raw_exchange(port: int, fake: FakeShopify, refresh_token: str) -> bytes:
    """Send a refresh as raw HTTP/1.1 to the server; return every byte until it closes."""
    payload = json.dumps(refresh_body(fake, refresh_token)).encode()
    head = (
        "POST /admin/oauth/access_token HTTP/1.1\r\n"
        f"Host: {SHOP}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    received = b""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(head.encode() + payload)
        while chunk := await stream.receive_some(65536):
            received += chunk
    return received


async def test_serving_starts_and_stops_cleanly() -> None:
    """The server answers once the block starts and its port is closed after it ends."""
    fake = FakeShopify()
    token = fake.install(SHOP)
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            assert server.url == f"http://127.0.0.1:{server.port}"
            client = server.client()
            response = await client.post(
                f"https://{SHOP}/admin/oauth/access_token",
                json=refresh_body(fake, token.refresh_token or ""),
            )
            assert response.status_code == 200
        assert client.is_closed
        with pytest.raises(OSError, match=r"."):
            await trio.open_tcp_stream("127.0.0.1", server.port)
    assert fake.refreshes == {SHOP: 1}


async def test_shopify_oauth_over_loopback() -> None:
    """A real ShopifyOAuth refreshes over sockets; the fake sees the original shop host."""
    fake = FakeShopify()
    key = TokenKey.offline("loop-store")
    token = fake.install(key.shop)
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server, server.oauth() as oauth:
            for _ in range(3):
                token = await oauth.refresh(key, token)
            async with server.client(headers={"X-Shopify-Access-Token": token.access_token}) as c:
                shop = await c.get(f"https://{key.shop}/admin/api/2026-10/shop.json")
    assert body(shop)["shop"]["myshopify_domain"] == key.shop
    assert fake.is_valid(key.shop, token.access_token)
    assert fake.statistics(key.shop).refreshes == 3


async def test_routing_transport_refuses_other_hosts() -> None:
    """Only https Shopify hosts are routed; anything else raises before any I/O."""
    fake = FakeShopify()
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            client = server.client()
            for url in (
                "https://example.com/",
                f"http://{SHOP}/admin/oauth/access_token",
                f"https://{SHOP}:8443/",
                f"http://127.0.0.1:{server.port}/admin/oauth/access_token",
                "https://shopify.com.evil.example/authentication/1/oauth/token",
                "https://user:pw@my-store.myshopify.com/",
                "https://my_store.myshopify.com/",
            ):
                with pytest.raises(ForeignHostError):
                    await client.get(url)
    assert fake.requests == 0
    assert isinstance(server.transport(), LoopbackTransport)


async def test_customer_accounts_route_through_shopify_com() -> None:
    """The customer token endpoint on https://shopify.com reaches the fake too."""
    fake = FakeShopify()
    code = fake.customer_login(SHOP, 42)
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            client = server.client(
                auth=(fake.customer_client_id, fake.customer_client_secret or "")
            )
            discovery = body(await client.get(f"https://{SHOP}/.well-known/openid-configuration"))
            answer = await client.post(
                discovery["token_endpoint"],
                data={"grant_type": "authorization_code", "code": code},
            )
    assert answer.status_code == 200
    assert fake.customer_token_valid(SHOP, body(answer)["access_token"])


async def test_status_fault_over_loopback() -> None:
    """429 with Retry-After arrives intact over HTTP."""
    fake = FakeShopify()
    token = fake.install(SHOP)
    fake.fail_next(Fault.rate_limited(3))
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            response = await server.client().post(
                f"https://{SHOP}/admin/oauth/access_token",
                json=refresh_body(fake, token.refresh_token or ""),
            )
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")


async def test_dropped_connection_really_drops() -> None:
    """Not one byte comes back: httpx sees a disconnect, a raw socket sees EOF."""
    fake = FakeShopify()
    token = fake.install(SHOP)
    fake.fail_next(Fault.drop(), Fault.drop(processed=True))
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            client = server.client()
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(
                    f"https://{SHOP}/admin/oauth/access_token",
                    json=refresh_body(fake, token.refresh_token or ""),
                )
            assert await raw_exchange(server.port, fake, token.refresh_token or "") == b""
            # The connection pool recovers: the next request is answered (recovery window).
            again = await client.post(
                f"https://{SHOP}/admin/oauth/access_token",
                json=refresh_body(fake, token.refresh_token or ""),
            )
    assert again.status_code == 200
    assert fake.refreshes == {SHOP: 2}
    assert fake.recovered == 1


async def test_reset_connection() -> None:
    """A reset fault sends RST: the client's read fails, a raw socket is reset."""
    fake = FakeShopify()
    token = fake.install(SHOP)
    fake.fail_next(Fault.drop(reset=True), Fault.drop(reset=True))
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                await server.client().post(
                    f"https://{SHOP}/admin/oauth/access_token",
                    json=refresh_body(fake, token.refresh_token or ""),
                )
            with pytest.raises(trio.BrokenResourceError) as caught:
                await raw_exchange(server.port, fake, token.refresh_token or "")
    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_truncated_body_really_truncated() -> None:
    """The server promises N bytes, sends fewer, and closes: on the wire, and in httpx."""
    fake = FakeShopify()
    token = fake.install(SHOP)
    fake.fail_next(Fault.truncate(0.5), Fault.truncate(0.5))
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            raw = await raw_exchange(server.port, fake, token.refresh_token or "")
            with pytest.raises(httpx.RemoteProtocolError):
                await server.client().post(
                    f"https://{SHOP}/admin/oauth/access_token",
                    json=refresh_body(fake, token.refresh_token or ""),
                )
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    declared = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    assert 0 < len(payload) == declared // 2
    with pytest.raises(ValueError, match=r"."):
        json.loads(payload)


async def test_not_json_and_spike_over_loopback() -> None:
    """An HTML 200 arrives complete; a spike delays the answer by its delay."""
    fake = FakeShopify()
    token = fake.install(SHOP)
    fake.fail_next(FaultKind.NOT_JSON, Fault.spike(0.2))
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            client = server.client()
            html = await client.post(
                f"https://{SHOP}/admin/oauth/access_token",
                json=refresh_body(fake, token.refresh_token or ""),
            )
            start = trio.current_time()
            late = await client.post(
                f"https://{SHOP}/admin/oauth/access_token",
                json=refresh_body(fake, token.refresh_token or ""),
            )
            elapsed = trio.current_time() - start
    assert (html.status_code, html.headers["Content-Type"]) == (200, "text/html")
    assert late.status_code == 200
    assert elapsed >= 0.2


async def test_concurrent_requests_over_loopback() -> None:
    """Twenty shops refreshed at once over sockets, each rotated once."""
    fake = FakeShopify(latency=0.05)
    tokens = {f"shop-{i}.myshopify.com": fake.install(f"shop-{i}") for i in range(20)}
    statuses: list[int] = []
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            client = server.client()

            async def one(shop: str, refresh_token: str) -> None:
                response = await client.post(
                    f"https://{shop}/admin/oauth/access_token",
                    json=refresh_body(fake, refresh_token),
                )
                statuses.append(response.status_code)

            async with trio.open_nursery() as nursery:
                for shop, token in tokens.items():
                    nursery.start_soon(one, shop, token.refresh_token or "")
    assert statuses == [200] * 20
    assert fake.refreshes == dict.fromkeys(tokens, 1)


async def test_body_errors_propagate_unwrapped() -> None:
    """An exception in the block reaches the caller as is, not in an exception group."""

    async def fails() -> None:
        async with serve_loopback(FakeShopify()) as server:
            await server.client().get(SHOP_URL)
            raise KeyError("boom")

    with trio.fail_after(LIMIT), pytest.raises(KeyError):
        await fails()


async def test_asgi_app_answers_a_bad_host_with_421() -> None:
    """A raw request whose Host is not Shopify's gets 421, never reaching the fake's state."""
    fake = FakeShopify()
    received = b""
    with trio.fail_after(LIMIT):
        async with (
            serve_loopback(fake) as server,
            await trio.open_tcp_stream("127.0.0.1", server.port) as stream,
        ):
            await stream.send_all(
                b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
            )
            while chunk := await stream.receive_some(65536):
                received += chunk
    assert received.startswith(b"HTTP/1.1 421")
    assert fake.requests == 0


@pytest.mark.parametrize("fault", Fault.lost_answers(), ids=repr)
async def test_lost_answers_over_loopback(fault: Fault) -> None:
    """Over real sockets too, a lost answer leaves the client nothing, yet the pair rotated."""
    fake = FakeShopify()
    token = fake.install(SHOP)
    fake.fail_next(fault)
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            client = server.client()
            url = f"https://{SHOP}/admin/oauth/access_token"
            grant = refresh_body(fake, token.refresh_token or "")
            try:
                response = await client.post(url, json=grant)
            except httpx.TransportError:
                pass
            else:
                assert response.status_code >= 500
                assert "access_token" not in response.text
            assert fake.refreshes == {SHOP: 1}
            assert not fake.is_valid(SHOP, token.access_token)
            again = await client.post(url, json=grant)
    assert again.status_code == 200
    assert fake.recovered == 1


async def test_serve_loopback_without_the_testing_extra_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without hypercorn, serve_loopback says which extra to install."""
    monkeypatch.setitem(sys.modules, "hypercorn", None)  # "not installed"
    monkeypatch.delitem(sys.modules, "hypercorn.config", raising=False)
    monkeypatch.delitem(sys.modules, "hypercorn.trio", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'shoptoken\[testing\]'"):
        async with serve_loopback(FakeShopify()):
            pass
