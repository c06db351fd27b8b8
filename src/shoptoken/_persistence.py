"""TokenCallback: the user's persistence, and the optional capabilities we detect.

A `TokenCallback` needs only two methods. Stores may add capabilities the
manager uses when present (found with ``getattr`` at start-up, so a plain
class implementing two methods is enough):

- ``delete_tokens(key)``: `TokenManager.forget` deletes the stored pair.
- ``delete_shop(shop, before=...)``: `TokenManager.forget_shop` deletes every
  pair of a shop at once, or only those obtained before ``before`` (without
  it: ``list_keys`` and ``delete_tokens``, else only the keys the manager
  holds in memory).
- ``list_keys()``: an async iterable of every stored key (the CLI's daemon).
- ``load_many(keys)``: many keys' tokens in one call (`TokenManager.warm_up`
  loads a fleet a batch at a time with it, instead of a key at a time).
- ``locked(key, timeout=...)``: an async context manager taking a lock that
  holds across processes and nodes, yielding a `LockedToken` with the
  freshly re-read token and a ``save`` that writes inside that lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime

    from ._keys import TokenKey
    from ._token import Token


@runtime_checkable
class TokenCallback(Protocol):
    """Loads and saves token pairs: what a user implements over their database.

    ``save_tokens`` must be durable when it returns: the manager hands a
    rotated pair to callers only after it has been saved. Both methods may
    raise any exception; the manager wraps it in `PersistenceError`.
    """

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Return the stored token for ``key``, or None if there is none."""
        ...

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Store ``token`` for ``key``, replacing the whole previous pair."""
        ...


class LockedToken(Protocol):
    """What ``locked(key)`` yields: the re-read token and a save inside the lock."""

    @property
    def token(self) -> Token | None:
        """The token as stored when the lock was granted."""
        ...

    async def save(self, token: Token) -> None:
        """Store ``token`` before the lock is released (same transaction)."""
        ...


class SupportsDelete(Protocol):
    """A store that can delete a key's pair."""

    async def delete_tokens(self, key: TokenKey) -> None:
        """Delete the stored pair for ``key`` (no error if there is none)."""
        ...


class SupportsDeleteShop(Protocol):
    """A store that can delete every pair of one shop at once."""

    async def delete_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        """Delete every stored pair of ``shop`` (a normalized domain); return their keys.

        With ``before`` (an aware datetime), delete only the pairs whose
        ``obtained_at`` is before it or unknown (SQL: ``WHERE shop = ? AND
        (obtained_at IS NULL OR obtained_at < ?)``): an uninstall's retry,
        delivered after a reinstall, must not delete the reinstall's pair.
        """
        ...


class SupportsListKeys(Protocol):
    """A store that can stream its keys."""

    def list_keys(self) -> AsyncIterator[TokenKey]:
        """Yield every stored key, without loading them all into memory."""
        ...


class SupportsLoadMany(Protocol):
    """A store that can load many keys in one call (a batched query)."""

    async def load_many(self, keys: Sequence[TokenKey]) -> Mapping[TokenKey, Token]:
        """Return the stored token of each of ``keys`` that has one.

        A key with nothing stored is absent from the result. Raising (for
        instance `PersistenceError` for one corrupt row) fails the whole
        call: the manager then loads those keys one at a time, so only the
        key at fault fails.
        """
        ...


class SupportsLocked(Protocol):
    """A store with a lock that holds across processes (and nodes)."""

    def locked(self, key: TokenKey, *, timeout: float) -> AbstractAsyncContextManager[LockedToken]:
        """Lock ``key`` and re-read it.

        Raises:
            LockTimeout: The lock was not granted within ``timeout`` seconds.
        """
        ...
