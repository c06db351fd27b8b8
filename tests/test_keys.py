from __future__ import annotations

import re

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoptoken import InvalidShopDomain, ShopTokenError, TokenKey, TokenKind
from shoptoken._keys import normalize_shop

CANONICAL = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\.myshopify\.com")
SHOP = "my-store.myshopify.com"

# Shop names as Shopify allows them: a DNS label of letters, digits and hyphens.
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", fullmatch=True)
# Printable ids without whitespace: what TokenKey.customer accepts.
customer_ids = st.one_of(
    st.text(min_size=1, max_size=40).filter(
        lambda s: s.isprintable() and not any(c.isspace() for c in s)
    ),
    st.integers(min_value=1, max_value=10**12).map(lambda i: f"gid://shopify/Customer/{i}"),
)
# Mostly near-miss domains, so the property reaches both outcomes often.
shop_texts = st.one_of(
    st.text(max_size=100),
    st.text(alphabet="aZ09-._:/@?# \n\u212a\u0430", max_size=80),
    st.builds(
        lambda name, suffix: name + suffix,
        st.text(alphabet="aZ09-.", max_size=70),
        st.sampled_from(
            ["", ".myshopify.com", ".MyShopify.COM", ".myshopify.com.", "myshopify.com"]
        ),
    ),
)


@pytest.mark.parametrize(
    ("given_shop", "expected"),
    [
        ("my-store", SHOP),
        ("my-store.myshopify.com", SHOP),
        ("MY-Store", SHOP),
        ("My-Store.MyShopify.COM", SHOP),
        ("a", "a.myshopify.com"),
        ("0", "0.myshopify.com"),
        ("store-", "store-.myshopify.com"),
        ("my--store", "my--store.myshopify.com"),
        ("a" * 63, "a" * 63 + ".myshopify.com"),
        ("a" * 63 + ".myshopify.com", "a" * 63 + ".myshopify.com"),
    ],
)
def test_normalize_shop_accepts(given_shop: str, expected: str) -> None:
    """Bare names get the suffix, case is lowered, valid full domains pass unchanged."""
    assert normalize_shop(given_shop) == expected


@pytest.mark.parametrize(
    "bad",
    [
        # other hosts
        "example.com",
        "my-store.myshopify.com.evil.com",
        "evil.com/my-store.myshopify.com",
        "my-store.shopify.com",
        "my-store.myshopify.co",
        "myshopify.com",
        ".myshopify.com",
        "sub.my-store.myshopify.com",
        "my-store..myshopify.com",
        "my-store.myshopify.com.",
        "my-store.myshopify.com.myshopify.com",
        "my_store.myshopify.com",
        # schemes
        "https://my-store.myshopify.com",
        "http://my-store.myshopify.com",
        "//my-store.myshopify.com",
        # paths, ports, userinfo, query, fragment
        "my-store.myshopify.com/",
        "my-store.myshopify.com/admin",
        "my-store.myshopify.com:443",
        "my-store:443",
        "user@my-store.myshopify.com",
        "user:pw@my-store.myshopify.com",
        "my-store.myshopify.com?shop=x",
        "my-store.myshopify.com#x",
        # whitespace and empty
        "",
        " ",
        " my-store",
        "my-store ",
        "my store",
        "my-store\n",
        "my-store.myshopify.com\n",
        "\tmy-store.myshopify.com",
        "\u00a0my-store",
        "my-store.myshopify.com\u200b",
        # leading hyphen, too long
        "-store",
        "-store.myshopify.com",
        "a" * 64,
        "a" * 64 + ".myshopify.com",
        # unicode and IDN lookalikes
        "my-st\u043ere",  # Cyrillic o
        "\uff4d\uff59-store",  # fullwidth "my"
        "my-store\u3002myshopify\u3002com",  # ideographic full stops
        "\u0130stanbul",  # dotted capital I lowers to two code points
        "stra\u00dfe",
        "caf\u00e9.myshopify.com",
    ],
)
def test_normalize_shop_rejects(bad: str) -> None:
    """Anything but a shop name or shop domain raises InvalidShopDomain, a ValueError."""
    with pytest.raises(InvalidShopDomain) as info:
        normalize_shop(bad)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ShopTokenError)


