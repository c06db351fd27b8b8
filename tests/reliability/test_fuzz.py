"""Bad input, fuzzed: only documented errors, and no request leaves Shopify's hosts.

The unit tests of each parser already fuzz it on its own (tests/test_keys.py,
test_callback_query.py, test_session_token.py, test_customer.py,
test_token.py). These properties cut across them, from untrusted input to
the wire:

- whatever a shop string, a signed callback query, a session token, a token
  endpoint's answer, a discovery document, a stored row or a store URL
  holds, the public entry points either work or raise the errors their
  docstrings name, never anything else;
- every request any client method sends, for any of those inputs, goes to
  ``https://{name}.myshopify.com`` (a canonical shop host) or
  ``https://shopify.com/authentication/{shop_id}/``: each test's transport
  records every request and checks its URL.

Example counts are moderate (the whole file runs in seconds); ``--long``
multiplies them by 10. Each test prints its counts (``RELIABILITY fuzz ...``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import string
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shoptoken import (
    CustomerAccountOAuth,
    InvalidCallback,
    InvalidSessionToken,
    InvalidShopDomain,
    NoToken,
    PersistenceError,
    ReauthorizationRequired,
    RefreshFailed,
    RefreshPolicy,
    ShopifyOAuth,
    Token,
    TokenKey,
    open_token_manager,
)
from shoptoken._keys import normalize_shop
from shoptoken.stores import EncryptedStore, MemoryStore, SQLiteStore, store_from_url
from shoptoken.testing._callback import signed_query
from shoptoken.testing._routing import is_shop_host

from .._logs import captured_events
from . import report

CLIENT_ID = "fuzz-client-id"
SECRET = "shpss_fuzz0client0secret0000000000000"
OLD_SECRET = "shpss_fuzz0old0secret000000000000000"
CUSTOMER_SECRET = "fuzz-customer-secret-000000000000"
REFRESH = "shprt_fuzz_refresh_token_0000000000"
ACCESS = "shpat_fuzz_access_token_00000000000"
NOW = 1_800_000_000.0
SHOP_ID = "4242"
SHOP = "fuzz-shop.myshopify.com"
ENCRYPTION_KEY = EncryptedStore.generate_key()
KEY_ENV = "SHOPTOKEN_FUZZ_KEYS"
BAD_KEY_ENV = "SHOPTOKEN_FUZZ_BAD_KEYS"


def examples(long_mode: bool, count: int) -> settings:
    """Hypothesis settings: ``count`` examples, ten times more with ``--long``."""
    return settings(
        max_examples=count * 10 if long_mode else count,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        derandomize=not long_mode,
    )


# --- untrusted text ---------------------------------------------------------------------------

# Pieces that have broken host checks elsewhere: other hosts, URL syntax,
# ports, userinfo, encodings, control characters, Unicode lookalikes.
FRAGMENTS = [
    "my-store",
    "MY-Store",
    "a" * 63,
    "a" * 64,
    ".myshopify.com",
    ".MyShopify.COM",
    "myshopify.com",
    ".myshopify.com.evil.com",
    "evil.com",
    "shopify.com",
    "@",
    "#",
    "?",
    "/",
    "\\",
    ":",
    ":443",
    "%2e",
    "%00",
    "\x00",
    " ",
    "\t",
    "\n",
    ".",
    "..",
    "-",
    "_",
    "xn--",
    "https://",
    "http://",
    "//",
    "[::1]",
    "127.0.0.1",
    "localhost",
    "\u212a",  # Kelvin sign: lower() gives "k"
    "\uff0e",  # fullwidth full stop
    "\u3002",  # ideographic full stop
    "\u0131",  # dotless i
    "\u200b",  # zero-width space
    "ß",
]
shop_texts = st.one_of(
    st.sampled_from(["fuzz-shop", "Fuzz-Shop.myshopify.com", "a", "0-0"]),
    st.text(max_size=70),
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=5).map("".join),
    st.tuples(
        st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=64),
        st.sampled_from(["", ".myshopify.com", ".MYSHOPIFY.COM", ".myshopify.com.", ":1"]),
    ).map("".join),
)
printable_header = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=40)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
FOREIGN_URLS = [
    "https://evil.example/steal",
    "//evil.example/x",
    "http://127.0.0.1:1/x",
    "http://169.254.169.254/latest/meta-data/",
    "https://fuzz-shop.myshopify.com.evil.example/x",
    "https://other-shop.myshopify.com/admin/oauth/access_token",
    "https://shopify.com/authentication/1/oauth/token",
    f"https://shopify.com/authentication/{SHOP_ID}/oauth/token",
    f"https://{SHOP}/authentication/token",
    f"https://{SHOP}:8443/x",
    f"https://u:p@{SHOP}/x",
    f"http://{SHOP}/x",
]
urls = st.one_of(st.sampled_from(FOREIGN_URLS), st.text(max_size=40), json_values)


# --- the recording transport --------------------------------------------------------------------


@attrs.frozen
class Reply:
    """One fuzzed answer of a token endpoint (or of anything else)."""

    status: int
    body: bytes = attrs.field(repr=False)
    headers: dict[str, str]

    def response(self) -> httpx.Response:
        """The answer as an httpx response."""
        return httpx.Response(self.status, content=self.body, headers=self.headers)


token_fields = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.one_of(st.just(ACCESS), json_leaves),
        "refresh_token": st.one_of(st.just("shprt_next_0000000000"), json_leaves),
        "expires_in": st.one_of(st.just(3600), json_leaves, st.text(max_size=14)),
        "refresh_token_expires_in": st.one_of(st.just(7776000), json_leaves),
        "scope": st.one_of(st.just("read_orders"), json_values),
        "associated_user": st.one_of(st.fixed_dictionaries({"id": json_leaves}), json_values),
        "associated_user_scope": json_values,
        "error": st.one_of(
            st.sampled_from(
                ["invalid_grant", "invalid_request", "invalid_subject_token", "invalid_client"]
            ),
            json_leaves,
        ),
        "error_description": st.one_of(st.just(f"bad {REFRESH} {SECRET}"), json_values),
        "errors": json_values,
    },
)
bodies = st.one_of(
    token_fields.map(lambda data: json.dumps(data).encode()),
    json_values.map(lambda data: json.dumps(data).encode()),
    st.binary(max_size=80),
)
reply_headers = st.dictionaries(
    st.sampled_from(
        ["Content-Type", "Retry-After", "Location", "Content-Encoding", "WWW-Authenticate"]
    ),
    st.one_of(
        st.sampled_from(
            [
                "application/json",
                "text/html; charset=utf-8",
                "gzip",
                "br",
                "deflate",
                "120",
                "-1",
                "1e309",
                "Wed, 21 Oct 2015 07:28:00 GMT",
                "Fri, 31 Dec 9999 23:59:59 GMT",
                *FOREIGN_URLS,
            ]
        ),
        printable_header,
    ),
    max_size=3,
)
statuses = st.one_of(
    st.sampled_from([200, 201, 204, 301, 302, 303, 307, 308, 400, 401, 403, 408, 429, 500, 520]),
    st.integers(min_value=200, max_value=599),
)
GOOD_REPLY = Reply(
    200,
    json.dumps(
        {
            "access_token": ACCESS,
            "refresh_token": "shprt_next_0000000000",
            "expires_in": 3600,
            "refresh_token_expires_in": 7776000,
            "scope": "read_orders",
            "associated_user": {"id": 7},
        }
    ).encode(),
    {"Content-Type": "application/json"},
)
#: Shopify's answer for a dead refresh token: the one reply the tallies must always see
#: (which replies are generated shifts with the test modules collected).
INVALID_GRANT_REPLY = Reply(
    400,
    json.dumps({"error": "invalid_grant", "error_description": "refresh token revoked"}).encode(),
    {"Content-Type": "application/json"},
)
replies = st.one_of(
    st.builds(Reply, statuses, bodies, reply_headers),
    # A 2xx JSON object with token fields, each usable or not.
    st.builds(
        Reply,
        st.sampled_from([200, 201]),
        token_fields.map(lambda data: json.dumps(data).encode()),
        st.just({"Content-Type": "application/json"}),
    ),
    st.just(GOOD_REPLY),
)


@attrs.define(eq=False)
class Recorder:
    """A mock transport's handler: records every request, answers with ``replies`` in turn."""

    replies: list[Reply] = attrs.field(factory=list)
    requests: list[httpx.Request] = attrs.field(factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Record ``request``; answer with the next reply (the last one repeats)."""
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return reply.response()

    def client(self) -> httpx.AsyncClient:
        """A client on this handler, with httpx's defaults (redirects not followed)."""
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def allowed(url: httpx.URL, *, shop_id: str | None = None) -> bool:
    """Whether ``url`` is https on a canonical shop host, or on Shopify's customer auth path."""
    if url.scheme != "https" or url.port is not None or url.userinfo:
        return False
    # The host as it goes on the wire (DNS, SNI, Host header): httpx's .host
    # decodes IDNA A-labels.
    host = url.raw_host.decode("ascii")
    if host == "shopify.com":
        return shop_id is not None and url.raw_path.startswith(
            f"/authentication/{shop_id}/".encode()
        )
    return is_shop_host(host)


def check_sent(recorder: Recorder, tally: Counter[str], *, shop_id: str | None = None) -> None:
    """Every recorded request went to an allowed URL."""
    for request in recorder.requests:
        tally["requests"] += 1
        assert allowed(request.url, shop_id=shop_id), request.url


def check_error(exc: BaseException, *secrets: str) -> None:
    """A raised error is ours and quotes no secret (str, repr, or its cause's str)."""
    texts = [str(exc), repr(exc), str(exc.__cause__), repr(exc.__cause__)]
    for secret in (SECRET, OLD_SECRET, CUSTOMER_SECRET, REFRESH, *secrets):
        if len(secret) < 12:
            continue  # fuzzed garbage too short to be a secret (and found in any text)
        for text in texts:
            assert secret not in text, (secret, text)


async def outcome(
    call: Callable[[], Awaitable[object]], documented: tuple[type[Exception], ...], *secrets: str
) -> str:
    """Run ``call``; return ``ok`` or the name of a documented error (anything else fails)."""
    try:
        with captured_events():
            await call()
    except documented as exc:
        check_error(exc, *secrets)
        return type(exc).__name__
    return "ok"


def run(fn: Callable[..., Awaitable[object]], *args: object) -> None:
    """One example's async body, in a trio run of its own (its log lines dropped)."""
    with captured_events():
        trio.run(fn, *args)


def oauth_on(recorder: Recorder) -> ShopifyOAuth:
    """A ShopifyOAuth whose every request goes to ``recorder``."""
    return ShopifyOAuth(
        CLIENT_ID,
        SECRET,
        http=recorder.client(),
        old_client_secret=OLD_SECRET,
        clock=lambda: NOW,
    )


# --- shop domains -------------------------------------------------------------------------------

KEY_BUILDERS: dict[str, Callable[[str], str | TokenKey]] = {
    "normalize_shop": normalize_shop,
    "TokenKey.offline": TokenKey.offline,
    "TokenKey.online": lambda text: TokenKey.online(text, 42),
    "TokenKey.customer": lambda text: TokenKey.customer(text, "gid://shopify/Customer/1"),
    "TokenKey.parse": TokenKey.parse,
    "TokenKey.parse offline": lambda text: TokenKey.parse(f"offline:{text}"),
    "TokenKey.parse online": lambda text: TokenKey.parse(f"online:{text}:42"),
    "TokenKey.parse customer": lambda text: TokenKey.parse(f"customer:{text}:c:1"),
}


def test_shop_inputs_give_a_shopify_host_or_a_value_error(long_mode: bool) -> None:
    """Every key constructor refuses with ValueError, or yields a host URLs cannot escape."""
    tally: Counter[str] = Counter()

    @examples(long_mode, 400)
    @given(text=shop_texts)
    def check(text: str) -> None:
        tally["examples"] += 1
        for name, build in KEY_BUILDERS.items():
            try:
                result = build(text)
            except InvalidShopDomain as exc:
                tally["refused"] += 1
                message = str(exc)
                assert message.isascii()
                assert "\n" not in message
                assert len(message) <= 1000  # the bound tests/test_keys.py pins
                continue
            except ValueError:
                tally["refused"] += 1
                assert name.startswith("TokenKey.parse")
                continue
            host = result if isinstance(result, str) else result.shop
            tally["accepted"] += 1
            assert is_shop_host(host), (name, text, host)
            # The host stays the host once inside a URL: no port, path or userinfo.
            url = httpx.URL(f"https://{host}/admin/oauth/access_token")
            assert (url.host, url.port, url.path) == (host, None, "/admin/oauth/access_token")
            if isinstance(result, TokenKey):
                assert TokenKey.parse(str(result)) == result

    check()
    report("fuzz shop domains", constructors=len(KEY_BUILDERS), **tally)
    assert tally["accepted"] > 0
    assert tally["refused"] > 0


@given(subject=st.one_of(json_leaves, st.text(max_size=30)))
def test_key_subjects_raise_only_value_errors(subject: Any) -> None:
    """Online and customer keys refuse any odd subject with ValueError, and parse back."""
    for build in (TokenKey.online, TokenKey.customer):
        try:
            key = build(SHOP, subject)
        except ValueError:
            continue
        assert TokenKey.parse(str(key)) == key


# --- callback queries ---------------------------------------------------------------------------

query_extras = st.dictionaries(
    st.text(max_size=10).filter(lambda name: name not in ("hmac", "signature")),
    st.text(max_size=20),
    max_size=3,
)


def test_signed_callbacks_with_hostile_shops(long_mode: bool) -> None:
    """A correctly signed query with any shop: InvalidCallback, or a shop host the code goes to."""
    tally: Counter[str] = Counter()

    async def body(params: dict[str, str], tamper: str | None, state: str | None) -> None:
        query = signed_query(params, SECRET)
        if tamper is not None:
            query["hmac"] = tamper
        recorder = Recorder([GOOD_REPLY])
        oauth = oauth_on(recorder)
        try:
            verified = oauth.verify_callback(query, state=state)
        except InvalidCallback as exc:
            check_error(exc, params["code"])
            tally["refused"] += 1
        else:
            tally["verified"] += 1
            assert is_shop_host(verified["shop"])
            documented = (ReauthorizationRequired, RefreshFailed, InvalidCallback)
            tally[
                await outcome(
                    lambda: oauth.exchange_code(verified["shop"], params["code"]), documented
                )
            ] += 1
            assert [request.url.host for request in recorder.requests] == [verified["shop"]]
        check_sent(recorder, tally)
        await oauth.aclose()

    @examples(long_mode, 200)
    @given(
        shop=shop_texts,
        extra=query_extras,
        age=st.integers(min_value=-200, max_value=400),
        tamper=st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        state=st.none() | st.text(max_size=12),
    )
    def check(
        shop: str, extra: dict[str, str], age: int, tamper: str | None, state: str | None
    ) -> None:
        tally["examples"] += 1
        params = {**extra, "shop": shop, "timestamp": str(int(NOW) - age), "code": "fuzz-code-1"}
        if state is not None and len(state) % 2:
            params["state"] = state  # the expected state, half the time
        run(body, params, tamper, state)

    check()
    report("fuzz signed callback queries", **tally)
    assert tally["verified"] > 0
    assert tally["refused"] > 0


# --- session tokens -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_jwt(header: object, payload: object, key: str | None) -> str:
    """A JWT with any header and payload JSON, HS256-signed with ``key`` (unsigned if None)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


dests = st.one_of(
    shop_texts.map(lambda shop: f"https://{shop}"),
    st.sampled_from(FOREIGN_URLS),
    json_values,
)
headers = st.one_of(
    st.just({"alg": "HS256", "typ": "JWT"}),
    st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit", "b64", "jku"]), json_values),
    json_values,
)


@st.composite
def session_tokens(draw: st.DrawFn) -> str:
    """Session tokens: a valid one with 0-3 of its parts replaced by anything, or garbage.

    The parts: the header, the key it is signed with (ours, the old one
    during a rotation, a wrong one, none), and each claim (``dest`` from
    hostile shop texts, the others from any JSON).
    """
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=60))
    dest = f"https://{draw(st.sampled_from(['fuzz-shop', 'Other-Shop']))}.myshopify.com"
    header: object = {"alg": "HS256", "typ": "JWT"}
    payload: dict[str, Any] = {
        "iss": f"{dest}/admin",
        "dest": dest,
        "aud": CLIENT_ID,
        "sub": "42",
        "exp": NOW + 60,
        "nbf": NOW - 5,
        "iat": NOW - 5,
        "jti": "fuzz-jti",
        "sid": "fuzz-sid",
    }
    key: str | None = SECRET
    parts = ["header", "key", *sorted(payload)]
    for part in draw(st.lists(st.sampled_from(parts), max_size=3, unique=True)):
        if part == "header":
            header = draw(headers)
        elif part == "key":
            key = draw(st.sampled_from([OLD_SECRET, "shpss_wrong_secret_00000000000000", None]))
        elif part == "dest":
            payload["dest"] = draw(dests)
            if draw(st.booleans()):
                payload["iss"] = f"{payload['dest']}/admin"
        elif draw(st.booleans()):
            del payload[part]
        else:
            payload[part] = draw(
                st.sampled_from([NOW - 3600, NOW + 3600, "42", "0", "another-app"]) | json_values
            )
    return session_jwt(header, payload, key)


def test_session_tokens_and_token_exchange(long_mode: bool) -> None:
    """Any session token: InvalidSessionToken or verified claims of a shop host, exchanged there."""
    tally: Counter[str] = Counter()

    async def body(session_token: str, online: bool, reply: Reply) -> None:
        recorder = Recorder([reply])
        oauth = oauth_on(recorder)
        try:
            claims = oauth.verify_session_token(session_token)
        except InvalidSessionToken as exc:
            check_error(exc, session_token)
            tally["refused"] += 1
        else:
            tally["verified"] += 1
            assert is_shop_host(claims.shop)
        documented = (InvalidSessionToken, ReauthorizationRequired, RefreshFailed)
        result = await outcome(
            lambda: oauth.exchange_session_token(session_token, online=online),
            documented,
            session_token,
        )
        tally[f"exchange {result}"] += 1
        check_sent(recorder, tally)
        if recorder.requests:
            assert tally["verified"]
            assert {request.url.host for request in recorder.requests} == {claims.shop}
        await oauth.aclose()

    @examples(long_mode, 250)
    @given(session_token=session_tokens(), online=st.booleans(), reply=replies)
    def check(session_token: str, online: bool, reply: Reply) -> None:
        tally["examples"] += 1
        run(body, session_token, online, reply)

    check()
    report("fuzz session tokens", **tally)
    assert tally["verified"] > 0
    assert tally["refused"] > 0


# --- token endpoint answers, through every grant --------------------------------------------------

OLD_TOKEN = Token(
    access_token=ACCESS,
    refresh_token=REFRESH,
    expires_at=datetime.fromtimestamp(NOW, UTC),
)


def test_token_answers_to_every_grant(long_mode: bool) -> None:
    """Any status, body, headers: refresh, code exchange, migration raise only their errors."""
    tally: Counter[str] = Counter()
    shop = "fuzz-shop"

    async def body(reply: Reply, shop_text: str) -> None:
        recorder = Recorder([reply])
        oauth = oauth_on(recorder)
        base = (ReauthorizationRequired, RefreshFailed)
        grants: dict[str, tuple[Callable[[], Awaitable[object]], tuple[type[Exception], ...]]] = {
            "refresh": (lambda: oauth.refresh(TokenKey.offline(shop), OLD_TOKEN), base),
            "exchange_code": (
                lambda: oauth.exchange_code(shop_text, "fuzz-code-1"),
                (*base, InvalidShopDomain),
            ),
            "migrate_to_expiring": (
                lambda: oauth.migrate_to_expiring(shop_text, "shpat_legacy_token_0000"),
                (*base, InvalidShopDomain),
            ),
        }
        for name, (call, documented) in grants.items():
            result = await outcome(call, documented, "fuzz-code-1", "shpat_legacy_token_0000")
            tally[f"{name} {result}"] += 1
        check_sent(recorder, tally)
        await oauth.aclose()

    @examples(long_mode, 300)
    @given(reply=replies, shop_text=st.one_of(st.just(shop), shop_texts))
    # Each mapping row at least once, whatever the draw.
    @example(reply=INVALID_GRANT_REPLY, shop_text=shop)
    @example(reply=Reply(401, b'{"error": "invalid_client"}', {}), shop_text=shop)
    @example(reply=Reply(502, b"", {}), shop_text=shop)
    def check(reply: Reply, shop_text: str) -> None:
        tally["examples"] += 1
        run(body, reply, shop_text)

    check()
    report("fuzz token endpoint answers", **tally)
    assert tally["refresh ok"] > 0
    assert tally["refresh RefreshFailed"] > 0
    assert tally["refresh ReauthorizationRequired"] > 0


def test_authorization_urls_stay_on_the_shop(long_mode: bool) -> None:
    """Any shop, scopes, redirect URI and state: the install URL is the shop's authorize page."""
    tally: Counter[str] = Counter()
    oauth = ShopifyOAuth(CLIENT_ID, SECRET)

    @examples(long_mode, 300)
    @given(
        shop=shop_texts,
        scopes=st.one_of(
            st.sampled_from(["read_orders", ["read_orders", "write_products"]]),
            st.text(max_size=20),
            st.lists(st.text(max_size=8), max_size=3),
        ),
        redirect_uri=st.one_of(st.sampled_from(FOREIGN_URLS), st.text(max_size=30)),
        state=st.text(max_size=20),
        online=st.booleans(),
    )
    def check(shop: str, scopes: Any, redirect_uri: str, state: str, online: bool) -> None:
        tally["examples"] += 1
        try:
            url = oauth.authorization_url(shop, scopes, redirect_uri, state=state, online=online)
        except (InvalidShopDomain, ValueError, TypeError):
            tally["refused"] += 1
            return
        tally["built"] += 1
        parsed = httpx.URL(url)
        assert allowed(parsed)
        assert parsed.path == "/admin/oauth/authorize"
        assert parsed.host == normalize_shop(shop)
        assert parsed.params["redirect_uri"] == redirect_uri
        assert parsed.params["state"] == state

    check()
    report("fuzz authorization urls", **tally)
    assert tally["built"] > 0


# --- the Customer Account API and its discovery documents --------------------------------------

discovery_documents = st.one_of(
    st.fixed_dictionaries(
        {"authorization_endpoint": urls, "token_endpoint": urls},
        optional={"issuer": urls, "jwks_uri": urls},
    ),
    st.just(
        {
            "authorization_endpoint": f"https://shopify.com/authentication/{SHOP_ID}/oauth/authorize",
            "token_endpoint": f"https://shopify.com/authentication/{SHOP_ID}/oauth/token",
        }
    ),
    st.just(
        {
            "authorization_endpoint": f"https://{SHOP}/authentication/oauth/authorize",
            "token_endpoint": f"https://{SHOP}/authentication/oauth/token",
        }
    ),
    json_values,
)


def customer_server(
    discovery: Reply, token: Reply, log: Recorder
) -> Callable[[httpx.Request], httpx.Response]:
    """Discovery GETs to the shop get ``discovery``, elsewhere its document; POSTs get ``token``."""

    def answer(request: httpx.Request) -> httpx.Response:
        log.requests.append(request)
        if request.method != "GET":
            return token.response()
        if request.url.host == SHOP:
            return discovery.response()
        return httpx.Response(200, content=discovery.body)

    return answer


discovery_replies = st.one_of(
    replies,
    st.builds(
        Reply,
        st.sampled_from([301, 302, 303, 307, 308]),
        st.just(b""),
        st.fixed_dictionaries({"Location": st.sampled_from(FOREIGN_URLS)}),
    ),
)


def test_customer_accounts_with_fuzzed_discovery(long_mode: bool) -> None:
    """Any shop, discovery answer (redirects included) and document: no request leaves Shopify.

    Every request, the discovery GET included, goes to the shop's domain or
    to ``shopify.com/authentication/{shop_id}/``.
    """
    tally: Counter[str] = Counter()

    async def body(
        shop_text: str, document: object, discovery: Reply, token: Reply, confidential: bool
    ) -> None:
        log = Recorder([GOOD_REPLY])
        redirected = attrs.evolve(discovery, body=json.dumps(document).encode())
        handler = customer_server(redirected, token, log)
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        try:
            oauth = CustomerAccountOAuth(
                SHOP_ID,
                "shp_fuzz-customer-client",
                client_secret=CUSTOMER_SECRET if confidential else None,
                http=http,
                shop=shop_text,
                clock=lambda: NOW,
            )
        except InvalidShopDomain:
            tally["shop refused"] += 1
            await http.aclose()
            return
        assert oauth.shop is not None
        key = TokenKey.customer(oauth.shop, "gid://shopify/Customer/1")
        documented = (ReauthorizationRequired, RefreshFailed)
        verifier = "v" * 43
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "discover": oauth.discover,
            "refresh": lambda: oauth.refresh(key, OLD_TOKEN),
            "exchange_code": lambda: oauth.exchange_code(
                "fuzz-code-1", "https://app.example/cb", code_verifier=verifier
            ),
        }
        for name, call in calls.items():
            result = await outcome(call, documented, "fuzz-code-1", verifier)
            tally[f"{name} {result}"] += 1
        try:
            login = oauth.authorization_url(
                "https://app.example/cb", state="s", code_verifier=verifier
            )
        except RuntimeError:
            tally["authorization_url before discovery"] += 1
        else:
            assert allowed(httpx.URL(login), shop_id=SHOP_ID)
        check_sent(log, tally, shop_id=SHOP_ID)
        await oauth.aclose()
        await http.aclose()

    @examples(long_mode, 200)
    @given(
        shop_text=st.one_of(st.just(SHOP), shop_texts),
        document=discovery_documents,
        discovery=discovery_replies,
        token=replies,
        confidential=st.booleans(),
    )
    def check(
        shop_text: str, document: object, discovery: Reply, token: Reply, confidential: bool
    ) -> None:
        tally["examples"] += 1
        run(body, shop_text, document, discovery, token, confidential)

    check()
    report("fuzz customer accounts discovery", **tally)
    assert tally["refresh ok"] > 0


