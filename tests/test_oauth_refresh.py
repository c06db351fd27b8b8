import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import attrs
import httpx
import pytest

from shoptoken._errors import ReauthorizationRequired, RefreshFailed, ShopTokenError
from shoptoken._keys import TokenKey
from shoptoken._oauth._admin import ShopifyOAuth
from shoptoken._oauth._token_endpoint import parse_retry_after
from shoptoken._token import ASSUMED_LIFETIME, Token

from ._endpoint import EPOCH, FakeClock, Reply, at, fail_with, respond
from ._logs import captured_events

CLIENT_ID = "app-client-id"
CLIENT_SECRET = "client-secret-s3cr3t"
OLD_CLIENT_SECRET = "old-client-secret-0ld"
OLD_ACCESS = "old-access-token-value"
OLD_REFRESH = "old-refresh-token-value"
NEW_ACCESS = "new-access-token-value"
NEW_REFRESH = "new-refresh-token-value"
SECRETS = (CLIENT_SECRET, OLD_CLIENT_SECRET, OLD_ACCESS, OLD_REFRESH, NEW_ACCESS, NEW_REFRESH)

KEY = TokenKey.offline("my-store")
URL = "https://my-store.myshopify.com/admin/oauth/access_token"
TOKEN = Token(
    access_token=OLD_ACCESS,
    refresh_token=OLD_REFRESH,
    scope="read_orders",
    expires_at=datetime(2027, 1, 15, 8, 0, tzinfo=UTC),
    refresh_token_expires_at=datetime(2027, 4, 1, tzinfo=UTC),
)
GOOD_BODY: dict[str, Any] = {
    "access_token": NEW_ACCESS,
    "scope": "read_orders,write_orders",
    "expires_in": 3600,
    "refresh_token": NEW_REFRESH,
    "refresh_token_expires_in": 7_776_000,
}


@attrs.define
class FakeShopify:
    """A tiny fake token endpoint: records each request and answers with ``reply``."""

    reply: Reply = attrs.field(default=lambda _request: httpx.Response(200, json=GOOD_BODY))
    requests: list[httpx.Request] = attrs.Factory(list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Record and answer one request."""
        self.requests.append(request)
        return self.reply(request)


@pytest.fixture
def clock() -> FakeClock:
    """The wall clock the client under test is built with."""
    return FakeClock()


@pytest.fixture
def server() -> FakeShopify:
    """The fake token endpoint; tests set its ``reply``."""
    return FakeShopify()


@pytest.fixture
async def oauth(server: FakeShopify, clock: FakeClock) -> AsyncIterator[ShopifyOAuth]:
    """A ShopifyOAuth talking to ``server`` through an injected MockTransport client."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        yield ShopifyOAuth(
            CLIENT_ID, CLIENT_SECRET, http=http, old_client_secret=OLD_CLIENT_SECRET, clock=clock
        )


# --- request shape and success ----------------------------------------------------------------


async def test_request_shape(oauth: ShopifyOAuth, server: FakeShopify) -> None:
    """Refresh POSTs the documented JSON grant to the shop's token endpoint."""
    await oauth.refresh(KEY, TOKEN)
    [request] = server.requests
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "refresh_token",
        "refresh_token": OLD_REFRESH,
    }


async def test_success_dated_from_send_time(oauth: ShopifyOAuth, clock: FakeClock) -> None:
    """A 200 answer becomes a Token whose lifetimes count from the constructor clock."""
    token = await oauth.refresh(KEY, TOKEN)
    assert token == Token(
        access_token=NEW_ACCESS,
        refresh_token=NEW_REFRESH,
        scope="read_orders,write_orders",
        expires_at=at(3600),
        refresh_token_expires_at=at(7_776_000),
        obtained_at=at(0),
    )
    assert clock.readings == 1


async def test_clock_argument_overrides_constructor_clock(
    oauth: ShopifyOAuth, clock: FakeClock
) -> None:
    """A ``clock=`` passed to refresh dates the token; the constructor's clock is not read."""
    token = await oauth.refresh(KEY, TOKEN, clock=lambda: EPOCH + 1000)
    assert token.expires_at == at(1000 + 3600)
    assert clock.readings == 0