@pytest.mark.parametrize("lookalike", ["\u212aitchen", "\u212aitchen.myshopify.com"])
def test_normalize_shop_rejects_kelvin_sign_lookalike(lookalike: str) -> None:
    """A non-ASCII character that lowers to an ASCII letter is still refused."""
    with pytest.raises(InvalidShopDomain):
        normalize_shop(lookalike)


@pytest.mark.parametrize("value", [None, 42, b"my-store", ["my-store"], 1.5])
def test_normalize_shop_rejects_non_str(value: object) -> None:
    """Non-str inputs raise InvalidShopDomain, not TypeError or AttributeError."""
    with pytest.raises(InvalidShopDomain, match="must be a str"):
        normalize_shop(value)  # type: ignore[arg-type]


@given(shop_texts)
def test_normalize_shop_property(text: str) -> None:
    """Any text is either refused or turned into an idempotent canonical shop domain."""
    try:
        result = normalize_shop(text)
    except InvalidShopDomain as exc:
        message = str(exc)
        assert len(message) <= 1000
        assert message.isascii()
        assert message.isprintable()
    else:
        assert CANONICAL.fullmatch(result)
        assert normalize_shop(result) == result


def test_normalize_shop_error_message_is_bounded() -> None:
    """A huge hostile input yields a short, ASCII-only message that does not echo it all."""
    hostile = "\U0001f600" * 5000 + "\n" + "x" * 5000
    with pytest.raises(InvalidShopDomain) as info:
        normalize_shop(hostile)
    message = str(info.value)
    assert len(message) <= 1000
    assert message.isascii()
    assert "\n" not in message


@pytest.mark.parametrize("user_id", [0, -1, True, False, 1.0, "42", None])
def test_online_rejects_bad_user_id(user_id: object) -> None:
    """online() accepts only positive ints (not bools, floats or strings)."""
    with pytest.raises(ValueError, match="user_id must be a positive int"):
        TokenKey.online(SHOP, user_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("customer_id", ["", " ", "\t", "a b", "gid://x\n", "a\u00a0b", "a\x00b"])
def test_customer_rejects_blank_or_whitespace_id(customer_id: str) -> None:
    """customer() refuses empty ids and ids with whitespace or control characters."""
    with pytest.raises(ValueError, match="customer_id must be"):
        TokenKey.customer(SHOP, customer_id)


def test_factories_reject_bad_shop() -> None:
    """Every factory validates the shop domain."""
    with pytest.raises(InvalidShopDomain):
        TokenKey.offline("evil.com")
    with pytest.raises(InvalidShopDomain):
        TokenKey.online("evil.com", 1)
    with pytest.raises(InvalidShopDomain):
        TokenKey.customer("evil.com", "1")


def test_factories_fill_fields() -> None:
    """The factories set shop (normalized), kind and subject."""
    assert TokenKey.offline("My-Store") == TokenKey(SHOP, TokenKind.OFFLINE, None)
    online = TokenKey.online("my-store", 42)
    assert (online.shop, online.kind, online.subject) == (SHOP, TokenKind.ONLINE, "42")
    customer = TokenKey.customer("my-store", 7)
    assert (customer.shop, customer.kind, customer.subject) == (SHOP, TokenKind.CUSTOMER, "7")


def test_keys_are_hashable_and_equal_when_built_equal() -> None:
    """Keys built from equivalent inputs are equal, hash alike and work as dict keys."""
    a = TokenKey.offline("my-store")
    b = TokenKey.offline("MY-STORE.myshopify.com")
    assert a == b
    assert hash(a) == hash(b)
    table = {a: "offline", TokenKey.online(SHOP, 42): "online"}
    assert table[b] == "offline"
    assert table[TokenKey.online("my-store", 42)] == "online"
    assert TokenKey.online(SHOP, 42) != TokenKey.online(SHOP, 43)
    assert TokenKey.online(SHOP, 42) != TokenKey.customer(SHOP, "42")
    assert len({a, b, TokenKey.online(SHOP, 42), TokenKey.customer(SHOP, "42")}) == 3


def test_keys_are_frozen() -> None:
    """A key cannot be mutated after construction."""
    key = TokenKey.offline(SHOP)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        key.shop = "other.myshopify.com"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (TokenKey.offline("my-store"), "offline:my-store.myshopify.com"),
        (TokenKey.online("my-store", 42), "online:my-store.myshopify.com:42"),
        (
            TokenKey.customer("my-store", "gid://shopify/Customer/1"),
            "customer:my-store.myshopify.com:gid://shopify/Customer/1",
        ),
    ],
)
def test_str_forms(key: TokenKey, text: str) -> None:
    """str(key) has the stable 'kind:shop[:subject]' form and parse reads it back."""
    assert str(key) == text
    assert TokenKey.parse(text) == key


