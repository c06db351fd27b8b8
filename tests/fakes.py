"""Stores for the manager's tests: one that fails on demand, one with no capabilities."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import trio

from shoptoken import MemoryStore, Token, TokenKey

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


@attrs.define(eq=False)
class FlakyStore(MemoryStore):
    """A MemoryStore whose saves and loads fail while told to."""

    fail_saves: int = 0
    fail_loads: int = 0
    saves: int = 0
    loads: int = 0
    locks: int = 0
    load_latency: float = 0.0

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Save, or fail while ``fail_saves`` is positive (counting down)."""
        self.saves += 1
        if self.fail_saves:
            self.fail_saves -= 1
            await trio.lowlevel.checkpoint()
            raise OSError(f"disk full while writing {token.access_token}")
        await super().save_tokens(key, token)

    @asynccontextmanager
    async def locked(self, key: TokenKey, *, timeout: float) -> AsyncIterator[Any]:  # noqa: ASYNC109 - the protocol's signature
        """Count the lock-and-re-read, then take it."""
        self.locks += 1
        async with super().locked(key, timeout=timeout) as handle:
            yield handle

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load, or fail while ``fail_loads`` is positive (counting down)."""
        self.loads += 1
        if self.load_latency:
            await trio.sleep(self.load_latency)
        if self.fail_loads:
            self.fail_loads -= 1
            raise OSError("database unavailable")
        return await super().load_tokens(key)


def at(clock: Callable[[], float], seconds: float) -> datetime:
    """The datetime ``seconds`` after the clock's current reading."""
    return datetime.fromtimestamp(clock(), UTC) + timedelta(seconds=seconds)


@attrs.define(eq=False)
class PlainStore:
    """The smallest TokenCallback: two methods, no optional capability."""

    tokens: dict[TokenKey, Token] = attrs.field(factory=dict)

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Return the stored token."""
        await trio.lowlevel.checkpoint()
        return self.tokens.get(key)

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Store the token."""
        await trio.lowlevel.checkpoint()
        self.tokens[key] = token
