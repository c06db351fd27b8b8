"""StoreAdapter: the user's `TokenCallback`, its capabilities detected once, its calls bounded.

The core never looks at the callback itself: it asks this adapter, which
found the optional capabilities (``locked``, ``delete_tokens``,
``load_many``) once at
start-up, wraps every failure in `PersistenceError`
(scrubbed of the secrets it may quote), checks that a load returns a `Token`,
and bounds the calls a refresh makes by ``store_timeout``.
"""

from __future__ import annotations

import functools
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._errors import PersistenceError
from .._events import describe
from .._token import Token, obtained_before

if TYPE_CHECKING:
    from datetime import datetime

    from .._keys import TokenKey
    from .._persistence import LockedToken, TokenCallback
    from ._statistics import Counters

Locked = Callable[..., AbstractAsyncContextManager["LockedToken"]]


def secrets_of(token: Token | None) -> tuple[str | None, ...]:
    """The secrets of ``token``, to scrub from any text we report."""
    return () if token is None else (token.access_token, token.refresh_token)


@contextmanager
def store_deadline(what: str, key: TokenKey, timeout: float) -> Iterator[None]:
    """Bound one store call; a hang becomes a `PersistenceError`."""
    try:
        with trio.fail_after(timeout):
            yield
    except trio.TooSlowError:
        msg = f"{what} for {key} did not return within {timeout:g} s (store_timeout)"
        raise PersistenceError(msg, key=key) from None


