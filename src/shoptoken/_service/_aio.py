"""AsyncTokenService: the service's methods, awaitable from any running asyncio loop.

A miss never blocks the loop: the call is queued to the service's trio
thread, and its outcome comes back through ``loop.call_soon_threadsafe``
into an asyncio future the caller awaits. Cancelling the awaiting task only
stops that wait (and the call's own task in the trio thread); a refresh it
joined runs in the manager's nursery and lands for everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING, Any

from .._core._loading import WARM_UP_BATCH
from .._errors import ServiceTimeout
from .._webhook_handling import handle_webhook

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from datetime import datetime

    import outcome

    from .._core._loading import WarmUpFigures
    from .._core._manager import TokenManager
    from .._core._statistics import TokenManagerStatistics
    from .._keys import TokenKey
    from .._oauth._webhooks import Webhook
    from .._token import Token
    from ._thread import ServiceThread


class AsyncTokenService:
    """`TokenService` for asyncio code (``service.aio``); same methods, same errors.

    Each method takes the arguments, and raises the errors, of the
    `TokenService` method of the same name, except ``timeout``: a call waits
    at most the service's ``timeout``; wrap it in ``asyncio.timeout()`` for
    less. A fresh `valid_token` completes without suspending; anything else
    awaits the service's thread without blocking the loop. Under trio, use
    a `TokenManager` instead.
    """

    def __init__(self, thread: ServiceThread) -> None:
        self._thread = thread
        self._fresh = thread.published.entries
        self._clock = thread.clock

    def __repr__(self) -> str:
        return f"AsyncTokenService(phase={self._thread.phase.value!r})"

    async def valid_token(self, key: TokenKey) -> Token:
        """Return a token for ``key`` that is valid now (see `TokenService.valid_token`)."""
        entry = self._fresh.get(key)
        if entry is not None:
            now = self._clock()
            if now < entry.fresh_until and self._thread.serving:
                entry.read_at = now
                return entry.token
        return await self._call(self._thread.manager().valid_token, key)  # type: ignore[no-any-return]

    async def put_token(self, key: TokenKey, token: Token) -> None:
        """Save ``token`` for ``key`` and keep it fresh (see `TokenService.put_token`)."""
        await self._call(self._thread.manager().put_token, key, token)

    async def fetch_token(self, key: TokenKey) -> Token:
        """Return the token held for ``key`` as is (see `TokenService.fetch_token`)."""
        return await self._call(self._thread.manager().fetch_token, key)  # type: ignore[no-any-return]

    async def refresh_token(self, key: TokenKey, *, rejected: Token | None = None) -> Token:
        """Refresh ``key`` now, single-flight (see `TokenService.refresh_token`)."""
        manager = self._thread.manager()
        return await self._call(refresh_with, manager, key, rejected)  # type: ignore[no-any-return]

    async def forget(self, key: TokenKey) -> None:
        """Stop refreshing ``key`` and delete its stored pair (see `TokenService.forget`)."""
        await self._call(self._thread.manager().forget, key)

    async def forget_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        """Forget every key of ``shop`` (see `TokenService.forget_shop`)."""
        forget = functools.partial(self._thread.manager().forget_shop, before=before)
        return await self._call(forget, shop)  # type: ignore[no-any-return]

    async def handle_webhook(self, webhook: Webhook) -> list[TokenKey]:
        """Do what ``webhook`` asks of the tokens (see `TokenService.handle_webhook`)."""
        return await self._call(handle_webhook, self._thread.manager(), webhook)  # type: ignore[no-any-return]

    async def warm_up(
        self, keys: Iterable[TokenKey] | None = None, *, batch_size: int = WARM_UP_BATCH
    ) -> WarmUpFigures:
        """Load ``keys`` and keep them fresh (see `TokenService.warm_up`).

        Not bounded by the service's ``timeout``: it waits until the warm-up
        is done (wrap it in ``asyncio.timeout()`` to bound it; cancelled, the
        warm-up stops there and the keys not loaded yet load on first use).
        """
        manager = self._thread.manager()
        return await self._call(warm_up_with, manager, keys, batch_size, bounded=False)  # type: ignore[no-any-return]

    async def statistics(self) -> TokenManagerStatistics:
        """Return the manager's statistics snapshot (see `TokenService.statistics`)."""
        return await self._call(statistics_of, self._thread.manager())  # type: ignore[no-any-return]

    async def _call(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, bounded: bool = True
    ) -> Any:
        thread = self._thread
        loop = asyncio.get_running_loop()
        future: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()

        def deliver(result: outcome.Outcome[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, result)

        call = thread.submit(fn, args, deliver)
        wait = thread.timeout if bounded else None
        try:
            async with asyncio.timeout(wait):
                result = await future
        except TimeoutError:
            thread.abandon(call)
            raise ServiceTimeout(f"no answer from the TokenService within {wait} s") from None
        except asyncio.CancelledError:
            thread.abandon(call)
            raise
        return result.unwrap()


def _settle(future: asyncio.Future[outcome.Outcome[Any]], result: outcome.Outcome[Any]) -> None:
    if not future.done():
        future.set_result(result)


async def refresh_with(manager: TokenManager, key: TokenKey, rejected: Token | None) -> Token:
    """``manager.refresh_token(key, rejected=rejected)``: a call the service's thread runs."""
    return await manager.refresh_token(key, rejected=rejected)


async def statistics_of(manager: TokenManager) -> TokenManagerStatistics:
    """``manager.statistics()``: a call the service's thread runs."""
    return manager.statistics()


async def warm_up_with(
    manager: TokenManager, keys: Iterable[TokenKey] | None, batch_size: int
) -> WarmUpFigures:
    """``manager.warm_up(keys, batch_size=...)``: the keyword crosses as a positional."""
    return await manager.warm_up(keys, batch_size=batch_size)
