"""Helpers for testing apps that use shoptoken (and shoptoken itself)."""

from ._clock import EPOCH, trio_wall_clock
from ._fake_shopify import FakeShopify

__all__ = ["EPOCH", "FakeShopify", "trio_wall_clock"]
