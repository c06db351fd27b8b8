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
  expired token, and apart those made with a revoked one (replaced by a
  rotation whose answer may have been lost);
- halfway, the manager is stopped and a new one opens the same store: the
  tokens survive the restart;
- with ``--store``, the demo's shops are deleted from that store at the end.

It ends with figures, and exits 1 if any API call used an expired or revoked
token, Shopify rejected any refresh, or a token did not survive the restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ._demo_plan import DemoSettings
from ._demo_report import Report, show_report
from ._demo_run import Demo
from ._display import console
from ._errors import run_trio
from ._options import store_options

if TYPE_CHECKING:
    from rich.console import Console


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
    if any API call used an expired or revoked token, any refresh was
    rejected, or a token was lost in the restart.

    Uses a temporary SQLite file unless --store is given (SHOPTOKEN_STORE is
    not read: the demo never writes into your real store by accident); the
    demo shops written into a --store are deleted from it at the end.
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
