"""A FastAPI app whose endpoints call Shopify's Admin API with tokens shoptoken keeps fresh.

The app's lifespan starts a `TokenService` (a token manager on its own trio
thread) and closes it at shutdown; an endpoint calls the Admin API through
``service.auth(key)`` on an `httpx.AsyncClient`, awaiting only asyncio.

Here a fake Shopify serves on 127.0.0.1, its tokens live 4 seconds
(Shopify's live 60 minutes), and the app is driven in process for about 4
seconds of real time: every shop's token is refreshed ahead of expiry while
requests keep coming, and every request is answered (one sent just as a
rotation revoked its token is retried once with the new one). No token is
ever printed.

    python examples/fastapi_app.py
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, HTTPException, Request

from shoptoken import (
    RefreshPolicy,
    ShopifyOAuth,
    ShopTokenError,
    Token,
    TokenKey,
    TokenService,
)
from shoptoken.testing import FakeShopify, serve_loopback_in_thread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SHOPS = ("alpha-store", "beta-store", "gamma-store")
API = "https://{shop}/admin/api/2025-01/shop.json"


def create_app(service: TokenService, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The app. Against real Shopify, ``transport`` is None (the network)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # start() opens the store and the manager on the service's thread;
        # run it off the event loop, as any blocking startup call.
        await asyncio.to_thread(service.start)
        async with httpx.AsyncClient(transport=transport, timeout=30) as http:
            app.state.http = http
            yield
        # Refreshes and saves in flight finish (within shutdown_grace).
        await asyncio.to_thread(service.close)

    app = FastAPI(lifespan=lifespan)

    @app.get("/shops/{shop}/name")
    async def shop_name(shop: str, request: Request) -> dict[str, Any]:
        key = TokenKey.offline(shop)
        http: httpx.AsyncClient = request.app.state.http
        try:
            # The token header comes from service.aio.valid_token: a fresh token
            # is a dict read, a miss awaits the service's thread without
            # blocking this loop; a 401 forces one refresh and one retry.
            answer = await http.get(API.format(shop=key.shop), auth=service.auth(key))
        except ShopTokenError as exc:  # no token, re-authorization needed, outage
            raise HTTPException(503, detail=type(exc).__name__) from exc
        return {"shop": shop, "status": answer.status_code, "name": answer.json()["shop"]["name"]}

    return app


def main() -> int:
    """Serve the fake, install the shops, drive the app; return the exit status."""
    # The library never configures logging; this app shows errors only.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    shopify = FakeShopify(access_lifetime=4)
    with serve_loopback_in_thread(shopify) as server:
        # Against real Shopify: ShopifyOAuth(client_id, client_secret), whose own
        # HTTP client the service creates and closes on its thread.
        oauth_http = httpx.AsyncClient(transport=server.transport())
        oauth = ShopifyOAuth(shopify.client_id, shopify.client_secret, http=oauth_http)
        # Short tokens need short lead times: refresh 2 s (+ up to 0.5 s) before expiry.
        policy = RefreshPolicy(refresh_before=2, jitter=0.5, skew=0.5)
        # The injected client is used on the service's thread: the service closes it.
        service = TokenService(oauth, "memory://", policy=policy, resources=[oauth_http])
        installs = [(TokenKey.offline(shop), shopify.install(shop)) for shop in SHOPS]

        app = create_app(service, server.transport())
        statuses = asyncio.run(run_app(app, service, installs))
    seen = [shopify.statistics(shop) for shop in SHOPS]
    refreshes = sum(s.refreshes for s in seen)
    rejected = sum(s.api_calls_rejected for s in seen)
    ok = statuses.count(200)
    print(
        f"{len(statuses)} API calls through FastAPI ({ok} answered 200), "
        f"{refreshes} token refreshes; {rejected} sent just as a rotation revoked their "
        "token, refused and retried once with the new one"
    )
    return 0 if ok == len(statuses) and refreshes >= len(SHOPS) else 1


async def run_app(
    app: FastAPI, service: TokenService, installs: list[tuple[TokenKey, Token]]
) -> list[int]:
    """Start the app (its lifespan), install the shops, call every shop 40 times in 4 s."""
    statuses: list[int] = []
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client,
    ):
        for key, token in installs:
            # What the app's OAuth callback does with a shop's first token.
            await service.aio.put_token(key, token)
        for _ in range(40):
            replies = await asyncio.gather(*(client.get(f"/shops/{s}/name") for s in SHOPS))
            statuses += [reply.json()["status"] for reply in replies]
            await asyncio.sleep(0.1)
    return statuses


if __name__ == "__main__":
    raise SystemExit(main())
