"""Verifying App Bridge session tokens: the JWT an embedded app's frontend sends.

Shopify signs a session token with the app's client secret (HS256). Its
payload, as Shopify documents it::

    iss  "https://{shop}.myshopify.com/admin"   the shop's admin
    dest "https://{shop}.myshopify.com"         the shop
    aud  the app's client id
    sub  the staff user's id, a decimal string
    exp, nbf, iat                               epoch seconds; it lives a minute
    jti  unique token id;   sid  the user's session id

`decode_session_token` accepts a token only when every one of these holds:

- the header names ``HS256`` (``none``, ``HS512``, ``RS256``... are refused:
  no algorithm confusion) and the signature verifies under the client secret
  or, during a secret rotation, the old one;
- ``aud`` is exactly the client id;
- ``exp``, ``nbf``, ``iss``, ``dest`` and ``aud`` are present; ``exp`` and
  ``nbf`` hold against the injected clock with `SESSION_TOKEN_LEEWAY` (10 s,
  Shopify's own libraries' tolerance);
- ``dest`` is ``https://`` plus a valid ``*.myshopify.com`` domain, and
  ``iss`` is ``dest`` plus ``/admin``.

``sub`` is optional (absent, the claims carry no user); when present it must
be a string. Failures raise `InvalidSessionToken` with the reason; no message
or log event quotes the token.

The token exchange that spends a session token lives in `ShopifyOAuth`; its
URNs and `token_exchange_error` (Shopify's own refusal of the token) are here.
"""

from __future__ import annotations

import math
import warnings
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import attrs
import jwt

from .._errors import (
    InvalidSessionToken,
    InvalidShopDomain,
    ReauthorizationRequired,
    ShopTokenError,
)
from .._keys import normalize_shop
from .._log import get_logger
from ._token_endpoint import safe_excerpt

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._token_endpoint import ErrorAnswer

log = get_logger()

# Token exchange (RFC 8693) identifiers: URNs, not secrets.
TOKEN_EXCHANGE_GRANT: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
ID_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a URN
OFFLINE_TOKEN_TYPE: Final = "urn:shopify:params:oauth:token-type:offline-access-token"  # noqa: S105 - a URN
ONLINE_TOKEN_TYPE: Final = "urn:shopify:params:oauth:token-type:online-access-token"  # noqa: S105 - a URN
#: Clock tolerance (seconds) on ``exp`` and ``nbf``.
SESSION_TOKEN_LEEWAY: Final = 10.0
_ALGORITHMS: Final = ["HS256"]
_REQUIRED: Final = ["exp", "nbf", "iss", "dest", "aud"]
# A session token is a few hundred characters; refuse to parse megabytes.
_MAX_TOKEN_CHARS: Final = 8 * 1024
_SHOPIFY_SUFFIX: Final = ".myshopify.com"
_DECIMAL_ID_DIGITS: Final = 20
_DETAIL_LIMIT: Final = 120
# Token segments shorter than this are too short to leak and would garble text.
_MIN_SCRUBBED: Final = 8


@attrs.frozen
class SessionTokenClaims:
    """The verified claims of an App Bridge session token.

    Attributes:
        iss: The issuer, ``https://{shop}/admin``.
        dest: The shop URL, ``https://{shop}``.
        shop: The normalized shop domain taken from ``dest``.
        aud: The app's client id.
        sub: The subject (the staff user's id as a string), if present.
        user_id: ``sub`` as an int when it is a positive decimal id, else None.
        exp: Expiry, epoch seconds.
        nbf: Not-before, epoch seconds.
        iat: Issued-at, epoch seconds, if present.
        jti: The token's unique id, if present.
        sid: The user's session id, if present.
    """

    iss: str
    dest: str
    shop: str
    aud: str
    sub: str | None
    user_id: int | None
    exp: float
    nbf: float
    iat: float | None = None
    jti: str | None = None
    sid: str | None = None


def _invalid(reason: str) -> InvalidSessionToken:
    log.debug("shoptoken.oauth.session_token_rejected", reason=reason)
    return InvalidSessionToken(f"session token rejected: {reason}; fetch a new session token")


