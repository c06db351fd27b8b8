"""One run of ``shoptoken demo``: the fake, the shops, the managers, the app and the display.

See `shoptoken.cli._demo` for what it shows.
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
from ._demo_report import Report
from ._display import token_state
from ._options import StoreConfig, open_cli_store, redact_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from rich.console import Console
    from rich.table import Table

    from .._core._manager import TokenManager
    from .._core._policy import RefreshPolicy
    from .._oauth._admin import ShopifyOAuth

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
                    if not temporary:
                        self._say(
                            f"The demo writes {len(self.keys)} demo shops into that store"
                            " and deletes them at the end."
                        )
                    api = server.client(timeout=10)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            self._stop_on_interrupt, interrupts, nursery.cancel_scope
                        )
                        with self._live_display():
                            await self._phases(config, oauth, api)
                        nursery.cancel_scope.cancel()
            if not temporary:
                await self._remove_demo_shops(config, where)
        return self._report(interrupted=self._interrupted)

    async def _remove_demo_shops(self, config: StoreConfig, where: str) -> None:
        """Delete the demo's keys from a store the user named: it keeps none of them."""
        async with open_cli_store(config) as store:
            delete = getattr(store, "delete_tokens", None)
            if delete is None:
                self._say(
                    f"This store cannot delete keys: the {len(self.keys)} demo shops"
                    f" ({self.keys[0]}...) stay in {where}."
                )
                return
            for key in self.keys:
                await delete(key)
        self._say(f"Deleted the {len(self.keys)} demo shops from {where}.")

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
                response = await api.get(url, auth=tokens.auth(key))
            except ReauthorizationRequired:
                await self._reauthorize(tokens, key, oauth)
            except ShopTokenError:
                row.postponed += 1  # expired and its refresh failed: the manager retries
            except httpx.HTTPError as exc:
                row.api_failed(f"API call: {type(exc).__name__}")
            else:
                if response.is_success:
                    row.api_succeeded()
                else:
                    row.api_failed(f"API call: HTTP {response.status_code}")

    async def _reauthorize(self, tokens: TokenManager, key: TokenKey, oauth: ShopifyOAuth) -> None:
        """Send the merchant through the flow again, as an app must."""
        try:
            token = await self.fake.authorize(oauth, key.shop, SCOPES)
        except ShopTokenError:
            return  # a fault hit the code exchange: try again on the next call
        await tokens.put_token(key, token)
        self.board.rows[key].reauthorized()

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
                expired, revoked = self._dead_calls()
                click.echo(
                    plain_line(
                        self.board,
                        elapsed=now - self._started,
                        expired_calls=expired,
                        revoked_calls=revoked,
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
        expired, revoked = self._dead_calls()
        title = (
            f"shoptoken demo: {settings.shops} shops, {settings.lifetime:g}s tokens,"
            f" {settings.fault_rate:.0%} of token requests fail (seed {settings.seed})"
        )
        caption = "\n".join(
            [
                *self._notes,
                (
                    f"t={elapsed:.1f}s of {settings.duration:g}s, phase {self.board.phase}/2;"
                    f" API calls with an expired token: {expired}, a revoked token: {revoked}"
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

    def _dead_calls(self) -> tuple[int, int]:
        """API calls Shopify refused: made with an expired token, and with a revoked one."""
        fake = self.fake
        return sum(fake.api_calls_expired.values()), sum(fake.api_calls_revoked.values())

    def _report(self, *, interrupted: bool) -> Report:
        board, fake = self.board, self.fake
        expired, revoked = self._dead_calls()
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
            expired_calls=expired,
            revoked_calls=revoked,
            unknown_calls=sum(fake.api_calls_rejected.values()) - expired - revoked,
            answers_lost=fake.grants_lost,
            throttled=fake.throttled,
        )


class _NoLive:
    """Stands in for `rich.live.Live` when output is not a terminal."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None
