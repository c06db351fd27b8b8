"""Which hosts are Shopify's, and a transport that routes them to a loopback server.

Code under test keeps building ``https://{shop}/...`` URLs and keeps
validating shop domains; only the transport changes. `LoopbackTransport`
sends each request for ``https://*.myshopify.com`` or ``https://shopify.com``
to ``http://127.0.0.1:{port}`` instead, with the original host in the
``Host`` header (and ``X-Forwarded-Host``), and refuses every other URL with
`ForeignHostError`: nothing but 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httpx

from .._errors import InvalidShopDomain
from .._keys import normalize_shop

if TYPE_CHECKING:
    from types import TracebackType

#: The Customer Account API's authentication host.
ACCOUNTS_HOST: Final = "shopify.com"
_SHOP_SUFFIX: Final = ".myshopify.com"


class ForeignHostError(RuntimeError):
    """A request for a URL that is not Shopify's reached the fake.

    Not an `httpx.TransportError` on purpose: code under test must not take
    it for a network failure and retry it.
    """


def is_shop_host(host: str) -> bool:
    """Whether ``host`` is exactly a canonical ``name.myshopify.com`` domain."""
    if not host.endswith(_SHOP_SUFFIX):
        return False
    try:
        return normalize_shop(host) == host
    except InvalidShopDomain:
        return False


def check_shopify_url(url: httpx.URL) -> str:
    """Return the host of a Shopify URL: https, no port or userinfo, a Shopify host.

    Raises:
        ForeignHostError: Any other URL.
    """
    host = url.host
    if (
        url.scheme != "https"
        or url.port is not None
        or url.userinfo
        or not (host == ACCOUNTS_HOST or is_shop_host(host))
    ):
        msg = f"refused {url.scheme}://{host[:100]}: only https Shopify hosts reach the fake"
        raise ForeignHostError(msg)
    return host


def forwarded(request: httpx.Request, port: int) -> httpx.Request:
    """``request`` sent to ``http://127.0.0.1:{port}`` instead, its Shopify host kept.

    Raises:
        ForeignHostError: The URL is not an https Shopify URL.
    """
    host = check_shopify_url(request.url)
    headers = request.headers.copy()
    # httpx already set Host from the URL; keep it, and say it twice.
    headers["Host"] = host
    headers["X-Forwarded-Host"] = host
    headers["X-Forwarded-Proto"] = "https"
    return httpx.Request(
        request.method,
        request.url.copy_with(scheme="http", host="127.0.0.1", port=port),
        headers=headers,
        stream=request.stream,
        extensions=request.extensions,
    )


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Sends Shopify URLs to a fake on 127.0.0.1, refusing any other URL.

    Args:
        port: The loopback port the fake listens on.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Forward ``request`` to the loopback server, or refuse it.

        Raises:
            ForeignHostError: The URL is not an https Shopify URL.
        """
        return await self._inner.handle_async_request(forwarded(request, self.port))

    async def aclose(self) -> None:
        """Close the pooled loopback connections."""
        await self._inner.aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


class SyncLoopbackTransport(httpx.BaseTransport):
    """`LoopbackTransport` for a synchronous `httpx.Client` (Flask, Django, Celery tests).

    Args:
        port: The loopback port the fake listens on.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Forward ``request`` to the loopback server, or refuse it.

        Raises:
            ForeignHostError: The URL is not an https Shopify URL.
        """
        return self._inner.handle_request(forwarded(request, self.port))

    def close(self) -> None:
        """Close the pooled loopback connections."""
        self._inner.close()
