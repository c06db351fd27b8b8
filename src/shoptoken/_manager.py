"""TokenManager: serves valid tokens, refreshes them single-flight, persists first."""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from . import _schedule
from ._errors import (
    LockTimeout,
    NoToken,
    PersistenceError,
    ReauthorizationRequired,
    RefreshFailed,
    ShopTokenError,
)
from ._events import Emitter, EventHook, EventKind, TokenEvent, describe
from ._keys import TokenKey
from ._policy import RefreshPolicy
from ._slot import Counters, Flight, Slot, TokenManagerStatistics
from ._supervisor import Supervisor
from ._token import Token

if TYPE_CHECKING:
    import httpx

    from ._callback import TokenCallback
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
    _rng: random.Random = attrs.field(factory=random.Random, init=False)
    _supervisor: Supervisor = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._limiter = trio.CapacityLimiter(self._policy.max_concurrent_refreshes)
        self._supervisor = Supervisor(self)

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
        return await self._valid_token_slow(key)

    async def _valid_token_slow(self, key: TokenKey) -> Token:
        slot = await self._activate(key, use=True)
        now = self._clock()
        slot.used = now
        token = self._token_or_raise(slot)
        state = _schedule.classify(token, now, slot.stale_at, self._policy)
        if state in (_schedule.Freshness.FRESH, _schedule.Freshness.NON_EXPIRING):
            return token
        if state is _schedule.Freshness.DEAD:
            self._mark_dead(slot, "refresh token expired")
            raise ReauthorizationRequired(f"refresh token of {key} has expired", key=key)
        if state is _schedule.Freshness.EXPIRED or not self._policy.stale_while_error:
            return await self._refresh(slot, reason=state.value)
        try:
            return await self._refresh(slot, reason=state.value)
        except (RefreshFailed, LockTimeout, PersistenceError) as exc:
            if _usable(token, self._clock(), self._policy):
                self._counters.stale_served += 1
                self._emit(EventKind.STALE_SERVED, slot, error=describe(exc))
                return token
            raise

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
            async with slot.lock:
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
        return await self._refresh(slot, reason=reason, replacing=bad or token)

    async def forget(self, key: TokenKey) -> None:
        """Stop refreshing ``key`` and delete its stored pair (app uninstalled).

        The store's ``delete_tokens`` is called when it has one; otherwise the
        key is only dropped from memory.

        Raises:
            PersistenceError: The store failed to delete; nothing changed.
        """
        self._check_open()
        slot = self._slots.get(key)
        lock = slot.lock if slot is not None else trio.Lock()
        async with lock:
            delete = getattr(self._callback, "delete_tokens", None)
            if delete is not None:
                try:
                    await delete(key)
                except Exception as exc:
                    raise PersistenceError(
                        f"delete_tokens failed for {key}: {describe(exc, _secrets(slot))}",
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
            keys_active=sum(1 for s in slots if s.task is not None),
            keys_parked=len(self._parked),
            keys_reauthorization_required=sum(1 for s in slots if s.dead),
            refreshes_in_flight=sum(1 for s in slots if s.flight is not None),
            refreshes_succeeded=c.refreshes_succeeded,
            refreshes_failed=c.refreshes_failed,
            refreshes_adopted=c.refreshes_adopted,
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
        """Return the key's loaded slot, loading it once under its lock."""
        while True:
            slot = self._slot_for(key)
            if not slot.loaded:
                async with slot.lock:
                    if slot.load_error is not None:
                        # We queued behind a failed load: share its outcome.
                        raise copy_error(slot.load_error)
                    if self._slots.get(key) is not slot:
                        continue
                    if not slot.loaded:
                        await self._load_into(slot)
            else:
                self._check_open()
                await trio.lowlevel.checkpoint()
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
        slot.loaded = True
        self._install(slot, token)

    def _drop(self, slot: Slot, error: Exception) -> None:
        """Forget an unloaded slot; callers queued on it get ``error``; the next use retries."""
        slot.load_error = error
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]

    async def _load(self, key: TokenKey) -> Token | None:
        try:
            return await self._callback.load_tokens(key)
        except Exception as exc:
            self._counters.loads_failed += 1
            raise PersistenceError(
                f"load_tokens failed for {key}: {describe(exc)}", key=key
            ) from exc

    async def _persist(self, key: TokenKey, token: Token, save: Save) -> None:
        try:
            await save(token)
        except Exception as exc:
            self._counters.saves_failed += 1
            raise PersistenceError(
                f"saving tokens failed for {key}: {describe(exc, _secrets_of(token))}", key=key
            ) from exc

    # -- state changes -----------------------------------------------------------

    def _install(self, slot: Slot, token: Token, *, obtained_at: float | None = None) -> None:
        """Make ``token`` the slot's current token and reschedule its refresher."""
        slot.token = token
        slot.stale_at = _schedule.refresh_at(token, slot.key, self._policy, obtained_at=obtained_at)
        hard = (
            math.inf
            if token.expires_at is None
            else token.expires_at.timestamp() - self._policy.skew
        )
        slot.fresh_until = -math.inf if slot.dead else min(slot.stale_at, hard)
        if slot.wake is not None:
            slot.wake.cancel()

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
        if slot.wake is not None:
            slot.wake.cancel()

    def _retire(self, slot: Slot) -> None:
        """Stop everything running for a slot that left ``_slots``."""
        slot.fresh_until = -math.inf
        if slot.task is not None:
            slot.task.cancel()

    def _emit(self, kind: EventKind, slot: Slot, **fields: Any) -> None:
        self._emitter.emit(TokenEvent(kind=kind, key=slot.key, **fields))

    # -- refreshing -------------------------------------------------------------

    async def _refresh(self, slot: Slot, *, reason: str, replacing: Token | None = None) -> Token:
        """Join the key's refresh in flight, or start one in the manager's nursery."""
        for _ in range(2):
            flight = slot.flight
            if flight is None:
                self._check_open()
                flight = slot.flight = Flight()
                self._critical.start_soon(self._fly, slot, flight, reason, replacing)
            token = await flight.outcome()
            # A joined refresh may have been decided before our token went bad;
            # if it handed back the very token we must replace, go once more.
            if replacing is None or token.access_token != replacing.access_token:
                return token
        return token

    async def _fly(self, slot: Slot, flight: Flight, reason: str, replacing: Token | None) -> None:
        # Shielded: neither a cancelled caller nor the manager's exit may cut a
        # rotation Shopify has performed. _close() bounds it with a deadline.
        with trio.CancelScope(shield=True) as scope:
            self._critical_scopes.add(scope)
            try:
                flight.token = await self._refresh_locked(slot, reason, replacing)
            except ShopTokenError as exc:
                flight.error = exc
            except Exception as exc:  # noqa: BLE001 - a bug must reach callers as a refresh failure, not kill the nursery
                error = RefreshFailed(
                    f"refresh of {slot.key} failed unexpectedly: {describe(exc, _secrets(slot))}",
                    key=slot.key,
                )
                error.__cause__ = exc
                flight.error = error
            finally:
                self._critical_scopes.discard(scope)
                if flight.token is None and flight.error is None:
                    flight.error = RefreshFailed(
                        f"refresh of {slot.key} was cut short by the manager's exit", key=slot.key
                    )
                if slot.flight is flight:
                    slot.flight = None
                flight.done.set()

    async def _refresh_locked(self, slot: Slot, reason: str, replacing: Token | None) -> Token:
        key = slot.key
        async with self._limiter, slot.lock:
            if self._slots.get(key) is not slot:
                raise NoToken(f"{key} was forgotten", key=key)
            self._token_or_raise(slot)
            if slot.unsaved is not None:
                await self._save_pending(slot)
            locked = getattr(self._callback, "locked", None)
            if locked is None:
                stored = await self._load(key)
                save = functools.partial(self._callback.save_tokens, key)
                return await self._decide(slot, stored, save, reason, replacing)
            handle_cm = locked(key, timeout=self._policy.lock_timeout)
            try:
                handle = await handle_cm.__aenter__()
            except ShopTokenError:
                raise
            except Exception as exc:
                raise PersistenceError(f"locking {key} failed: {describe(exc)}", key=key) from exc
            refreshed: list[Token] = []
            try:
                token = await self._decide(
                    slot, handle.token, handle.save, reason, replacing, refreshed=refreshed
                )
            except BaseException as exc:
                await _aexit(handle_cm, exc)
                raise
            try:
                await _aexit(handle_cm, None)
            except Exception as exc:  # noqa: BLE001 - a failed commit is a failed save
                if refreshed and slot.unsaved is None:
                    self._save_failed(slot, refreshed[0], exc)
            return token

    async def _decide(
        self,
        slot: Slot,
        stored: Token | None,
        save: Save,
        reason: str,
        replacing: Token | None,
        *,
        refreshed: list[Token] | None = None,
    ) -> Token:
        """Re-take the refresh decision on the re-read token, then refresh and save."""
        key = slot.key
        if slot.unsaved is not None:
            base = slot.unsaved  # memory is newer than the store until the save lands
        elif stored is None:
            del self._slots[key]
            self._retire(slot)
            raise NoToken(f"{key} is no longer stored (deleted elsewhere)", key=key)
        else:
            base = stored
        now = self._clock()
        state = _schedule.classify(
            base, now, _schedule.refresh_at(base, key, self._policy), self._policy
        )
        forced = replacing is not None and base.access_token == replacing.access_token
        if state is _schedule.Freshness.DEAD and not base.refreshable:
            self._mark_dead(slot, "token expired and has no refresh token")
            raise ReauthorizationRequired(f"{key} expired and cannot be refreshed", key=key)
        if not forced and state in (_schedule.Freshness.FRESH, _schedule.Freshness.NON_EXPIRING):
            if base != slot.token:
                self._install(slot, base)
                self._counters.refreshes_adopted += 1
                self._emit(
                    EventKind.REFRESH_ADOPTED, slot, expires_at=base.expires_at, reason=reason
                )
            return base
        return await self._rotate(slot, base, save, reason, refreshed=refreshed)

    async def _rotate(
        self, slot: Slot, base: Token, save: Save, reason: str, *, refreshed: list[Token] | None
    ) -> Token:
        self._emit(EventKind.REFRESH_STARTED, slot, reason=reason)
        started = trio.current_time()
        obtained_at = self._clock()
        try:
            new = await self._refresher.refresh(slot.key, base, clock=self._clock)
        except ReauthorizationRequired as exc:
            self._counters.refreshes_failed += 1
            self._mark_dead(slot, describe(exc, _secrets_of(base)))
            raise
        except Exception as exc:
            self._counters.refreshes_failed += 1
            self._emit(
                EventKind.REFRESH_FAILED,
                slot,
                error=describe(exc, _secrets_of(base)),
                reason=reason,
            )
            if isinstance(exc, RefreshFailed):
                raise
            raise RefreshFailed(
                f"refresher raised unexpectedly for {slot.key}: {describe(exc, _secrets_of(base))}",
                key=slot.key,
            ) from exc
        if refreshed is not None:
            refreshed.append(new)
        self._counters.refreshes_succeeded += 1
        try:
            await save(new)
        except Exception as exc:  # noqa: BLE001 - any store failure: keep the pair, retry the save
            self._save_failed(slot, new, exc)
        else:
            slot.unsaved = None
        self._install(slot, new, obtained_at=obtained_at)
        slot.crashes = 0
        self._emit(
            EventKind.REFRESH_SUCCEEDED,
            slot,
            expires_at=new.expires_at,
            duration=trio.current_time() - started,
            reason=reason,
        )
        return new

    # -- saves that failed ----------------------------------------------------------

    def _save_failed(self, slot: Slot, token: Token, exc: Exception) -> None:
        """Keep a rotated pair that could not be saved, serve it, and retry the save."""
        self._counters.saves_failed += 1
        slot.unsaved = token
        self._emit(
            EventKind.PERSISTENCE_FAILED, slot, error=describe(exc, _secrets_of(token)), attempt=1
        )
        if not slot.saving and not self._closed:
            slot.saving = True
            self._critical.start_soon(self._save_retries, slot)

    async def _save_pending(self, slot: Slot) -> bool:
        """Try once to save the slot's unsaved pair (caller holds the slot lock)."""
        token = slot.unsaved
        assert token is not None  # noqa: S101 - only called with a pending pair
        try:
            await self._callback.save_tokens(slot.key, token)
        except Exception as exc:  # noqa: BLE001 - reported, retried later
            self._counters.saves_failed += 1
            self._emit(EventKind.PERSISTENCE_FAILED, slot, error=describe(exc, _secrets_of(token)))
            return False
        if slot.unsaved is token:
            slot.unsaved = None
        self._emit(EventKind.PERSISTENCE_RECOVERED, slot)
        return True

    async def _save_retries(self, slot: Slot) -> None:
        with trio.CancelScope(shield=True) as scope:
            self._critical_scopes.add(scope)
            try:
                attempt = 0
                while slot.unsaved is not None:
                    attempt += 1
                    await trio.sleep(
                        _schedule.backoff(attempt, self._policy, rand=self._rng.random())
                    )
                    async with slot.lock:
                        if slot.unsaved is not None:
                            await self._save_pending(slot)
            finally:
                self._critical_scopes.discard(scope)
                slot.saving = False

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
        deadline = trio.current_time() + self._policy.shutdown_grace
        for scope in self._critical_scopes:
            scope.deadline = min(scope.deadline, deadline)
        self._background.cancel_scope.cancel()
        for slot in self._slots.values():
            slot.fresh_until = -math.inf  # the hot path now falls through to _check_open


