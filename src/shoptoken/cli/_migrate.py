"""``shoptoken migrate``: swap stored non-expiring offline tokens for expiring pairs.

From 2027-01-01 Shopify rejects non-expiring offline tokens of public apps.
Each shop is migrated under the store's lock (when it has one) after
re-reading its token, and its new pair is saved before the next shop is
touched: the old token stops working as soon as Shopify answers. If a save
fails, the run stops there; running it again within seven days recovers
the same pair (Shopify answers a retried migration with it).
"""

from __future__ import annotations

import enum
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import attrs
import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .._errors import PersistenceError, ReauthorizationRequired, RefreshFailed, ShopTokenError
from .._keys import TokenKind
from ._display import console
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
    from collections.abc import AsyncIterator, Awaitable, Callable

    from .._keys import TokenKey
    from .._oauth._admin import ShopifyOAuth
    from .._persistence import TokenCallback
    from .._token import Token

_LOCK_TIMEOUT: Final = 30.0


class Outcome(enum.Enum):
    """What happened to one shop."""

    MIGRATED = "migrated"
    FAILED = "failed"
    SKIPPED = "skipped"
    PENDING = "would migrate"


@attrs.frozen
class Result:
    """One shop's outcome and why."""

    key: TokenKey
    outcome: Outcome
    detail: str = ""


def needs_migration(key: TokenKey, token: Token | None) -> bool:
    """Whether ``token`` is a non-expiring offline token (the kind Shopify will reject)."""
    return (
        key.kind is TokenKind.OFFLINE
        and token is not None
        and token.expires_at is None
        and token.refresh_token is None
    )


async def candidates(store: TokenCallback) -> list[TokenKey]:
    """The stored keys holding non-expiring offline tokens.

    Raises:
        click.ClickException: The store cannot list its keys.
    """
    list_keys = getattr(store, "list_keys", None)
    if list_keys is None:
        msg = "this store cannot list its keys"
        raise click.ClickException(msg)
    return [
        key
        async for key in list_keys()
        if key.kind is TokenKind.OFFLINE and needs_migration(key, await store.load_tokens(key))
    ]


@attrs.frozen
class _Handle:
    token: Token | None
    save: Callable[[Token], Awaitable[None]]


@asynccontextmanager
async def _locked(store: TokenCallback, key: TokenKey) -> AsyncIterator[_Handle]:
    """The store's cross-process lock on ``key`` if it has one, else a plain read and save."""
    locked: Callable[..., AbstractAsyncContextManager[Any]] | None = getattr(store, "locked", None)
    if locked is None:
        token = await store.load_tokens(key)

        async def save(new: Token) -> None:
            await store.save_tokens(key, new)

        yield _Handle(token, save)
        return
    async with locked(key, timeout=_LOCK_TIMEOUT) as handle:
        yield _Handle(handle.token, handle.save)


def _failure(key: TokenKey, exc: ShopTokenError) -> str:
    """Why ``key`` failed, in a few words (the table already names the shop)."""
    # Shopify refuses a revoked subject token as invalid_subject_token: like
    # invalid_grant, only a new authorization helps.
    revoked = isinstance(exc, ReauthorizationRequired) or (
        isinstance(exc, RefreshFailed) and exc.error == "invalid_subject_token"
    )
    if revoked:
        return "the token is revoked (app uninstalled?): the merchant must authorize again"
    detail = one_line(str(exc), limit=200).removeprefix(f"{key}: ")
    if isinstance(exc, RefreshFailed) and exc.transient:
        return f"transient failure, run migrate again: {detail}"
    return detail


async def migrate_one(store: TokenCallback, oauth: ShopifyOAuth, key: TokenKey) -> Result:
    """Migrate ``key`` under its lock and save the new pair before returning.

    Raises:
        PersistenceError: The new pair could not be saved (the caller stops).
    """
    async with _locked(store, key) as handle:
        if not needs_migration(key, handle.token):
            return Result(key, Outcome.SKIPPED, "no longer a non-expiring token")
        assert handle.token is not None  # noqa: S101 - needs_migration checked it
        try:
            new = await oauth.migrate_to_expiring(key.shop, handle.token)
        except ShopTokenError as exc:
            return Result(key, Outcome.FAILED, _failure(key, exc))
        try:
            await handle.save(new)
        except Exception as exc:
            msg = (
                f"{key} was migrated but saving its new pair failed ({one_line(str(exc))});"
                " run migrate again within 7 days to recover the same pair"
            )
            raise PersistenceError(msg, key=key) from exc
    return Result(key, Outcome.MIGRATED, "expiring pair saved")


async def _migrate(config: StoreConfig, creds: Credentials | None) -> list[Result]:
    async with open_cli_store(config) as store:
        keys = await candidates(store)
        if creds is None:
            return [Result(key, Outcome.PENDING) for key in keys]
        results = []
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(stderr=True),
        )
        async with open_oauth(creds) as oauth:
            with progress:
                task = progress.add_task("Migrating", total=len(keys))
                for key in keys:
                    progress.update(task, description=f"Migrating {key.shop}")
                    try:
                        results.append(await migrate_one(store, oauth, key))
                    except PersistenceError as exc:
                        results.append(Result(key, Outcome.FAILED, one_line(str(exc))))
                        untried = keys[len(results) :]
                        results += [Result(k, Outcome.SKIPPED, "the store failed") for k in untried]
                        break
                    progress.advance(task)
                progress.update(task, description="Migrated")
        return results


def _report(results: list[Result], *, dry_run: bool) -> None:
    out = console()
    if not results:
        out.print("No non-expiring offline tokens to migrate.")
        return
    styles = {
        Outcome.MIGRATED: "green",
        Outcome.FAILED: "red",
        Outcome.SKIPPED: "yellow",
        Outcome.PENDING: "cyan",
    }
    table = Table(header_style="bold")
    table.add_column("shop", no_wrap=True)
    table.add_column("result")
    table.add_column("why")
    for result in results:
        table.add_row(
            Text(result.key.shop),
            Text(result.outcome.value, style=styles[result.outcome]),
            Text(result.detail),
        )
    out.print(table)
    if dry_run:
        shops = "1 shop" if len(results) == 1 else f"{len(results)} shops"
        out.print(Text(f"{shops} would be migrated (dry run: nothing was changed)."))
        return
    counts = {outcome: sum(r.outcome is outcome for r in results) for outcome in Outcome}
    out.print(
        Text(
            f"{counts[Outcome.MIGRATED]} migrated, {counts[Outcome.FAILED]} failed,"
            f" {counts[Outcome.SKIPPED]} skipped."
        )
    )


@click.command()
@store_options()
@credential_options
@click.option(
    "--dry-run", is_flag=True, help="List the shops that would be migrated; change nothing."
)
def migrate(
    *,
    store: str,
    encryption_key: str | None,
    client_id: str | None,
    client_secret: str | None,
    fake_shopify_url: str | None,
    dry_run: bool,
) -> None:
    """Migrate stored non-expiring offline tokens to expiring ones (before 2027-01-01).

    Each new pair is saved before the next shop is migrated. Exits 1 if any
    shop failed; a transient failure is retried by running it again.
    """
    creds = None if dry_run else credentials(client_id, client_secret, fake_shopify_url)
    results = run_trio(_migrate, StoreConfig(store, encryption_key), creds)
    _report(results, dry_run=dry_run)
    if any(result.outcome is Outcome.FAILED for result in results):
        click.get_current_context().exit(1)
