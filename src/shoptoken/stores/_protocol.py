"""Store: what every built-in store offers, and so what `open_store` yields."""

from __future__ import annotations

from typing import Protocol

from .._persistence import (
    SupportsDelete,
    SupportsListKeys,
    SupportsLoadMany,
    SupportsLocked,
    TokenCallback,
)


class Store(
    TokenCallback, SupportsDelete, SupportsListKeys, SupportsLoadMany, SupportsLocked, Protocol
):
    """A `TokenCallback` with every optional capability, a schema and a lifetime.

    `MemoryStore`, `SQLiteStore`, `PostgresStore` and an `EncryptedStore`
    around any of them all are one; `store_from_url` and `open_store` return
    it, so ``await store.create_schema()`` needs no cast.
    """

    async def create_schema(self) -> None:
        """Create the store's table if it does not exist (a no-op in memory)."""
        ...

    async def aclose(self) -> None:
        """Release the store's connections (a no-op in memory)."""
        ...
