import hashlib
import hmac
import string
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoptoken._errors import InvalidCallback, InvalidShopDomain
from shoptoken._oauth._redirect import (
    CALLBACK_FUTURE_SKEW,
    CALLBACK_MAX_AGE,
    authorize_url,
    new_state,
    sign_query,
    signing_message,
    verify_callback_query,
)

from ._logs import captured_events

SECRET = "callback-secret-0123456789abcdef0123"
OLD_SECRET = "old-callback-secret-fedcba9876543210"
NOW = 1_800_000_000.0
STATE = "state-nonce-abc123"
CODE = "authorization-code-c0de"


def signed(params: Mapping[str, str], secret: str = SECRET) -> dict[str, str]:
    """``params`` plus the ``hmac`` Shopify would add, signed with ``secret``."""
    return {**params, "hmac": sign_query(params, secret)}


def callback(**overrides: str) -> dict[str, str]:
    """A typical OAuth callback's parameters (unsigned), with overrides."""
    params = {
        "code": CODE,
        "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvbXktc3RvcmU",
        "shop": "my-store.myshopify.com",
        "state": STATE,
        "timestamp": str(int(NOW)),
    }
    return {**params, **overrides}


def verify(query: Any, **kwargs: Any) -> dict[str, str]:
    """Verify with the current secret only, at NOW, unless told otherwise."""
    kwargs.setdefault("secrets", (SECRET,))
    kwargs.setdefault("now", NOW)
    return verify_callback_query(query, **kwargs)


# --- Shopify's algorithm ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "digest"),
    [
        (
            {
                "code": "0907a61c0c8d55e99db179b68161bc00",
                "shop": "some-shop.myshopify.com",
                "timestamp": "1337178173",
            },
            "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20",
        ),
        (
            {
                "code": "0907a61c0c8d55e99db179b68161bc00",
                "shop": "some-shop.myshopify.com",
                "state": "0.6784241404160823",
                "timestamp": "1337178173",
            },
            "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf",
        ),
    ],
    ids=["without-state", "with-state"],
)
def test_known_shopify_vectors(query: dict[str, str], digest: str) -> None:
    """The documented example queries (secret "hush") verify with their published HMACs."""
    assert sign_query(query, "hush") == digest
    result = verify_callback_query(
        {**query, "hmac": digest}, secrets=("hush",), now=1337178173 + 10
    )
    assert result == query


def test_signing_message_sorts_and_skips_hmac_and_signature() -> None:
    """The message is the sorted key=value pairs without hmac and signature."""
    query = {"timestamp": "1", "shop": "s", "hmac": "x", "signature": "y", "code": "c"}
    assert signing_message(query) == "code=c&shop=s&timestamp=1"


def test_signing_message_escapes_delimiters() -> None:
    """%, & (keys and values) and = (keys) are escaped so no value can forge a pair."""
    assert signing_message({"a": "1&b=2"}) == "a=1%26b=2"
    assert signing_message({"a%": "100%"}) == "a%25=100%25"
    assert signing_message({"a=b": "c"}) == "a%3Db=c"
    assert signing_message({"a": "1&b=2"}) != signing_message({"a": "1", "b": "2"})


def test_sign_query_is_hex_hmac_sha256_of_the_message() -> None:
    """sign_query is the lower-case hex HMAC-SHA256 of signing_message."""
    query = callback()
    expected = hmac.new(SECRET.encode(), signing_message(query).encode(), hashlib.sha256)
    assert sign_query(query, SECRET) == expected.hexdigest()


# --- accepted ----------------------------------------------------------------------------------


def test_valid_callback_returns_params_without_hmac() -> None:
    """A correctly signed, fresh callback returns its parameters minus hmac."""
    assert verify(signed(callback()), state=STATE) == callback()


def test_shop_is_normalized_in_the_result() -> None:
    """An upper-case shop, as signed, comes back normalized."""
    query = signed(callback(shop="My-Store.MyShopify.com"))
    assert verify(query)["shop"] == "my-store.myshopify.com"


def test_parameter_order_does_not_matter() -> None:
    """The mapping's order is irrelevant: the signed message is sorted."""
    query = signed(callback())
    reordered = dict(reversed(list(query.items())))
    assert verify(reordered) == callback()