async def test_slow_answer_does_not_make_token_younger(
    oauth: ShopifyOAuth, server: FakeShopify, clock: FakeClock
) -> None:
    """The clock is read once before sending; time passing during the request is ignored."""

    def slow(_request: httpx.Request) -> httpx.Response:
        clock.now += 500  # the answer "arrives" 500 s later
        return httpx.Response(200, json=GOOD_BODY)

    server.reply = slow
    token = await oauth.refresh(KEY, TOKEN)
    assert token.expires_at == at(3600)
    assert clock.readings == 1


async def test_advancing_clock_first_reading_used(oauth: ShopifyOAuth) -> None:
    """With a clock that advances on every call, the first reading dates the token."""
    readings = iter(EPOCH + 100.0 * n for n in range(100))
    token = await oauth.refresh(KEY, TOKEN, clock=lambda: next(readings))
    assert token.expires_at == at(3600)
    assert next(readings) == EPOCH + 100  # read exactly once


async def test_missing_expires_in_still_expiring(oauth: ShopifyOAuth, server: FakeShopify) -> None:
    """A refresh answer without expires_in still yields an expiring, refreshable token."""
    server.reply = respond(200, {"access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH})
    token = await oauth.refresh(KEY, TOKEN)
    assert token.expires_at == at(ASSUMED_LIFETIME)
    assert token.refresh_token == NEW_REFRESH


async def test_answer_without_refresh_token_keeps_old_one(
    oauth: ShopifyOAuth, server: FakeShopify
) -> None:
    """An answer without a refresh token keeps the old one (RFC 6749 section 6), still expiring."""
    server.reply = respond(200, {"access_token": NEW_ACCESS, "scope": "read_orders"})
    with captured_events() as logs:
        token = await oauth.refresh(KEY, TOKEN)
    assert token.access_token == NEW_ACCESS
    assert token.refresh_token == OLD_REFRESH
    assert token.refresh_token_expires_at == TOKEN.refresh_token_expires_at
    assert token.expires_at == at(ASSUMED_LIFETIME)
    assert [entry["event"] for entry in logs] == ["shoptoken.oauth.refresh_token_kept"]


async def test_any_2xx_is_success(oauth: ShopifyOAuth, server: FakeShopify) -> None:
    """A 2xx other than 200 with a token body is accepted."""
    server.reply = respond(201, GOOD_BODY)
    token = await oauth.refresh(KEY, TOKEN)
    assert token.access_token == NEW_ACCESS


# --- no HTTP call ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "token", "words"),
    [
        (TokenKey.online("my-store", user_id=1), TOKEN, "exchange a new session token"),
        (TokenKey.customer("my-store", "gid://shopify/Customer/1"), TOKEN, "CustomerAccountOAuth"),
        (KEY, attrs.evolve(TOKEN, refresh_token=None), "no refresh token"),
    ],
    ids=["online", "customer", "no-refresh-token"],
)
async def test_unrefreshable_without_http(
    oauth: ShopifyOAuth, server: FakeShopify, key: TokenKey, token: Token, words: str
) -> None:
    """Online and customer keys, and tokens without a refresh token, fail with no HTTP call."""
    with pytest.raises(ReauthorizationRequired, match=words) as info:
        await oauth.refresh(key, token)
    assert info.value.key == key
    assert server.requests == []


# --- error mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (respond(400, {"error": "invalid_grant", "error_description": "token expired"}), 400),
        (respond(401, {"error": "invalid_request", "error_description": "bad token"}), 401),
        (respond(401, {"errors": "[API] Invalid API key or access token"}), 401),
        (respond(401, text="<html><body>Unauthorized</body></html>"), 401),
    ],
    ids=["400-invalid_grant", "401-json", "401-admin-errors", "401-html"],
)
async def test_dead_refresh_token_requires_reauthorization(
    oauth: ShopifyOAuth, server: FakeShopify, reply: Reply, status: int
) -> None:
    """400 invalid_grant and any 401 raise ReauthorizationRequired quoting status and code."""
    server.reply = reply
    with pytest.raises(ReauthorizationRequired) as info:
        await oauth.refresh(KEY, TOKEN)
    assert not isinstance(info.value, RefreshFailed)
    assert info.value.key == KEY
    assert f"HTTP {status}" in str(info.value)
    assert "<html>" not in str(info.value)


