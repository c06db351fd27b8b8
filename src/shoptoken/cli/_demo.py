"""``shoptoken demo``: watch shoptoken keep tokens valid against a faulty fake Shopify.

What runs, all real except Shopify itself:

- `FakeShopify` served over loopback HTTP (`serve_loopback`), with short
  token lifetimes and faults injected at a seeded rate at its token endpoint;
- N shops installed through the authorization-code flow (a signed callback
  verified by `ShopifyOAuth.verify_callback`, then the code exchange);
- a `TokenManager` on a SQLite store (a temporary file unless ``--store``),
  with the refresh policy scaled down to the short lifetimes;
- an "app": one task per shop making Admin API calls through
  ``tokens.auth(key)``, so the fake counts for real every call made with an
  expired or revoked token;
- halfway, the manager is stopped and a new one opens the same store: the
  tokens survive the restart.

It ends with figures, and exits 1 if any API call used an expired token,
Shopify rejected any refresh, or a token did not survive the restart.
"""

from __future__ import annotations

import random
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
import click
import httpx
import trio
from rich.live import Live
from rich.text import Text

from .._core._manager import open_token_manager
from .._errors import ReauthorizationRequired, ShopTokenError
from .._keys import TokenKey
from ..testing import FakeShopify, FaultPlan, serve_loopback
from ._demo_board import Board, plain_line, render_table
from ._demo_plan import DemoSettings, demo_faults, demo_policy, shop_names
from ._demo_report import Report, show_report
from ._display import console, token_state
from ._errors import run_trio
from ._options import StoreConfig, open_cli_store, redact_url, store_options

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from rich.console import Console
    from rich.table import Table

    from .._core._manager import TokenManager
    from .._core._policy import RefreshPolicy
    from .._oauth import ShopifyOAuth

SCOPES: Final = "read_orders,read_products"
API_VERSION: Final = "2026-10"
#: Seconds between display updates, and between plain progress lines.
_TICK: Final = 0.25
_PLAIN_EVERY: Final = 2.0
#: Seconds each fake request takes: enough to see "refreshing" now and then.
_LATENCY: Final = 0.02


