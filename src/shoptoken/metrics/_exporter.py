"""TokenMetrics: a manager's statistics and events, in Prometheus' exposition format.

Built only on the manager's public seams: it is an `EventHook` (every
`TokenEvent` is counted under its event name, so a new kind of event is
counted with no change here, and refresh latencies are observed from the
events), and it reads `TokenManager.statistics()` when scraped. Time is read
from trio's clock: the hook, `TokenMetrics.health` and a scrape run in the
manager's trio thread (as `serve_metrics` does).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._events import EventKind, TokenEvent

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    msg = "shoptoken.metrics needs the 'metrics' extra: pip install 'shoptoken[metrics]'"
    raise ImportError(msg) from exc

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from .._core._manager import TokenManager
    from .._keys import TokenKey

PREFIX: Final = "shoptoken"
#: Statistics that are levels (they go down as well as up); every ``keys_*`` one too.
_LEVELS: Final = frozenset({"refreshes_in_flight", "saves_pending"})
#: Seconds: from a fast local fake to a slow Shopify answer and past the HTTP timeout.
_LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Events that end a refresh request, and the outcome each is counted as.
_OUTCOMES: Final = {
    EventKind.REFRESH_SUCCEEDED: "succeeded",
    EventKind.REFRESH_FAILED: "failed",
    EventKind.REAUTHORIZATION_REQUIRED: "failed",
}


@attrs.frozen
class Health:
    """Whether the token manager is healthy, and why not.

    Attributes:
        healthy: A manager runs and no rotated pair has waited for its save
            longer than the threshold.
        reason: ``"ok"``, or what is wrong (one line, no secret).
    """

    healthy: bool
    reason: str


@attrs.define(eq=False)
class TokenMetrics:
    """Exports a `TokenManager`'s statistics and event counts for Prometheus.

    Pass it as a hook and let it watch the manager::

        metrics = TokenMetrics()
        async with open_token_manager(oauth, store, hooks=[metrics]) as tokens:
            with metrics.watching(tokens):
                ...  # serve_metrics(metrics, host, port) in a nursery, or your own

    Exported (all prefixed ``shoptoken_``): ``events_total{event=NAME}`` for
    every event; ``refresh_duration_seconds{outcome}``, a histogram of refresh
    requests; every field of `TokenManagerStatistics` (``keys_*``,
    ``refreshes_in_flight`` and ``saves_pending`` as gauges, the others as
    ``*_total`` counters, which restart from 0 with a new manager); ``up``
    (1 while a watched manager runs) and ``save_pending_seconds`` (the age of
    the oldest rotated pair still waiting for its save).

    Args:
        registry: Where the metrics are registered (a new registry by default;
            pass ``prometheus_client.REGISTRY`` to join the process-wide one).
        save_pending_threshold: Seconds a save may stay pending before
            `health` reports unhealthy.
    """

    registry: CollectorRegistry = attrs.field(factory=CollectorRegistry)
    save_pending_threshold: float = attrs.field(default=300.0, kw_only=True)
    _manager: TokenManager | None = attrs.field(init=False, default=None)
    _events: Counter = attrs.field(init=False)
    _latency: Histogram = attrs.field(init=False)
    _started: dict[TokenKey, float] = attrs.field(init=False, factory=dict)
    _pending_since: dict[TokenKey, float] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.save_pending_threshold, bool) or not self.save_pending_threshold > 0:
            msg = "save_pending_threshold must be a positive number of seconds"
            raise ValueError(msg)
        self._events = Counter(
            f"{PREFIX}_events",
            "Events the token manager reported, by event name.",
            ["event"],
            registry=self.registry,
        )
        self._latency = Histogram(
            f"{PREFIX}_refresh_duration_seconds",
            "Time from a refresh request's start to its outcome.",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Statistics(self))

    # -- the hook -----------------------------------------------------------------

    def __call__(self, event: TokenEvent, /) -> None:
        """Count ``event`` (an `EventHook`); time refreshes; track pending saves."""
        self._events.labels(event=event.kind.value).inc()
        kind, key = event.kind, event.key
        if kind is EventKind.REFRESH_STARTED:
            self._started[key] = trio.current_time()
        elif kind in _OUTCOMES:
            started = self._started.pop(key, None)
            duration = event.duration
            if duration is None and started is not None:
                duration = trio.current_time() - started
            if duration is not None:
                self._latency.labels(outcome=_OUTCOMES[kind]).observe(duration)
        if kind is EventKind.PERSISTENCE_FAILED:
            self._pending_since.setdefault(key, trio.current_time())
        elif kind is EventKind.PERSISTENCE_RECOVERED:
            self._pending_since.pop(key, None)

    # -- the manager ----------------------------------------------------------------

    @contextmanager
    def watching(self, tokens: TokenManager) -> Iterator[None]:
        """Read ``tokens``' statistics while the block runs (``up`` is 1 meanwhile)."""
        self._manager = tokens
        try:
            yield
        finally:
            self._manager = None
            self._started.clear()
            self._pending_since.clear()

    def save_pending_for(self) -> float:
        """Seconds the oldest rotated pair has waited for its save (0 if none)."""
        if not self._pending_since:
            return 0.0
        return trio.current_time() - min(self._pending_since.values())

    def health(self) -> Health:
        """Healthy: a manager is watched and no save has been pending past the threshold."""
        if self._manager is None:
            return Health(healthy=False, reason="no token manager is running")
        pending = self.save_pending_for()
        if pending > self.save_pending_threshold:
            return Health(
                healthy=False,
                reason=(
                    f"{len(self._pending_since)} rotated pair(s) not saved; the oldest for"
                    f" {pending:.0f} s (threshold {self.save_pending_threshold:g} s)"
                ),
            )
        return Health(healthy=True, reason="ok")

    def collect_statistics(self) -> Iterable[Metric]:
        """The metric families read at scrape time: statistics, ``up``, pending saves."""
        manager = self._manager
        yield GaugeMetricFamily(
            f"{PREFIX}_up", "1 while a token manager runs.", value=int(manager is not None)
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_save_pending_seconds",
            "Seconds the oldest rotated pair has waited for its save (0 if none).",
            value=self.save_pending_for(),
        )
        if manager is None:
            return
        stats = manager.statistics()
        for field in attrs.fields(type(stats)):
            value = getattr(stats, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = f"{PREFIX}_{field.name}"
            described = f"TokenManagerStatistics.{field.name}"
            if field.name.startswith("keys_") or field.name in _LEVELS:
                yield GaugeMetricFamily(name, described, value=value)
            else:
                yield CounterMetricFamily(name, described, value=value)


@attrs.define(eq=False)
class _Statistics:
    """The registry's view of `TokenMetrics.collect_statistics` (a custom collector)."""

    metrics: TokenMetrics

    def collect(self) -> Iterable[Metric]:
        """Read the watched manager's statistics now."""
        return self.metrics.collect_statistics()
