"""An embedded app's backend: App Bridge session tokens in, offline tokens out.

The frontend of an embedded app (App Bridge, in the Shopify admin) sends a
session token, a JWT signed with the app's secret that lives a minute, in
the ``Authorization: Bearer`` header of every request to the app's backend.
The backend here is one framework-free handler, `shop_endpoint`, in a
minimal ASGI app that hypercorn serves on 127.0.0.1. The handler verifies
the JWT (``oauth.verify_session_token``); when it holds no token for that
shop yet, it exchanges the JWT for the shop's offline token
(``oauth.exchange_session_token(jwt, online=False)``) and ``put_token``s
it; then it calls the Admin API with the manager's token. Forged, expired
and missing JWTs get 401, without any request to Shopify. No token is
printed. Needs hypercorn (``pip install 'shoptoken[testing]'``).

    python examples/embedded_app_token_exchange.py
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, TypeAlias, cast

import attrs
import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from shoptoken import (
    InvalidSessionToken,
    MemoryStore,
    NoToken,
    ReauthorizationRequired,
    ShopifyOAuth,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.testing import FakeShopify

# -- Where a real app's settings go ---------------------------------------------------
# The app's credentials (Partner Dashboard > your app > Client credentials);
# the session tokens App Bridge sends are signed with this secret. A real app
# reads them from its environment; the fake Shopify accepts these.
CLIENT_ID = "example-app-client-id"
CLIENT_SECRET = "example-app-client-secret-not-a-real-one"
# Where the backend listens (port 0: any free port). In production this is
# behind the app URL configured for the app, e.g. https://app.example.com.
BACKEND_HOST = "127.0.0.1"
BACKEND_PORT = 0
# The Admin API the backend calls: Shopify's real URL; the demo's HTTP client
# sends it to the fake in process (see `main`).
SHOP_URL = "https://{shop}/admin/api/2026-10/shop.json"
SHOPS = ("acme-outdoor.myshopify.com", "bright-books.myshopify.com")

# App Bridge retries a request that got this header with a new session token.
RETRY_HEADER: Final = ("x-shopify-retry-invalid-session-request", "1")

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]


@attrs.frozen
class Reply:
    """What the handler answers: a status, a JSON body and extra headers."""

    status: int
    body: dict[str, str]
    headers: tuple[tuple[str, str], ...] = ()


def unauthorized(reason: str) -> Reply:
    """401: App Bridge fetches a new session token and tries again."""
    return Reply(401, {"error": reason}, (RETRY_HEADER,))


@attrs.frozen
class Backend:
    """The app's backend: its OAuth client, token manager and HTTP client."""

    oauth: ShopifyOAuth
    tokens: TokenManager
    http: httpx.AsyncClient

    async def shop_endpoint(self, authorization: str | None) -> Reply:
        """``GET /api/shop``: the shop's name, read with the shop's offline token.

        Args:
            authorization: The request's ``Authorization`` header, if any.
        """
        scheme, _, session_token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not session_token:
            return unauthorized("no session token")
        try:
            claims = self.oauth.verify_session_token(session_token)  # local: no HTTP
        except InvalidSessionToken as exc:
            return unauthorized(str(exc))  # says which check failed; quotes no token
        key = TokenKey.offline(claims.shop)
        source = "stored"
        try:
            await self.tokens.valid_token(key)
        except (NoToken, ReauthorizationRequired):
            # Never installed, or uninstalled and opened again: trade the
            # session token for the shop's offline token, and keep it.
            try:
                key, token = await self.oauth.exchange_session_token(session_token, online=False)
            except InvalidSessionToken as exc:  # expired in flight: App Bridge retries
                return unauthorized(str(exc))
            await self.tokens.put_token(key, token)
            source = "exchanged"
        response = await self.http.get(SHOP_URL.format(shop=key.shop), auth=self.tokens.auth(key))
        if response.is_error:
            return Reply(502, {"error": f"Admin API answered {response.status_code}"})
        return Reply(200, {"shop": response.json()["shop"]["name"], "offline_token": source})