def _decode(token: str, secret: str, *, client_id: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        # The key is the app's client secret, whose length Shopify chose; a
        # short one (in tests) must not turn into an error under -W error.
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=_ALGORITHMS,
            audience=client_id,
            options={
                "require": _REQUIRED,
                "strict_aud": True,
                # Time claims are checked against the injected clock below,
                # never against PyJWT's reading of time.time().
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    return payload


def _numeric_date(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise _invalid(f"{name} is not a finite number")
    return number


def _optional_str(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name} is not a string")
    return value


def _shop_of(dest: str) -> str:
    host = dest.removeprefix("https://")
    if host == dest or not host.lower().endswith(_SHOPIFY_SUFFIX):
        raise _invalid("dest is not https://{shop}.myshopify.com")
    try:
        return normalize_shop(host)
    except InvalidShopDomain as exc:
        raise _invalid("dest is not https://{shop}.myshopify.com") from exc


def _claims(payload: Mapping[str, Any], *, now: float, leeway: float) -> SessionTokenClaims:
    exp = _numeric_date(payload, "exp")
    nbf = _numeric_date(payload, "nbf")
    iat = _numeric_date(payload, "iat")
    if exp is None or nbf is None:
        # PyJWT already refused a token without them; this narrows the types.
        raise _invalid("exp and nbf are required")
    if now >= exp + leeway:
        raise _invalid(f"expired {now - exp:.0f} s ago (leeway {leeway:g} s)")
    if now < nbf - leeway:
        raise _invalid(f"not valid for another {nbf - now:.0f} s (leeway {leeway:g} s)")
    dest = _optional_str(payload, "dest")
    iss = _optional_str(payload, "iss")
    aud = payload.get("aud")
    if dest is None or iss is None or not isinstance(aud, str):
        raise _invalid("iss, dest and aud must be strings")
    shop = _shop_of(dest)
    if iss != f"{dest}/admin":
        raise _invalid("iss does not match dest")
    sub = _optional_str(payload, "sub")
    user_id = None
    if sub is not None and sub.isascii() and sub.isdigit() and len(sub) <= _DECIMAL_ID_DIGITS:
        user_id = int(sub) or None
    return SessionTokenClaims(
        iss=iss,
        dest=dest,
        shop=shop,
        aud=aud,
        sub=sub,
        user_id=user_id,
        exp=exp,
        nbf=nbf,
        iat=iat,
        jti=_optional_str(payload, "jti"),
        sid=_optional_str(payload, "sid"),
    )


def decode_session_token(
    token: str,
    *,
    client_id: str,
    secrets: Sequence[str],
    now: float,
    leeway: float = SESSION_TOKEN_LEEWAY,
) -> SessionTokenClaims:
    """Verify an App Bridge session token and return its claims.

    Args:
        token: The JWT (the ``Authorization: Bearer`` value, without "Bearer").
        client_id: The app's client id, the expected ``aud``.
        secrets: The client secret, then the old one during a rotation.
        now: Wall time (epoch seconds) ``exp`` and ``nbf`` are checked against.
        leeway: Clock tolerance on ``exp`` and ``nbf``, seconds.

    Returns:
        The verified claims.

    Raises:
        InvalidSessionToken: The token is malformed, forged, for another app,
            expired, not yet valid, or its shop claims are inconsistent.
    """
    if not isinstance(token, str) or not token:
        raise _invalid("not a non-empty str")
    if len(token) > _MAX_TOKEN_CHARS:
        raise _invalid("too long to be a session token")
    payload: dict[str, Any] | None = None
    for index, secret in enumerate(secrets):
        try:
            payload = _decode(token, secret, client_id=client_id)
        except jwt.InvalidSignatureError:
            # Maybe signed with the other secret of a rotation: try the next.
            continue
        except jwt.PyJWTError as exc:
            # PyJWT's messages name the claim or header at fault; they may quote
            # a header value, so the excerpt is bounded, ASCII and token-free.
            parts = (token, *(part for part in token.split(".") if len(part) >= _MIN_SCRUBBED))
            detail = safe_excerpt(str(exc), parts, limit=_DETAIL_LIMIT)
            raise _invalid(f"{type(exc).__name__}: {detail}") from None
        except (ValueError, TypeError, RecursionError):
            # Inputs PyJWT does not anticipate (deeply nested JSON, say).
            raise _invalid("malformed token") from None
        if index:
            log.info("shoptoken.oauth.old_secret_used", check="session_token")
        break
    if payload is None:
        raise _invalid("signature does not verify")
    return _claims(payload, now=now, leeway=leeway)


def token_exchange_error(answer: ErrorAnswer) -> ShopTokenError | None:
    """Map a token exchange's 400 ``invalid_subject_token`` to `InvalidSessionToken`.

    Shopify refused the session token (expired in flight, say): the frontend
    must fetch a new one. Other answers get the default mapping (None).
    """
    if answer.status == HTTPStatus.BAD_REQUEST and answer.error == "invalid_subject_token":
        msg = (
            f"{answer.where}: {answer.action} rejected ({answer.detail}); fetch a new session token"
        )
        return InvalidSessionToken(msg, key=answer.key)
    return None


def migration_error(answer: ErrorAnswer) -> ShopTokenError | None:
    """Map a migration's 400 ``invalid_subject_token`` to `ReauthorizationRequired`.

    The subject is the shop's old non-expiring token: Shopify refusing it
    means the app was uninstalled or the token revoked, and only a new
    authorization gets the shop a token. Other answers get the default mapping.
    """
    if answer.status == HTTPStatus.BAD_REQUEST and answer.error == "invalid_subject_token":
        msg = (
            f"{answer.where}: {answer.action} rejected ({answer.detail}); the non-expiring "
            "token is no longer valid: the merchant must authorize the app again"
        )
        return ReauthorizationRequired(msg, key=answer.key)
    return None
