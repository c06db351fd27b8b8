from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shoptoken import Token
from shoptoken._token import ASSUMED_LIFETIME, TokenResponseError, parse_token_response

from ._logs import captured_events

SENT_AT = 1_700_000_000.0
SENT = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # == SENT_AT
ACCESS = "shpat_0123456789abcdef"
REFRESH = "shprt_fedcba9876543210"
TEN_YEARS = 10 * 365 * 86400

secrets = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=8,
    max_size=64,
)
# Prefixed so a secret can never coincide with fixed text of a message.
prefixed_access = st.from_regex(r"shpat_[A-Za-z0-9]{8,40}", fullmatch=True)
prefixed_refresh = st.from_regex(r"shprt_[A-Za-z0-9]{8,40}", fullmatch=True)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # json.loads accepts NaN and Infinity
    | st.text(max_size=20)
    | st.sampled_from(["3600", " 3600 ", "-1", "0", "1e3", "", "abc"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "access_token",
    "refresh_token",
    "scope",
    "expires_in",
    "refresh_token_expires_in",
    "associated_user",
    "associated_user_scope",
]
token_bodies: st.SearchStrategy[Any] = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values, max_size=8),
    # A valid access token with every other field optional and arbitrary,
    # so the property reaches the lifetime and user checks too.
    st.fixed_dictionaries(
        {"access_token": st.text(min_size=1, max_size=20)},
        optional={
            name: json_values | st.integers(min_value=1, max_value=TEN_YEARS) for name in FIELDS[1:]
        }
        | {"associated_user": st.fixed_dictionaries({"id": json_values})},
    ),
)


def _full_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "access_token": ACCESS,
        "scope": "read_orders,write_products",
        "expires_in": 3600,
        "refresh_token": REFRESH,
        "refresh_token_expires_in": 7_776_000,
    }
    body.update(overrides)
    return body


# --- Token ---------------------------------------------------------------------------


@given(access=secrets, refresh=secrets)
def test_repr_and_str_never_show_secrets(access: str, refresh: str) -> None:
    """The repr and str of a Token do not depend on, nor contain, either secret."""
    token = Token(
        access_token=access,
        refresh_token=refresh,
        scope="read_orders",
        expires_at=SENT + timedelta(hours=1),
        refresh_token_expires_at=SENT + timedelta(days=90),
        associated_user_id=42,
        associated_user_scope="read_orders",
        obtained_at=SENT,
    )
    blank = attrs.evolve(token, access_token="A", refresh_token="R")
    assert repr(token) == repr(blank)
    assert str(token) == str(blank)
    for secret in (access, refresh):
        # Guard against a secret that happens to spell fixed text ("datetime").
        assume(secret not in repr(blank))
        assert secret not in repr(token)
        assert secret not in str(token)


@pytest.mark.parametrize("field", ["expires_at", "refresh_token_expires_at"])
def test_naive_datetimes_rejected(field: str) -> None:
    """A naive datetime for either expiry raises ValueError."""
    naive = datetime(2030, 1, 1, 12, 0)  # noqa: DTZ001 - the naive value is the point
    with pytest.raises(ValueError, match="timezone-aware"):
        Token(access_token=ACCESS, **{field: naive})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["expires_at", "refresh_token_expires_at"])
