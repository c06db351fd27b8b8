"""A fleet of client-credentials keys kept valid for 48 simulated hours while 30 % of grants fail.

Over real loopback HTTP: FakeShopify served by hypercorn, the manager's
`ShopifyOAuth` on real sockets, trio's mock clock jumping only when the
process is idle (so bytes in flight are never overtaken by a jump). Nothing
is stored at the start: every key's first use mints its first token. Most
keys are used every five minutes; a few only every 40 hours, so they park
between uses and their next use mints on demand. Every token served is
checked against the fake's own record at the instant it is served.
"""

from __future__ import annotations

import collections

import attrs
import httpx
import pytest
import trio
import trio.testing

from shoptoken import (
    EventKind,
    MemoryStore,
    RefreshFailed,
    RefreshPolicy,
    Token,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.testing import FakeShopify, FaultPlan, serve_loopback, trio_wall_clock

from . import EventTally, quiet_logs, report, seeded

HOURS = 48.0
KEYS = 16
RARE = 4  # keys used only every 40 h: they park in between
SEED = 20261206
API = "https://{shop}/admin/api/2026-10/shop.json"


@pytest.fixture
def socket_clock() -> trio.testing.MockClock:
    """A mock clock that jumps only after 5 ms of real idleness (loopback sockets)."""
    return trio.testing.MockClock(autojump_threshold=0.005)


@attrs.define
class Served:
    """What the app was handed, judged by the fake at that instant."""

    calls: int = 0
    valid: int = 0
    invalid: int = 0
    refused: int = 0
    api_ok: int = 0
    api_failed: int = 0
    api_errors: int = 0
    per_key: collections.Counter[str] = attrs.field(factory=collections.Counter)


async def use(  # noqa: PLR0917 - one app task's whole setting
    tokens: TokenManager,
    fake: FakeShopify,
    http: httpx.AsyncClient,
    key: TokenKey,
    gap: float,
    served: Served,
) -> None:
    """Call ``valid_token`` every ``gap`` seconds until the end; an API call every 8th time."""
    end = HOURS * 3600
    while trio.current_time() < end:
        served.calls += 1
        try:
            token: Token = await tokens.valid_token(key)
        except RefreshFailed:
            served.refused += 1  # no valid token at hand: the mint failed (never a stale one)
        else:
            # No checkpoint since valid_token returned: judged as served.
            if fake.is_valid(key.shop, token.access_token):
                served.valid += 1
            else:
                served.invalid += 1
            served.per_key[str(key)] += 1
            if served.calls % 8 == 0:
                try:
                    response = await http.get(API.format(shop=key.shop), auth=tokens.auth(key))
                except (httpx.TransportError, RefreshFailed):
                    # A loaded machine: the mock clock may leap past a socket
                    # read's timeout. Not a token served, not counted as one.
                    served.api_errors += 1
                else:
                    if response.status_code == httpx.codes.OK:
                        served.api_ok += 1
                    else:
                        served.api_failed += 1
        await trio.sleep(min(gap, end - trio.current_time()))


async def test_a_fleet_is_re_minted_for_48_hours_at_30_percent_faults(
    socket_clock: trio.testing.MockClock,
) -> None:
    """No expired or revoked token served in 48 h; mints within a small factor of the minimum."""
    clock = trio_wall_clock()
    fake = FakeShopify(clock=clock, faults=FaultPlan(rate=0.3, seed=SEED))
    keys = [TokenKey.client_credentials(f"back-office-{i:02d}") for i in range(KEYS)]
    store = MemoryStore()
    tally = EventTally()
    served = Served()
    with quiet_logs(), trio.fail_after(48 * 3600 + 3600):
        async with (
            serve_loopback(fake) as server,
            server.oauth(clock=clock) as oauth,
            open_token_manager(
                oauth, store, policy=RefreshPolicy(), clock=clock, hooks=[tally], rng=seeded(SEED)
            ) as tokens,
        ):
            http = server.client(timeout=30)
            async with trio.open_nursery() as nursery:
                for i, key in enumerate(keys):
                    gap = 40 * 3600.0 if i < RARE else 300.0
                    nursery.start_soon(use, tokens, fake, http, key, gap, served)
            stats = tokens.statistics()
    mints = sum(fake.mints.values())
    lost = fake.grants_lost
    report(
        "client-credentials fleet 48h at 30% faults (loopback)",
        keys=KEYS,
        hours=HOURS,
        calls=served.calls,
        served_valid=served.valid,
        served_invalid=served.invalid,
        refused=served.refused,
        api_ok=served.api_ok,
        api_failed=served.api_failed,
        api_errors=served.api_errors,
        mints=mints,
        grants_lost=lost,
        faults=len(fake.injected),
        mint_failures=stats.refreshes_failed,
        outcome_unknown=stats.refreshes_outcome_unknown,
        parked=tally[EventKind.KEY_PARKED],
    )
    assert served.invalid == 0
    assert served.valid > 0.95 * served.calls
    assert served.api_failed == 0
    assert tally[EventKind.KEY_PARKED] >= RARE  # idle between their uses: nothing to keep alive
    assert stats.keys_reauthorization_required == 0
    assert len(fake.injected) > 0.15 * (mints + stats.refreshes_failed)
    # A token lives ~24 h: each key needs 3 in 48 h (at 0, ~23.9 h, ~47.8 h),
    # plus one per lost answer; a retry after a refused mint costs no token.
    assert KEYS * 3 <= mints - lost <= KEYS * 3 + KEYS
    # Every key ends with its live token stored.
    for key in keys:
        stored = await store.load_tokens(key)
        assert stored is not None
