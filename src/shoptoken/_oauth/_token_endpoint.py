"""Talking to an OAuth token endpoint: one POST, its answer mapped into the tree.

Shared by every grant of `ShopifyOAuth` (Admin API) and `CustomerAccountOAuth`
(Customer Account API). The entry point is `post_token_request`; the pieces it
is built from (`error_answer`, `default_error`, `parse_retry_after`,
`safe_excerpt`, `keep_refresh_token`) are importable on their own. These names
are stable: other modules import them.

Default mapping of an answer::

    answer                                  raised                                 outcome
    2xx with a usable token body            nothing: the new `Token`               rotated
    2xx with an unusable body               RefreshFailed("invalid_response")      unknown
    400 invalid_grant, 401 (not the app's)  ReauthorizationRequired                not rotated
    401 invalid_client                      RefreshFailed(not transient)           not rotated
    408, 429, 503                           RefreshFailed(transient, retry_after)  not rotated
    other 5xx (500, 502, 504, 520...)       RefreshFailed(transient, retry_after)  unknown
    any other status (3xx, 4xx)             RefreshFailed(transient=False)         not rotated
    nothing sent (connect refused/timeout)  RefreshFailed(status=None, transient)  not rotated
    sent, no answer (timeout, reset...)     RefreshFailed(status=None, transient)  unknown

"Unknown" (`RefreshFailed.outcome_unknown`) means Shopify may have performed
the grant although we hold no usable answer: for a refresh, the previous
access token may already be revoked. Only a definite answer (an error status
that says nothing was done) or a request that never left proves otherwise.

A grant changes the mapping of non-2xx answers with a ``map_error`` hook
(token exchange turns 400 ``invalid_subject_token`` into `InvalidSessionToken`).

An unusable 2xx body is transient because Shopify keeps the previous refresh
token usable until its replacement is first used: retrying is safe.

No exception message, repr or log event carries a secret: messages quote only
the endpoint's ``error`` / ``error_description`` fields, truncated, made
ASCII-safe, and scrubbed of the request's secrets and of anything shaped like
a Shopify token. Log events are ``debug`` level: the manager reports outcomes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, Self

import attrs
import httpx

from .._errors import ReauthorizationRequired, RefreshFailed, ShopTokenError
from .._log import get_logger
from .._token import ASSUMED_LIFETIME, TokenResponseError, parse_token_response

if TYPE_CHECKING:
    from .._keys import TokenKey
    from .._token import Token

log = get_logger()

#: Timeout of the HTTP clients the OAuth clients create for themselves.
TOKEN_TIMEOUT: Final = httpx.Timeout(30.0)
_HEADERS: Final = {"Accept": "application/json"}
_REDACTED: Final = "[redacted]"
#: How much of the endpoint's ``error_description`` a message quotes.
DESCRIPTION_LIMIT: Final = 200
#: How much of the endpoint's ``error`` code a message quotes.
CODE_LIMIT: Final = 64
#: Request fields whose values are secrets, scrubbed from any text we quote.
SECRET_FIELDS: Final = (
    "client_secret",
    "refresh_token",
    "subject_token",
    "code",
    "code_verifier",
    "access_token",
)
# Answer fields whose values are secrets, should an error body carry them.
_ANSWER_SECRET_FIELDS: Final = ("access_token", "refresh_token", "id_token")
# Shopify's secrets carry a "shp??_" prefix (shpat_, shpua_, shpss_...): mask
# anything shaped like one even when its value is unknown to us.
# Admin ("shp??_") and Customer Account ("shc??_") token shapes.
_TOKEN_SHAPED: Final = re.compile(r"sh[pc][a-z]{2}_[A-Za-z0-9_.-]+")
# Likewise anything shaped like a JWT (a session token): a base64url JSON
# object ("eyJ...") followed by a dot.
_JWT_SHAPED: Final = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*")
# Retry-After delta-seconds; bounded so a silly value cannot blow up int().
_DELTA_SECONDS: Final = re.compile(r"\d{1,10}(?:\.\d{1,6})?")


class OwnsHTTPClient:
    """What `ShopifyOAuth` and `CustomerAccountOAuth` share: their HTTP client's lifetime.

    A client of their own is created on first use and closed by `aclose`;
    an injected one (``http=``) is the caller's and stays open.
    """

    _http: httpx.AsyncClient | None
    _owns_http: bool
    _closed: bool

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

    def _client(self) -> httpx.AsyncClient:
        if self._closed:
            msg = f"this {type(self).__name__} is closed"
            raise RuntimeError(msg)
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=TOKEN_TIMEOUT)
        return self._http


class TokenParser(Protocol):
    """Builds a `Token` from a decoded 2xx JSON body (`parse_token_response` is one)."""

    def __call__(self, data: object, *, sent_at: float) -> Token:
        """Parse ``data``; raise `TokenResponseError` (or ValueError) when unusable."""
        ...


@attrs.frozen
class ErrorAnswer:
    """A non-2xx answer of a token endpoint, its fields already safe to quote.

    Attributes:
        status: The HTTP status.
        error: The ``error`` code, truncated and scrubbed, when present.
        error_description: ``error_description`` (or the Admin API's
            ``errors``), truncated, ASCII-safe and scrubbed, when present.
        retry_after: Seconds from ``Retry-After`` on a transient status, else None.
        where: What the error concerns, for messages (a key or a shop).
        action: What was attempted, for messages ("token refresh").
        key: The token key the error concerns, when known.
    """

    status: int
    error: str | None
    error_description: str | None
    retry_after: float | None
    where: str
    action: str
    key: TokenKey | None = None

    @property
    def detail(self) -> str:
        """``HTTP 400 invalid_grant: description``, for messages."""
        text = f"HTTP {self.status}"
        if self.error:
            text += f" {self.error}"
        if self.error_description:
            text += f": {self.error_description}"
        return text

    @property
    def transient(self) -> bool:
        """True for 408, 429 and 5xx: a retry later may succeed."""
        return is_transient(self.status)


#: A grant's own mapping of a non-2xx answer; None falls back to `default_error`.
ErrorMapper = Callable[[ErrorAnswer], ShopTokenError | None]


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


def safe_excerpt(text: str, secrets: Iterable[str], *, limit: int) -> str:
    """Make untrusted text safe to quote: secret-free, ASCII, single-line, bounded.

    Args:
        text: The text (an endpoint's error description, say).
        secrets: Values to replace with ``[redacted]`` wherever they occur.
            Anything shaped like a Shopify token (``shpat_...``) or a JWT
            (``eyJ...``) is masked too.
        limit: Characters kept; a longer text is cut and ends in ``...``.

    Returns:
        The cleaned excerpt.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    text = _JWT_SHAPED.sub(_REDACTED, _TOKEN_SHAPED.sub(_REDACTED, text))
    shown = "".join(_ascii_safe(char) for char in text[:limit])
    if len(text) > limit or len(shown) > limit:
        shown = shown[:limit] + "..."
    return shown


#: Statuses that say the request was not acted on: the server is unavailable
#: (503), asked us to slow down (429), or timed out before reading it (408).
_NOT_PROCESSED: Final = frozenset(
    {HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE}
)
#: Transport errors raised before any byte of the request reached the server.
_NEVER_SENT: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def outcome_unknown(status: int) -> bool:
    """True when an error status does not prove the request was left undone.

    A 5xx other than 503 may come from a proxy or a crash after Shopify
    performed the grant (502, 504, 520...); 4xx, 429 and 503 are definite.
    """
    return status >= HTTPStatus.INTERNAL_SERVER_ERROR and status not in _NOT_PROCESSED


def is_transient(status: int) -> bool:
    """True for statuses a later retry may fix: 408, 429 and every 5xx (520 too)."""
    return (
        status in (HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS)
        or status >= HTTPStatus.INTERNAL_SERVER_ERROR
    )


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, list[str]]:
    """The ``error`` and ``error_description`` and any tokens in an error body."""
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


