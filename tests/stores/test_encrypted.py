"""EncryptedStore specifics: what is stored, keys and their rotation, capabilities."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shoptoken import MemoryStore, PersistenceError, Token, TokenKey, open_token_manager
from shoptoken.stores import SQLiteStore
from shoptoken.testing import FakeShopify

pytest.importorskip("cryptography")

from shoptoken.stores import EncryptedStore

KEY = TokenKey.offline("my-store")
OTHER = TokenKey.offline("other-store")
TOKEN = Token(
    access_token="shpat_secret",
    refresh_token="shprt_secret",
    scope="read_orders",
    expires_at=datetime(2030, 1, 1, tzinfo=UTC),
)
OLD = bytes(32)
NEW = bytes(range(32))


class TwoMethods:
    """A user's plain TokenCallback: load and save only."""

    def __init__(self) -> None:
        self.tokens: dict[TokenKey, Token] = {}

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Return the stored token."""
        return self.tokens.get(key)

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Store the token."""
        self.tokens[key] = token


async def test_secrets_are_encrypted_at_rest() -> None:
    """The inner store holds v1 ciphertexts under the first key; everything else stays clear."""
    inner = MemoryStore()
    store = EncryptedStore(inner, {"new": NEW, "old": OLD})
    await store.save_tokens(KEY, TOKEN)
    raw = await inner.load_tokens(KEY)
    assert raw is not None
    assert raw.access_token.startswith("v1:new:")
    assert raw.refresh_token is not None
    assert raw.refresh_token.startswith("v1:new:")
    for value in (raw.access_token, raw.refresh_token):
        assert "secret" not in value
    assert (raw.scope, raw.expires_at) == (TOKEN.scope, TOKEN.expires_at)
    assert await store.load_tokens(KEY) == TOKEN


async def test_every_save_uses_a_fresh_nonce() -> None:
    """Saving the same token twice stores different ciphertexts."""
    inner = MemoryStore()
    store = EncryptedStore(inner, {"k": NEW})
    await store.save_tokens(KEY, TOKEN)
    first = await inner.load_tokens(KEY)
    await store.save_tokens(KEY, TOKEN)
    assert await inner.load_tokens(KEY) != first


async def test_wrong_key_is_a_persistence_error() -> None:
    """A store configured with another key (same key id) cannot read the rows."""
    inner = MemoryStore()
    await EncryptedStore(inner, {"k": NEW}).save_tokens(KEY, TOKEN)
    with pytest.raises(PersistenceError, match="does not decrypt"):
        await EncryptedStore(inner, {"k": OLD}).load_tokens(KEY)


async def test_key_rotation(tmp_path: Path) -> None:
    """New key first: old rows still read; reencrypt() rewrites them; then the old key can go."""
    async with SQLiteStore(tmp_path / "tokens.db") as inner:
        await EncryptedStore(inner, {"old": OLD}).save_tokens(KEY, TOKEN)
        await EncryptedStore(inner, {"old": OLD}).save_tokens(OTHER, TOKEN)
        rotating = EncryptedStore(inner, {"new": NEW, "old": OLD})
        assert await rotating.load_tokens(KEY) == TOKEN
        await rotating.save_tokens(OTHER, TOKEN)  # rewritten by a save already
        assert await rotating.reencrypt() == 1
        assert await rotating.reencrypt() == 0
        rotated = EncryptedStore(inner, {"new": NEW})
        assert await rotated.load_tokens(KEY) == TOKEN
        assert await rotated.load_tokens(OTHER) == TOKEN


async def test_adopting_a_plaintext_store() -> None:
    """accept_plaintext reads unencrypted rows; reencrypt() encrypts them."""
    inner = MemoryStore(tokens={KEY: TOKEN})
    with pytest.raises(PersistenceError, match="not encrypted"):
        await EncryptedStore(inner, {"k": NEW}).load_tokens(KEY)
    adopting = EncryptedStore(inner, {"k": NEW}, accept_plaintext=True)
    assert await adopting.load_tokens(KEY) == TOKEN
    assert await adopting.reencrypt() == 1
    assert await EncryptedStore(inner, {"k": NEW}).load_tokens(KEY) == TOKEN


async def test_capabilities_follow_the_inner_store() -> None:
    """Over a two-method callback: no lock, listing or delete; over MemoryStore, all of them."""
    plain = EncryptedStore(TwoMethods(), {"k": NEW})
    for name in ("locked", "list_keys", "delete_tokens", "create_schema"):
        assert not hasattr(plain, name)
        assert hasattr(EncryptedStore(MemoryStore(), {"k": NEW}), name)
    assert hasattr(EncryptedStore(SQLiteStore("unused.db"), {"k": NEW}), "create_schema")
    with pytest.raises(AttributeError, match="TwoMethods"):
        _ = plain.locked
    with pytest.raises(TypeError, match="list_keys"):
        await plain.reencrypt()


async def test_manager_over_a_two_method_callback() -> None:
    """The manager works over an EncryptedStore whose inner store has no lock."""
    inner = TwoMethods()
    store = EncryptedStore(inner, {"k": NEW})
    shopify = FakeShopify()
    key = TokenKey.offline("my-store")
    await store.save_tokens(key, shopify.install(key.shop))
    async with shopify.oauth() as oauth, open_token_manager(oauth, store) as tokens:
        token = await tokens.refresh_token(key)
    assert await store.load_tokens(key) == token
    assert inner.tokens[key].access_token.startswith("v1:k:")


def test_generate_key() -> None:
    """generate_key() gives distinct 32-byte keys."""
    first, second = EncryptedStore.generate_key(), EncryptedStore.generate_key()
    assert len(first) == len(second) == 32
    assert first != second


def test_key_text_round_trip() -> None:
    """format_key / parse_keys round-trip, in order (the first one encrypts)."""
    text = f"{EncryptedStore.format_key('b', NEW)}, {EncryptedStore.format_key('a', OLD)}"
    assert list(EncryptedStore.parse_keys(text).items()) == [("b", NEW), ("a", OLD)]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nokid",
        "k:" + base64.urlsafe_b64encode(bytes(16)).decode(),
        "k:not base64!",
        "bad id:" + base64.urlsafe_b64encode(NEW).decode(),
        "k:{0},k:{0}".format(base64.urlsafe_b64encode(NEW).decode()),
    ],
    ids=["empty", "no-key", "short", "not-base64", "bad-id", "duplicate"],
)
def test_parse_keys_rejects(text: str) -> None:
    """Malformed key text raises ValueError, never echoing key material."""
    with pytest.raises(ValueError, match="key") as info:
        EncryptedStore.parse_keys(text)
    assert base64.urlsafe_b64encode(NEW).decode() not in str(info.value)


@pytest.mark.parametrize(
    "keys",
    [{}, {"k": b"short"}, {"bad:id": NEW}, {"k": "x" * 32}],
    ids=["none", "short", "bad-id", "str-key"],
)
def test_bad_keys(keys: dict[str, bytes]) -> None:
    """Unusable key sets raise ValueError at construction."""
    with pytest.raises(ValueError, match="key"):
        EncryptedStore(MemoryStore(), keys)


def test_repr_hides_keys() -> None:
    """The store's repr never shows key material."""
    assert repr(NEW) not in repr(EncryptedStore(MemoryStore(), {"k": NEW}))