def asgi_app(backend: Backend) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A minimal ASGI 3 application around `Backend.shop_endpoint` (any framework would do)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to set up: acknowledge start and stop
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/api/shop" and scope["method"] == "GET":
            headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
            reply = await backend.shop_endpoint(headers.get("authorization"))
        else:
            reply = Reply(404, {"error": "not found"})
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    *((name.encode(), value.encode()) for name, value in reply.headers),
                ],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(reply.body).encode()})

    return app


async def frontend(base_url: str, shopify: FakeShopify) -> int:
    """Be App Bridge: send requests with good and bad session tokens; count surprises."""
    acme, bright = SHOPS
    requests = [
        ("acme-outdoor: a session token", shopify.session_token(acme), 200),
        ("acme-outdoor: another user's", shopify.session_token(acme, user_id=2), 200),
        ("bright-books: a session token", shopify.session_token(bright), 200),
        ("forged: signed with another key", forge(shopify, acme), 401),
        ("expired a minute ago", shopify.session_token(acme, expires_in=-60), 401),
        ("for another app (aud)", shopify.session_token(acme, aud="other-app"), 401),
        ("no Authorization header", None, 401),
    ]
    surprises = 0
    async with httpx.AsyncClient(base_url=base_url) as client:
        for label, session_token, expected in requests:
            headers = {} if session_token is None else {"Authorization": f"Bearer {session_token}"}
            response = await client.get("/api/shop", headers=headers)
            body = response.json()
            detail = body.get("error") or f"{body['shop']}: offline token {body['offline_token']}"
            print(f"  {label:32} -> {response.status_code} {detail}")
            refused = response.status_code == httpx.codes.UNAUTHORIZED
            surprises += response.status_code != expected or (
                refused and RETRY_HEADER[0] not in response.headers  # App Bridge would not retry
            )
    return surprises


def forge(shopify: FakeShopify, shop: str) -> str:
    """A session token with the right claims, signed with a key that is not the app's secret."""
    return shopify.session_token(shop, secret="an-attacker-key-of-at-least-32-bytes")


async def main() -> int:
    """Serve the backend on loopback, play the frontend against it; return the exit status."""
    shopify = FakeShopify(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)  # the real clock
    config = Config()
    config.bind = [f"{BACKEND_HOST}:{BACKEND_PORT}"]
    config.loglevel = "WARNING"
    async with (
        # Against real Shopify: httpx.AsyncClient(timeout=30), the same URLs.
        shopify.http_client(timeout=30) as http,
        ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http) as oauth,
        open_token_manager(oauth, MemoryStore()) as tokens,
        trio.open_nursery() as nursery,
    ):
        stop = trio.Event()
        # hypercorn types ASGI messages as TypedDicts; this app reads plain mappings.
        app = cast("Any", asgi_app(Backend(oauth, tokens, http)))
        serving = functools.partial(serve, app, config, shutdown_trigger=stop.wait)
        binds = await nursery.start(serving)
        print(f"backend listening on {binds[0]}; GET /api/shop with:")
        try:
            surprises = await frontend(binds[0], shopify)
        finally:
            stop.set()

    seen = [shopify.statistics(shop) for shop in SHOPS]
    exchanges = sum(stats.token_exchanges for stats in seen)
    refused = sum(stats.session_tokens_rejected for stats in seen)
    api_calls = sum(stats.api_calls for stats in seen)
    rejected = sum(stats.api_calls_rejected for stats in seen)
    print(
        f"\nShopify saw {exchanges} token exchanges (one per shop), {refused} bad session "
        f"tokens, and {api_calls} Admin API calls ({rejected} rejected)"
    )
    return 1 if surprises or exchanges != len(SHOPS) or refused or rejected else 0


def run() -> int:
    """Run the demo on the real clock (it takes well under a second)."""
    # The library never configures logging; this app shows errors only.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    return trio.run(main)


if __name__ == "__main__":
    raise SystemExit(run())
