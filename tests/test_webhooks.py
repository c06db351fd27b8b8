"""Webhook verification: Shopify's signature, headers and body, fuzzed like the callback."""

import base64
import hashlib
import hmac
import math
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoptoken import (
    Delivery,
    InvalidShopDomain,
    InvalidWebhook,
    SeenWebhooks,
    ShopifyOAuth,
    Webhook,
)
from shoptoken._webhook_handling import customer_keys
from shoptoken.testing import webhook_request

from ._logs import captured_events
from .test_callback_query import HOSTILE_SHOPS

SECRET = "webhook-secret-0123456789abcdef0123"
OLD_SECRET = "old-webhook-secret-fedcba9876543210"
SHOP = "my-store.myshopify.com"
PAYLOAD = {"id": 690933842, "name": "My Store", "domain": SHOP}


def oauth(old: str | None = None) -> ShopifyOAuth:
    """A client with the test secret (no request is ever made)."""
    return ShopifyOAuth("client-id", SECRET, http=httpx.AsyncClient(), old_client_secret=old)


def delivery(
    payload: Any = PAYLOAD, *, secret: str = SECRET, **kwargs: Any
) -> tuple[bytes, dict[str, str]]:
    """A signed ``app/uninstalled`` delivery: body and headers."""
    request = webhook_request(
        "app/uninstalled", SHOP, payload, secret=secret, triggered_at=1.8e9, **kwargs
    )
    return request.body, request.headers


def verify(body: Any, headers: Any, *, old: str | None = None) -> Webhook:
    """Verify with a fresh client."""
    return oauth(old).verify_webhook(body, headers)


def test_valid_delivery_is_parsed() -> None:
    """A signed delivery verifies to its topic, shop, id, version, time and payload."""
    body, headers = delivery(webhook_id="b54557e4-8a5f-4bf7-9d70-bcd043e5c3f1")
    webhook = verify(body, headers)
    assert webhook.topic == "app/uninstalled"
    assert webhook.shop == SHOP
    assert webhook.webhook_id == "b54557e4-8a5f-4bf7-9d70-bcd043e5c3f1"
    assert webhook.api_version == "2026-07"
    assert webhook.triggered_at == datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    assert webhook.payload == PAYLOAD
    assert webhook.event_id == headers["X-Shopify-Event-Id"]
    assert "690933842" not in repr(webhook)  # the payload may hold personal data


def test_known_signature_vector() -> None:
    """The signature is base64(HMAC-SHA256(secret, raw body)), checked against a computed vector."""
    body = b'{"id":1}'
    expected = base64.b64encode(hmac.new(b"hush", body, hashlib.sha256).digest()).decode()
    _, headers = delivery()
    assert verify(body, {**headers, "X-Shopify-Hmac-Sha256": expected}, old="hush").payload == {
        "id": 1
    }


@pytest.mark.parametrize("fold", [str.lower, str.upper, str.title], ids=["lower", "upper", "title"])
def test_header_names_match_in_any_case(fold: Any) -> None:
    """Plain dicts with any casing, and httpx's case-insensitive headers, verify alike."""
    body, headers = delivery()
    assert verify(body, {fold(k): v for k, v in headers.items()}).shop == SHOP
    assert verify(body, httpx.Headers(headers)).shop == SHOP


def test_shop_and_time_are_normalized() -> None:
    """An upper-case shop domain is lower-cased; an offset time is converted to UTC."""
    body, headers = delivery()
    headers = {**headers, "X-Shopify-Shop-Domain": "My-Store.MyShopify.com"}
    headers["X-Shopify-Triggered-At"] = "2027-01-15T09:00:00.123456789+01:00"
    webhook = verify(body, headers)
    assert webhook.shop == SHOP
    assert webhook.triggered_at == datetime(2027, 1, 15, 8, 0, 0, 123456, tzinfo=UTC)


