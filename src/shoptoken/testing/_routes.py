"""Which of the fake's endpoints a request is for, and how its body reads."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

from ._answer import Answer
from ._faults import Endpoint
from ._routing import ACCOUNTS_HOST

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from ._admin import AdminAuthority
    from ._customer_accounts import CustomerAccounts

_VERSION: Final = r"(?:\d{4}-\d{2}|unstable)"
_ADMIN_API: Final = re.compile(rf"/admin/api/{_VERSION}/(graphql|shop)\.json")
_CUSTOMER_API: Final = re.compile(rf"/customer/api/{_VERSION}/graphql")
_CUSTOMER_TOKEN: Final = re.compile(r"/authentication/(\d{1,20})/oauth/token")
_FORM: Final = "application/x-www-form-urlencoded"

#: An endpoint and the (synchronous) computation of its answer.
Route = tuple[Endpoint, "Callable[[], Answer]"]


def _media_type(request: httpx.Request) -> str:
    return str(request.headers.get("content-type", "")).split(";")[0].strip().lower()


def read_params(request: httpx.Request) -> dict[str, str] | None:
    """The request's parameters, from a JSON object or a form; None if unreadable.

    JSON numbers and booleans read as their form spelling (``"expiring": 1``
    is ``expiring=1``), as Shopify takes either body.
    """
    try:
        text = request.content.decode()
        if _media_type(request) == _FORM:
            return dict(parse_qsl(text, keep_blank_values=True))
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {
        str(name): ("1" if value is True else "0" if value is False else str(value))
        for name, value in data.items()
        if value is not None
    }


def _admin_token(admin: AdminAuthority, host: str, request: httpx.Request) -> Answer:
    params = read_params(request)
    if params is None:
        return Answer.error(400, "invalid_request", "The body is not JSON or a form")
    return admin.token_endpoint(host, params)


def _admin_data(shop: str, *, graphql: bool) -> object:
    name = shop.removesuffix(".myshopify.com")
    shop_data = {"name": name, "myshopify_domain": shop}
    return {"data": {"shop": shop_data}} if graphql else {"shop": shop_data}


def route_request(  # noqa: PLR0911 - one return per endpoint
    admin: AdminAuthority, customers: CustomerAccounts, host: str, request: httpx.Request
) -> Route | None:
    """The endpoint ``request`` is for and how to answer it; None for a 404.

    Args:
        admin: The Admin side of the fake.
        customers: The Customer Account side.
        host: The request's (checked) Shopify host.
        request: The request.
    """
    path, method = request.url.path, request.method
    if host == ACCOUNTS_HOST:
        match = _CUSTOMER_TOKEN.fullmatch(path)
        if match is None or method != "POST":
            return None
        # Forms only, as Shopify's customer token endpoint.
        params = read_params(request) if _media_type(request) == _FORM else None
        auth = request.headers.get("authorization")
        return Endpoint.CUSTOMER_TOKEN, lambda: customers.token_endpoint(match[1], params, auth)
    if path == "/admin/oauth/access_token" and method == "POST":
        return Endpoint.ADMIN_TOKEN, lambda: _admin_token(admin, host, request)
    if (match := _ADMIN_API.fullmatch(path)) and method in ("GET", "POST"):
        token = request.headers.get("x-shopify-access-token", "")
        data = _admin_data(host, graphql=match[1] == "graphql")
        return Endpoint.ADMIN_API, lambda: admin.api_call(host, token, data)
    if path == "/.well-known/openid-configuration" and method == "GET":
        return Endpoint.DISCOVERY, lambda: customers.discovery(host)
    if _CUSTOMER_API.fullmatch(path) and method == "POST":
        auth = request.headers.get("authorization", "")
        return Endpoint.CUSTOMER_API, lambda: customers.api_call(host, auth)
    return None