def test_signature_parameter_is_dropped() -> None:
    """A legacy ``signature`` parameter is neither signed nor returned."""
    query = {**signed(callback()), "signature": "anything"}
    assert "signature" not in verify(query)


def test_state_is_not_checked_when_not_expected() -> None:
    """With state=None (an app launch URL) no state is required."""
    query = signed({k: v for k, v in callback().items() if k != "state"})
    assert "state" not in verify(query)


@pytest.mark.parametrize("offset", [-CALLBACK_MAX_AGE, 0.0, CALLBACK_FUTURE_SKEW])
def test_timestamp_window_edges_accepted(offset: float) -> None:
    """Timestamps exactly max_age old or exactly future_skew ahead are accepted."""
    query = signed(callback(timestamp=str(int(NOW + offset))))
    assert verify(query)["timestamp"] == str(int(NOW + offset))


def test_old_secret_accepted_during_rotation() -> None:
    """An HMAC from the old secret verifies when the old secret is configured, and is logged."""
    query = signed(callback(), OLD_SECRET)
    with captured_events() as logs:
        assert verify(query, secrets=(SECRET, OLD_SECRET)) == callback()
    assert [e["event"] for e in logs] == ["shoptoken.oauth.old_secret_used"]


def test_current_secret_accepted_during_rotation() -> None:
    """The current secret still verifies while an old one is configured, without a log event."""
    with captured_events() as logs:
        assert verify(signed(callback()), secrets=(SECRET, OLD_SECRET)) == callback()
    assert logs == []


# --- rejected: hmac -------------------------------------------------------------------------


def flip(text: str, index: int = 0) -> str:
    """``text`` with one hex character changed."""
    char = "0" if text[index] != "0" else "1"
    return text[:index] + char + text[index + 1 :]


FORGERIES: dict[str, dict[str, str]] = {
    "flipped-first-char": {**callback(), "hmac": flip(sign_query(callback(), SECRET))},
    "flipped-last-char": {**callback(), "hmac": flip(sign_query(callback(), SECRET), 63)},
    "altered-code": {**signed(callback()), "code": "another-code"},
    "altered-shop": {**signed(callback()), "shop": "other-store.myshopify.com"},
    "added-param": {**signed(callback()), "admin": "1"},
    "removed-param": {k: v for k, v in signed(callback()).items() if k != "host"},
    "unsorted-message": {
        **callback(),
        "hmac": hmac.new(
            SECRET.encode(),
            "&".join(f"{k}={v}" for k, v in reversed(callback().items())).encode(),
            hashlib.sha256,
        ).hexdigest(),
    },
    "url-encoded-message": {
        **callback(host="a b"),
        "hmac": sign_query(callback(host="a%20b"), SECRET),
    },
    "old-secret-not-configured": signed(callback(), OLD_SECRET),
    "wrong-secret": signed(callback(), "not-the-secret"),
    "delimiter-smuggling": {
        "code": CODE + "&shop=my-store.myshopify.com",
        "timestamp": str(int(NOW)),
        "shop": "my-store.myshopify.com",
        "hmac": sign_query({"code": CODE, "timestamp": str(int(NOW))}, SECRET),
    },
}


