"""What shoptoken does with a verified webhook, and how an app spots a repeated delivery.

Topic to action (`handle_webhook`)::

    app/uninstalled          forget_shop: every key of the shop, memory and store,
                             whose token was obtained before the webhook's triggered_at
    shop/redact              the same (sent 48 hours after an uninstall)
    customers/redact         forget the customer's Customer Account API keys
    customers/data_request   nothing: shoptoken holds no customer data but tokens
    any other topic          nothing

A customer's key is `TokenKey.customer` with the subject the app chose: the
numeric id Shopify's payload carries (``"207119551"``) or its GraphQL id
(``"gid://shopify/Customer/207119551"``). Both are forgotten.
"""

from __future__ import annotations

import enum
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

    Safe to call again for a repeated delivery: forgetting is idempotent, and
    an uninstall (or ``shop/redact``) forgets only tokens obtained before the
    webhook's ``triggered_at``, so a retry delivered after the merchant
    reinstalled leaves the reinstall's token alone.

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
        # Only what the uninstall ended: a retry delivered after a reinstall keeps it.
        forgotten = await tokens.forget_shop(webhook.shop, before=webhook.triggered_at)
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


class Delivery(enum.Enum):
    """What `SeenWebhooks.begin` found of a delivery's webhook id, and what to answer."""

    NEW = "new"
    """First seen: handle it, then `SeenWebhooks.done` (or ``discard`` on failure)."""
    IN_PROGRESS = "in progress"
    """Being handled right now: answer 409, and Shopify delivers it again later."""
    DONE = "done"
    """Handled: answer 200."""


@attrs.define(eq=False)
class SeenWebhooks:
    """Recognises repeated deliveries (same webhook id) within one process, for ``ttl`` seconds.

    An id is *in progress* from `begin` until `done` (handled) or `discard`
    (failed): a repeat that arrives meanwhile (Shopify resends a delivery
    not answered within 5 seconds) must not be acknowledged, since the
    first may still fail. Bounded: the oldest ids are dropped beyond
    ``max_entries``. Shopify retries a failed delivery for up to 48 hours;
    across processes or restarts, record ids in the app's database instead
    (see the webhooks docs for a one-statement recipe).

    Attributes:
        ttl: Seconds an id is remembered.
        max_entries: The most ids remembered.
        clock: Seconds, for the ``ttl`` (monotonic by default).
    """

    ttl: float = 48 * 3600.0
    max_entries: int = 100_000
    clock: Callable[[], float] = time.monotonic
    # id -> (expiry, handled); expiries grow from front to back (one ttl from the last write).
    _seen: OrderedDict[str, tuple[float, bool]] = attrs.field(
        factory=OrderedDict, init=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if not (self.ttl > 0 and math.isfinite(self.ttl)) or self.max_entries < 1:
            msg = "SeenWebhooks needs a finite ttl > 0 and max_entries >= 1"
            raise ValueError(msg)

    def begin(self, webhook: Webhook) -> Delivery:
        """Start handling ``webhook`` unless its id is known; say what was found.

        Returns:
            `Delivery.NEW` (now in progress: call `done` or `discard` after
            handling it), `Delivery.IN_PROGRESS` or `Delivery.DONE`.
        """
        seen = self._expire()
        known = seen.get(webhook.webhook_id)
        if known is not None:
            return Delivery.DONE if known[1] else Delivery.IN_PROGRESS
        self._record(webhook, handled=False)
        return Delivery.NEW

    def done(self, webhook: Webhook) -> None:
        """Record that ``webhook`` was handled: its repeats are `Delivery.DONE` for ``ttl``."""
        self._expire()
        self._record(webhook, handled=True)

    def discard(self, webhook: Webhook) -> None:
        """Forget ``webhook``'s id: its handling failed, and Shopify's retry must be handled."""
        self._seen.pop(webhook.webhook_id, None)

    def _expire(self) -> OrderedDict[str, tuple[float, bool]]:
        now = self.clock()
        seen = self._seen
        while seen and next(iter(seen.values()))[0] <= now:
            seen.popitem(last=False)
        return seen

    def _record(self, webhook: Webhook, *, handled: bool) -> None:
        seen = self._seen
        seen.pop(webhook.webhook_id, None)  # re-added at the back: the newest expiry
        while len(seen) >= self.max_entries:
            seen.popitem(last=False)
        seen[webhook.webhook_id] = (self.clock() + self.ttl, handled)

    def __len__(self) -> int:
        return len(self._seen)
