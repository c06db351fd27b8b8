"""serve_metrics: ``/metrics`` and ``/healthz`` over plain HTTP, on trio.

A deliberately small HTTP/1.1 responder (one request per connection, then
close) for a Prometheus scraper and a health probe: it needs nothing beyond
trio and prometheus_client, and runs in the manager's trio thread, so a
scrape reads the statistics where they live.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

import trio
from prometheus_client import generate_latest

if TYPE_CHECKING:
    from ._exporter import TokenMetrics

#: Seconds a client has to send its request.
_REQUEST_TIMEOUT: Final = 10.0
#: Longest request head read (a scraper's is a few hundred bytes).
_MAX_HEAD: Final = 8192
_TEXT: Final = "text/plain; charset=utf-8"
#: The classic text format, which `generate_latest` writes and every Prometheus reads.
_EXPOSITION: Final = "text/plain; version=0.0.4; charset=utf-8"


async def serve_metrics(
    metrics: TokenMetrics,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` (exposition format) and ``GET /healthz`` until cancelled.

    ``/healthz`` answers 200 ``ok`` or 503 with `TokenMetrics.health`'s reason.
    Start it with ``await nursery.start(serve_metrics, metrics, host, port)``:
    that returns the listeners (``port=0`` picks a free port).
    """
    handler = functools.partial(_handle, metrics)
    await trio.serve_tcp(handler, port, host=host, task_status=task_status)


async def _handle(metrics: TokenMetrics, stream: trio.SocketStream) -> None:
    async with stream:
        try:
            with trio.move_on_after(_REQUEST_TIMEOUT):
                head = await _read_head(stream)
                if head is not None:
                    await stream.send_all(_answer(metrics, head))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """The request head (up to the blank line), or None if the client stopped or sent too much."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(_MAX_HEAD)
        if not chunk or len(data) + len(chunk) > _MAX_HEAD:
            return None
        data += chunk
    return data


def _answer(metrics: TokenMetrics, head: bytes) -> bytes:
    """The whole response to one request head."""
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) != 3:  # noqa: PLR2004 - METHOD TARGET VERSION
        return _response(400, _TEXT, b"bad request\n")
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if method not in {b"GET", b"HEAD"}:
        return _response(405, _TEXT, b"method not allowed\n")
    if target == b"/metrics":
        body = generate_latest(metrics.registry)
        response = _response(200, _EXPOSITION, body)
    elif target == b"/healthz":
        health = metrics.health()
        response = _response(200 if health.healthy else 503, _TEXT, f"{health.reason}\n".encode())
    else:
        response = _response(404, _TEXT, b"not found: try /metrics or /healthz\n")
    if method == b"HEAD":
        return response.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    return response


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def _response(status: int, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
