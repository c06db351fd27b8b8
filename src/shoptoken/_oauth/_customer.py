"""CustomerAccountOAuth: the Customer Account API OAuth client (headless storefronts).

The Customer Account API authenticates a shop's customers, not the app. A
headless storefront sends the customer to Shopify's login page
(`CustomerAccountOAuth.authorization_url`), trades the code it gets back for
a token (`exchange_code`) and keeps that token fresh (`refresh`, the
`Refresher` a token manager calls for ``TokenKind.CUSTOMER`` keys). Each token
belongs to one customer: store it under ``TokenKey.customer(shop, customer_id)``
and never share it between customers or sessions.

Endpoints come from, in this order: the ``authorization_endpoint`` /
``token_endpoint`` arguments; the shop's OpenID discovery document
(``https://{shop}/.well-known/openid-configuration``) when ``shop`` is given,
fetched once and cached; Shopify's defaults
``https://shopify.com/authentication/{shop_id}/oauth/{authorize,token}``. A
discovered endpoint is used only when it is https on ``shopify.com`` (under
``/authentication/{shop_id}/``) or on the shop's own domain: a hostile or
broken document never gets a code or token sent to another host.

Grants are form-encoded. A confidential client (one with a client secret)
authenticates with HTTP Basic ``client_id:client_secret`` (``client_secret_basic``,
the one method Shopify's discovery documents advertise); a public client sends
no secret and must prove the login with PKCE (`new_pkce`). Answers map into
the exception tree::

    answer                                  raised
    2xx with a usable token body            nothing: the new `Token` (any id_token dropped)
    2xx with an unusable body               RefreshFailed(error="invalid_response", transient)
    any 400 (invalid_grant...), any 401     ReauthorizationRequired: the customer logs in again
    408, 429, 5xx                           RefreshFailed(transient=True, retry_after=...)
    any other status (3xx, 4xx)             RefreshFailed(transient=False)
    no answer (connect, timeout, protocol)  RefreshFailed(status=None, transient=True)
    discovery failed or unreadable          RefreshFailed(error="discovery_failed"), transient
                                            unless discovery answered a 3xx or 4xx
    discovered endpoint not trusted         RefreshFailed(error="untrusted_endpoint"), permanent

No message, repr or log event carries a secret: not the client secret, the
authorization code, the PKCE verifier, nor an access, refresh or ID token.
"""

from __future__ import annotations

import base64
import re
import time
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

import attrs
import httpx
import trio

