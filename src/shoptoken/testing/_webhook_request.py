"""Signed webhook deliveries, built as Shopify builds them (for tests and FakeShopify)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from .._keys import normalize_shop
from .._oauth._webhooks import sign_webhook

#: The Admin API version FakeShopify stamps on its webhooks.
WEBHOOK_API_VERSION: Final = "2026-07"


@attrs.frozen
class WebhookRequest:
    """One webhook delivery: the raw body and the headers Shopify sends with it.

    Attributes:
        body: The JSON body, as bytes.
        headers: ``Content-Type`` and the ``X-Shopify-*`` headers.
    """

    body: bytes = attrs.field(repr=False)
    headers: dict[str, str] = attrs.field(repr=False)

    @property
    def webhook_id(self) -> str:
        """The delivery's ``X-Shopify-Webhook-Id``."""
        return self.headers["X-Shopify-Webhook-Id"]


def webhook_request(
    topic: str,
    shop: str,
    payload: Any,
    *,
    secret: str,
    webhook_id: str | None = None,
    triggered_at: float = 0.0,
    api_version: str = WEBHOOK_API_VERSION,
) -> WebhookRequest:
    """Build a delivery of ``topic`` for ``shop``, signed with ``secret``.

    Args:
        topic: The topic, e.g. ``app/uninstalled``.
        shop: The shop (normalized into the domain header).
        payload: The JSON payload.
        secret: The client secret that signs it (a wrong one forges it).
        webhook_id: The delivery id; a fresh one by default (repeat it to
            send a duplicate delivery).
        triggered_at: Epoch seconds of ``X-Shopify-Triggered-At``.
        api_version: ``X-Shopify-API-Version``.
    """
    body = json.dumps(payload, separators=(",", ":")).encode()
    # To the microsecond, as shoptoken keeps it: an uninstall's time compares exactly with
    # the obtained_at of the tokens it ends (handle_webhook forgets those obtained before).
    when = datetime.fromtimestamp(triggered_at, UTC).isoformat(timespec="microseconds")
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign_webhook(body, secret),
        "X-Shopify-Shop-Domain": normalize_shop(shop),
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-API-Version": api_version,
        "X-Shopify-Triggered-At": when.replace("+00:00", "Z"),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
    }
    return WebhookRequest(body, headers)
