"""The OAuth redirect round trip: the authorization URL out, the signed query back.

`authorize_url` builds the URL that sends a merchant to Shopify's grant
screen. `verify_callback_query` verifies the query string of a redirect
from Shopify: HMAC, timestamp, shop, state.

Shopify signs the query of every redirect it sends to an app (the OAuth
callback, the app's launch URL) with the app's client secret. The signed
message, per Shopify's documented algorithm (as implemented by
``shopify_python_api``):

1. take every parameter except ``hmac`` (and the legacy ``signature``), with
   keys and values as received, that is already URL-decoded;
2. escape the delimiters so no value can impersonate another pair: ``%`` as
   ``%25`` and ``&`` as ``%26`` in keys and values, ``=`` as ``%3D`` in keys;
3. sort by key and join the ``key=value`` pairs with ``&``;
4. HMAC-SHA256 with the client secret, as lower-case hex.

`verify_callback_query` then checks, in this order, and names the first check
that fails in its `InvalidCallback`:

- the query is a mapping of str to str without repeated keys;
- ``hmac`` is present and matches, compared in constant time, under the
  current secret or, during a secret rotation, the old one;
- ``timestamp`` is at most `CALLBACK_MAX_AGE` (5 minutes) old and at most
  `CALLBACK_FUTURE_SKEW` (90 s) ahead of the injected clock. Shopify's own
  JavaScript library allows 90 s either way; ``shopify_python_api`` allows a
  day. The redirect is followed at once, so 5 minutes covers slow networks
  and drifting clocks, while keeping a leaked signed URL usable for minutes,
  not a day;
- ``shop`` is a valid ``*.myshopify.com`` domain;
- ``state``, when the caller expects one, matches (constant time).

No message quotes a parameter value, the received ``hmac`` or the expected one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlencode

from .._errors import InvalidCallback, InvalidShopDomain, ReauthorizationRequired, ShopTokenError
from .._keys import normalize_shop
from .._log import get_logger

if TYPE_CHECKING:
    from ._token_endpoint import ErrorAnswer

log = get_logger()

#: How old (seconds) a callback's ``timestamp`` may be.
CALLBACK_MAX_AGE: Final = 300.0
#: How far (seconds) a callback's ``timestamp`` may be ahead of our clock.
CALLBACK_FUTURE_SKEW: Final = 90.0
# Parameters that are not part of the signed message.
_UNSIGNED: Final = frozenset({"hmac", "signature"})
# A callback is a handful of short parameters; refuse to hash megabytes.
_MAX_QUERY_CHARS: Final = 64 * 1024
_MAX_PARAMS: Final = 100
_HEX_DIGEST_CHARS: Final = 64
_MAX_TIMESTAMP_DIGITS: Final = 12


def new_state() -> str:
    """A fresh, unguessable OAuth ``state`` nonce (256 random bits, URL-safe).

    Store it with the user's session (a signed cookie, say) before redirecting
    to `ShopifyOAuth.authorization_url`, and pass it to `verify_callback`.
    """
    return _secrets.token_urlsafe(32)


def _scope_list(scopes: str | Sequence[str]) -> list[str]:
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    if not all(isinstance(item, str) for item in items):
        msg = "scopes must be a comma-separated str or a sequence of str"
        raise TypeError(msg)
    names = [item.strip() for item in items if item.strip()]
    if not names or any("," in name or not name.isprintable() for name in names):
        msg = "scopes must name at least one scope, each without commas"
        raise ValueError(msg)
    return names


def authorize_url(
    shop: str,
    client_id: str,
    scopes: str | Sequence[str],
    redirect_uri: str,
    *,
    state: str,
    online: bool = False,
) -> str:
    """The URL of Shopify's grant screen for the authorization code flow.

    Args:
        shop: The shop ("my-store" or "my-store.myshopify.com").
        client_id: The app's client id.
        scopes: Scopes to request: a sequence or a comma-separated str.
        redirect_uri: Where Shopify sends the merchant back.
        state: The nonce (`new_state`) to find in the callback.
        online: Ask for an online token (``grant_options[]=per-user``).

    Returns:
        ``https://{shop}/admin/oauth/authorize?client_id=..&scope=..&redirect_uri=..&state=..``.

    Raises:
        InvalidShopDomain: Bad shop domain.
        TypeError: ``scopes`` is neither a str nor a sequence of str.
        ValueError: No scopes, or an empty ``redirect_uri`` or ``state``.
    """
    host = normalize_shop(shop)
    names = _scope_list(scopes)
    for name, value in (("redirect_uri", redirect_uri), ("state", state)):
        if not isinstance(value, str) or not value:
            msg = f"{name} must be a non-empty str"
            raise ValueError(msg)
    params = [
        ("client_id", client_id),
        ("scope", ",".join(names)),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    if online:
        params.append(("grant_options[]", "per-user"))
    return f"https://{host}/admin/oauth/authorize?{urlencode(params, quote_via=quote)}"


def _escape_key(key: str) -> str:
    return key.replace("%", "%25").replace("&", "%26").replace("=", "%3D")


def _escape_value(value: str) -> str:
    return value.replace("%", "%25").replace("&", "%26")


def signing_message(params: Mapping[str, str]) -> str:
    """The text Shopify signs for a query: escaped ``key=value`` pairs, sorted by key.

    ``hmac`` and ``signature`` are left out; values are the decoded ones.
    """
    pairs = sorted(
        (_escape_key(key), _escape_value(value))
        for key, value in params.items()
        if key not in _UNSIGNED
    )
    return "&".join(f"{key}={value}" for key, value in pairs)


def sign_query(params: Mapping[str, str], secret: str) -> str:
    """The hex HMAC-SHA256 Shopify puts in a query's ``hmac`` parameter.

    Useful to build signed callbacks in tests. ``hmac`` and ``signature`` in
    ``params`` are ignored.
    """
    message = signing_message(params).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _reject(reason: str) -> InvalidCallback:
    log.debug("shoptoken.oauth.callback_rejected", reason=reason)
    return InvalidCallback(f"OAuth callback rejected: {reason}")


def _shown(name: object) -> str:
    # Parameter names are untrusted too: bounded and ASCII.
    return ascii(name)[:40]


def _plain_params(query: object) -> dict[str, str]:
    """The query as a plain dict of str, refusing repeated keys and other values."""
    if not isinstance(query, Mapping):
        raise _reject(f"query is a {type(query).__name__}, not a mapping of str to str")
    if len(query) > _MAX_PARAMS:
        raise _reject("too many parameters")
    # Multi-dicts (Starlette's QueryParams, Werkzeug's MultiDict) answer one
    # value per key but keep them all: a repeated key is ambiguous, so refuse.
    getlist = getattr(query, "getlist", None)
    params: dict[str, str] = {}
    size = 0
    for key, value in query.items():
        if not isinstance(key, str):
            raise _reject(f"parameter name {_shown(key)} is not a str")
        if not isinstance(value, str):
            raise _reject(f"parameter {_shown(key)} is repeated or not a str")
        if callable(getlist):
            try:
                count = len(getlist(key))
            except Exception:  # noqa: BLE001 - a foreign mapping's quirk is a bad query, not a crash
                count = 2
            if count != 1:
                raise _reject(f"parameter {_shown(key)} is repeated")
        size += len(key) + len(value) + 2
        if size > _MAX_QUERY_CHARS:
            raise _reject("query is too large")
        params[key] = value
    return params


def _check_hmac(params: Mapping[str, str], secrets: tuple[str, ...]) -> None:
    given = params.get("hmac")
    if not given:
        raise _reject("missing hmac")
    # Shopify sends lower-case hex; anything else cannot match, and checking the
    # shape first keeps compare_digest on ASCII of equal length.
    if len(given) != _HEX_DIGEST_CHARS or not all(c in "0123456789abcdef" for c in given):
        raise _reject("bad hmac (not 64 lower-case hex digits)")
    message = signing_message(params).encode()
    matched = [
        hmac.compare_digest(
            hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode(),
            given.encode(),
        )
        for secret in secrets
    ]
    if not any(matched):
        raise _reject("bad hmac (signature does not match)")
    if not matched[0]:
        log.info("shoptoken.oauth.old_secret_used", check="callback_hmac")


def _check_timestamp(
    params: Mapping[str, str], *, now: float, max_age: float, future_skew: float
) -> None:
    text = params.get("timestamp")
    if text is None:
        raise _reject("missing timestamp")
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_TIMESTAMP_DIGITS):
        raise _reject("bad timestamp (not epoch seconds)")
    age = now - int(text)
    if age > max_age:
        raise _reject(f"stale timestamp ({age:.0f} s old; the limit is {max_age:g} s)")
    if -age > future_skew:
        raise _reject(
            f"timestamp in the future ({-age:.0f} s ahead; the limit is {future_skew:g} s)"
        )


def _check_state(params: Mapping[str, str], expected: str) -> None:
    given = params.get("state")
    if given is None:
        raise _reject("state mismatch (the query has no state)")
    # An empty expected state (a lost session cookie) must never match.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise _reject("state mismatch")


def verify_callback_query(
    query: Mapping[str, str],
    *,
    secrets: tuple[str, ...],
    now: float,
    state: str | None = None,
    max_age: float = CALLBACK_MAX_AGE,
    future_skew: float = CALLBACK_FUTURE_SKEW,
) -> dict[str, str]:
    """Verify a Shopify redirect's query (see the module docstring for the rules).

    Args:
        query: The decoded query parameters, one str value per key. Lists of
            values (``parse_qs``) and repeated keys in a multi-dict are refused.
        secrets: The client secret, then the old one during a rotation.
        now: Wall time (epoch seconds) the timestamp is checked against.
        state: The ``state`` nonce issued for this user; None skips the check
            (the app launch URL carries none).
        max_age: How old the ``timestamp`` may be, seconds.
        future_skew: How far ahead of ``now`` it may be, seconds.

    Returns:
        The verified parameters without ``hmac`` and ``signature``; ``shop``
        in its normalized form.

    Raises:
        InvalidCallback: A check failed; the message names which one.
    """
    params = _plain_params(query)
    _check_hmac(params, secrets)
    _check_timestamp(params, now=now, max_age=max_age, future_skew=future_skew)
    shop = params.get("shop")
    if shop is None:
        raise _reject("missing shop")
    try:
        params["shop"] = normalize_shop(shop)
    except InvalidShopDomain as exc:
        raise _reject(f"bad shop ({exc})") from exc
    if state is not None:
        _check_state(params, state)
    return {key: value for key, value in params.items() if key not in _UNSIGNED}


def code_grant_error(answer: ErrorAnswer) -> ShopTokenError | None:
    """Map Shopify's refusal of an authorization code to `ReauthorizationRequired`.

    A bad, expired or already used code answers 400 ``invalid_request`` ("The
    authorization code was not found or was already used") or
    ``invalid_grant``: the code is spent, so the merchant must go through the
    authorization flow again. Other answers get the default mapping (None).
    """
    if answer.status == HTTPStatus.BAD_REQUEST and answer.error in (
        "invalid_request",
        "invalid_grant",
    ):
        msg = (
            f"{answer.where}: {answer.action} rejected ({answer.detail}); the code is "
            "invalid, expired or already used: send the merchant through authorization again"
        )
        return ReauthorizationRequired(msg, key=answer.key)
    return None
