"""Helpers for testing apps that use shoptoken (and shoptoken itself)."""

from ._clock import EPOCH, trio_wall_clock

__all__ = ["EPOCH", "trio_wall_clock"]
