"""MemoryStore: a process-local `TokenCallback` with every optional capability."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from .._errors import LockTimeout
from .._keys import normalize_shop
from .._token import obtained_before
from ._codec import LIST_BATCH

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    from .._keys import TokenKey
    from .._token import Token


@attrs.define(eq=False)
class _MemoryLocked:
    store: MemoryStore
    key: TokenKey
    token: Token | None

    async def save(self, token: Token) -> None:
        await self.store.save_tokens(self.key, token)
        self.token = token


@attrs.define(eq=False)
class MemoryStore:
    """Keeps tokens in a dict: for tests, demos and single-process apps that can lose them.

    Its lock (``locked``) holds only within this process. Every method
    checkpoints, as real stores do, so code tested against it meets the same
    scheduling points.
    """

    _tokens: dict[TokenKey, Token] = attrs.field(factory=dict, alias="tokens")
    _locks: dict[TokenKey, trio.Lock] = attrs.field(factory=dict, init=False)

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Return the stored token, or None."""
        await trio.lowlevel.checkpoint()
        return self._tokens.get(key)

    async def load_many(self, keys: Sequence[TokenKey]) -> dict[TokenKey, Token]:
        """Return the stored token of each of ``keys`` that has one."""
        await trio.lowlevel.checkpoint()
        tokens = self._tokens
        return {key: tokens[key] for key in keys if key in tokens}

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Store the pair, replacing any previous one."""
        await trio.lowlevel.checkpoint()
        self._tokens[key] = token

    async def delete_tokens(self, key: TokenKey) -> None:
        """Delete the pair; no error if absent."""
        await trio.lowlevel.checkpoint()
        self._tokens.pop(key, None)

    async def delete_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        """Delete every pair of ``shop`` (obtained before ``before``); return the keys deleted.

        Args:
            shop: The shop's domain.
            before: When given, only pairs obtained before it (or of unknown
                ``obtained_at``) are deleted.

        Raises:
            InvalidShopDomain: Bad shop domain.
        """
        domain = normalize_shop(shop)
        await trio.lowlevel.checkpoint()
        deleted = [
            key
            for key, token in self._tokens.items()
            if key.shop == domain and obtained_before(token, before)
        ]
        for key in deleted:
            del self._tokens[key]
        return deleted

    async def list_keys(self) -> AsyncIterator[TokenKey]:
        """Yield the stored keys (a snapshot taken when iteration starts).

        Checkpoints once per `LIST_BATCH` keys, as a SQL store queries once per page.
        """
        for i, key in enumerate(list(self._tokens)):
            if i % LIST_BATCH == 0:
                await trio.lowlevel.checkpoint()
            yield key

    async def create_schema(self) -> None:
        """Nothing to create: present so that every built-in store is a `Store`."""
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Nothing to release: present so that every built-in store is a `Store`."""
        await trio.lowlevel.checkpoint()

    @asynccontextmanager
    async def locked(
        self,
        key: TokenKey,
        *,
        timeout: float,  # noqa: ASYNC109 - SupportsLocked passes the timeout as data
    ) -> AsyncIterator[_MemoryLocked]:
        """Lock ``key`` within this process and re-read it.

        Raises:
            LockTimeout: Not granted within ``timeout`` seconds.
        """
        lock = self._locks.setdefault(key, trio.Lock())
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            with trio.move_on_after(timeout) as scope:
                await lock.acquire()
            if scope.cancelled_caught:
                raise LockTimeout(
                    f"lock on {key} not granted within {timeout} s", key=key
                ) from None
        else:
            await trio.lowlevel.checkpoint()
        try:
            yield _MemoryLocked(self, key, self._tokens.get(key))
        finally:
            lock.release()
            # Do not keep a Lock per key forever, but only drop one nobody
            # holds: release() hands a contended lock straight to a waiter.
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._locks.pop(key, None)

    def __len__(self) -> int:
        return len(self._tokens)