async def test_reauthorization_message_quotes_shopify(
    oauth: ShopifyOAuth, server: FakeShopify
) -> None:
    """The message carries Shopify's error code and description."""
    server.reply = respond(400, {"error": "invalid_grant", "error_description": "token revoked"})
    with pytest.raises(ReauthorizationRequired) as info:
        await oauth.refresh(KEY, TOKEN)
    assert "HTTP 400 invalid_grant: token revoked" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body", "text"),
    [
        (500, {"error": "server_error"}, None),
        (502, None, "<html><h1>502 Bad Gateway</h1></html>"),
        (503, None, "Service Unavailable"),
        (504, None, ""),
        (520, None, "<html>Cloudflare: unknown error</html>"),
        (408, None, "Request Timeout"),
    ],
)
async def test_server_errors_are_transient(
    oauth: ShopifyOAuth, server: FakeShopify, status: int, body: object, text: str | None
) -> None:
    """5xx (520 included) and 408 raise a transient RefreshFailed with the status."""
    server.reply = respond(status, body, text=text)
    with pytest.raises(RefreshFailed) as info:
        await oauth.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.key, exc.status, exc.transient, exc.retry_after) == (KEY, status, True, None)
    assert exc.error == (None if body is None else "server_error")
    assert "<html>" not in str(exc)


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": format_datetime(at(120), usegmt=True)}, 120.0),
        ({"Retry-After": format_datetime(at(-60), usegmt=True)}, 0.0),
        ({}, None),
        ({"Retry-After": "soon"}, None),
    ],
    ids=["delta-seconds", "http-date", "date-in-past", "absent", "garbage"],
)
async def test_rate_limited(
    oauth: ShopifyOAuth,
    server: FakeShopify,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    """429 raises a transient RefreshFailed carrying the parsed Retry-After."""
    server.reply = respond(429, {"errors": "Exceeded 2 calls per second"}, headers=headers)
    with pytest.raises(RefreshFailed) as info:
        await oauth.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.key, exc.status, exc.transient, exc.retry_after) == (KEY, 429, True, retry_after)


async def test_retry_after_on_503(oauth: ShopifyOAuth, server: FakeShopify) -> None:
    """A 503's Retry-After is honoured too."""
    server.reply = respond(503, text="down", headers={"Retry-After": "30"})
    with pytest.raises(RefreshFailed) as info:
        await oauth.refresh(KEY, TOKEN)
    assert info.value.retry_after == 30.0


@pytest.mark.parametrize(
    ("status", "body", "fields"),
    [
        (400, {"error": "invalid_client", "error_description": "bad"}, ("invalid_client", "bad")),
        (400, {"error": "invalid_request", "error_description": "no"}, ("invalid_request", "no")),
        (400, "<html>Bad Request</html>", (None, None)),
        (403, {"errors": "Forbidden"}, (None, "Forbidden")),
        (404, "Not Found", (None, None)),
        (402, {"errors": "Unavailable Shop"}, (None, "Unavailable Shop")),
        (302, "", (None, None)),
    ],
    ids=["invalid_client", "invalid_request", "400-html", "403", "404", "402", "302"],
)
async def test_client_errors_are_permanent(
    oauth: ShopifyOAuth,
    server: FakeShopify,
    status: int,
    body: object,
    fields: tuple[str | None, str | None],
) -> None:
    """Other 4xx (and stray 3xx) raise a non-transient RefreshFailed with Shopify's fields."""
    if isinstance(body, str):
        server.reply = respond(status, text=body, headers={"Retry-After": "5"})
    else:
        server.reply = respond(status, body, headers={"Retry-After": "5"})
    with pytest.raises(RefreshFailed) as info:
        await oauth.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.key, exc.status, exc.transient, exc.retry_after) == (KEY, status, False, None)
    assert (exc.error, exc.error_description) == fields


async def test_long_and_unprintable_description_is_cleaned(
    oauth: ShopifyOAuth, server: FakeShopify
) -> None:
    """Shopify's description is truncated to about 200 characters and made ASCII-safe."""
    description = "caf\u00e9\nline two \x1b[31m " + "x" * 1000
    server.reply = respond(400, {"error": "invalid_request", "error_description": description})
    with pytest.raises(RefreshFailed) as info:
        await oauth.refresh(KEY, TOKEN)
    shown = info.value.error_description
    assert shown is not None
    assert shown.startswith("caf\\xe9\\nline two \\x1b[31m xxx")
    assert shown.endswith("...")
    assert len(shown) <= 203
    assert str(info.value).isascii()
    assert "\n" not in str(info.value)


