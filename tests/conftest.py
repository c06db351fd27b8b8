from __future__ import annotations

from collections.abc import Callable

import pytest

from shoptoken.testing import FakeShopify, trio_wall_clock


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--long``: run the long modes of the reliability suite (soaks, many kills)."""
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the long modes of the reliability suite (tests marked long)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``long`` marker."""
    config.addinivalue_line("markers", "long: a long soak, run only with --long")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``long`` unless ``--long`` is given."""
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long mode: run with --long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def long_mode(request: pytest.FixtureRequest) -> bool:
    """Whether ``--long`` was given (tests scale their sizes with it)."""
    return bool(request.config.getoption("--long"))


@pytest.fixture
def clock() -> Callable[[], float]:
    """The manager's wall clock, driven by trio's (mock) clock."""
    return trio_wall_clock()


@pytest.fixture
def endpoint(clock: Callable[[], float]) -> FakeShopify:
    """A fake Shopify token endpoint on the same clock."""
    return FakeShopify(clock=clock)
