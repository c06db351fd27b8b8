"""TokenService: a `TokenManager` on its own trio thread, for synchronous and asyncio apps.

Fresh tokens are read from the published view (`_published`) in the
caller's own thread: a dict lookup, a clock read and a comparison. Anything
else (a miss, a put, a forced refresh) crosses to the trio thread
(`ServiceThread.call`) and waits there for the manager's answer.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Protocol, Self

from .._auth import ServiceAuth
from .._core._loading import WARM_UP_BATCH
from .._core._manager import open_token_manager
from .._core._policy import RefreshPolicy
from .._core._refresher import as_refresher
from .._persistence import TokenCallback
from .._webhook_handling import handle_webhook
from ._aio import AsyncTokenService, refresh_with, statistics_of, warm_up_with
from ._thread import ServiceThread


class SupportsAclose(Protocol):
    """Something closed with ``await x.aclose()`` (an `httpx.AsyncClient`)."""

    async def aclose(self) -> None:
        """Close it."""


if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Callable, Iterable
    from datetime import datetime
    from types import TracebackType

    from .._core._loading import WarmUpFigures
    from .._core._manager import TokenManager
    from .._core._refresher import Refresher
    from .._core._statistics import TokenManagerStatistics
    from .._events import EventHook
    from .._keys import TokenKey, TokenKind
    from .._oauth._webhooks import Webhook
    from .._token import Token


class TokenService:
    """A `TokenManager` running on its own trio thread, usable from any thread.

    For apps that are not trio programs: Django, Flask and Celery call its
    methods from their threads; FastAPI and other asyncio apps await those
    of `aio` (an `AsyncTokenService`). Build it from the same parts as
    `open_token_manager`, then ``start()`` it (or use ``with``) in the app's
    boot hook and ``close()`` it at shutdown::

        service = TokenService(ShopifyOAuth(client_id, secret), "sqlite:///tokens.db")
        service.start()
        token = service.valid_token(TokenKey.offline("my-store"))

    A fresh token is read in the caller's own thread, from a view the
    service's thread keeps up to date: no lock, no thread hop. Anything
    else waits for the service's thread, at most ``timeout`` seconds.
    Errors are the trio API's, unwrapped. Event hooks run in the service's
    thread and must not call the service. One service per process: a
    service started before ``os.fork()`` refuses every use in the child.

    Args:
        refresher: The OAuth client (`ShopifyOAuth`...) or a mapping from
            `TokenKind` to clients, as for `open_token_manager`. The service
            uses it only in its own thread and closes it (``aclose()``) when
            it closes.
        store: A `TokenCallback`, or a store URL (``sqlite:///tokens.db``,
            ``postgresql://...``) that `shoptoken.stores.open_store` opens in
            the service's thread and closes with it.
        policy: Refresh timing; `RefreshPolicy()` by default.
        clock: Wall clock in epoch seconds; read from every calling thread,
            so it must be thread-safe (``time.time`` is).
        hooks: Functions called with every `TokenEvent`, in the service's thread.
        rng: The randomness of retry jitter (seed it to reproduce).
        resources: More objects the service closes (``await x.aclose()``)
            in its thread when it closes: an `httpx.AsyncClient` injected
            into the OAuth client (``http=``), which only the service's
            thread may use.
        timeout: Default seconds a call waits for the service's thread.
        start_timeout: Seconds ``start()`` waits for the manager to be ready.
        name: The thread's name.

    Raises:
        TypeError: ``refresher`` or ``store`` lacks the methods it needs.
        ValueError: ``timeout`` or ``start_timeout`` is not positive.
    """

    def __init__(
        self,
        refresher: Refresher | Mapping[TokenKind, Refresher],
        store: TokenCallback | str,
        *,
        policy: RefreshPolicy | None = None,
        clock: Callable[[], float] = time.time,
        hooks: Iterable[EventHook] = (),
        rng: random.Random | None = None,
        resources: Iterable[SupportsAclose] = (),
        timeout: float = 30.0,
        start_timeout: float = 60.0,
        name: str = "shoptoken-service",
    ) -> None:
        as_refresher(refresher)  # a misuse error here, not in the service's thread
        if not isinstance(store, str | TokenCallback):
            msg = f"{type(store).__name__} is neither a store URL nor a TokenCallback"
            raise TypeError(msg)
        for label, value in (("timeout", timeout), ("start_timeout", start_timeout)):
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                msg = f"{label} must be a positive number of seconds, not {value!r}"
                raise ValueError(msg)
        self._refresher = refresher
        self._store = store
        self._policy = policy or RefreshPolicy()
        self._clock = clock
        self._hooks = list(hooks)
        self._rng = rng
        self._resources = list(resources)
        self._start_timeout = start_timeout
        self._thread = ServiceThread(
            name, clock=clock, timeout=timeout, grace=self._policy.shutdown_grace
        )
        # The hot path's two reads, bound once.
        self._fresh = self._thread.published.entries
        self._aio = AsyncTokenService(self._thread)

    def __repr__(self) -> str:
        return f"TokenService(phase={self._thread.phase.value!r})"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Start the service's thread and open the manager there; return the service.

        Raises:
            RuntimeError: Already started, closed, or started before a fork.
            ServiceTimeout: The manager was not ready within ``start_timeout``.
            Exception: Opening the store or the manager failed (as raised, unwrapped).
        """
        self._thread.start(self._open, self._start_timeout)
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop the service; refreshes and saves in flight get ``policy.shutdown_grace``.

        Safe from any thread but the service's own, and more than once;
        a no-op in a fork's child. Every later call raises `RuntimeError`.

        Args:
            timeout: Longest wait for the thread to end (by default twice
                ``shutdown_grace`` plus 5 s); past it the daemon thread is
                left to end with the process.
        """
        self._thread.close(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def aio(self) -> AsyncTokenService:
        """The same service for asyncio code: every method awaitable, none blocking the loop."""
        return self._aio

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[TokenManager]:
        """The manager's block, entered and left in the service's thread."""
        async with AsyncExitStack() as stack:
            store = self._store
            if isinstance(store, str):
                from ..stores import open_store  # noqa: PLC0415 - store backends load on use

                store = await stack.enter_async_context(open_store(store))
            given = self._refresher
            clients = given.values() if isinstance(given, Mapping) else [given]
            for resource in [*self._resources, *clients]:
                close = getattr(resource, "aclose", None)
                if close is not None:
                    stack.push_async_callback(close)
            yield await stack.enter_async_context(
                open_token_manager(
                    self._refresher,
                    store,
                    policy=self._policy,
                    clock=self._clock,
                    hooks=self._hooks,
                    rng=self._rng,
                    observer=self._thread.published,
                )
            )

    # -- the API -----------------------------------------------------------------------

    def valid_token(self, key: TokenKey, *, timeout: float | None = None) -> Token:
        """Return a token for ``key`` that is valid now (`TokenManager.valid_token`).

        A fresh token is returned from the published view, without waiting
        for the service's thread (and counts as use of the key).

        Args:
            key: The key.
            timeout: Seconds to wait for the service's thread on a miss
                (the service's ``timeout`` when None).

        Raises:
            NoToken: Nothing is stored for ``key``.
            ReauthorizationRequired: The refresh token is expired or revoked.
            RefreshFailed: No valid token is held and the refresh failed.
            LockTimeout: The store's cross-process lock timed out.
            PersistenceError: The store failed to load the token.
            ServiceTimeout: No answer within ``timeout``.
            RuntimeError: The service is not running.
        """
        entry = self._fresh.get(key)
        if entry is not None:
            now = self._clock()
            if now < entry.fresh_until and self._thread.serving:
                entry.read_at = now
                return entry.token
        thread = self._thread
        return thread.call(thread.manager().valid_token, key, timeout=timeout)  # type: ignore[no-any-return]

    def put_token(self, key: TokenKey, token: Token, *, timeout: float | None = None) -> None:
        """Save ``token`` for ``key`` and keep it fresh (`TokenManager.put_token`).

        Raises:
            PersistenceError: The store failed; nothing changed.
            TypeError: ``token`` is not a `Token`.
            ServiceTimeout: No answer within ``timeout``.
            RuntimeError: The service is not running.
        """
        thread = self._thread
        thread.call(thread.manager().put_token, key, token, timeout=timeout)

    def fetch_token(self, key: TokenKey, *, timeout: float | None = None) -> Token:
        """Return the token held for ``key`` as is (`TokenManager.fetch_token`).

        Raises:
            NoToken: Nothing is stored for ``key``.
            PersistenceError: The store failed to load it.
            ServiceTimeout: No answer within ``timeout``.
            RuntimeError: The service is not running.
        """
        thread = self._thread
        return thread.call(thread.manager().fetch_token, key, timeout=timeout)  # type: ignore[no-any-return]

    def refresh_token(
        self, key: TokenKey, *, rejected: Token | None = None, timeout: float | None = None
    ) -> Token:
        """Refresh ``key`` now, single-flight (`TokenManager.refresh_token`).

        Raises:
            NoToken: Nothing is stored for ``key``.
            ReauthorizationRequired: The token cannot be refreshed.
            RefreshFailed: The refresh failed, or the key is backing off.
            ServiceTimeout: No answer within ``timeout`` (the refresh goes on).
            RuntimeError: The service is not running.
        """
        thread = self._thread
        manager = thread.manager()
        return thread.call(  # type: ignore[no-any-return]
            refresh_with, manager, key, rejected, timeout=timeout
        )

    def forget(self, key: TokenKey, *, timeout: float | None = None) -> None:
        """Stop refreshing ``key`` and delete its stored pair (`TokenManager.forget`).

        Raises:
            PersistenceError: The store failed to delete (the key is out of
                memory already): call again.
            ServiceTimeout: No answer within ``timeout``.
            RuntimeError: The service is not running.
        """
        thread = self._thread
        thread.call(thread.manager().forget, key, timeout=timeout)

    def forget_shop(
        self, shop: str, *, before: datetime | None = None, timeout: float | None = None
    ) -> list[TokenKey]:
        """Forget every key of ``shop``, in memory and in the store (`TokenManager.forget_shop`).

        With ``before``, only keys whose token was obtained before it.

        Returns:
            The keys forgotten, sorted.

        Raises:
            InvalidShopDomain: Bad shop domain.
            PersistenceError: The store failed: call again (the webhook's retry).
            ServiceTimeout: No answer within ``timeout``.
            RuntimeError: The service is not running.
        """
        thread = self._thread
        forget = functools.partial(thread.manager().forget_shop, before=before)
        return thread.call(forget, shop, timeout=timeout)  # type: ignore[no-any-return]

    def handle_webhook(self, webhook: Webhook, *, timeout: float | None = None) -> list[TokenKey]:
        """Do what a verified ``webhook`` asks of the tokens (`shoptoken.handle_webhook`).

        ``app/uninstalled`` and ``shop/redact`` forget the shop,
        ``customers/redact`` the customer's keys.

        Returns:
            The keys forgotten.

        Raises:
            InvalidWebhook: A ``customers/redact`` payload without a customer id.
            PersistenceError: The store failed: answer 5xx so Shopify retries.
            ServiceTimeout: No answer within ``timeout``.
            RuntimeError: The service is not running.
        """
        thread = self._thread
        return thread.call(handle_webhook, thread.manager(), webhook, timeout=timeout)  # type: ignore[no-any-return]

    def warm_up(
        self,
        keys: Iterable[TokenKey] | None = None,
        *,
        batch_size: int = WARM_UP_BATCH,
        timeout: float | None = None,
    ) -> WarmUpFigures:
        """Load ``keys`` (every stored key if None) and keep them fresh (`TokenManager.warm_up`).

        For an app's start (FastAPI's lifespan, Django's ``AppConfig.ready``):
        the keys' fresh tokens are then read from the published view, with no
        hop.

        Args:
            keys: The keys to load; None lists the store.
            batch_size: Keys per store call.
            timeout: Longest wait; None (unlike the other methods) waits until
                the warm-up is done. A caller that stops waiting stops the
                warm-up there: the keys not loaded yet load on first use.

        Raises:
            PersistenceError: The store is down (listing, or every load of a batch, failed).
            ServiceTimeout: No answer within ``timeout``; the warm-up stopped.
            TypeError: ``keys`` is None and the store cannot list its keys.
            ValueError: ``batch_size`` is less than 1.
            RuntimeError: The service is not running.
        """
        thread = self._thread
        manager = thread.manager()
        wait = threading.TIMEOUT_MAX if timeout is None else timeout
        return thread.call(warm_up_with, manager, keys, batch_size, timeout=wait)  # type: ignore[no-any-return]

    def statistics(self, *, timeout: float | None = None) -> TokenManagerStatistics:
        """Return the manager's frozen statistics snapshot (read in its thread).

        Raises:
            ServiceTimeout: No answer within ``timeout``.
            RuntimeError: The service is not running.
        """
        thread = self._thread
        return thread.call(statistics_of, thread.manager(), timeout=timeout)  # type: ignore[no-any-return]

    def auth(self, key: TokenKey) -> ServiceAuth:
        """Return an `httpx.Auth` for ``key``: `httpx.Client`, or `httpx.AsyncClient` under asyncio.

        It sets the token header from `valid_token`; on a 401 it forces one
        refresh (unless the token was already replaced) and retries once,
        as `TokenManager.auth` does.
        """
        return ServiceAuth(key, self, self._aio)
