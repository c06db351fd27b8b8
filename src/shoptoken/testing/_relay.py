"""A TCP relay in front of the loopback HTTP server, so a fault can really drop a connection.

ASGI gives an application no way to close its connection without answering.
The relay does: each client connection is piped to the HTTP server over a
connection of its own, and the fake, which sees that connection's port in the
ASGI scope (``client``), asks the relay to close the client's side (or reset
it: RST instead of FIN) before any byte of an answer goes through.
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import MutableMapping

_CHUNK: Final = 65536


@attrs.define(eq=False)
class _Link:
    client: trio.SocketStream
    scope: trio.CancelScope
    dropped: bool = False


@attrs.define(eq=False)
class Relay:
    """Pipes 127.0.0.1 connections to ``upstream_port``; `drop` cuts one off."""

    upstream_port: int = 0
    _links: dict[int, _Link] = attrs.field(factory=dict)
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a random 127.0.0.1 port (reported to ``task_status``) until `stop`."""
        with self._scope:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            task_status.started(listeners[0].socket.getsockname()[1])
            await trio.serve_listeners(self._handle, listeners)

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._scope.cancel()

    def drop(self, scope: MutableMapping[str, Any], reset: bool) -> None:  # noqa: FBT001 - the DropHook signature
        """Close (or reset) the client connection that carried the ASGI request ``scope``."""
        client = scope.get("client")
        link = None if client is None else self._links.get(int(client[1]))
        if link is None:
            return
        link.dropped = True
        if reset:
            # Linger 0: close() sends RST, the client sees "connection reset".
            link.client.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        link.scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
            except OSError:
                return
            async with upstream:
                port = upstream.socket.getsockname()[1]
                with trio.CancelScope() as scope:
                    link = _Link(client, scope)
                    self._links[port] = link
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(_pipe, client, upstream, link)
                            nursery.start_soon(_pipe, upstream, client, link)
                    finally:
                        del self._links[port]


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, link: _Link) -> None:
    try:
        while data := await source.receive_some(_CHUNK):
            if link.dropped:
                break
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    # Either side closing ends the pair: the server closing after a cut body
    # must reach the client as a close.
    link.scope.cancel()