def test_event_id_is_optional() -> None:
    """A delivery without X-Shopify-Event-Id verifies with event_id None."""
    body, headers = delivery()
    del headers["X-Shopify-Event-Id"]
    assert verify(body, headers).event_id is None


def test_old_secret_accepted_during_rotation() -> None:
    """A delivery signed with the old secret verifies while it is configured, and says so."""
    body, headers = delivery(secret=OLD_SECRET)
    with captured_events() as logs:
        assert verify(body, headers, old=OLD_SECRET).topic == "app/uninstalled"
    assert [e["event"] for e in logs] == ["shoptoken.oauth.old_secret_used"]
    with pytest.raises(InvalidWebhook, match="bad signature"):
        verify(body, headers)


# --- rejected --------------------------------------------------------------------------------


def test_wrong_secret_and_altered_body_rejected() -> None:
    """A foreign secret, or one changed byte of the body, fails the signature check."""
    body, headers = delivery(secret="not-the-secret")
    with pytest.raises(InvalidWebhook, match="bad signature"):
        verify(body, headers)
    body, headers = delivery()
    with pytest.raises(InvalidWebhook, match="bad signature"):
        verify(body.replace(b"My Store", b"My Stork"), headers)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64!",
        "AAAA",
        "A" * 43 + "=" + "A",
        base64.b64encode(b"x" * 31).decode() + "AAAA",
    ],
    ids=["empty", "not-base64", "short", "padding-inside", "wrong-length"],
)
def test_malformed_signature_rejected(value: str) -> None:
    """A signature that is not a base64 SHA-256 digest is rejected before comparing."""
    body, headers = delivery()
    with pytest.raises(InvalidWebhook, match="Hmac-Sha256"):
        verify(body, {**headers, "X-Shopify-Hmac-Sha256": value})


@pytest.mark.parametrize(
    "name",
    [
        "X-Shopify-Hmac-Sha256",
        "X-Shopify-Topic",
        "X-Shopify-Shop-Domain",
        "X-Shopify-Webhook-Id",
        "X-Shopify-API-Version",
        "X-Shopify-Triggered-At",
    ],
)
def test_missing_header_rejected(name: str) -> None:
    """Each required header, absent or empty, is named in the error."""
    body, headers = delivery()
    with pytest.raises(InvalidWebhook, match=f"missing {name}"):
        verify(body, {k: v for k, v in headers.items() if k != name})
    with pytest.raises(InvalidWebhook, match=f"missing {name}"):
        verify(body, {**headers, name: ""})


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2027-01-15T08:00:00",
        "1800000000",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
    ],
    ids=["words", "naive", "epoch", "before-year-1-in-utc", "after-year-9999-in-utc"],
)
def test_malformed_trigger_time_rejected(value: str) -> None:
    """A trigger time that is no zoned ISO 8601 time is rejected."""
    body, headers = delivery()
    with pytest.raises(InvalidWebhook, match="malformed X-Shopify-Triggered-At"):
        verify(body, {**headers, "X-Shopify-Triggered-At": value})


@pytest.mark.parametrize("shop", [s for s in HOSTILE_SHOPS if s])
def test_hostile_shop_rejected(shop: str) -> None:
    """A correctly signed delivery for a malformed or foreign shop domain is rejected."""
    body, headers = delivery()
    with pytest.raises(InvalidWebhook, match="Shop-Domain") as info:
        verify(body, {**headers, "X-Shopify-Shop-Domain": shop})
    cause = info.value.__cause__
    assert cause is None or isinstance(cause, InvalidShopDomain)
    assert str(info.value).isascii()


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"\xff\xfe", b"[" * 100_000], ids=["empty", "text", "binary", "deep"]
)
def test_body_that_is_not_json_rejected(body: bytes) -> None:
    """A correctly signed body that is not a JSON document is rejected."""
    _, headers = delivery()
    headers = {
        **headers,
        "X-Shopify-Hmac-Sha256": base64.b64encode(
            hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
        ).decode(),
    }
    with pytest.raises(InvalidWebhook, match="body is not JSON"):
        verify(body, headers)


