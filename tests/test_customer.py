import base64
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoptoken import MemoryStore, TokenKind, open_token_manager
from shoptoken._errors import (
    InvalidShopDomain,
    ReauthorizationRequired,
    RefreshFailed,
    ShopTokenError,
)
from shoptoken._keys import TokenKey
from shoptoken._oauth._customer import DEFAULT_SCOPES, CustomerAccountOAuth
from shoptoken._oauth._discovery import (
    CustomerAccountEndpoints,
    DiscoveryError,
    check_discovered_endpoint,
)
from shoptoken._oauth._pkce import new_pkce, pkce_challenge
from shoptoken._token import ASSUMED_LIFETIME, Token
from shoptoken.testing import trio_wall_clock

from ._endpoint import EPOCH, FakeClock, Reply, at, fail_with, form, respond
from ._logs import captured_events

SHOP = "my-store.myshopify.com"
SHOP_ID = "1234567"
CLIENT_ID = "shp_0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
CLIENT_SECRET = "customer-client-s3cr3t"
BASIC = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
OLD_ACCESS = "old-customer-access-value"
OLD_REFRESH = "old-customer-refresh-value"
NEW_ACCESS = "new-customer-access-value"
NEW_REFRESH = "new-customer-refresh-value"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnaWQ6Ly9zaG9waWZ5In0.c2lnbmF0dXJlLXZhbHVl"
CODE = "authorization-code-value"
# RFC 7636 appendix B: the verifier is 32 random octets, base64url-encoded; the
# challenge is base64url(sha256(verifier)). The octets are quoted from the RFC.
# fmt: off
RFC_VERIFIER_OCTETS = bytes([
    116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
    22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
])
RFC_CHALLENGE_OCTETS = bytes([
    19, 211, 30, 150, 26, 26, 216, 236, 47, 22, 177, 12, 76, 152, 46, 8,
    118, 168, 120, 173, 109, 241, 68, 86, 110, 225, 137, 74, 203, 112, 249, 195,
])
# fmt: on
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
SECRETS = (
    CLIENT_SECRET,
    BASIC,
    OLD_ACCESS,
    OLD_REFRESH,
    NEW_ACCESS,
    NEW_REFRESH,
    ID_TOKEN,
    CODE,
    RFC_VERIFIER,
)
REDIRECT_URI = "https://shop.example.com/account/callback"

KEY = TokenKey.customer(SHOP, "gid://shopify/Customer/42")
AUTH_BASE = f"https://shopify.com/authentication/{SHOP_ID}"
AUTHORIZE_URL = f"{AUTH_BASE}/oauth/authorize"
TOKEN_URL = f"{AUTH_BASE}/oauth/token"
DISCOVERY_URL = f"https://{SHOP}/.well-known/openid-configuration"
# Discovered endpoints differ from the defaults, so a test can tell which was used.
DISCOVERED_TOKEN_URL = f"{AUTH_BASE}/oauth/v2/token"
DISCOVERED_AUTHORIZE_URL = f"{AUTH_BASE}/oauth/v2/authorize"
DISCOVERY: dict[str, Any] = {
    "issuer": AUTH_BASE,
    "authorization_endpoint": DISCOVERED_AUTHORIZE_URL,
    "token_endpoint": DISCOVERED_TOKEN_URL,
    "end_session_endpoint": f"{AUTH_BASE}/logout",
    "jwks_uri": f"{AUTH_BASE}/.well-known/jwks.json",
    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    "code_challenge_methods_supported": ["S256"],
}
TOKEN = Token(
    access_token=OLD_ACCESS,
    refresh_token=OLD_REFRESH,
    expires_at=datetime(2027, 1, 15, 8, 0, tzinfo=UTC),
)
GOOD_BODY: dict[str, Any] = {
    "access_token": NEW_ACCESS,
    "expires_in": 3600,
    "id_token": ID_TOKEN,
    "refresh_token": NEW_REFRESH,
    "token_type": "Bearer",
}


@attrs.define
class FakeCustomerAccounts:
    """Shopify's discovery document and token endpoint: records requests, answers by route."""

    discovery: Reply = attrs.field(factory=lambda: respond(200, DISCOVERY))
    token: Reply = attrs.field(factory=lambda: respond(200, GOOD_BODY))
    latency: float = 0.0
    requests: list[httpx.Request] = attrs.Factory(list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """Record one request, take ``latency`` trio seconds, answer it."""
        self.requests.append(request)
        if self.latency:
            await trio.sleep(self.latency)
        if request.method == "GET" and request.url.path == "/.well-known/openid-configuration":
            return self.discovery(request)
        return self.token(request)

    @property
    def gets(self) -> list[httpx.Request]:
        """The discovery requests."""
        return [request for request in self.requests if request.method == "GET"]

    @property
    def posts(self) -> list[httpx.Request]:
        """The token requests."""
        return [request for request in self.requests if request.method == "POST"]


Build = Callable[..., CustomerAccountOAuth]


@pytest.fixture
def clock() -> FakeClock:
    """The wall clock the client under test is built with."""
    return FakeClock()


@pytest.fixture
def server() -> FakeCustomerAccounts:
    """The fake Shopify; tests set its replies."""
    return FakeCustomerAccounts()


@pytest.fixture
async def build(server: FakeCustomerAccounts, clock: FakeClock) -> AsyncIterator[Build]:
    """Build clients talking to ``server`` through one injected MockTransport client."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:

        def make(**kwargs: Any) -> CustomerAccountOAuth:
            return CustomerAccountOAuth(SHOP_ID, CLIENT_ID, http=http, clock=clock, **kwargs)

        yield make


@pytest.fixture
def public(build: Build) -> CustomerAccountOAuth:
    """A public client on Shopify's default endpoints (no discovery)."""
    return build()


@pytest.fixture
def confidential(build: Build) -> CustomerAccountOAuth:
    """A confidential client on Shopify's default endpoints."""
    return build(client_secret=CLIENT_SECRET)


@pytest.fixture
def discovering(build: Build) -> CustomerAccountOAuth:
    """A confidential client that discovers its endpoints from the shop."""
    return build(client_secret=CLIENT_SECRET, shop=SHOP)


# --- PKCE -----------------------------------------------------------------------------------------


def test_pkce_rfc7636_test_vector() -> None:
    """The S256 challenge of RFC 7636 appendix B's verifier is the RFC's value."""
    assert base64.urlsafe_b64encode(RFC_VERIFIER_OCTETS).rstrip(b"=").decode() == RFC_VERIFIER
    assert base64.urlsafe_b64encode(RFC_CHALLENGE_OCTETS).rstrip(b"=").decode() == RFC_CHALLENGE
    assert pkce_challenge(RFC_VERIFIER) == RFC_CHALLENGE


def test_new_pkce_verifier_shape() -> None:
    """new_pkce gives a fresh 43-128 char unreserved verifier and its matching challenge."""
    pairs = [new_pkce() for _ in range(50)]
    for verifier, challenge in pairs:
        assert 43 <= len(verifier) <= 128
        assert re.fullmatch(r"[A-Za-z0-9._~-]+", verifier)
        assert challenge == pkce_challenge(verifier)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge)  # 32 bytes, unpadded
    assert len({verifier for verifier, _ in pairs}) == len(pairs)


