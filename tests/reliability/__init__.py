"""The reliability suite: what shoptoken survives, each test printing its figures.

Fast modes run with the rest of the tests (``pytest tests/reliability``); the
long soaks are marked ``long`` and run with ``pytest tests/reliability --long
-s``. Every test prints one line per figure set, prefixed ``RELIABILITY``,
which ``docs/reliability.md`` quotes.

The helpers below are shared by the suite's modules.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs

from shoptoken import EventKind, TokenEvent, TokenKey
from shoptoken.testing import FakeShopify
from shoptoken.testing._admin import _Pair

Clock = Callable[[], float]


def report(name: str, **figures: object) -> None:
    """Print one line of figures for the reliability notes (``pytest -s`` shows it)."""
    fields = " ".join(f"{field}={_format(value)}" for field, value in figures.items())
    print(f"RELIABILITY {name}: {fields}")  # noqa: T201 - the suite's figures are printed on purpose


def seeded(seed: int) -> random.Random:
    """A seeded generator: the suite's runs are reproducible."""
    return random.Random(seed)


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Drop shoptoken's log lines below CRITICAL while a soak runs (thousands of them)."""
    logger = logging.getLogger("shoptoken")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@attrs.define(eq=False)
class EventTally:
    """A hook that counts events by kind (and keeps the failures' keys)."""

    counts: collections.Counter[EventKind] = attrs.field(factory=collections.Counter)
    reauthorized: set[TokenKey] = attrs.field(factory=set)

    def __call__(self, event: TokenEvent, /) -> None:
        """Count one event."""
        self.counts[event.kind] += 1
        if event.kind is EventKind.REAUTHORIZATION_REQUIRED:
            self.reauthorized.add(event.key)

    def __getitem__(self, kind: EventKind) -> int:
        return self.counts[kind]


@attrs.define(eq=False)
class RecordingShopify(FakeShopify):
    """A FakeShopify that remembers every refresh token it issued, per shop, in order.

    Comparing its record with what a store saved shows exactly which
    rotations Shopify performed that never reached the store.
    """

    issued: dict[str, list[str]] = attrs.field(factory=dict, repr=False)

    def _issue(self, shop: str) -> _Pair:
        pair = super()._issue(shop)
        self.issued.setdefault(shop, []).append(pair.refresh)
        return pair

    def current(self, shop: str) -> str:
        """The refresh token of Shopify's current pair for ``shop``."""
        return self.issued[shop][-1]
