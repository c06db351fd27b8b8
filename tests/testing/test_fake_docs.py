"""Every example in docs/testing.md runs as written (tests/test_docs.py runs the last one)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

PAGE = Path(__file__).parent.parent.parent / "docs" / "testing.md"


def examples() -> dict[str, Callable[..., Any]]:
    """The test functions the page's python blocks define, by name."""
    found: dict[str, Callable[..., Any]] = {}
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL):
        namespace: dict[str, Any] = {}
        exec(block, namespace)  # noqa: S102 - our own docs
        found.update({k: v for k, v in namespace.items() if k.startswith("test_")})
    return found


EXAMPLES = examples()
MOCK = sorted(name for name, f in EXAMPLES.items() if inspect.signature(f).parameters)
REAL = sorted(name for name, f in EXAMPLES.items() if not inspect.signature(f).parameters)


def test_the_page_has_examples_of_both_clocks() -> None:
    """Examples run under the mock clock and, for loopback, the real one."""
    assert len(MOCK) >= 3
    assert REAL == ["test_refresh_over_loopback"]


@pytest.mark.parametrize("name", MOCK)
async def test_mock_clock_example(name: str, autojump_clock: trio.testing.MockClock) -> None:
    """The example passes under autojump_clock."""
    await EXAMPLES[name](autojump_clock)


@pytest.mark.parametrize("name", REAL)
async def test_real_clock_example(name: str) -> None:
    """The loopback example passes on the real clock, quickly."""
    with trio.fail_after(5):
        await EXAMPLES[name]()