@pytest.mark.parametrize(
    "verifier",
    ["a" * 42, "a" * 129, "a" * 42 + " ", "a" * 42 + "+", "a" * 42 + "\u00e9", "", None, b"a" * 43],
    ids=["short", "long", "space", "plus", "non-ascii", "empty", "none", "bytes"],
)
def test_pkce_rejects_bad_verifiers(verifier: Any) -> None:
    """Verifiers outside RFC 7636's 43-128 unreserved characters raise, without echoing them."""
    with pytest.raises(ValueError, match="RFC 7636") as info:
        pkce_challenge(verifier)
    if verifier:
        assert str(verifier) not in str(info.value)


def test_pkce_accepts_the_limits() -> None:
    """43 and 128 characters, and every unreserved character, are accepted."""
    for verifier in ("a" * 43, "Z" * 128, "azAZ09-._~" * 5):
        assert len(pkce_challenge(verifier)) == 43


# --- authorization_url ----------------------------------------------------------------------------


def query_of(url: str) -> dict[str, list[str]]:
    """The query of a URL, every value kept."""
    return parse_qs(urlsplit(url).query, strict_parsing=True)


async def test_authorization_url_public_client(public: CustomerAccountOAuth) -> None:
    """A public client's login URL carries the documented parameters and the S256 challenge."""
    url = public.authorization_url(
        REDIRECT_URI, state="state-123", nonce="nonce-456", code_verifier=RFC_VERIFIER
    )
    assert url.startswith(AUTHORIZE_URL + "?")
    assert query_of(url) == {
        "client_id": [CLIENT_ID],
        "response_type": ["code"],
        "redirect_uri": [REDIRECT_URI],
        "scope": ["openid email customer-account-api:full"],
        "state": ["state-123"],
        "nonce": ["nonce-456"],
        "code_challenge": [RFC_CHALLENGE],
        "code_challenge_method": ["S256"],
    }
    assert RFC_VERIFIER not in url


async def test_authorization_url_scopes_encoded_with_spaces(public: CustomerAccountOAuth) -> None:
    """Scopes are space-separated; custom scopes and a ready-made scope string both work."""
    url = public.authorization_url(
        REDIRECT_URI, scopes=["openid", "email"], state="s", code_verifier=RFC_VERIFIER
    )
    assert query_of(url)["scope"] == ["openid email"]
    assert "nonce" not in query_of(url)
    url = public.authorization_url(
        REDIRECT_URI,
        scopes="openid customer-account-api:full",
        state="s",
        code_verifier=RFC_VERIFIER,
    )
    assert query_of(url)["scope"] == ["openid customer-account-api:full"]
    assert DEFAULT_SCOPES == ("openid", "email", "customer-account-api:full")


async def test_authorization_url_confidential_pkce_optional(
    confidential: CustomerAccountOAuth,
) -> None:
    """A confidential client may skip PKCE; its secret is never in the URL."""
    url = confidential.authorization_url(REDIRECT_URI, state="s")
    assert "code_challenge" not in query_of(url)
    assert CLIENT_SECRET not in url
    with_pkce = confidential.authorization_url(REDIRECT_URI, state="s", code_verifier=RFC_VERIFIER)
    assert query_of(with_pkce)["code_challenge"] == [RFC_CHALLENGE]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"state": "s"}, "PKCE"),
        ({"state": "", "code_verifier": RFC_VERIFIER}, "state"),
        ({"state": "s", "code_verifier": "short"}, "RFC 7636"),
        ({"state": "s", "code_verifier": RFC_VERIFIER, "scopes": ()}, "scopes"),
        ({"state": "s", "code_verifier": RFC_VERIFIER, "nonce": ""}, "nonce"),
        ({"state": "s", "code_verifier": RFC_VERIFIER, "redirect_uri": ""}, "redirect_uri"),
    ],
    ids=[
        "public-without-verifier",
        "empty-state",
        "bad-verifier",
        "no-scopes",
        "empty-nonce",
        "no-redirect",
    ],
)
async def test_authorization_url_misuse(
    public: CustomerAccountOAuth, kwargs: dict[str, Any], words: str
) -> None:
    """Missing PKCE for a public client, or empty or malformed arguments, raise ValueError."""
    redirect_uri = kwargs.pop("redirect_uri", REDIRECT_URI)
    with pytest.raises(ValueError, match=words):
        public.authorization_url(redirect_uri, **kwargs)


