"""Options every command shares: the store, the app's credentials, the refresh policy.

Secrets (the client secret, the encryption key, a database password in the
store URL) are read from options or ``SHOPTOKEN_*`` environment variables
and never echoed: not in help defaults, errors or output.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import attrs
import click
import httpx
import trio
from click.core import ParameterSource

from .._core._policy import RefreshPolicy
from .._oauth._admin import ShopifyOAuth
from ..stores import store_from_url
from ._errors import one_line

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from .._persistence import TokenCallback

F = TypeVar("F", bound="Callable[..., Any]")

DEFAULT_STORE: Final = "sqlite:///shoptoken.db"
#: Where the tests (and other programs' tests) point the command at a
#: ``shoptoken fake-shopify``: every Shopify URL is then sent to it.
FAKE_URL_ENV: Final = "SHOPTOKEN_FAKE_SHOPIFY_URL"
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost"})
_HTTP_TIMEOUT: Final = 30.0


def _compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


# -- options shared with the group ------------------------------------------------------


def _inherit(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A shared option's value: typed after the command, else typed before it, else as read.

    ``shoptoken --store URL status`` and ``shoptoken status --store URL`` both
    work; an option typed on the command line beats its environment variable.
    """
    name = param.name
    if name is None or ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
        return value
    parent = ctx.parent
    while parent is not None:
        if parent.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            return parent.params[name]
        parent = parent.parent
    return value


def shared_options(function: F) -> F:
    """The group's copies of the shared options: store, encryption key, client id and secret.

    Each is handed to the command (see `_inherit`); a command without that
    option ignores it. Their environment variables are read by the commands.
    """
    return _compose(
        click.option("--store", metavar="URL", help="Token store (SHOPTOKEN_STORE)."),
        click.option(
            "--encryption-key",
            metavar="KEYS",
            help="kid:BASE64 keys of an encrypted store (SHOPTOKEN_ENCRYPTION_KEY).",
        ),
        click.option(
            "--client-id", metavar="ID", help="The app's client id (SHOPTOKEN_CLIENT_ID)."
        ),
        click.option(
            "--client-secret",
            metavar="SECRET",
            help="The app's client secret (prefer SHOPTOKEN_CLIENT_SECRET).",
        ),
    )(function)


# -- the store ---------------------------------------------------------------------