from .._errors import ReauthorizationRequired, RefreshFailed, ShopTokenError
from .._keys import TokenKind, normalize_shop
from .._log import get_logger
from ._discovery import (
    SHOPIFY_HOST,
    CustomerAccountEndpoints,
    DiscoveryError,
    explicit_endpoint,
    parse_discovery,
)
from ._pkce import check_verifier, pkce_challenge
from ._token_endpoint import (
    ErrorAnswer,
    OwnsHTTPClient,
    is_transient,
    parse_retry_after,
    post_token_request,
    refresh_failed,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from .._keys import TokenKey
    from .._token import Token

log = get_logger()

#: Scopes `CustomerAccountOAuth.authorization_url` asks for by default.
DEFAULT_SCOPES: Final = ("openid", "email", "customer-account-api:full")
_HEADERS: Final = {"Accept": "application/json"}
_SHOP_ID: Final = re.compile(r"[1-9][0-9]{0,19}")
_DISCOVERY_FAILED: Final = "discovery_failed"
_UNTRUSTED: Final = "untrusted_endpoint"


# --- helpers --------------------------------------------------------------------------------------


def _shop_id(value: str | int) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _SHOP_ID.fullmatch(text):
        msg = f"shop_id must be the shop's numeric id, not {value!r:.40}"
        raise ValueError(msg)
    return text


def _non_empty(name: object, value: object) -> None:
    # Never echo the value: it may be a secret (client secret, code).
    if not isinstance(value, str) or not value:
        msg = f"{name} must be a non-empty str"
        raise ValueError(msg)


def _optional_secret(
    _instance: object, attribute: attrs.Attribute[str | None], value: object
) -> None:
    if value is not None:
        _non_empty(attribute.alias, value)


def _client_id(_instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    _non_empty(attribute.alias, value)


def customer_error(answer: ErrorAnswer) -> ShopTokenError:
    """Map a non-2xx token answer the Customer Account way.

    Any 400 (``invalid_grant`` and the rest) or 401 means the grant is dead:
    the customer must log in again (`ReauthorizationRequired`). Everything
    else is a `RefreshFailed`, transient for 408, 429 and 5xx.
    """
    if answer.status in (400, 401):
        msg = (
            f"{answer.where}: {answer.action} rejected ({answer.detail}); "
            "the customer must log in again"
        )
        return ReauthorizationRequired(msg, key=answer.key)
    return refresh_failed(answer)


# --- the client -----------------------------------------------------------------------------------


@attrs.define(eq=False)
class CustomerAccountOAuth(OwnsHTTPClient):
    """OAuth client for Shopify's Customer Account API (headless storefronts).

    Logs customers in (PKCE login URL, code exchange) and refreshes their
    tokens: a `Refresher` for ``TokenKind.CUSTOMER`` keys. Use it as an async
    context manager (or call `aclose`) to close the HTTP client it created.

    Args:
        shop_id: The shop's numeric id (``https://shopify.com/authentication/{shop_id}``).
        client_id: The Customer Account API client id (``shp_...``).
        client_secret: The secret of a confidential client; None for a public
            client, which must use PKCE. Never shown in a repr.
        http: The HTTP client to use; when None one is created on first use
            (30 s timeout) and owned, that is closed by `aclose`.
        shop: The shop's domain; when given, endpoints are discovered from
            its ``/.well-known/openid-configuration`` (once, then cached) and
            refresh accepts only this shop's keys.
        authorization_endpoint: The login endpoint, overriding discovery and
            the default.
        token_endpoint: The token endpoint, overriding discovery and the default.
        clock: Wall clock (epoch seconds) that dates new tokens, unless
            `refresh` is passed its own.

    Raises:
        ValueError: A bad ``shop_id``, an empty ``client_id`` or secret, or an
            endpoint that is not https.
        InvalidShopDomain: ``shop`` is not a shop domain.
    """

    shop_id: str = attrs.field(converter=_shop_id)
    client_id: str = attrs.field(validator=_client_id)
    _client_secret: str | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=_optional_secret
    )
    _http: httpx.AsyncClient | None = attrs.field(default=None, kw_only=True, repr=False)
    shop: str | None = attrs.field(
        default=None, kw_only=True, converter=attrs.converters.optional(normalize_shop)
    )
    _authorization_endpoint: str | None = attrs.field(
        default=None, kw_only=True, repr=False, converter=explicit_endpoint
    )
    _token_endpoint: str | None = attrs.field(
        default=None, kw_only=True, repr=False, converter=explicit_endpoint
    )
    _clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True, repr=False)
    _discovered: CustomerAccountEndpoints | None = attrs.field(default=None, init=False, repr=False)
    _discovery_lock: trio.Lock = attrs.field(factory=trio.Lock, init=False, repr=False)
    _owns_http: bool = attrs.field(init=False, repr=False)
    _closed: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._owns_http = self._http is None

    @property
    def confidential(self) -> bool:
        """True when the client authenticates with a client secret."""
        return self._client_secret is not None

    # --- endpoints ---------------------------------------------------------------------------

    def _known_endpoints(self) -> CustomerAccountEndpoints | None:
        """The endpoints, when they are known without (further) discovery."""
        if self._discovered is not None:
            return self._discovered
        explicit = self._authorization_endpoint is not None and self._token_endpoint is not None
        if self.shop is not None and not explicit:
            return None
        base = f"https://{SHOPIFY_HOST}/authentication/{self.shop_id}/oauth"
        return CustomerAccountEndpoints(
            authorization_endpoint=self._authorization_endpoint or f"{base}/authorize",
            token_endpoint=self._token_endpoint or f"{base}/token",
        )

    async def discover(self) -> CustomerAccountEndpoints:
        """Return the endpoints, fetching the shop's discovery document if needed.

        The document is fetched once; concurrent first callers share that
        fetch, and a failure is not cached (the next call tries again).
        Explicit endpoints override discovered ones.

        Raises:
            RefreshFailed: Discovery failed (``error="discovery_failed"``) or
                named an endpoint off Shopify's and the shop's hosts
                (``error="untrusted_endpoint"``, not transient).
            RuntimeError: The client was closed.
        """
        return await self._endpoints(key=None, clock=self._clock)

    async def _endpoints(
        self, *, key: TokenKey | None, clock: Callable[[], float]
    ) -> CustomerAccountEndpoints:
        if self._closed:
            msg = "this CustomerAccountOAuth is closed"
            raise RuntimeError(msg)
        known = self._known_endpoints()
        if known is not None:
            await trio.lowlevel.checkpoint()
            return known
        async with self._discovery_lock:
            if self._discovered is None:
                found = await self._fetch_discovery(key=key, clock=clock)
                self._discovered = CustomerAccountEndpoints(
                    authorization_endpoint=self._authorization_endpoint
                    or found.authorization_endpoint,
                    token_endpoint=self._token_endpoint or found.token_endpoint,
                )
            return self._discovered

    async def _fetch_discovery(
        self, *, key: TokenKey | None, clock: Callable[[], float]
    ) -> CustomerAccountEndpoints:
        shop = self.shop
        if shop is None:  # pragma: no cover - _known_endpoints answers without a shop
            msg = "discovery needs the shop domain"
            raise RuntimeError(msg)
        client = self._client()
        where = shop if key is None else str(key)
        try:
            # Redirects are not followed: a merchant controls where the shop's
            # domain redirects, and the app's servers must not fetch arbitrary
            # (internal) URLs for them. A redirect fails discovery; pass the
            # endpoints explicitly for such a shop.
            response = await client.get(
                f"https://{shop}/.well-known/openid-configuration",
                headers=_HEADERS,
                follow_redirects=False,
            )
        except httpx.RequestError as exc:
            error_type = type(exc).__name__
            log.debug("shoptoken.customer.discovery_failed", shop=shop, error_type=error_type)
            msg = f"{where}: endpoint discovery got no usable answer ({error_type}); transient"
            raise RefreshFailed(
                msg, key=key, status=None, error=_DISCOVERY_FAILED, transient=True
            ) from exc

        status = response.status_code
        if not response.is_success:
            transient = is_transient(status)
            retry_after = (
                parse_retry_after(response.headers.get("Retry-After"), now=clock())
                if transient
                else None
            )
            log.debug("shoptoken.customer.discovery_failed", shop=shop, status=status)
            msg = f"{where}: endpoint discovery failed (HTTP {status})"
            if transient:
                msg += "; transient" if retry_after is None else f"; retry after {retry_after:g} s"
            raise RefreshFailed(
                msg,
                key=key,
                status=status,
                error=_DISCOVERY_FAILED,
                retry_after=retry_after,
                transient=transient,
            )
        try:
            data = response.json()
        except (ValueError, RecursionError):
            data = None
        try:
            endpoints = parse_discovery(data, shop=shop, shop_id=self.shop_id)
        except DiscoveryError as exc:
            reason = str(exc)
            untrusted = exc.untrusted
        else:
            log.debug(
                "shoptoken.customer.discovered", shop=shop, token_endpoint=endpoints.token_endpoint
            )
            return endpoints
        log.debug("shoptoken.customer.discovery_refused", shop=shop, reason=reason)
        if untrusted:
            msg = f"{where}: endpoint discovery refused ({reason})"
            raise RefreshFailed(msg, key=key, status=status, error=_UNTRUSTED, transient=False)
        msg = f"{where}: endpoint discovery got an unusable HTTP {status} answer ({reason})"
        raise RefreshFailed(msg, key=key, status=status, error=_DISCOVERY_FAILED, transient=True)

    # --- login ------------------------------------------------------------------------------

    def authorization_url(
        self,
        redirect_uri: str,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        state: str,
        nonce: str | None = None,
        code_verifier: str | None = None,
    ) -> str:
        """Build the URL of Shopify's login page for one customer login.

        Args:
            redirect_uri: Where Shopify sends the customer back (registered
                in the Headless / Hydrogen channel settings).
            scopes: Scopes to request; a str is taken as already space-separated.
            state: An unguessable value kept in the customer's session and
                compared on the callback (CSRF protection).
            nonce: An OpenID nonce to find in the ID token, if you check it.
            code_verifier: The PKCE verifier from `new_pkce`; its S256
                challenge goes in the URL. Required for public clients.

        Returns:
            The URL to redirect the customer to.

        Raises:
            ValueError: Empty ``redirect_uri``, ``state`` or scopes, a malformed
                verifier, or a public client without a verifier.
            RuntimeError: ``shop`` is set and the endpoints were not discovered
                yet: ``await discover()`` first (at startup, say).
        """
        _non_empty("redirect_uri", redirect_uri)
        _non_empty("state", state)
        scope = scopes if isinstance(scopes, str) else " ".join(scopes)
        _non_empty("scopes", scope)
        if nonce is not None:
            _non_empty("nonce", nonce)
        if code_verifier is None and not self.confidential:
            msg = "a public client must use PKCE: pass code_verifier (see new_pkce())"
            raise ValueError(msg)
        endpoints = self._known_endpoints()
        if endpoints is None:
            msg = f"the endpoints of {self.shop} are not discovered yet: await discover() first"
            raise RuntimeError(msg)
        params = {
            "client_id": self.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
        }
        if nonce is not None:
            params["nonce"] = nonce
        if code_verifier is not None:
            params["code_challenge"] = pkce_challenge(code_verifier)
            params["code_challenge_method"] = "S256"
        base = endpoints.authorization_endpoint
        return f"{base}{'&' if '?' in base else '?'}{urlencode(params)}"

    async def exchange_code(
        self, code: str, redirect_uri: str, *, code_verifier: str | None = None
    ) -> Token:
        """Trade the code from the login callback for the customer's first token.

        Check the callback's ``state`` against the session before calling this.

        Args:
            code: The ``code`` query parameter of the callback.
            redirect_uri: The same ``redirect_uri`` the login URL carried.
            code_verifier: The PKCE verifier of this login (required for
                public clients).

        Returns:
            The token, ``expires_at`` counted from when the request was sent.
            Store it under ``TokenKey.customer(shop, customer_id)``.

        Raises:
            ReauthorizationRequired: Shopify refused the code (400, 401):
                expired, used, or not for this client: log in again.
            RefreshFailed: Any other failure; ``transient`` says if a retry may help.
            ValueError: Empty ``code`` or ``redirect_uri``, a malformed
                verifier, or a public client without one (no HTTP call).
            RuntimeError: The client was closed.
        """
        _non_empty("code", code)
        _non_empty("redirect_uri", redirect_uri)
        if code_verifier is None and not self.confidential:
            msg = "a public client must send the PKCE code_verifier of this login"
            raise ValueError(msg)
        payload = {
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "code": code,
        }
        if code_verifier is not None:
            payload["code_verifier"] = check_verifier(code_verifier)
        where = self.shop or f"shop {self.shop_id}"
        return await self._grant(
            payload, key=None, where=where, action="code exchange", clock=self._clock
        )

    # --- refresh ----------------------------------------------------------------------------

    async def refresh(
        self, key: TokenKey, token: Token, *, clock: Callable[[], float] | None = None
    ) -> Token:
        """Exchange a customer token's refresh token for a new pair.

        Args:
            key: The token's key; must be a customer key (of ``shop``, if set).
            token: The current token; its refresh token is spent.
            clock: Wall clock dating the new token; defaults to the client's.
                It is read once, just before the request is sent.

        Returns:
            The new token, ``expires_at`` counted from when the request was sent.

        Raises:
            ReauthorizationRequired: The key is not a customer key or the token
                has no refresh token (both without any HTTP call), or Shopify
                answered 400 or 401: the customer must log in again.
            RefreshFailed: Any other failure; ``transient`` says if a retry may
                help. A key of another shop fails, not transient, without HTTP.
            RuntimeError: The client was closed.
        """
        if key.kind is not TokenKind.CUSTOMER:
            msg = (
                f"{key}: {key.kind.value} tokens are Admin API tokens; "
                "refresh them with ShopifyOAuth, not CustomerAccountOAuth"
            )
            raise ReauthorizationRequired(msg, key=key)
        if self.shop is not None and key.shop != self.shop:
            msg = f"{key}: this CustomerAccountOAuth serves {self.shop}, not {key.shop}"
            raise RefreshFailed(msg, key=key, status=None, error="wrong_shop", transient=False)
        if token.refresh_token is None:
            msg = f"{key}: token has no refresh token; the customer must log in again"
            raise ReauthorizationRequired(msg, key=key)
        payload = {
            "grant_type": "refresh_token",
            "refresh_token": token.refresh_token,
            "client_id": self.client_id,
        }
        return await self._grant(
            payload,
            key=key,
            where=str(key),
            action="token refresh",
            clock=clock or self._clock,
            previous=token,
        )

    # --- the token endpoint ------------------------------------------------------------------

    async def _grant(
        self,
        payload: Mapping[str, str],
        *,
        key: TokenKey | None,
        where: str,
        action: str,
        clock: Callable[[], float],
        previous: Token | None = None,
    ) -> Token:
        """POST a form-encoded grant to the token endpoint, mapped by `customer_error`."""
        endpoints = await self._endpoints(key=key, clock=clock)
        # Public clients send no client authentication, not even an injected
        # client's default auth: the base Auth class leaves requests untouched.
        auth = httpx.Auth()
        extra: list[str | None] = [None if previous is None else previous.access_token]
        if self._client_secret is not None:
            auth = httpx.BasicAuth(self.client_id, self._client_secret)
            basic = f"{self.client_id}:{self._client_secret}".encode()
            extra += [self._client_secret, base64.b64encode(basic).decode("ascii")]
        # The clock is read inside, after discovery: lifetimes count from the send.
        # Any id_token in the answer is not read: the manager keeps the pair only.
        return await post_token_request(
            self._client(),
            endpoints.token_endpoint,
            payload,
            encoding="form",
            secrets=extra,
            key=key,
            where=where,
            action=action,
            clock=clock,
            map_error=customer_error,
            previous=previous,
            auth=auth,
        )