# --- findings, fixed: where a request could leave Shopify, or a shop break httpx -----------
#
# Found by this file and fixed in src (regression tests): a token request on a
# client with follow_redirects=True re-POSTed its secrets to the redirect's
# target; discovery followed redirects to any host and scheme; and "xn--"
# shop names passed normalize_shop, then made httpx raise idna.IDNAError.


async def test_token_requests_never_follow_redirects() -> None:
    """Even on a client that follows redirects, a grant's POST goes nowhere but the shop."""
    recorder = Recorder([Reply(307, b"", {"Location": "https://evil.example/steal"}), GOOD_REPLY])
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder), follow_redirects=True)
    async with ShopifyOAuth(CLIENT_ID, SECRET, http=http, clock=lambda: NOW) as oauth:
        with captured_events(), pytest.raises(RefreshFailed):
            await oauth.refresh(TokenKey.offline("fuzz-shop"), OLD_TOKEN)
    await http.aclose()
    assert [str(request.url.host) for request in recorder.requests] == [SHOP]


async def test_discovery_does_not_follow_redirects() -> None:
    """A discovery redirect (to an internal address, say) fails discovery; it is not followed."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == SHOP:
            return httpx.Response(301, headers={"Location": "http://169.254.169.254/latest/"})
        return httpx.Response(200, json={"token_endpoint": "https://evil.example/t"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    oauth = CustomerAccountOAuth(SHOP_ID, "shp_client", http=http, shop=SHOP)
    with captured_events(), pytest.raises(RefreshFailed):
        await oauth.discover()
    await http.aclose()
    assert [str(request.url) for request in seen] == [
        f"https://{SHOP}/.well-known/openid-configuration"
    ]


@pytest.mark.parametrize("name", ["xn--", "XN--zz", "xn--ls8h", "xn--abc-", "xn--000a"])
async def test_xn_shop_names_are_refused(name: str) -> None:
    """An IDNA ("xn--") shop name is refused up front, like any other bad domain, with no I/O."""
    recorder = Recorder([GOOD_REPLY])
    async with oauth_on(recorder) as oauth:
        with pytest.raises(InvalidShopDomain):
            await oauth.exchange_code(name, "fuzz-code-1")
    assert recorder.requests == []


# --- stored rows --------------------------------------------------------------------------------


def _micros(epoch: float) -> int:
    return round(epoch * 1_000_000)


MICROS = st.sampled_from(
    [
        _micros(NOW - 3600),  # expired
        _micros(NOW + 30),  # about to expire
        _micros(NOW + 3600),  # fresh
        _micros(NOW + 90 * 86400),
        -62135596800000000,  # 0001-01-01, datetime's first microsecond
        253402300799999999,  # 9999-12-31 23:59:59.999999, its last
        0,
    ]
)
no_surrogates = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30)
anything = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),  # SQLite stores NaN as NULL
    no_surrogates,
    st.binary(max_size=20),
)
KEY = TokenKey.offline("fuzz-row")
# What EncryptedStore writes for KEY: valid ciphertexts (and, swapped, invalid ones).
SEALED = EncryptedStore(MemoryStore(), {"k1": ENCRYPTION_KEY})._seal(
    KEY, Token(access_token=ACCESS, refresh_token=REFRESH)
)
SECRETS = [ACCESS, REFRESH, SEALED.access_token, SEALED.refresh_token or "", "", "v1:k1:AAAA"]


ROW_COLUMNS: dict[str, tuple[st.SearchStrategy[Any], bool]] = {
    # column: (plausible values, nullable)
    "kind": (st.sampled_from(["offline", "offline", "online", "customer", "OFFLINE"]), False),
    "shop": (st.just(KEY.shop), False),
    "subject": (st.none(), True),
    "access_token": (st.sampled_from(SECRETS), False),
    "refresh_token": (st.sampled_from([None, *SECRETS]), True),
    "scope": (st.just("read_orders"), False),
    "expires_at": (st.none() | MICROS, True),
    "refresh_token_expires_at": (st.none() | MICROS, True),
    "associated_user_id": (st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1), True),
    "associated_user_scope": (st.none() | st.just("read_orders"), True),
    "generation": (st.integers(min_value=1, max_value=9), False),
    "updated_at": (MICROS, False),
}


@st.composite
def rows(draw: st.DrawFn) -> dict[str, object]:
    """A row of the SQL stores' table: plausible values, with 0-3 columns holding anything."""
    broken = draw(st.lists(st.sampled_from(sorted(ROW_COLUMNS)), max_size=3, unique=True))
    row: dict[str, object] = {"key": str(KEY)}
    for name, (plausible, nullable) in ROW_COLUMNS.items():
        value = draw(anything) if name in broken else draw(plausible)
        row[name] = value if value is not None or nullable else draw(plausible)
    return row