def error_answer(
    response: httpx.Response,
    *,
    secrets: Iterable[str],
    clock: Callable[[], float],
    where: str,
    action: str,
    key: TokenKey | None = None,
) -> ErrorAnswer:
    """Read a non-2xx response into an `ErrorAnswer` whose fields are safe to quote.

    Args:
        response: The response (any non-2xx status).
        secrets: The request's secrets, scrubbed from the quoted fields (any
            token the error body itself carries is scrubbed too).
        clock: Wall clock (epoch seconds) a ``Retry-After`` HTTP-date counts
            from; read only when the status is transient.
        where: What the error concerns, for messages.
        action: What was attempted, for messages.
        key: The token key the error concerns, when known.

    Returns:
        The answer; ``retry_after`` is read only for transient statuses.
    """
    raw_error, raw_description, tokens = _error_fields(response)
    scrub = (*secrets, *tokens)
    status = response.status_code
    return ErrorAnswer(
        status=status,
        error=None if raw_error is None else safe_excerpt(raw_error, scrub, limit=CODE_LIMIT),
        error_description=(
            None
            if raw_description is None
            else safe_excerpt(raw_description, scrub, limit=DESCRIPTION_LIMIT)
        ),
        retry_after=(
            parse_retry_after(response.headers.get("Retry-After"), now=clock())
            if is_transient(status)
            else None
        ),
        where=where,
        action=action,
        key=key,
    )


