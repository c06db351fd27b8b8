"""FakeShopify: Shopify's OAuth endpoints (and a little Admin API), for tests and demos.

What it answers (see `_admin` and `_customer_accounts` for the rules)::

    POST https://{shop}/admin/oauth/access_token           Endpoint.ADMIN_TOKEN
         authorization code, refresh, token exchange (session token), migration,
         client credentials
    GET|POST https://{shop}/admin/api/{v}/shop.json|graphql.json   Endpoint.ADMIN_API
    GET  https://{shop}/.well-known/openid-configuration   Endpoint.DISCOVERY
    POST https://shopify.com/authentication/{id}/oauth/token       Endpoint.CUSTOMER_TOKEN
    POST https://{shop}/customer/api/{v}/graphql           Endpoint.CUSTOMER_API

Any other path is 404; any other host, or a non-https URL, raises
`ForeignHostError`. Bodies of the Admin token endpoint may be JSON or
form-encoded, as Shopify accepts both; the customer token endpoint takes
forms only. Time is the injected ``clock`` (epoch seconds); latency and
spikes sleep on trio's clock. Reach it in process (`transport`,
`http_client`, `oauth`) or over loopback HTTP (`serve_loopback`).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio

from .._keys import normalize_shop
from .._oauth._admin import ShopifyOAuth
from .._token import Token
from ._admin import AdminAuthority
from ._admin import _Pair as _Pair  # noqa: PLC0414 - re-exported for subclasses overriding _issue
from ._answer import Answer, to_response
from ._callback import SupportsCodeGrant as SupportsCodeGrant  # noqa: PLC0414 - its old home
from ._callback import admin_host, complete_code_flow, signed_query
from ._customer_accounts import CustomerAccounts
from ._faults import TOKEN_ENDPOINTS, Endpoint, Fault, FaultKind, FaultPlan, FaultSource, as_fault
from ._routes import route_request
from ._routing import check_shopify_url
from ._session import mint_session_token
from ._stats import FakeStatistics
from ._throttle import RetryAfterWindows
from ._webhooks import WebhookSender

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from .._oauth._customer import CustomerAccountOAuth
    from ._asgi import ASGIApp


@attrs.define(eq=False)
class FakeShopify(FakeStatistics, WebhookSender):
    """A faithful emulator of Shopify's OAuth endpoints, with faults on demand.

    Attributes:
        clock: Wall clock (epoch s); use `trio_wall_clock` under a mock clock.
        client_id: The app's client id (API key).
        client_secret: The app's secret: checks grants, signs callbacks and
            session tokens (at least 32 bytes, as Shopify's are).
        old_client_secret: The previous secret while the app rotates its
            secret (`rotate_client_secret`): grants with either are accepted,
            and callbacks and session tokens are signed with this one, the
            oldest unrevoked, as Shopify signs webhooks. None: no rotation.
        access_lifetime: ``expires_in`` of expiring offline access tokens.
        refresh_lifetime: ``refresh_token_expires_in`` of their refresh tokens.
        online_lifetime: ``expires_in`` of online tokens.
        code_lifetime: How long an authorization code can be exchanged.
        client_credentials_lifetime: ``expires_in`` of client credentials tokens.
        non_expiring_until: Wall time from which non-expiring offline tokens
            stop working (Shopify: 2027-01-01 for public apps); None: never.
        customer_client_id: The Customer Account API client id.
        customer_client_secret: Its secret (confidential clients).
        customer_access_lifetime: ``expires_in`` of customer access tokens.
        customer_refresh_lifetime: How long customer refresh tokens work.
        latency: Seconds (trio time) every request takes.
        faults: Faults injected at a rate (`FaultPlan`), after scripted ones.
        requests: Every request received.

    Its counters are read with `statistics` and the totals of `FakeStatistics`.
    """

    clock: Callable[[], float] = time.time
    client_id: str = "shoptoken-fake-client"
    client_secret: str = attrs.field(default="shpss_fake0client0secret0of0the0app0000", repr=False)
    old_client_secret: str | None = attrs.field(default=None, repr=False)
    access_lifetime: float = 3600.0
    refresh_lifetime: float = 90 * 86400.0
    online_lifetime: float = 86399.0
    code_lifetime: float = 600.0
    client_credentials_lifetime: float = 86399.0
    non_expiring_until: float | None = None
    customer_client_id: str = "shp_fake-customer-client"
    customer_client_secret: str | None = attrs.field(
        default="fake-customer-client-secret-0000000", repr=False
    )
    customer_access_lifetime: float = 3600.0
    customer_refresh_lifetime: float = 90 * 86400.0
    latency: float = 0.0
    faults: FaultPlan | None = None
    requests: int = 0
    _fault_source: FaultSource = attrs.field(factory=FaultSource, repr=False)
    _windows: RetryAfterWindows = attrs.field(factory=RetryAfterWindows, repr=False)
    _admin: AdminAuthority = attrs.field(init=False, repr=False)
    _customers: CustomerAccounts = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._admin = AdminAuthority(self, self._count, self._issue)
        self._customers = CustomerAccounts(self, self._count)

    def _issue(self, shop: str) -> _Pair:
        """Issue ``shop``'s next expiring pair (every grant that makes one calls this)."""
        return self._admin.new_pair(shop)

    # -- setting up ------------------------------------------------------------------

    def install(self, shop: str, *, scope: str = "read_orders") -> Token:
        """Install the app on ``shop``: issue its first expiring pair (revoking any older)."""
        host = normalize_shop(shop)
        self._admin.shop(host).scope = scope
        obtained_at = self.clock()
        pair = self._issue(host)
        return Token(
            access_token=pair.access,
            refresh_token=pair.refresh,
            scope=scope,
            expires_at=datetime.fromtimestamp(pair.expires_at, UTC),
            refresh_token_expires_at=datetime.fromtimestamp(pair.refresh_expires_at, UTC),
            obtained_at=datetime.fromtimestamp(obtained_at, UTC),
        )

    def install_non_expiring(self, shop: str, *, scope: str = "read_orders") -> Token:
        """Install the app on ``shop`` the legacy way: a non-expiring offline token."""
        host = normalize_shop(shop)
        self._admin.shop(host).scope = scope
        return Token(access_token=self._admin.new_non_expiring(host), scope=scope)

    def revoke(self, shop: str) -> None:
        """Uninstall the app from ``shop``: every token dies; a refresh answers 401.

        Installing or authorizing again, or a valid session token exchange
        (the merchant opened the app), installs it anew.
        """
        self._admin.revoke(normalize_shop(shop))

    def expire_refresh_token(self, shop: str) -> None:
        """Make ``shop``'s refresh tokens expire now (as after 90 idle days)."""
        self._admin.expire_refresh_token(normalize_shop(shop))

    def rotate_client_secret(self, new_secret: str | None = None) -> str:
        """Rotate the app's client secret, as in the Partner Dashboard: both work until revoked.

        The current secret becomes `old_client_secret` (it still signs
        callbacks and session tokens); ``new_secret`` (a random one if None)
        becomes `client_secret`.

        Returns:
            The new secret.

        Raises:
            RuntimeError: A rotation is under way: revoke the old secret first.
        """
        if self.old_client_secret is not None:
            msg = "the old client secret is not revoked yet: call revoke_old_client_secret()"
            raise RuntimeError(msg)
        new = new_secret or f"shpss_{secrets.token_hex(16)}"
        self.old_client_secret, self.client_secret = self.client_secret, new
        return new

    def revoke_old_client_secret(self) -> None:
        """End a secret rotation: grants with the old secret answer 401 ``invalid_client``."""
        self.old_client_secret = None

    @property
    def signing_secret(self) -> str:
        """The secret callbacks and session tokens are signed with: the oldest unrevoked."""
        return self.old_client_secret or self.client_secret

    def authorization_code(
        self,
        shop: str,
        *,
        scopes: str | Sequence[str] = "read_orders",
        online: bool = False,
        user_id: int = 1,
    ) -> str:
        """An authorization code, as if staff user ``user_id`` approved ``scopes``."""
        scope = scopes if isinstance(scopes, str) else ",".join(scopes)
        return self._admin.new_code(
            normalize_shop(shop), scope=scope, online=online, user_id=user_id
        )

    def callback_query(
        self,
        shop: str,
        *,
        scopes: str | Sequence[str] = "read_orders",
        online: bool = False,
        user_id: int = 1,
        state: str | None = None,
        code: str | None = None,
    ) -> dict[str, str]:
        """The signed query of the OAuth redirect back to the app, with a fresh code.

        Parameters ``code``, ``host``, ``shop``, ``state`` (when given),
        ``timestamp`` (from the clock) and ``hmac``, signed as Shopify signs.
        """
        host = normalize_shop(shop)
        params = {
            "code": code
            or self.authorization_code(host, scopes=scopes, online=online, user_id=user_id),
            "host": admin_host(host),
            "shop": host,
            "timestamp": str(int(self.clock())),
        }
        if state is not None:
            params["state"] = state
        return signed_query(params, self.signing_secret)

    async def authorize(
        self,
        oauth: SupportsCodeGrant,
        shop: str,
        scopes: str | Sequence[str] = "read_orders",
        *,
        online: bool = False,
        user_id: int = 1,
    ) -> Token:
        """Walk the real authorization code flow: signed callback, verification, exchange.

        Builds the redirect query Shopify would send, has ``oauth`` verify it
        (``verify_callback(query, state=...)``), then exchanges its code
        (``exchange_code(shop, code)``).

        Returns:
            The token ``oauth`` obtained.
        """
        state = secrets.token_urlsafe(16)
        query = self.callback_query(
            shop, scopes=scopes, online=online, user_id=user_id, state=state
        )
        return await complete_code_flow(oauth, query, state)

    def session_token(
        self,
        shop: str,
        *,
        user_id: int = 1,
        expires_in: float = 60.0,
        secret: str | None = None,
        alg: str = "HS256",
        **overrides: object,
    ) -> str:
        """An App Bridge session token for ``shop``, signed with the client secret.

        Args:
            shop: The shop (``iss``/``dest``).
            user_id: The staff user (``sub``).
            expires_in: Seconds until ``exp``.
            secret: Sign with this key instead (a forged token).
            alg: JWT algorithm; "none" mints an unsigned token (the fake refuses it).
            overrides: Claims to replace (``aud="other"``, ``dest=...``); None removes one.
        """
        return mint_session_token(
            normalize_shop(shop),
            client_id=self.client_id,
            secret=self.signing_secret if secret is None and alg != "none" else secret,
            now=self.clock(),
            user_id=user_id,
            expires_in=expires_in,
            alg=alg,
            overrides=overrides,
        )

    def shop_id(self, shop: str) -> int:
        """``shop``'s numeric id, as in its Customer Account API endpoints."""
        return self._customers.shop_id(normalize_shop(shop))

    def customer_login(
        self,
        shop: str,
        customer_id: str | int,
        *,
        code_challenge: str | None = None,
        redirect_uri: str | None = None,
    ) -> str:
        """The code a customer's login brings back (PKCE-bound when ``code_challenge``)."""
        return self._customers.login(
            normalize_shop(shop),
            str(customer_id),
            code_challenge=code_challenge,
            redirect_uri=redirect_uri,
        )

    def log_out_customer(self, shop: str, customer_id: str | int | None = None) -> None:
        """End a customer's (or every customer's) sessions: their tokens die."""
        self._customers.log_out(
            normalize_shop(shop), None if customer_id is None else str(customer_id)
        )

    # -- faults ------------------------------------------------------------------------

    def fail_next(
        self,
        *steps: Fault | FaultKind | int | BaseException,
        endpoints: Iterable[Endpoint] = TOKEN_ENDPOINTS,
    ) -> None:
        """Fail the next requests to ``endpoints`` (token endpoints by default), in order.

        A step is a `Fault`, a `FaultKind` (its default fault), an HTTP status
        (429 carries ``Retry-After: 2``) or an exception raised as a network
        failure in process (a dropped connection over loopback).
        """
        self._fault_source.script([as_fault(step) for step in steps], endpoints)

    @property
    def injected(self) -> list[tuple[Endpoint, Fault]]:
        """Every fault injected so far (scripted or drawn), with its endpoint."""
        return list(self._fault_source.injected)

    # -- reaching it -----------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        """An in-process httpx transport to this fake (no sockets)."""
        return httpx.MockTransport(self.handle)

    def http_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` on `transport`; keyword arguments go to the client."""
        return httpx.AsyncClient(transport=self.transport(), **kwargs)

    def oauth(self, *, clock: Callable[[], float] | None = None) -> ShopifyOAuth:
        """A real `ShopifyOAuth` with this fake's credentials, in process."""
        return ShopifyOAuth(
            self.client_id,
            self.client_secret,
            http=self.http_client(),
            old_client_secret=self.old_client_secret,
            clock=clock or self.clock,
        )

    def customer_oauth(
        self,
        shop: str,
        *,
        confidential: bool = False,
        discover: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> CustomerAccountOAuth:
        """A real `CustomerAccountOAuth` for ``shop``, in process.

        Args:
            shop: The shop.
            confidential: Authenticate with the customer client secret (HTTP
                Basic); else a public client (PKCE only).
            discover: Find the endpoints in the shop's discovery document
                rather than using Shopify's default URLs.
            clock: Wall clock; the fake's by default.
        """
        from .._oauth._customer import CustomerAccountOAuth  # noqa: PLC0415 - loaded on use

        host = normalize_shop(shop)
        return CustomerAccountOAuth(
            self.shop_id(host),
            self.customer_client_id,
            client_secret=self.customer_client_secret if confidential else None,
            http=self.http_client(),
            shop=host if discover else None,
            clock=clock or self.clock,
        )

    def asgi_app(self) -> ASGIApp:
        """This fake as an ASGI application (`serve_loopback` serves it with hypercorn)."""
        from ._asgi import asgi_app  # noqa: PLC0415 - _asgi imports this module

        return asgi_app(self)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request in process (the `transport`'s handler)."""
        return to_response(await self.answer(request), request)

    async def answer(self, request: httpx.Request) -> Answer:
        """Decide the answer to ``request``: latency, faults, then the endpoint.

        Raises:
            ForeignHostError: Not an https URL of a Shopify host.
        """
        host = check_shopify_url(request.url)
        self.requests += 1
        if self.latency:
            await trio.sleep(self.latency)
        route = route_request(self._admin, self._customers, host, request)
        if route is None:
            return Answer.json(404, {"errors": "Not Found"})
        endpoint, respond = route
        throttled = endpoint is Endpoint.ADMIN_TOKEN
        if throttled and (refusal := self._windows.refusal(host, self.clock())) is not None:
            self._count(host).token_requests_throttled += 1
            return refusal
        fault = self._fault_source.next(endpoint, self.faults)
        if fault is not None and fault.delay:
            await trio.sleep(fault.delay)  # a spike, or a request that hangs, then fails
        if fault is not None and fault.kind is FaultKind.SPIKE:
            fault = None
        if fault is None:
            return respond()
        real = respond() if fault.needs_answer else None
        answer = fault.render(real, request)
        if throttled:
            self._windows.answered(host, answer, self.clock())
            if real is not None and real.status == 200:  # noqa: PLR2004 - a grant performed
                self._count(host).grants_lost += 1
        return answer

    # -- checking ------------------------------------------------------------------------

    def is_valid(self, shop: str, access_token: str) -> bool:
        """Whether an Admin API call with ``access_token`` would be accepted now."""
        return self._admin.is_valid(normalize_shop(shop), access_token)

    def refresh_token_works(self, shop: str, refresh_token: str) -> bool:
        """Whether a refresh with ``refresh_token`` would succeed now."""
        return self._admin.refresh_token_works(normalize_shop(shop), refresh_token)

    def customer_token_valid(self, shop: str, access_token: str) -> bool:
        """Whether a Customer Account API call with ``access_token`` would be accepted now."""
        return self._customers.token_valid(normalize_shop(shop), access_token)

    def customer_refresh_token_works(self, shop: str, refresh_token: str) -> bool:
        """Whether a customer refresh with ``refresh_token`` would succeed now."""
        return self._customers.refresh_token_works(normalize_shop(shop), refresh_token)
