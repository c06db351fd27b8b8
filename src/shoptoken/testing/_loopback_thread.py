"""`serve_loopback` on a thread of its own, for tests of asyncio and synchronous apps.

::

    with serve_loopback_in_thread(fake) as server:
        http = httpx.Client(transport=server.sync_transport())   # any thread
        oauth = ShopifyOAuth(fake.client_id, fake.client_secret,
                             http=httpx.AsyncClient(transport=server.transport()))

The server runs its own trio run on a daemon thread; the block gets its
port and transports to it (clients made from them belong to the code that
made them, in its thread or event loop).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from ._loopback import serve_loopback
from ._routing import LoopbackTransport, SyncLoopbackTransport

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._fake_shopify import FakeShopify


@attrs.frozen
class ThreadedLoopback:
    """A fake served on 127.0.0.1 from its own thread (from `serve_loopback_in_thread`).

    Attributes:
        fake: The fake that answers.
        port: The 127.0.0.1 port clients connect to.
    """

    fake: FakeShopify
    port: int

    @property
    def url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        return f"http://127.0.0.1:{self.port}"

    def transport(self) -> LoopbackTransport:
        """A new routing transport for an `httpx.AsyncClient` (the caller closes it)."""
        return LoopbackTransport(self.port)

    def sync_transport(self) -> SyncLoopbackTransport:
        """A new routing transport for an `httpx.Client` (the caller closes it)."""
        return SyncLoopbackTransport(self.port)


@contextmanager
def serve_loopback_in_thread(
    fake: FakeShopify, *, graceful_timeout: float = 1.0, start_timeout: float = 30.0
) -> Iterator[ThreadedLoopback]:
    """Serve ``fake`` on 127.0.0.1 from a daemon thread for the duration of the block.

    Args:
        fake: The fake to serve.
        graceful_timeout: Seconds in-flight requests get to finish on exit.
        start_timeout: Longest wait for the server to listen.

    Raises:
        RuntimeError: The server did not start (its error is the cause).
        ModuleNotFoundError: hypercorn is missing (install ``shoptoken[testing]``).
    """
    ready = threading.Event()
    started: list[tuple[int, trio.lowlevel.TrioToken, trio.Event]] = []
    failed: list[BaseException] = []

    async def serve() -> None:
        async with serve_loopback(fake, graceful_timeout=graceful_timeout) as server:
            stop = trio.Event()
            started.append((server.port, trio.lowlevel.current_trio_token(), stop))
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            trio.run(serve)
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            failed.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="shoptoken-fake-shopify", daemon=True)
    thread.start()
    if not ready.wait(start_timeout) or not started:
        cause = failed[0] if failed else None
        msg = "the loopback FakeShopify did not start"
        raise RuntimeError(msg) from cause
    port, token, stop = started[0]
    try:
        yield ThreadedLoopback(fake, port)
    finally:
        token.run_sync_soon(stop.set)
        thread.join()
