"""``shoptoken fake-shopify``: serve FakeShopify over HTTP for other programs' tests.

The fake answers Shopify's OAuth endpoints and a little Admin API for any
``*.myshopify.com`` host named in the ``Host`` header. Its client id and
secret are test values, not secrets: they are printed, since a client needs
them. Tokens of ``--install``ed shops go into the store and are never printed.
"""

from __future__ import annotations

import signal
import socket
from functools import partial
from typing import TYPE_CHECKING, Any, Final, cast

import attrs
import click
import trio

from .._errors import InvalidShopDomain
from .._keys import TokenKey, normalize_shop
from ..testing import FakeShopify, FaultPlan
from ._errors import run_trio
from ._options import FAKE_URL_ENV, StoreConfig, open_cli_store, store_options

if TYPE_CHECKING:
    from collections.abc import Sequence

#: The fake's built-in secret: a published test value, safe to print.
_TEST_SECRET: Final = str(attrs.fields(FakeShopify).client_secret.default)


@attrs.frozen
class FakeSettings:
    """The fake-shopify options."""

    host: str
    port: int
    installs: tuple[str, ...]
    legacy: tuple[str, ...]
    store: StoreConfig
    lifetime: float
    fault_rate: float
    seed: int
    latency: float
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)


def _shops(values: Sequence[str], option: str) -> tuple[str, ...]:
    try:
        return tuple(normalize_shop(value) for value in values)
    except InvalidShopDomain as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_address(host: str, port: int) -> None:
    """Fail early, in one line, if ``host:port`` cannot be listened on.

    (hypercorn would raise too, but leave its socket open behind it.)

    Raises:
        click.ClickException: The host does not resolve or the port is taken.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        msg = f"cannot listen on {_bind(host, port)}: {exc.strerror or exc}"
        raise click.ClickException(msg) from None


def build_fake(settings: FakeSettings) -> FakeShopify:
    """The fake the options describe."""
    fields: dict[str, Any] = {"access_lifetime": settings.lifetime, "latency": settings.latency}
    if settings.client_id:
        fields["client_id"] = settings.client_id
    if settings.client_secret:
        fields["client_secret"] = settings.client_secret
    fake = FakeShopify(**fields)
    if settings.fault_rate:
        fake.faults = FaultPlan(rate=settings.fault_rate, seed=settings.seed)
    return fake


async def _install(fake: FakeShopify, settings: FakeSettings) -> list[str]:
    """Install the shops and save their tokens to the store; return what to say."""
    done = []
    async with open_cli_store(settings.store, create=True) as store:
        create = getattr(store, "create_schema", None)
        if create is not None:
            await create()
        for shop in settings.installs:
            key = TokenKey.offline(shop)
            await store.save_tokens(key, fake.install(shop))
            done.append(f"installed {key} (expiring {settings.lifetime:g}s tokens)")
        for shop in settings.legacy:
            key = TokenKey.offline(shop)
            await store.save_tokens(key, fake.install_non_expiring(shop))
            done.append(f"installed {key} (a non-expiring token)")
    return done


def _banner(fake: FakeShopify, url: str, port: int, settings: FakeSettings) -> list[str]:
    # The fake's built-in credentials are published test values; credentials
    # given on the command line might be real ones, so they are not echoed.
    secret = (
        fake.client_secret
        if fake.client_secret == _TEST_SECRET
        else "<the --client-secret you gave>"
    )
    lines = [
        f"FakeShopify is listening on {url}",
        f"  client id:     {fake.client_id}",
        f"  client secret: {secret}",
    ]
    if settings.installs or settings.legacy:
        lines.append(f"  store:         {settings.store.shown()}")
    lines += [
        "Point shoptoken commands at it with:",
        f"  export {FAKE_URL_ENV}=http://127.0.0.1:{port}",
        f"  export SHOPTOKEN_CLIENT_ID={fake.client_id}",
        f"  export SHOPTOKEN_CLIENT_SECRET={secret}",
        (
            "Python tests: httpx.AsyncClient(transport="
            f"shoptoken.testing.LoopbackTransport({port})) keeps https://SHOP.myshopify.com"
            " URLs and sends them here."
        ),
        "Press Ctrl-C to stop.",
    ]
    return lines


async def serve_fake(settings: FakeSettings) -> None:
    """Serve the fake until SIGINT or SIGTERM."""
    from hypercorn.config import Config  # noqa: PLC0415 - optional extra, loaded on use
    from hypercorn.trio import serve  # noqa: PLC0415 - optional extra, loaded on use

    fake = build_fake(settings)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        installed = await _install(fake, settings) if settings.installs or settings.legacy else []
        config = Config()
        config.bind = [_bind(settings.host, settings.port)]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1.0
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            # hypercorn's ASGI types are TypedDicts; the fake's are plain mappings.
            app = cast("Any", fake.asgi_app())
            binds: list[str] = await nursery.start(
                partial(serve, app, config, shutdown_trigger=shutdown.wait)
            )
            url = binds[0]
            port = int(url.rsplit(":", 1)[1])
            for line in [*installed, *_banner(fake, url, port, settings)]:
                click.echo(line)
            async for _ in signals:
                break
            shutdown.set()
    click.echo("FakeShopify stopped.")


@click.command("fake-shopify")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on; 0 picks a free one (printed).",
)
@click.option(
    "--install",
    "installs",
    multiple=True,
    metavar="SHOP",
    help="Install the app on SHOP and save its expiring tokens in --store (repeatable).",
)
@click.option(
    "--install-non-expiring",
    "legacy",
    multiple=True,
    metavar="SHOP",
    help="Install SHOP with a legacy non-expiring token, to test `migrate` (repeatable).",
)
@store_options(from_env=False)
@click.option(
    "--lifetime",
    metavar="SECONDS",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Access token lifetime in seconds.",
)
@click.option(
    "--fault-rate",
    metavar="RATE",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of token requests that fail.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the faults.")
@click.option(
    "--latency",
    metavar="SECONDS",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds every request takes.",
)
@click.option("--client-id", default=None, help="Client id the fake accepts (default: its own).")
@click.option(
    "--client-secret", default=None, help="Client secret the fake accepts (default: its own)."
)
def fake_shopify(
    *,
    host: str,
    port: int,
    installs: tuple[str, ...],
    legacy: tuple[str, ...],
    store: str,
    encryption_key: str | None,
    lifetime: float,
    fault_rate: float,
    seed: int,
    latency: float,
    client_id: str | None,
    client_secret: str | None,
) -> None:
    """Serve a fake Shopify (OAuth and a little Admin API) until Ctrl-C, for tests.

    Requests must name the shop in the Host header (https://SHOP.myshopify.com
    URLs sent through LoopbackTransport, or SHOPTOKEN_FAKE_SHOPIFY_URL for the
    shoptoken commands). --store is written only with --install (and
    SHOPTOKEN_STORE is not read: the fake never writes into a real store).
    """
    check_address(host, port)
    settings = FakeSettings(
        host=host,
        port=port,
        installs=_shops(installs, "--install"),
        legacy=_shops(legacy, "--install-non-expiring"),
        store=StoreConfig(store, encryption_key),
        lifetime=lifetime,
        fault_rate=fault_rate,
        seed=seed,
        latency=latency,
        client_id=client_id,
        client_secret=client_secret,
    )
    run_trio(serve_fake, settings)