@attrs.frozen
class StoreConfig:
    """Which store to open, and the key to decrypt it with.

    Attributes:
        url: The store URL (may hold a database password: never shown).
        encryption_key: ``kid:BASE64[,kid:BASE64...]`` keys, or None.
    """

    url: str = attrs.field(repr=False)
    encryption_key: str | None = attrs.field(default=None, repr=False)

    def shown(self) -> str:
        """The URL without password, query or user: safe to print."""
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """``url`` reduced to what identifies the store: no password, no parameters."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL, or None for other stores."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        return None
    return unquote(parts.path[1:]) or None


def store_options(
    *, from_env: bool = True, default: str | None = DEFAULT_STORE
) -> Callable[[F], F]:
    """``--store URL`` and ``--encryption-key KEYS`` (arguments ``store``, ``encryption_key``).

    Args:
        from_env: Read ``SHOPTOKEN_STORE`` too (the demo and the fake do not:
            they must never write into a real store by accident).
        default: The URL when none is given.
    """
    where = "SHOPTOKEN_STORE" if from_env else None
    return _compose(
        click.option(
            "--store",
            metavar="URL",
            envvar=where,
            show_envvar=from_env,
            default=default,
            show_default=default is not None,
            callback=_inherit,
            help="Token store: sqlite:///PATH, postgresql://..., memory://.",
        ),
        click.option(
            "--encryption-key",
            metavar="KEYS",
            envvar="SHOPTOKEN_ENCRYPTION_KEY",
            show_envvar=True,
            default=None,
            callback=_inherit,
            help="Encrypt tokens at rest with these kid:BASE64 keys (prefer the variable).",
        ),
    )


def _encrypted(store: TokenCallback, keys: str) -> TokenCallback:
    try:
        from ..stores import EncryptedStore  # noqa: PLC0415 - needs the optional crypto extra
    except ImportError:
        msg = "--encryption-key needs the crypto extra: pip install 'shoptoken[crypto]'"
        raise click.ClickException(msg) from None
    if isinstance(store, EncryptedStore):
        msg = "the store URL already sets encrypt_key_env: give the key only once"
        raise click.UsageError(msg)
    try:
        return EncryptedStore(store, EncryptedStore.parse_keys(keys))
    except ValueError as exc:  # the message never contains key material
        raise click.BadParameter(
            one_line(str(exc)), param_hint="'--encryption-key' / SHOPTOKEN_ENCRYPTION_KEY"
        ) from None


@asynccontextmanager
async def open_cli_store(
    config: StoreConfig, *, create: bool = False
) -> AsyncIterator[TokenCallback]:
    """Open the configured store, and close it on the way out.

    Args:
        config: The store options.
        create: Create a missing SQLite file (the demo, the fake's installs);
            otherwise a missing file is an error, not a new empty store.

    Raises:
        click.BadParameter: A malformed URL or key.
        click.ClickException: A missing file or a missing optional package.
    """
    path = sqlite_path(config.url)
    if not create and path is not None and not await trio.Path(path).exists():
        msg = f"no token store at {path} (set --store or SHOPTOKEN_STORE)"
        raise click.ClickException(msg)
    try:
        store: TokenCallback = store_from_url(config.url)
    except ValueError as exc:  # the message never repeats the URL
        raise click.BadParameter(one_line(str(exc)), param_hint="'--store'") from None
    except ImportError as exc:
        msg = f"this store needs a package that is not installed ({exc.name or exc})"
        raise click.ClickException(
            f"{msg}: pip install 'shoptoken[postgres]' or 'shoptoken[crypto]'"
        ) from None
    try:
        if config.encryption_key:
            store = _encrypted(store, config.encryption_key)
        yield store
    finally:
        aclose = getattr(store, "aclose", None)
        if aclose is not None:
            with trio.CancelScope(shield=True):
                await aclose()


# -- the app's credentials ------------------------------------------------------------


@attrs.frozen
class Credentials:
    """The app's client credentials, and where its Shopify requests go.

    Attributes:
        client_id: The app's client id (API key).
        client_secret: Its secret; never shown.
        fake_port: Send every Shopify request to a ``shoptoken fake-shopify``
            on this 127.0.0.1 port instead of Shopify (tests only).
    """

    client_id: str
    client_secret: str = attrs.field(repr=False)
    fake_port: int | None = None


def credential_options(function: F) -> F:
    """``--client-id``, ``--client-secret`` and the hidden ``--fake-shopify-url``."""
    return _compose(
        click.option(
            "--client-id",
            metavar="ID",
            envvar="SHOPTOKEN_CLIENT_ID",
            show_envvar=True,
            callback=_inherit,
            help="The app's client id (API key).",
        ),
        click.option(
            "--client-secret",
            metavar="SECRET",
            envvar="SHOPTOKEN_CLIENT_SECRET",
            show_envvar=True,
            callback=_inherit,
            help="The app's client secret (prefer the variable: options show up in ps).",
        ),
        click.option("--fake-shopify-url", envvar=FAKE_URL_ENV, hidden=True, default=None),
    )(function)


def credentials(
    client_id: str | None, client_secret: str | None, fake_url: str | None
) -> Credentials:
    """Check the credential options.

    Raises:
        click.UsageError: Either credential is missing, or the fake's URL is
            not a loopback ``http://127.0.0.1:PORT``.
    """
    if not client_id or not client_secret:
        missing = " and ".join(
            name
            for name, value in (
                ("SHOPTOKEN_CLIENT_ID", client_id),
                ("SHOPTOKEN_CLIENT_SECRET", client_secret),
            )
            if not value
        )
        msg = f"missing client credentials: set {missing} (or --client-id/--client-secret)"
        raise click.UsageError(msg)
    return Credentials(client_id, client_secret, _fake_port(fake_url))


def _fake_port(url: str | None) -> int | None:
    if not url:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or parts.hostname not in _LOOPBACK_HOSTS or port is None:
        msg = f"{FAKE_URL_ENV} must be http://127.0.0.1:PORT (a shoptoken fake-shopify)"
        raise click.UsageError(msg)
    return port


@asynccontextmanager
async def open_oauth(creds: Credentials) -> AsyncIterator[ShopifyOAuth]:
    """A `ShopifyOAuth` for the app, talking to Shopify (or to the fake, in tests)."""
    if creds.fake_port is None:
        http = httpx.AsyncClient(timeout=_HTTP_TIMEOUT)
    else:
        from ..testing import LoopbackTransport  # noqa: PLC0415 - only when testing

        click.echo(
            f"shoptoken: Shopify requests go to the fake at http://127.0.0.1:{creds.fake_port}"
            f" ({FAKE_URL_ENV})",
            err=True,
        )
        http = httpx.AsyncClient(
            transport=LoopbackTransport(creds.fake_port), timeout=_HTTP_TIMEOUT
        )
    async with http, ShopifyOAuth(creds.client_id, creds.client_secret, http=http) as oauth:
        yield oauth


# -- the refresh policy ------------------------------------------------------------------


def policy_options(function: F) -> F:
    """``--refresh-before``, ``--jitter`` and ``--skew`` (seconds)."""
    seconds = click.FloatRange(min=0)
    return _compose(
        click.option(
            "--refresh-before",
            metavar="SECONDS",
            type=seconds,
            default=300.0,
            show_default=True,
            help="Refresh this many seconds before a token expires.",
        ),
        click.option(
            "--jitter",
            metavar="SECONDS",
            type=seconds,
            default=60.0,
            show_default=True,
            help="Spread each key's refresh time over this many more seconds.",
        ),
        click.option(
            "--skew",
            metavar="SECONDS",
            type=seconds,
            default=60.0,
            show_default=True,
            help="Never serve a token in its last SKEW seconds.",
        ),
    )(function)


def build_policy(**fields: Any) -> RefreshPolicy:
    """A `RefreshPolicy` from option values.

    Raises:
        click.BadParameter: The values do not make a valid policy.
    """
    try:
        return RefreshPolicy(**fields)
    except ValueError as exc:
        raise click.BadParameter(one_line(str(exc))) from None
