"""``shoptoken run``: a sidecar that keeps every stored key's tokens fresh.

Apps that share the store (SQLite on one host, PostgreSQL across nodes)
read fresh tokens from it; this daemon refreshes them ahead of expiry,
under the store's lock, so it never races the apps' own managers. Every
``--rescan`` seconds it lists the store again: new keys are picked up, and
keys stay active (never parked) while they are stored.

SIGINT or SIGTERM stops it cleanly: leaving the manager lets a refresh in
flight finish and its pair be saved (``--shutdown-grace``), then it exits 0.
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Final

import attrs
import click
import trio
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._core._manager import open_token_manager
from .._errors import NoToken, ReauthorizationRequired, ShopTokenError
from .._keys import TokenKind
from .._log import get_logger
from ._display import console
from ._errors import run_trio
from ._logging import LEVELS, configure_json
from ._metrics import Exporter
from ._options import (
    Credentials,
    StoreConfig,
    build_policy,
    credential_options,
    credentials,
    open_cli_store,
    open_oauth,
    policy_options,
    store_options,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.progress import TaskID

    from .._core._manager import TokenManager
    from .._core._policy import RefreshPolicy
    from .._core._statistics import TokenManagerStatistics
    from .._events import EventHook, TokenEvent
    from .._keys import TokenKey
    from .._oauth._admin import ShopifyOAuth
    from .._persistence import TokenCallback
    from ..metrics import TokenMetrics

log = get_logger("shoptoken.cli")

#: Keys activated at once during a scan (loads and first refreshes).
_SCAN_CONCURRENCY: Final = 32
#: Statistics that count events (summed over managers), not keys.
_CUMULATIVE: Final = (
    "refreshes_succeeded",
    "refreshes_failed",
    "refreshes_adopted",
    "refreshes_deferred",
    "saves_failed",
    "loads_failed",
    "stale_served",
    "refresher_crashes",
)


@attrs.define(eq=False)
class Scan:
    """What one pass over the store found (and what the daemon remembers between passes)."""

    keys: int = 0
    active: int = 0
    failed: int = 0
    skipped: int = 0
    reauthorize: set[TokenKey] = attrs.field(factory=set)


@attrs.define(eq=False)
class WarmUpBar:
    """The start's progress bar (on stderr, on a terminal only), fed by warm-up events."""

    _progress: Progress | None = None
    _task: TaskID | None = None

    def __call__(self, event: TokenEvent) -> None:
        """An `EventHook`: move the bar on each ``WARM_UP_PROGRESS`` event."""
        figures = event.progress
        if figures is not None and self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=figures.keys)

    @contextmanager
    def showing(self, total: int) -> Iterator[Progress]:
        """Show the bar for ``total`` keys while the block runs."""
        progress = Progress(
            TextColumn("Loading keys"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=True,
            disable=not sys.stderr.isatty(),
        )
        with progress:
            self._progress, self._task = progress, progress.add_task("warm-up", total=total)
            try:
                yield progress
            finally:
                self._progress = self._task = None


@attrs.define(eq=False)
class Daemon:
    """The keep-alive loop over one store, with the manager restarted when needed."""

    store: TokenCallback
    oauth: ShopifyOAuth
    policy: RefreshPolicy
    rescan: float
    metrics: TokenMetrics | None = None
    statistics: TokenManagerStatistics | None = None
    _stuck: dict[TokenKey, object] = attrs.field(factory=dict)
    _reported: set[TokenKey] = attrs.field(factory=set)
    _bar: WarmUpBar = attrs.field(factory=WarmUpBar)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run managers until cancelled; ``started`` after the first scan."""
        first = True
        while True:
            refreshers = {
                TokenKind.OFFLINE: self.oauth,
                TokenKind.ONLINE: self.oauth,
                TokenKind.CLIENT_CREDENTIALS: self.oauth,
            }
            manager: TokenManager | None = None
            hooks: list[EventHook] = [self._bar]
            if self.metrics is not None:
                hooks.append(self.metrics)
            try:
                async with open_token_manager(
                    refreshers, self.store, policy=self.policy, hooks=hooks
                ) as manager:
                    with self.metrics.watching(manager) if self.metrics else nullcontext():
                        await self._keep_alive(manager, task_status if first else None)
            finally:
                # After the block: refreshes that finished during shutdown count too.
                if manager is not None:
                    self._add(manager.statistics())
            first = False
            log.info("shoptoken.cli.run.restarted", reason="re-authorized keys found in the store")

    async def _keep_alive(
        self, tokens: TokenManager, task_status: trio.TaskStatus[None] | None
    ) -> None:
        """Scan every ``rescan`` seconds; return when the manager must be restarted."""
        while True:
            try:
                scan = await self._scan(tokens, first=task_status is not None)
                restart = await self._reauthorized_elsewhere(scan.reauthorize)
            except ShopTokenError as exc:
                if task_status is not None:
                    raise  # the store is unusable from the start: report it and exit
                # The store failed (an outage?): keep refreshing what is loaded, scan again later.
                log.error("shoptoken.cli.scan.failed", error=str(exc))  # noqa: TRY400 - no traceback: it would show locals
            else:
                log.info(
                    "shoptoken.cli.scan.finished",
                    keys=scan.keys,
                    active=scan.active,
                    needs_reauthorization=len(scan.reauthorize),
                    failed=scan.failed,
                    skipped=scan.skipped,
                )
                if task_status is not None:
                    log.info("shoptoken.cli.run.ready", keys=scan.keys, rescan=self.rescan)
                    task_status.started()
                    task_status = None
                if restart:
                    return
            await trio.sleep(self.rescan)

    async def _scan(self, tokens: TokenManager, *, first: bool) -> Scan:
        list_keys = getattr(self.store, "list_keys", None)
        if list_keys is None:
            msg = "this store cannot list its keys, which `shoptoken run` needs"
            raise click.ClickException(msg)
        # Listed first, outside the nursery: a store failure stays a plain
        # ShopTokenError, not an exception group.
        keys = [key async for key in list_keys()]
        scan = Scan(keys=len(keys))
        # Loaded in batches first (one store call each); the pass below then
        # finds them in memory and only sorts them.
        kept = [key for key in keys if key.kind is not TokenKind.CUSTOMER]
        with self._bar.showing(len(kept)) if first else nullcontext():
            figures = await tokens.warm_up(kept)
        if first:
            log.info("shoptoken.cli.warm_up.finished", **attrs.asdict(figures))
        limiter = trio.CapacityLimiter(_SCAN_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            for key in keys:
                await limiter.acquire_on_behalf_of(key)
                nursery.start_soon(self._activate, tokens, key, scan, limiter)
        return scan

    async def _activate(
        self, tokens: TokenManager, key: TokenKey, scan: Scan, limiter: trio.CapacityLimiter
    ) -> None:
        """Use ``key`` once: loads it, refreshes it if due, keeps its refresher running."""
        try:
            if key.kind is TokenKind.CUSTOMER:
                scan.skipped += 1
                self._report_once(key, "shoptoken.cli.key.skipped", "customer keys need your app")
                return
            try:
                await tokens.valid_token(key)
            except ReauthorizationRequired as exc:
                scan.reauthorize.add(key)
                self._report_once(key, "shoptoken.cli.key.needs_reauthorization", str(exc))
            except NoToken:
                scan.keys -= 1  # deleted while we listed
            except ShopTokenError as exc:
                # The manager keeps retrying in the background.
                scan.failed += 1
                log.warning("shoptoken.cli.key.failed", key=str(key), error=str(exc))
            else:
                scan.active += 1
                self._reported.discard(key)
        finally:
            limiter.release_on_behalf_of(key)

    def _add(self, stats: TokenManagerStatistics) -> None:
        """Fold one manager's final figures in: counters add up, key counts are the latest."""
        if self.statistics is not None:
            totals = {
                name: getattr(self.statistics, name) + getattr(stats, name) for name in _CUMULATIVE
            }
            stats = attrs.evolve(stats, **totals)
        self.statistics = stats

    def _report_once(self, key: TokenKey, event: str, detail: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            log.warning(event, key=str(key), detail=detail)

    async def _reauthorized_elsewhere(self, stuck: set[TokenKey]) -> bool:
        """Whether a key that needs re-authorization has since been given a new token.

        The manager keeps such a key marked until `put_token`; the app that
        re-authorized it saved the new pair to the store, so a new manager
        (which reads the store afresh) is the safe way to take it up.
        """
        changed = False
        seen: dict[TokenKey, object] = {}
        for key in stuck:
            stored = await self.store.load_tokens(key)
            # Compared by value, never kept longer than between two scans.
            seen[key] = stored
            if key in self._stuck and stored is not None and stored != self._stuck[key]:
                changed = True
        self._stuck = {} if changed else seen
        if changed:
            self._reported.difference_update(stuck)
        return changed


async def _serve(
    config: StoreConfig,
    creds: Credentials,
    policy: RefreshPolicy,
    rescan: float,
    exporter: Exporter | None,
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_cli_store(config) as store, open_oauth(creds) as oauth:
            metrics = None if exporter is None else exporter.metrics
            daemon = Daemon(store, oauth, policy, rescan, metrics)
            log.info("shoptoken.cli.run.starting", store=config.shown())
            async with trio.open_nursery() as nursery:
                if exporter is not None:
                    await exporter.start(nursery)

                async def stop_on_signal() -> None:
                    async for signum in signals:
                        log.info("shoptoken.cli.run.stopping", signal=signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                await nursery.start(daemon.run)
            stats = daemon.statistics
            log.info(
                "shoptoken.cli.run.stopped",
                **({} if stats is None else attrs.asdict(stats)),
            )


@click.command()
@store_options()
@credential_options
@policy_options
@click.option(
    "--max-concurrent-refreshes",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Refresh requests in flight at most.",
)
@click.option(
    "--shutdown-grace",
    metavar="SECONDS",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds a refresh in flight may take to finish and save on shutdown.",
)
@click.option(
    "--rescan",
    metavar="SECONDS",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds between listings of the store (to pick up new keys).",
)
@click.option(
    "--metrics",
    "metrics_address",
    metavar="HOST:PORT",
    default=None,
    help="Serve Prometheus metrics at /metrics and a health check at /healthz (metrics extra).",
)
@click.option(
    "--unhealthy-after",
    metavar="SECONDS",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="/healthz fails once a rotated pair has waited this long for its save.",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Least severe event logged (debug shows each refresh starting).",
)
def run(
    *,
    store: str,
    encryption_key: str | None,
    client_id: str | None,
    client_secret: str | None,
    fake_shopify_url: str | None,
    refresh_before: float,
    jitter: float,
    skew: float,
    max_concurrent_refreshes: int,
    shutdown_grace: float,
    rescan: float,
    log_level: str,
    metrics_address: str | None,
    unhealthy_after: float,
) -> None:
    """Keep every stored key's tokens fresh until SIGINT/SIGTERM (a sidecar).

    Logs one JSON object per line on stdout. Offline and online keys are
    kept; customer keys are left to the app that owns them. With --metrics,
    serves Prometheus metrics and a health check (docs/operations.md).
    """
    creds = credentials(client_id, client_secret, fake_shopify_url)
    policy = build_policy(
        refresh_before=refresh_before,
        jitter=jitter,
        skew=skew,
        max_concurrent_refreshes=max_concurrent_refreshes,
        shutdown_grace=shutdown_grace,
    )
    exporter = None if metrics_address is None else Exporter.parse(metrics_address, unhealthy_after)
    configure_json(log_level)
    run_trio(_serve, StoreConfig(store, encryption_key), creds, policy, rescan, exporter)
