"""ShopifyOAuth's install, token exchange and migration flows against small fake servers."""

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
import pytest

from shoptoken._errors import (
    InvalidCallback,
    InvalidSessionToken,
    InvalidShopDomain,
    ReauthorizationRequired,
    RefreshFailed,
    ShopTokenError,
)
from shoptoken._keys import TokenKey
from shoptoken._oauth._admin import ShopifyOAuth
from shoptoken._oauth._redirect import sign_query
from shoptoken._token import Token

from ._endpoint import EPOCH, FakeClock, Reply, at, fail_with, respond
from ._logs import captured_events

CLIENT_ID = "app-client-id"
CLIENT_SECRET = "client-secret-s3cr3t-0123456789abcdef"
OLD_CLIENT_SECRET = "old-client-secret-0ld-fedcba987654321"
CODE = "authorization-code-c0de-1234"
LEGACY_TOKEN = "shpat_legacy-non-expiring-token"
NEW_ACCESS = "new-access-token-value"
NEW_REFRESH = "new-refresh-token-value"
SHOP = "my-store.myshopify.com"
URL = f"https://{SHOP}/admin/oauth/access_token"

OFFLINE_BODY: dict[str, Any] = {
    "access_token": NEW_ACCESS,
    "scope": "read_orders",
    "expires_in": 3600,
    "refresh_token": NEW_REFRESH,
    "refresh_token_expires_in": 7_776_000,
}
ONLINE_BODY: dict[str, Any] = {
    "access_token": NEW_ACCESS,
    "scope": "read_orders",
    "expires_in": 86399,
    "associated_user_scope": "read_orders",
    "associated_user": {"id": 42, "first_name": "Ada", "email": "ada@example.com"},
}


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_jwt(secret: str = CLIENT_SECRET, **overrides: Any) -> str:
    """An App Bridge session token for SHOP, user 42, valid around EPOCH."""
    claims = {
        "iss": f"https://{SHOP}/admin",
        "dest": f"https://{SHOP}",
        "aud": CLIENT_ID,
        "sub": "42",
        "exp": int(EPOCH) + 60,
        "nbf": int(EPOCH) - 5,
        "iat": int(EPOCH) - 5,
        "jti": "jti-1",
        "sid": "sid-1",
        **overrides,
    }
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


SESSION_JWT = session_jwt()
SECRETS = (
    CLIENT_SECRET,
    OLD_CLIENT_SECRET,
    CODE,
    LEGACY_TOKEN,
    NEW_ACCESS,
    NEW_REFRESH,
    SESSION_JWT,
    *[part for part in SESSION_JWT.split(".") if len(part) >= 8],
)


@attrs.define
class FakeShopify:
    """A tiny token endpoint: asserts the JSON request shape, records it, answers ``reply``."""

    reply: Reply = attrs.field(default=lambda _request: httpx.Response(200, json=OFFLINE_BODY))
    requests: list[httpx.Request] = attrs.Factory(list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Check, record and answer one request."""
        assert request.method == "POST"
        assert str(request.url) == URL
        assert request.headers["content-type"] == "application/json"
        assert request.headers["accept"] == "application/json"
        self.requests.append(request)
        return self.reply(request)

    def body(self, index: int = -1) -> dict[str, Any]:
        """The JSON body of a recorded request."""
        data: dict[str, Any] = json.loads(self.requests[index].content)
        return data


#: A reply that is a network failure.
fail = fail_with(httpx.ConnectError)


@pytest.fixture
def clock() -> FakeClock:
    """The client's wall clock."""
    return FakeClock()


@pytest.fixture
def server() -> FakeShopify:
    """The fake token endpoint."""
    return FakeShopify()


@pytest.fixture
async def oauth(server: FakeShopify, clock: FakeClock) -> AsyncIterator[ShopifyOAuth]:
    """A ShopifyOAuth (no old secret) talking to ``server``."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        yield ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http, clock=clock)


@pytest.fixture
async def rotating(server: FakeShopify, clock: FakeClock) -> AsyncIterator[ShopifyOAuth]:
    """A ShopifyOAuth in the middle of a secret rotation."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        yield ShopifyOAuth(
            CLIENT_ID, CLIENT_SECRET, http=http, old_client_secret=OLD_CLIENT_SECRET, clock=clock
        )


