"""Hot path: ``valid_token`` on a fresh cached token, against a floor and peers.

- floor: an ``async def`` doing a dict lookup and a float comparison with
  ``time.time()``, awaited in the same loop: the least any token cache costs;
- Authlib's ``AsyncOAuth2Client.ensure_active_token`` under trio (via anyio);
- a ``trio.Lock``-guarded cache: what a straightforward safe cache costs.

Also the time per request of ``tokens.auth(key)``: its httpx auth flow
(the header from ``valid_token``, then the answer), driven as httpx does.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import TYPE_CHECKING, Any

import httpx
import trio

from shoptoken import MemoryStore, TokenKey, open_token_manager
from shoptoken.testing import FakeShopify

from ._report import Figure, Section, median_spread

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

KEY = TokenKey.offline("bench-store")


async def _per_call(
    fn: Callable[[TokenKey], Awaitable[object]], calls: int, repeats: int
) -> list[float]:
    """Nanoseconds per call of ``await fn(KEY)``, one sample per repeat."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            await fn(KEY)
        samples.append((time.perf_counter_ns() - start) / calls)
    return samples


def authlib_arguments(expires_at: float) -> dict[str, Any]:
    """What both of Authlib's clients (sync and async) are built with: a fresh token."""
    return {
        "client_id": "bench",
        "client_secret": "bench-secret",
        "token": {
            "access_token": "a",
            "refresh_token": "r",
            "token_type": "Bearer",
            "expires_at": expires_at,
        },
        "token_endpoint": "https://bench-store.myshopify.com/admin/oauth/access_token",
    }


def _authlib_client(expires_at: float) -> object:
    # Authlib warns that it prefers "httpx2" (it runs on httpx all the same),
    # through an "always" filter set when authlib.deprecate is imported: import
    # that first, so the "ignore" below goes in front of it.
    import authlib.deprecate  # noqa: F401, PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from authlib.integrations.httpx_client import AsyncOAuth2Client  # noqa: PLC0415

    return AsyncOAuth2Client(
        **authlib_arguments(expires_at),
        transport=httpx.MockTransport(lambda request: httpx.Response(500)),
    )


async def run(quick: bool) -> Section:
    """Measure the hot path and ``auth()`` overhead."""
    calls, repeats = (20_000, 5) if quick else (200_000, 15)
    shopify = FakeShopify()
    store = MemoryStore()
    await store.save_tokens(KEY, shopify.install(KEY.shop))
    cache = {KEY: ("token", time.time() + 3600)}

    async def floor(key: TokenKey) -> object:
        entry = cache.get(key)
        if entry is not None and time.time() < entry[1]:
            return entry[0]
        return None

    lock = trio.Lock()

    async def lock_guarded(key: TokenKey) -> object:
        async with lock:
            entry = cache.get(key)
            if entry is not None and time.time() < entry[1]:
                return entry[0]
            return None

    authlib = _authlib_client(time.time() + 3600)

    async def authlib_call(key: TokenKey) -> object:
        await authlib.ensure_active_token(authlib.token)  # type: ignore[attr-defined]
        return authlib.token  # type: ignore[attr-defined]

    figures: list[Figure] = []
    async with shopify.oauth() as oauth, open_token_manager(oauth, store) as tokens:
        await tokens.valid_token(KEY)
        # Interleave the contenders repeat by repeat, so drift hits all alike.
        results: dict[str, list[float]] = {
            "floor": [],
            "valid_token": [],
            "authlib": [],
            "lock": [],
        }
        contenders = {
            "floor": floor,
            "valid_token": tokens.valid_token,
            "authlib": authlib_call,
            "lock": lock_guarded,
        }
        for _ in range(repeats):
            for name, fn in contenders.items():
                results[name] += await _per_call(fn, calls, 1)
        med = {name: median_spread(samples) for name, samples in results.items()}
        floor_ns = med["floor"][0]
        ours = med["valid_token"][0]
        figures += [
            Figure("floor: dict lookup + time.time()", floor_ns, "ns/call", med["floor"][1]),
            Figure(
                "shoptoken valid_token (fresh)",
                ours,
                "ns/call",
                med["valid_token"][1],
                "<= 2x floor",
                ours <= 2 * floor_ns,
            ),
            Figure("Authlib ensure_active_token", med["authlib"][0], "ns/call", med["authlib"][1]),
            Figure("trio.Lock-guarded cache", med["lock"][0], "ns/call", med["lock"][1]),
            Figure("valid_token / floor", ours / floor_ns, "x", None, "<= 2", ours <= 2 * floor_ns),
            Figure(
                "Authlib / valid_token",
                med["authlib"][0] / ours,
                "x",
                None,
                ">= 10",
                med["authlib"][0] / ours >= 10,
            ),
            Figure("trio.Lock / valid_token", med["lock"][0] / ours, "x"),
        ]
        figures.append(await _auth_overhead(tokens, quick))
    await authlib.aclose()  # type: ignore[attr-defined]
    return Section(
        "1. Hot path: valid_token on a fresh token",
        figures,
        [f"{calls:,} awaited calls per sample, {repeats} samples each, interleaved."],
    )


async def _auth_overhead(tokens: object, quick: bool) -> Figure:
    """Time per request of ``tokens.auth(key)``: its auth flow, as httpx drives it.

    Measured directly (the flow's first step sets the header from
    ``valid_token``; the 200 answer ends it): the difference between two
    whole requests on a MockTransport, each about 60 us, drowned it in noise.
    """
    requests, repeats = (2_000, 3) if quick else (20_000, 9)
    url = f"https://{KEY.shop}/admin/api/2026-10/shop.json"
    auth = tokens.auth(KEY)  # type: ignore[attr-defined]
    request = httpx.Request("GET", url)
    response = httpx.Response(200, request=request)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(requests):
            flow = auth.async_auth_flow(request)
            await flow.__anext__()
            with contextlib.suppress(StopAsyncIteration):
                await flow.asend(response)
        samples.append((time.perf_counter_ns() - start) / requests / 1000)
    value, spread = median_spread(samples)
    return Figure("auth(key) per request (its auth flow)", value, "us/request", spread)
