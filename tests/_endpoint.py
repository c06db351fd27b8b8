"""What the OAuth client tests share: a fixed epoch, a counting clock, canned replies.

The tests of `ShopifyOAuth` and `CustomerAccountOAuth` drive the client
against an ``httpx.MockTransport`` whose answers are these ``Reply``
functions; each test file keeps its own small endpoint class (what it
records and checks differs).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import attrs
import httpx

EPOCH = 1_800_000_000.0  # 2027-01-15T08:00:00Z

Reply = Callable[[httpx.Request], httpx.Response]


def at(seconds: float) -> datetime:
    """Aware UTC datetime ``seconds`` after EPOCH."""
    return datetime.fromtimestamp(EPOCH + seconds, UTC)


@attrs.define
class FakeClock:
    """A wall clock that moves only when told to, counting its readings."""

    now: float = EPOCH
    readings: int = 0

    def __call__(self) -> float:
        """Read the clock."""
        self.readings += 1
        return self.now


def respond(
    status: int,
    body: object = None,
    *,
    text: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """A reply giving ``status`` with a JSON ``body`` or a raw ``text`` body."""

    def reply(_request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return reply


def fail_with(exc_type: type[httpx.TransportError]) -> Reply:
    """A reply that raises a transport error instead of answering."""

    def reply(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated network failure", request=request)

    return reply


def form(request: httpx.Request) -> dict[str, str]:
    """The form fields of a request, checking each appears once."""
    pairs = parse_qsl(request.content.decode("ascii"), strict_parsing=True)
    assert len(pairs) == len(dict(pairs))
    return dict(pairs)
