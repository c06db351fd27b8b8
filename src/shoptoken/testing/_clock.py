"""A wall clock driven by trio's clock, for tests under ``autojump_clock``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

#: 2026-01-01T00:00:00Z: a round epoch for tests' wall clocks.
EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def trio_wall_clock(epoch: float = EPOCH) -> Callable[[], float]:
    """Return a wall clock (epoch seconds) that advances with trio's clock.

    Pass it as ``clock=`` to `open_token_manager` and `ShopifyOAuth` in a
    test that uses pytest-trio's ``autojump_clock``: hours of token
    lifetimes then pass in milliseconds, and the manager's wall time and
    its scheduling agree exactly.
    """

    def clock() -> float:
        return epoch + trio.current_time()

    return clock
