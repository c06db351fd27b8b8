"""FakeShopify's webhooks: signed deliveries POSTed to an app served on loopback.

Payloads follow Shopify's for the topics shoptoken acts on (``app/uninstalled``
carries the shop resource; the compliance topics ``shop_id`` and
``shop_domain``, and the customer's ``id``, ``email`` and ``phone``); any
other topic gets the payload it is given. Deliveries are signed with the
secret Shopify signs with (the oldest unrevoked one, `signing_secret`), or
any secret a test passes to forge one.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Final

import httpx

from .._keys import normalize_shop
from ._webhook_request import WebhookRequest, webhook_request

if TYPE_CHECKING:
    from collections.abc import Callable

# Shopify gives an app 5 s to answer; a test's app answering slower is broken.
_SEND_TIMEOUT: Final = 5.0


def _customer(customer_id: str | int) -> dict[str, Any]:
    text = str(customer_id).rsplit("/", 1)[-1]
    number: int | str = int(text) if text.isdigit() else text
    return {"id": number, "email": f"customer-{text}@example.com", "phone": None}


def _loopback_url(url: str) -> httpx.URL:
    parsed = httpx.URL(url)
    host = parsed.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parsed.scheme not in ("http", "https") or not loopback:
        msg = f"FakeShopify sends webhooks to loopback http(s) URLs only, not {url!r:.80}"
        raise ValueError(msg)
    return parsed


class WebhookSender:
    """FakeShopify's part that builds and sends webhooks (a mixin)."""

    if TYPE_CHECKING:
        clock: Callable[[], float]

        @property
        def signing_secret(self) -> str: ...
        def shop_id(self, shop: str) -> int: ...
        def revoke(self, shop: str) -> None: ...
        def log_out_customer(self, shop: str, customer_id: str | int | None = None) -> None: ...

    def webhook(
        self,
        topic: str,
        shop: str,
        payload: Any = None,
        *,
        customer_id: str | int | None = None,
        webhook_id: str | None = None,
        secret: str | None = None,
    ) -> WebhookRequest:
        """Build a delivery of ``topic`` for ``shop``, signed as Shopify signs it.

        Args:
            topic: The topic, e.g. ``app/uninstalled`` or ``customers/redact``.
            shop: The shop.
            payload: The JSON payload; None for Shopify's payload of the topic.
            customer_id: The customer of ``customers/redact`` and
                ``customers/data_request`` (a number, or a customer gid).
            webhook_id: The delivery id; repeat one to send a duplicate.
            secret: Sign with this secret instead (a wrong one forges it).
        """
        host = normalize_shop(shop)
        if payload is None:
            payload = self._payload(topic, host, customer_id)
        return webhook_request(
            topic,
            host,
            payload,
            secret=self.signing_secret if secret is None else secret,
            webhook_id=webhook_id,
            triggered_at=self.clock(),
        )

    def _payload(self, topic: str, shop: str, customer_id: str | int | None) -> Any:
        shop_id = self.shop_id(shop)
        if topic == "app/uninstalled":
            name = shop.removesuffix(".myshopify.com")
            return {"id": shop_id, "name": name, "domain": shop, "myshopify_domain": shop}
        compliance: dict[str, Any] = {"shop_id": shop_id, "shop_domain": shop}
        if topic == "shop/redact":
            return compliance
        if topic in ("customers/redact", "customers/data_request"):
            if customer_id is None:
                msg = f"a {topic} webhook needs customer_id"
                raise ValueError(msg)
            compliance["customer"] = _customer(customer_id)
            if topic == "customers/redact":
                compliance["orders_to_redact"] = []
            else:
                compliance["orders_requested"] = []
                compliance["data_request"] = {"id": shop_id % 10_000 + 1}
            return compliance
        return {}

    async def send_webhook(self, url: str, request: WebhookRequest) -> httpx.Response:
        """POST ``request`` to the app at ``url`` (a loopback URL) and return its answer.

        Raises:
            ValueError: ``url`` is not an http(s) URL of a loopback address.
            httpx.HTTPError: The app could not be reached.
        """
        target = _loopback_url(url)
        async with httpx.AsyncClient(timeout=_SEND_TIMEOUT) as client:
            return await client.post(target, content=request.body, headers=request.headers)

    async def uninstall(self, shop: str, url: str | None = None) -> httpx.Response | None:
        """The merchant uninstalls the app: every token of ``shop`` dies, then ``app/uninstalled``.

        Refreshes then answer as for an uninstalled app and API calls 401;
        customers' tokens of the shop die too. With ``url``, the webhook is
        sent there and the app's answer returned.
        """
        self.revoke(shop)
        self.log_out_customer(shop)
        if url is None:
            return None
        return await self.send_webhook(url, self.webhook("app/uninstalled", shop))
