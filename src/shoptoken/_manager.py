"""TokenManager: serves valid tokens, refreshes them single-flight, persists first."""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import attrs
import trio

from . import _schedule
from ._callback import TokenCallback
from ._errors import (
    LockTimeout,
    NoToken,
    PersistenceError,
    ReauthorizationRequired,
    RefreshFailed,
)
from ._events import Emitter, EventHook, EventKind, TokenEvent, describe
from ._keys import TokenKey, TokenKind
from ._policy import RefreshPolicy
from ._refresher import as_refresher
from ._rotation import Rotator, secrets_of, store_deadline
from ._slot import Counters, Slot, TokenManagerStatistics, copy_error
from ._supervisor import Supervisor, wake
from ._token import Token

if TYPE_CHECKING:
    import httpx

    from ._refresher import Refresher

Save = Callable[[Token], Awaitable[None]]


@attrs.define(eq=False)
class TokenManager:
    """Keeps every key's token valid; made by `open_token_manager`.

    All methods must be called from the trio run that opened the manager.
    """

    _refresher: Refresher
    _callback: TokenCallback
    _policy: RefreshPolicy
    _clock: Callable[[], float]
    _emitter: Emitter
    _critical: trio.Nursery
    _background: trio.Nursery
    _slots: dict[TokenKey, Slot] = attrs.field(factory=dict, init=False)
    _parked: dict[TokenKey, float] = attrs.field(factory=dict, init=False)
    _counters: Counters = attrs.field(factory=Counters, init=False)
    _critical_scopes: set[trio.CancelScope] = attrs.field(factory=set, init=False)
    _limiter: trio.CapacityLimiter = attrs.field(init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _shutdown_deadline: float = attrs.field(default=math.inf, init=False)
    _rng: random.Random = attrs.field(factory=random.Random, init=False)
    _supervisor: Supervisor = attrs.field(init=False)
    _rotator: Rotator = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._limiter = trio.CapacityLimiter(self._policy.max_concurrent_refreshes)
        self._supervisor = Supervisor(self)
        self._rotator = Rotator(self)

    # -- the hot path ---------------------------------------------------------

    async def valid_token(self, key: TokenKey) -> Token:
        """Return a token for ``key`` that is valid now.

        A fresh cached token is returned at once: no lock, no I/O and, unlike
        other trio async functions, no checkpoint (it does not yield to the
        scheduler, as a cache hit should not). Otherwise the decision table
        in the docs applies: load lazily on first use, refresh single-flight
        when stale or expired, raise when nothing can be served.

        Raises:
            NoToken: Nothing is stored for ``key``.
            ReauthorizationRequired: The refresh token is expired or revoked.
            RefreshFailed: The refresh failed (a stale token is returned
                instead when the policy has ``stale_while_error``).
            LockTimeout: The store's cross-process lock timed out.
            PersistenceError: The store failed to load the token.
            RuntimeError: The manager is closed.
        """
        slot = self._slots.get(key)
        if slot is not None:
            now = self._clock()
            if now < slot.fresh_until:
                slot.used = now
                return slot.token  # type: ignore[return-value]  # fresh_until > -inf only with a token
            flight = slot.flight
            if (
                flight is not None
                and slot.running
                and not slot.dead
                and slot.hard_at <= now < slot.dead_at
                and slot.token.refreshable  # type: ignore[union-attr]  # running: a token
                and not self._closed
            ):
                # Hard-expired, its refresh in flight: the decision table's
                # answer is to wait for it. Joined here, a herd's callers each
                # run one coroutine level less (and the collector walks less).
                slot.used = now
                await flight.done.wait()
                return flight.result()
        return await self._valid_token_slow(key)

    async def _valid_token_slow(self, key: TokenKey) -> Token:
        slot = self._slots.get(key)
        # A first use awaits the store's load (or another caller's), which is
        # its checkpoint: a fleet's start then takes one scheduler pass per
        # key, not two.
        loads = slot is None or not slot.loaded
        if slot is None or loads or self._closed:
            slot = await self._activate(key, use=True)
        else:
            # Loaded: skip a coroutine level (a herd of callers joins here).
            self._supervisor.start(slot)
        now = self._clock()
        slot.used = now
        token = self._token_or_raise(slot)
        state = _schedule.classify_times(
            now, slot.stale_at, slot.hard_at, slot.dead_at, refreshable=token.refreshable
        )
        if state in (_schedule.Freshness.FRESH, _schedule.Freshness.NON_EXPIRING):
            flight = slot.flight
            if flight is not None and flight.replacing is not None and flight.replacing == token:
                # A forced refresh is rotating this very token: wait for its successor.
                return await self._rotator.refresh(slot, reason="forced")
            if not loads:
                await trio.lowlevel.checkpoint()
            return token
        if state is _schedule.Freshness.DEAD:
            self._mark_dead(slot, "refresh token expired")
            raise ReauthorizationRequired(f"refresh token of {key} has expired", key=key)
        if (
            state is _schedule.Freshness.STALE
            and now < slot.retry_at
            and slot.last_error is not None
            and slot.flight is None
        ):
            # Its last refresh failed moments ago: honour the backoff (and
            # Shopify's Retry-After) instead of asking again on every call.
            if self._policy.stale_while_error:
                return self._serve_stale(slot, token, slot.last_error)
            raise copy_error(slot.last_error)
        if state is _schedule.Freshness.EXPIRED or not self._policy.stale_while_error:
            return await self._rotator.refresh(slot, reason=state.value)
        try:
            return await self._rotator.refresh(slot, reason=state.value)
        except (RefreshFailed, LockTimeout, PersistenceError) as exc:
            if _usable(token, self._clock(), self._policy):
                return self._serve_stale(slot, token, exc)
            raise

    def _serve_stale(self, slot: Slot, token: Token, error: Exception) -> Token:
        self._counters.stale_served += 1
        self._emit(EventKind.STALE_SERVED, slot, error=describe(error))
        return token

    # -- the rest of the public API -------------------------------------------

    async def put_token(self, key: TokenKey, token: Token) -> None:
        """Save ``token`` for ``key`` and start keeping it fresh (install or re-auth).

        Clears a re-authorization-required state. Counts as use of the key.

        Raises:
            PersistenceError: The store failed; nothing changed, the caller
                still holds the token and may retry.
            TypeError: ``token`` is not a `Token`.
        """
        if not isinstance(token, Token):
            msg = f"put_token takes a Token, not {type(token).__name__}"
            raise TypeError(msg)
        self._check_open()
        while True:
            slot = self._slot_for(key)
            async with slot.locked():
                if self._slots.get(key) is not slot:
                    continue
                await self._persist(key, token, functools.partial(self._callback.save_tokens, key))
                slot.loaded, slot.dead, slot.unsaved, slot.load_error = True, False, None, None
                self._install(slot, token)
                slot.used = self._clock()
            self._supervisor.start(slot)
            return

    async def fetch_token(self, key: TokenKey) -> Token:
        """Return the token held for ``key`` as is, without refreshing it.

        Raises:
            NoToken: Nothing is stored for ``key``.
            PersistenceError: The store failed to load it.
        """
        slot = await self._activate(key, use=False)
        await trio.lowlevel.checkpoint()
        assert slot.token is not None  # noqa: S101 - _activate guarantees a token
        return slot.token

    async def refresh_token(self, key: TokenKey) -> Token:
        """Refresh ``key`` now (single-flight) and return the new token.

        The decision is re-taken under the lock after re-reading the store:
        if another task, process or node replaced the token since this call
        began, that token is returned instead of refreshing twice.

        Raises:
            NoToken: Nothing is stored for ``key``.
            ReauthorizationRequired: The token cannot be refreshed.
            RefreshFailed: The refresh endpoint failed.
        """
        return await self._replace(key, None, reason="forced")

    async def _replace(self, key: TokenKey, bad: Token | None, *, reason: str) -> Token:
        """Refresh unless the key's token is no longer ``bad`` (default: the current one)."""
        slot = await self._activate(key, use=True)
        token = self._token_or_raise(slot)
        return await self._rotator.refresh(slot, reason=reason, replacing=bad or token)

    async def forget(self, key: TokenKey) -> None:
        """Stop refreshing ``key`` and delete its stored pair (app uninstalled).

        The store's ``delete_tokens`` is called when it has one; otherwise the
        key is only dropped from memory.

        Raises:
            PersistenceError: The store failed to delete; nothing changed.
        """
        self._check_open()
        slot = self._slots.get(key)
        async with slot.locked() if slot is not None else nullcontext():
            delete = getattr(self._callback, "delete_tokens", None)
            if delete is not None:
                try:
                    await delete(key)
                except Exception as exc:
                    held = secrets_of(slot.token if slot is not None else None)
                    raise PersistenceError(
                        f"delete_tokens failed for {key}: {describe(exc, held)}",
                        key=key,
                    ) from exc
            self._parked.pop(key, None)
            if slot is not None and self._slots.get(key) is slot:
                del self._slots[key]
                self._retire(slot)

    def statistics(self) -> TokenManagerStatistics:
        """Return a frozen snapshot of keys and counters."""
        c = self._counters
        slots = self._slots.values()
        return TokenManagerStatistics(
            keys_known=len(self._slots) + len(self._parked),
            keys_active=sum(1 for s in slots if s.running),
            keys_parked=len(self._parked),
            keys_reauthorization_required=sum(1 for s in slots if s.dead),
            refreshes_in_flight=sum(1 for s in slots if s.flight is not None),
            refreshes_succeeded=c.refreshes_succeeded,
            refreshes_failed=c.refreshes_failed,
            refreshes_adopted=c.refreshes_adopted,
            refreshes_deferred=c.refreshes_deferred,
            saves_failed=c.saves_failed,
            saves_pending=sum(1 for s in slots if s.unsaved is not None),
            loads_failed=c.loads_failed,
            stale_served=c.stale_served,
            refresher_crashes=c.refresher_crashes,
        )

    def auth(self, key: TokenKey) -> httpx.Auth:
        """Return an `httpx.Auth` that authenticates requests for ``key``.

        It sets ``X-Shopify-Access-Token`` from `valid_token`; on a 401 it
        forces one refresh (unless the token was already replaced) and
        retries the request once.
        """
        from ._auth import ManagerAuth  # noqa: PLC0415 - keeps httpx off the import path of the core

        return ManagerAuth(self, key)

    # -- loading ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            msg = "this TokenManager is closed (its open_token_manager block has ended)"
            raise RuntimeError(msg)

    def _slot_for(self, key: TokenKey) -> Slot:
        slot = self._slots.get(key)
        if slot is None:
            self._check_open()
            if not isinstance(key, TokenKey):
                msg = f"expected a TokenKey, not {type(key).__name__}"
                raise TypeError(msg)
            slot = self._slots[key] = Slot(key)
            self._parked.pop(key, None)
        return slot

    async def _activate(self, key: TokenKey, *, use: bool) -> Slot:
        """Return the key's loaded slot, loading it once (single flight)."""
        while True:
            slot = self._slot_for(key)
            if not slot.loaded:
                loading = slot.loading
                if loading is not None:
                    if loading is True:
                        # The Event exists only once a second caller waits.
                        slot.loading = loading = trio.Event()
                    await loading.wait()
                    if slot.load_error is not None:
                        # We waited on a failed load: share its outcome.
                        raise copy_error(slot.load_error)
                    continue  # loaded now, or its loader was cancelled: look again
                # The first caller loads; later ones wait on the Event. Not the
                # slot's Lock: acquiring a trio.Lock, even a free one, costs a
                # scheduler pass, and a fleet's first uses pay it 100,000 times.
                slot.loading = True
                try:
                    await self._load_into(slot)
                finally:
                    waiters, slot.loading = slot.loading, None
                    if isinstance(waiters, trio.Event):
                        waiters.set()
            else:
                # No checkpoint here: every caller reaches one soon after (the
                # wait for a refresh, or _valid_token_slow's own), and a herd
                # of callers must not take an extra scheduler pass to join.
                self._check_open()
            if use:
                self._supervisor.start(slot)
            return slot

    async def _load_into(self, slot: Slot) -> None:
        key = slot.key
        try:
            token = await self._callback.load_tokens(key)
        except Exception as exc:
            self._counters.loads_failed += 1
            error = PersistenceError(f"load_tokens failed for {key}: {describe(exc)}", key=key)
            error.__cause__ = exc
            self._drop(slot, error)
            raise error from exc
        if token is None:
            self._drop(slot, NoToken(f"no token stored for {key}", key=key))
            raise NoToken(f"no token stored for {key}", key=key)
        if not isinstance(token, Token):
            error = PersistenceError(
                f"load_tokens returned {type(token).__name__}, not Token, for {key}", key=key
            )
            self._drop(slot, error)
            raise error
        if slot.loaded:
            return  # put_token installed a newer token while we were reading
        slot.loaded = True
        self._install(slot, token)

    def _drop(self, slot: Slot, error: Exception) -> None:
        """Forget an unloaded slot; callers queued on it get ``error``; the next use retries."""
        slot.load_error = error
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]

    async def _load(self, key: TokenKey) -> Token | None:
        """Re-read a key's stored token (before a refresh), checked as a first load is.

        Bounded by ``store_timeout``: a refresh must not wait forever on a store.
        """
        try:
            with store_deadline("load_tokens", key, self._policy.store_timeout):
                token = await self._callback.load_tokens(key)
        except PersistenceError:
            self._counters.loads_failed += 1
            raise
        except Exception as exc:
            self._counters.loads_failed += 1
            raise PersistenceError(
                f"load_tokens failed for {key}: {describe(exc)}", key=key
            ) from exc
        if token is not None and not isinstance(token, Token):
            self._counters.loads_failed += 1
            msg = f"load_tokens returned {type(token).__name__}, not Token, for {key}"
            raise PersistenceError(msg, key=key)
        return token

    async def _persist(self, key: TokenKey, token: Token, save: Save) -> None:
        try:
            await save(token)
        except Exception as exc:
            self._counters.saves_failed += 1
            raise PersistenceError(
                f"saving tokens failed for {key}: {describe(exc, secrets_of(token))}", key=key
            ) from exc

    # -- state changes -----------------------------------------------------------

    def _install(self, slot: Slot, token: Token, *, obtained_at: float | None = None) -> None:
        """Make ``token`` the slot's current token and reschedule its refresher."""
        slot.token = token
        # Epoch floats, computed once per token: the slow path compares these
        # instead of doing datetime arithmetic per call.
        stale_at, slot.hard_at, slot.dead_at = _schedule.times(
            token, slot.key, self._policy, obtained_at=obtained_at
        )
        spread = self._policy.node_spread
        if spread and stale_at < slot.hard_at:
            # This node's own delay: nodes sharing a store do not all wake at once.
            stale_at += min(self._rng.random() * spread, (slot.hard_at - stale_at) / 2)
        slot.stale_at = stale_at
        slot.deferrals = slot.failures = 0
        slot.last_error, slot.retry_at = None, -math.inf
        slot.fresh_until = -math.inf if slot.dead else min(slot.stale_at, slot.hard_at)
        wake(slot)

    def _register_critical(self, scope: trio.CancelScope) -> None:
        """Track a shielded refresh-or-save scope, bounded once the manager closes."""
        scope.deadline = min(scope.deadline, self._shutdown_deadline)
        self._critical_scopes.add(scope)

    def _reset_fresh_until(self, slot: Slot) -> None:
        """Let the hot path serve the slot's token again (after a forced refresh failed)."""
        if not slot.dead and not self._closed and slot.token is not None:
            slot.fresh_until = min(slot.stale_at, slot.hard_at)

    def _token_or_raise(self, slot: Slot) -> Token:
        if slot.dead:
            raise ReauthorizationRequired(
                f"{slot.key} needs re-authorization (put_token installs a new token)", key=slot.key
            )
        assert slot.token is not None  # noqa: S101 - loaded slots always hold a token
        return slot.token

    def _mark_dead(self, slot: Slot, why: str) -> None:
        if not slot.dead:
            slot.dead = True
            slot.fresh_until = -math.inf
            self._emit(EventKind.REAUTHORIZATION_REQUIRED, slot, error=why)
        wake(slot)

    def _retire(self, slot: Slot) -> None:
        """Stop everything running for a slot that left ``_slots``."""
        slot.fresh_until = -math.inf
        wake(slot)  # its refresher wakes, sees the slot gone, and ends

    def _emit(self, kind: EventKind, slot: Slot, **fields: Any) -> None:
        self._emitter.emit(TokenEvent(kind=kind, key=slot.key, **fields))

    # -- parking and shutdown ----------------------------------------------------------

    def park(self, slot: Slot) -> bool:
        """Drop an idle slot from memory, remembering when its refresh token expires."""
        if slot.busy() or self._slots.get(slot.key) is not slot:
            return False
        del self._slots[slot.key]
        slot.fresh_until = -math.inf
        token = slot.token
        rte = token.refresh_token_expires_at if token is not None else None
        self._parked[slot.key] = math.inf if rte is None else rte.timestamp()
        self._emit(EventKind.KEY_PARKED, slot)
        return True

    def _close(self) -> None:
        self._closed = True
        # Remembered: a save retry scheduled just before now registers later.
        self._shutdown_deadline = deadline = trio.current_time() + self._policy.shutdown_grace
        for scope in self._critical_scopes:
            scope.deadline = min(scope.deadline, deadline)
        self._background.cancel_scope.cancel()
        for slot in self._slots.values():
            slot.fresh_until = -math.inf  # the hot path now falls through to _check_open


