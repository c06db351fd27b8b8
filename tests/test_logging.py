"""The library logs through the standard library's logging: silent by default, never on stdout."""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import subprocess
import sys
from pathlib import Path

import trio

from shoptoken import TokenKey, open_token_manager
from shoptoken.stores import MemoryStore
from shoptoken.testing import FakeShopify, trio_wall_clock

from ._logs import captured_events

DOCS = Path(__file__).parent.parent / "docs"

# A first program: refresh a token, log nothing itself, configure nothing.
_FIRST_PROGRAM = """
import trio
from shoptoken import TokenKey, open_token_manager
from shoptoken.stores import MemoryStore
from shoptoken.testing import FakeShopify

async def main():
    shopify, key = FakeShopify(), TokenKey.offline("my-store")
    store = MemoryStore({key: shopify.install(key.shop)})
    async with shopify.oauth() as oauth, open_token_manager(oauth, store) as tokens:
        await tokens.refresh_token(key)

trio.run(main)
"""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child interpreter with warnings as errors."""
    return subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unconfigured_library_writes_nothing() -> None:
    """A program that configures no logging sees no debug or info event on stdout or stderr."""
    result = run_python(_FIRST_PROGRAM)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


async def test_events_are_standard_log_records(autojump_clock: trio.testing.MockClock) -> None:
    """Events reach logger "shoptoken" as LogRecords: the name as message, fields as attributes."""
    shopify, key = FakeShopify(clock=trio_wall_clock()), TokenKey.offline("my-store")
    store = MemoryStore({key: shopify.install(key.shop)})
    handler = logging.handlers.BufferingHandler(capacity=10_000)
    logger = logging.getLogger("shoptoken")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        async with (
            shopify.oauth() as oauth,
            open_token_manager(oauth, store, clock=trio_wall_clock()) as tokens,
        ):
            await tokens.refresh_token(key)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    records = handler.buffer
    succeeded = [r for r in records if r.getMessage() == "shoptoken.refresh.succeeded"]
    assert len(succeeded) == 1
    assert succeeded[0].name == "shoptoken"
    assert succeeded[0].levelno == logging.INFO
    assert succeeded[0].key == str(key)  # type: ignore[attr-defined]
    assert succeeded[0].reason == "forced"  # type: ignore[attr-defined]


def test_captured_events_helper_sees_fields() -> None:
    """The tests' capture helper turns records back into event dicts."""
    from shoptoken._log import get_logger

    with captured_events() as events:
        get_logger().info("shoptoken.test.event", key="offline:x.myshopify.com", n=3)
    assert events == [
        {
            "event": "shoptoken.test.event",
            "log_level": "info",
            "key": "offline:x.myshopify.com",
            "n": 3,
        }
    ]


def test_operations_page_json_recipe_prints_json_lines() -> None:
    """docs/operations.md's logging recipe turns the library's events into JSON lines."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "operations.md").read_text(), re.DOTALL)
    recipe = next(block for block in blocks if "ProcessorFormatter" in block)
    result = run_python(recipe + "\n" + _FIRST_PROGRAM)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    succeeded = [line for line in lines if line["event"] == "shoptoken.refresh.succeeded"]
    assert succeeded
    assert succeeded[0]["key"] == "offline:my-store.myshopify.com"
    assert succeeded[0]["level"] == "info"
    assert "timestamp" in succeeded[0]