stored_keys = st.one_of(no_surrogates, st.sampled_from(["offline:", "online:x:1", "customer:a:"]))


def test_stored_rows_raise_only_persistence_error(
    long_mode: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Any value in any column: load, list and the manager raise only their documented errors."""
    tally: Counter[str] = Counter()
    path = tmp_path_factory.mktemp("rows") / "tokens.db"
    with sqlite3.connect(path) as conn:
        conn.execute(SQLiteStore.schema_sql())

    async def body(row: dict[str, object], other_key: str) -> None:
        recorder = Recorder([GOOD_REPLY])
        async with SQLiteStore(path) as store:
            for name, load in (
                ("plain", store.load_tokens),
                ("encrypted", EncryptedStore(store, {"k1": ENCRYPTION_KEY}).load_tokens),
            ):
                try:
                    token = await load(KEY)
                except PersistenceError as exc:
                    check_error(exc)
                    tally[f"{name} load PersistenceError"] += 1
                else:
                    tally[f"{name} load ok"] += 1
                    assert isinstance(token, Token)
            try:
                keys = [key async for key in store.list_keys()]
            except PersistenceError:
                tally["list PersistenceError"] += 1
            else:
                tally["list ok"] += 1
                assert KEY in keys
            oauth = oauth_on(recorder)
            policy = RefreshPolicy(retry_initial=0.01, retry_max=0.01)
            documented = (PersistenceError, NoToken, ReauthorizationRequired, RefreshFailed)
            async with open_token_manager(oauth, store, policy=policy, clock=lambda: NOW) as tokens:
                result = await outcome(lambda: tokens.valid_token(KEY), documented)
                tally[f"valid_token {result}"] += 1
            await oauth.aclose()
        check_sent(recorder, tally)

    @examples(long_mode, 200)
    @given(row=rows(), other_key=stored_keys)
    def check(row: dict[str, object], other_key: str) -> None:
        tally["examples"] += 1
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM shoptoken_tokens")
            for values in (row, {**row, "key": other_key}):
                names = ", ".join(values)
                marks = ", ".join("?" for _ in values)
                conn.execute(
                    f"INSERT OR REPLACE INTO shoptoken_tokens ({names}) VALUES ({marks})",  # noqa: S608 - our own column names
                    list(values.values()),
                )
        run(body, row, other_key)

    check()
    report("fuzz stored rows", **tally)
    assert tally["plain load ok"] > 0
    assert tally["plain load PersistenceError"] > 0


# --- store URLs ---------------------------------------------------------------------------------

PASSWORD = "pw-Secret-7731"
url_schemes = st.sampled_from(
    ["memory", "sqlite", "postgresql", "postgres", "POSTGRESQL", "mysql", "file", "", "sqlite3"]
)
url_params = st.lists(
    st.tuples(
        st.sampled_from(
            ["table", "schema", "encrypt_key_env", "sslmode", "connect_timeout", "x", "table"]
        ),
        st.one_of(
            st.sampled_from(
                ["shoptoken_tokens", "t1", "bad name", "", KEY_ENV, BAD_KEY_ENV, "NOPE"]
            ),
            st.text(max_size=10),
        ),
    ),
    max_size=3,
).map(lambda pairs: "&".join(f"{name}={value}" for name, value in pairs))


GOOD_STORE_URLS = [
    "memory://",
    f"memory://?encrypt_key_env={KEY_ENV}",
    "sqlite:///tokens.db",
    f"sqlite:///tokens.db?encrypt_key_env={KEY_ENV}",
    "sqlite:////tmp/shoptoken-fuzz/tokens.db",
    f"postgresql://app:{PASSWORD}@db/app",
    f"postgres://app:{PASSWORD}@db:5432/app?sslmode=require",
]


@st.composite
def store_urls(draw: st.DrawFn) -> object:
    """Store URLs: documented forms with fuzzed parameters, assembled pieces, or anything."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.one_of(st.text(max_size=40), json_leaves, st.binary(max_size=10)))
    query = draw(url_params)
    if choice < 5:
        base = draw(st.sampled_from(GOOD_STORE_URLS))
        separator = "&" if "?" in base else "?"
        return base + (f"{separator}{query}" if query else "")
    scheme = draw(url_schemes)
    netloc = draw(st.sampled_from(["", f"app:{PASSWORD}@db", "db:5432", f":{PASSWORD}@"]))
    path = draw(
        st.sampled_from(["", "/", "//", "/tokens.db", "//tmp/x.db", "/app"]) | st.text(max_size=10)
    )
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def test_store_urls_raise_only_value_or_type_errors(
    long_mode: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any store URL builds a store, or a one-line ValueError/TypeError without its password."""
    tally: Counter[str] = Counter()
    monkeypatch.setenv(KEY_ENV, EncryptedStore.format_key("k1", ENCRYPTION_KEY))
    monkeypatch.setenv(BAD_KEY_ENV, "k1:not-base64!")
    workdir = Path(tempfile.mkdtemp(prefix="shoptoken-fuzz-"))
    monkeypatch.chdir(workdir)

    async def close(store: Any) -> None:
        aclose = getattr(store, "aclose", None)
        if aclose is not None:
            await aclose()

    @examples(long_mode, 300)
    @given(url=store_urls())
    def check(url: Any) -> None:
        tally["examples"] += 1
        try:
            store = store_from_url(url)
        except (ValueError, TypeError) as exc:
            tally[type(exc).__name__] += 1
            message = str(exc)
            assert PASSWORD not in message
            assert "\n" not in message
            return
        tally[type(store).__name__] += 1
        run(close, store)

    check()
    # Nothing was created on disk: building a store opens nothing.
    assert list(workdir.iterdir()) == []
    workdir.rmdir()
    report("fuzz store urls", **tally)
    assert tally["ValueError"] > 0
    for built in ("MemoryStore", "SQLiteStore", "PostgresStore", "EncryptedStore"):
        assert tally[built] > 0, built
