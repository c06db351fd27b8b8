from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from shoptoken.testing import FakeShopify, trio_wall_clock

if TYPE_CHECKING:
    from collections.abc import Callable


@pytest.fixture
def clock() -> Callable[[], float]:
    """The manager's wall clock, driven by trio's (mock) clock."""
    return trio_wall_clock()


@pytest.fixture
def endpoint(clock: Callable[[], float]) -> FakeShopify:
    """A fake Shopify token endpoint on the same clock."""
    return FakeShopify(clock=clock)