def refresh_failed(answer: ErrorAnswer, *, transient: bool | None = None) -> RefreshFailed:
    """The `RefreshFailed` describing ``answer`` (``transient`` from its status by default)."""
    transient = answer.transient if transient is None else transient
    retry_after = answer.retry_after if transient else None
    unknown = outcome_unknown(answer.status)
    msg = f"{answer.where}: {answer.action} failed ({answer.detail})"
    if transient:
        msg += "; transient" if retry_after is None else f"; retry after {retry_after:g} s"
    if unknown:
        msg += "; outcome unknown"
    return RefreshFailed(
        msg,
        key=answer.key,
        status=answer.status,
        error=answer.error,
        error_description=answer.error_description,
        retry_after=retry_after,
        transient=transient,
        outcome_unknown=unknown,
    )


def default_error(answer: ErrorAnswer) -> ShopTokenError:
    """Map a non-2xx answer the refresh-grant way (the table in the module docstring).

    400 ``invalid_grant`` and a 401 other than ``invalid_client`` mean the
    grant is dead: `ReauthorizationRequired`. 401 ``invalid_client`` is the
    app's own credentials (RFC 6749 section 5.2): a `RefreshFailed` that is
    not transient and marks no shop. Everything else is a `RefreshFailed`,
    transient for 408, 429 and 5xx.
    """
    if answer.status == HTTPStatus.UNAUTHORIZED and answer.error == "invalid_client":
        return refresh_failed(answer, transient=False)
    if answer.status == HTTPStatus.UNAUTHORIZED or (
        answer.status == HTTPStatus.BAD_REQUEST and answer.error == "invalid_grant"
    ):
        msg = (
            f"{answer.where}: {answer.action} rejected ({answer.detail}); "
            "the merchant must authorize the app again"
        )
        return ReauthorizationRequired(msg, key=answer.key)
    return refresh_failed(answer)


def keep_refresh_token(new: Token, old: Token, *, sent_at: float) -> Token:
    """Carry the old refresh token over when a refresh answer brought none.

    RFC 6749 section 6: the server *may* issue a new refresh token; when it
    does not, the old one stays in force. Dropping it would strand the shop
    at the next expiry, so keep it and keep the token expiring.

    Args:
        new: The token the refresh answer gave.
        old: The token that was refreshed.
        sent_at: Wall time (epoch seconds) the refresh request was sent.

    Returns:
        ``new``, or ``new`` with the old refresh token (and an expiry of
        `ASSUMED_LIFETIME` if it had none).
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


def request_secrets(
    payload: Mapping[str, str], extra: Iterable[str | None] = ()
) -> tuple[str, ...]:
    """The secret values of a grant's payload (`SECRET_FIELDS`) plus ``extra`` ones."""
    values = [payload.get(name) for name in SECRET_FIELDS]
    values += list(extra)
    return tuple(value for value in values if isinstance(value, str) and value)


