"""The contract every store keeps, run against each of them.

Real time throughout: the SQL stores work in threads, which a mock clock
would jump over. Waits are a few tenths of a second.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
import trio

from shoptoken import LockTimeout, PersistenceError, Token, TokenKey, open_token_manager
from shoptoken.stores import _codec
from shoptoken.testing import FakeShopify

from .conftest import Backend, Store

KEY = TokenKey.offline("my-store")
OTHER = TokenKey.offline("other-store")
ONLINE = TokenKey.online("my-store", 42)
CUSTOMER = TokenKey.customer("my-store", "gid://shopify/Customer/7:x")
MINTED = TokenKey.client_credentials("my-store")
T1 = Token(
    access_token="shpat_one",
    refresh_token="shprt_one",
    scope="read_orders,write_orders",
    expires_at=datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    refresh_token_expires_at=datetime(2030, 4, 1, 0, 0, 0, 1, tzinfo=UTC),
)
T2 = Token(
    access_token="shpat_two",
    refresh_token="shprt_two",
    scope="read_orders",
    expires_at=datetime(2030, 1, 2, 4, 4, 5, 999999, tzinfo=UTC),
)
FULL = Token(
    access_token="shpua_online",
    refresh_token="shprt_online",
    scope="read_products",
    # Not UTC on the way in: Token converts, and the store must keep the instant.
    expires_at=datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-7))),
    refresh_token_expires_at=datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    associated_user_id=9_007_199_254_740_993,  # beyond a float's exact integers
    associated_user_scope="read_products,write_orders",
    obtained_at=datetime(2031, 5, 6, 6, 8, 9, 123457, tzinfo=timezone(timedelta(hours=-7))),
)
BARE = Token(access_token="shpat_legacy")


async def _hold(
    store: Store,
    key: TokenKey,
    seconds: float,
    save: Token | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hold ``key``'s lock for ``seconds``, saving ``save`` inside it first."""
    async with store.locked(key, timeout=5.0) as handle:
        if save is not None:
            await handle.save(save)
        task_status.started()
        await trio.sleep(seconds)


# -- load, save, delete -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "token"),
    [
        (KEY, T1),
        (ONLINE, FULL),
        (CUSTOMER, T2),
        (KEY, BARE),
        (MINTED, attrs.evolve(T1, refresh_token=None)),
    ],
    ids=["offline", "online-every-field", "customer", "only-access-token", "client-credentials"],
)
async def test_round_trip(backend: Backend, store: Store, key: TokenKey, token: Token) -> None:
    """Every field comes back equal, None stays None, datetimes exact to the microsecond in UTC."""
    await store.save_tokens(key, token)
    for reader in (store, await backend.open()):
        loaded = await reader.load_tokens(key)
        assert loaded == token
        for value in (loaded.expires_at, loaded.refresh_token_expires_at, loaded.obtained_at):
            assert value is None or value.tzinfo is UTC
    if token.expires_at is not None:
        assert loaded.expires_at.microsecond == token.expires_at.microsecond


async def test_save_replaces_whole_pair(store: Store) -> None:
    """A second save replaces every field, including clearing ones that are now None."""
    await store.save_tokens(ONLINE, FULL)
    await store.save_tokens(ONLINE, BARE)
    assert await store.load_tokens(ONLINE) == BARE
    assert [key async for key in store.list_keys()] == [ONLINE]


async def test_load_unknown_key(store: Store) -> None:
    """A key never saved loads as None."""
    await store.save_tokens(OTHER, T1)
    assert await store.load_tokens(KEY) is None


async def test_delete(store: Store) -> None:
    """Delete removes one key's pair; deleting an absent key is no error."""
    await store.save_tokens(KEY, T1)
    await store.save_tokens(OTHER, T2)
    await store.delete_tokens(KEY)
    await store.delete_tokens(KEY)
    await store.delete_tokens(TokenKey.offline("never-saved"))
    assert await store.load_tokens(KEY) is None
    assert await store.load_tokens(OTHER) == T2