# --- network errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc_type", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError]
)
async def test_network_errors_are_transient(
    oauth: ShopifyOAuth, server: FakeShopify, exc_type: type[httpx.TransportError]
) -> None:
    """No answer at all raises a transient RefreshFailed with no status, chained to the cause."""
    server.reply = fail_with(exc_type)
    with pytest.raises(RefreshFailed) as info:
        await oauth.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.key, exc.status, exc.transient, exc.error) == (KEY, None, True, None)
    assert isinstance(exc.__cause__, exc_type)
    assert exc_type.__name__ in str(exc)


# --- malformed 2xx bodies -------------------------------------------------------------------------

MALFORMED: dict[str, bytes] = {
    "not-json": b"<html><body>Welcome to my-store</body></html>",
    "empty": b"",
    "truncated": json.dumps(GOOD_BODY)[:40].encode(),
    "json-array": json.dumps([GOOD_BODY]).encode(),
    "json-null": b"null",
    "no-access-token": json.dumps({**GOOD_BODY, "access_token": None}).encode(),
    "negative-expires-in": json.dumps({**GOOD_BODY, "expires_in": -5}).encode(),
    "huge-expires-in": json.dumps({**GOOD_BODY, "expires_in": 10**12}).encode(),
    "string-expires-in": json.dumps({**GOOD_BODY, "expires_in": "soon"}).encode(),
    "unicode-digit-expires-in": json.dumps({**GOOD_BODY, "expires_in": "\u00b2"}).encode(),
    "giant-digit-string": json.dumps({**GOOD_BODY, "expires_in": "9" * 5000}).encode(),
    "deeply-nested": b"[" * 100_000,
    "bad-utf8": b'{"access_token": "\xff\xfe"}',
}


@pytest.mark.parametrize("content", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_success_body_is_transient(
    oauth: ShopifyOAuth, server: FakeShopify, content: bytes
) -> None:
    """A 2xx body that is no usable token raises a transient RefreshFailed(invalid_response)."""

    def reply(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content, headers={"Content-Type": "application/json"})

    server.reply = reply
    with pytest.raises(RefreshFailed) as info:
        await oauth.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.key, exc.status, exc.error, exc.transient) == (KEY, 200, "invalid_response", True)
    assert exc.__cause__ is None
    assert exc.__context__ is None


# --- secrets --------------------------------------------------------------------------------------

# Every failure, with bodies that put the secrets where a careless client would echo them.
ECHOING_FAILURES: dict[str, Reply] = {
    "invalid_grant": respond(
        400,
        {
            "error": "invalid_grant",
            "error_description": f"refresh token {OLD_REFRESH} is revoked; secret {CLIENT_SECRET}",
            "access_token": NEW_ACCESS,
        },
    ),
    "401-html": respond(401, text=f"<p>{CLIENT_SECRET} {OLD_REFRESH} {NEW_ACCESS}</p>"),
    "401-old-secret": respond(
        401, {"error": "invalid_client", "error_description": OLD_CLIENT_SECRET}
    ),
    "429": respond(
        429,
        {"errors": f"slow down {NEW_ACCESS}", "access_token": NEW_ACCESS},
        headers={"Retry-After": "1"},
    ),
    "500": respond(
        500,
        {
            "error": NEW_ACCESS,
            "error_description": NEW_REFRESH,
            "access_token": NEW_ACCESS,
            "refresh_token": NEW_REFRESH,
        },
    ),
    "shopify-shaped": respond(
        400, {"error": "invalid_request", "error_description": "got shpat_0123abcdef"}
    ),
    "403": respond(403, text=json.dumps({"access_token": NEW_ACCESS, "token": OLD_REFRESH})),
    "network": fail_with(httpx.ConnectError),
    "timeout": fail_with(httpx.ReadTimeout),
    "protocol": fail_with(httpx.RemoteProtocolError),
    "non-json-200": respond(200, text=f"access_token={NEW_ACCESS}&refresh_token={NEW_REFRESH}"),
    "truncated-200": respond(200, text=json.dumps(GOOD_BODY)[:60]),
    "negative-expires-in": respond(200, {**GOOD_BODY, "expires_in": -1}),
    "huge-expires-in": respond(200, {**GOOD_BODY, "refresh_token_expires_in": 1e300}),
    "no-access-token": respond(200, {**GOOD_BODY, "access_token": ""}),
    "array-200": respond(200, [NEW_ACCESS, NEW_REFRESH]),
    "bad-scope": respond(200, {**GOOD_BODY, "scope": [NEW_ACCESS]}),
}


