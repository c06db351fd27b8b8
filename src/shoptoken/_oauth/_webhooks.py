"""Webhook verification: Shopify's signed deliveries, checked and parsed.

Shopify signs every webhook it POSTs to an app:

- ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw request
  body, keyed with the app's client secret. It is compared in constant time
  against the current secret and, during a secret rotation, the old one.
- ``X-Shopify-Topic`` (``app/uninstalled``, ``orders/create``, ...),
  ``X-Shopify-Shop-Domain`` (validated like every shop domain),
  ``X-Shopify-Webhook-Id`` (the same for every delivery of one webhook: the
  idempotency key), ``X-Shopify-API-Version`` and ``X-Shopify-Triggered-At``
  (ISO 8601) must all be present; ``X-Shopify-Event-Id`` is kept when sent.
- The body must be a JSON document.

Header names are matched case-insensitively, whatever mapping carries them
(httpx's or Starlette's headers, a plain dict). Every failure raises
`InvalidWebhook` naming the check that failed; no message quotes the
signature, the expected one or the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._errors import InvalidShopDomain, InvalidWebhook
from .._keys import normalize_shop
from .._log import get_logger

if TYPE_CHECKING:
    from collections.abc import Sequence

log = get_logger()

HMAC_HEADER: Final = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER: Final = "X-Shopify-Topic"
SHOP_HEADER: Final = "X-Shopify-Shop-Domain"
WEBHOOK_ID_HEADER: Final = "X-Shopify-Webhook-Id"
API_VERSION_HEADER: Final = "X-Shopify-API-Version"
TRIGGERED_AT_HEADER: Final = "X-Shopify-Triggered-At"
EVENT_ID_HEADER: Final = "X-Shopify-Event-Id"

# A base64 SHA-256 digest: 32 bytes, 44 characters with one "=" of padding.
_DIGEST_B64_CHARS: Final = 44
# Bounds on untrusted header values (Shopify's are far shorter).
_MAX_HEADER_CHARS: Final = 256
_MAX_HEADERS: Final = 200


@attrs.frozen
class Webhook:
    """A verified Shopify webhook delivery.

    Attributes:
        topic: The topic, e.g. ``app/uninstalled`` or ``customers/redact``.
        shop: The shop's normalized domain (``name.myshopify.com``).
        webhook_id: The delivery's id; every retry of one webhook repeats it.
        api_version: The Admin API version of the payload, e.g. ``2026-07``.
        triggered_at: When the event happened (timezone-aware, UTC).
        payload: The parsed JSON body.
        event_id: ``X-Shopify-Event-Id`` when sent (shared by the webhooks
            one event causes), else None.
    """

    topic: str
    shop: str
    webhook_id: str
    api_version: str
    triggered_at: datetime
    payload: Any = attrs.field(repr=False, hash=False)  # JSON: hashed by the other fields
    event_id: str | None = None


def sign_webhook(body: bytes, secret: str) -> str:
    """The base64 HMAC-SHA256 Shopify puts in ``X-Shopify-Hmac-Sha256`` (for tests)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _reject(reason: str) -> InvalidWebhook:
    log.debug("shoptoken.webhook.rejected", reason=reason)
    return InvalidWebhook(f"webhook rejected: {reason}")


def _lower_headers(headers: object) -> dict[str, str]:
    """The headers keyed by lower-cased name; a name given twice is refused."""
    if not isinstance(headers, Mapping):
        raise _reject(f"headers are a {type(headers).__name__}, not a mapping of str to str")
    if len(headers) > _MAX_HEADERS:
        raise _reject("too many headers")
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise _reject(f"header {ascii(name)[:40]} is not a str with a str value")
        folded = name.lower()
        if folded in lowered:
            # Two spellings of one name in a dict: ambiguous, so refused.
            raise _reject(f"header {ascii(name)[:40]} is given twice")
        lowered[folded] = value
    return lowered


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise _reject(f"missing {name}")
    if len(value) > _MAX_HEADER_CHARS or not value.isascii() or not value.isprintable():
        raise _reject(f"malformed {name}")
    return value


def _check_hmac(body: bytes, given: str, secrets: Sequence[str]) -> None:
    # The shape first: compare_digest then always sees two equal-length ASCII digests.
    try:
        raw = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError):
        raise _reject(f"malformed {HMAC_HEADER} (not base64)") from None
    if len(given) != _DIGEST_B64_CHARS or len(raw) != hashlib.sha256().digest_size:
        raise _reject(f"malformed {HMAC_HEADER} (not a SHA-256 digest)")
    matched = [
        hmac.compare_digest(hmac.new(secret.encode(), body, hashlib.sha256).digest(), raw)
        for secret in secrets
    ]
    if not any(matched):
        raise _reject("bad signature (X-Shopify-Hmac-Sha256 does not match the body)")
    if not matched[0]:
        log.info("shoptoken.oauth.old_secret_used", check="webhook_hmac")


def _triggered_at(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _reject(f"malformed {TRIGGERED_AT_HEADER} (not an ISO 8601 time)") from None
    if when.tzinfo is None:
        raise _reject(f"malformed {TRIGGERED_AT_HEADER} (no time zone)")
    try:
        return when.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        raise _reject(f"malformed {TRIGGERED_AT_HEADER} (out of range)") from None


def verify_webhook_request(
    body: bytes, headers: Mapping[str, str], *, secrets: Sequence[str]
) -> Webhook:
    """Verify a webhook delivery (see the module docstring for the rules).

    Args:
        body: The raw request body, exactly as received.
        headers: The request's headers (any case).
        secrets: The client secret, then the old one during a rotation.

    Returns:
        The verified `Webhook`.

    Raises:
        InvalidWebhook: A check failed; the message names which one.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise _reject(f"body is a {type(body).__name__}, not bytes (pass the raw body)")
    raw = bytes(body)
    lowered = _lower_headers(headers)
    _check_hmac(raw, _header(lowered, HMAC_HEADER), secrets)
    try:
        shop = normalize_shop(_header(lowered, SHOP_HEADER))
    except InvalidShopDomain as exc:
        raise _reject(f"bad {SHOP_HEADER} ({exc})") from exc
    topic = _header(lowered, TOPIC_HEADER)
    webhook_id = _header(lowered, WEBHOOK_ID_HEADER)
    api_version = _header(lowered, API_VERSION_HEADER)
    triggered_at = _triggered_at(_header(lowered, TRIGGERED_AT_HEADER))
    event_id = _header(lowered, EVENT_ID_HEADER) if EVENT_ID_HEADER.lower() in lowered else None
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _reject("body is not JSON") from None
    return Webhook(
        topic=topic,
        shop=shop,
        webhook_id=webhook_id,
        api_version=api_version,
        triggered_at=triggered_at,
        payload=payload,
        event_id=event_id,
    )
