"""The manager the core's tests run (over a FakeShopify, on the test clock, jitter seeded)."""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from shoptoken import MemoryStore, RefreshPolicy, Token, TokenKey, open_token_manager

from .fakes import at

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from shoptoken import TokenCallback, TokenEvent, TokenManager
    from shoptoken.testing import FakeShopify

Clock = Callable[[], float]
KEY = TokenKey.offline("my-store")
SHOP = KEY.shop


@asynccontextmanager
async def manager(
    endpoint: FakeShopify,
    clock: Clock,
    store: TokenCallback | None = None,
    *,
    events: list[TokenEvent] | None = None,
    hooks: tuple[Callable[[TokenEvent], None], ...] = (),
    refresher: Any = None,
    seed: int = 7,
    **policy: Any,
) -> AsyncIterator[TokenManager]:
    """A manager over ``endpoint`` (or ``refresher``) and ``store``, its jitter seeded."""
    async with (
        endpoint.oauth(clock=clock) as oauth,
        open_token_manager(
            refresher or oauth,
            store if store is not None else MemoryStore(),
            policy=RefreshPolicy(**policy),
            clock=clock,
            hooks=[*hooks, events.append] if events is not None else list(hooks),
            rng=random.Random(seed),
        ) as tokens,
    ):
        yield tokens


async def installed(endpoint: FakeShopify, store: TokenCallback, key: TokenKey = KEY) -> Token:
    """Install ``key`` at the endpoint and in the store, as an OAuth callback would."""
    token = endpoint.install(key.shop)
    await store.save_tokens(key, token)
    return token


def expiring(clock: Clock, seconds: float, *, refresh: str | None = "shprt_r_SECRET") -> Token:
    """A token expiring ``seconds`` from now."""
    return Token(
        access_token="shpat_a_SECRET", refresh_token=refresh, expires_at=at(clock, seconds)
    )