def callback_query(secret: str = CLIENT_SECRET, **overrides: str) -> dict[str, str]:
    """A signed OAuth callback for SHOP at EPOCH."""
    params = {"code": CODE, "shop": SHOP, "state": "nonce", "timestamp": str(int(EPOCH))}
    params.update(overrides)
    return {**params, "hmac": sign_query(params, secret)}


# --- authorization URL and state ------------------------------------------------------------------


async def test_authorization_url(oauth: ShopifyOAuth) -> None:
    """authorization_url uses the client id and the normalized shop."""
    url = oauth.authorization_url(
        "My-Store", "read_orders,write_orders", "https://app.example/cb", state="s1", online=True
    )
    parts = urlsplit(url)
    assert parts.netloc == SHOP
    assert parse_qs(parts.query) == {
        "client_id": [CLIENT_ID],
        "scope": ["read_orders,write_orders"],
        "redirect_uri": ["https://app.example/cb"],
        "state": ["s1"],
        "grant_options[]": ["per-user"],
    }


async def test_new_state_on_class_and_instance(oauth: ShopifyOAuth) -> None:
    """new_state works on the class and on an instance, giving fresh nonces."""
    assert ShopifyOAuth.new_state() != oauth.new_state()


# --- verify_callback ----------------------------------------------------------------------------


async def test_verify_callback_uses_client_clock_and_secret(
    oauth: ShopifyOAuth, clock: FakeClock
) -> None:
    """verify_callback checks the HMAC with the client secret and the timestamp on its clock."""
    assert oauth.verify_callback(callback_query(), state="nonce")["code"] == CODE
    clock.now = EPOCH + 301
    with pytest.raises(InvalidCallback, match="stale timestamp"):
        oauth.verify_callback(callback_query())


async def test_verify_callback_old_secret_only_when_configured(
    oauth: ShopifyOAuth, rotating: ShopifyOAuth
) -> None:
    """A callback signed with the old secret passes only on a client configured with it."""
    query = callback_query(OLD_CLIENT_SECRET)
    assert rotating.verify_callback(query)["shop"] == SHOP
    with pytest.raises(InvalidCallback, match="bad hmac"):
        oauth.verify_callback(query)


async def test_verify_callback_state_mismatch(oauth: ShopifyOAuth) -> None:
    """verify_callback passes state through to the constant-time check."""
    with pytest.raises(InvalidCallback, match="state mismatch"):
        oauth.verify_callback(callback_query(), state="other")


# --- exchange_code ------------------------------------------------------------------------------


async def test_exchange_code_request_and_token(
    oauth: ShopifyOAuth, server: FakeShopify, clock: FakeClock
) -> None:
    """The code grant POSTs client id, secret, code and expiring=1; the token is dated on send."""
    token = await oauth.exchange_code("My-Store", CODE)
    assert server.body() == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "code": CODE,
        "expiring": "1",
    }
    assert token == Token(
        access_token=NEW_ACCESS,
        refresh_token=NEW_REFRESH,
        scope="read_orders",
        expires_at=at(3600),
        refresh_token_expires_at=at(7_776_000),
        obtained_at=at(0),
    )
    assert clock.readings == 1


