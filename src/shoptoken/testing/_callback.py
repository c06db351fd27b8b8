"""Signing OAuth redirect queries the way Shopify does, and walking a client through one.

Shopify signs every redirect to an app with the client secret: the HMAC-SHA256
(lower-case hex) of the query's parameters other than ``hmac``, sorted by key
and joined as ``key=value`` with ``&``; in keys and values ``%`` is written
``%25`` and ``&`` ``%26``, and ``=`` is written ``%3D`` in keys, so no value
can pose as another parameter. Written here apart from shoptoken's verifier,
so that each can test the other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping

    from .._token import Token


class SupportsCodeGrant(Protocol):
    """What `FakeShopify.authorize` needs of an OAuth client (`ShopifyOAuth` has it)."""

    def verify_callback(
        self, query: Mapping[str, str], *, state: str | None = None
    ) -> Mapping[str, str] | Awaitable[Mapping[str, str]]: ...

    async def exchange_code(self, shop: str, code: str) -> Token: ...


def _escape(text: str, *, key: bool) -> str:
    text = text.replace("%", "%25").replace("&", "%26")
    return text.replace("=", "%3D") if key else text


def query_signature(params: Mapping[str, str], secret: str) -> str:
    """The ``hmac`` Shopify puts on a redirect query with these parameters."""
    message = "&".join(
        f"{_escape(key, key=True)}={_escape(value, key=False)}"
        for key, value in sorted(params.items())
        if key not in ("hmac", "signature")
    )
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def admin_host(shop: str) -> str:
    """The ``host`` parameter of a redirect: base64 of the shop's admin URL host and path."""
    name = shop.removesuffix(".myshopify.com")
    return base64.b64encode(f"admin.shopify.com/store/{name}".encode()).decode().rstrip("=")


def signed_query(params: Mapping[str, str], secret: str) -> dict[str, str]:
    """``params`` with their ``hmac`` added."""
    return {**params, "hmac": query_signature(params, secret)}


async def complete_code_flow(
    oauth: SupportsCodeGrant, query: Mapping[str, str], state: str
) -> Token:
    """Have ``oauth`` verify the redirect ``query`` (sync or async), then exchange its code."""
    verified = oauth.verify_callback(query, state=state)
    if inspect.isawaitable(verified):
        verified = await verified
    return await oauth.exchange_code(verified.get("shop", query["shop"]), query["code"])
