"""Answer: what the fake replies, before a transport puts it on the wire.

The fake decides its reply once, as an `Answer`; the in-process transport
(`to_response`) and the loopback ASGI app each render it their way. An answer
may be a failure of the connection itself: dropped before any byte of a
response (``drop``), or cut off part way through its body (``cut_at``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

import attrs
import httpx

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

JSON: Final = "application/json; charset=utf-8"


@attrs.frozen
class Answer:
    """One reply of the fake, independent of how it travels.

    Attributes:
        status: HTTP status.
        body: The full body (``cut_at`` may send only part of it).
        headers: Extra response headers.
        content_type: The ``Content-Type`` header.
        cut_at: Send only this many body bytes (with the full
            ``Content-Length``) and then close the connection.
        drop: No response at all: close the connection instead. In process,
            this exception is raised (an `httpx.TransportError`, say).
        reset: With ``drop``: reset the connection (RST) rather than close it.
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON
    cut_at: int | None = None
    drop: BaseException | None = attrs.field(default=None, eq=False)
    reset: bool = False

    @classmethod
    def json(cls, status: int, data: object, *, headers: Mapping[str, str] | None = None) -> Answer:
        """A JSON answer."""
        return cls(
            status=status,
            body=json.dumps(data).encode(),
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def error(
        cls,
        status: int,
        code: str,
        description: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """An OAuth error answer: ``{"error": code, "error_description": ...}``."""
        data = {"error": code}
        if description is not None:
            data["error_description"] = description
        return cls.json(status, data, headers=headers)

    def all_headers(self) -> list[tuple[str, str]]:
        """Every response header, ``Content-Type`` and ``Content-Length`` included."""
        return [
            ("content-type", self.content_type),
            ("content-length", str(len(self.body))),
            *self.headers,
        ]

    def decoded(self) -> object:
        """The JSON body, decoded (for the fake's own tests and helpers)."""
        return json.loads(self.body)


class _CutStream(httpx.AsyncByteStream):
    """A body that ends early: the bytes that arrived, then a protocol error."""

    def __init__(self, part: bytes, request: httpx.Request) -> None:
        self._part = part
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._part:
            yield self._part
        # What httpx (h11) raises when the peer closes before Content-Length bytes.
        msg = "peer closed connection without sending complete message body"
        raise httpx.RemoteProtocolError(msg, request=self._request)


def to_response(answer: Answer, request: httpx.Request) -> httpx.Response:
    """Render ``answer`` in process, as an httpx response or a transport error.

    Raises:
        BaseException: The answer's ``drop`` exception.
    """
    if answer.drop is not None:
        raise answer.drop
    if answer.cut_at is None:
        return httpx.Response(
            answer.status, headers=answer.all_headers(), content=answer.body, request=request
        )
    return httpx.Response(
        answer.status,
        headers=answer.all_headers(),
        stream=_CutStream(answer.body[: answer.cut_at], request),
        request=request,
    )