async def post_token_request(
    client: httpx.AsyncClient,
    url: str,
    payload: Mapping[str, str],
    *,
    encoding: Literal["json", "form"] = "json",
    secrets: Iterable[str | None] = (),
    key: TokenKey | None = None,
    where: str,
    action: str,
    clock: Callable[[], float],
    map_error: ErrorMapper | None = None,
    parse: TokenParser = parse_token_response,
    previous: Token | None = None,
    auth: httpx.Auth | None = None,
) -> Token:
    """POST a grant to a token endpoint and turn the answer into a `Token`.

    The clock is read once, just before sending; the token's lifetimes count
    from that instant, never from when the answer arrived.

    Args:
        client: The HTTP client to send with.
        url: The token endpoint (``https://{shop}/admin/oauth/access_token``,
            ``https://shopify.com/authentication/{shop_id}/oauth/token``).
        payload: The grant's fields, secrets included.
        encoding: ``"json"`` (Admin API) or ``"form"``
            (``application/x-www-form-urlencoded``, Customer Account API).
        secrets: Secrets beyond the payload's `SECRET_FIELDS` (the client
            secret is one when it is not in the payload, an old client secret
            another) to keep out of every message and log event.
        key: The token key errors concern, when known.
        where: What errors concern, for messages (``str(key)`` or the shop).
        action: What the grant is, for messages ("token refresh").
        clock: Wall clock (epoch seconds), read just before sending.
        map_error: The grant's own mapping of a non-2xx answer; when it is
            None or returns None, `default_error` decides.
        parse: Builds the token from the decoded 2xx body;
            `parse_token_response` by default.
        previous: The token being refreshed: its refresh token stays in force
            if the answer brings none (`keep_refresh_token`).
        auth: Client authentication for this request (HTTP Basic for a
            confidential Customer Account client; ``httpx.Auth()`` for none at
            all); None uses the client's default.

    Returns:
        The new token.

    Raises:
        ReauthorizationRequired: 400 ``invalid_grant`` or a 401 other than
            ``invalid_client`` (by default).
        RefreshFailed: Any other failure (see the module docstring), or
            whatever ``map_error`` returns.
    """
    scrub = request_secrets(payload, secrets)
    sent_at = clock()
    body: dict[str, Any] = (
        {"json": dict(payload)} if encoding == "json" else {"data": dict(payload)}
    )
    if auth is not None:
        body["auth"] = auth
    try:
        # Never follow a redirect, whatever the client's setting: it would
        # re-send the secrets in the body to wherever the answer points.
        response = await client.post(url, headers=_HEADERS, follow_redirects=False, **body)
    except httpx.RequestError as exc:
        # Only the type is quoted: transport messages may hold response bytes.
        error_type = type(exc).__name__
        unknown = not isinstance(exc, _NEVER_SENT)
        log.debug("shoptoken.oauth.transport_error", key=where, error_type=error_type)
        msg = f"{where}: {action} got no usable answer ({error_type})"
        if unknown:
            msg += "; outcome unknown"
        raise RefreshFailed(
            msg, key=key, status=None, transient=True, outcome_unknown=unknown
        ) from exc

    status = response.status_code
    if not response.is_success:
        answer = error_answer(
            response, secrets=scrub, clock=clock, where=where, action=action, key=key
        )
        log.debug(
            "shoptoken.oauth.http_error",
            key=where,
            status=status,
            error=answer.error,
            error_description=answer.error_description,
            retry_after=answer.retry_after,
        )
        error = map_error(answer) if map_error is not None else None
        raise error if error is not None else default_error(answer)

    try:
        token = parse(response.json(), sent_at=sent_at)
    except TokenResponseError as exc:
        # Our own message, which never echoes a secret; scrubbed anyway.
        reason = safe_excerpt(str(exc), scrub, limit=DESCRIPTION_LIMIT)
    except (ValueError, RecursionError, OverflowError):
        # Not JSON (HTML, truncated, bad encoding), or values Python cannot
        # even convert; the exception text may quote the body, so drop it.
        reason = "body is not usable token JSON"
    else:
        if previous is not None:
            token = keep_refresh_token(token, previous, sent_at=sent_at)
        return token
    log.debug("shoptoken.oauth.invalid_response", key=where, status=status, reason=reason)
    # A 2xx means the grant was performed: whatever it issued is lost to us.
    msg = f"{where}: {action} got an unusable HTTP {status} answer ({reason}); outcome unknown"
    raise RefreshFailed(
        msg,
        key=key,
        status=status,
        error="invalid_response",
        transient=True,
        outcome_unknown=True,
    )
