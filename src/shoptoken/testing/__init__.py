"""Helpers for testing apps that use shoptoken (and shoptoken itself).

`FakeShopify` emulates Shopify's OAuth endpoints (authorization code, refresh,
token exchange, migration, the Customer Account API) and a small Admin API,
with injectable faults, reached in process or over loopback HTTP
(`serve_loopback`; `serve_loopback_in_thread` for asyncio and synchronous
apps). `trio_wall_clock` drives its clock from trio's.
"""

from ._clock import EPOCH, trio_wall_clock
from ._fake_shopify import FakeShopify
from ._faults import Endpoint, Fault, FaultKind, FaultPlan
from ._loopback import LoopbackServer, serve_loopback
from ._loopback_thread import ThreadedLoopback, serve_loopback_in_thread
from ._routing import ForeignHostError, LoopbackTransport, SyncLoopbackTransport
from ._stats import ShopStatistics

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
    "serve_loopback",
    "serve_loopback_in_thread",
    "trio_wall_clock",
]
