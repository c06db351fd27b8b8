"""A process that starts a TokenService and exits without closing it (run by test_process).

``python -m tests.service._exit_child pending``: a rotated pair's save failed
and is retried after the main thread ends; the atexit close lets it land.
``python -m tests.service._exit_child stuck``: a refresh hangs at Shopify; the
process still exits once ``shutdown_grace`` is spent.
"""

from __future__ import annotations

import random
import sys
import threading

import trio

from shoptoken import EventKind, RefreshPolicy, TokenEvent, TokenService
from shoptoken.testing import FakeShopify

from .._endpoint import FakeClock
from .._managers import KEY
from ..fakes import FlakyStore


def say(line: str) -> None:
    """One line for the parent, on stdout at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def report(event: TokenEvent) -> None:
    """Say the events the parent looks for (from the service's thread)."""
    if event.kind in (EventKind.PERSISTENCE_FAILED, EventKind.PERSISTENCE_RECOVERED):
        say(event.kind.value)


def main(mode: str) -> None:
    """Start the service, leave work in flight, and return without closing it."""
    clock = FakeClock()
    fake = FakeShopify(clock=clock, latency=60.0 if mode == "stuck" else 0.0)
    store = FlakyStore()
    trio.run(store.save_tokens, KEY, fake.install(KEY.shop))
    policy = RefreshPolicy(retry_initial=0.3, retry_max=0.3, shutdown_grace=1.0)
    service = TokenService(
        fake.oauth(), store, policy=policy, clock=clock, hooks=[report], rng=random.Random(1)
    )
    service.start()
    clock.now += 3600.0  # expired: the next use refreshes
    if mode == "pending":
        store.fail_saves = 1
        new = service.valid_token(KEY)
        say(f"served {fake.is_valid(KEY.shop, new.access_token)}")
    else:
        threading.Thread(target=service.valid_token, args=(KEY,), daemon=True).start()
        say("refresh started")


if __name__ == "__main__":
    main(sys.argv[1])
