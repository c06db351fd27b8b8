"""Migrate a fleet's non-expiring offline tokens to expiring ones before 2027-01-01.

From 1 January 2027 Shopify rejects the non-expiring offline tokens of public
apps. This job walks every key of a `SQLiteStore`, and trades each
non-expiring offline token for an expiring pair
(``oauth.migrate_to_expiring``, a token exchange), a few shops at a time. Each
new pair is saved at once through the token manager (``put_token``), which
then keeps it fresh; the old token is dead from that moment. A lost answer is
retried with the same old token, which Shopify answers with the same pair.
Shops that uninstalled the app cannot be migrated: they are reported, and
the job carries on. A second run finds nothing left to do, and after the
deadline every migrated shop still works. It takes about a second; no
token is printed.

    python examples/migrate_fleet.py
"""

from __future__ import annotations

import enum
import functools
import logging
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import attrs
import trio

from shoptoken import (
    ReauthorizationRequired,
    RefreshFailed,
    ShopifyOAuth,
    ShopTokenError,
    TokenKey,
    TokenKind,
    TokenManager,
    open_token_manager,
)
from shoptoken.stores import SQLiteStore
from shoptoken.testing import FakeShopify, Fault

# -- Where a real app's settings go ---------------------------------------------------
# The app's credentials (Partner Dashboard > your app > Client credentials); a
# real job reads them from its environment. The fake Shopify accepts these.
CLIENT_ID = "example-app-client-id"
CLIENT_SECRET = "example-app-client-secret-not-a-real-one"
# The store holding the fleet: the app's SQLiteStore file, or a PostgresStore
# (shoptoken.stores.store_from_url names either). The demo makes a scratch file.
CONCURRENCY = 4  # migrations in flight at once: stay well under Shopify's rate limits
ATTEMPTS = 3  # per shop and run, for transient failures (network, 5xx, 429)
RETRY_DELAY = 0.5  # seconds before the second attempt, doubled for each further one
DEADLINE: Final = datetime(2027, 1, 1, tzinfo=UTC)

# The demo's fleet: legacy installs, two of which have since uninstalled the
# app, and one shop installed recently with expiring tokens already.
LEGACY = (
    "acme-outdoor",
    "bright-books",
    "cedar-coffee",
    "delta-denim",
    "ember-candles",
    "fjord-knits",
    "granite-gear",
)
UNINSTALLED = ("harbor-tea", "indigo-inks")
EXPIRING = ("juniper-jams",)
SHOPS = LEGACY + UNINSTALLED + EXPIRING


class Result(enum.Enum):
    """What a run did with one key."""

    MIGRATED = "migrated"
    ALREADY_EXPIRING = "already expiring"
    REAUTHORIZE = "revoked: the merchant must authorize the app again"
    RETRY = "failed: retry on the next run"


@attrs.frozen(order=True)
class Outcome:
    """One key's result, with a note."""

    key: str
    result: Result = attrs.field(order=False)
    note: str = attrs.field(default="", order=False)


async def migrate_key(
    oauth: ShopifyOAuth, tokens: TokenManager, store: SQLiteStore, key: TokenKey
) -> Outcome:
    """Migrate one offline key if it holds a non-expiring token."""
    old = await store.load_tokens(key)
    if old is None or old.refresh_token is not None:
        return Outcome(str(key), Result.ALREADY_EXPIRING)
    failure = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            new = await oauth.migrate_to_expiring(key.shop, old)
        except ReauthorizationRequired:
            return Outcome(str(key), Result.REAUTHORIZE)
        except RefreshFailed as exc:
            if exc.error == "invalid_subject_token":
                # The old token is revoked (the app was uninstalled) or unknown.
                return Outcome(str(key), Result.REAUTHORIZE)
            if not exc.transient:
                return Outcome(str(key), Result.RETRY, f"HTTP {exc.status} {exc.error}")
            # Safe to retry with the same old token: if Shopify did migrate it,
            # it answers again with the same pair (for seven days).
            failure = "no answer" if exc.status is None else f"HTTP {exc.status}"
            await trio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
            continue
        await tokens.put_token(key, new)  # save at once: the old token no longer works
        note = f"on attempt {attempt}, after {failure}" if attempt > 1 else ""
        return Outcome(str(key), Result.MIGRATED, note)
    return Outcome(str(key), Result.RETRY, failure)


async def migrate_fleet(
    oauth: ShopifyOAuth, tokens: TokenManager, store: SQLiteStore
) -> list[Outcome]:
    """One run of the job over every offline key in ``store``; the outcomes by key."""
    keys = [key async for key in store.list_keys() if key.kind is TokenKind.OFFLINE]
    pending = iter(keys)  # shared by the workers: each key is taken once
    outcomes: list[Outcome] = []

    async def worker() -> None:
        for key in pending:
            outcome = await migrate_key(oauth, tokens, store, key)
            outcomes.append(outcome)

    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker)
    return sorted(outcomes)