@attrs.define(eq=False)
class Demo:
    """One run of the demo."""

    settings: DemoSettings
    out: Console
    fake: FakeShopify = attrs.field(init=False)
    policy: RefreshPolicy = attrs.field(init=False)
    board: Board = attrs.field(init=False)
    keys: list[TokenKey] = attrs.field(init=False)
    _rng: random.Random = attrs.field(init=False)
    _started: float = 0.0
    _next_line: float = 0.0
    _live: Live | None = None
    _notes: list[str] = attrs.field(factory=list)
    _interrupted: bool = False

    def __attrs_post_init__(self) -> None:
        settings = self.settings
        self.fake = FakeShopify(access_lifetime=settings.lifetime, latency=_LATENCY)
        self.policy = demo_policy(settings.lifetime)
        self.keys = [TokenKey.offline(name) for name in shop_names(settings.shops)]
        self.board = Board.for_keys(self.keys)
        self._rng = random.Random(settings.seed)  # noqa: S311 - simulated traffic, not cryptography

    # -- the run -------------------------------------------------------------------

    async def run(self) -> Report:
        """Run both phases (unless interrupted) and return the figures."""
        with tempfile.TemporaryDirectory(prefix="shoptoken-demo-") as scratch:
            url = self.settings.store or f"sqlite:///{Path(scratch) / 'demo.db'}"
            config = StoreConfig(url, self.settings.encryption_key)
            with trio.open_signal_receiver(signal.SIGINT) as interrupts:
                async with serve_loopback(self.fake) as server, server.oauth() as oauth:
                    temporary = self.settings.store is None
                    where = "a temporary SQLite file" if temporary else redact_url(url)
                    self._say(f"FakeShopify is serving on {server.url}; store: {where}")
                    api = server.client(timeout=10)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            self._stop_on_interrupt, interrupts, nursery.cancel_scope
                        )
                        with self._live_display():
                            await self._phases(config, oauth, api)
                        nursery.cancel_scope.cancel()
        return self._report(interrupted=self._interrupted)

    async def _stop_on_interrupt(
        self, interrupts: AsyncIterator[int], scope: trio.CancelScope
    ) -> None:
        async for _ in interrupts:
            self._interrupted = True
            scope.cancel()
            return

    async def _phases(
        self, config: StoreConfig, oauth: ShopifyOAuth, api: httpx.AsyncClient
    ) -> None:
        self._started = self._next_line = trio.current_time()
        half = self.settings.duration / 2
        await self._phase(1, config, oauth, api, until=self._started + half)
        self.board.manager_stopped()
        self.board.phase = 2
        self.board.restarted_at = trio.current_time() - self._started
        self._note(
            f"restart at t={self.board.restarted_at:.1f}s: the manager stopped;"
            " a new one opens the same store"
        )
        await self._phase(2, config, oauth, api, until=self._started + 2 * half)
        self.board.manager_stopped()

    async def _phase(
        self,
        number: int,
        config: StoreConfig,
        oauth: ShopifyOAuth,
        api: httpx.AsyncClient,
        *,
        until: float,
    ) -> None:
        async with (
            open_cli_store(config, create=True) as store,
            open_token_manager(
                oauth, store, policy=self.policy, hooks=[self.board.on_event]
            ) as tokens,
        ):
            if number == 1:
                create = getattr(store, "create_schema", None)
                if create is not None:
                    await create()
                await self._install(tokens, oauth)
            else:
                await self._check_survivors(tokens)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._display, tokens)
                for key in self.keys:
                    nursery.start_soon(self._app, tokens, key, api, oauth)
                await trio.sleep_until(until)
                nursery.cancel_scope.cancel()

    async def _install(self, tokens: TokenManager, oauth: ShopifyOAuth) -> None:
        """Install every shop through the authorization-code flow, then turn the faults on."""
        for key in self.keys:
            token = await self.fake.authorize(oauth, key.shop, SCOPES)
            await tokens.put_token(key, token)
            self.board.installed += 1
        self._note(
            f"{self.board.installed} shops installed through the authorization-code flow"
            f" (HMAC-verified callback, code exchange); {self.settings.lifetime:g}s tokens"
        )
        self.fake.faults = FaultPlan(
            rate=self.settings.fault_rate,
            seed=self.settings.seed,
            choices=demo_faults(self.settings.lifetime),
        )

    async def _check_survivors(self, tokens: TokenManager) -> None:
        """Count the stored pairs the new manager loaded that Shopify still honours."""
        survived = 0
        for key in self.keys:
            try:
                token = await tokens.fetch_token(key)
            except ShopTokenError:
                continue
            works = self.fake.is_valid(key.shop, token.access_token) or (
                token.refresh_token is not None
                and self.fake.refresh_token_works(key.shop, token.refresh_token)
            )
            survived += works
        self.board.survived = survived
        self._note(f"{survived}/{len(self.keys)} stored tokens usable after the restart")

    async def _app(
        self, tokens: TokenManager, key: TokenKey, api: httpx.AsyncClient, oauth: ShopifyOAuth
    ) -> None:
        """The app: an Admin API call for ``key`` every few hundred milliseconds."""
        row = self.board.rows[key]
        url = f"https://{key.shop}/admin/api/{API_VERSION}/shop.json"
        while True:
            await trio.sleep(self._rng.uniform(0.15, 0.45))
            try:
                await api.get(url, auth=tokens.auth(key))
            except ReauthorizationRequired:
                await self._reauthorize(tokens, key, oauth)
            except ShopTokenError:
                row.postponed += 1  # expired and its refresh failed: the manager retries
            except httpx.HTTPError as exc:
                row.last_error = f"API call: {type(exc).__name__}"

    async def _reauthorize(self, tokens: TokenManager, key: TokenKey, oauth: ShopifyOAuth) -> None:
        """Send the merchant through the flow again, as an app must."""
        try:
            token = await self.fake.authorize(oauth, key.shop, SCOPES)
        except ShopTokenError:
            return  # a fault hit the code exchange: try again on the next call
        await tokens.put_token(key, token)
        row = self.board.rows[key]
        row.needs_reauth = False
        row.reauthorizations += 1

    # -- showing it ------------------------------------------------------------------

    def _live_display(self) -> Live | _NoLive:
        if not self.settings.live:
            return _NoLive()
        self._live = Live(
            console=self.out, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
        )
        return self._live

    async def _display(self, tokens: TokenManager) -> None:
        """Update the rows from the manager and show them, until cancelled."""
        while True:
            await self._tick(tokens)
            now = trio.current_time()
            if self._live is not None:
                self._live.update(self._table(), refresh=True)
            elif now >= self._next_line:
                self._next_line += _PLAIN_EVERY
                click.echo(
                    plain_line(
                        self.board, elapsed=now - self._started, expired_calls=self._expired_calls()
                    )
                )
            await trio.sleep(_TICK)

    async def _tick(self, tokens: TokenManager) -> None:
        now = self.fake.clock()
        for key, row in self.board.rows.items():
            row.api_calls = self.fake.statistics(key.shop).api_calls
            try:
                token = await tokens.fetch_token(key)
            except ShopTokenError:
                continue
            row.expires_at = None if token.expires_at is None else token.expires_at.timestamp()
            row.state = row.shown_state(token_state(token, key, now, self.policy))

    def _table(self) -> Table:
        settings = self.settings
        elapsed = trio.current_time() - self._started
        title = (
            f"shoptoken demo: {settings.shops} shops, {settings.lifetime:g}s tokens,"
            f" {settings.fault_rate:.0%} of token requests fail (seed {settings.seed})"
        )
        caption = "\n".join(
            [
                *self._notes,
                (
                    f"t={elapsed:.1f}s of {settings.duration:g}s, phase {self.board.phase}/2;"
                    f" API calls made with an expired token: {self._expired_calls()}"
                ),
            ]
        )
        return render_table(self.board, now=self.fake.clock(), title=title, caption=caption)

    def _note(self, text: str) -> None:
        """A milestone: a caption line of the live table, or a plain line."""
        if self.settings.live:
            self._notes.append(text)
        else:
            self._say(f"t={trio.current_time() - self._started:5.1f}s {text}")

    def _say(self, text: str) -> None:
        self.out.print(Text(text))

    def _expired_calls(self) -> int:
        return sum(self.fake.api_calls_rejected.values())

    def _report(self, *, interrupted: bool) -> Report:
        board, fake = self.board, self.fake
        return Report(
            elapsed=trio.current_time() - self._started if self._started else 0.0,
            interrupted=interrupted,
            installed=board.installed,
            refreshes=board.total("refreshes"),
            recovered=board.total("recovered"),
            lost_answers=fake.recovered,
            faults=len(fake.injected),
            reauthorizations=board.total("reauthorizations"),
            survived=board.survived,
            api_calls=sum(fake.api_calls.values()),
            postponed=board.total("postponed"),
            rejected_refreshes=fake.rejected,
            expired_calls=self._expired_calls(),
        )