def test_aware_datetimes_converted_to_utc(field: str) -> None:
    """A non-UTC aware datetime is stored as the same instant in UTC."""
    plus_two = datetime(2030, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    token = Token(access_token=ACCESS, **{field: plus_two})  # type: ignore[arg-type]
    stored = getattr(token, field)
    assert stored == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert stored.tzinfo is UTC


def test_empty_access_token_rejected() -> None:
    """An empty access token raises ValueError."""
    with pytest.raises(ValueError, match="access_token"):
        Token(access_token="")


def test_empty_refresh_token_rejected() -> None:
    """An empty refresh token raises ValueError (None means 'no refresh token')."""
    with pytest.raises(ValueError, match="refresh_token"):
        Token(access_token=ACCESS, refresh_token="")


def test_flags() -> None:
    """The expiring and refreshable flags follow expires_at and refresh_token."""
    bare = Token(access_token=ACCESS)
    assert (bare.expiring, bare.refreshable) == (False, False)
    full = Token(access_token=ACCESS, refresh_token=REFRESH, expires_at=SENT)
    assert (full.expiring, full.refreshable) == (True, True)


# --- parse_token_response --------------------------------------------------------------


def test_sent_constant_matches_epoch() -> None:
    """The test's SENT datetime is SENT_AT (guards the other assertions)."""
    assert datetime.fromtimestamp(SENT_AT, UTC) == SENT


def test_parse_offline_response() -> None:
    """Both lifetimes count exactly from sent_at, which is when the token was obtained."""
    token = parse_token_response(_full_body(), sent_at=SENT_AT)
    assert token == Token(
        access_token=ACCESS,
        refresh_token=REFRESH,
        scope="read_orders,write_products",
        expires_at=SENT + timedelta(seconds=3600),
        refresh_token_expires_at=SENT + timedelta(days=90),
        obtained_at=SENT,
    )


def test_parse_fractional_lifetime_is_exact() -> None:
    """A fractional expires_in is added to sent_at to the microsecond."""
    token = parse_token_response(_full_body(expires_in=3599.5), sent_at=SENT_AT + 0.25)
    assert token.expires_at == SENT + timedelta(seconds=3599.75)


def test_parse_numeric_string_lifetime() -> None:
    """A stringified integer expires_in (from a proxy) is accepted."""
    token = parse_token_response(_full_body(expires_in="3600"), sent_at=SENT_AT)
    assert token.expires_at == SENT + timedelta(seconds=3600)


def test_parse_ten_year_lifetime_is_the_limit() -> None:
    """expires_in of exactly ten years is still accepted."""
    token = parse_token_response(_full_body(expires_in=TEN_YEARS), sent_at=SENT_AT)
    assert token.expires_at == SENT + timedelta(seconds=TEN_YEARS)


def test_parse_online_response() -> None:
    """An online response carries the associated user's id and scope."""
    body = {
        "access_token": ACCESS,
        "scope": "read_orders",
        "expires_in": 86399,
        "associated_user_scope": "read_orders",
        "associated_user": {"id": 42, "first_name": "Ada", "email": "ada@example.com"},
    }
    token = parse_token_response(body, sent_at=SENT_AT)
    assert token == Token(
        access_token=ACCESS,
        scope="read_orders",
        expires_at=SENT + timedelta(seconds=86399),
        associated_user_id=42,
        associated_user_scope="read_orders",
        obtained_at=SENT,
    )


def test_parse_missing_expires_in_with_refresh_token_assumes_lifetime() -> None:
    """Without expires_in a refreshable token gets ASSUMED_LIFETIME and a secret-free warning."""
    body = _full_body()
    del body["expires_in"]
    with captured_events() as logs:
        token = parse_token_response(body, sent_at=SENT_AT)
    assert token.expires_at == SENT + timedelta(seconds=ASSUMED_LIFETIME)
    assert token.refresh_token == REFRESH
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("shoptoken.token.missing_expires_in", "warning")
    ]
    assert logs[0]["assumed_lifetime"] == ASSUMED_LIFETIME
    assert ACCESS not in repr(logs)
    assert REFRESH not in repr(logs)


def test_parse_missing_expires_in_without_refresh_token_is_non_expiring() -> None:
    """Without expires_in and refresh token the token never expires, silently."""
    with captured_events() as logs:
        token = parse_token_response({"access_token": ACCESS, "scope": "x"}, sent_at=SENT_AT)
    assert token == Token(access_token=ACCESS, scope="x", obtained_at=SENT)
    assert token.expires_at is None
    assert logs == []


def test_parse_empty_refresh_token_means_none() -> None:
    """An empty refresh_token string is read as no refresh token."""
    token = parse_token_response(_full_body(refresh_token=""), sent_at=SENT_AT)
    assert token.refresh_token is None