def _usable(token: Token, now: float, policy: RefreshPolicy) -> bool:
    return token.expires_at is None or now < token.expires_at.timestamp() - policy.skew


def _secrets_of(token: Token | None) -> tuple[str | None, ...]:
    return () if token is None else (token.access_token, token.refresh_token)


def _secrets(slot: Slot | None) -> tuple[str | None, ...]:
    if slot is None:
        return ()
    return _secrets_of(slot.token) + _secrets_of(slot.unsaved)


def copy_error(error: Exception) -> Exception:
    """Return a copy of ``error`` chained to it, for one more caller to raise."""
    import copy  # noqa: PLC0415 - only on error paths

    clone = copy.copy(error).with_traceback(None)
    clone.__cause__ = error
    return clone


async def _aexit(cm: Any, exc: BaseException | None) -> None:
    if exc is None:
        await cm.__aexit__(None, None, None)
    else:
        await cm.__aexit__(type(exc), exc, exc.__traceback__)


@asynccontextmanager
async def open_token_manager(
    refresher: Refresher,
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
        refresher: The OAuth client, e.g. `ShopifyOAuth`.
        callback: Where tokens are persisted (`TokenCallback`).
        policy: Refresh timing; `RefreshPolicy()` by default.
        clock: Wall clock in epoch seconds; tokens are dated with it.
        hooks: Functions called with every `TokenEvent`.
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as critical, trio.open_nursery() as background:
        manager = TokenManager(
            refresher,
            callback,
            policy or RefreshPolicy(),
            clock,
            Emitter(list(hooks)),
            critical,
            background,
        )
        background.start_soon(manager._supervisor.sweep)
        try:
            yield manager
        except BaseException as exc:  # noqa: BLE001 - re-raised below, unwrapped
            body_error = exc
        finally:
            manager._close()
    if body_error is not None:
        raise body_error
