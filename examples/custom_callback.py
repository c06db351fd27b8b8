"""A TokenCallback over the app's own database table, and a restart.

`AppTokenTable` keeps tokens in a table of the app's own SQLite database
(stdlib ``sqlite3``, called through ``trio.to_thread``): ``load_tokens``,
``save_tokens`` and ``delete_tokens``. A first token manager runs three
shops through several token rotations, saving each rotated pair before
using it. Then the app "restarts": a new table object and a new manager on
the same file carry on with the stored tokens, which Shopify still accepts.
Finally one shop uninstalls the app and ``forget`` deletes its row.
An hour passes per second on a fast mock clock; no token is printed.

    python examples/custom_callback.py
    python examples/custom_callback.py --db app.db    # keep the database file
"""

from __future__ import annotations

import argparse
import functools
import logging
import sqlite3
import tempfile
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio
import trio.testing

from shoptoken import (
    EventKind,
    ShopifyOAuth,
    Token,
    TokenEvent,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.testing import FakeShopify, trio_wall_clock

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

# -- Where a real app's settings go ---------------------------------------------------
# The app's credentials (Partner Dashboard > your app > Client credentials),
# read from the environment in a real app; the fake below accepts these.
CLIENT_ID = "example-app-client-id"
CLIENT_SECRET = "example-app-client-secret-not-a-real-one"
SHOPS = ("acme-outdoor", "bright-books", "cedar-coffee")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS shopify_tokens (
    token_key TEXT PRIMARY KEY,         -- str(TokenKey): "offline:acme-outdoor.myshopify.com"
    access_token TEXT NOT NULL,
    refresh_token TEXT,                 -- NULL: non-expiring or online token
    scope TEXT NOT NULL,
    expires_at INTEGER,                 -- microseconds since the epoch, UTC; NULL: never
    refresh_token_expires_at INTEGER,
    obtained_at INTEGER,                -- when it was obtained: fixes its refresh time
    associated_user_id INTEGER,         -- online tokens
    associated_user_scope TEXT,
    updated_at TEXT NOT NULL
)
"""
_COLUMNS: Final = (
    "access_token, refresh_token, scope, expires_at, refresh_token_expires_at,"
    " obtained_at, associated_user_id, associated_user_scope"
)
_UPSERT: Final = f"""
INSERT INTO shopify_tokens (token_key, {_COLUMNS}, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (token_key) DO UPDATE SET
    access_token = excluded.access_token, refresh_token = excluded.refresh_token,
    scope = excluded.scope, expires_at = excluded.expires_at,
    refresh_token_expires_at = excluded.refresh_token_expires_at,
    obtained_at = excluded.obtained_at,
    associated_user_id = excluded.associated_user_id,
    associated_user_scope = excluded.associated_user_scope,
    updated_at = excluded.updated_at
"""  # noqa: S608 - the interpolated text is our own column list; values are parameters
_SELECT: Final = f"SELECT {_COLUMNS} FROM shopify_tokens WHERE token_key = ?"  # noqa: S608 - ditto
_DELETE: Final = "DELETE FROM shopify_tokens WHERE token_key = ?"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _to_micros(when: datetime | None) -> int | None:
    # Whole microseconds since the epoch: exact (a float would round), and
    # they compare and sort in SQL.
    return None if when is None else (when - _EPOCH) // _MICROSECOND


def _from_micros(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + micros * _MICROSECOND


class AppTokenTable:
    """Shopify tokens in table ``shopify_tokens`` of the app's SQLite database.

    A `shoptoken.TokenCallback` with the optional ``delete_tokens`` (used by
    `TokenManager.forget`). Each call opens its own connection in a worker
    thread, so calls never share a connection across threads and sqlite3
    never blocks trio's thread. ``save_tokens`` commits before it returns:
    the manager hands a rotated pair out only after that.

    Args:
        path: The database file.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._ready = False

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` in a worker thread, in one committed transaction."""
        create = not self._ready

        def in_thread() -> T:
            with closing(sqlite3.connect(self._path)) as db, db:  # db: commit, or roll back
                if create:
                    db.execute(_SCHEMA)
                return work(db)

        result = await trio.to_thread.run_sync(in_thread)
        self._ready = True
        return result

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Return the stored token for ``key``, or None when there is none."""
        row = await self._run(functools.partial(_select, key=str(key)))
        if row is None:
            return None
        access, refresh, scope, expires, refresh_expires, obtained, user_id, user_scope = row
        return Token(
            access_token=access,
            refresh_token=refresh,
            scope=scope,
            expires_at=_from_micros(expires),
            refresh_token_expires_at=_from_micros(refresh_expires),
            obtained_at=_from_micros(obtained),
            associated_user_id=user_id,
            associated_user_scope=user_scope,
        )

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Store ``token`` for ``key``, replacing the whole previous pair (committed)."""
        row = (
            str(key),
            token.access_token,
            token.refresh_token,
            token.scope,
            _to_micros(token.expires_at),
            _to_micros(token.refresh_token_expires_at),
            _to_micros(token.obtained_at),
            token.associated_user_id,
            token.associated_user_scope,
            datetime.now(UTC).isoformat(timespec="seconds"),
        )
        await self._run(functools.partial(_execute, sql=_UPSERT, args=row))

    async def delete_tokens(self, key: TokenKey) -> None:
        """Delete the pair stored for ``key`` (no error when there is none)."""
        await self._run(functools.partial(_execute, sql=_DELETE, args=(str(key),)))

    async def describe(self) -> list[tuple[str, str]]:
        """Each stored key with its access token's expiry: what the demo prints (no secrets)."""
        rows = await self._run(_overview)
        return [
            (key, "never" if expires is None else f"{_from_micros(expires):%H:%M}")
            for key, expires in rows
        ]


def _select(db: sqlite3.Connection, *, key: str) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = db.execute(_SELECT, (key,)).fetchone()
    return row


def _execute(db: sqlite3.Connection, *, sql: str, args: tuple[object, ...]) -> None:
    db.execute(sql, args)


def _overview(db: sqlite3.Connection) -> list[tuple[str, int | None]]:
    sql = "SELECT token_key, expires_at FROM shopify_tokens ORDER BY token_key"
    return [(str(key), expires) for key, expires in db.execute(sql)]


# -- the demo -----------------------------------------------------------------------------


# trio's mock clock, running 3600 times faster than real time: an hour of
# token lifetimes passes in a second. Not autojump: the database calls
# run in threads, and an autojumping clock would leap ahead while they run.
SPEED: Final = 3600.0


def wall(now: float) -> str:
    """``HH:MM`` of a wall-clock time."""
    return f"{datetime.fromtimestamp(now, UTC):%H:%M}"


def rotations_printer(clock: Callable[[], float]) -> Callable[[TokenEvent], None]:
    """An event hook that prints each rotation (saved by then: persist before use)."""

    def show(event: TokenEvent) -> None:
        if event.kind is EventKind.REFRESH_SUCCEEDED:
            print(f"  {wall(clock())}  {event.key.shop} rotated its tokens")

    return show


async def use_for(tokens: TokenManager, keys: list[TokenKey], hours: float) -> None:
    """Be the app for ``hours``: a valid token for every shop, every ten minutes."""
    start = trio.current_time()
    for tick in range(1, round(hours * 6) + 1):
        for key in keys:
            await tokens.valid_token(key)
        await trio.sleep_until(start + tick * 600)  # on the ten minutes, however long the work


async def current_rows(path: Path, shopify: FakeShopify, keys: list[TokenKey]) -> int:
    """How many of ``keys`` have, in the file, the pair Shopify currently accepts."""
    table = AppTokenTable(path)  # a fresh reader: nothing cached
    current = 0
    for key in keys:
        token = await table.load_tokens(key)
        current += (
            token is not None
            and token.refresh_token is not None
            and shopify.is_valid(key.shop, token.access_token)
            and shopify.refresh_token_works(key.shop, token.refresh_token)
        )
    return current


async def print_table(table: AppTokenTable) -> None:
    """Print the table's keys and expiry times (never a token)."""
    for key, expires in await table.describe():
        print(f"    {key:45} token expires {expires}")


async def main(path: Path) -> int:
    """Run two managers in turn on the database at ``path``; return the exit status."""
    clock = trio_wall_clock()  # 2026-01-01 00:00 UTC, advancing with trio's clock
    shopify = FakeShopify(clock=clock, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    keys = [TokenKey.offline(shop) for shop in SHOPS]
    async with shopify.http_client() as http:
        # Against real Shopify: ShopifyOAuth(CLIENT_ID, CLIENT_SECRET), which
        # makes its own HTTP client. Here its requests reach the fake in process.
        oauth = ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http, clock=clock)

        show = rotations_printer(clock)
        print(f"first run: {len(keys)} shops install the app; 2 hours of API calls")
        table = AppTokenTable(path)
        async with open_token_manager(oauth, table, clock=clock, hooks=[show]) as tokens:
            for key in keys:
                # What the app's OAuth callback does when a merchant installs it.
                await tokens.put_token(key, shopify.install(key.shop))
            await use_for(tokens, keys, 2)
        saved = await current_rows(path, shopify, keys)
        print(f"  stopped at {wall(clock())}: {saved} of {len(keys)} rows hold the current pair")
        await print_table(table)

        print("\nrestart: a new AppTokenTable and a new manager on the same file")
        refreshes_before = sum(shopify.refreshes.values())
        table = AppTokenTable(path)
        async with open_token_manager(oauth, table, clock=clock, hooks=[show]) as tokens:
            loaded = {key: await tokens.valid_token(key) for key in keys}
            accepted = sum(shopify.is_valid(k.shop, t.access_token) for k, t in loaded.items())
            refreshed = sum(shopify.refreshes.values()) - refreshes_before
            print(
                f"  {len(loaded)} tokens loaded, {accepted} accepted by Shopify, "
                f"{refreshed} refreshes needed to resume; 1 more hour of API calls"
            )
            await use_for(tokens, keys, 1)
            gone = keys[-1]
            shopify.revoke(gone.shop)  # the merchant uninstalled the app (the webhook says so)
            await tokens.forget(gone)  # stop refreshing it, and delete its row
            print(f"  {wall(clock())}  {gone.shop} uninstalled the app: forget() deleted its row")
        kept = keys[:-1]
        saved_again = await current_rows(path, shopify, kept)
        print(
            f"  stopped at {wall(clock())}: {saved_again} of {len(kept)} rows hold the current pair"
        )
        await print_table(table)

    rows = [key for key, _ in await table.describe()]
    rotations = sum(shopify.refreshes.values())
    print(
        f"\n{rotations} rotations, each saved before use; "
        f"{shopify.rejected} refresh tokens rejected"
    )
    ok = (
        saved == accepted == len(keys)
        and refreshed == 0
        and saved_again == len(kept)
        and rows == sorted(str(key) for key in kept)
        and shopify.rejected == 0
    )
    return 0 if ok else 1


def run() -> int:
    """Parse the command line and run the demo on a fast mock clock."""
    # The library never configures logging; this app shows errors only.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", type=Path, help="database file to use (a fresh one by default)")
    args = parser.parse_args()
    mock = trio.testing.MockClock(rate=SPEED)
    if args.db is not None:
        if args.db.exists():
            parser.error(f"{args.db} exists; name a new file")
        return trio.run(main, args.db, clock=mock)
    with tempfile.TemporaryDirectory() as scratch:
        return trio.run(main, Path(scratch) / "app.db", clock=mock)


if __name__ == "__main__":
    raise SystemExit(run())