async def test_authorization_url_needs_discovery_first(
    discovering: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """With a shop, the login URL waits for discover(); then it uses the discovered endpoint."""
    with pytest.raises(RuntimeError, match=r"await discover\(\) first"):
        discovering.authorization_url(REDIRECT_URI, state="s")
    assert await discovering.discover() == CustomerAccountEndpoints(
        DISCOVERED_AUTHORIZE_URL, DISCOVERED_TOKEN_URL
    )
    url = discovering.authorization_url(REDIRECT_URI, state="s")
    assert url.startswith(DISCOVERED_AUTHORIZE_URL + "?")
    assert len(server.gets) == 1


async def test_authorization_url_keeps_endpoint_query(build: Build) -> None:
    """An explicit login endpoint with its own query gets the parameters appended with '&'."""
    oauth = build(authorization_endpoint="https://login.example.com/authorize?tenant=7")
    url = oauth.authorization_url(REDIRECT_URI, state="s", code_verifier=RFC_VERIFIER)
    assert url.startswith("https://login.example.com/authorize?tenant=7&client_id=")
    assert query_of(url)["tenant"] == ["7"]


# --- exchange_code --------------------------------------------------------------------------------


async def test_exchange_code_public_client(
    public: CustomerAccountOAuth, server: FakeCustomerAccounts, clock: FakeClock
) -> None:
    """A public client POSTs the form-encoded code grant with its verifier and no secret."""
    token = await public.exchange_code(CODE, REDIRECT_URI, code_verifier=RFC_VERIFIER)
    [request] = server.requests
    assert (request.method, str(request.url)) == ("POST", TOKEN_URL)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    assert "authorization" not in request.headers
    assert form(request) == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "code": CODE,
        "code_verifier": RFC_VERIFIER,
    }
    assert token == Token(
        access_token=NEW_ACCESS, refresh_token=NEW_REFRESH, expires_at=at(3600), obtained_at=at(0)
    )
    assert clock.readings == 1


async def test_exchange_code_confidential_client_uses_basic_auth(
    confidential: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """A confidential client authenticates with HTTP Basic; the secret is not in the form."""
    await confidential.exchange_code(CODE, REDIRECT_URI)
    [request] = server.requests
    assert request.headers["authorization"] == f"Basic {BASIC}"
    assert form(request) == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "code": CODE,
    }
    assert CLIENT_SECRET.encode() not in request.content


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((CODE, REDIRECT_URI), {}, "PKCE"),
        (("", REDIRECT_URI), {"code_verifier": RFC_VERIFIER}, "code"),
        ((CODE, ""), {"code_verifier": RFC_VERIFIER}, "redirect_uri"),
        ((CODE, REDIRECT_URI), {"code_verifier": "x" * 20}, "RFC 7636"),
    ],
    ids=["public-without-verifier", "empty-code", "empty-redirect", "bad-verifier"],
)
async def test_exchange_code_misuse_without_http(
    public: CustomerAccountOAuth,
    server: FakeCustomerAccounts,
    args: tuple[str, str],
    kwargs: dict[str, str],
    words: str,
) -> None:
    """Bad arguments raise ValueError before any request."""
    with pytest.raises(ValueError, match=words):
        await public.exchange_code(*args, **kwargs)
    assert server.requests == []


