"""Serving the fake over real HTTP on 127.0.0.1 (hypercorn under trio).

::

    async with serve_loopback(fake) as server:
        async with server.oauth() as oauth:       # a ShopifyOAuth over real sockets
            token = await oauth.refresh(key, token)

The server listens on a random port of 127.0.0.1 only. Clients from
`LoopbackServer.client` keep building ``https://{shop}/...`` URLs; their
transport (`LoopbackTransport`) routes Shopify's hosts to the server and
refuses every other host. Needs the ``testing`` extra (hypercorn).

Under a mock clock, real socket I/O needs ``autojump_threshold`` above zero,
or the clock jumps ahead while the kernel delivers bytes; loopback tests are
simplest on the real clock (and kept short).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Final, cast

import attrs
import httpx
import trio

from .._oauth._admin import ShopifyOAuth
from ._asgi import asgi_app
from ._relay import Relay
from ._routing import LoopbackTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ._asgi import ASGIApp
    from ._fake_shopify import FakeShopify

# Closing our own clients on the way out: bounded, and shielded from a
# cancelled body so no socket is left for the garbage collector.
_CLOSE_TIMEOUT: Final = 5.0


@attrs.define(eq=False)
class LoopbackServer:
    """A running loopback server (from `serve_loopback`) and its client factory.

    Attributes:
        fake: The fake that answers.
        port: The 127.0.0.1 port clients connect to.
    """

    fake: FakeShopify
    port: int
    _clients: list[httpx.AsyncClient] = attrs.field(factory=list, repr=False)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        return f"http://127.0.0.1:{self.port}"

    def transport(self) -> LoopbackTransport:
        """A new routing transport to this server (the caller closes it)."""
        return LoopbackTransport(self.port)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` whose Shopify URLs reach this server.

        Closed when the server stops, if not before. Keyword arguments go to
        `httpx.AsyncClient` (``timeout``, ``auth``...).
        """
        client = httpx.AsyncClient(transport=self.transport(), **kwargs)
        self._clients.append(client)
        return client

    def oauth(self, *, clock: Callable[[], float] | None = None) -> ShopifyOAuth:
        """A real `ShopifyOAuth` with the fake's credentials, over loopback HTTP."""
        return ShopifyOAuth(
            self.fake.client_id,
            self.fake.client_secret,
            http=self.client(),
            old_client_secret=self.fake.old_client_secret,
            clock=clock or self.fake.clock,
        )

    async def _close_clients(self) -> None:
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            for client in self._clients:
                await client.aclose()


def _port(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


def _hypercorn(who: str, graceful_timeout: float) -> tuple[Any, Any]:
    """The trio ``serve`` of hypercorn, and a quiet config bound to a free port of 127.0.0.1."""
    try:
        from hypercorn.config import Config  # noqa: PLC0415 - optional extra, loaded on use
        from hypercorn.trio import serve  # noqa: PLC0415 - optional extra, loaded on use
    except ModuleNotFoundError as exc:
        msg = f"{who} needs the 'testing' extra: pip install 'shoptoken[testing]'"
        raise ModuleNotFoundError(msg, name=exc.name) from exc
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = graceful_timeout
    return serve, config


@asynccontextmanager
async def serve_app(app: ASGIApp, *, graceful_timeout: float = 1.0) -> AsyncIterator[str]:
    """Serve an app's ASGI application on 127.0.0.1 for the ``async with`` block.

    For the app side of a test: its webhook endpoint, which
    `FakeShopify.send_webhook` then reaches over real HTTP. An exception
    raised in the block reaches the caller as is.

    Yields:
        The app's base URL, ``http://127.0.0.1:{port}``.

    Raises:
        ModuleNotFoundError: hypercorn is missing (install ``shoptoken[testing]``).
    """
    serve, config = _hypercorn("serve_app", graceful_timeout)
    shutdown = trio.Event()
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=shutdown.wait))
        try:
            yield f"http://127.0.0.1:{_port(binds[0])}"
        except BaseException as exc:  # noqa: BLE001 - re-raised below, unwrapped
            body_error = exc
        finally:
            shutdown.set()
    if body_error is not None:
        raise body_error


@asynccontextmanager
async def serve_loopback(
    fake: FakeShopify, *, graceful_timeout: float = 1.0
) -> AsyncIterator[LoopbackServer]:
    """Serve ``fake`` on 127.0.0.1 for the duration of the ``async with`` block.

    The server is ready when the block starts (``nursery.start``) and stopped,
    its clients closed, when it ends. An exception raised in the block
    reaches the caller as is, not wrapped in an exception group.

    Args:
        fake: The fake to serve.
        graceful_timeout: Seconds in-flight requests get to finish on exit.

    Yields:
        The running `LoopbackServer`.

    Raises:
        ModuleNotFoundError: hypercorn is missing (install ``shoptoken[testing]``).
    """
    serve, config = _hypercorn("serve_loopback", graceful_timeout)
    relay = Relay()
    shutdown = trio.Event()
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        # hypercorn's ASGI types are TypedDicts; ours are plain mappings.
        app = cast("Any", asgi_app(fake, drop=relay.drop))
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=shutdown.wait))
        relay.upstream_port = _port(binds[0])
        server = LoopbackServer(fake, await nursery.start(relay.serve))
        try:
            yield server
        except BaseException as exc:  # noqa: BLE001 - re-raised below, unwrapped
            body_error = exc
        finally:
            await server._close_clients()  # noqa: SLF001 - the server's owner closes it
            relay.stop()
            shutdown.set()
    if body_error is not None:
        raise body_error
