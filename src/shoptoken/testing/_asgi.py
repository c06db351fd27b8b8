"""The fake as an ASGI application, for serving it over real HTTP.

The shop is read from ``X-Forwarded-Host`` or ``Host`` (the loopback routing
transport sets both to the original ``*.myshopify.com`` host), so the URL the
fake sees is the one the client built. A body cut short is sent with its full
``Content-Length`` and the connection is then closed; a dropped connection is
closed before any byte of a response by the ``drop`` hook (the loopback
relay). Without that hook (served by another ASGI server), a drop sends the
status line and headers only, then closes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx

from ._answer import Answer
from ._routing import ForeignHostError

if TYPE_CHECKING:
    from ._fake_shopify import FakeShopify

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Closes (``reset``: resets) the connection of an ASGI request, unanswered.
DropHook: TypeAlias = Callable[[Scope, bool], None]


def asgi_app(fake: FakeShopify, *, drop: DropHook | None = None) -> ASGIApp:
    """An ASGI 3 application answering as ``fake`` does.

    Args:
        fake: The fake whose state and faults answer the requests.
        drop: Hook that closes a request's connection without an answer.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        try:
            answer = await fake.answer(_as_request(scope, body))
        except ForeignHostError:
            answer = Answer.json(421, {"errors": "Misdirected Request"})
        await _write(answer, scope, send, drop)

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _as_request(scope: Scope, body: bytes) -> httpx.Request:
    """The request as the client built it: ``https://{original host}{path}``."""
    headers = [
        (bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in scope["headers"]
    ]
    named = {name.lower(): value for name, value in headers}
    host = named.get("x-forwarded-host") or named.get("host", "")
    path = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    url = f"https://{host}{path}" + (f"?{query}" if query else "")
    try:
        return httpx.Request(scope["method"], url, headers=headers, content=body)
    except httpx.InvalidURL as exc:
        msg = "the request's host is not a valid URL host"
        raise ForeignHostError(msg) from exc


async def _write(answer: Answer, scope: Scope, send: Send, drop: DropHook | None) -> None:
    if answer.drop is not None and drop is not None:
        drop(scope, answer.reset)
        return
    headers = [(name.encode(), value.encode()) for name, value in answer.all_headers()]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    if answer.drop is not None:
        return  # Headers only, then the server closes the unfinished response.
    if answer.cut_at is not None:
        # Less than Content-Length promised; returning makes the server close.
        await send(
            {"type": "http.response.body", "body": answer.body[: answer.cut_at], "more_body": True}
        )
        return
    await send({"type": "http.response.body", "body": answer.body})


#: An app's webhook handler, as `webhook_app` serves it: raw body and headers in, status out.
WebhookHandler: TypeAlias = Callable[[bytes, httpx.Headers], Awaitable[int]]


def webhook_app(handler: WebhookHandler) -> ASGIApp:
    """An ASGI application that hands each POST's raw body and headers to ``handler``.

    It answers with the status ``handler`` returns (an empty body); other
    methods get 405. Serve it with `serve_app` and send it deliveries with
    `FakeShopify.send_webhook`: the app's side of a webhook test, with no
    web framework.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        status = 405
        if scope["method"] == "POST":
            status = await handler(body, httpx.Headers(list(scope["headers"])))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app