async def test_exchange_code_without_expiring(server: FakeShopify) -> None:
    """With expiring=False the code grant leaves out the expiring field."""
    server.reply = respond(200, {"access_token": NEW_ACCESS, "scope": "read_orders"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        oauth = ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http, expiring=False)
        token = await oauth.exchange_code(SHOP, CODE, clock=lambda: EPOCH)
    assert "expiring" not in server.body()
    assert (token.expires_at, token.refresh_token) == (None, None)


async def test_exchange_code_online_token(oauth: ShopifyOAuth, server: FakeShopify) -> None:
    """An online answer carries the associated user, for TokenKey.online."""
    server.reply = respond(200, ONLINE_BODY)
    token = await oauth.exchange_code(SHOP, CODE, clock=lambda: EPOCH + 10)
    assert token.associated_user_id == 42
    assert token.associated_user_scope == "read_orders"
    assert token.expires_at == at(10 + 86399)


@pytest.mark.parametrize(
    "reply",
    [
        respond(
            400,
            {
                "error": "invalid_request",
                "error_description": "The authorization code was not found or was already used",
            },
        ),
        respond(400, {"error": "invalid_grant", "error_description": "expired"}),
        respond(401, {"errors": "[API] Invalid API key or access token"}),
    ],
    ids=["used-code", "invalid_grant", "401"],
)
async def test_exchange_code_refused_requires_reauthorization(
    oauth: ShopifyOAuth, server: FakeShopify, reply: Reply
) -> None:
    """A used, expired or bad code (and 401) raises ReauthorizationRequired."""
    server.reply = reply
    with pytest.raises(ReauthorizationRequired, match=f"{SHOP}: code exchange rejected"):
        await oauth.exchange_code(SHOP, CODE)


@pytest.mark.parametrize(
    ("reply", "status", "transient"),
    [
        (respond(400, {"error": "invalid_client"}), 400, False),
        (respond(403, {"errors": "Forbidden"}), 403, False),
        (respond(429, {"errors": "slow down"}, headers={"Retry-After": "3"}), 429, True),
        (respond(503, None), 503, True),
        (fail, None, True),
        (respond(200, {"scope": "read_orders"}), 200, True),
    ],
    ids=["invalid_client", "403", "429", "503", "network", "no-access-token"],
)
async def test_exchange_code_other_failures(
    oauth: ShopifyOAuth, server: FakeShopify, reply: Reply, status: int | None, transient: bool
) -> None:
    """Other answers map as for refresh: RefreshFailed with status and transience."""
    server.reply = reply
    with pytest.raises(RefreshFailed) as info:
        await oauth.exchange_code(SHOP, CODE)
    assert (info.value.status, info.value.transient) == (status, transient)
    if status == 429:
        assert info.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("shop", "code", "error"),
    [
        ("evil.com", CODE, InvalidShopDomain),
        (SHOP, "", InvalidCallback),
        (SHOP, None, InvalidCallback),
    ],
    ids=["bad-shop", "empty-code", "no-code"],
)
async def test_exchange_code_bad_input_without_http(
    oauth: ShopifyOAuth, server: FakeShopify, shop: str, code: Any, error: type[Exception]
) -> None:
    """A bad shop or a missing code fails before any HTTP call."""
    with pytest.raises(error):
        await oauth.exchange_code(shop, code)
    assert server.requests == []


# --- session tokens -------------------------------------------------------------------------------


async def test_verify_session_token_uses_client_clock(
    oauth: ShopifyOAuth, clock: FakeClock
) -> None:
    """verify_session_token checks exp against the client's clock, not time.time()."""
    assert oauth.verify_session_token(SESSION_JWT).user_id == 42
    clock.now = EPOCH + 60 + 10
    with pytest.raises(InvalidSessionToken, match="expired"):
        oauth.verify_session_token(SESSION_JWT)


async def test_verify_session_token_old_secret(oauth: ShopifyOAuth, rotating: ShopifyOAuth) -> None:
    """A token signed with the old secret passes only on a client configured with it."""
    token = session_jwt(OLD_CLIENT_SECRET)
    assert rotating.verify_session_token(token).shop == SHOP
    with pytest.raises(InvalidSessionToken, match="signature does not verify"):
        oauth.verify_session_token(token)


async def test_verify_session_token_other_app(oauth: ShopifyOAuth) -> None:
    """A token for another app's client id is refused."""
    with pytest.raises(InvalidSessionToken, match="InvalidAudienceError"):
        oauth.verify_session_token(session_jwt(aud="another-app"))


