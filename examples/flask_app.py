"""A Flask app whose views call Shopify's Admin API with tokens shoptoken keeps fresh.

Flask serves each request in a thread; the views use the synchronous API of
a `TokenService` (a token manager on its own trio thread), started once when
the app is created and closed at shutdown. The view's `httpx.Client` takes
its token header from ``service.auth(key)``: a fresh token is a dict read in
the request's own thread.

Here a fake Shopify serves on 127.0.0.1 with tokens that live 4 seconds
(Shopify's live 60 minutes), and eight threads call the app for about 4
seconds of real time. No token is ever printed.

    python examples/flask_app.py
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
from flask import Flask, jsonify

from shoptoken import RefreshPolicy, ShopifyOAuth, ShopTokenError, TokenKey, TokenService
from shoptoken.testing import FakeShopify, serve_loopback_in_thread

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

SHOPS = ("alpha-store", "beta-store", "gamma-store")
API = "https://{shop}/admin/api/2025-01/shop.json"
THREADS = 8


def create_app(service: TokenService, http: httpx.Client) -> Flask:
    """The app; ``service`` is started, ``http`` calls Shopify (shared by the threads)."""
    app = Flask(__name__)

    @app.get("/shops/<shop>/name")
    def shop_name(shop: str) -> ResponseReturnValue:
        key = TokenKey.offline(shop)
        try:
            # A 401 forces one refresh and one retry (service.refresh_token).
            answer = http.get(API.format(shop=key.shop), auth=service.auth(key))
        except ShopTokenError as exc:  # no token, re-authorization needed, outage
            return jsonify(error=type(exc).__name__), 503
        return jsonify(shop=shop, status=answer.status_code, name=answer.json()["shop"]["name"])

    return app


def visitor(app: Flask, rounds: int, pause: threading.Event) -> list[int]:
    """One browser: a request for every shop, ``rounds`` times, 0.1 s apart."""
    statuses: list[int] = []
    with app.test_client() as client:
        for _ in range(rounds):
            statuses += [client.get(f"/shops/{s}/name").get_json()["status"] for s in SHOPS]
            pause.wait(0.1)
    return statuses


def main() -> int:
    """Serve the fake, start the service, let eight threads use the app; the exit status."""
    # The library never configures logging; this app shows errors only.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    shopify = FakeShopify(access_lifetime=4)
    with serve_loopback_in_thread(shopify) as server:
        # Against real Shopify: ShopifyOAuth(client_id, client_secret) and no resources.
        oauth_http = httpx.AsyncClient(transport=server.transport())
        oauth = ShopifyOAuth(shopify.client_id, shopify.client_secret, http=oauth_http)
        policy = RefreshPolicy(refresh_before=2, jitter=0.5, skew=0.5)
        # Start it where the app is created (Django: AppConfig.ready), once per process.
        with (
            TokenService(oauth, "memory://", policy=policy, resources=[oauth_http]) as service,
            httpx.Client(transport=server.sync_transport(), timeout=30) as http,
        ):
            for shop in SHOPS:
                # What the app's OAuth callback does with a shop's first token.
                service.put_token(TokenKey.offline(shop), shopify.install(shop))
            app = create_app(service, http)
            pause = threading.Event()  # never set: a sleep that reads as one
            with ThreadPoolExecutor(THREADS) as pool:
                runs = [pool.submit(visitor, app, 30, pause) for _ in range(THREADS)]
                statuses = [status for run in runs for status in run.result()]
    seen = [shopify.statistics(shop) for shop in SHOPS]
    refreshes = sum(s.refreshes for s in seen)
    rejected = sum(s.api_calls_rejected for s in seen)
    ok = statuses.count(200)
    print(
        f"{len(statuses)} API calls from {THREADS} Flask threads ({ok} answered 200), "
        f"{refreshes} token refreshes; {rejected} sent just as a rotation revoked their "
        "token, refused and retried once with the new one"
    )
    return 0 if ok == len(statuses) and refreshes >= len(SHOPS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
