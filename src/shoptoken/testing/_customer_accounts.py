"""The Customer Account API's side of the fake: discovery, PKCE logins, token grants.

- ``GET https://{shop}/.well-known/openid-configuration`` lists the endpoints
  on ``https://shopify.com/authentication/{shop_id}/...``;
- ``POST https://shopify.com/authentication/{shop_id}/oauth/token`` takes a
  form-encoded ``authorization_code`` grant (PKCE S256 checked) or
  ``refresh_token`` grant (both tokens rotate; a spent or unknown refresh
  token is 400 ``invalid_grant``). A confidential client authenticates with
  HTTP Basic ``client_id:client_secret``; a public one sends ``client_id``
  only and must use PKCE;
- ``POST https://{shop}/customer/api/{version}/graphql`` answers 200 for a
  live access token (``Authorization`` header), else 401.

Logins are made with `CustomerAccounts.login`: the code a customer's browser
would bring back to the storefront.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import secrets
import warnings
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import jwt

from ._admin_tokens import same, seconds
from ._answer import Answer

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._stats import Counters

_AUTH_BASE: Final = "https://shopify.com/authentication/{shop_id}"
# The fake's identity provider key: id_tokens are HS256 with it (Shopify's are
# RS256 under its JWKS); long enough that PyJWT does not warn.
_ID_TOKEN_KEY: Final = "shoptoken-fake-customer-identity-provider-key"  # noqa: S105 - a fake's key
_BAD_CODE: Final = "The authorization code is invalid, expired or already used"


class CustomerSettings(Protocol):
    """The fake's configuration the customer side reads (live: tests change it)."""

    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def customer_client_id(self) -> str: ...
    @property
    def customer_client_secret(self) -> str | None: ...
    @property
    def customer_access_lifetime(self) -> float: ...
    @property
    def customer_refresh_lifetime(self) -> float: ...
    @property
    def code_lifetime(self) -> float: ...


def pkce_s256(verifier: str) -> str:
    """RFC 7636 S256: base64url (unpadded) of the SHA-256 of the verifier."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def customer_gid(customer_id: str) -> str:
    """The customer's GraphQL id (a bare number becomes ``gid://shopify/Customer/N``)."""
    return f"gid://shopify/Customer/{customer_id}" if customer_id.isdigit() else customer_id


@attrs.define
class _Login:
    shop: str
    customer_id: str
    challenge: str | None
    redirect_uri: str | None
    expires_at: float


@attrs.define
class _Session:
    """One customer login's current pair (a customer may hold several)."""

    shop: str
    customer_id: str
    refresh_expires_at: float