@attrs.define(eq=False)
class StoreAdapter:
    """The one way the core reaches the user's store.

    Attributes:
        callback: The user's `TokenCallback`.
        timeout: ``store_timeout``: the bound on a refresh's store calls.
        counters: Where failed loads are counted (``loads_failed``).
        locked: The store's cross-process lock (``SupportsLocked.locked``),
            or None when it has none.
        bulk: Whether the store loads many keys in one call (``load_many``).
    """

    callback: TokenCallback
    timeout: float
    counters: Counters
    locked: Locked | None = attrs.field(init=False)
    _delete: Callable[[TokenKey], Any] | None = attrs.field(init=False)
    _delete_shop: Callable[..., Any] | None = attrs.field(init=False)
    _load_many: Callable[[Sequence[TokenKey]], Awaitable[Any]] | None = attrs.field(init=False)
    _list_keys: Callable[[], AsyncIterator[TokenKey]] | None = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.locked = getattr(self.callback, "locked", None)
        self._delete = getattr(self.callback, "delete_tokens", None)
        self._delete_shop = getattr(self.callback, "delete_shop", None)
        self._load_many = getattr(self.callback, "load_many", None)
        self._list_keys = getattr(self.callback, "list_keys", None)

    @property
    def bulk(self) -> bool:
        """Whether the store loads many keys in one call (``SupportsLoadMany``)."""
        return self._load_many is not None

    async def load(self, key: TokenKey, *, bounded: bool = True) -> Token | None:
        """Load ``key``'s token (bounded by ``timeout`` unless a first load).

        First loads are bounded by their caller's own cancel scope instead.

        Raises:
            PersistenceError: The store failed, hung, or returned a non-Token
                (counted in ``loads_failed``).
        """
        try:
            if bounded:
                with store_deadline("load_tokens", key, self.timeout):
                    token = await self.callback.load_tokens(key)
            else:
                token = await self.callback.load_tokens(key)
        except PersistenceError:
            self.counters.loads_failed += 1
            raise
        except Exception as exc:
            self.counters.loads_failed += 1
            msg = f"load_tokens failed for {key}: {describe(exc)}"
            raise PersistenceError(msg, key=key) from exc
        if token is not None and not isinstance(token, Token):
            self.counters.loads_failed += 1
            msg = f"load_tokens returned {type(token).__name__}, not Token, for {key}"
            raise PersistenceError(msg, key=key)
        return token

    async def load_many(self, keys: Sequence[TokenKey]) -> Mapping[TokenKey, Token]:
        """Load ``keys`` in one call of the store's ``load_many`` (bounded by its caller).

        Raises:
            PersistenceError: The store failed, or returned something else
                than a mapping of the asked keys to Tokens (not counted: the
                caller loads the keys again one at a time).
        """
        assert self._load_many is not None  # noqa: S101 - callers check `bulk`
        try:
            found = await self._load_many(keys)
        except PersistenceError:
            raise
        except Exception as exc:
            msg = f"load_many failed for {len(keys)} keys: {describe(exc)}"
            raise PersistenceError(msg) from exc
        if not isinstance(found, Mapping) or not all(
            isinstance(token, Token) for token in found.values()
        ):
            msg = f"load_many returned {type(found).__name__}, not a mapping of keys to Tokens"
            raise PersistenceError(msg)
        return found

    @asynccontextmanager
    async def listing(self) -> AsyncIterator[AsyncIterator[TokenKey]]:
        """Every stored key (the store's ``list_keys``), closed when the block ends.

        Raises:
            TypeError: The store cannot list its keys.
            PersistenceError: The listing failed (raised while iterating).
        """
        if self._list_keys is None:
            msg = f"{type(self.callback).__name__} cannot list its keys (list_keys)"
            raise TypeError(msg)
        keys = self._list_keys()
        wrapped = _wrapped(keys)
        try:
            yield wrapped
        finally:
            await wrapped.aclose()
            aclose = getattr(keys, "aclose", None)
            if aclose is not None:
                await aclose()

    async def save(self, key: TokenKey, token: Token) -> None:
        """Save ``token`` for ``key`` (bounded by ``timeout``).

        Raises:
            PersistenceError: The store failed or hung (the message names no secret).
        """
        await self.run_save(key, token, functools.partial(self.callback.save_tokens, key))

    async def run_save(
        self, key: TokenKey, token: Token, save: Callable[[Token], Awaitable[None]]
    ) -> None:
        """Run one save (the callback's, or a locked handle's ``save``), bounded and wrapped."""
        try:
            with store_deadline("save_tokens", key, self.timeout):
                await save(token)
        except PersistenceError:
            raise
        except Exception as exc:
            msg = f"saving tokens failed for {key}: {describe(exc, secrets_of(token))}"
            raise PersistenceError(msg, key=key) from exc

    async def delete(self, key: TokenKey, held: Token | None) -> bool:
        """Delete ``key``'s pair; False when the store cannot delete.

        Raises:
            PersistenceError: The store failed; nothing changed.
        """
        if self._delete is None:
            return False
        try:
            await self._delete(key)
        except Exception as exc:
            msg = f"delete_tokens failed for {key}: {describe(exc, secrets_of(held))}"
            raise PersistenceError(msg, key=key) from exc
        return True

    async def delete_before(self, key: TokenKey, before: datetime | None) -> bool:
        """Delete ``key``'s pair if it was obtained before ``before`` (`obtained_before`).

        Loads the pair to check (not atomic: a store that can, does it in
        ``delete_shop``). False when the store cannot delete or kept the pair.

        Raises:
            PersistenceError: The store failed.
        """
        if before is not None and self._delete is not None:
            token = await self.load(key)
            if token is not None and not obtained_before(token, before):
                return False
        return await self.delete(key, None)

    async def delete_shop(
        self, shop: str, known: Iterable[TokenKey], before: datetime | None = None
    ) -> set[TokenKey]:
        """Delete the stored pairs of ``shop`` and of the ``known`` keys; return the keys deleted.

        One ``delete_shop`` when the store has it; else ``list_keys`` and
        ``delete_tokens`` per key of the shop; else only the known keys.
        With ``before``, only pairs obtained before it (`obtained_before`).

        Raises:
            PersistenceError: The store failed (some pairs may be deleted).
        """
        deleted: set[TokenKey] = set()
        listed: set[TokenKey] = set()
        try:
            if self._delete_shop is not None:
                deleted.update(await self._delete_shop(shop, before=before))
            elif self._delete is not None and self._list_keys is not None:
                # Listed first: deleting while a store pages through its keys could skip some.
                listed.update([key async for key in self._list_keys() if key.shop == shop])
        except Exception as exc:
            msg = f"deleting the tokens of {shop} failed: {describe(exc)}"
            raise PersistenceError(msg) from exc
        for key in sorted({*known, *listed} - deleted, key=str):
            if await self.delete_before(key, before):
                deleted.add(key)
        return deleted


async def _wrapped(keys: AsyncIterator[TokenKey]) -> AsyncGenerator[TokenKey, None]:
    """``keys``, with a failure of the store's listing as a `PersistenceError`."""
    while True:
        try:
            key = await anext(keys)
        except StopAsyncIteration:
            return
        except PersistenceError:
            raise
        except Exception as exc:
            msg = f"list_keys failed: {describe(exc)}"
            raise PersistenceError(msg) from exc
        yield key
