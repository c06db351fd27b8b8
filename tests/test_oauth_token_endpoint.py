"""The shared token endpoint machinery: one POST, its answer mapped into the tree."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoptoken._errors import (
    InvalidSessionToken,
    ReauthorizationRequired,
    RefreshFailed,
    ShopTokenError,
)
from shoptoken._keys import TokenKey
from shoptoken._oauth._token_endpoint import (
    CODE_LIMIT,
    DESCRIPTION_LIMIT,
    ErrorAnswer,
    default_error,
    error_answer,
    is_transient,
    keep_refresh_token,
    post_token_request,
    refresh_failed,
    request_secrets,
    safe_excerpt,
)
from shoptoken._token import Token, TokenResponseError

from ._logs import captured_events

EPOCH = 1_800_000_000.0
URL = "https://shopify.com/authentication/123/oauth/token"
KEY = TokenKey.customer("my-store", "gid://shopify/Customer/1")
BODY = {"access_token": "new-access", "expires_in": 3600, "refresh_token": "new-refresh"}


def answer(status: int, error: str | None = None, **kwargs: Any) -> ErrorAnswer:
    """An ErrorAnswer for ``status`` and ``error``."""
    fields: dict[str, Any] = {
        "error_description": None,
        "retry_after": None,
        "where": "shop",
        "action": "grant",
    }
    fields.update(kwargs)
    return ErrorAnswer(status=status, error=error, **fields)


def replying(status: int, body: object = None, headers: dict[str, str] | None = None) -> Any:
    """A fake server answering every request with ``status`` and a JSON ``body``."""

    def reply(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return reply


async def post(reply: Any, **kwargs: Any) -> Token:
    """post_token_request to URL through a MockTransport answering with ``reply``."""
    kwargs.setdefault("where", str(KEY))
    kwargs.setdefault("action", "customer token refresh")
    kwargs.setdefault("clock", lambda: EPOCH)
    kwargs.setdefault("key", KEY)
    payload = kwargs.pop("payload", {"grant_type": "refresh_token", "refresh_token": "old-refresh"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(reply)) as http:
        return await post_token_request(http, URL, payload, **kwargs)


# --- post_token_request -------------------------------------------------------------------------


async def test_form_encoding() -> None:
    """encoding="form" sends application/x-www-form-urlencoded fields, still asking for JSON."""
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=BODY)

    token = await post(
        reply, encoding="form", payload={"grant_type": "refresh_token", "client_id": "c"}
    )
    [request] = seen
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["refresh_token"],
        "client_id": ["c"],
    }
    assert token.expires_at == datetime.fromtimestamp(EPOCH, UTC) + timedelta(seconds=3600)


async def test_json_encoding_is_the_default() -> None:
    """Without encoding=, the payload goes as a JSON object."""
    seen: list[bytes] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json=BODY)

    await post(reply, payload={"a": "1"})
    assert json.loads(seen[0]) == {"a": "1"}


async def test_map_error_hook_decides_first() -> None:
    """A map_error result is raised instead of the default mapping."""

    def mapper(ans: ErrorAnswer) -> ShopTokenError | None:
        if ans.error == "invalid_subject_token":
            return InvalidSessionToken(ans.detail, key=ans.key)
        return None

    reply = replying(400, {"error": "invalid_subject_token"})
    with pytest.raises(InvalidSessionToken, match="HTTP 400 invalid_subject_token") as info:
        await post(reply, map_error=mapper)
    assert info.value.key == KEY
    reply = replying(400, {"error": "invalid_grant"})
    with pytest.raises(ReauthorizationRequired):
        await post(reply, map_error=mapper)


async def test_custom_parser() -> None:
    """A parse= hook builds the token; its TokenResponseError becomes invalid_response."""

    def parse(data: object, *, sent_at: float) -> Token:
        assert isinstance(data, dict)
        if "id_token" not in data:
            msg = "no id_token"
            raise TokenResponseError(msg)
        return Token(access_token=data["access_token"], scope=str(sent_at))

    good = replying(200, {**BODY, "id_token": "x"})
    assert (await post(good, parse=parse)).scope == str(EPOCH)
    bad = replying(200, BODY)
    with pytest.raises(RefreshFailed, match="no id_token") as info:
        await post(bad, parse=parse)
    assert (info.value.error, info.value.transient, info.value.status) == (
        "invalid_response",
        True,
        200,
    )


async def test_previous_keeps_refresh_token() -> None:
    """previous= carries the old refresh token over when the answer has none."""
    old = Token(access_token="a", refresh_token="old-refresh")
    reply = replying(200, {"access_token": "b"})
    with captured_events():
        token = await post(reply, previous=old)
    assert token.refresh_token == "old-refresh"


async def test_extra_secrets_are_scrubbed() -> None:
    """secrets= values not in the payload are scrubbed from quoted error text too."""
    reply = replying(400, {"error": "bad", "error_description": "client secret topsecret-value-1"})
    with pytest.raises(RefreshFailed) as info:
        await post(reply, secrets=["topsecret-value-1", None])
    assert info.value.error_description == "client secret [redacted]"


async def test_clock_read_once_on_non_transient_error() -> None:
    """A non-transient error reads the clock only for the send time (no Retry-After needed)."""
    readings: list[float] = []

    def clock() -> float:
        readings.append(EPOCH)
        return EPOCH

    reply = replying(403, headers={"Retry-After": "5"})
    with pytest.raises(RefreshFailed) as info:
        await post(reply, clock=clock)
    assert len(readings) == 1
    assert info.value.retry_after is None


# --- pieces ---------------------------------------------------------------------------------------


def test_error_answer_fields() -> None:
    """error_answer reads error, description (or errors) and Retry-After on transient statuses."""
    response = httpx.Response(
        429, json={"errors": "Exceeded 2 calls per second"}, headers={"Retry-After": "4"}
    )
    got = error_answer(response, secrets=(), clock=lambda: EPOCH, where="w", action="a", key=KEY)
    assert got == ErrorAnswer(
        status=429,
        error=None,
        error_description="Exceeded 2 calls per second",
        retry_after=4.0,
        where="w",
        action="a",
        key=KEY,
    )
    assert got.detail == "HTTP 429: Exceeded 2 calls per second"
    assert got.transient


def test_error_answer_scrubs_tokens_of_the_body() -> None:
    """Tokens an error body carries are scrubbed from its quoted fields."""
    response = httpx.Response(
        400, json={"error": "x", "error_description": "got tok-123", "access_token": "tok-123"}
    )
    got = error_answer(response, secrets=(), clock=lambda: EPOCH, where="w", action="a")
    assert got.error_description == "got [redacted]"


@pytest.mark.parametrize(
    ("ans", "error", "transient"),
    [
        (answer(400, "invalid_grant"), ReauthorizationRequired, None),
        (answer(401), ReauthorizationRequired, None),
        (answer(400, "invalid_request"), RefreshFailed, False),
        (answer(404), RefreshFailed, False),
        (answer(408), RefreshFailed, True),
        (answer(429, retry_after=3.0), RefreshFailed, True),
        (answer(500), RefreshFailed, True),
        (answer(520), RefreshFailed, True),
    ],
)
def test_default_error_table(
    ans: ErrorAnswer, error: type[ShopTokenError], transient: bool | None
) -> None:
    """default_error follows the table of the module docstring."""
    exc = default_error(ans)
    assert type(exc) is error
    if isinstance(exc, RefreshFailed):
        assert exc.transient is transient
        assert exc.retry_after == ans.retry_after


def test_refresh_failed_transient_override() -> None:
    """refresh_failed may force transience; a non-transient error drops retry_after."""
    exc = refresh_failed(answer(429, retry_after=9.0), transient=False)
    assert (exc.transient, exc.retry_after) == (False, None)
    exc = refresh_failed(answer(400, "invalid_request"), transient=True)
    assert (exc.transient, exc.status) == (True, 400)
    assert str(exc) == "shop: grant failed (HTTP 400 invalid_request); transient"


@pytest.mark.parametrize(
    ("status", "expected"), [(200, False), (400, False), (408, True), (429, True), (503, True)]
)
def test_is_transient(status: int, expected: bool) -> None:
    """408, 429 and 5xx are transient; the rest is not."""
    assert is_transient(status) is expected


def test_request_secrets() -> None:
    """request_secrets picks the secret fields of a payload and the non-empty extras."""
    payload = {
        "client_id": "id",
        "client_secret": "cs",
        "code": "cd",
        "subject_token": "st",
        "refresh_token": "",
        "grant_type": "g",
    }
    assert set(request_secrets(payload, ["x", None, ""])) == {"cs", "cd", "st", "x"}


def test_keep_refresh_token_only_when_missing() -> None:
    """The old refresh token is kept only when the new token has none and the old one had one."""
    old = Token(access_token="a", refresh_token="r1")
    with_refresh = Token(access_token="b", refresh_token="r2")
    assert keep_refresh_token(with_refresh, old, sent_at=EPOCH) is with_refresh
    bare = Token(access_token="b")
    assert keep_refresh_token(bare, Token(access_token="a"), sent_at=EPOCH) is bare
    with captured_events():
        kept = keep_refresh_token(bare, old, sent_at=EPOCH)
    assert kept.refresh_token == "r1"
    assert kept.expires_at is not None


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("token shpat_abc123 leaked", "token [redacted] leaked"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln here", "jwt [redacted] here"),
        ("line\nbreak\u00e9", "line\\nbreak\\xe9"),
        ("x" * 300, "x" * DESCRIPTION_LIMIT + "..."),
    ],
    ids=["shopify-token", "jwt", "unprintable", "long"],
)
def test_safe_excerpt(text: str, shown: str) -> None:
    """safe_excerpt masks token shapes, escapes non-ASCII and truncates."""
    assert safe_excerpt(text, (), limit=DESCRIPTION_LIMIT) == shown


def test_code_limit() -> None:
    """Error codes are cut at CODE_LIMIT characters."""
    assert safe_excerpt("e" * 100, (), limit=CODE_LIMIT) == "e" * CODE_LIMIT + "..."


@given(
    st.text(max_size=400),
    st.lists(st.text(alphabet="abcdefghijklmnop0123456789", min_size=12, max_size=30), max_size=3),
    st.integers(min_value=1, max_value=250),
)
def test_safe_excerpt_properties(text: str, secrets: list[str], limit: int) -> None:
    """Whatever the text, the excerpt is ASCII, printable, bounded and free of the secrets."""
    for secret in secrets:
        text = f"{text}{secret}{text[:5]}"
    shown = safe_excerpt(text, secrets, limit=limit)
    assert shown.isascii()
    assert shown.isprintable()
    assert len(shown) <= limit + 3
    for secret in secrets:
        assert secret not in shown