def test_bad_argument_types_rejected() -> None:
    """A str body, a non-mapping or a mapping of non-str headers, or a doubled name are refused."""
    body, headers = delivery()
    with pytest.raises(InvalidWebhook, match="not bytes"):
        verify(body.decode(), headers)
    with pytest.raises(InvalidWebhook, match="not a mapping"):
        verify(body, list(headers.items()))
    with pytest.raises(InvalidWebhook, match="not a str"):
        verify(body, {**headers, "X-Shopify-Topic": ["app/uninstalled"]})
    with pytest.raises(InvalidWebhook, match="given twice"):
        verify(body, {**headers, "x-shopify-topic": "orders/create"})


def test_errors_never_quote_the_signature() -> None:
    """No error message carries the received or the expected signature."""
    body, headers = delivery(secret="not-the-secret")
    expected = delivery()[1]["X-Shopify-Hmac-Sha256"]
    with pytest.raises(InvalidWebhook) as info:
        verify(body, headers)
    assert headers["X-Shopify-Hmac-Sha256"] not in str(info.value)
    assert expected not in str(info.value)
    assert SECRET not in str(info.value)


# --- fuzzed --------------------------------------------------------------------------------

texts = st.text(max_size=60)


# No deadline: a loaded machine (other test runs) must not fail a correct example.
@settings(deadline=None)
@given(
    st.binary(max_size=200),
    st.dictionaries(st.one_of(texts, st.integers()), st.one_of(texts, st.none()), max_size=10),
)
def test_arbitrary_input_raises_only_invalid_webhook(body: bytes, headers: dict[Any, Any]) -> None:
    """Any body and headers either verify or raise InvalidWebhook; nothing else escapes."""
    try:
        verify(body, headers)
    except InvalidWebhook:
        return
    raise AssertionError  # pragma: no cover - an unsigned body cannot verify


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(deadline=None)
@given(
    json_values, st.text(min_size=1, max_size=40).filter(lambda t: t.isascii() and t.isprintable())
)
def test_signed_deliveries_round_trip(payload: Any, topic: str) -> None:
    """Any JSON payload and topic, signed with the secret, verify to themselves."""
    request = webhook_request(topic, SHOP, payload, secret=SECRET, triggered_at=1.8e9)
    webhook = verify(request.body, request.headers)
    assert (webhook.topic, webhook.payload) == (topic, payload)