def _usable(token: Token, now: float, policy: RefreshPolicy) -> bool:
    return token.expires_at is None or now < token.expires_at.timestamp() - policy.skew


@asynccontextmanager
async def open_token_manager(
    refresher: Refresher | Mapping[TokenKind, Refresher],
    callback: TokenCallback,
    *,
    policy: RefreshPolicy | None = None,
    clock: Callable[[], float] = time.time,
    hooks: Iterable[EventHook] = (),
) -> AsyncIterator[TokenManager]:
    """Run a `TokenManager` for the duration of the ``async with`` block.

    The manager owns a nursery: one refresher task per active key and a
    sweeper. Leaving the block lets refreshes and saves in flight finish
    (up to ``policy.shutdown_grace`` seconds), then cancels the rest. An
    exception raised in the block reaches the caller as is, never wrapped
    in an exception group.

    Args:
        refresher: The OAuth client, e.g. `ShopifyOAuth`; or a mapping from
            `TokenKind` to clients, to serve several kinds from one manager
            (``{TokenKind.OFFLINE: shopify, TokenKind.CUSTOMER: customers}``).
        callback: Where tokens are persisted (`TokenCallback`).
        policy: Refresh timing; `RefreshPolicy()` by default.
        clock: Wall clock in epoch seconds; tokens are dated with it.
        hooks: Functions called with every `TokenEvent`.

    Raises:
        TypeError: ``refresher`` or ``callback`` lacks the methods it needs.
    """
    # Checked before the nursery opens, so a misuse error is not wrapped.
    routed = as_refresher(refresher)
    if not isinstance(callback, TokenCallback):
        msg = f"{type(callback).__name__} is not a TokenCallback (load_tokens/save_tokens)"
        raise TypeError(msg)
    body_error: BaseException | None = None
    async with trio.open_nursery() as critical, trio.open_nursery() as background:
        manager = TokenManager(
            routed,
            callback,
            policy or RefreshPolicy(),
            clock,
            Emitter(list(hooks)),
            critical,
            background,
        )
        background.start_soon(manager._supervisor.sweep)
        background.start_soon(manager._supervisor.run_alarms)
        try:
            yield manager
        except BaseException as exc:  # noqa: BLE001 - re-raised below, unwrapped
            body_error = exc
        finally:
            manager._close()
    if body_error is not None:
        raise body_error