@pytest.mark.parametrize(
    ("online", "requested", "reply_body", "key"),  # one flow per row
    [
        (
            False,
            "urn:shopify:params:oauth:token-type:offline-access-token",
            OFFLINE_BODY,
            TokenKey.offline(SHOP),
        ),
        (
            True,
            "urn:shopify:params:oauth:token-type:online-access-token",
            ONLINE_BODY,
            TokenKey.online(SHOP, 42),
        ),
    ],
    ids=["offline", "online"],
)
async def test_exchange_session_token(  # noqa: PLR0917 - fixtures plus one parametrized row
    oauth: ShopifyOAuth,
    server: FakeShopify,
    online: bool,
    requested: str,
    reply_body: dict[str, Any],
    key: TokenKey,
) -> None:
    """Token exchange POSTs the documented grant and keys the token by shop (and user)."""
    server.reply = respond(200, reply_body)
    got_key, token = await oauth.exchange_session_token(SESSION_JWT, online=online)
    assert server.body() == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": SESSION_JWT,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "requested_token_type": requested,
        "expiring": "1",
    }
    assert got_key == key
    assert token.access_token == NEW_ACCESS
    assert token.expires_at == at(reply_body["expires_in"])


async def test_exchange_session_token_without_expiring(server: FakeShopify) -> None:
    """With expiring=False the exchange leaves out the expiring field."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        oauth = ShopifyOAuth(
            CLIENT_ID, CLIENT_SECRET, http=http, expiring=False, clock=lambda: EPOCH
        )
        await oauth.exchange_session_token(SESSION_JWT, online=False)
    assert "expiring" not in server.body()


async def test_bad_session_token_costs_no_http(oauth: ShopifyOAuth, server: FakeShopify) -> None:
    """A session token failing local verification raises before any HTTP call."""
    with pytest.raises(InvalidSessionToken):
        await oauth.exchange_session_token(
            session_jwt("wrong-secret-0123456789abcdef0123"), online=False
        )
    with pytest.raises(InvalidSessionToken):
        await oauth.exchange_session_token("not.a.jwt", online=True)
    assert server.requests == []


async def test_invalid_subject_token_answer(oauth: ShopifyOAuth, server: FakeShopify) -> None:
    """Shopify's 400 invalid_subject_token raises InvalidSessionToken: fetch a new one."""
    server.reply = respond(
        400, {"error": "invalid_subject_token", "error_description": "Token expired"}
    )
    with pytest.raises(InvalidSessionToken, match="fetch a new session token") as info:
        await oauth.exchange_session_token(SESSION_JWT, online=False)
    assert info.value.key == TokenKey.offline(SHOP)


async def test_online_exchange_without_user_is_invalid_response(
    oauth: ShopifyOAuth, server: FakeShopify
) -> None:
    """An online answer without associated_user raises RefreshFailed(invalid_response)."""
    server.reply = respond(200, OFFLINE_BODY)
    with pytest.raises(RefreshFailed) as info:
        await oauth.exchange_session_token(SESSION_JWT, online=True)
    assert (info.value.error, info.value.transient) == ("invalid_response", True)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (respond(400, {"error": "invalid_grant"}), ReauthorizationRequired),
        (respond(401, {"errors": "Unauthorized"}), ReauthorizationRequired),
        (respond(400, {"error": "invalid_client"}), RefreshFailed),
        (respond(500, None), RefreshFailed),
        (fail, RefreshFailed),
        (respond(200, {**ONLINE_BODY, "associated_user": {"id": "42"}}), RefreshFailed),
    ],
    ids=["invalid_grant", "401", "invalid_client", "500", "network", "string-user-id"],
)
async def test_exchange_session_token_failures(
    oauth: ShopifyOAuth, server: FakeShopify, reply: Reply, error: type[ShopTokenError]
) -> None:
    """Other answers map into the exception tree like refresh answers."""
    server.reply = reply
    with pytest.raises(error):
        await oauth.exchange_session_token(SESSION_JWT, online=True)