@pytest.mark.parametrize("query", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_hmac_rejected(query: dict[str, str]) -> None:
    """Any change to the signed parameters or a wrong key fails the HMAC check."""
    with pytest.raises(InvalidCallback, match=r"bad hmac \(signature does not match\)"):
        verify(query)


@pytest.mark.parametrize(
    "value",
    [
        sign_query(callback(), SECRET).upper(),
        sign_query(callback(), SECRET)[:63],
        sign_query(callback(), SECRET) + "0",
        "z" * 64,
        "\u0661" * 64,
        " " + sign_query(callback(), SECRET)[1:],
    ],
    ids=["upper-case", "short", "long", "not-hex", "unicode-digits", "space"],
)
def test_malformed_hmac_rejected(value: str) -> None:
    """An hmac that is not 64 lower-case hex digits is rejected before comparing."""
    with pytest.raises(InvalidCallback, match=r"bad hmac \(not 64 lower-case hex digits\)"):
        verify({**callback(), "hmac": value})


@pytest.mark.parametrize("query", [callback(), {**callback(), "hmac": ""}], ids=["absent", "empty"])
def test_missing_hmac_rejected(query: dict[str, str]) -> None:
    """A query without an hmac is rejected as such."""
    with pytest.raises(InvalidCallback, match="missing hmac"):
        verify(query)


# --- rejected: timestamp ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "words"),
    [
        (
            str(int(NOW - CALLBACK_MAX_AGE - 1)),
            r"stale timestamp \(301 s old; the limit is 300 s\)",
        ),
        (str(int(NOW - 86400)), "stale timestamp"),
        ("0", "stale timestamp"),
        (str(int(NOW + CALLBACK_FUTURE_SKEW + 1)), r"timestamp in the future \(91 s ahead"),
        (str(int(NOW + 86400)), "timestamp in the future"),
        ("", r"bad timestamp"),
        ("-5", "bad timestamp"),
        ("1.8e9", "bad timestamp"),
        ("\u0661\u0668\u0660\u0660", "bad timestamp"),
        ("9" * 40, "bad timestamp"),
        (" 1800000000", "bad timestamp"),
    ],
)
def test_bad_timestamps_rejected(timestamp: str, words: str) -> None:
    """Stale, future and malformed timestamps are rejected even with a valid HMAC."""
    with pytest.raises(InvalidCallback, match=words):
        verify(signed(callback(timestamp=timestamp)))


def test_missing_timestamp_rejected() -> None:
    """A signed query without a timestamp is rejected."""
    query = signed({k: v for k, v in callback().items() if k != "timestamp"})
    with pytest.raises(InvalidCallback, match="missing timestamp"):
        verify(query)


def test_custom_window() -> None:
    """max_age and future_skew can be tightened by the caller."""
    query = signed(callback(timestamp=str(int(NOW - 60))))
    with pytest.raises(InvalidCallback, match="stale timestamp"):
        verify(query, max_age=30)
    query = signed(callback(timestamp=str(int(NOW + 60))))
    with pytest.raises(InvalidCallback, match="timestamp in the future"):
        verify(query, future_skew=30)


# --- rejected: shop -----------------------------------------------------------------------------

HOSTILE_SHOPS = [
    "evil.com",
    "my-store.myshopify.com.evil.com",
    "evil.com/my-store.myshopify.com",
    "https://my-store.myshopify.com",
    "my-store.myshopify.com:443",
    "user@my-store.myshopify.com",
    "my_store.myshopify.com",
    "-my-store.myshopify.com",
    "m\u0443-store.myshopify.com",  # Cyrillic "u"
    "my-store.myshopify.com\n",
    "\u212a-store.myshopify.com",  # Kelvin sign, lower() gives "k"
    "",
    "a" * 64 + ".myshopify.com",
]


@pytest.mark.parametrize("shop", HOSTILE_SHOPS)
def test_hostile_shop_rejected(shop: str) -> None:
    """Correctly signed callbacks with a non-Shopify or malformed shop domain are rejected."""
    with pytest.raises(InvalidCallback, match="bad shop") as info:
        verify(signed(callback(shop=shop)))
    assert isinstance(info.value.__cause__, InvalidShopDomain)
    assert str(info.value).isascii()


def test_missing_shop_rejected() -> None:
    """A signed query without a shop is rejected."""
    query = signed({k: v for k, v in callback().items() if k != "shop"})
    with pytest.raises(InvalidCallback, match="missing shop"):
        verify(query)


# --- rejected: state ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected", "words"),
    [
        (signed(callback()), "another-state", "state mismatch"),
        (signed(callback()), STATE + "x", "state mismatch"),
        (signed(callback()), STATE.upper(), "state mismatch"),
        (signed(callback(state="")), "", "state mismatch"),
        (signed(callback()), "", "state mismatch"),
        (
            signed({k: v for k, v in callback().items() if k != "state"}),
            STATE,
            r"state mismatch \(the query has no state\)",
        ),
    ],
    ids=["different", "longer", "case", "both-empty", "expected-empty", "absent"],
)
def test_state_mismatch_rejected(query: dict[str, str], expected: str, words: str) -> None:
    """A state that differs from the expected nonce, or is absent, is rejected."""
    with pytest.raises(InvalidCallback, match=words):
        verify(query, state=expected)


