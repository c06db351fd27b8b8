"""``shoptoken refresh KEY`` and ``shoptoken forget KEY``: one key at a time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from .._core._manager import open_token_manager
from .._keys import TokenKey, TokenKind
from ._display import format_duration
from ._errors import one_line, run_trio
from ._options import (
    Credentials,
    StoreConfig,
    credential_options,
    credentials,
    open_cli_store,
    open_oauth,
    store_options,
)

if TYPE_CHECKING:
    from .._token import Token


def parse_key(_ctx: click.Context, _param: click.Parameter, value: str) -> TokenKey:
    """Read KEY as `TokenKey.parse` does: ``offline:SHOP``, ``online:SHOP:USER``, or a shop.

    Raises:
        click.BadParameter: A malformed key (the message names the forms).
    """
    try:
        return TokenKey.parse(value)
    except ValueError as exc:
        raise click.BadParameter(one_line(str(exc))) from None


def _admin_key(key: TokenKey) -> TokenKey:
    if key.kind is TokenKind.CUSTOMER:
        msg = (
            "customer tokens are refreshed by your app's CustomerAccountOAuth;"
            " the command handles offline and online keys"
        )
        raise click.BadParameter(msg, param_hint="'KEY'")
    return key


async def _refresh(config: StoreConfig, creds: Credentials, key: TokenKey) -> Token:
    async with (
        open_cli_store(config) as store,
        open_oauth(creds) as oauth,
        open_token_manager(oauth, store) as tokens,
    ):
        if key.mintable:
            return await tokens.refresh_token(key)  # a client-credentials key: minted anew
        current = await tokens.fetch_token(key)
        if not current.refreshable:
            what = "a non-expiring token" if current.expires_at is None else "no refresh token"
            hint = "run `shoptoken migrate`" if current.expires_at is None else "re-authorize"
            msg = f"{key} has {what}: it cannot be refreshed ({hint})"
            raise click.ClickException(msg)
        return await tokens.refresh_token(key)


@click.command()
@click.argument("key", callback=parse_key)
@store_options()
@credential_options
def refresh(
    *,
    key: TokenKey,
    store: str,
    encryption_key: str | None,
    client_id: str | None,
    client_secret: str | None,
    fake_shopify_url: str | None,
) -> None:
    """Refresh KEY now and save the new pair (e.g. offline:my-store.myshopify.com).

    The decision is taken under the store's lock: if another process has
    just refreshed the key, its pair is kept instead of refreshing twice.
    """
    creds = credentials(client_id, client_secret, fake_shopify_url)
    token = run_trio(_refresh, StoreConfig(store, encryption_key), creds, _admin_key(key))
    expires = token.expires_at
    when = "never" if expires is None else format_duration(expires.timestamp() - time.time())
    at = "" if expires is None else f" (at {expires:%Y-%m-%d %H:%M:%S} UTC)"
    click.echo(f"Refreshed {key}: the new token expires in {when}{at}.")


async def _forget(config: StoreConfig, key: TokenKey) -> None:
    async with open_cli_store(config) as store:
        delete = getattr(store, "delete_tokens", None)
        if delete is None:
            msg = "this store cannot delete keys"
            raise click.ClickException(msg)
        if await store.load_tokens(key) is None:
            msg = f"no token stored for {key}"
            raise click.ClickException(msg)
        await delete(key)


@click.command()
@click.argument("key", callback=parse_key)
@store_options()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget(*, key: TokenKey, store: str, encryption_key: str | None, yes: bool) -> None:
    """Delete KEY's tokens from the store (after the app was uninstalled).

    Nothing is sent to Shopify: the app stays installed until the merchant
    uninstalls it, and a running `shoptoken run` stops refreshing the key
    at its next refresh.
    """
    if not yes:
        click.confirm(
            f"Delete the tokens of {key}? The shop must authorize the app again to get new ones",
            abort=True,
        )
    run_trio(_forget, StoreConfig(store, encryption_key), key)
    click.echo(f"Forgot {key}: its tokens are deleted from the store.")
