"""serve_metrics over real loopback sockets: routes, methods, health codes."""

from __future__ import annotations

import httpx
import pytest
import trio

pytest.importorskip("prometheus_client")

from shoptoken.metrics import TokenMetrics, serve_metrics


async def test_routes_and_methods() -> None:
    """GET /metrics and /healthz answer; HEAD has no body; others are 404 or 405."""
    metrics = TokenMetrics()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve_metrics, metrics, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            scrape = await client.get("/metrics")
            health = await client.get("/healthz")
            head = await client.head("/metrics")
            post = await client.post("/metrics")
            missing = await client.get("/")
        nursery.cancel_scope.cancel()
    assert scrape.status_code == 200
    assert "shoptoken_up 0.0" in scrape.text
    assert (health.status_code, health.text) == (503, "no token manager is running\n")
    assert (head.status_code, head.content) == (200, b"")
    assert post.status_code == 405
    assert missing.status_code == 404


async def test_a_silent_client_does_not_stop_others() -> None:
    """A client that connects and sends nothing does not hold up a scrape."""
    metrics = TokenMetrics()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve_metrics, metrics, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        async with httpx.AsyncClient() as client:
            scrape = await client.get(f"http://127.0.0.1:{port}/metrics")
        await silent.aclose()
        nursery.cancel_scope.cancel()
    assert scrape.status_code == 200
