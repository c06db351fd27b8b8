"""Customer Account API endpoints: discovery, and which hosts may receive a token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs
import httpx

from ._token_endpoint import safe_excerpt

SHOPIFY_HOST: Final = "shopify.com"
_URL_LIMIT: Final = 120
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})


@attrs.frozen
class CustomerAccountEndpoints:
    """Where a shop's customers log in and where their tokens are issued.

    Attributes:
        authorization_endpoint: The login page the customer is sent to.
        token_endpoint: Where codes and refresh tokens are traded for tokens.
    """

    authorization_endpoint: str
    token_endpoint: str


class DiscoveryError(ValueError):
    """A discovery document is unusable (``untrusted``: it names a host we refuse)."""

    def __init__(self, message: str, *, untrusted: bool) -> None:
        super().__init__(message)
        self.untrusted = untrusted


def _parse_url(value: object, name: str) -> httpx.URL:
    """Parse with httpx's own parser, so what is checked is what gets sent."""
    if not isinstance(value, str) or not value:
        msg = f"{name} is not a URL string"
        raise DiscoveryError(msg, untrusted=False)
    try:
        return httpx.URL(value)
    except (httpx.InvalidURL, ValueError):
        shown = safe_excerpt(value, (), limit=_URL_LIMIT)
        msg = f"{name} {shown!r} is not a valid URL"
        raise DiscoveryError(msg, untrusted=True) from None


def check_discovered_endpoint(value: object, name: str, *, shop: str, shop_id: str) -> str:
    """Accept a discovered endpoint only on Shopify's auth host or the shop's domain.

    Args:
        value: The endpoint as the discovery document gave it.
        name: Its field name, for messages.
        shop: The shop's normalized domain.
        shop_id: The shop's numeric id; an endpoint on ``shopify.com`` must lie
            under ``/authentication/{shop_id}/``.

    Returns:
        The endpoint, normalized.

    Raises:
        DiscoveryError: Not a string (``untrusted=False``), or not https on an
            allowed host and path, or carrying userinfo, a port or a fragment
            (``untrusted=True``).
    """
    url = _parse_url(value, name)
    shown = safe_excerpt(str(value), (), limit=_URL_LIMIT)
    host = url.host
    trusted = (
        url.scheme == "https"
        and not url.userinfo
        and url.port is None
        and not url.fragment
        and (
            host == shop
            or (
                host == SHOPIFY_HOST
                and url.raw_path.startswith(f"/authentication/{shop_id}/".encode())
            )
        )
    )
    if not trusted:
        msg = (
            f"{name} {shown!r} is not https on {SHOPIFY_HOST}/authentication/{shop_id}/ "
            f"or {shop}; refused"
        )
        raise DiscoveryError(msg, untrusted=True)
    return str(url)


def parse_discovery(data: object, *, shop: str, shop_id: str) -> CustomerAccountEndpoints:
    """Read the endpoints from a decoded ``openid-configuration`` document.

    Raises:
        DiscoveryError: The document is not an object, lacks an endpoint
            (``untrusted=False``) or names one `check_discovered_endpoint`
            refuses (``untrusted=True``).
    """
    if not isinstance(data, Mapping):
        msg = "discovery document is not a JSON object"
        raise DiscoveryError(msg, untrusted=False)
    return CustomerAccountEndpoints(
        authorization_endpoint=check_discovered_endpoint(
            data.get("authorization_endpoint"), "authorization_endpoint", shop=shop, shop_id=shop_id
        ),
        token_endpoint=check_discovered_endpoint(
            data.get("token_endpoint"), "token_endpoint", shop=shop, shop_id=shop_id
        ),
    )


def explicit_endpoint(value: str | None) -> str | None:
    """Check a configured endpoint: https (plain http only to loopback, for tests)."""
    if value is None:
        return None
    try:
        url = _parse_url(value, "endpoint")
    except DiscoveryError as exc:
        raise ValueError(str(exc)) from None
    secure = url.scheme == "https" or (url.scheme == "http" and url.host in _LOOPBACK)
    if not secure or not url.host or url.userinfo or url.fragment:
        shown = safe_excerpt(value, (), limit=_URL_LIMIT)
        msg = f"endpoint {shown!r} must be an https URL without userinfo or fragment"
        raise ValueError(msg)
    return str(url)
