"""No access or refresh token ever appears in a log event, event, exception text or repr."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import httpx
import trio
import trio.testing

from shoptoken import (
    RefreshPolicy,
    ShopTokenError,
    TokenEvent,
    TokenKey,
    open_token_manager,
)
from shoptoken.testing import FakeShopify
from shoptoken.testing._fake_shopify import _Pair

from ._logs import captured_events
from .fakes import FlakyStore


@attrs.define(eq=False)
class RecordingShopify(FakeShopify):
    """A FakeShopify that remembers every secret it issued."""

    issued: list[str] = attrs.field(factory=list)

    def _issue(self, shop: str) -> _Pair:
        pair = super()._issue(shop)
        self.issued += [pair.access, pair.refresh]
        return pair


async def test_full_scenario_leaks_no_secret(
    clock: Callable[[], float], autojump_clock: trio.testing.MockClock
) -> None:
    """Six hours of refreshes, faults, failed saves, a revoked shop and a broken hook: no secret."""
    shopify = RecordingShopify(clock=clock)
    store = FlakyStore()
    keys = [TokenKey.offline(f"shop-{i}") for i in range(5)]
    for key in keys:
        await store.save_tokens(key, shopify.install(key.shop))
    revoked = keys[0]
    shopify.install(revoked.shop)  # the stored pair of shop-0 is now dead

    texts: list[str] = []
    events: list[TokenEvent] = []

    def broken_hook(event: TokenEvent) -> None:
        raise ValueError("hook bug")

    policy = RefreshPolicy()
    with captured_events() as logs:
        async with (
            shopify.oauth() as oauth,
            open_token_manager(
                oauth, store, policy=policy, clock=clock, hooks=[events.append, broken_hook]
            ) as tokens,
        ):
            for hour in range(6):
                shopify.fail_next(500, 520, 429, httpx.ReadTimeout("slow"), 400)
                store.fail_saves = 2
                for key in keys:
                    try:
                        token = await tokens.valid_token(key)
                        texts += [repr(token), str(token)]
                    except ShopTokenError as exc:
                        texts += [str(exc), repr(exc), str(exc.__cause__)]
                texts.append(repr(tokens.statistics()))
                await trio.sleep(3600 + hour)
            texts += [repr(oauth), repr(tokens.auth(keys[1])), repr(store)]
    texts += [repr(event) for event in events]
    texts += [repr(entry) for entry in logs]

    assert len(shopify.issued) > 20
    assert any("Retry" in t or "429" in t for t in texts)
    assert any("shoptoken.persistence.failed" in t for t in texts)
    assert any("shoptoken.reauthorization_required" in t for t in texts)
    assert any("shoptoken.hook.failed" in t for t in texts)
    leaks = [(secret, text) for secret in shopify.issued for text in texts if secret in text]
    assert leaks == []
    # The store's message quoted the token; it was scrubbed, not dropped.
    assert any("[redacted]" in t for t in texts)