async def test_exchange_code_rejected_means_login_again(
    public: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """An expired or reused code (400 invalid_grant) raises ReauthorizationRequired."""
    server.token = respond(400, {"error": "invalid_grant", "error_description": "code expired"})
    with pytest.raises(ReauthorizationRequired, match="log in again") as info:
        await public.exchange_code(CODE, REDIRECT_URI, code_verifier=RFC_VERIFIER)
    assert info.value.key is None
    assert "HTTP 400 invalid_grant: code expired" in str(info.value)


# --- refresh: request shape and success -----------------------------------------------------------


async def test_refresh_public_request_shape(
    public: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """A public refresh POSTs grant_type, refresh_token and client_id, form-encoded, no secret."""
    await public.refresh(KEY, TOKEN)
    [request] = server.requests
    assert (request.method, str(request.url)) == ("POST", TOKEN_URL)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers
    assert form(request) == {
        "grant_type": "refresh_token",
        "refresh_token": OLD_REFRESH,
        "client_id": CLIENT_ID,
    }


async def test_refresh_confidential_request_shape(
    confidential: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """A confidential refresh adds HTTP Basic client_id:client_secret, and nothing to the form."""
    await confidential.refresh(KEY, TOKEN)
    [request] = server.requests
    assert request.headers["authorization"] == f"Basic {BASIC}"
    assert form(request) == {
        "grant_type": "refresh_token",
        "refresh_token": OLD_REFRESH,
        "client_id": CLIENT_ID,
    }


async def test_public_client_ignores_injected_client_auth(server: FakeCustomerAccounts) -> None:
    """An injected http client's default auth is not sent to the token endpoint."""
    transport = httpx.MockTransport(server)
    async with httpx.AsyncClient(transport=transport, auth=("someone", "else")) as http:
        oauth = CustomerAccountOAuth(SHOP_ID, CLIENT_ID, http=http)
        await oauth.refresh(KEY, TOKEN)
    assert "authorization" not in server.requests[0].headers


async def test_refresh_success_dated_from_send_time(
    public: CustomerAccountOAuth, clock: FakeClock
) -> None:
    """A 200 answer becomes a Token dated from the constructor clock, id_token dropped."""
    with captured_events() as logs:
        token = await public.refresh(KEY, TOKEN)
    assert token == Token(
        access_token=NEW_ACCESS, refresh_token=NEW_REFRESH, expires_at=at(3600), obtained_at=at(0)
    )
    assert clock.readings == 1
    assert ID_TOKEN not in repr(logs)
    assert ID_TOKEN not in repr(token)


async def test_refresh_clock_argument_overrides(
    public: CustomerAccountOAuth, clock: FakeClock
) -> None:
    """A ``clock=`` passed to refresh dates the token; the constructor's clock is not read."""
    token = await public.refresh(KEY, TOKEN, clock=lambda: EPOCH + 1000)
    assert token.expires_at == at(1000 + 3600)
    assert clock.readings == 0


async def test_refresh_dated_after_discovery_before_send(
    discovering: CustomerAccountOAuth, server: FakeCustomerAccounts, clock: FakeClock
) -> None:
    """The clock is read once, after a slow discovery, before the POST; answer time is ignored."""

    def slow_discovery(_request: httpx.Request) -> httpx.Response:
        clock.now += 500
        return httpx.Response(200, json=DISCOVERY)

    def slow_token(_request: httpx.Request) -> httpx.Response:
        clock.now += 40
        return httpx.Response(200, json=GOOD_BODY)

    server.discovery, server.token = slow_discovery, slow_token
    token = await discovering.refresh(KEY, TOKEN)
    assert token.expires_at == at(500 + 3600)
    assert clock.readings == 1
    assert str(server.posts[0].url) == DISCOVERED_TOKEN_URL


async def test_refresh_with_trio_wall_clock(
    server: FakeCustomerAccounts, autojump_clock: trio.testing.MockClock
) -> None:
    """Under the mock clock, a token is dated from the moment its request left, not its answer."""
    wall = trio_wall_clock()
    server.latency = 30.0
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        oauth = CustomerAccountOAuth(SHOP_ID, CLIENT_ID, http=http, clock=wall)
        await trio.sleep(100)
        sent = wall()
        token = await oauth.refresh(KEY, TOKEN)
    assert trio.current_time() == 130.0
    assert token.expires_at == datetime.fromtimestamp(sent + 3600, UTC)


async def test_refresh_without_refresh_token_in_answer_keeps_old(
    public: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """An answer without a refresh token keeps the old one and stays expiring."""
    server.token = respond(200, {"access_token": NEW_ACCESS})
    token = await public.refresh(KEY, TOKEN)
    assert (token.access_token, token.refresh_token) == (NEW_ACCESS, OLD_REFRESH)
    assert token.expires_at == at(ASSUMED_LIFETIME)


# --- refresh: refused without HTTP ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [TokenKey.offline(SHOP), TokenKey.online(SHOP, user_id=7)],
    ids=["offline", "online"],
)
async def test_refresh_refuses_admin_keys(
    public: CustomerAccountOAuth, server: FakeCustomerAccounts, key: TokenKey
) -> None:
    """Offline and online keys raise ReauthorizationRequired pointing to ShopifyOAuth, no HTTP."""
    with pytest.raises(ReauthorizationRequired, match="ShopifyOAuth") as info:
        await public.refresh(key, TOKEN)
    assert info.value.key == key
    assert server.requests == []


async def test_refresh_without_refresh_token(
    public: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """A token without a refresh token means logging in again, no HTTP."""
    with pytest.raises(ReauthorizationRequired, match="log in again"):
        await public.refresh(KEY, attrs.evolve(TOKEN, refresh_token=None))
    assert server.requests == []


async def test_refresh_refuses_another_shops_key(
    discovering: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """A client bound to a shop refuses another shop's customer key: permanent, no HTTP."""
    other = TokenKey.customer("other-store", "gid://shopify/Customer/42")
    with pytest.raises(RefreshFailed, match=r"not other-store\.myshopify\.com") as info:
        await discovering.refresh(other, TOKEN)
    assert (info.value.error, info.value.transient, info.value.status) == (
        "wrong_shop",
        False,
        None,
    )
    assert server.requests == []


# --- refresh: error rows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (respond(400, {"error": "invalid_grant", "error_description": "revoked"}), 400),
        (respond(400, {"error": "invalid_request", "error_description": "missing"}), 400),
        (respond(400, {"error": "invalid_client"}), 400),
        (respond(400, text="<html>Bad Request</html>"), 400),
        (respond(401, {"error": "invalid_client"}), 401),
        (respond(401, text="<html>Unauthorized</html>"), 401),
    ],
    ids=["invalid_grant", "invalid_request", "400-invalid_client", "400-html", "401", "401-html"],
)
async def test_dead_grant_means_login_again(
    confidential: CustomerAccountOAuth, server: FakeCustomerAccounts, reply: Reply, status: int
) -> None:
    """Any 400 and any 401 raise ReauthorizationRequired (not RefreshFailed) for the key."""
    server.token = reply
    with pytest.raises(ReauthorizationRequired, match="the customer must log in again") as info:
        await confidential.refresh(KEY, TOKEN)
    assert not isinstance(info.value, RefreshFailed)
    assert info.value.key == KEY
    assert f"HTTP {status}" in str(info.value)
    assert "<html>" not in str(info.value)


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (429, {"Retry-After": "7"}, 7.0),
        (429, {}, None),
        (500, {}, None),
        (502, {}, None),
        (503, {"Retry-After": "30"}, 30.0),
        (504, {}, None),
        (520, {}, None),
        (408, {}, None),
    ],
)
async def test_transient_statuses(
    public: CustomerAccountOAuth,
    server: FakeCustomerAccounts,
    status: int,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    """429, 408 and 5xx raise a transient RefreshFailed with the status and Retry-After."""
    server.token = respond(status, {"error": "temporarily_unavailable"}, headers=headers)
    with pytest.raises(RefreshFailed) as info:
        await public.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.key, exc.status, exc.transient, exc.retry_after) == (KEY, status, True, retry_after)
    assert exc.error == "temporarily_unavailable"


@pytest.mark.parametrize("status", [302, 403, 404, 409, 422])
async def test_other_statuses_are_permanent(
    public: CustomerAccountOAuth, server: FakeCustomerAccounts, status: int
) -> None:
    """Other 3xx/4xx raise a non-transient RefreshFailed, ignoring any Retry-After."""
    server.token = respond(status, {"error": "nope"}, headers={"Retry-After": "5"})
    with pytest.raises(RefreshFailed) as info:
        await public.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.status, exc.transient, exc.retry_after, exc.error) == (status, False, None, "nope")


@pytest.mark.parametrize(
    "exc_type", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
async def test_network_errors_are_transient(
    public: CustomerAccountOAuth,
    server: FakeCustomerAccounts,
    exc_type: type[httpx.TransportError],
) -> None:
    """No answer raises a transient RefreshFailed without status, chained to the cause."""
    server.token = fail_with(exc_type)
    with pytest.raises(RefreshFailed) as info:
        await public.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.key, exc.status, exc.transient) == (KEY, None, True)
    assert isinstance(exc.__cause__, exc_type)


MALFORMED: dict[str, bytes] = {
    "html": b"<html>Welcome</html>",
    "empty": b"",
    "truncated": json.dumps(GOOD_BODY)[:30].encode(),
    "array": json.dumps([GOOD_BODY]).encode(),
    "no-access-token": json.dumps({**GOOD_BODY, "access_token": None}).encode(),
    "negative-expires-in": json.dumps({**GOOD_BODY, "expires_in": -1}).encode(),
    "deeply-nested": b"[" * 100_000,
}