async def test_delete_shop(store: Store) -> None:
    """delete_shop removes every kind of key of one shop, returns them, and keeps other shops."""
    for key in (KEY, ONLINE, CUSTOMER, OTHER):
        await store.save_tokens(key, T1)
    deleted = await store.delete_shop("my-store.myshopify.com")
    assert sorted(deleted, key=str) == sorted([KEY, ONLINE, CUSTOMER], key=str)
    assert [key async for key in store.list_keys()] == [OTHER]
    assert await store.delete_shop("my-store.myshopify.com") == []
    assert await store.load_tokens(OTHER) == T1


async def test_delete_shop_before(store: Store) -> None:
    """delete_shop(before=...) deletes only the shop's pairs obtained before it, or undated."""
    cut = datetime(2030, 1, 1, tzinfo=UTC)
    old = attrs.evolve(T1, obtained_at=cut - timedelta(microseconds=1))
    new = attrs.evolve(T2, obtained_at=cut)  # obtained at that instant: not before it
    for key, token in ((KEY, new), (ONLINE, old), (CUSTOMER, BARE), (OTHER, old)):
        await store.save_tokens(key, token)
    # The same instant in another zone: compared as instants, to the microsecond.
    before = cut.astimezone(timezone(timedelta(hours=5)))
    deleted = await store.delete_shop("my-store", before=before)
    assert sorted(deleted, key=str) == sorted([ONLINE, CUSTOMER], key=str)
    assert await store.load_tokens(KEY) == new
    assert await store.load_tokens(OTHER) == old
    assert await store.delete_shop("my-store", before=cut) == []
    assert await store.delete_shop("my-store") == [KEY]


async def test_delete_shop_outlives_a_locked_save(store: Store) -> None:
    """A pair saved under the lock while delete_shop runs does not survive the delete."""
    await store.save_tokens(KEY, T1)
    async with trio.open_nursery() as nursery:
        await nursery.start(_hold, store, KEY, 0.3, T2)
        assert await store.delete_shop("my-store") == [KEY]
    assert await store.load_tokens(KEY) is None


# -- listing ----------------------------------------------------------------------------


async def test_list_keys_every_kind(store: Store) -> None:
    """list_keys yields each stored key once, as equal TokenKeys of every kind."""
    keys = [KEY, OTHER, ONLINE, CUSTOMER, MINTED]
    for key in keys:
        await store.save_tokens(key, T1)
    assert sorted([key async for key in store.list_keys()], key=str) == sorted(keys, key=str)