def test_checks_run_hmac_first() -> None:
    """A query failing every check reports the HMAC: nothing unsigned is interpreted."""
    query = {**callback(shop="evil.com", timestamp="0", state="x"), "hmac": "0" * 64}
    with pytest.raises(InvalidCallback, match="bad hmac"):
        verify(query, state=STATE)


# --- rejected: shape ----------------------------------------------------------------------------


class MultiDict(Mapping[str, str]):
    """A minimal multi-dict (like Starlette's QueryParams): last value wins, getlist has all."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        """Keep every pair."""
        self._items = items

    def __getitem__(self, key: str) -> str:
        """The last value for ``key``."""
        return [v for k, v in self._items if k == key][-1]

    def __iter__(self) -> Iterator[str]:
        """Each key once."""
        return iter(dict(self._items))

    def __len__(self) -> int:
        """Number of distinct keys."""
        return len(dict(self._items))

    def getlist(self, key: str) -> list[str]:
        """Every value for ``key``."""
        return [v for k, v in self._items if k == key]


def test_multidict_without_repeats_accepted() -> None:
    """A multi-dict whose keys are all single verifies like a dict."""
    assert verify(MultiDict(list(signed(callback()).items()))) == callback()


def test_repeated_key_in_multidict_rejected() -> None:
    """A key given twice (shop=a&shop=b) is ambiguous and rejected, even if one value signs."""
    items = [*signed(callback()).items(), ("shop", "evil.com")]
    with pytest.raises(InvalidCallback, match="parameter 'shop' is repeated"):
        verify(MultiDict(items))


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({**signed(callback()), "shop": ["my-store.myshopify.com"]}, "'shop' is repeated or not"),
        ({**signed(callback()), "ids": ["1", "2"]}, "'ids' is repeated or not a str"),
        ({**signed(callback()), "n": 5}, "'n' is repeated or not a str"),
        ({**signed(callback()), "hmac": None}, "'hmac' is repeated or not a str"),
        ({**dict[Any, Any](signed(callback())), 7: "x"}, "parameter name 7 is not a str"),
        ("code=x&hmac=y", "query is a str, not a mapping"),
        (None, "query is a NoneType, not a mapping"),
        ([("code", "x")], "query is a list, not a mapping"),
        ({f"p{n}": "x" for n in range(101)}, "too many parameters"),
        ({**signed(callback()), "big": "x" * 70_000}, "query is too large"),
    ],
    ids=[
        "list-value",
        "repeated-list",
        "int-value",
        "none-hmac",
        "int-key",
        "raw-string",
        "none",
        "pairs",
        "too-many",
        "too-large",
    ],
)
def test_malformed_query_rejected(query: Any, words: str) -> None:
    """Non-mappings, non-str keys or values, and oversized queries are rejected."""
    with pytest.raises(InvalidCallback, match=words):
        verify(query)


def test_messages_never_echo_values_or_digests() -> None:
    """Rejections quote neither parameter values, the received hmac nor the expected one."""
    query = {**callback(), "hmac": flip(sign_query(callback(), SECRET))}
    surfaces: list[str] = []
    attempts: list[Callable[[], object]] = [
        lambda: verify(query),
        lambda: verify(signed(callback()), state="nope"),
        lambda: verify(signed(callback(timestamp="1"))),
        lambda: verify({**signed(callback()), "code": [CODE]}),
    ]
    for attempt in attempts:
        with captured_events() as logs, pytest.raises(InvalidCallback) as info:
            attempt()
        surfaces += [str(info.value), repr(info.value), repr(logs)]
    for surface in surfaces:
        for secret in (SECRET, CODE, STATE, query["hmac"], sign_query(callback(), SECRET)):
            assert secret not in surface


# --- properties ---------------------------------------------------------------------------------

texts = st.text(max_size=30)
values = st.one_of(texts, st.integers(), st.none(), st.lists(texts, max_size=2), st.binary())


@given(st.dictionaries(st.one_of(texts, st.integers()), values, max_size=8))
def test_arbitrary_mappings_raise_only_invalid_callback(query: dict[Any, Any]) -> None:
    """Any mapping either verifies or raises InvalidCallback; nothing else escapes."""
    try:
        result = verify(query, state=STATE)
    except InvalidCallback:
        return
    assert "hmac" not in result  # pragma: no cover - a forgery would land here


@given(
    st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6),
    st.integers(min_value=-int(CALLBACK_MAX_AGE), max_value=int(CALLBACK_FUTURE_SKEW)),
)
def test_signed_queries_round_trip(extra: dict[str, str], offset: int) -> None:
    """Any parameters, signed with the secret and fresh, verify to themselves."""
    params = {**extra, "shop": "my-store.myshopify.com", "timestamp": str(int(NOW) + offset)}
    params = {k: v for k, v in params.items() if k not in ("hmac", "signature")}
    assert verify(signed(params)) == params


@given(
    st.dictionaries(st.text(max_size=20), st.text(max_size=40), min_size=1, max_size=6),
    st.data(),
)
def test_any_changed_value_breaks_the_hmac(extra: dict[str, str], data: st.DataObject) -> None:
    """Changing any signed value (hmac kept) fails verification."""
    params = {**extra, "shop": "my-store.myshopify.com", "timestamp": str(int(NOW))}
    params = {k: v for k, v in params.items() if k not in ("hmac", "signature")}
    query = signed(params)
    key = data.draw(st.sampled_from(sorted(params)))
    new_value = data.draw(st.text(max_size=40).filter(lambda v: v != params[key]))
    with pytest.raises(InvalidCallback):
        verify({**query, key: new_value})


# --- the authorization URL ----------------------------------------------------------------------


def query_of(url: str) -> dict[str, list[str]]:
    """The decoded query of ``url``."""
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_authorize_url_offline() -> None:
    """The URL targets the shop's authorize endpoint with the documented parameters."""
    url = authorize_url(
        "My-Store",
        "client-id",
        ["read_orders", "write_products"],
        "https://app.example/auth/callback?x=1&y=2",
        state=STATE,
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "my-store.myshopify.com",
        "/admin/oauth/authorize",
    )
    assert query_of(url) == {
        "client_id": ["client-id"],
        "scope": ["read_orders,write_products"],
        "redirect_uri": ["https://app.example/auth/callback?x=1&y=2"],
        "state": [STATE],
    }