@given(
    name=names,
    user_id=st.integers(min_value=1, max_value=10**18),
    customer_id=customer_ids,
)
def test_parse_round_trips_every_kind(name: str, user_id: int, customer_id: str) -> None:
    """TokenKey.parse(str(key)) == key for offline, online and customer keys."""
    for key in (
        TokenKey.offline(name),
        TokenKey.online(name, user_id),
        TokenKey.customer(name, customer_id),
    ):
        assert TokenKey.parse(str(key)) == key


@pytest.mark.parametrize("shop", ["my-store", "my-store.myshopify.com", "MY-STORE"])
def test_parse_bare_shop_is_offline(shop: str) -> None:
    """A bare shop (name or domain) parses as that shop's offline key."""
    assert TokenKey.parse(shop) == TokenKey.offline(SHOP)


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "offline:",
        "offline:evil.com",
        "offline:my-store.myshopify.com:extra",
        "online:my-store.myshopify.com",
        "online:my-store.myshopify.com:",
        "online:my-store.myshopify.com:abc",
        "online:my-store.myshopify.com:0",
        "online:my-store.myshopify.com:-1",
        "online:my-store.myshopify.com:42:7",
        "online:evil.com:42",
        "customer:my-store.myshopify.com",
        "customer:my-store.myshopify.com:",
        "customer:my-store.myshopify.com:a b",
        "customer:evil.com:1",
        "OFFLINE:my-store.myshopify.com",
        "refresh:my-store.myshopify.com",
        "https://my-store.myshopify.com",
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    """Malformed key text raises ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - several ValueError kinds are all fine
        TokenKey.parse(text)


def test_parse_error_message_is_bounded() -> None:
    """A huge malformed key yields a bounded ASCII message."""
    with pytest.raises(ValueError) as info:  # noqa: PT011 - message checked below
        TokenKey.parse("bogus:" + "\U0001f600" * 10_000)
    assert len(str(info.value)) <= 1500
    assert str(info.value).isascii()


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        (TokenKind.OFFLINE, "sub"),
        (TokenKind.ONLINE, None),
        (TokenKind.CUSTOMER, None),
    ],
)
def test_direct_construction_checks_subject_presence(kind: TokenKind, subject: str | None) -> None:
    """Offline keys take no subject; online and customer keys need one."""
    with pytest.raises(ValueError, match="subject"):
        TokenKey("x", kind, subject)


@pytest.mark.parametrize(
    ("kind", "subject"),
    [(TokenKind.ONLINE, "abc"), (TokenKind.ONLINE, "0"), (TokenKind.CUSTOMER, "a b")],
)
def test_direct_construction_rejects_unparseable_subject(kind: TokenKind, subject: str) -> None:
    """A directly built key with a subject no factory accepts is refused."""
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError is a refusal
        TokenKey("x", kind, subject)
