"""ShopifyOAuth: the Admin API OAuth client.

Every grant goes through one helper, `ShopifyOAuth._post_token`, which POSTs
JSON to ``https://{shop}/admin/oauth/access_token`` and maps the answer into
the exception tree::

    answer                                  raised
    2xx with a usable token body            nothing: the new `Token`
    2xx with an unusable body               RefreshFailed(error="invalid_response", transient)
    400 invalid_grant, any 401              ReauthorizationRequired
    408, 429, 5xx (520 too)                 RefreshFailed(transient=True, retry_after=...)
    any other status (3xx, 4xx)             RefreshFailed(transient=False)
    no answer (connect, timeout, protocol)  RefreshFailed(status=None, transient=True)

An unusable 2xx body is transient because Shopify keeps the previous refresh
token usable until its replacement is first used: retrying is safe.

No exception message, repr or log event carries a secret: messages quote only
Shopify's ``error`` / ``error_description`` fields, truncated, made ASCII-safe,
and scrubbed of the request's secrets and of anything shaped like a Shopify
token. Log events are ``debug`` level: the manager reports the outcome.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, Self

import attrs
import httpx
import structlog

from ._errors import ReauthorizationRequired, RefreshFailed, ShopTokenError
from ._keys import TokenKind
from ._token import ASSUMED_LIFETIME, TokenResponseError, parse_token_response

if TYPE_CHECKING:
    from ._keys import TokenKey
    from ._token import Token

log = structlog.get_logger("shoptoken")

_TIMEOUT: Final = httpx.Timeout(30.0)
_HEADERS: Final = {"Accept": "application/json"}
_REDACTED: Final = "[redacted]"
# How much of Shopify's error text a message quotes.
_DESCRIPTION_LIMIT: Final = 200
_CODE_LIMIT: Final = 64
# Payload fields whose values are secrets, scrubbed from any text we quote.
_SECRET_FIELDS: Final = ("client_secret", "refresh_token", "subject_token", "code")
# Answer fields whose values are secrets, should an error body carry them.
_ANSWER_SECRET_FIELDS: Final = ("access_token", "refresh_token")
# Shopify's secrets carry a "shp??_" prefix (shpat_, shpua_, shpss_...): mask
# anything shaped like one even when its value is unknown to us.
_TOKEN_SHAPED: Final = re.compile(r"shp[a-z]{2}_[A-Za-z0-9_-]+")
# Retry-After delta-seconds; bounded so a silly value cannot blow up int().
_DELTA_SECONDS: Final = re.compile(r"\d{1,10}(?:\.\d{1,6})?")


def _non_empty_str(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    # Checked at runtime too: the value comes from untyped configuration. Never
    # echo it: it may be the client secret.
    if not isinstance(value, str) or not value:
        msg = f"{attribute.alias} must be a non-empty str"
        raise ValueError(msg)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Read a ``Retry-After`` header as seconds to wait.

    Args:
        value: The header value: delta-seconds ("120") or an HTTP-date.
        now: Wall time (epoch seconds) an HTTP-date is measured from.

    Returns:
        Seconds to wait (0.0 for a date in the past), or None when the header
        is absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # RFC 5322 "-0000": the time is UTC, the zone merely unstated.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _ascii_safe(char: str) -> str:
    return char if " " <= char <= "~" else char.encode("unicode_escape").decode("ascii")


def _excerpt(text: str, secrets: Iterable[str], *, limit: int) -> str:
    """Make untrusted text safe to quote: secret-free, ASCII, single-line, bounded."""
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    text = _TOKEN_SHAPED.sub(_REDACTED, text)
    shown = "".join(_ascii_safe(char) for char in text[:limit])
    if len(text) > limit or len(shown) > limit:
        shown = shown[:limit] + "..."
    return shown


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, list[str]]:
    """Shopify's ``error`` and ``error_description`` and any tokens in an error body."""
    try:
        data = response.json()
    except (ValueError, RecursionError):
        # HTML error pages, truncated bodies, bad encodings: no fields.
        return None, None, []
    if not isinstance(data, Mapping):
        return None, None, []
    tokens = [data[name] for name in _ANSWER_SECRET_FIELDS if isinstance(data.get(name), str)]
    error = data.get("error")
    description = data.get("error_description")
    if description is None:
        # The Admin API's own style: {"errors": "[API] Invalid API key ..."}.
        description = data.get("errors")
    return (
        error if isinstance(error, str) and error else None,
        description if isinstance(description, str) and description else None,
        [token for token in tokens if token],
    )


def _is_transient(status: int) -> bool:
    return (
        status in (HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS)
        or status >= HTTPStatus.INTERNAL_SERVER_ERROR
    )


def _status_error(
    *,
    key: TokenKey | None,
    where: str,
    action: str,
    status: int,
    error: str | None,
    description: str | None,
    retry_after: float | None,
) -> ShopTokenError:
    """Map a non-2xx answer (its fields already made safe) to an exception."""
    detail = f"HTTP {status}"
    if error:
        detail += f" {error}"
    if description:
        detail += f": {description}"
    if status == HTTPStatus.UNAUTHORIZED or (
        status == HTTPStatus.BAD_REQUEST and error == "invalid_grant"
    ):
        msg = f"{where}: {action} rejected ({detail}); the merchant must authorize the app again"
        return ReauthorizationRequired(msg, key=key)
    transient = _is_transient(status)
    msg = f"{where}: {action} failed ({detail})"
    if transient:
        msg += "; transient" if retry_after is None else f"; retry after {retry_after:g} s"
    return RefreshFailed(
        msg,
        key=key,
        status=status,
        error=error,
        error_description=description,
        retry_after=retry_after if transient else None,
        transient=transient,
    )


