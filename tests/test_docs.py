"""The code in docs/ runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import trio
import trio.testing

from shoptoken import Token, TokenKey, open_token_manager
from shoptoken.testing import FakeShopify

DOCS = Path(__file__).parent.parent / "docs"


def python_blocks(page: str) -> list[str]:
    """The ```python blocks of a docs page."""
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.DOTALL)


async def test_callback_example_persists_and_reloads(tmp_path: Path) -> None:
    """docs/callback.md's AppTokens round-trips tokens and backs a manager on a real file.

    Real clock: the store runs in threads, which a mock clock would jump over.
    """
    namespace: dict[str, Any] = {}
    exec(python_blocks("callback.md")[-1], namespace)  # noqa: S102 - our own docs
    store = namespace["AppTokens"](str(tmp_path / "app.db"))
    shopify = FakeShopify()
    key = TokenKey.offline("my-store")
    assert await store.load_tokens(key) is None
    first = shopify.install(key.shop)
    await store.save_tokens(key, first)
    assert await store.load_tokens(key) == first
    async with shopify.oauth() as oauth, open_token_manager(oauth, store) as tokens:
        assert await tokens.valid_token(key) == first
        for _ in range(3):
            token = await tokens.refresh_token(key)
    reopened = namespace["AppTokens"](str(tmp_path / "app.db"))
    assert await reopened.load_tokens(key) == token
    assert shopify.refreshes[key.shop] == 3
    assert shopify.is_valid(key.shop, token.access_token)
    legacy = Token(access_token="shpat_legacy")
    await store.save_tokens(key, legacy)
    assert await store.load_tokens(key) == legacy


async def test_testing_page_example_passes(autojump_clock: trio.testing.MockClock) -> None:
    """docs/testing.md's example test passes."""
    namespace: dict[str, Any] = {}
    exec(python_blocks("testing.md")[-1], namespace)  # noqa: S102 - our own docs
    await namespace["test_tokens_stay_valid_for_a_day"](autojump_clock)


async def test_client_credentials_page_example_passes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """docs/client-credentials.md's example test passes: three days, one grant a day."""
    namespace: dict[str, Any] = {}
    exec(python_blocks("client-credentials.md")[-1], namespace)  # noqa: S102 - our own docs
    await namespace["test_daemon_keeps_its_token"](autojump_clock)