@settings(deadline=None)
@given(json_values, st.data())
def test_any_changed_byte_breaks_the_signature(payload: Any, data: st.DataObject) -> None:
    """Changing any byte of a signed body fails verification."""
    request = webhook_request("orders/create", SHOP, payload, secret=SECRET, triggered_at=1.8e9)
    index = data.draw(st.integers(min_value=0, max_value=len(request.body) - 1))
    flipped = bytearray(request.body)
    flipped[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(InvalidWebhook):
        verify(bytes(flipped), request.headers)


@settings(deadline=None)
@given(st.sampled_from(sorted(delivery()[1])), st.text(max_size=60))
def test_any_changed_header_is_checked(name: str, value: str) -> None:
    """A replaced header either still verifies to the same signed body, or raises InvalidWebhook."""
    body, headers = delivery()
    try:
        webhook = verify(body, {**headers, name: value})
    except InvalidWebhook:
        return
    assert webhook.payload == PAYLOAD
    assert name != "X-Shopify-Hmac-Sha256" or value == headers[name]


# --- repeated deliveries -------------------------------------------------------------------


def test_seen_webhooks_recognises_repeats_within_ttl() -> None:
    """An id is NEW once, IN_PROGRESS until done, DONE for ttl after done; discard forgets it."""
    now = [0.0]
    seen = SeenWebhooks(ttl=60.0, clock=lambda: now[0])
    first = verify(*delivery(webhook_id="w-1"))
    other = verify(*delivery(webhook_id="w-2"))
    assert seen.begin(first) is Delivery.NEW
    assert seen.begin(first) is Delivery.IN_PROGRESS
    assert seen.begin(other) is Delivery.NEW
    now[0] = 10.0
    seen.done(first)  # remembered for ttl from here
    assert seen.begin(first) is Delivery.DONE
    now[0] = 69.9
    assert seen.begin(first) is Delivery.DONE
    assert len(seen) == 1  # w-2 expired
    now[0] = 70.0
    assert seen.begin(first) is Delivery.NEW
    seen.discard(first)  # its handling failed: Shopify's retry is handled
    assert seen.begin(first) is Delivery.NEW
    seen.discard(first)
    seen.discard(first)  # discarding an unknown id is no error
    assert len(seen) == 0


def test_seen_webhooks_discard_after_a_failure_lets_the_retry_in() -> None:
    """A failed delivery's id is discarded: a retry during or after it is handled, never DONE."""
    seen = SeenWebhooks(clock=lambda: 0.0)
    hook = verify(*delivery(webhook_id="w-1"))
    assert seen.begin(hook) is Delivery.NEW
    assert seen.begin(hook) is Delivery.IN_PROGRESS  # answered 409: not acknowledged
    seen.discard(hook)
    assert seen.begin(hook) is Delivery.NEW


def test_seen_webhooks_is_bounded() -> None:
    """Beyond max_entries the oldest ids are dropped (done ones move to the back)."""
    seen = SeenWebhooks(max_entries=2, clock=lambda: 0.0)
    hooks = [verify(*delivery(webhook_id=f"w-{n}")) for n in range(3)]
    assert [seen.begin(hook) for hook in hooks[:2]] == [Delivery.NEW] * 2
    seen.done(hooks[0])  # now the newest
    assert seen.begin(hooks[2]) is Delivery.NEW  # drops w-1, the oldest
    assert len(seen) == 2
    assert seen.begin(hooks[1]) is Delivery.NEW
    assert seen.begin(hooks[2]) is Delivery.IN_PROGRESS  # w-0 was dropped instead
    assert seen.begin(hooks[0]) is Delivery.NEW


@pytest.mark.parametrize(("ttl", "entries"), [(0.0, 10), (math.inf, 10), (1.0, 0)])
def test_seen_webhooks_rejects_bad_bounds(ttl: float, entries: int) -> None:
    """A ttl that is not finite and positive, or no room, is a ValueError."""
    with pytest.raises(ValueError, match="finite ttl"):
        SeenWebhooks(ttl=ttl, max_entries=entries)


@pytest.mark.parametrize(
    ("customer", "subject"),
    [
        ({"id": 207119551}, "207119551"),
        ({"id": "207119551"}, "207119551"),
    ],
)
def test_customer_keys_map_both_forms(customer: dict[str, Any], subject: str) -> None:
    """A redaction's numeric customer id maps to the numeric and the gid subject."""
    webhook = verify(*delivery({"shop_domain": SHOP, "customer": customer}))
    assert [key.subject for key in customer_keys(webhook)] == [
        subject,
        f"gid://shopify/Customer/{subject}",
    ]


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {},
        {"customer": None},
        {"customer": {"id": True}},
        {"customer": {"id": "x1"}},
        {"customer": {"id": "\u00b2"}},  # a digit to str.isdigit, not to int()
        {"customer": {"id": "1" * 5000}},  # beyond int()'s digit limit
        {"customer": {"id": -7}},
    ],
)
def test_customer_keys_need_a_numeric_id(payload: Any) -> None:
    """A payload without a numeric customer.id is an InvalidWebhook."""
    with pytest.raises(InvalidWebhook, match="no numeric customer"):
        customer_keys(verify(*delivery(payload)))


def test_webhooks_are_hashable_values() -> None:
    """A Webhook with a JSON object payload hashes (by its other fields) and compares by value."""
    body, headers = delivery()
    first, again = verify(body, headers), verify(body, headers)
    assert first == again
    assert len({first, again}) == 1
