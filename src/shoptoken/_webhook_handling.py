"""What shoptoken does with a verified webhook, and how an app spots a repeated delivery.

Topic to action (`handle_webhook`)::

    app/uninstalled          forget_shop: every key of the shop, memory and store
    shop/redact              the same (sent 48 hours after an uninstall)
    customers/redact         forget the customer's Customer Account API keys
    customers/data_request   nothing: shoptoken holds no customer data but tokens
    any other topic          nothing

A customer's key is `TokenKey.customer` with the subject the app chose: the
numeric id Shopify's payload carries (``"207119551"``) or its GraphQL id
(``"gid://shopify/Customer/207119551"``). Both are forgotten.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

import attrs

from ._errors import InvalidWebhook
from ._keys import TokenKey
from ._log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._core._manager import TokenManager
    from ._oauth._webhooks import Webhook

log = get_logger()

APP_UNINSTALLED: Final = "app/uninstalled"
SHOP_REDACT: Final = "shop/redact"
CUSTOMERS_REDACT: Final = "customers/redact"
CUSTOMERS_DATA_REQUEST: Final = "customers/data_request"
_CUSTOMER_GID: Final = "gid://shopify/Customer/"
_CUSTOMER_ID: Final = re.compile(r"[0-9]{1,20}")


def customer_keys(webhook: Webhook) -> list[TokenKey]:
    """The keys a ``customers/redact`` (or ``customers/data_request``) payload's customer may have.

    Raises:
        InvalidWebhook: The payload has no ``customer.id``.
    """
    payload = webhook.payload
    customer = payload.get("customer") if isinstance(payload, dict) else None
    raw = customer.get("id") if isinstance(customer, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raw = None
    # ASCII digits, at most 20 (a 64-bit id): "²" is a digit to str.isdigit,
    # and int() of thousands of digits raises by itself.
    digits = None if raw is None else _CUSTOMER_ID.fullmatch(str(raw))
    if digits is None:
        msg = f"{webhook.topic} webhook rejected: the payload has no numeric customer.id"
        raise InvalidWebhook(msg)
    number = str(int(digits[0]))
    return [
        TokenKey.customer(webhook.shop, number),
        TokenKey.customer(webhook.shop, _CUSTOMER_GID + number),
    ]


async def handle_webhook(tokens: TokenManager, webhook: Webhook) -> list[TokenKey]:
    """Do what ``webhook`` asks of the tokens shoptoken holds (see the module docstring).

    Safe to call again for a repeated delivery: forgetting is idempotent.

    Args:
        tokens: The manager holding the app's tokens.
        webhook: A webhook `ShopifyOAuth.verify_webhook` returned.

    Returns:
        The keys forgotten: for an uninstall or ``shop/redact`` those found
        in memory or in the store; for ``customers/redact`` both keys the
        customer's id maps to. Empty for the other topics.

    Raises:
        InvalidWebhook: A ``customers/redact`` payload without a customer id.
        PersistenceError: The store failed; answer 5xx so Shopify retries.
    """
    topic = webhook.topic
    if topic in (APP_UNINSTALLED, SHOP_REDACT):
        forgotten = await tokens.forget_shop(webhook.shop)
        log.info(
            "shoptoken.webhook.shop_forgotten", topic=topic, shop=webhook.shop, keys=len(forgotten)
        )
        return forgotten
    if topic == CUSTOMERS_REDACT:
        keys = customer_keys(webhook)
        for key in keys:
            await tokens.forget(key)
        log.info("shoptoken.webhook.customer_forgotten", topic=topic, shop=webhook.shop)
        return keys
    if topic == CUSTOMERS_DATA_REQUEST:
        customer_keys(webhook)  # verified like a redaction; nothing to hand over
        log.info("shoptoken.webhook.data_request", shop=webhook.shop)
    return []


@attrs.define(eq=False)
class SeenWebhooks:
    """Recognises repeated deliveries (same webhook id) within one process, for ``ttl`` seconds.

    Bounded: the oldest ids are dropped beyond ``max_entries``. Shopify
    retries a failed delivery for up to 48 hours; across processes or
    restarts, record ids in the app's database instead (see the webhooks
    docs for a one-statement recipe).

    Attributes:
        ttl: Seconds an id is remembered.
        max_entries: The most ids remembered.
        clock: Seconds, for the ``ttl`` (monotonic by default).
    """

    ttl: float = 48 * 3600.0
    max_entries: int = 100_000
    clock: Callable[[], float] = time.monotonic
    _seen: OrderedDict[str, float] = attrs.field(factory=OrderedDict, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not (self.ttl > 0 and math.isfinite(self.ttl)) or self.max_entries < 1:
            msg = "SeenWebhooks needs a finite ttl > 0 and max_entries >= 1"
            raise ValueError(msg)

    def first_delivery(self, webhook: Webhook) -> bool:
        """Record ``webhook``'s id; True the first time it is seen within ``ttl``."""
        now = self.clock()
        seen = self._seen
        # Ids expire in the order they were added (one ttl): the oldest are in front.
        while seen and next(iter(seen.values())) <= now:
            seen.popitem(last=False)
        if webhook.webhook_id in seen:
            return False
        while len(seen) >= self.max_entries:
            seen.popitem(last=False)
        seen[webhook.webhook_id] = now + self.ttl
        return True

    def discard(self, webhook: Webhook) -> None:
        """Forget ``webhook``'s id: its handling failed, and Shopify's retry must be handled."""
        self._seen.pop(webhook.webhook_id, None)

    def __len__(self) -> int:
        return len(self._seen)
