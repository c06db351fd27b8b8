from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
from trio.testing import MockClock

from shoptoken import LockTimeout, MemoryStore, Token, TokenKey

# Tests taking `autojump_clock` run on trio's virtual clock (pytest-trio finds the
# clock among the test's arguments, so `usefixtures` would not do), which lets them
# assert exact elapsed times.
KEY = TokenKey.offline("my-store")
OTHER = TokenKey.offline("other-store")
T1 = Token(
    access_token="shpat_one",
    refresh_token="shprt_one",
    scope="read_orders",
    expires_at=datetime(2030, 1, 1, tzinfo=UTC),
)
T2 = Token(
    access_token="shpat_two",
    refresh_token="shprt_two",
    scope="read_orders",
    expires_at=datetime(2030, 1, 1, 1, tzinfo=UTC),
)


async def _hold(
    store: MemoryStore,
    key: TokenKey,
    seconds: float,
    save: Token | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hold ``key``'s lock for ``seconds``, saving ``save`` inside it first."""
    async with store.locked(key, timeout=1000.0) as locked:
        task_status.started()
        if save is not None:
            await locked.save(save)
        await trio.sleep(seconds)


async def test_save_load_round_trip() -> None:
    """A saved token loads back equal."""
    store = MemoryStore()
    await store.save_tokens(KEY, T1)
    assert await store.load_tokens(KEY) == T1
    assert len(store) == 1


async def test_save_replaces() -> None:
    """Saving again for a key replaces the whole pair."""
    store = MemoryStore()
    await store.save_tokens(KEY, T1)
    await store.save_tokens(KEY, T2)
    assert await store.load_tokens(KEY) == T2
    assert len(store) == 1


async def test_load_unknown_key_is_none() -> None:
    """Loading a key never saved gives None."""
    store = MemoryStore()
    await store.save_tokens(OTHER, T1)
    assert await store.load_tokens(KEY) is None


async def test_initial_tokens() -> None:
    """Tokens passed at construction are loadable."""
    store = MemoryStore(tokens={KEY: T1})
    assert await store.load_tokens(KEY) == T1


async def test_delete() -> None:
    """Delete removes the pair and deleting an absent key is a no-op."""
    store = MemoryStore()
    await store.save_tokens(KEY, T1)
    await store.save_tokens(OTHER, T2)
    await store.delete_tokens(KEY)
    assert await store.load_tokens(KEY) is None
    await store.delete_tokens(KEY)
    await store.delete_tokens(TokenKey.offline("never-saved"))
    assert await store.load_tokens(OTHER) == T2
    assert len(store) == 1


async def test_list_keys_yields_all() -> None:
    """list_keys yields every stored key exactly once."""
    store = MemoryStore()
    keys = [
        KEY,
        OTHER,
        TokenKey.online("my-store", 42),
        TokenKey.customer("my-store", "gid://shopify/Customer/1"),
    ]
    for key in keys:
        await store.save_tokens(key, T1)
    listed = [key async for key in store.list_keys()]
    assert sorted(listed, key=str) == sorted(keys, key=str)


async def test_list_keys_of_empty_store() -> None:
    """An empty store lists no keys."""
    assert [key async for key in MemoryStore().list_keys()] == []


async def test_list_keys_is_a_snapshot() -> None:
    """Keys saved during iteration are not yielded and iteration does not break."""
    store = MemoryStore(tokens={KEY: T1})
    listed = []
    async for key in store.list_keys():
        listed.append(key)
        await store.save_tokens(OTHER, T2)
    assert listed == [KEY]


async def test_locked_yields_stored_token_and_saves() -> None:
    """locked() yields the stored token; its save writes through at once."""
    store = MemoryStore(tokens={KEY: T1})
    async with store.locked(KEY, timeout=1.0) as locked:
        assert locked.token == T1
        await locked.save(T2)
        assert locked.token == T2
        assert await store.load_tokens(KEY) == T2
    assert await store.load_tokens(KEY) == T2


async def test_locked_on_absent_key_yields_none() -> None:
    """locked() on a key with no token yields None and can save the first one."""
    store = MemoryStore()
    async with store.locked(KEY, timeout=1.0) as locked:
        assert locked.token is None
        await locked.save(T1)
    assert await store.load_tokens(KEY) == T1


async def test_second_locked_waits_and_rereads(autojump_clock: MockClock) -> None:
    """A second locked() waits for the holder and then sees what the holder saved."""
    store = MemoryStore(tokens={KEY: T1})
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(_hold, store, KEY, 10.0, T2)
        async with store.locked(KEY, timeout=30.0) as locked:
            assert trio.current_time() - start == 10.0
            assert locked.token == T2
    assert store._locks == {}


async def test_locked_times_out(autojump_clock: MockClock) -> None:
    """A second locked() with a short timeout raises LockTimeout after exactly that time."""
    store = MemoryStore(tokens={KEY: T1})
    async with trio.open_nursery() as nursery:
        await nursery.start(_hold, store, KEY, 10.0)
        start = trio.current_time()
        with pytest.raises(LockTimeout) as info:
            async with store.locked(KEY, timeout=2.5):
                pytest.fail("lock granted while held")
        assert trio.current_time() - start == 2.5
        assert info.value.key == KEY
    assert trio.current_time() - start == 10.0
    assert store._locks == {}


async def test_locked_free_lock_is_immediate(autojump_clock: MockClock) -> None:
    """A free lock is granted without any wait."""
    store = MemoryStore()
    start = trio.current_time()
    async with store.locked(KEY, timeout=1.0) as locked:
        assert locked.token is None
    assert trio.current_time() == start


async def test_locks_on_different_keys_are_independent(autojump_clock: MockClock) -> None:
    """Holding one key's lock does not delay a lock on another key."""
    store = MemoryStore(tokens={KEY: T1, OTHER: T2})
    async with trio.open_nursery() as nursery:
        await nursery.start(_hold, store, KEY, 10.0)
        start = trio.current_time()
        async with store.locked(OTHER, timeout=1.0) as locked:
            assert locked.token == T2
        assert trio.current_time() == start
    assert store._locks == {}


async def test_lock_dict_does_not_grow(autojump_clock: MockClock) -> None:
    """After uncontended, contended and timed-out use no per-key lock is kept."""
    store = MemoryStore()
    for i in range(50):
        async with store.locked(TokenKey.offline(f"shop-{i}"), timeout=1.0):
            pass
    assert store._locks == {}
    async with trio.open_nursery() as nursery:
        await nursery.start(_hold, store, KEY, 5.0)
        with pytest.raises(LockTimeout):
            async with store.locked(KEY, timeout=1.0):
                pass
    assert store._locks == {}


async def test_lock_released_when_body_raises() -> None:
    """An exception inside locked() releases the lock and propagates unchanged."""
    store = MemoryStore()
    with pytest.raises(KeyError, match="boom"):
        async with store.locked(KEY, timeout=1.0):
            raise KeyError("boom")
    assert store._locks == {}
    async with store.locked(KEY, timeout=1.0):
        pass


async def test_lock_excludes_after_handoff(autojump_clock: MockClock) -> None:
    """After the lock passes from one waiter to the next it still excludes a third task."""
    store = MemoryStore(tokens={KEY: T1})
    async with trio.open_nursery() as nursery:
        await nursery.start(_hold, store, KEY, 10.0)  # A holds until t=10
        nursery.start_soon(_hold, store, KEY, 10.0)  # B waits, holds from t=10 to t=20
        await trio.sleep(11.0)
        start = trio.current_time()
        with pytest.raises(LockTimeout):
            async with store.locked(KEY, timeout=1.0):  # C, while B holds
                pass
        assert trio.current_time() - start == 1.0
