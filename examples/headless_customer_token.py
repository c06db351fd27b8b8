"""A headless storefront keeping one customer's Customer Account API token fresh.

The storefront's back end sends the customer to Shopify's login page (a
PKCE login URL from `CustomerAccountOAuth`), takes the code the login brings
back, checks the ``state``, trades the code for the customer's first token,
asks the Customer Account API who the customer is, and stores the token under
``TokenKey.customer(shop, customer_id)`` in a token manager that routes
``TokenKind.CUSTOMER`` keys to the `CustomerAccountOAuth`. For four hours the
customer's account page is rendered every 15 minutes while the manager
rotates the token before it expires. Then the customer's session ends at
Shopify, and the storefront sees that the customer must log in again. Hours
pass under trio's mock clock in well under a second; no token is printed.

    python examples/headless_customer_token.py
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import trio
import trio.testing

from shoptoken import (
    CustomerAccountOAuth,
    EventKind,
    MemoryStore,
    ReauthorizationRequired,
    TokenEvent,
    TokenKey,
    TokenKind,
    TokenManager,
    new_pkce,
    open_token_manager,
)
from shoptoken.testing import FakeShopify, trio_wall_clock

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import httpx

# -- Where a real storefront's settings go ----------------------------------------------
# The shop, and the Customer Account API client of its Headless (or Hydrogen)
# channel: Customer Account API settings show the client id (shp_...) and the
# shop id. A public client, as here, has no secret and must use PKCE.
SHOP = "hydrogen-outfitters.myshopify.com"
CUSTOMER_CLIENT_ID = "shp_example-customer-account-client"
# Registered as a callback URI in the same settings.
REDIRECT_URI = "https://shop.example.com/account/authorize"
# The Customer Account API. Shopify lists its real URL in the shop's
# /.well-known/customer-account-api document; the fake serves this one.
CUSTOMER_API_URL = "https://{shop}/customer/api/2026-10/graphql"
RENDER_EVERY = 15 * 60.0  # seconds between two renders of the account page


# -- the storefront's login routes -------------------------------------------------------


def start_login(customers: CustomerAccountOAuth, session: dict[str, str]) -> str:
    """``GET /account/login``: the URL to send the customer to.

    The state and the PKCE verifier stay server-side, in the customer's session.
    """
    verifier, _challenge = new_pkce()
    state = secrets.token_urlsafe(32)
    session["state"], session["verifier"] = state, verifier
    return customers.authorization_url(REDIRECT_URI, state=state, code_verifier=verifier)


async def finish_login(
    customers: CustomerAccountOAuth,
    tokens: TokenManager,
    http: httpx.AsyncClient,
    session: dict[str, str],
    query: Mapping[str, str],
) -> TokenKey:
    """``GET /account/authorize``: check the state, get the token, store it for this customer."""
    expected = session.pop("state", "")
    if not expected or not secrets.compare_digest(query.get("state", ""), expected):
        raise PermissionError("login state mismatch")
    token = await customers.exchange_code(
        query["code"], REDIRECT_URI, code_verifier=session.pop("verifier")
    )
    # One key per customer, never per session or device: ask who this is.
    who = await http.post(
        CUSTOMER_API_URL.format(shop=SHOP),
        json={"query": "query { customer { id } }"},
        headers={"Authorization": token.access_token},
    )
    who.raise_for_status()
    key = TokenKey.customer(SHOP, who.json()["data"]["customer"]["id"])
    await tokens.put_token(key, token)
    session["customer_key"] = str(key)  # the session names the key, never holds the token
    return key


async def account_page(http: httpx.AsyncClient, auth: httpx.Auth) -> dict[str, Any]:
    """Render the account page: one Customer Account API query with the customer's token."""
    response = await http.post(
        CUSTOMER_API_URL.format(shop=SHOP),
        json={"query": "query { customer { id firstName orders(first: 5) { nodes { id } } } }"},
        auth=auth,
    )
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data


# -- the demo ------------------------------------------------------------------------------


def wall(now: float) -> str:
    """``HH:MM`` of a wall-clock time."""
    return f"{datetime.fromtimestamp(now, UTC):%H:%M}"