# --- migrate_to_expiring ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject", [LEGACY_TOKEN, Token(access_token=LEGACY_TOKEN)], ids=["str", "Token"]
)
async def test_migrate_request_and_token(
    oauth: ShopifyOAuth, server: FakeShopify, subject: str | Token
) -> None:
    """Migration exchanges the offline token for an expiring pair, always with expiring=1."""
    token = await oauth.migrate_to_expiring("my-store", subject)
    assert server.body() == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": LEGACY_TOKEN,
        "subject_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
        "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
        "expiring": "1",
    }
    assert token.refresh_token == NEW_REFRESH
    assert token.expires_at == at(3600)


async def test_migrate_sends_expiring_even_when_client_does_not(server: FakeShopify) -> None:
    """Migration asks for expiring tokens whatever the client's expiring setting."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        oauth = ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, http=http, expiring=False)
        await oauth.migrate_to_expiring(SHOP, LEGACY_TOKEN, clock=lambda: EPOCH)
    assert server.body()["expiring"] == "1"


@pytest.mark.parametrize(
    ("reply", "error", "transient"),
    [
        (respond(400, {"error": "invalid_grant"}), ReauthorizationRequired, None),
        (
            respond(401, {"errors": "Invalid API key or access token"}),
            ReauthorizationRequired,
            None,
        ),
        (respond(400, {"error": "invalid_subject_token"}), ReauthorizationRequired, None),
        (respond(429, None, headers={"Retry-After": "2"}), RefreshFailed, True),
        (respond(520, None), RefreshFailed, True),
        (fail, RefreshFailed, True),
        (respond(200, {"access_token": NEW_ACCESS, "scope": "x"}), RefreshFailed, True),
        (respond(200, [OFFLINE_BODY]), RefreshFailed, True),
    ],
    ids=[
        "invalid_grant",
        "401",
        "invalid_subject_token",
        "429",
        "520",
        "network",
        "not-expiring",
        "array",
    ],
)
async def test_migrate_failures(
    oauth: ShopifyOAuth,
    server: FakeShopify,
    reply: Reply,
    error: type[ShopTokenError],
    transient: bool | None,
) -> None:
    """Migration failures map as for refresh; an answer that is not an expiring pair is refused."""
    server.reply = reply
    with pytest.raises(error) as info:
        await oauth.migrate_to_expiring(SHOP, LEGACY_TOKEN)
    assert info.value.key == TokenKey.offline(SHOP)
    if isinstance(info.value, RefreshFailed):
        assert info.value.transient is transient


@pytest.mark.parametrize(
    ("shop", "subject", "error"),
    [
        ("evil.com", LEGACY_TOKEN, InvalidShopDomain),
        (SHOP, "", ValueError),
        (SHOP, None, ValueError),
        (SHOP, Token(access_token=LEGACY_TOKEN, refresh_token="r"), ValueError),
    ],
    ids=["bad-shop", "empty", "none", "already-expiring"],
)
async def test_migrate_bad_input_without_http(
    oauth: ShopifyOAuth, server: FakeShopify, shop: str, subject: Any, error: type[Exception]
) -> None:
    """Bad shops, empty tokens and already expiring tokens fail before any HTTP call."""
    with pytest.raises(error):
        await oauth.migrate_to_expiring(shop, subject)
    assert server.requests == []


# --- closed client ------------------------------------------------------------------------------


async def test_closed_client_refuses_every_grant() -> None:
    """After aclose, every HTTP grant raises RuntimeError; local checks still work."""
    oauth = ShopifyOAuth(CLIENT_ID, CLIENT_SECRET, clock=lambda: EPOCH)
    await oauth.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await oauth.exchange_code(SHOP, CODE)
    with pytest.raises(RuntimeError, match="closed"):
        await oauth.exchange_session_token(SESSION_JWT, online=False)
    with pytest.raises(RuntimeError, match="closed"):
        await oauth.migrate_to_expiring(SHOP, LEGACY_TOKEN)
    assert oauth.verify_session_token(SESSION_JWT).shop == SHOP


# --- secrets --------------------------------------------------------------------------------------

# Error bodies that echo every secret, as a careless server might.
ECHO = respond(
    400,
    {
        "error": f"invalid_request {CODE}",
        "error_description": f"{CLIENT_SECRET} {OLD_CLIENT_SECRET} {SESSION_JWT} {LEGACY_TOKEN}",
        "access_token": NEW_ACCESS,
        "refresh_token": NEW_REFRESH,
    },
)
ECHO_500 = respond(
    500,
    {
        "error": NEW_ACCESS,
        "error_description": f"{SESSION_JWT}{CODE}",
        "access_token": NEW_ACCESS,
    },
)
ECHO_200 = respond(200, {"access_token": NEW_ACCESS, "expires_in": f"{NEW_REFRESH}"})


def attempts(oauth: ShopifyOAuth) -> dict[str, tuple[Callable[[], Any], tuple[str, ...]]]:
    """Every HTTP flow, with the secrets it sends beyond the client secrets.

    A server may echo only what the request carried (or what its own body
    carries as tokens); other text it makes up cannot be told from prose,
    except Shopify-token- and JWT-shaped strings, which are masked everywhere.
    """
    return {
        "code": (lambda: oauth.exchange_code(SHOP, CODE), (CODE,)),
        "offline-exchange": (
            lambda: oauth.exchange_session_token(SESSION_JWT, online=False),
            (SESSION_JWT,),
        ),
        "online-exchange": (
            lambda: oauth.exchange_session_token(SESSION_JWT, online=True),
            (SESSION_JWT,),
        ),
        "migrate": (lambda: oauth.migrate_to_expiring(SHOP, LEGACY_TOKEN), (LEGACY_TOKEN,)),
    }


@pytest.mark.parametrize(
    "reply", [ECHO, ECHO_500, ECHO_200, fail], ids=["400", "500", "200", "net"]
)
async def test_no_secret_in_any_http_error(
    rotating: ShopifyOAuth, server: FakeShopify, reply: Reply
) -> None:
    """No flow's error message, repr, fields or log events carry a secret it knows of."""
    server.reply = reply
    always = [s for s in SECRETS if s not in (CODE,)]  # JWT and shpat_ shapes are always masked
    for name, (attempt, sent) in attempts(rotating).items():
        with captured_events() as logs, pytest.raises(ShopTokenError) as info:
            await attempt()
        assert logs
        surfaces = [str(info.value), repr(info.value), repr(vars(info.value)), repr(logs)]
        surfaces.append(repr(rotating))
        for surface in surfaces:
            for secret in (*always, *sent):
                assert secret not in surface, (name, secret)


