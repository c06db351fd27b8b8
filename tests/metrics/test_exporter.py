"""TokenMetrics: statistics and events in the exposition format, latency, health."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
import trio
import trio.testing

from shoptoken import EventKind, Token, TokenEvent, TokenKey, open_token_manager
from shoptoken.stores import MemoryStore
from shoptoken.testing import FakeShopify

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from shoptoken.metrics import TokenMetrics  # noqa: E402

KEY = TokenKey.offline("my-store")


def scrape(metrics: TokenMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    text = prometheus_client.generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@attrs.define(eq=False)
class SavesFail(MemoryStore):
    """A MemoryStore whose saves fail while ``failing`` is set."""

    failing: bool = False

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Fail, or save."""
        if self.failing:
            raise OSError("disk full")
        await super().save_tokens(key, token)


async def test_a_refresh_is_counted_timed_and_reflected_in_statistics(
    autojump_clock: trio.testing.MockClock,
    clock: Callable[[], float],
    endpoint: FakeShopify,
) -> None:
    """One forced refresh: its events, its latency, and the manager's statistics are exported."""
    endpoint.latency = 0.3
    metrics = TokenMetrics()
    store = MemoryStore({KEY: endpoint.install(KEY.shop)})
    async with (
        endpoint.oauth() as oauth,
        open_token_manager(oauth, store, clock=clock, hooks=[metrics]) as tokens,
    ):
        with metrics.watching(tokens):
            await tokens.refresh_token(KEY)
            samples = scrape(metrics)
    assert samples[("shoptoken_events_total", (("event", "shoptoken.refresh.started"),))] == 1
    assert samples[("shoptoken_events_total", (("event", "shoptoken.refresh.succeeded"),))] == 1
    count = ("shoptoken_refresh_duration_seconds_count", (("outcome", "succeeded"),))
    assert samples[count] == 1
    total = ("shoptoken_refresh_duration_seconds_sum", (("outcome", "succeeded"),))
    assert samples[total] == pytest.approx(0.3)
    assert samples[("shoptoken_refreshes_succeeded_total", ())] == 1
    assert samples[("shoptoken_keys_known", ())] == 1
    assert samples[("shoptoken_saves_pending", ())] == 0
    assert samples[("shoptoken_up", ())] == 1
    assert scrape(metrics)[("shoptoken_up", ())] == 0  # the block is over


def test_every_event_is_counted_by_its_name() -> None:
    """Events are counted generically: each kind under its own name, no list to maintain."""
    metrics = TokenMetrics()

    async def feed() -> None:
        for kind in EventKind:
            metrics(TokenEvent(kind, KEY))

    trio.run(feed)
    samples = scrape(metrics)
    for kind in EventKind:
        assert samples[("shoptoken_events_total", (("event", kind.value),))] == 1


async def test_health_turns_bad_when_a_save_stays_pending(
    autojump_clock: trio.testing.MockClock,
    clock: Callable[[], float],
    endpoint: FakeShopify,
) -> None:
    """A save pending past the threshold is unhealthy; once it lands, healthy again."""
    metrics = TokenMetrics(save_pending_threshold=60)
    assert metrics.health().reason == "no token manager is running"
    store = SavesFail({KEY: endpoint.install(KEY.shop)})
    async with (
        endpoint.oauth() as oauth,
        open_token_manager(oauth, store, clock=clock, hooks=[metrics]) as tokens,
    ):
        with metrics.watching(tokens):
            assert metrics.health().healthy
            store.failing = True
            await tokens.refresh_token(KEY)
            await trio.sleep(30)
            assert metrics.health().healthy
            await trio.sleep(31)
            health = metrics.health()
            assert not health.healthy
            assert "not saved" in health.reason
            assert scrape(metrics)[("shoptoken_save_pending_seconds", ())] > 60
            store.failing = False
            await trio.sleep(300)  # the manager's retries land the save
            assert metrics.health().healthy
            assert scrape(metrics)[("shoptoken_save_pending_seconds", ())] == 0


def test_threshold_must_be_positive() -> None:
    """A non-positive threshold is refused at once."""
    with pytest.raises(ValueError, match="save_pending_threshold"):
        TokenMetrics(save_pending_threshold=0)