@attrs.define(eq=False)
class CustomerAccounts:
    """Customer logins and tokens of every shop, and the customer token endpoint."""

    settings: CustomerSettings
    counters: Callable[[str], Counters]
    _shops_by_id: dict[str, str] = attrs.field(factory=dict)
    _logins: dict[str, _Login] = attrs.field(factory=dict)
    _sessions: dict[str, _Session] = attrs.field(factory=dict)
    # access token -> (shop, customer id, expiry); replaced tokens live on until expiry.
    _access: dict[str, tuple[str, str, float]] = attrs.field(factory=dict)
    _serial: itertools.count[int] = attrs.field(factory=itertools.count)

    def shop_id(self, shop: str) -> int:
        """``shop``'s numeric id: stable, derived from its domain."""
        digest = hashlib.sha256(shop.encode()).digest()
        shop_id = 10**10 + int.from_bytes(digest[:8]) % (9 * 10**10)
        self._shops_by_id[str(shop_id)] = shop
        return shop_id

    def discovery(self, shop: str) -> Answer:
        """``shop``'s OpenID configuration document."""
        base = _AUTH_BASE.format(shop_id=self.shop_id(shop))
        return Answer.json(
            200,
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "end_session_endpoint": f"{base}/logout",
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "scopes_supported": ["openid", "email", "customer-account-api:full"],
            },
        )

    def login(
        self,
        shop: str,
        customer_id: str,
        *,
        code_challenge: str | None,
        redirect_uri: str | None,
    ) -> str:
        """Issue the code a customer's login would bring back to the storefront."""
        self.shop_id(shop)
        code = secrets.token_urlsafe(24)
        expires_at = self.settings.clock() + self.settings.code_lifetime
        self._logins[code] = _Login(shop, customer_id, code_challenge, redirect_uri, expires_at)
        return code

    def log_out(self, shop: str, customer_id: str | None = None) -> None:
        """End the customer's (or every customer's) sessions at ``shop``: tokens die."""

        def ends(owner_shop: str, owner: str) -> bool:
            return owner_shop == shop and customer_id in (None, owner)

        for refresh in [r for r, s in self._sessions.items() if ends(s.shop, s.customer_id)]:
            del self._sessions[refresh]
        for access in [a for a, (s, c, _) in self._access.items() if ends(s, c)]:
            del self._access[access]

    def token_valid(self, shop: str, access_token: str) -> bool:
        """Whether a Customer Account API call with ``access_token`` is accepted now."""
        entry = self._access.get(access_token)
        return entry is not None and entry[0] == shop and self.settings.clock() < entry[2]

    def refresh_token_works(self, shop: str, refresh_token: str) -> bool:
        """Whether a customer refresh with ``refresh_token`` would succeed now."""
        session = self._sessions.get(refresh_token)
        return (
            session is not None
            and session.shop == shop
            and self.settings.clock() < session.refresh_expires_at
        )

    # -- the token endpoint ------------------------------------------------------------

    def token_endpoint(  # noqa: PLR0911 - one answer per case
        self, shop_id: str, form: Mapping[str, str] | None, authorization: str | None
    ) -> Answer:
        """Answer one ``POST https://shopify.com/authentication/{shop_id}/oauth/token``."""
        shop = self._shops_by_id.get(shop_id)
        if shop is None:
            return Answer.json(404, {"errors": "Not Found"})
        if form is None:
            return Answer.error(400, "invalid_request", "Send a form-encoded body")
        confidential = authorization is not None
        if confidential and not self._basic_auth_ok(authorization or ""):
            return Answer.error(401, "invalid_client", "Client authentication failed")
        if form.get("client_id", self.settings.customer_client_id) != (
            self.settings.customer_client_id
        ):
            return Answer.error(401, "invalid_client", "Unknown client_id")
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self._code(shop, shop_id, form, confidential=confidential)
        if grant == "refresh_token":
            return self._refresh(shop, form.get("refresh_token", ""))
        return Answer.error(400, "unsupported_grant_type")

    def _basic_auth_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        secret = self.settings.customer_client_secret
        if scheme.lower() != "basic" or secret is None:
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, _, given = decoded.partition(":")
        return client_id == self.settings.customer_client_id and same(given, secret)

    def _code(
        self, shop: str, shop_id: str, form: Mapping[str, str], *, confidential: bool
    ) -> Answer:
        login = self._logins.pop(form.get("code", ""), None)
        if login is None or login.shop != shop or self.settings.clock() >= login.expires_at:
            return Answer.error(400, "invalid_grant", _BAD_CODE)
        if login.redirect_uri is not None and form.get("redirect_uri") != login.redirect_uri:
            return Answer.error(400, "invalid_grant", "redirect_uri does not match")
        verifier = form.get("code_verifier")
        if login.challenge is not None:
            if verifier is None or not same(pkce_s256(verifier), login.challenge):
                return Answer.error(400, "invalid_grant", "code_verifier is invalid.")
        elif not confidential:
            return Answer.error(400, "invalid_request", "A public client must use PKCE")
        self.counters(shop).customer_logins += 1
        return self._issue(
            shop, login.customer_id, id_token_issuer=_AUTH_BASE.format(shop_id=shop_id)
        )

    def _refresh(self, shop: str, refresh_token: str) -> Answer:
        session = self._sessions.get(refresh_token)
        counters = self.counters(shop)
        if (
            session is None
            or session.shop != shop
            or self.settings.clock() >= session.refresh_expires_at
        ):
            counters.customer_refreshes_rejected += 1
            return Answer.error(400, "invalid_grant", "The refresh token is invalid or expired")
        # Rotation: the token just used is spent.
        del self._sessions[refresh_token]
        counters.customer_refreshes += 1
        return self._issue(shop, session.customer_id, id_token_issuer=None)

    def _issue(self, shop: str, customer_id: str, *, id_token_issuer: str | None) -> Answer:
        now = self.settings.clock()
        n = next(self._serial)
        access = f"shcat_fake_{n:06d}_{secrets.token_hex(12)}"
        refresh = f"shcrt_fake_{n:06d}_{secrets.token_hex(12)}"
        expires_at = now + self.settings.customer_access_lifetime
        self._access[access] = (shop, customer_id, expires_at)
        self._sessions[refresh] = _Session(
            shop, customer_id, now + self.settings.customer_refresh_lifetime
        )
        data: dict[str, object] = {
            "access_token": access,
            "expires_in": seconds(expires_at - now),
            "refresh_token": refresh,
            "token_type": "Bearer",
        }
        if id_token_issuer is not None:
            data["id_token"] = self._id_token(id_token_issuer, customer_id, now)
        return Answer.json(200, data)

    def _id_token(self, issuer: str, customer_id: str, now: float) -> str:
        claims = {
            "iss": issuer,
            "sub": customer_gid(customer_id),
            "aud": self.settings.customer_client_id,
            "iat": int(now),
            "exp": int(now + self.settings.customer_access_lifetime),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            return jwt.encode(claims, _ID_TOKEN_KEY, algorithm="HS256")

    # -- the Customer Account API ---------------------------------------------------------

    def api_call(self, shop: str, authorization: str) -> Answer:
        """Answer a Customer Account API call (counted, like Admin API calls)."""
        token = authorization.removeprefix("Bearer ").strip()
        counters = self.counters(shop)
        counters.api_calls += 1
        entry = self._access.get(token)
        if entry is not None and self.token_valid(shop, token):
            return Answer.json(200, {"data": {"customer": {"id": customer_gid(entry[1])}}})
        counters.api_calls_rejected += 1
        return Answer.json(401, {"errors": [{"message": "Unauthorized"}]})