def summary(outcomes: list[Outcome]) -> str:
    """``7 migrated, 1 already expiring, ...``."""
    counts = Counter(outcome.result for outcome in outcomes)
    return (
        f"{counts[Result.MIGRATED]} migrated, {counts[Result.ALREADY_EXPIRING]} already "
        f"expiring, {counts[Result.REAUTHORIZE]} need re-authorization, "
        f"{counts[Result.RETRY]} to retry"
    )


@attrs.define
class WallClock:
    """The demo's wall clock: real time, but set an hour before the deadline.

    Shopify (the fake), the OAuth client and the manager all date tokens by
    it. `skip` jumps it ahead, standing in for the time a real job waits.
    """

    offset: float

    def __call__(self) -> float:
        """Now, in epoch seconds."""
        return time.time() + self.offset

    def skip(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead."""
        self.offset += seconds


def wall(now: float) -> str:
    """``YYYY-MM-DD HH:MM`` of a wall-clock time."""
    return f"{datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M}"


async def works(tokens: TokenManager, shopify: FakeShopify, shop: str) -> bool:
    """Whether the manager's token for ``shop`` would be accepted by Shopify now."""
    try:
        token = await tokens.valid_token(TokenKey.offline(shop))
    except ShopTokenError:
        return False
    return shopify.is_valid(shop, token.access_token)


async def main(path: Path) -> int:
    """Set up a fleet, migrate it twice, cross the deadline; return the exit status."""
    # An hour before the deadline: cutting it fine.
    clock = WallClock(DEADLINE.timestamp() - 3600 - time.time())
    shopify = FakeShopify(
        clock=clock,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        non_expiring_until=DEADLINE.timestamp(),
    )
    async with (
        SQLiteStore(path) as store,
        # Against real Shopify: ShopifyOAuth(CLIENT_ID, CLIENT_SECRET) makes its own client.
        shopify.http_client(timeout=30) as http,
        ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http, clock=clock) as oauth,
        open_token_manager(oauth, store, clock=clock) as tokens,
    ):
        for shop in LEGACY + UNINSTALLED:
            await store.save_tokens(TokenKey.offline(shop), shopify.install_non_expiring(shop))
        for shop in EXPIRING:
            await store.save_tokens(TokenKey.offline(shop), shopify.install(shop))
        for shop in UNINSTALLED:
            shopify.revoke(shop)
        deadline = f"{DEADLINE:%Y-%m-%d %H:%M}"
        print(f"{wall(clock())}  {len(SHOPS)} stored offline tokens; the deadline is {deadline}")

        # The network loses the answer to the first migration request: Shopify
        # migrated that shop, but the job never hears of it.
        shopify.fail_next(Fault.drop(processed=True))
        first = await migrate_fleet(oauth, tokens, store)
        print(f"{wall(clock())}  run 1:")
        for outcome in first:
            note = f" ({outcome.note})" if outcome.note else ""
            print(f"    {outcome.key:38} {outcome.result.value}{note}")
        print(f"    {summary(first)}")
        second = await migrate_fleet(oauth, tokens, store)
        print(f"{wall(clock())}  run 2: {summary(second)}")

        # Half an hour after the deadline, the app asks the manager for tokens:
        # expired ones are refreshed, non-expiring ones are dead.
        clock.skip(DEADLINE.timestamp() + 1800 - clock())
        working = [shop for shop in SHOPS if await works(tokens, shopify, shop)]
        dead = [o.key for o in second if o.result is Result.REAUTHORIZE]
        print(
            f"{wall(clock())}  after the deadline: {len(working)} of {len(SHOPS)} shops' tokens "
            f"work ({sum(shopify.refreshes.values())} refreshed on the way)\n"
            f"    to re-authorize: {', '.join(dead)}"
        )

    migrated = [o for o in first if o.result is Result.MIGRATED]
    ok = (
        len(migrated) == len(LEGACY)
        and sum(o.result is Result.REAUTHORIZE for o in first) == len(UNINSTALLED)
        and not any(o.result is Result.MIGRATED for o in second)
        and sorted(working) == sorted(LEGACY + EXPIRING)
    )
    return 0 if ok else 1


def run() -> int:
    """Run the job against a scratch SQLite file."""
    # The library never configures logging; this job shows errors only.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as scratch:
        job = functools.partial(main, Path(scratch) / "tokens.db")
        return trio.run(job)


if __name__ == "__main__":
    raise SystemExit(run())