async def test_no_secret_in_local_rejections(rotating: ShopifyOAuth, clock: FakeClock) -> None:
    """Callback and session token rejections carry no secret, code, hmac or JWT."""
    forged = {**callback_query(), "code": "other"}
    calls: list[Callable[[], Any]] = [
        lambda: rotating.verify_callback(forged),
        lambda: rotating.verify_callback(callback_query(), state="x"),
        lambda: rotating.verify_callback(callback_query(shop="evil.com")),
        lambda: rotating.verify_callback({**callback_query(), "hmac": CLIENT_SECRET}),
        lambda: rotating.verify_session_token(session_jwt(aud="x")),
        lambda: rotating.verify_session_token(SESSION_JWT[:-3]),
        lambda: rotating.verify_session_token(session_jwt("wrong-0123456789abcdef0123456789abcd")),
    ]
    clock.now = EPOCH + 1
    hmacs = (
        forged["hmac"],
        sign_query({k: v for k, v in forged.items() if k != "hmac"}, CLIENT_SECRET),
    )
    for call in calls:
        with captured_events() as logs, pytest.raises(ShopTokenError) as info:
            call()
        for surface in [str(info.value), repr(info.value), repr(vars(info.value)), repr(logs)]:
            for secret in (*SECRETS, *hmacs):
                assert secret not in surface
