"""``shoptoken status``: every stored key, its expiries and state. Never a secret."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from ._display import STYLES, State, console, format_duration, seconds_until, token_state
from ._errors import run_trio
from ._options import StoreConfig, build_policy, open_cli_store, policy_options, store_options

if TYPE_CHECKING:
    from .._core._policy import RefreshPolicy
    from .._keys import TokenKey
    from .._persistence import TokenCallback
    from .._token import Token


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def describe(key: TokenKey, token: Token, now: float, policy: RefreshPolicy) -> dict[str, Any]:
    """One key's row: what is known about its token, without either secret."""
    expires_in = seconds_until(_epoch(token.expires_at), now)
    refresh_in = seconds_until(_epoch(token.refresh_token_expires_at), now)
    return {
        "key": str(key),
        "shop": key.shop,
        "kind": key.kind.value,
        "subject": key.subject,
        "state": token_state(token, key, now, policy).value,
        "scope": token.scope,
        "refreshable": token.refreshable,
        "expires_at": _iso(token.expires_at),
        "expires_in": None if expires_in is None else round(expires_in, 3),
        "refresh_token_expires_at": _iso(token.refresh_token_expires_at),
        "refresh_token_expires_in": None if refresh_in is None else round(refresh_in, 3),
    }


async def collect(config: StoreConfig, policy: RefreshPolicy) -> list[dict[str, Any]]:
    """Describe every key in the store, in the store's order.

    Raises:
        click.ClickException: The store cannot list its keys.
    """
    async with open_cli_store(config) as store:
        keys = await _keys(store)
        now = time.time()
        rows = []
        for key in keys:
            token = await store.load_tokens(key)
            if token is not None:  # deleted while we listed
                rows.append(describe(key, token, now, policy))
        return rows


async def _keys(store: TokenCallback) -> list[TokenKey]:
    list_keys = getattr(store, "list_keys", None)
    if list_keys is None:
        msg = "this store cannot list its keys"
        raise click.ClickException(msg)
    return [key async for key in list_keys()]


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=None, header_style="bold")
    table.add_column("key", no_wrap=True)
    table.add_column("kind")
    table.add_column("expires in", justify="right")
    table.add_column("refresh token expires in", justify="right")
    table.add_column("state")
    for row in rows:
        state = State(row["state"])
        table.add_row(
            Text(row["key"]),
            row["kind"],
            format_duration(row["expires_in"]),
            format_duration(row["refresh_token_expires_in"]) if row["refreshable"] else "-",
            Text(state.value, style=STYLES[state]),
        )
    return table


def _totals(rows: list[dict[str, Any]]) -> str:
    counts = {state: sum(row["state"] == state.value for row in rows) for state in State}
    parts = [f"{count} {state.value}" for state, count in counts.items() if count]
    noun = "key" if len(rows) == 1 else "keys"
    return f"{len(rows)} {noun}: " + ", ".join(parts)


@click.command()
@store_options()
@policy_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def status(
    *,
    store: str,
    encryption_key: str | None,
    refresh_before: float,
    jitter: float,
    skew: float,
    as_json: bool,
) -> None:
    """Show every stored key: kind, expiries and state. Never shows a token.

    States: fresh, stale (due for refresh), expired (refreshable), needs
    re-auth (refresh token expired, or an expired token that cannot be
    refreshed), non-expiring (a legacy token: run `shoptoken migrate`).
    """
    policy = build_policy(refresh_before=refresh_before, jitter=jitter, skew=skew)
    rows = run_trio(collect, StoreConfig(store, encryption_key), policy)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    out = console()
    if not rows:
        out.print(Text(f"No tokens in {StoreConfig(store).shown()}."))
        return
    out.print(_table(rows))
    out.print(Text(_totals(rows)))
