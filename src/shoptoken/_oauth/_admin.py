"""ShopifyOAuth: the Admin API OAuth client, every grant Shopify offers an app.

Flows and what each raises (HTTP answers are mapped by `_token_endpoint`,
whose module docstring draws the default table)::

    authorization_url / new_state      build the install redirect (no I/O)
    verify_callback                    InvalidCallback: says which check failed
    exchange_code                      authorization-code grant
    verify_session_token               InvalidSessionToken (local, no I/O)
    verify_webhook                     InvalidWebhook: says which check failed
    exchange_session_token             token exchange for embedded apps
    migrate_to_expiring                non-expiring offline token -> expiring pair
    refresh                            refresh grant (the manager's `Refresher`)
    mint                               client credentials grant (own shops' keys)

Error choices beyond the default table:

- ``exchange_code``: Shopify answers a bad, expired or already used code with
  400 ``invalid_request`` ("The authorization code was not found or was
  already used") or ``invalid_grant``. Both raise `ReauthorizationRequired`:
  the code is spent, and the only way forward is to send the merchant through
  the authorization flow again. (`InvalidCallback` stays for a query that
  fails verification; a verified callback whose code Shopify refuses is not
  a forgery.)
- ``exchange_session_token``: 400 ``invalid_subject_token`` raises
  `InvalidSessionToken`: the frontend must fetch a new session token.
- ``migrate_to_expiring``: 400 ``invalid_subject_token`` (the old token is
  revoked: the app was uninstalled) raises `ReauthorizationRequired`.
- A 2xx answer that is no usable token raises a transient
  ``RefreshFailed(error="invalid_response")``; so does a migration answer
  without a refresh token, and an online exchange without an associated user.

No exception message, repr or log event carries a secret (client secrets,
codes, session tokens, access and refresh tokens).
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

import attrs

from .._errors import InvalidCallback, ReauthorizationRequired, RefreshFailed, ShopTokenError
from .._keys import TokenKey, TokenKind, normalize_shop
from .._log import get_logger
from .._token import Token, parse_token_response
from ._client_credentials import CLIENT_CREDENTIALS_GRANT, parse_minted
from ._redirect import authorize_url, code_grant_error, verify_callback_query
from ._redirect import new_state as _new_state
from ._session_token import (
    ID_TOKEN_TYPE,
    OFFLINE_TOKEN_TYPE,
    ONLINE_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
    SessionTokenClaims,
    decode_session_token,
    migration_error,
    token_exchange_error,
)
from ._token_endpoint import OwnsHTTPClient, post_token_request
from ._webhooks import Webhook, verify_webhook_request

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import httpx

    from ._token_endpoint import ErrorAnswer, TokenParser

log = get_logger()


def _non_empty_str(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    # Checked at runtime too: the value comes from untyped configuration. Never
    # echo it: it may be the client secret.
    if not isinstance(value, str) or not value:
        msg = f"{attribute.alias} must be a non-empty str"
        raise ValueError(msg)


def _invalid_response(where: str, action: str, reason: str, key: TokenKey | None) -> RefreshFailed:
    log.debug("shoptoken.oauth.invalid_response", key=where, reason=reason)
    # A 2xx answer: the grant was performed, and what it issued is lost to us.
    msg = f"{where}: {action} got an unusable answer ({reason}); outcome unknown"
    return RefreshFailed(
        msg, key=key, error="invalid_response", transient=True, outcome_unknown=True
    )


@attrs.define(eq=False)
class ShopifyOAuth(OwnsHTTPClient):
    """OAuth client for Shopify's Admin API: install, exchange, migration, refresh, mint.

    A `Refresher` (and the minter of client-credentials keys) for the token
    manager. Use it as an async context manager (or call `aclose`) to close
    the HTTP client it created for itself.

    Args:
        client_id: The app's client id (API key).
        client_secret: The app's client secret. Never shown in a repr.
        http: The HTTP client to use; when None one is created on first use
            (30 s timeout) and owned, that is closed by `aclose`.
        old_client_secret: The previous secret during a secret rotation:
            callbacks and session tokens signed with it are still accepted,
            and a grant the current secret gets 401 ``invalid_client`` for
            is sent once more with it.
        expiring: Ask for expiring tokens in grants that take the option.
        clock: Wall clock (epoch seconds) that dates new tokens and checks
            callback timestamps and session token lifetimes, unless a call
            passes its own.

    Raises:
        ValueError: ``client_id`` or a secret is empty or not a str.
    """

    client_id: str = attrs.field(validator=_non_empty_str)
    _client_secret: str = attrs.field(repr=False, validator=_non_empty_str)
    _http: httpx.AsyncClient | None = attrs.field(default=None, kw_only=True, repr=False)
    _old_client_secret: str | None = attrs.field(
        default=None, kw_only=True, repr=False, validator=attrs.validators.optional(_non_empty_str)
    )
    expiring: bool = attrs.field(default=True, kw_only=True)
    _clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True, repr=False)
    _owns_http: bool = attrs.field(init=False, repr=False)
    _closed: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._owns_http = self._http is None

    # -- install: authorization code grant -------------------------------------------

    @staticmethod
    def new_state() -> str:
        """A fresh, unguessable ``state`` nonce (256 random bits, URL-safe).

        Keep it with the user's session (a signed cookie, say), pass it to
        `authorization_url`, and check it with `verify_callback`.
        """
        return _new_state()

    def authorization_url(
        self,
        shop: str,
        scopes: str | Sequence[str],
        redirect_uri: str,
        *,
        state: str,
        online: bool = False,
    ) -> str:
        """The URL to redirect a merchant to, to install or re-authorize the app.

        Args:
            shop: The shop ("my-store" or "my-store.myshopify.com").
            scopes: Scopes to request: a sequence or a comma-separated str.
            redirect_uri: Where Shopify sends the merchant back (must be
                listed in the app's configuration).
            state: A nonce from `new_state`, kept with the user's session and
                checked by `verify_callback`.
            online: Ask for an online (per-user) token (``grant_options[]=per-user``).

        Returns:
            ``https://{shop}/admin/oauth/authorize?client_id=...&scope=...``.

        Raises:
            InvalidShopDomain: Bad shop domain.
            ValueError: No scopes, or an empty ``redirect_uri`` or ``state``.
        """
        return authorize_url(shop, self.client_id, scopes, redirect_uri, state=state, online=online)

    def verify_callback(
        self, query: Mapping[str, str], *, state: str | None = None
    ) -> dict[str, str]:
        """Verify the query of a redirect from Shopify (the OAuth callback, the launch URL).

        Checks the HMAC (constant time; the old secret too during a rotation),
        that ``timestamp`` is at most 5 minutes old and 90 s ahead of the clock,
        the ``shop`` domain, and ``state`` when given (constant time). See
        `shoptoken._callback_query` for the exact rules.

        Args:
            query: The decoded query parameters, one str per key.
            state: The nonce issued with `authorization_url` for this user;
                None skips the check (the launch URL carries none).

        Returns:
            The verified parameters without ``hmac``; ``shop`` normalized.

        Raises:
            InvalidCallback: A check failed; the message says which one.
        """
        return verify_callback_query(
            query, secrets=self._secret_list(), now=self._clock(), state=state
        )

    async def exchange_code(
        self, shop: str, code: str, *, clock: Callable[[], float] | None = None
    ) -> Token:
        """Exchange a verified callback's authorization code for a token.

        Call `verify_callback` first. An online token (``online=True`` in
        `authorization_url`) has ``associated_user_id`` set: store it under
        ``TokenKey.online(shop, token.associated_user_id)``, else under
        ``TokenKey.offline(shop)``.

        Args:
            shop: The shop of the verified callback.
            code: Its ``code`` parameter; single use, short-lived.
            clock: Wall clock dating the token, read just before sending.

        Returns:
            The token; expiring (with a refresh token) when ``expiring`` is set.

        Raises:
            InvalidShopDomain: Bad shop domain (no HTTP call).
            InvalidCallback: ``code`` is empty or not a str (no HTTP call).
            ReauthorizationRequired: Shopify refused the code (bad, expired or
                already used), or answered 401.
            RefreshFailed: Any other failure; ``transient`` says if a retry may help.
            RuntimeError: The client was closed.
        """
        host = normalize_shop(shop)
        if not isinstance(code, str) or not code:
            msg = f"{host}: the callback carries no authorization code"
            raise InvalidCallback(msg)
        payload = {"client_id": self.client_id, "client_secret": self._client_secret, "code": code}
        if self.expiring:
            payload["expiring"] = "1"
        return await self._post(
            host, payload, key=None, action="code exchange", clock=clock, map_error=code_grant_error
        )

    # -- embedded apps: session tokens and token exchange ------------------------------

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> Webhook:
        """Verify a webhook delivery from Shopify and return it parsed.

        Checks ``X-Shopify-Hmac-Sha256`` against the raw body (constant time;
        the old secret too during a rotation), the shop domain, and that the
        topic, webhook id, API version and trigger time headers are present
        and well-formed, and that the body is JSON. No I/O.

        Args:
            body: The raw request body, exactly as received (not re-encoded).
            headers: The request's headers; names in any case.

        Returns:
            The verified `Webhook`.

        Raises:
            InvalidWebhook: A check failed; the message says which one.
                Answer the request with 401.
        """
        return verify_webhook_request(body, headers, secrets=self._secret_list())

    def verify_session_token(self, session_token: str) -> SessionTokenClaims:
        """Verify an App Bridge session token (HS256, ``aud``, 10 s leeway) locally.

        Args:
            session_token: The JWT from the ``Authorization: Bearer`` header.

        Returns:
            Its verified claims; ``shop`` is the normalized shop domain.

        Raises:
            InvalidSessionToken: The token failed a check; fetch a new one.
        """
        return decode_session_token(
            session_token, client_id=self.client_id, secrets=self._secret_list(), now=self._clock()
        )

    async def exchange_session_token(
        self, session_token: str, *, online: bool, clock: Callable[[], float] | None = None
    ) -> tuple[TokenKey, Token]:
        """Exchange a session token for an offline or online access token.

        The session token is verified locally first: a bad one costs no HTTP call.

        Args:
            session_token: The JWT from the ``Authorization: Bearer`` header.
            online: Ask for the staff user's online token instead of the
                shop's offline token.
            clock: Wall clock dating the token, read just before sending.

        Returns:
            ``(TokenKey.offline(shop), token)`` or
            ``(TokenKey.online(shop, user_id), token)``, the user being the
            answer's ``associated_user``.

        Raises:
            InvalidSessionToken: The session token failed verification, or
                Shopify answered 400 ``invalid_subject_token``.
            ReauthorizationRequired: 400 ``invalid_grant`` or 401.
            RefreshFailed: Any other failure; ``transient`` says if a retry may help.
            RuntimeError: The client was closed.
        """
        claims = self.verify_session_token(session_token)
        key = None if online else TokenKey.offline(claims.shop)
        payload = {
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": session_token,
            "subject_token_type": ID_TOKEN_TYPE,
            "requested_token_type": ONLINE_TOKEN_TYPE if online else OFFLINE_TOKEN_TYPE,
        }
        if self.expiring:
            payload["expiring"] = "1"
        action = f"{'online' if online else 'offline'} token exchange"
        token = await self._post(
            claims.shop,
            payload,
            key=key,
            action=action,
            clock=clock,
            map_error=token_exchange_error,
        )
        if key is not None:
            return key, token
        user_id = token.associated_user_id
        if user_id is None or user_id <= 0:
            raise _invalid_response(claims.shop, action, "no associated_user", None)
        return TokenKey.online(claims.shop, user_id), token

    # -- migration and refresh -----------------------------------------------------------

    async def migrate_to_expiring(
        self,
        shop: str,
        non_expiring_token: str | Token,
        *,
        clock: Callable[[], float] | None = None,
    ) -> Token:
        """Swap a non-expiring offline token for an expiring pair (token exchange).

        From 2027-01-01 Shopify rejects non-expiring offline tokens of public
        apps: migrate every stored one before then. The old token stops
        working for Admin API calls once migrated, so save the new pair
        (``await tokens.put_token(TokenKey.offline(shop), token)``) at once.
        Shopify answers a retry with the same original token with the same
        pair for up to seven days (until the pair is first refreshed), so a
        lost answer is recovered by calling this again.

        Args:
            shop: The shop the token belongs to.
            non_expiring_token: The offline access token, or its `Token`.
            clock: Wall clock dating the token, read just before sending.

        Returns:
            The expiring token with its refresh token.

        Raises:
            InvalidShopDomain: Bad shop domain (no HTTP call).
            ValueError: The token is empty or already has a refresh token.
            ReauthorizationRequired: 400 ``invalid_grant`` or 401 (the old
                token is revoked: the merchant must authorize again).
            RefreshFailed: Any other failure, or an answer without a refresh
                token; ``transient`` says if a retry may help.
            RuntimeError: The client was closed.
        """
        key = TokenKey.offline(shop)
        if isinstance(non_expiring_token, Token):
            if non_expiring_token.refresh_token is not None:
                msg = f"{key}: the token already expires; refresh it instead"
                raise ValueError(msg)
            subject = non_expiring_token.access_token
        else:
            subject = non_expiring_token
        if not isinstance(subject, str) or not subject:
            msg = "non_expiring_token must be a non-empty str or a Token"
            raise ValueError(msg)
        payload = {
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject,
            "subject_token_type": OFFLINE_TOKEN_TYPE,
            "requested_token_type": OFFLINE_TOKEN_TYPE,
            "expiring": "1",
        }
        action = "migration to expiring tokens"
        token = await self._post(
            key.shop, payload, key=key, action=action, clock=clock, map_error=migration_error
        )
        if token.refresh_token is None or token.expires_at is None:
            raise _invalid_response(str(key), action, "no expiring token in the answer", key)
        return token

    async def refresh(
        self, key: TokenKey, token: Token, *, clock: Callable[[], float] | None = None
    ) -> Token:
        """Exchange an offline token's refresh token for a new pair.

        A client-credentials key is minted again instead (`mint`).

        Args:
            key: The token's key; an offline (or client-credentials) key.
            token: The current token; its refresh token is spent.
            clock: Wall clock dating the new token; defaults to the client's.
                It is read once, just before the request is sent.

        Returns:
            The new token, ``expires_at`` counted from when the request was sent.

        Raises:
            ReauthorizationRequired: The key is not offline, the token has no
                refresh token (both without any HTTP call), or Shopify answered
                400 ``invalid_grant`` or 401.
            RefreshFailed: Any other failure; ``transient`` says if a retry may help.
            RuntimeError: The client was closed.
        """
        if key.kind is TokenKind.CLIENT_CREDENTIALS:
            return await self.mint(key, clock=clock)  # renewed by asking again
        if key.kind is TokenKind.ONLINE:
            msg = f"{key}: online tokens cannot be refreshed; exchange a new session token"
            raise ReauthorizationRequired(msg, key=key)
        if key.kind is not TokenKind.OFFLINE:
            msg = (
                f"{key}: customer tokens are refreshed with CustomerAccountOAuth, not ShopifyOAuth"
            )
            raise ReauthorizationRequired(msg, key=key)
        if token.refresh_token is None:
            msg = (
                f"{key}: token has no refresh token; migrate it with token exchange / re-authorize"
            )
            raise ReauthorizationRequired(msg, key=key)
        payload = {
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "grant_type": "refresh_token",
            "refresh_token": token.refresh_token,
        }
        return await self._post(
            key.shop, payload, key=key, action="token refresh", clock=clock, previous=token
        )

    async def mint(self, key: TokenKey, *, clock: Callable[[], float] | None = None) -> Token:
        """Obtain a new token for a client-credentials key (the client credentials grant).

        For apps of the developer's own organization on the stores it owns:
        the app's client id and secret buy an Admin API token of about 24
        hours, with no refresh token (ask again before it expires). The
        token manager calls this for `TokenKey.client_credentials` keys.

        Args:
            key: A ``TokenKey.client_credentials(shop)`` key.
            clock: Wall clock dating the token, read just before sending.

        Returns:
            The token, ``expires_at`` counted from when the request was sent.

        Raises:
            ValueError: ``key`` is not a client-credentials key (no HTTP call).
            ReauthorizationRequired: Shopify answered 400 ``invalid_grant`` or a
                401 other than ``invalid_client`` (the app is not installed there).
            RefreshFailed: Any other failure; 401 ``invalid_client`` (the app's
                credentials) is not transient, 429 and 5xx are.
            RuntimeError: The client was closed.
        """
        if not isinstance(key, TokenKey) or key.kind is not TokenKind.CLIENT_CREDENTIALS:
            msg = f"mint takes a TokenKey.client_credentials(shop) key, not {key!s:.120}"
            raise ValueError(msg)
        payload = {
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "grant_type": CLIENT_CREDENTIALS_GRANT,
        }
        return await self._post(
            key.shop,
            payload,
            key=key,
            action="client credentials grant",
            clock=clock,
            parse=parse_minted,
        )

    # -- machinery -----------------------------------------------------------------------

    def _secret_list(self) -> tuple[str, ...]:
        if self._old_client_secret is None:
            return (self._client_secret,)
        return (self._client_secret, self._old_client_secret)

    async def _post(
        self,
        shop: str,
        payload: Mapping[str, str],
        *,
        key: TokenKey | None,
        action: str,
        clock: Callable[[], float] | None,
        map_error: Callable[[ErrorAnswer], ShopTokenError | None] | None = None,
        previous: Token | None = None,
        parse: TokenParser = parse_token_response,
    ) -> Token:
        """POST a grant to the shop's token endpoint (see `post_token_request`).

        When the current client secret gets 401 ``invalid_client`` and an old
        secret is configured, the grant is sent once more with the old one:
        during a secret rotation Shopify may still expect it. ``invalid_client``
        is a definite refusal, so the second request cannot double a rotation.
        """
        send = functools.partial(
            post_token_request,
            self._client(),
            f"https://{shop}/admin/oauth/access_token",
            secrets=self._secret_list(),
            key=key,
            where=str(key) if key is not None else shop,
            action=action,
            clock=clock or self._clock,
            map_error=map_error,
            previous=previous,
            parse=parse,
        )
        try:
            return await send(payload)
        except RefreshFailed as exc:
            if self._old_client_secret is None or not exc.app_credentials_rejected:
                raise
            log.warning("shoptoken.oauth.old_client_secret_tried", key=str(key or shop))
            return await send({**payload, "client_secret": self._old_client_secret})