@pytest.mark.parametrize("content", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_success_is_transient(
    public: CustomerAccountOAuth, server: FakeCustomerAccounts, content: bytes
) -> None:
    """A 2xx body that is no usable token raises a transient RefreshFailed(invalid_response)."""

    def reply(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content, headers={"Content-Type": "application/json"})

    server.token = reply
    with pytest.raises(RefreshFailed) as info:
        await public.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.status, exc.error, exc.transient) == (200, "invalid_response", True)
    assert exc.__context__ is None


# --- discovery ------------------------------------------------------------------------------------


async def test_discovery_fetched_once_and_cached(
    discovering: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """The shop's document is fetched once; later refreshes reuse the discovered endpoint."""
    for _ in range(3):
        await discovering.refresh(KEY, TOKEN)
    [get] = server.gets
    assert str(get.url) == DISCOVERY_URL
    assert "authorization" not in get.headers
    assert [str(post.url) for post in server.posts] == [DISCOVERED_TOKEN_URL] * 3


async def test_concurrent_first_callers_share_one_fetch(
    discovering: CustomerAccountOAuth,
    server: FakeCustomerAccounts,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Five tasks needing the endpoints at once wait on one discovery GET."""
    server.latency = 1.0
    results: list[CustomerAccountEndpoints] = []

    async def discover() -> None:
        results.append(await discovering.discover())

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(discover)
    assert len(server.gets) == 1
    assert trio.current_time() == 1.0
    assert results == [CustomerAccountEndpoints(DISCOVERED_AUTHORIZE_URL, DISCOVERED_TOKEN_URL)] * 5


async def test_failed_discovery_is_not_cached(
    discovering: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """A 503 from discovery is a transient failure; the next call fetches again and succeeds."""
    server.discovery = respond(503, text="down", headers={"Retry-After": "12"})
    with pytest.raises(RefreshFailed) as info:
        await discovering.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.key, exc.status, exc.error, exc.transient, exc.retry_after) == (
        KEY,
        503,
        "discovery_failed",
        True,
        12.0,
    )
    assert server.posts == []
    server.discovery = respond(200, DISCOVERY)
    await discovering.refresh(KEY, TOKEN)
    assert len(server.gets) == 2
    assert len(server.posts) == 1


@pytest.mark.parametrize(
    ("reply", "status", "transient"),
    [
        (respond(404, text="Not Found"), 404, False),
        (respond(200, text="<html>storefront</html>"), 200, True),
        (respond(200, ["not", "an", "object"]), 200, True),
        (respond(200, {**DISCOVERY, "token_endpoint": None}), 200, True),
        (respond(200, {"issuer": AUTH_BASE}), 200, True),
        (fail_with(httpx.ConnectError), None, True),
    ],
    ids=["404", "html", "array", "null-endpoint", "no-endpoints", "network"],
)
async def test_discovery_failures(
    discovering: CustomerAccountOAuth,
    server: FakeCustomerAccounts,
    reply: Reply,
    status: int | None,
    transient: bool,
) -> None:
    """Unusable discovery answers raise RefreshFailed(discovery_failed); no token is sent."""
    server.discovery = reply
    with pytest.raises(RefreshFailed) as info:
        await discovering.discover()
    exc = info.value
    assert (exc.status, exc.error, exc.transient) == (status, "discovery_failed", transient)
    assert server.posts == []


HOSTILE: dict[str, str] = {
    "http": f"http://shopify.com/authentication/{SHOP_ID}/oauth/token",
    "other-host": "https://evil.example/oauth/token",
    "lookalike-suffix": f"https://shopify.com.evil.example/authentication/{SHOP_ID}/oauth/token",
    "subdomain": f"https://accounts.shopify.com/authentication/{SHOP_ID}/oauth/token",
    "other-shop-id": "https://shopify.com/authentication/7654321/oauth/token",
    "no-shop-path": "https://shopify.com/oauth/token",
    "dot-dot": f"https://shopify.com/authentication/{SHOP_ID}/../7654321/oauth/token",
    "other-shop-domain": "https://other-store.myshopify.com/oauth/token",
    "userinfo": f"https://user:pw@shopify.com/authentication/{SHOP_ID}/oauth/token",
    "backslash-userinfo": f"https://evil.example\\@shopify.com/authentication/{SHOP_ID}/t",
    "port": f"https://shopify.com:8443/authentication/{SHOP_ID}/oauth/token",
    "fragment": f"https://shopify.com/authentication/{SHOP_ID}/oauth/token#x",
    "trailing-dot": f"https://shopify.com./authentication/{SHOP_ID}/oauth/token",
    "encoded-dot": "https://shopify.com%2eevil.example/oauth/token",
    "relative": f"/authentication/{SHOP_ID}/oauth/token",
    "javascript": "javascript:alert(1)",
    "invalid": "https://[::1/oauth",
}


@pytest.mark.parametrize("endpoint", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_discovered_token_endpoint_refused(
    discovering: CustomerAccountOAuth, server: FakeCustomerAccounts, endpoint: str
) -> None:
    """A discovered endpoint off https shopify.com/authentication/{id}/ or the shop is refused."""
    server.discovery = respond(200, {**DISCOVERY, "token_endpoint": endpoint})
    with pytest.raises(RefreshFailed) as info:
        await discovering.refresh(KEY, TOKEN)
    exc = info.value
    assert (exc.error, exc.transient, exc.key) == ("untrusted_endpoint", False, KEY)
    assert "refused" in str(exc)
    assert server.posts == []
    assert str(exc).isascii()


@pytest.mark.parametrize("endpoint", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_discovered_login_endpoint_refused(
    discovering: CustomerAccountOAuth, server: FakeCustomerAccounts, endpoint: str
) -> None:
    """The login endpoint is held to the same rule: no login URL points elsewhere."""
    server.discovery = respond(200, {**DISCOVERY, "authorization_endpoint": endpoint})
    with pytest.raises(RefreshFailed, match="authorization_endpoint"):
        await discovering.discover()
    with pytest.raises(RuntimeError, match="discover"):
        discovering.authorization_url(REDIRECT_URI, state="s")


@pytest.mark.parametrize(
    "endpoint",
    [
        f"https://{SHOP}/authentication/oauth/token",
        "https://MY-STORE.myshopify.com:443/authentication/oauth/token",
        f"https://Shopify.com/authentication/{SHOP_ID}/oauth/token",
    ],
    ids=["shop-domain", "shop-domain-case-and-port", "shopify-case"],
)
def test_trusted_discovered_endpoints(endpoint: str) -> None:
    """Endpoints on the shop's domain or under Shopify's auth path are accepted, normalized."""
    accepted = check_discovered_endpoint(endpoint, "token_endpoint", shop=SHOP, shop_id=SHOP_ID)
    assert accepted == endpoint.replace("MY-STORE", "my-store").replace(":443", "").replace(
        "Shopify.com", "shopify.com"
    )


def test_discovery_error_for_non_string() -> None:
    """A missing endpoint is a malformed document, not a hostile one."""
    with pytest.raises(DiscoveryError) as info:
        check_discovered_endpoint(42, "token_endpoint", shop=SHOP, shop_id=SHOP_ID)
    assert info.value.untrusted is False


async def test_discovery_on_shop_domain_used(
    discovering: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """Endpoints on the shop's own domain are accepted and used."""
    token_url = f"https://{SHOP}/customer/oauth/token"
    server.discovery = respond(200, {**DISCOVERY, "token_endpoint": token_url})
    await discovering.refresh(KEY, TOKEN)
    assert str(server.posts[0].url) == token_url


async def test_discovery_does_not_follow_redirects(
    discovering: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """A redirected discovery document fails discovery; the app is never sent elsewhere."""
    primary = "https://shop.example.com/.well-known/openid-configuration"

    def discovery(request: httpx.Request) -> httpx.Response:
        if request.url.host == SHOP:
            return httpx.Response(301, headers={"Location": primary})
        return httpx.Response(200, json=DISCOVERY)

    server.discovery = discovery
    with pytest.raises(RefreshFailed) as info:
        await discovering.refresh(KEY, TOKEN)
    assert info.value.error == "discovery_failed"
    assert not info.value.transient
    assert [str(get.url) for get in server.gets] == [DISCOVERY_URL]
    assert server.posts == []


async def test_explicit_endpoints_skip_discovery(
    build: Build, server: FakeCustomerAccounts
) -> None:
    """Explicit endpoints win: no discovery GET even with a shop."""
    oauth = build(
        shop=SHOP,
        authorization_endpoint="https://login.example.com/authorize",
        token_endpoint="https://login.example.com/token",
    )
    await oauth.refresh(KEY, TOKEN)
    assert server.gets == []
    assert str(server.posts[0].url) == "https://login.example.com/token"


async def test_explicit_token_endpoint_with_discovered_login(
    build: Build, server: FakeCustomerAccounts
) -> None:
    """One explicit endpoint overrides its discovered counterpart; the other is discovered."""
    oauth = build(shop=SHOP, token_endpoint="https://login.example.com/token")
    endpoints = await oauth.discover()
    assert endpoints == CustomerAccountEndpoints(
        DISCOVERED_AUTHORIZE_URL, "https://login.example.com/token"
    )
    assert len(server.gets) == 1


async def test_no_shop_means_default_endpoints_without_io(
    public: CustomerAccountOAuth, server: FakeCustomerAccounts
) -> None:
    """Without a shop, discover() returns Shopify's defaults and makes no request."""
    assert await public.discover() == CustomerAccountEndpoints(AUTHORIZE_URL, TOKEN_URL)
    assert server.requests == []


# --- construction and lifecycle -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "words"),
    [
        (("abc", CLIENT_ID), {}, ValueError, "shop_id"),
        (("0123", CLIENT_ID), {}, ValueError, "shop_id"),
        (("1/../2", CLIENT_ID), {}, ValueError, "shop_id"),
        ((True, CLIENT_ID), {}, ValueError, "shop_id"),
        ((SHOP_ID, ""), {}, ValueError, "client_id"),
        ((SHOP_ID, CLIENT_ID), {"client_secret": ""}, ValueError, "client_secret"),
        ((SHOP_ID, CLIENT_ID), {"shop": "evil.example"}, InvalidShopDomain, "shop domain"),
        ((SHOP_ID, CLIENT_ID), {"token_endpoint": "http://x.example/t"}, ValueError, "https"),
        ((SHOP_ID, CLIENT_ID), {"token_endpoint": "https://u:p@x.example/"}, ValueError, "https"),
        ((SHOP_ID, CLIENT_ID), {"authorization_endpoint": "/relative"}, ValueError, "https"),
    ],
    ids=[
        "shop-id-letters",
        "shop-id-leading-zero",
        "shop-id-path",
        "shop-id-bool",
        "empty-client-id",
        "empty-secret",
        "bad-shop",
        "http-endpoint",
        "userinfo-endpoint",
        "relative-endpoint",
    ],
)
def test_construction_rejects_bad_configuration(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    """Bad ids, empty credentials, bad shops and non-https endpoints are refused up front."""
    with pytest.raises(error, match=words) as info:
        CustomerAccountOAuth(*args, **kwargs)
    assert CLIENT_SECRET not in str(info.value)


def test_construction_normalizes() -> None:
    """An int shop id, a bare shop name and loopback http endpoints (for tests) are accepted."""
    oauth = CustomerAccountOAuth(
        1234567, CLIENT_ID, shop="My-Store", token_endpoint="http://127.0.0.1:8080/token"
    )
    assert (oauth.shop_id, oauth.shop, oauth.confidential) == (SHOP_ID, SHOP, False)


def test_repr_hides_secret() -> None:
    """The repr shows the shop id, client id and shop but never the client secret."""
    oauth = CustomerAccountOAuth(SHOP_ID, CLIENT_ID, client_secret=CLIENT_SECRET, shop=SHOP)
    shown = repr(oauth)
    assert CLIENT_ID in shown
    assert SHOP_ID in shown
    assert SHOP in shown
    assert CLIENT_SECRET not in shown
    assert oauth.confidential


async def test_owned_client_created_lazily_and_closed() -> None:
    """Without ``http=`` a 30 s-timeout client is created on first use and closed on exit."""
    async with CustomerAccountOAuth(SHOP_ID, CLIENT_ID) as oauth:
        assert oauth._http is None
        http = oauth._client()
        assert oauth._client() is http
        assert http.timeout == httpx.Timeout(30.0)
    assert http.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await oauth.refresh(KEY, TOKEN)
    with pytest.raises(RuntimeError, match="closed"):
        await oauth.exchange_code(CODE, REDIRECT_URI, code_verifier=RFC_VERIFIER)
    with pytest.raises(RuntimeError, match="closed"):
        await oauth.discover()


async def test_injected_client_is_not_closed(server: FakeCustomerAccounts) -> None:
    """Closing the client leaves an injected http client open for its owner."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        async with CustomerAccountOAuth(SHOP_ID, CLIENT_ID, http=http) as oauth:
            await oauth.refresh(KEY, TOKEN)
        assert not http.is_closed


# --- secrets --------------------------------------------------------------------------------------

# Every failure, with bodies that put the secrets where a careless client would echo them.
ECHOING_FAILURES: dict[str, Reply] = {
    "invalid_grant": respond(
        400,
        {
            "error": "invalid_grant",
            "error_description": f"{OLD_REFRESH} revoked; code {CODE}; verifier {RFC_VERIFIER}",
            "id_token": ID_TOKEN,
        },
    ),
    "invalid_client": respond(
        401, {"error": "invalid_client", "error_description": f"{CLIENT_SECRET} / {BASIC}"}
    ),
    "401-html": respond(401, text=f"<p>{CLIENT_SECRET} {OLD_REFRESH} {NEW_ACCESS}</p>"),
    "429": respond(
        429,
        {"error": "slow_down", "error_description": f"{ID_TOKEN} {OLD_ACCESS}"},
        headers={"Retry-After": "1"},
    ),
    "500": respond(
        500,
        {
            "error": NEW_ACCESS,
            "error_description": NEW_REFRESH,
            "access_token": NEW_ACCESS,
            "refresh_token": NEW_REFRESH,
            "id_token": ID_TOKEN,
        },
    ),
    "unknown-customer-token": respond(
        403, {"error": "forbidden", "error_description": "token shcat_0123abcdEF-x9 not allowed"}
    ),
    "unknown-jwt": respond(
        403, {"error": "forbidden", "error_description": "bad eyJhbGciOiJub25lIn0.e30.abc"}
    ),
    "network": fail_with(httpx.ConnectError),
    "timeout": fail_with(httpx.ReadTimeout),
    "non-json-200": respond(200, text=f"access_token={NEW_ACCESS}&id_token={ID_TOKEN}"),
    "no-access-token": respond(200, {**GOOD_BODY, "access_token": ""}),
    "bad-scope": respond(200, {**GOOD_BODY, "scope": [NEW_ACCESS]}),
}
# Tokens in the answers, and token-shaped values no request carried: never quoted.
ANSWER_SECRETS = (
    NEW_ACCESS,
    NEW_REFRESH,
    ID_TOKEN,
    "shcat_0123abcdEF-x9",
    "eyJhbGciOiJub25lIn0.e30",
)


def assert_no_secret(secrets: tuple[str, ...], *surfaces: str) -> None:
    """None of ``secrets`` occurs in any surface."""
    for surface in surfaces:
        for secret in secrets:
            assert secret not in surface


Grant = Callable[[CustomerAccountOAuth], Awaitable[Token]]
# Each grant with the secrets its request carries (a server can echo only those).
GRANTS: dict[str, tuple[Grant, tuple[str, ...]]] = {
    "refresh": (
        lambda oauth: oauth.refresh(KEY, TOKEN),
        (CLIENT_SECRET, BASIC, OLD_ACCESS, OLD_REFRESH, *ANSWER_SECRETS),
    ),
    "exchange": (
        lambda oauth: oauth.exchange_code(CODE, REDIRECT_URI, code_verifier=RFC_VERIFIER),
        (CLIENT_SECRET, BASIC, CODE, RFC_VERIFIER, *ANSWER_SECRETS),
    ),
}


@pytest.mark.parametrize("grant", GRANTS.values(), ids=GRANTS.keys())
@pytest.mark.parametrize("reply", ECHOING_FAILURES.values(), ids=ECHOING_FAILURES.keys())
async def test_no_secret_in_errors_reprs_or_logs(
    discovering: CustomerAccountOAuth,
    server: FakeCustomerAccounts,
    reply: Reply,
    grant: tuple[Grant, tuple[str, ...]],
) -> None:
    """No secret reaches str(exc), repr(exc), its fields, repr(oauth) or any log event."""
    call, secrets = grant
    server.token = reply
    with captured_events() as logs, pytest.raises(ShopTokenError) as info:
        await call(discovering)
    exc = info.value
    assert logs  # the failure was logged, so the log check is not vacuous
    surfaces = (str(exc), repr(exc), repr(vars(exc)), repr(discovering), repr(logs))
    assert_no_secret(secrets, *surfaces)


DISCOVERY_FAILURES: dict[str, Reply] = {
    "503": respond(503, text=f"{CLIENT_SECRET}"),
    "hostile": respond(200, {**DISCOVERY, "token_endpoint": "https://evil.example/steal"}),
    "html": respond(200, text=f"<p>{OLD_REFRESH}</p>"),
    "network": fail_with(httpx.ConnectError),
}


@pytest.mark.parametrize("grant", GRANTS.values(), ids=GRANTS.keys())
@pytest.mark.parametrize("reply", DISCOVERY_FAILURES.values(), ids=DISCOVERY_FAILURES.keys())
async def test_no_secret_in_discovery_failures(
    discovering: CustomerAccountOAuth,
    server: FakeCustomerAccounts,
    reply: Reply,
    grant: tuple[Grant, tuple[str, ...]],
) -> None:
    """Discovery failures quote no secret of the grant that waited for them."""
    call, secrets = grant
    server.discovery = reply
    with captured_events() as logs, pytest.raises(RefreshFailed) as info:
        await call(discovering)
    exc = info.value
    assert logs
    surfaces = (str(exc), repr(exc), repr(vars(exc)), repr(discovering), repr(logs))
    assert_no_secret((*secrets, CLIENT_SECRET, OLD_REFRESH), *surfaces)


@pytest.mark.parametrize(
    ("key", "token"),
    [
        (TokenKey.offline(SHOP), TOKEN),
        (KEY, attrs.evolve(TOKEN, refresh_token=None)),
        (TokenKey.customer("other-store", "1"), TOKEN),
    ],
    ids=["offline", "no-refresh-token", "other-shop"],
)
async def test_no_secret_in_refusals(
    discovering: CustomerAccountOAuth, key: TokenKey, token: Token
) -> None:
    """The no-HTTP refusals carry no secret either."""
    with captured_events() as logs, pytest.raises(ShopTokenError) as info:
        await discovering.refresh(key, token)
    surfaces = (str(info.value), repr(info.value), repr(discovering), repr(logs))
    assert_no_secret(GRANTS["refresh"][1], *surfaces)


# --- property: only ShopTokenError ----------------------------------------------------------------

BODIES = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["access_token", "refresh_token", "expires_in", "scope", "error"])
                | st.text(max_size=8),
                children,
                max_size=5,
            )
        ),
        max_leaves=10,
    ).map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.integers(min_value=200, max_value=599), body=BODIES, secret=st.booleans())
async def test_refresh_raises_only_shoptoken_errors(status: int, body: bytes, secret: bool) -> None:
    """Whatever the status and body of the answer, refresh returns a Token or a ShopTokenError."""

    def reply(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    server = FakeCustomerAccounts(token=reply)
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        oauth = CustomerAccountOAuth(
            SHOP_ID, CLIENT_ID, client_secret=CLIENT_SECRET if secret else None, http=http
        )
        outcome: Token | ShopTokenError
        try:
            outcome = await oauth.refresh(KEY, TOKEN, clock=lambda: EPOCH)
        except ShopTokenError as exc:
            outcome = exc
    if isinstance(outcome, Token):
        assert 200 <= status < 300
    else:
        assert CLIENT_SECRET not in str(outcome)
        assert OLD_REFRESH not in str(outcome)


URLS = st.one_of(
    st.text(max_size=40),
    st.builds(
        "{}://{}{}/{}".format,
        st.sampled_from(["https", "http", "HTTPS", "ftp", ""]),
        st.sampled_from(["shopify.com", SHOP, "evil.example", "shopify.com.evil", "u@shopify.com"]),
        st.sampled_from(["", ":443", ":8443"]),
        st.sampled_from([f"authentication/{SHOP_ID}/oauth/token", "authentication/1/t", "x"]),
    ),
)


@settings(max_examples=150, deadline=None)
@given(token_endpoint=URLS | st.none() | st.integers())
async def test_discovery_never_sends_a_token_elsewhere(token_endpoint: object) -> None:
    """For any discovered token endpoint, a token is POSTed only over https to an allowed place."""
    document = {**DISCOVERY, "token_endpoint": token_endpoint}
    server = FakeCustomerAccounts(discovery=respond(200, document))
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        oauth = CustomerAccountOAuth(SHOP_ID, CLIENT_ID, shop=SHOP, http=http)
        error: str | None = None
        try:
            await oauth.refresh(KEY, TOKEN, clock=lambda: EPOCH)
        except RefreshFailed as exc:
            error = exc.error
    assert error in (None, "untrusted_endpoint", "discovery_failed")
    for post in server.posts:
        assert post.url.scheme == "https"
        assert post.url.port is None
        assert not post.url.userinfo
        allowed_shopify = post.url.host == "shopify.com" and post.url.raw_path.startswith(
            f"/authentication/{SHOP_ID}/".encode()
        )
        assert post.url.host == SHOP or allowed_shopify


# --- docs/customer-accounts.md --------------------------------------------------------------------

DOCS = Path(__file__).parent.parent / "docs" / "customer-accounts.md"


async def test_docs_example_runs(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """The page's login code works, and one manager then keeps the customer's token fresh."""
    [block] = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(block, namespace)  # noqa: S102 - our own docs

    wall = trio_wall_clock()
    issued = iter(range(1, 1000))

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        n = next(issued)
        return httpx.Response(
            200,
            json={**GOOD_BODY, "access_token": f"access-{n}", "refresh_token": f"refresh-{n}"},
        )

    server = FakeCustomerAccounts(token=token_endpoint)
    store = MemoryStore()
    session: dict[str, str] = {}

    async def customer_id_of(_token: Token) -> str:
        await trio.lowlevel.checkpoint()
        return "gid://shopify/Customer/42"

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(server)) as http,
        CustomerAccountOAuth(SHOP_ID, CLIENT_ID, shop=SHOP, http=http, clock=wall) as customers,
    ):
        await customers.discover()
        url = namespace["start_login"](customers, session)
        assert query_of(url)["state"] == [session["state"]]
        assert query_of(url)["code_challenge"] == [pkce_challenge(session["verifier"])]
        query = {"code": CODE, "state": session["state"]}
        async with open_token_manager({TokenKind.CUSTOMER: customers}, store, clock=wall) as tokens:
            key = await namespace["finish_login"](customers, tokens, session, query, customer_id_of)
            assert key == KEY
            assert (await tokens.valid_token(key)).access_token == "access-1"
            await trio.sleep(3 * 3600)
            assert (await tokens.valid_token(key)).access_token != "access-1"
    assert session == {}
    refreshes = [form(post) for post in server.posts[1:]]
    assert refreshes
    assert refreshes[0] == {
        "grant_type": "refresh_token",
        "refresh_token": "refresh-1",
        "client_id": CLIENT_ID,
    }
    stored = await store.load_tokens(KEY)
    assert stored is not None
    assert stored.access_token == f"access-{len(server.posts)}"


async def test_docs_example_refuses_forged_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's callback refuses a state that is not the session's, before any request."""
    [block] = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(block, namespace)  # noqa: S102 - our own docs
    oauth = CustomerAccountOAuth(SHOP_ID, CLIENT_ID)
    session = {"state": "expected", "verifier": RFC_VERIFIER}
    with pytest.raises(PermissionError):
        await namespace["finish_login"](oauth, None, session, {"state": "forged"}, None)