@pytest.mark.parametrize("reply", ECHOING_FAILURES.values(), ids=ECHOING_FAILURES.keys())
async def test_no_secret_in_errors_reprs_or_logs(
    oauth: ShopifyOAuth, server: FakeShopify, reply: Reply
) -> None:
    """No secret reaches str(exc), repr(exc), the error's fields, repr(oauth) or any log event."""
    server.reply = reply
    with captured_events() as logs, pytest.raises(ShopTokenError) as info:
        await oauth.refresh(KEY, TOKEN)
    exc = info.value
    assert logs  # the failure was logged, so the log check below is not vacuous
    surfaces = [str(exc), repr(exc), repr(vars(exc)), repr(oauth), repr(logs)]
    for surface in surfaces:
        for secret in (*SECRETS, "shpat_0123abcdef"):
            assert secret not in surface


@pytest.mark.parametrize(
    ("key", "token"),
    [
        (TokenKey.online("my-store", user_id=1), TOKEN),
        (TokenKey.customer("my-store", "gid://shopify/Customer/1"), TOKEN),
        (KEY, attrs.evolve(TOKEN, refresh_token=None)),
    ],
    ids=["online", "customer", "no-refresh-token"],
)
async def test_no_secret_in_unrefreshable_errors(
    oauth: ShopifyOAuth, key: TokenKey, token: Token
) -> None:
    """The no-HTTP refusals carry no secret either."""
    with captured_events() as logs, pytest.raises(ReauthorizationRequired) as info:
        await oauth.refresh(key, token)
    for surface in [str(info.value), repr(info.value), repr(oauth), repr(logs)]:
        for secret in SECRETS:
            assert secret not in surface


def test_repr_hides_secrets() -> None:
    """repr(ShopifyOAuth) shows the client id but neither secret."""
    oauth = ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, old_client_secret=OLD_CLIENT_SECRET)
    shown = repr(oauth)
    assert CLIENT_ID in shown
    assert CLIENT_SECRET not in shown
    assert OLD_CLIENT_SECRET not in shown


# --- construction and lifecycle -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("", CLIENT_SECRET), {}),
        ((CLIENT_ID, ""), {}),
        ((CLIENT_ID, None), {}),
        ((CLIENT_ID, CLIENT_SECRET), {"old_client_secret": ""}),
    ],
    ids=["empty-id", "empty-secret", "none-secret", "empty-old-secret"],
)
def test_rejects_empty_credentials(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Empty or missing client id or secrets raise ValueError."""
    with pytest.raises(ValueError, match="must be a non-empty str"):
        ShopifyOAuth(*args, **kwargs)


async def test_owned_client_created_lazily_and_closed() -> None:
    """Without ``http=`` a 30 s-timeout client is created on first use and closed on exit."""
    async with ShopifyOAuth(CLIENT_ID, CLIENT_SECRET) as oauth:
        assert oauth._http is None
        http = oauth._client()
        assert oauth._client() is http
        assert http.timeout == httpx.Timeout(30.0)
    assert http.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await oauth.refresh(KEY, TOKEN)


async def test_aclose_without_use_is_harmless() -> None:
    """Closing a client that never made a request creates nothing and does not fail."""
    oauth = ShopifyOAuth(CLIENT_ID, CLIENT_SECRET)
    await oauth.aclose()
    await oauth.aclose()
    assert oauth._http is None


async def test_injected_client_is_not_closed(server: FakeShopify) -> None:
    """Closing the ShopifyOAuth leaves an injected http client open for its owner."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        async with ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http) as oauth:
            await oauth.refresh(KEY, TOKEN)
        assert not http.is_closed
        assert len(server.requests) == 1


# --- parse_retry_after ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("1e3", None),
        ("9" * 50, None),
        ("", None),
        (format_datetime(at(90), usegmt=True), 90.0),
        ("Fri, 15 Jan 2027 08:01:00 -0000", 60.0),
        (format_datetime(at(-3600), usegmt=True), 0.0),
        ("Fri, 99 Jan 2027 08:01:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After parses delta-seconds and HTTP-dates; anything else is None."""
    assert parse_retry_after(value, now=EPOCH) == expected


def test_epoch_is_what_the_comments_say() -> None:
    """EPOCH is 2027-01-15T08:00:00Z, which the literal HTTP-date above relies on."""
    assert at(0) == datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    assert at(60) - at(0) == timedelta(seconds=60)