class _NoLive:
    """Stands in for `rich.live.Live` when output is not a terminal."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


@click.command()
@click.option(
    "--shops", type=click.IntRange(1, 100), default=5, show_default=True, help="Shops to install."
)
@click.option(
    "--lifetime",
    metavar="SECONDS",
    type=click.FloatRange(min=2),
    default=10.0,
    show_default=True,
    help="Access token lifetime in seconds (Shopify's: 3600).",
)
@click.option(
    "--duration",
    metavar="SECONDS",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds to run; the manager restarts halfway.",
)
@click.option(
    "--fault-rate",
    metavar="RATE",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Share of token requests that fail.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of faults and traffic.")
@store_options(from_env=False, default=None)
@click.option(
    "--plain/--live",
    default=None,
    help="Plain progress lines, or a live table. Default: live on a terminal.",
)
def demo(
    *,
    shops: int,
    lifetime: float,
    duration: float,
    fault_rate: float,
    seed: int,
    store: str | None,
    encryption_key: str | None,
    plain: bool | None,
) -> None:
    """Watch shoptoken keep tokens valid against a fake Shopify that fails on purpose.

    Installs SHOPS shops through the real OAuth flow against a fake Shopify
    on loopback HTTP, refreshes their short-lived tokens while an app makes
    API calls, restarts the manager halfway, and ends with figures. Exits 1
    if any API call used an expired token or any refresh was rejected.

    Uses a temporary SQLite file unless --store is given (SHOPTOKEN_STORE is
    not read: the demo never writes into your real store by accident).
    """
    if store is not None and store.lower().startswith("memory:"):
        msg = "the demo restarts its manager on the same store: memory:// cannot survive that"
        raise click.BadParameter(msg, param_hint="'--store'")
    out = console()
    live = out.is_terminal if plain is None else not plain
    settings = DemoSettings(
        shops, lifetime, duration, fault_rate, seed, store, encryption_key, live=live
    )
    report = run_trio(_main, settings, out)
    show_report(out, report)
    if not report.ok:
        click.get_current_context().exit(1)


async def _main(settings: DemoSettings, out: Console) -> Report:
    return await Demo(settings, out).run()
