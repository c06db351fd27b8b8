"""A started TokenService over an in-process FakeShopify, on a clock the test moves."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from shoptoken import (
    EventKind,
    MemoryStore,
    RefreshPolicy,
    Token,
    TokenCallback,
    TokenEvent,
    TokenKey,
    TokenService,
)
from shoptoken.testing import FakeShopify

from .._endpoint import FakeClock
from .._managers import KEY

#: The key whose refresh `Freezer` holds.
FROZEN = TokenKey.offline("frozen-store")

#: Shopify's access token lifetime: moving the clock this far expires a fresh pair.
LIFETIME = 3600.0


@attrs.define(eq=False)
class Harness:
    """What a service test holds: the service, its fake Shopify, store and clock."""

    service: TokenService
    fake: FakeShopify
    store: TokenCallback
    clock: FakeClock
    token: Token
    events: list[TokenEvent]

    def expire(self) -> None:
        """Move the wall clock past the installed token's hard expiry."""
        self.clock.now += LIFETIME


class Freezer:
    """Freezes the service's thread on demand: its hook blocks inside a refresh of `FROZEN`.

    While frozen, nothing crosses to the service's thread: a call that
    needs it waits, a read that does not proves it.
    """

    def __init__(self) -> None:
        self._entered = threading.Event()
        self._release = threading.Event()

    def hook(self, event: TokenEvent) -> None:
        """Block the service's thread when `FROZEN`'s refresh starts."""
        if event.kind is EventKind.REFRESH_STARTED and event.key == FROZEN:
            self._entered.set()
            self._release.wait(30.0)

    @contextmanager
    def frozen(self, h: Harness) -> Iterator[None]:
        """Hold the service's thread for the block (`FROZEN` is installed here)."""
        h.service.put_token(FROZEN, h.fake.install(FROZEN.shop))
        refresh = threading.Thread(target=h.service.refresh_token, args=(FROZEN,))
        refresh.start()
        assert self._entered.wait(10.0)
        try:
            yield
        finally:
            self._release.set()
            refresh.join()


@contextmanager
def running(
    store: TokenCallback | None = None,
    *,
    latency: float = 0.0,
    hooks: tuple[Callable[[TokenEvent], None], ...] = (),
    timeout: float = 20.0,
    **policy: Any,
) -> Iterator[Harness]:
    """A started service with ``KEY`` installed (through ``put_token``), closed on exit."""
    clock = FakeClock()
    fake = FakeShopify(clock=clock, latency=latency)
    store = store if store is not None else MemoryStore()
    events: list[TokenEvent] = []
    service = TokenService(
        fake.oauth(),
        store,
        policy=RefreshPolicy(**policy),
        clock=clock,
        hooks=[*hooks, events.append],
        rng=random.Random(7),
        timeout=timeout,
    )
    with service:
        token = fake.install(KEY.shop)
        service.put_token(KEY, token)
        yield Harness(service, fake, store, clock, token, events)


def stored(store: TokenCallback, key: TokenKey) -> Token | None:
    """What ``store`` holds for ``key``, read from this thread (its own trio run)."""
    return trio.run(store.load_tokens, key)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` (work the service's thread does in real time) until it holds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        pause.wait(0.005)