def test_authorize_url_online_and_scope_string() -> None:
    """online=True adds grant_options[]=per-user; a comma string of scopes is cleaned."""
    url = authorize_url(
        "my-store",
        "id",
        " read_orders , ,write_orders ",
        "https://a.example/cb",
        state="s",
        online=True,
    )
    query = query_of(url)
    assert query["scope"] == ["read_orders,write_orders"]
    assert query["grant_options[]"] == ["per-user"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"shop": "evil.com"}, InvalidShopDomain),
        ({"scopes": []}, ValueError),
        ({"scopes": " , "}, ValueError),
        ({"scopes": [1, 2]}, TypeError),
        ({"redirect_uri": ""}, ValueError),
        ({"state": ""}, ValueError),
    ],
    ids=["bad-shop", "no-scopes", "blank-scopes", "int-scopes", "no-redirect", "no-state"],
)
def test_authorize_url_rejects_bad_input(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Bad shops, missing scopes and empty redirect URIs or states raise before any redirect."""
    args: dict[str, Any] = {
        "shop": "my-store",
        "client_id": "id",
        "scopes": "read_orders",
        "redirect_uri": "https://a.example/cb",
        "state": "s",
    }
    args.update(kwargs)
    with pytest.raises(error):
        authorize_url(**args)


def test_new_state_is_random_and_url_safe() -> None:
    """new_state gives distinct 43-character URL-safe nonces (256 bits)."""
    states = {new_state() for _ in range(100)}
    assert len(states) == 100
    alphabet = set(string.ascii_letters + string.digits + "-_")
    for state in states:
        assert len(state) == 43
        assert set(state) <= alphabet
