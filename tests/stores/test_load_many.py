"""Bulk loading (``load_many``) in every store, and a manager's warm-up over each of them.

Real time throughout, as in the contract tests: the SQL stores work in
threads (a real SQLite file, the real PostgreSQL server).
"""

from __future__ import annotations

import pytest
import trio

from shoptoken import MemoryStore, PersistenceError, TokenKey, open_token_manager
from shoptoken.stores import _codec
from shoptoken.testing import FakeShopify

from ..fakes import PlainStore
from .conftest import KEYS, Backend, Store
from .test_contract import BARE, CUSTOMER, FULL, KEY, ONLINE, OTHER, T1, T2


async def test_load_many_returns_stored_keys_only(store: Store) -> None:
    """load_many hands back exactly the stored tokens of the keys asked for, of every kind."""
    stored = {KEY: T1, ONLINE: FULL, CUSTOMER: T2, TokenKey.offline("legacy"): BARE}
    for key, token in stored.items():
        await store.save_tokens(key, token)
    absent = TokenKey.offline("never-installed")
    found = await store.load_many([*stored, absent])
    assert found == stored
    assert await store.load_many([OTHER, absent]) == {}
    assert await store.load_many([]) == {}
    assert await store.load_many([KEY]) == {KEY: T1}


async def test_load_many_of_an_empty_store(store: Store) -> None:
    """A store with nothing saved yet (no table for SQLite) loads nothing, without error."""
    assert await store.load_many([KEY, OTHER]) == {}


async def test_load_many_beyond_one_query(store: Store) -> None:
    """More keys than one query takes (SQLite's IN limit) come back complete in one call."""
    keys = [TokenKey.offline(f"bulk-{i:04}") for i in range(_codec.LOAD_BATCH * 2 + 17)]
    async with trio.open_nursery() as nursery:
        for key in keys[::2]:
            nursery.start_soon(store.save_tokens, key, T1)
    found = await store.load_many(keys)
    assert found == dict.fromkeys(keys[::2], T1)


@pytest.mark.requires("corruptions", reason="MemoryStore holds Token objects: nothing to corrupt")
async def test_load_many_with_a_corrupt_row(backend: Backend, store: Store) -> None:
    """A corrupt row fails the whole call with PersistenceError that names no secret."""
    corrupt = next(iter(backend.corruptions.values()))
    await store.save_tokens(KEY, T1)
    await store.save_tokens(OTHER, T2)
    await corrupt(KEY)
    with pytest.raises(PersistenceError) as info:
        await store.load_many([OTHER, KEY])
    for secret in ("shpat_one", "shprt_one", "shpat_two", "shprt_two"):
        assert secret not in str(info.value)


async def test_warm_up_over_the_store(backend: Backend, store: Store) -> None:
    """A manager warms up every stored key in batches, loading none of them again on use."""
    shopify = FakeShopify()
    keys = [TokenKey.offline(f"warm-{i:03}") for i in range(25)]
    installed = {key: shopify.install(key.shop) for key in keys}
    for key, token in installed.items():
        await store.save_tokens(key, token)
    async with shopify.oauth() as oauth, open_token_manager(oauth, store) as tokens:
        figures = await tokens.warm_up(batch_size=10)
        assert (figures.loaded, figures.dead, figures.missing, figures.failed) == (25, 0, 0, 0)
        assert tokens.statistics().keys_active == 25
        for key, token in installed.items():
            assert await tokens.valid_token(key) == token
        assert tokens.statistics().loads_failed == 0
        again = await tokens.warm_up([*keys[:3], TokenKey.offline("absent")])
        assert (again.loaded, again.missing) == (3, 1)


def test_encrypted_store_has_load_many_only_over_a_store_with_it() -> None:
    """EncryptedStore offers load_many exactly when its inner store does."""
    from shoptoken.stores import EncryptedStore

    assert not hasattr(EncryptedStore(PlainStore(), KEYS), "load_many")
    assert hasattr(EncryptedStore(MemoryStore(), KEYS), "load_many")
