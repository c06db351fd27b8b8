"""forget_shop and forget: a shop's keys leave memory and store, and nothing brings them back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import attrs
import pytest
import trio
import trio.testing

from shoptoken import MemoryStore, NoToken, PersistenceError, Token, TokenKey, handle_webhook
from shoptoken.testing import FakeShopify, Fault

from ._managers import KEY, SHOP, Clock, expiring, installed, manager
from .fakes import FlakyStore, PlainStore

ONLINE = TokenKey.online(SHOP, 42)
CUSTOMER = TokenKey.customer(SHOP, "gid://shopify/Customer/7")
OTHER = TokenKey.offline("other-store")


@attrs.define(eq=False)
class ListingStore(PlainStore):
    """A store with list_keys and delete_tokens but no delete_shop."""

    deleted: list[TokenKey] = attrs.Factory(list)

    async def delete_tokens(self, key: TokenKey) -> None:
        """Delete one pair."""
        await trio.lowlevel.checkpoint()
        self.deleted.append(key)
        self.tokens.pop(key, None)

    async def list_keys(self) -> AsyncIterator[TokenKey]:
        """Yield the stored keys."""
        for key in list(self.tokens):
            await trio.lowlevel.checkpoint()
            yield key


async def test_forget_shop_forgets_every_kind_and_stops_refreshing(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Offline, online and customer keys of the shop go (memory, parked, store); others stay."""
    store = MemoryStore()
    await installed(endpoint, store)
    await installed(endpoint, store, OTHER)
    await store.save_tokens(CUSTOMER, expiring(clock, 3600))
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        await tokens.put_token(ONLINE, Token(access_token="shpua_x", expires_at=None))
        await tokens.valid_token(OTHER)
        forgotten = await tokens.forget_shop("MY-STORE")
        assert forgotten == sorted([KEY, ONLINE, CUSTOMER], key=str)
        assert [key async for key in store.list_keys()] == [OTHER]
        requests = endpoint.statistics(SHOP).refreshes
        await trio.sleep(5 * 3600)
        assert endpoint.statistics(SHOP).refreshes == requests == 0
        assert endpoint.statistics("other-store").refreshes == 5
        for key in (KEY, ONLINE, CUSTOMER):
            with pytest.raises(NoToken):
                await tokens.valid_token(key)
        assert await tokens.forget_shop(SHOP) == []  # idempotent


