"""ManagerAuth: an httpx.Auth that takes its header from a TokenManager."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from ._keys import TokenKind

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator

    from ._core._manager import TokenManager
    from ._keys import TokenKey

HEADER = "X-Shopify-Access-Token"
# The Customer Account API takes the customer's token as the Authorization
# header itself (no "Bearer" scheme).
CUSTOMER_HEADER = "Authorization"


class ManagerAuth(httpx.Auth):
    """Sets the key's token header; on a 401, refreshes once and retries once.

    Admin API keys (offline, online) send ``X-Shopify-Access-Token``;
    customer keys send ``Authorization``, as the Customer Account API wants.
    """

    # The request may be sent twice, so httpx must buffer its body.
    requires_request_body = True

    def __init__(self, manager: TokenManager, key: TokenKey) -> None:
        self._manager = manager
        self._key = key
        self._header = CUSTOMER_HEADER if key.kind is TokenKind.CUSTOMER else HEADER

    def __repr__(self) -> str:
        return f"ManagerAuth(key={str(self._key)!r})"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Refuse: tokens come from a trio TokenManager, so use an `httpx.AsyncClient`."""
        msg = "TokenManager.auth() works only with httpx.AsyncClient"
        raise RuntimeError(msg)
        yield request  # pragma: no cover - makes this a generator, as httpx expects

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Authenticate ``request``; retry it once with a new token after a 401."""
        token = await self._manager.valid_token(self._key)
        request.headers[self._header] = token.access_token
        response = yield request
        if response.status_code != httpx.codes.UNAUTHORIZED:
            return
        fresh = await self._manager.refresh_token(self._key, rejected=token)
        request.headers[self._header] = fresh.access_token
        yield request
