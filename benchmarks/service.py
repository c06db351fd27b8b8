"""TokenService: ``valid_token`` on a fresh token from plain threads and asyncio, and a miss.

- floors: a function doing a dict lookup and a float comparison with
  ``time.time()``, called (sync) or awaited (asyncio) in the same thread:
  the least any token cache costs;
- ``service.valid_token`` and ``await service.aio.valid_token`` on a fresh
  token (read from the published view, no thread hop);
- Authlib's token check measured in the same run: the sync
  ``OAuth2Session.ensure_active_token`` (requests) and the async
  ``AsyncOAuth2Client.ensure_active_token`` under asyncio;
- a miss: one call that crosses to the service's trio thread and back
  (``fetch_token``, which always does), sync and asyncio, median and p99.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import TYPE_CHECKING, Any

import trio

from shoptoken import MemoryStore, TokenKey, TokenService
from shoptoken.testing import FakeShopify

from ._report import Figure, Section, median_spread, percentile
from .hot_path import _authlib_client as authlib_async_client
from .hot_path import authlib_arguments

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

KEY = TokenKey.offline("bench-store")


def _per_call_sync(fn: Callable[[TokenKey], object], calls: int) -> float:
    """Nanoseconds per call of ``fn(KEY)``."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn(KEY)
    return (time.perf_counter_ns() - start) / calls


async def _per_call_async(fn: Callable[[TokenKey], Awaitable[object]], calls: int) -> float:
    """Nanoseconds per call of ``await fn(KEY)``."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        await fn(KEY)
    return (time.perf_counter_ns() - start) / calls


def _authlib_session(expires_at: float) -> Any:
    """Authlib's sync OAuth2Session (on requests), holding a fresh token."""
    # Imported after Authlib's async client (hot_path.py explains the warnings' order).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from authlib.integrations.requests_client import OAuth2Session  # noqa: PLC0415

    return OAuth2Session(**authlib_arguments(expires_at))


def _measure(service: TokenService, calls: int, repeats: int, misses: int) -> dict[str, Any]:
    """Every contender, interleaved repeat by repeat (in one thread, the caller's)."""
    cache = {KEY: ("token", time.time() + 3600)}

    def floor(key: TokenKey) -> object:
        entry = cache.get(key)
        if entry is not None and time.time() < entry[1]:
            return entry[0]
        return None

    async def async_floor(key: TokenKey) -> object:
        entry = cache.get(key)
        if entry is not None and time.time() < entry[1]:
            return entry[0]
        return None

    client: Any = authlib_async_client(time.time() + 3600)
    session = _authlib_session(time.time() + 3600)

    def authlib_sync(key: TokenKey) -> object:
        session.ensure_active_token()
        return session.token

    async def authlib_async(key: TokenKey) -> object:
        await client.ensure_active_token(client.token)
        return client.token

    sync: dict[str, Callable[[TokenKey], object]] = {
        "floor": floor,
        "valid_token": service.valid_token,
        "authlib": authlib_sync,
    }
    aio: dict[str, Callable[[TokenKey], Awaitable[object]]] = {
        "floor": async_floor,
        "valid_token": service.aio.valid_token,
        "authlib": authlib_async,
    }
    results: dict[str, list[float]] = {f"sync {n}": [] for n in sync}
    results |= {f"aio {n}": [] for n in aio}

    async def asyncio_side() -> tuple[list[float], list[float]]:
        for _ in range(repeats):
            for name, fn in sync.items():
                results[f"sync {name}"].append(_per_call_sync(fn, calls))
            for name, afn in aio.items():
                results[f"aio {name}"].append(await _per_call_async(afn, calls))
        sync_hops: list[float] = []
        aio_hops: list[float] = []
        for _ in range(misses):
            start = time.perf_counter_ns()
            service.fetch_token(KEY)
            sync_hops.append(time.perf_counter_ns() - start)
            start = time.perf_counter_ns()
            await service.aio.fetch_token(KEY)
            aio_hops.append(time.perf_counter_ns() - start)
        await client.aclose()
        return sync_hops, aio_hops

    sync_hops, aio_hops = asyncio.run(asyncio_side())
    session.close()
    return {"results": results, "sync_hops": sync_hops, "aio_hops": aio_hops}


def _figures(measured: dict[str, Any]) -> list[Figure]:
    med = {name: median_spread(samples) for name, samples in measured["results"].items()}
    figures: list[Figure] = []
    for side, label in (("sync", "sync (a thread)"), ("aio", "asyncio")):
        floor_ns, ours = med[f"{side} floor"][0], med[f"{side} valid_token"][0]
        authlib = med[f"{side} authlib"][0]
        peer = "OAuth2Session" if side == "sync" else "AsyncOAuth2Client"
        figures += [
            Figure(
                f"{label} floor: dict + time.time()", floor_ns, "ns/call", med[f"{side} floor"][1]
            ),
            Figure(
                f"{label} valid_token (fresh)",
                ours,
                "ns/call",
                med[f"{side} valid_token"][1],
                "<= 2x floor",
                ours <= 2 * floor_ns,
            ),
            Figure(f"{label} Authlib {peer} check", authlib, "ns/call", med[f"{side} authlib"][1]),
            Figure(
                f"{label} valid_token / floor",
                ours / floor_ns,
                "x",
                None,
                "<= 2",
                ours <= 2 * floor_ns,
            ),
            Figure(f"{label} Authlib / valid_token", authlib / ours, "x"),
        ]
    for side, label in (("sync_hops", "sync"), ("aio_hops", "asyncio")):
        hops = [ns / 1000 for ns in measured[side]]
        figures += [
            Figure(
                f"{label} miss: hop to the trio thread and back, median", percentile(hops, 50), "µs"
            ),
            Figure(f"{label} miss: hop, p99", percentile(hops, 99), "µs"),
        ]
    return figures


async def run(quick: bool) -> Section:
    """Start a service, then measure in a worker thread (a caller's thread)."""
    calls, repeats, misses = (20_000, 3, 300) if quick else (200_000, 11, 3000)
    shopify = FakeShopify()
    with TokenService(shopify.oauth(), MemoryStore()) as service:
        service.put_token(KEY, shopify.install(KEY.shop))
        measured = await trio.to_thread.run_sync(_measure, service, calls, repeats, misses)
    return Section(
        "TokenService: fresh valid_token from threads and asyncio, and a miss",
        _figures(measured),
        notes=[
            f"{calls:,} calls x {repeats} interleaved repeats; {misses:,} misses each side",
            "a miss is fetch_token: always one hop to the service's trio thread and back",
        ],
    )