REJECTED: list[object] = [
    None,
    "access_token=x",
    [ACCESS],
    42,
    {},
    {"scope": "x"},
    {"access_token": None},
    {"access_token": ""},
    {"access_token": 123},
    {"access_token": [ACCESS]},
    _full_body(expires_in=-1),
    _full_body(expires_in=0),
    _full_body(expires_in=0.0),
    _full_body(expires_in=math.nan),
    _full_body(expires_in=math.inf),
    _full_body(expires_in=-math.inf),
    _full_body(expires_in=True),
    _full_body(expires_in=False),
    _full_body(expires_in=TEN_YEARS + 1),
    _full_body(expires_in=1e300),
    _full_body(expires_in="abc"),
    _full_body(expires_in="1e3"),
    _full_body(expires_in="-5"),
    _full_body(expires_in="0"),
    _full_body(expires_in=""),
    _full_body(expires_in=[3600]),
    _full_body(refresh_token_expires_in=-1),
    _full_body(refresh_token_expires_in="soon"),
    _full_body(refresh_token_expires_in=math.nan),
    _full_body(refresh_token=123),
    _full_body(scope=["read_orders"]),
    _full_body(scope=None),
    _full_body(scope=1),
    _full_body(associated_user={}),
    _full_body(associated_user={"id": "42"}),
    _full_body(associated_user={"id": True}),
    _full_body(associated_user={"id": 4.2}),
    _full_body(associated_user=42),
    _full_body(associated_user=[{"id": 42}]),
    _full_body(associated_user_scope=7),
]


@pytest.mark.parametrize("body", REJECTED)
def test_parse_rejects(body: object) -> None:
    """Malformed bodies raise TokenResponseError (a ValueError)."""
    with pytest.raises(TokenResponseError):
        parse_token_response(body, sent_at=SENT_AT)
    assert issubclass(TokenResponseError, ValueError)


@pytest.mark.parametrize(
    "expires_in",
    ["\u00b2", "\uff13\uff16\uff10\uff10", "9" * 5000, "1" * 400, "0003600" + "0" * 20],
    ids=["superscript-two", "fullwidth-digits", "5000-digit-str", "400-digit-str", "long-str"],
)
def test_parse_rejects_odd_digit_strings(expires_in: str) -> None:
    """Non-ASCII digits and overlong digit strings are a TokenResponseError, not a crash."""
    with pytest.raises(TokenResponseError):
        parse_token_response(_full_body(expires_in=expires_in), sent_at=SENT_AT)


@pytest.mark.parametrize("name", ["expires_in", "refresh_token_expires_in"])
def test_parse_rejects_ints_beyond_float_range(name: str) -> None:
    """An integer lifetime too large for a float is a TokenResponseError too."""
    with pytest.raises(TokenResponseError):
        parse_token_response(_full_body(**{name: 10**400}), sent_at=SENT_AT)


BAD_BODIES: list[Callable[[str, str], object]] = [
    lambda a, r: {"access_token": a, "refresh_token": r, "expires_in": -1},
    lambda a, r: {"access_token": a, "refresh_token": r, "expires_in": "x" + a},
    lambda a, r: {"access_token": a, "refresh_token": r, "expires_in": TEN_YEARS + 1},
    lambda a, r: {"access_token": a, "refresh_token": r, "refresh_token_expires_in": r},
    lambda a, r: {"access_token": a, "refresh_token": r, "scope": [a, r]},
    lambda a, r: {"access_token": a, "refresh_token": [r]},
    lambda a, r: {"access_token": a, "refresh_token": r, "associated_user": {"id": a}},
    lambda a, r: {"access_token": a, "refresh_token": r, "associated_user_scope": {r: a}},
    lambda a, r: {"access_token": [a], "refresh_token": r},
    lambda a, r: [a, r],
]


@given(
    access=prefixed_access,
    refresh=prefixed_refresh,
    build=st.sampled_from(BAD_BODIES),
)
def test_parse_errors_never_contain_secrets(
    access: str, refresh: str, build: Callable[[str, str], object]
) -> None:
    """TokenResponseError messages neither contain nor depend on the token values."""
    with pytest.raises(TokenResponseError) as info:
        parse_token_response(build(access, refresh), sent_at=SENT_AT)
    with pytest.raises(TokenResponseError) as placeholder:
        parse_token_response(build("shpat_A", "shprt_R"), sent_at=SENT_AT)
    message = str(info.value)
    assert message == str(placeholder.value)
    assert access not in message
    assert refresh not in message


@given(token_bodies)
def test_parse_returns_token_or_raises_token_response_error(data: object) -> None:
    """For any JSON-like input the parser returns a Token or raises TokenResponseError."""
    with captured_events():
        try:
            token = parse_token_response(data, sent_at=SENT_AT)
        except TokenResponseError:
            return
    assert isinstance(token, Token)
    assert isinstance(data, Mapping)
    assert token.access_token == data["access_token"]
    assert token.expires_at is None or token.expires_at >= SENT
