from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from shoptoken.testing import trio_wall_clock

from .fakes import FakeTokenEndpoint

if TYPE_CHECKING:
    from collections.abc import Callable


@pytest.fixture
def clock() -> Callable[[], float]:
    """The manager's wall clock, driven by trio's (mock) clock."""
    return trio_wall_clock()


@pytest.fixture
def endpoint(clock: Callable[[], float]) -> FakeTokenEndpoint:
    """A fake Shopify token endpoint on the same clock."""
    return FakeTokenEndpoint(clock)
