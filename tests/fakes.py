"""In-process fakes for the manager's tests: a Shopify token endpoint and a failing store."""

from __future__ import annotations

import itertools
import json
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio

from shoptoken import MemoryStore, ShopifyOAuth, Token, TokenKey

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

CLIENT_ID = "client-id-123"
CLIENT_SECRET = "shpss_client_secret_DO_NOT_LOG"


@attrs.define
class Pair:
    """The one active pair of a shop, as Shopify holds it."""

    access: str
    refresh: str
    expires_at: float
    refresh_expires_at: float


@attrs.define(eq=False)
class FakeTokenEndpoint:
    """Shopify's ``/admin/oauth/access_token`` refresh grant, as an httpx MockTransport handler.

    Rotates both tokens on every refresh; only the latest refresh token is
    accepted (an older one answers 400 invalid_grant and is counted as
    rejected). ``script`` holds responses to give before the next real one:
    an int status, or an exception to raise as a network failure.
    """

    clock: Callable[[], float]
    lifetime: float = 3600.0
    refresh_lifetime: float = 90 * 86400.0
    latency: float = 0.0
    pairs: dict[str, Pair] = attrs.field(factory=dict)
    refreshes: dict[str, int] = attrs.field(factory=dict)
    presented: list[str] = attrs.field(factory=list)
    rejected: int = 0
    requests: int = 0
    script: list[int | Exception] = attrs.field(factory=list)
    _ids: itertools.count[int] = attrs.field(factory=itertools.count)

    def _new_pair(self, shop: str) -> Pair:
        n = next(self._ids)
        now = self.clock()
        pair = Pair(
            access=f"shpat_access_{shop.split('.', maxsplit=1)[0]}_{n:06d}_SECRET",
            refresh=f"shprt_refresh_{shop.split('.', maxsplit=1)[0]}_{n:06d}_SECRET",
            expires_at=now + self.lifetime,
            refresh_expires_at=now + self.refresh_lifetime,
        )
        self.pairs[shop] = pair
        return pair

    def install(self, shop: str) -> Token:
        """Issue a shop's first pair, as the authorization-code grant would."""
        pair = self._new_pair(TokenKey.offline(shop).shop)
        return Token(
            access_token=pair.access,
            refresh_token=pair.refresh,
            scope="read_orders",
            expires_at=datetime.fromtimestamp(pair.expires_at, UTC),
            refresh_token_expires_at=datetime.fromtimestamp(pair.refresh_expires_at, UTC),
        )

    def is_valid(self, shop: str, access_token: str) -> bool:
        """Whether Shopify would accept ``access_token`` for ``shop`` now."""
        pair = self.pairs.get(shop)
        return pair is not None and pair.access == access_token and self.clock() < pair.expires_at

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer one token request."""
        self.requests += 1
        if self.latency:
            await trio.sleep(self.latency)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            return httpx.Response(step, json={"error": "scripted", "error_description": "test"})
        shop = request.url.host
        body = json.loads(request.content)
        assert body["client_id"] == CLIENT_ID
        assert body["client_secret"] == CLIENT_SECRET
        assert body["grant_type"] == "refresh_token"
        self.presented.append(body["refresh_token"])
        pair = self.pairs.get(shop)
        if pair is None or pair.refresh != body["refresh_token"]:
            self.rejected += 1
            return httpx.Response(400, json={"error": "invalid_grant"})
        if self.clock() >= pair.refresh_expires_at:
            self.rejected += 1
            return httpx.Response(400, json={"error": "invalid_grant"})
        new = self._new_pair(shop)
        self.refreshes[shop] = self.refreshes.get(shop, 0) + 1
        return httpx.Response(
            200,
            json={
                "access_token": new.access,
                "refresh_token": new.refresh,
                "scope": "read_orders",
                "expires_in": int(self.lifetime),
                "refresh_token_expires_in": int(self.refresh_lifetime),
            },
        )


def make_oauth(endpoint: FakeTokenEndpoint, clock: Callable[[], float]) -> ShopifyOAuth:
    """A real ShopifyOAuth whose HTTP goes to ``endpoint`` in-process."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    return ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http, clock=clock)


@attrs.define(eq=False)
class FlakyStore(MemoryStore):
    """A MemoryStore whose saves and loads fail while told to."""

    fail_saves: int = 0
    fail_loads: int = 0
    saves: int = 0
    loads: int = 0
    locks: int = 0
    load_latency: float = 0.0

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Save, or fail while ``fail_saves`` is positive (counting down)."""
        self.saves += 1
        if self.fail_saves:
            self.fail_saves -= 1
            await trio.lowlevel.checkpoint()
            raise OSError(f"disk full while writing {token.access_token}")
        await super().save_tokens(key, token)

    @asynccontextmanager
    async def locked(self, key: TokenKey, *, timeout: float) -> AsyncIterator[Any]:  # noqa: ASYNC109 - the protocol's signature
        """Count the lock-and-re-read, then take it."""
        self.locks += 1
        async with super().locked(key, timeout=timeout) as handle:
            yield handle

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load, or fail while ``fail_loads`` is positive (counting down)."""
        self.loads += 1
        if self.load_latency:
            await trio.sleep(self.load_latency)
        if self.fail_loads:
            self.fail_loads -= 1
            raise OSError("database unavailable")
        return await super().load_tokens(key)


def at(clock: Callable[[], float], seconds: float) -> datetime:
    """The datetime ``seconds`` after the clock's current reading."""
    return datetime.fromtimestamp(clock(), UTC) + timedelta(seconds=seconds)


@attrs.define(eq=False)
class PlainStore:
    """The smallest TokenCallback: two methods, no optional capability."""

    tokens: dict[TokenKey, Token] = attrs.field(factory=dict)

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Return the stored token."""
        await trio.lowlevel.checkpoint()
        return self.tokens.get(key)

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Store the token."""
        await trio.lowlevel.checkpoint()
        self.tokens[key] = token