async def test_list_keys_streams_in_batches(
    backend: Backend, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many keys list completely across batches; paged stores read later batches as they go."""
    monkeypatch.setattr(_codec, "LIST_BATCH", 7)
    keys = [TokenKey.offline(f"shop-{i:03}") for i in range(50)]
    async with trio.open_nursery() as nursery:
        for key in keys:
            nursery.start_soon(store.save_tokens, key, T1)
    listed: list[TokenKey] = []
    late = TokenKey.offline("zzz-saved-while-listing")
    async for key in store.list_keys():
        if not listed:
            await store.save_tokens(late, T2)
        listed.append(key)
    expected = [*keys, late] if backend.streams else keys
    assert sorted(listed, key=str) == sorted(expected, key=str)


async def test_list_keys_of_empty_store(store: Store) -> None:
    """An empty store lists nothing."""
    assert [key async for key in store.list_keys()] == []


# -- concurrency ----------------------------------------------------------------------------


async def test_concurrent_saves(backend: Backend, store: Store) -> None:
    """Many tasks saving at once (some to one key, through two instances) all land intact."""
    second = await backend.open()
    shared = [attrs.evolve(T1, access_token=f"shpat_{i}") for i in range(20)]
    own = {TokenKey.offline(f"shop-{i}"): attrs.evolve(T2, scope=f"s{i}") for i in range(30)}
    async with trio.open_nursery() as nursery:
        for i, token in enumerate(shared):
            nursery.start_soon((store if i % 2 else second).save_tokens, KEY, token)
        for key, token in own.items():
            nursery.start_soon(store.save_tokens, key, token)
    assert await store.load_tokens(KEY) in shared
    for key, token in own.items():
        assert await second.load_tokens(key) == token


# -- locked() ---------------------------------------------------------------------------


async def test_locked_rereads_and_saves(store: Store) -> None:
    """locked() yields the stored token; a save inside is stored after the block."""
    await store.save_tokens(KEY, T1)
    async with store.locked(KEY, timeout=1.0) as handle:
        assert handle.token == T1
        await handle.save(T2)
        assert handle.token == T2
    assert await store.load_tokens(KEY) == T2


async def test_locked_on_absent_key(store: Store) -> None:
    """locked() on a key with no row yields None and can save the first pair."""
    async with store.locked(KEY, timeout=1.0) as handle:
        assert handle.token is None
        await handle.save(T1)
    assert await store.load_tokens(KEY) == T1


async def test_locked_saves_twice(store: Store) -> None:
    """Two saves inside one lock: the last one is stored."""
    await store.save_tokens(KEY, T1)
    async with store.locked(KEY, timeout=1.0) as handle:
        await handle.save(T2)
        await handle.save(FULL)
    assert await store.load_tokens(KEY) == FULL


async def test_locked_rolls_back_on_error(backend: Backend, store: Store) -> None:
    """An exception inside locked() propagates; a transactional store keeps the old pair."""
    await store.save_tokens(KEY, T1)

    async def fail_inside() -> None:
        async with store.locked(KEY, timeout=1.0) as handle:
            await handle.save(T2)
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await fail_inside()
    assert await store.load_tokens(KEY) == (T1 if backend.transactional else T2)
    async with store.locked(KEY, timeout=0.5) as handle:  # released
        assert handle.token == (T1 if backend.transactional else T2)


async def test_locked_rolls_back_when_cancelled(backend: Backend, store: Store) -> None:
    """A cancelled locked() block rolls back (transactional stores) and frees the lock."""
    await store.save_tokens(KEY, T1)
    with trio.move_on_after(0.1):
        async with store.locked(KEY, timeout=1.0) as handle:
            await handle.save(T2)
            await trio.sleep_forever()
    assert await store.load_tokens(KEY) == (T1 if backend.transactional else T2)
    second = await backend.open()
    async with second.locked(KEY, timeout=0.5):
        pass


@pytest.mark.parametrize("across", [False, True], ids=["same-instance", "second-instance"])
async def test_second_locked_waits_and_rereads(
    backend: Backend, store: Store, across: bool
) -> None:
    """A second locked() on the key waits for the holder, then sees what it saved."""
    other = await backend.open() if across else store
    await store.save_tokens(KEY, T1)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(_hold, store, KEY, 0.15, T2)
        async with other.locked(KEY, timeout=5.0) as handle:
            assert trio.current_time() - start >= 0.1
            assert handle.token == T2


@pytest.mark.parametrize("across", [False, True], ids=["same-instance", "second-instance"])
async def test_second_locked_on_an_absent_key_waits(
    backend: Backend, store: Store, across: bool
) -> None:
    """No row yet (a client-credentials key's first mint): a second locked() waits, then rereads."""
    other = await backend.open() if across else store
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(_hold, store, MINTED, 0.15, T2)
        async with other.locked(MINTED, timeout=5.0) as handle:
            assert trio.current_time() - start >= 0.1
            assert handle.token == T2


@pytest.mark.parametrize("across", [False, True], ids=["same-instance", "second-instance"])
async def test_locked_times_out(backend: Backend, store: Store, across: bool) -> None:
    """A second locked() raises LockTimeout after its timeout while the key stays held."""
    other = await backend.open() if across else store
    await store.save_tokens(KEY, T1)
    async with trio.open_nursery() as nursery:
        await nursery.start(_hold, store, KEY, 1.5)
        start = trio.current_time()
        with pytest.raises(LockTimeout) as info:
            async with other.locked(KEY, timeout=0.15):
                pytest.fail("lock granted while held")
        waited = trio.current_time() - start
        assert 0.15 <= waited < 0.65
        assert info.value.key == KEY
        nursery.cancel_scope.cancel()


async def test_cancelled_wait_for_lock_ends_promptly(backend: Backend, store: Store) -> None:
    """Cancelling a locked() that waits for the lock ends it quickly and leaks nothing."""
    other = await backend.open()
    await store.save_tokens(KEY, T1)
    async with trio.open_nursery() as nursery:
        await nursery.start(_hold, store, KEY, 0.3, T2)
        start = trio.current_time()
        with trio.move_on_after(0.05):
            async with other.locked(KEY, timeout=10.0):
                pytest.fail("lock granted while held")
        assert trio.current_time() - start < 0.25
    async with other.locked(KEY, timeout=0.5) as handle:
        assert handle.token == T2


@pytest.mark.requires("per_key_locks", reason="SQLite's lock covers the whole file")
async def test_locks_on_other_keys(backend: Backend, store: Store) -> None:
    """Per-key stores grant another key's lock at once while one key is held."""
    other = await backend.open()
    async with trio.open_nursery() as nursery:
        await nursery.start(_hold, store, KEY, 1.0)
        start = trio.current_time()
        async with other.locked(OTHER, timeout=0.5) as handle:
            assert handle.token is None
        assert trio.current_time() - start < 0.3
        nursery.cancel_scope.cancel()


async def test_plain_reads_while_locked(backend: Backend, store: Store) -> None:
    """While a key is locked, loads (any instance) still answer, with the committed pair."""
    other = await backend.open()
    await store.save_tokens(KEY, T1)
    async with store.locked(KEY, timeout=1.0) as handle:
        await handle.save(T2)
        with trio.fail_after(1.0):
            loaded = await other.load_tokens(KEY)
    assert loaded == (T1 if backend.transactional else T2)


# -- corruption -------------------------------------------------------------------------


@pytest.mark.requires("corruptions", reason="MemoryStore holds Token objects: nothing to corrupt")
async def test_corrupted_rows(backend: Backend, store: Store) -> None:
    """Each kind of corrupt row raises PersistenceError (load and locked), and a save repairs it."""
    for name, corrupt in backend.corruptions.items():
        await store.save_tokens(KEY, T1)
        await corrupt(KEY)
        with pytest.raises(PersistenceError) as info:
            await store.load_tokens(KEY)
        assert info.value.key == KEY, name
        for secret in ("shpat_one", "shprt_one"):
            assert secret not in str(info.value), name
        with pytest.raises(PersistenceError):
            async with store.locked(KEY, timeout=1.0):
                pytest.fail(f"{name}: corrupt row handed out")
        await store.save_tokens(KEY, T2)
        assert await store.load_tokens(KEY) == T2, name


@pytest.mark.requires("transactional", reason="MemoryStore keeps any Token object as it is")
@pytest.mark.parametrize(
    "token",
    [
        Token(access_token="shpat_\udcff"),
        Token(access_token="shpat_x", associated_user_id=2**70),
    ],
    ids=["lone-surrogate", "user-id-beyond-64-bits"],
)
async def test_unstorable_token(store: Store, token: Token) -> None:
    """A token the database cannot hold raises PersistenceError and changes nothing."""
    await store.save_tokens(KEY, T1)
    with pytest.raises(PersistenceError):
        await store.save_tokens(KEY, token)
    with pytest.raises(PersistenceError):
        async with store.locked(KEY, timeout=1.0) as handle:
            await handle.save(token)
    assert await store.load_tokens(KEY) == T1


@pytest.mark.requires("insert_bad_key", reason="MemoryStore's keys are TokenKey objects")
async def test_corrupted_key_in_listing(backend: Backend, store: Store) -> None:
    """A stored key that is not a TokenKey makes listing raise PersistenceError."""
    assert backend.insert_bad_key is not None
    await store.save_tokens(KEY, T1)
    await backend.insert_bad_key("online:my-store.myshopify.com:not-a-number")
    with pytest.raises(PersistenceError, match="not a valid token key"):
        _ = [key async for key in store.list_keys()]


# -- with the manager -------------------------------------------------------------------


async def test_backs_a_token_manager(backend: Backend, store: Store) -> None:
    """The manager refreshes through the store's lock; a fresh instance loads the last pair."""
    shopify = FakeShopify()
    await store.save_tokens(KEY, shopify.install(KEY.shop))
    async with shopify.oauth() as oauth, open_token_manager(oauth, store) as tokens:
        for _ in range(3):
            token = await tokens.refresh_token(KEY)
    assert shopify.refreshes[KEY.shop] == 3
    assert shopify.is_valid(KEY.shop, token.access_token)
    assert await (await backend.open()).load_tokens(KEY) == token