async def test_forget_shop_on_stores_without_delete_shop(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """list_keys + delete_tokens delete the shop's keys; a plain store only forgets in memory."""
    listing = ListingStore()
    await installed(endpoint, listing)
    await installed(endpoint, listing, OTHER)
    await listing.save_tokens(CUSTOMER, expiring(clock, 3600))
    async with manager(endpoint, clock, listing) as tokens:
        assert await tokens.forget_shop(SHOP) == sorted([KEY, CUSTOMER], key=str)
        assert set(listing.tokens) == {OTHER}
    plain = PlainStore()
    await installed(endpoint, plain)
    async with manager(endpoint, clock, plain) as tokens:
        await tokens.valid_token(KEY)
        assert await tokens.forget_shop(SHOP) == [KEY]
        assert KEY in plain.tokens
        assert tokens.statistics().keys_known == 0


async def test_a_pending_save_is_not_resurrected(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A rotated pair whose save is being retried is dropped by forget_shop, never saved."""
    store = FlakyStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        store.fail_saves = 1
        await tokens.refresh_token(KEY)
        assert tokens.statistics().saves_pending == 1
        await tokens.forget_shop(SHOP)
        saves = store.saves
        await trio.sleep(600)
        assert store.saves == saves
        assert await store.load_tokens(KEY) is None


async def test_an_unknown_outcome_is_not_marked_after_a_forget(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A refresh whose answer is lost after forget_shop stores no revocation mark."""
    store = PlainStore()
    original = await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens, trio.open_nursery() as nursery:
        await tokens.valid_token(KEY)
        endpoint.fail_next(Fault.timed_out(delay=30.0, processed=True))

        async def refresh() -> None:
            with pytest.raises(NoToken):
                await tokens.refresh_token(KEY)

        nursery.start_soon(refresh)
        await trio.sleep(1)
        with trio.fail_after(60):
            assert await tokens.forget_shop(SHOP) == [KEY]
        # PlainStore cannot delete: the pair stays as it was, not marked expired.
        assert store.tokens[KEY] == original
        assert endpoint.statistics(SHOP).refreshes == 1


async def test_a_first_load_during_a_forget_finds_nothing(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A load that read the pair just before the store deleted it raises NoToken."""
    store = SlowAnswerStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens, trio.open_nursery() as nursery:

        async def first_use() -> None:
            with pytest.raises(NoToken):
                await tokens.valid_token(KEY)

        nursery.start_soon(first_use)
        await trio.sleep(1)  # the load has read the pair; its answer comes at 5 s
        assert await tokens.forget_shop(SHOP) == [KEY]
    assert len(store) == 0


async def test_a_first_load_while_the_store_deletes_finds_nothing(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A key first used while forget_shop waits on the store is not brought back."""
    store = SlowDeleteStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens, trio.open_nursery() as nursery:
        nursery.start_soon(tokens.forget_shop, SHOP)
        await trio.sleep(1)  # the delete is under way (it answers at 5 s)
        with pytest.raises(NoToken):
            await tokens.valid_token(KEY)
        await trio.sleep(5)
        assert tokens.statistics().keys_known == 0
        assert len(store) == 0


@attrs.define(eq=False)
class SlowDeleteStore(MemoryStore):
    """A MemoryStore whose delete_shop takes 5 s before it deletes."""

    async def delete_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        """Wait, then delete."""
        await trio.sleep(5)
        return await super().delete_shop(shop, before=before)


async def test_forget_shop_store_failure_is_raised_and_retryable(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A failing delete_shop raises PersistenceError; the call succeeds when repeated."""
    store = FailingDeleteStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        with pytest.raises(PersistenceError, match="deleting the tokens of my-store"):
            await tokens.forget_shop(SHOP)
        store.broken = False
        assert await tokens.forget_shop(SHOP) == [KEY]
        assert len(store) == 0


@attrs.define(eq=False)
class SlowAnswerStore(MemoryStore):
    """A MemoryStore whose loads read at once and answer 5 s later."""

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Read, then wait."""
        token = await super().load_tokens(key)
        await trio.sleep(5)
        return token


@attrs.define(eq=False)
class FailingDeleteStore(MemoryStore):
    """A MemoryStore whose delete_shop fails while ``broken``."""

    broken: bool = True

    async def delete_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        """Fail, or delete."""
        if self.broken:
            await trio.lowlevel.checkpoint()
            raise OSError("database unavailable")
        return await super().delete_shop(shop, before=before)


async def test_forget_shop_rejects_a_bad_domain(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A malformed shop raises InvalidShopDomain (a ValueError) before anything changes."""
    async with manager(endpoint, clock) as tokens:
        with pytest.raises(ValueError, match="invalid shop domain"):
            await tokens.forget_shop("evil.com")


# -- found by review: a forget racing a first mint, another process's save, a save ----------

CLIENT_CREDENTIALS = TokenKey.client_credentials("my-store")


async def test_a_mintable_key_first_used_during_forget_shop_is_not_minted(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A first valid_token of a client-credentials key while its shop is forgotten: NoToken.

    No grant for a shop being uninstalled, nothing saved, nothing kept in memory.
    """
    store = SlowDeleteStore()
    async with manager(endpoint, clock, store) as tokens, trio.open_nursery() as nursery:
        nursery.start_soon(tokens.forget_shop, SHOP)
        await trio.sleep(1)  # the delete is under way
        with pytest.raises(NoToken):
            await tokens.valid_token(CLIENT_CREDENTIALS)
        await trio.sleep(10)  # the forget has returned
        assert endpoint.mints == {}
        assert await store.load_tokens(CLIENT_CREDENTIALS) is None
        assert tokens.statistics().keys_known == 0


async def test_a_pending_save_in_another_process_does_not_bring_a_forgotten_shop_back(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker's rotated pair waits for its save when the web process forgets the shop.

    The worker's retry re-reads under the store's lock, finds the row gone, and
    drops the key instead of writing the uninstalled shop's pair back.
    """
    store = FlakyStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as worker, manager(endpoint, clock, store) as web:
        await worker.valid_token(KEY)
        store.fail_saves = 1
        await worker.refresh_token(KEY)
        assert worker.statistics().saves_pending == 1
        assert await web.forget_shop(SHOP) == [KEY]
        await trio.sleep(600)  # the worker's save retries ran
        assert await store.load_tokens(KEY) is None
        assert worker.statistics().saves_pending == 0
        with pytest.raises(NoToken):
            await worker.valid_token(KEY)


@attrs.define(eq=False)
class SlowSavePlainStore(MemoryStore):
    """A store without a cross-process lock (a plain save) whose saves take 5 s."""

    locked = None  # type: ignore[assignment]  # the plain save path: no store lock

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Wait, then save."""
        await trio.sleep(5)
        await super().save_tokens(key, token)


async def test_a_refresh_saving_when_the_shop_is_forgotten_hands_out_nothing(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """Shopify answered and the new pair is being saved when forget_shop drops the key.

    Its caller gets NoToken, not the pair, and the store ends with nothing.
    """
    store = SlowSavePlainStore()
    await installed(endpoint, store)
    got: list[object] = []
    async with manager(endpoint, clock, store) as tokens, trio.open_nursery() as nursery:
        await tokens.valid_token(KEY)

        async def refresh() -> None:
            try:
                got.append(await tokens.refresh_token(KEY))
            except NoToken as exc:
                got.append(exc)

        nursery.start_soon(refresh)
        await trio.sleep(1)  # Shopify answered; the pair is being saved (until 5 s)
        assert endpoint.statistics(SHOP).refreshes == 1
        assert await tokens.forget_shop(SHOP) == [KEY]
        await trio.sleep(10)
    assert await store.load_tokens(KEY) is None
    assert len(got) == 1
    assert isinstance(got[0], NoToken)


# -- forget_shop(before=...): an uninstall's retry delivered after a reinstall ------------


def now(clock: Clock) -> datetime:
    """The wall clock's time, as a datetime."""
    return datetime.fromtimestamp(clock(), UTC)


async def test_a_late_uninstall_delivery_does_not_undo_a_later_reinstall(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A retry of an uninstall delivered after a reinstall keeps the reinstall's token."""
    # Uninstalled at T0 (the app answered 5xx), reinstalled at T0+10 min; Shopify's retry
    # at T0+30 min carries the same Triggered-At: only what the uninstall ended goes.
    store = MemoryStore()
    await installed(endpoint, store)
    await store.save_tokens(CUSTOMER, Token(access_token="shcat_old"))  # undated: before
    await trio.sleep(60)
    uninstall = endpoint.webhook("app/uninstalled", SHOP)
    async with manager(endpoint, clock, store) as tokens, endpoint.oauth(clock=clock) as oauth:
        await tokens.valid_token(KEY)  # the old install's token, in memory
        await trio.sleep(600)
        fresh = endpoint.install(SHOP)  # the merchant reinstalls
        await tokens.put_token(KEY, fresh)
        await trio.sleep(1200)
        webhook = oauth.verify_webhook(uninstall.body, uninstall.headers)
        assert await handle_webhook(tokens, webhook) == [CUSTOMER]
        assert (await tokens.valid_token(KEY)).access_token == fresh.access_token
        assert (await store.load_tokens(KEY)) == fresh
        assert await store.load_tokens(CUSTOMER) is None
        assert tokens.statistics().keys_known == 1


async def test_forget_shop_before_keeps_another_process_reinstall(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A process holding the old token in memory drops it; the store keeps the newer pair."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as worker, manager(endpoint, clock, store) as web:
        old = await worker.valid_token(KEY)
        await trio.sleep(60)
        uninstalled_at = now(clock)
        await trio.sleep(60)
        fresh = endpoint.install(SHOP)
        await web.put_token(KEY, fresh)  # the OAuth callback runs in another process
        assert await worker.forget_shop(SHOP, before=uninstalled_at) == [KEY]
        assert await store.load_tokens(KEY) == fresh
        assert worker.statistics().keys_known == 0  # its old token is not served again
        assert (await worker.valid_token(KEY)).access_token != old.access_token
        assert (await worker.valid_token(KEY)).access_token == fresh.access_token


async def test_forget_shop_before_on_a_store_without_delete_shop(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """list_keys + delete_tokens: each listed pair is loaded and deleted only if obtained before."""
    listing = ListingStore()
    cut = now(clock)
    await listing.save_tokens(KEY, attrs.evolve(expiring(clock, 3600), obtained_at=cut))
    await listing.save_tokens(
        ONLINE, attrs.evolve(expiring(clock, 3600), obtained_at=cut - timedelta(microseconds=1))
    )
    await listing.save_tokens(CUSTOMER, expiring(clock, 3600))  # no obtained_at: before
    await installed(endpoint, listing, OTHER)
    async with manager(endpoint, clock, listing) as tokens:
        assert await tokens.forget_shop(SHOP, before=cut) == sorted([ONLINE, CUSTOMER], key=str)
        assert set(listing.tokens) == {KEY, OTHER}
        assert sorted(listing.deleted, key=str) == sorted([ONLINE, CUSTOMER], key=str)


async def test_forget_shop_before_must_be_an_aware_datetime(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A naive before is a ValueError, a non-datetime a TypeError; nothing is forgotten."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store) as tokens:
        await tokens.valid_token(KEY)
        with pytest.raises(ValueError, match="timezone-aware"):
            await tokens.forget_shop(SHOP, before=datetime(2030, 1, 1))  # noqa: DTZ001 - the point
        with pytest.raises(TypeError, match="datetime"):
            await tokens.forget_shop(SHOP, before=1.0)  # type: ignore[arg-type]
        assert tokens.statistics().keys_known == 1
        assert len(store) == 1


async def test_forget_shop_before_keeps_a_parked_key_the_store_kept(
    endpoint: FakeShopify, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    """A parked key whose stored pair is newer than before stays parked; without before it goes."""
    store = MemoryStore()
    await installed(endpoint, store)
    async with manager(endpoint, clock, store, idle_after=3600.0) as tokens:
        await tokens.valid_token(KEY)
        uninstalled_at = now(clock)
        await trio.sleep(7200)
        assert tokens.statistics().keys_parked == 1
        await store.save_tokens(KEY, endpoint.install(SHOP))  # another process reinstalled
        assert await tokens.forget_shop(SHOP, before=uninstalled_at) == []
        assert tokens.statistics().keys_parked == 1
        assert await tokens.forget_shop(SHOP) == [KEY]
        assert tokens.statistics().keys_parked == 0
        assert len(store) == 0