def rotations_printer(clock: Callable[[], float]) -> Callable[[TokenEvent], None]:
    """An event hook that prints each rotation of a customer token."""

    def show(event: TokenEvent) -> None:
        if event.kind is EventKind.REFRESH_SUCCEEDED and event.expires_at is not None:
            print(
                f"  {wall(clock())}  token of {event.key.subject} rotated; "
                f"the new one expires {event.expires_at:%H:%M}"
            )

    return show


def customer_logs_in(shopify: FakeShopify, login_url: str, customer_number: int) -> dict[str, str]:
    """Play the customer at Shopify's login page; return the callback's query.

    The fake issues the code bound to the URL's PKCE challenge and redirect URI.
    """
    params = {name: values[0] for name, values in parse_qs(urlsplit(login_url).query).items()}
    code = shopify.customer_login(
        SHOP,
        customer_number,
        code_challenge=params["code_challenge"],
        redirect_uri=params["redirect_uri"],
    )
    return {"code": code, "state": params["state"]}


async def main() -> int:
    """Log a customer in, keep their token fresh for hours, then lose it; return the status."""
    clock = trio_wall_clock()  # 2026-01-01 00:00 UTC, advancing with trio's clock
    shopify = FakeShopify(clock=clock, customer_client_id=CUSTOMER_CLIENT_ID)
    session: dict[str, str] = {}  # the customer's server-side session
    async with (
        # Against real Shopify: httpx.AsyncClient(timeout=30), the same URLs.
        shopify.http_client(timeout=30) as http,
        CustomerAccountOAuth(
            shopify.shop_id(SHOP), CUSTOMER_CLIENT_ID, http=http, shop=SHOP, clock=clock
        ) as customers,
        open_token_manager(
            {TokenKind.CUSTOMER: customers},
            MemoryStore(),  # a real storefront: a database (shoptoken.stores)
            clock=clock,
            hooks=[rotations_printer(clock)],
        ) as tokens,
    ):
        # At startup: the endpoints, from https://{SHOP}/.well-known/openid-configuration.
        endpoints = await customers.discover()
        login_url = start_login(customers, session)
        login_page = urlsplit(endpoints.authorization_endpoint)
        print(f"{wall(clock())}  customer sent to {login_page.netloc}{login_page.path} (PKCE S256)")

        query = customer_logs_in(shopify, login_url, customer_number=42)
        key = await finish_login(customers, tokens, http, session, query)
        print(f"{wall(clock())}  logged in; token stored under {key}")

        # Customer keys send the token in Authorization; a 401 refreshes once.
        auth = tokens.auth(key)
        renders = 0
        for _ in range(round(4 * 3600 / RENDER_EVERY)):
            await trio.sleep(RENDER_EVERY)
            page = await account_page(http, auth)
            renders += page["customer"]["id"] == key.subject
        stats = shopify.statistics(SHOP)
        print(
            f"{wall(clock())}  account page rendered {renders} times: {stats.api_calls} API calls, "
            f"{stats.api_calls_rejected} rejected, {stats.customer_refreshes} token rotations"
        )

        shopify.log_out_customer(SHOP, 42)  # e.g. "log out of all devices" at Shopify
        try:
            await account_page(http, auth)  # 401, then the refresh is refused
        except ReauthorizationRequired:
            requests, no_http = shopify.requests, False
            try:
                await tokens.valid_token(key)
            except ReauthorizationRequired:
                no_http = shopify.requests == requests  # known dead: no request sent
            relogin = urlsplit(start_login(customers, session))
            print(
                f"{wall(clock())}  the session ended at Shopify: the API answered 401 and the "
                f"refresh was refused, so\n       the customer is sent to log in again at "
                f"{relogin.netloc}{relogin.path}"
            )
            must_log_in = no_http
        else:
            must_log_in = False

    ok = (
        renders == stats.api_calls - 1  # the login's "who is this" call
        and stats.api_calls_rejected == 0
        and stats.customer_refreshes >= 3  # noqa: PLR2004 - four hours of one-hour tokens
        and must_log_in
    )
    return 0 if ok else 1


def run() -> int:
    """Run the demo under trio's mock clock."""
    # The library never configures logging. A real app sends shoptoken's events
    # to its logs; this demo prints its own lines, so it silences them.
    logging.getLogger("shoptoken").setLevel(logging.CRITICAL)
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


if __name__ == "__main__":
    raise SystemExit(run())
