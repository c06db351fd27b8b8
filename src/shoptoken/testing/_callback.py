"""Signing OAuth redirect queries the way Shopify does.

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping


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
