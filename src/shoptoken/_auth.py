"""httpx.Auth that takes its header from a token source: the 401 rule, written once.

`TokenAuth` holds the rule (set the header from ``valid_token``; on a 401,
one ``refresh_token(rejected=...)`` and one retry) as a generator of steps,
and drives it with a synchronous source, an asynchronous one, or both.
`ManagerAuth` is a `TokenManager`'s (httpx.AsyncClient under trio);
`ServiceAuth` is a `TokenService`'s (httpx.Client, and httpx.AsyncClient
under asyncio).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import httpx

from ._keys import TokenKind

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator

    from ._keys import TokenKey
    from ._token import Token

HEADER = "X-Shopify-Access-Token"
# The Customer Account API takes the customer's token as the Authorization
# header itself (no "Bearer" scheme).
CUSTOMER_HEADER = "Authorization"


class TokenSource(Protocol):
    """Where a synchronous flow gets tokens (`TokenService`)."""

    def valid_token(self, key: TokenKey) -> Token:
        """A token valid now."""
        ...

    def refresh_token(self, key: TokenKey, *, rejected: Token | None = None) -> Token:
        """A token other than ``rejected``, refreshing if needed."""
        ...


class AsyncTokenSource(Protocol):
    """Where an asynchronous flow gets tokens (`TokenManager`, `AsyncTokenService`)."""

    async def valid_token(self, key: TokenKey) -> Token:
        """A token valid now."""
        ...

    async def refresh_token(self, key: TokenKey, *, rejected: Token | None = None) -> Token:
        """A token other than ``rejected``, refreshing if needed."""
        ...


class TokenAuth(httpx.Auth):
    """Sets the key's token header; on a 401, refreshes once and retries once.

    Admin API keys (offline, online) send ``X-Shopify-Access-Token``;
    customer keys send ``Authorization``, as the Customer Account API wants.
    """

    # The request may be sent twice, so httpx must buffer its body.
    requires_request_body = True

    def __init__(
        self,
        key: TokenKey,
        *,
        sync: TokenSource | None = None,
        asynchronous: AsyncTokenSource | None = None,
        refusal: str = "",
    ) -> None:
        self._key = key
        self._sync = sync
        self._async = asynchronous
        self._refusal = refusal
        self._header = CUSTOMER_HEADER if key.kind is TokenKind.CUSTOMER else HEADER

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={str(self._key)!r})"

    def _steps(self, request: httpx.Request) -> Generator[Any, Any, None]:
        """The rule, once, as steps for a driver.

        Yields None to ask for the valid token, a `Token` to ask for a
        refresh replacing that rejected token, or a request to send; is
        sent the token or the response.
        """
        token = yield None
        request.headers[self._header] = token.access_token
        response = yield request
        if response.status_code != httpx.codes.UNAUTHORIZED:
            return
        fresh = yield token
        request.headers[self._header] = fresh.access_token
        yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Authenticate ``request`` with the synchronous source; retry once after a 401."""
        source = self._sync
        if source is None:
            raise RuntimeError(self._refusal)
        steps = self._steps(request)
        reply: object = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration:
                return
            if isinstance(step, httpx.Request):
                reply = yield step
            elif step is None:
                reply = source.valid_token(self._key)
            else:
                reply = source.refresh_token(self._key, rejected=step)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Authenticate ``request`` with the asynchronous source; retry once after a 401."""
        source = self._async
        if source is None:
            raise RuntimeError(self._refusal)
        steps = self._steps(request)
        reply: object = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration:
                return
            if isinstance(step, httpx.Request):
                reply = yield step
            elif step is None:
                reply = await source.valid_token(self._key)
            else:
                reply = await source.refresh_token(self._key, rejected=step)


class ManagerAuth(TokenAuth):
    """A `TokenManager`'s auth: for `httpx.AsyncClient` under trio."""

    def __init__(self, manager: AsyncTokenSource, key: TokenKey) -> None:
        super().__init__(
            key,
            asynchronous=manager,
            refusal="TokenManager.auth() works only with httpx.AsyncClient",
        )


class ServiceAuth(TokenAuth):
    """A `TokenService`'s auth: for `httpx.Client`, and `httpx.AsyncClient` under asyncio."""

    def __init__(self, key: TokenKey, sync: TokenSource, asynchronous: AsyncTokenSource) -> None:
        super().__init__(key, sync=sync, asynchronous=asynchronous)