def _keep_refresh_token(new: Token, old: Token, *, sent_at: float) -> Token:
    """Carry the old refresh token over when a refresh answer brought none.

    RFC 6749 section 6: the server *may* issue a new refresh token; when it
    does not, the old one stays in force. Dropping it would strand the shop
    at the next expiry, so keep it and keep the token expiring.
    """
    if new.refresh_token is not None or old.refresh_token is None:
        return new
    log.warning("shoptoken.oauth.refresh_token_kept")
    expires_at = new.expires_at
    if expires_at is None:
        expires_at = datetime.fromtimestamp(sent_at, UTC) + timedelta(seconds=ASSUMED_LIFETIME)
    return attrs.evolve(
        new,
        refresh_token=old.refresh_token,
        refresh_token_expires_at=old.refresh_token_expires_at,
        expires_at=expires_at,
    )


@attrs.define(eq=False)
class ShopifyOAuth:
    """OAuth client for Shopify's Admin API; refreshes expiring offline tokens.

    A `Refresher` for the token manager. Use it as an async context manager
    (or call `aclose`) to close the HTTP client it created for itself.

    Args:
        client_id: The app's client id (API key).
        client_secret: The app's client secret. Never shown in a repr.
        http: The HTTP client to use; when None one is created on first use
            (30 s timeout) and owned, that is closed by `aclose`.
        old_client_secret: The previous secret during a secret rotation.
        expiring: Ask for expiring tokens in grants that take the option.
        clock: Wall clock (epoch seconds) that dates new tokens, unless a
            call passes its own.

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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client: its own HTTP client is closed, an injected one is not."""
        self._closed = True
        if self._owns_http and self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def refresh(
        self, key: TokenKey, token: Token, *, clock: Callable[[], float] | None = None
    ) -> Token:
        """Exchange an offline token's refresh token for a new pair.

        Args:
            key: The token's key; must be an offline key.
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
        return await self._post_token(
            key.shop,
            payload,
            key=key,
            action="token refresh",
            clock=clock or self._clock,
            previous=token,
        )

    def _client(self) -> httpx.AsyncClient:
        if self._closed:
            msg = "this ShopifyOAuth is closed"
            raise RuntimeError(msg)
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=_TIMEOUT)
        return self._http

    def _secrets(self, payload: Mapping[str, str]) -> tuple[str, ...]:
        values = [payload.get(name) for name in _SECRET_FIELDS]
        values += [self._client_secret, self._old_client_secret]
        return tuple(value for value in values if value)

    async def _post_token(
        self,
        shop: str,
        payload: Mapping[str, str],
        *,
        key: TokenKey | None,
        action: str,
        clock: Callable[[], float],
        previous: Token | None = None,
    ) -> Token:
        """POST a grant to the shop's token endpoint and parse the answer.

        Args:
            shop: The normalized shop domain.
            payload: The grant's JSON body (secrets included).
            key: The key the errors concern, when known.
            action: What the grant is, for messages ("token refresh").
            clock: Wall clock read once, just before sending, to date the token.
            previous: The token being refreshed; its refresh token stays in
                force if the answer brings none.

        Returns:
            The new token.

        Raises:
            ReauthorizationRequired: 400 ``invalid_grant`` or 401.
            RefreshFailed: Any other failure (see the module docstring).
            RuntimeError: The client was closed.
        """
        client = self._client()
        secrets = self._secrets(payload)
        where = str(key) if key is not None else shop
        sent_at = clock()
        try:
            response = await client.post(
                f"https://{shop}/admin/oauth/access_token", json=dict(payload), headers=_HEADERS
            )
        except httpx.RequestError as exc:
            # Only the type is quoted: transport messages may hold response bytes.
            error_type = type(exc).__name__
            log.debug("shoptoken.oauth.transport_error", key=where, error_type=error_type)
            msg = f"{where}: {action} got no usable answer ({error_type})"
            raise RefreshFailed(msg, key=key, status=None, transient=True) from exc

        status = response.status_code
        if not response.is_success:
            raw_error, raw_description, tokens = _error_fields(response)
            secrets = (*secrets, *tokens)
            error = None if raw_error is None else _excerpt(raw_error, secrets, limit=_CODE_LIMIT)
            description = (
                None
                if raw_description is None
                else _excerpt(raw_description, secrets, limit=_DESCRIPTION_LIMIT)
            )
            retry_after = None
            if _is_transient(status):
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now=clock())
            log.debug(
                "shoptoken.oauth.http_error",
                key=where,
                status=status,
                error=error,
                error_description=description,
                retry_after=retry_after,
            )
            raise _status_error(
                key=key,
                where=where,
                action=action,
                status=status,
                error=error,
                description=description,
                retry_after=retry_after,
            )

        try:
            token = parse_token_response(response.json(), sent_at=sent_at)
        except TokenResponseError as exc:
            # Our own message, which never echoes a secret; scrubbed anyway.
            reason = _excerpt(str(exc), secrets, limit=_DESCRIPTION_LIMIT)
        except (ValueError, RecursionError, OverflowError):
            # Not JSON (HTML, truncated, bad encoding), or values Python cannot
            # even convert; the exception text may quote the body, so drop it.
            reason = "body is not usable token JSON"
        else:
            if previous is not None:
                token = _keep_refresh_token(token, previous, sent_at=sent_at)
            return token
        log.debug("shoptoken.oauth.invalid_response", key=where, status=status, reason=reason)
        msg = f"{where}: {action} got an unusable HTTP {status} answer ({reason}); transient"
        raise RefreshFailed(msg, key=key, status=status, error="invalid_response", transient=True)
