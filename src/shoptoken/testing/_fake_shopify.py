"""FakeShopify: Shopify's token endpoint, in process, for tests and the demo.

What it emulates today (the rest of the OAuth surface comes with the OAuth
issue): the refresh grant on ``POST https://{shop}/admin/oauth/access_token``
with Shopify's rules --

- both tokens rotate on every refresh; access tokens live ``access_lifetime``
  (3600 s), refresh tokens ``refresh_lifetime`` (90 days);
- one active pair per shop: a new pair revokes every older access token;
- the previous refresh token stays usable until its replacement is first
  used (Shopify's recovery window, capped at 30 days); any other refresh
  token answers 400 ``invalid_grant`` and is counted in ``rejected``;
- wrong client credentials answer 401 ``invalid_client``;
- ``fail_next`` scripts faults: an HTTP status (429 carries ``Retry-After``)
  or an exception raised as a network failure.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import attrs
import httpx
import trio

from .._keys import normalize_shop
from .._oauth import ShopifyOAuth
from .._token import Token

if TYPE_CHECKING:
    from collections.abc import Callable

RECOVERY_WINDOW: Final = 30 * 86400.0


@attrs.define
class _Pair:
    access: str = attrs.field(repr=False)
    refresh: str = attrs.field(repr=False)
    expires_at: float
    refresh_expires_at: float
    previous_refresh: str | None = attrs.field(default=None, repr=False)
    previous_until: float = 0.0


@attrs.define(eq=False)
class FakeShopify:
    """An emulator of Shopify's refresh grant, reached through `transport` or `oauth`.

    Attributes:
        clock: Wall clock (epoch s); use `trio_wall_clock` under a mock clock.
        access_lifetime: ``expires_in`` of access tokens.
        refresh_lifetime: ``refresh_token_expires_in`` of refresh tokens.
        latency: Seconds each request takes (trio time).
        refreshes: Successful refreshes per shop.
        recovered: Refreshes that presented the previous refresh token (the
            recovery window): a client that persists before use needs none.
        rejected: Refresh requests refused with ``invalid_grant``.
        requests: Every request received.
    """

    clock: Callable[[], float] = time.time
    client_id: str = "shoptoken-fake-client"
    client_secret: str = attrs.field(default="shpss_fake_client_secret", repr=False)
    access_lifetime: float = 3600.0
    refresh_lifetime: float = 90 * 86400.0
    latency: float = 0.0
    refreshes: dict[str, int] = attrs.field(factory=dict)
    recovered: int = 0
    rejected: int = 0
    requests: int = 0
    _pairs: dict[str, _Pair] = attrs.field(factory=dict, repr=False)
    _script: list[int | Exception] = attrs.field(factory=list, repr=False)
    _ids: itertools.count[int] = attrs.field(factory=itertools.count, repr=False)

    # -- setting up -----------------------------------------------------------

    def install(self, shop: str, *, scope: str = "read_orders") -> Token:
        """Install the app on ``shop``: issue its first pair (revoking any older one)."""
        pair = self._issue(normalize_shop(shop))
        return Token(
            access_token=pair.access,
            refresh_token=pair.refresh,
            scope=scope,
            expires_at=datetime.fromtimestamp(pair.expires_at, UTC),
            refresh_token_expires_at=datetime.fromtimestamp(pair.refresh_expires_at, UTC),
        )

    def fail_next(self, *steps: int | Exception) -> None:
        """Answer the next requests with these statuses or network errors, in order."""
        self._script.extend(steps)

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that sends every request to this fake."""
        return httpx.MockTransport(self.handle)

    def oauth(self, *, clock: Callable[[], float] | None = None) -> ShopifyOAuth:
        """A real `ShopifyOAuth` client with this fake's credentials and transport."""
        http = httpx.AsyncClient(transport=self.transport())
        return ShopifyOAuth(
            self.client_id, self.client_secret, http=http, clock=clock or self.clock
        )

    # -- checking ----------------------------------------------------------------

    def is_valid(self, shop: str, access_token: str) -> bool:
        """Whether an Admin API call with ``access_token`` would be accepted now."""
        pair = self._pairs.get(normalize_shop(shop))
        return pair is not None and pair.access == access_token and self.clock() < pair.expires_at

    def refresh_token_works(self, shop: str, refresh_token: str) -> bool:
        """Whether a refresh with ``refresh_token`` would succeed now."""
        pair = self._pairs.get(normalize_shop(shop))
        return pair is not None and self._accepts(pair, refresh_token) is not None

    # -- the endpoint --------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request (the MockTransport handler)."""
        self.requests += 1
        if self.latency:
            await trio.sleep(self.latency)
        if self._script:
            step = self._script.pop(0)
            if isinstance(step, Exception):
                raise step
            headers = {"Retry-After": "2"} if step == httpx.codes.TOO_MANY_REQUESTS else {}
            return _error(step, "scripted_fault", headers=headers)
        if request.method != "POST" or request.url.path != "/admin/oauth/access_token":
            return _error(404, "not_found")
        body = _json_object(request.content)
        if body is None:
            return _error(400, "invalid_request")
        if body.get("client_id") != self.client_id or not secrets.compare_digest(
            str(body.get("client_secret", "")), self.client_secret
        ):
            return _error(401, "invalid_client")
        if body.get("grant_type") != "refresh_token":
            return _error(400, "unsupported_grant_type")
        return self._refresh(request.url.host, str(body.get("refresh_token", "")))

    def _refresh(self, shop: str, refresh_token: str) -> httpx.Response:
        pair = self._pairs.get(shop)
        kept = None if pair is None else self._accepts(pair, refresh_token)
        if pair is None or kept is None:
            self.rejected += 1
            return _error(400, "invalid_grant")
        if not secrets.compare_digest(pair.refresh, refresh_token):
            self.recovered += 1
        new = self._issue(shop)
        # The refresh token just used is the new pair's recovery fallback,
        # unless it was itself the fallback (its replacement is still unused).
        new.previous_refresh, new.previous_until = kept
        self.refreshes[shop] = self.refreshes.get(shop, 0) + 1
        return httpx.Response(
            200,
            json={
                "access_token": new.access,
                "refresh_token": new.refresh,
                "scope": "read_orders",
                "expires_in": int(self.access_lifetime),
                "refresh_token_expires_in": int(self.refresh_lifetime),
            },
        )

    def _accepts(self, pair: _Pair, refresh_token: str) -> tuple[str, float] | None:
        """Which fallback the next pair keeps if ``refresh_token`` is accepted, else None."""
        now = self.clock()
        if secrets.compare_digest(pair.refresh, refresh_token):
            if now >= pair.refresh_expires_at:
                return None
            return refresh_token, now + RECOVERY_WINDOW
        previous = pair.previous_refresh
        if (
            previous is not None
            and now < pair.previous_until
            and secrets.compare_digest(previous, refresh_token)
        ):
            return previous, pair.previous_until
        return None

    def _issue(self, shop: str) -> _Pair:
        n = next(self._ids)
        now = self.clock()
        name = shop.removesuffix(".myshopify.com")
        pair = _Pair(
            access=f"shpat_fake_{name}_{n:06d}_{secrets.token_hex(8)}",
            refresh=f"shprt_fake_{name}_{n:06d}_{secrets.token_hex(8)}",
            expires_at=now + self.access_lifetime,
            refresh_expires_at=now + self.refresh_lifetime,
        )
        self._pairs[shop] = pair
        return pair


def _json_object(content: bytes) -> dict[str, object] | None:
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error(status: int, code: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": code}, headers=headers)
