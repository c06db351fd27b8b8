"""Helpers for testing apps that use shoptoken (and shoptoken itself).

`FakeShopify` emulates Shopify's OAuth endpoints (authorization code, refresh,
token exchange, migration, the Customer Account API) and a small Admin API,
with injectable faults, reached in process or over loopback HTTP
(`serve_loopback`; `serve_loopback_in_thread` for asyncio and synchronous
apps). `trio_wall_clock` drives its clock from trio's. It signs and sends
webhooks (`FakeShopify.webhook`, `send_webhook`, `uninstall`) to an app's
endpoint served on loopback (`webhook_app`, `serve_app`).
"""

from ._asgi import WebhookHandler, webhook_app
from ._clock import EPOCH, trio_wall_clock
from ._fake_shopify import FakeShopify
from ._faults import Endpoint, Fault, FaultKind, FaultPlan
from ._loopback import LoopbackServer, serve_app, serve_loopback
from ._loopback_thread import ThreadedLoopback, serve_loopback_in_thread
from ._routing import ForeignHostError, LoopbackTransport, SyncLoopbackTransport
from ._stats import ShopStatistics
from ._webhook_request import WebhookRequest, webhook_request

__all__ = [
    "EPOCH",
    "Endpoint",
    "FakeShopify",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "ForeignHostError",
    "LoopbackServer",
    "LoopbackTransport",
    "ShopStatistics",
    "SyncLoopbackTransport",
    "ThreadedLoopback",
    "WebhookHandler",
    "WebhookRequest",
    "serve_app",
    "serve_loopback",
    "serve_loopback_in_thread",
    "trio_wall_clock",
    "webhook_app",
    "webhook_request",
]
