"""Built-in `TokenCallback` implementations."""

from ._memory import MemoryStore

__all__ = ["MemoryStore"]
