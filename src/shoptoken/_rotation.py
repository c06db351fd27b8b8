"""Rotator: single-flight refresh, persist-before-use, and saves retried until they land.

One refresh per key runs at a time, in the manager's nursery and shielded
from its callers' cancellation. Under the key's lock (and the store's
cross-process lock when it has one) the decision is re-taken on the re-read
token; only then is Shopify asked, and the new pair is saved before anyone
receives it. A pair that cannot be saved is kept in memory, served, and
saved again with backoff until it lands.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
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
from ._events import EventKind, describe
from ._slot import Flight, Slot

if TYPE_CHECKING:
    from ._callback import LockedToken
    from ._keys import TokenKey
    from ._manager import TokenManager
    from ._token import Token

Save = Callable[["Token"], Awaitable[None]]


@attrs.define(eq=False)
class Rotator:
    """Runs the refreshes and the pending saves of one `TokenManager`."""

    _manager: TokenManager

    async def refresh(self, slot: Slot, *, reason: str, replacing: Token | None = None) -> Token:
        """Join the key's refresh in flight, or start one in the manager's nursery."""
        for _ in range(2):
            flight = slot.flight
            if flight is None:
                self._manager._check_open()
                flight = slot.flight = Flight(replacing=replacing)
                if replacing is not None and replacing == slot.token:
                    # The rotation revokes this token: stop serving it now.
                    slot.fresh_until = -math.inf
                self._manager._critical.start_soon(self._fly, slot, flight, reason, replacing)
            await flight.done.wait()
            token = flight.result()
            # A joined refresh may have been decided before our token went bad;
            # if it handed back the very token we must replace, go once more.
            if replacing is None or token.access_token != replacing.access_token:
                return token
        return token

    async def _fly(self, slot: Slot, flight: Flight, reason: str, replacing: Token | None) -> None:
        # Shielded: neither a cancelled caller nor the manager's exit may cut a
        # rotation Shopify has performed. _close() bounds it with a deadline.
        with trio.CancelScope(shield=True) as scope:
            self._manager._register_critical(scope)
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
                self._manager._critical_scopes.discard(scope)
                if flight.token is None and flight.error is None:
                    flight.error = RefreshFailed(
                        f"refresh of {slot.key} was cut short by the manager's exit", key=slot.key
                    )
                    # Shopify may have rotated already: the store may now lag it.
                    self._manager._emit(
                        EventKind.REFRESH_FAILED,
                        slot,
                        error=describe(flight.error),
                        reason="cut at shutdown_grace",
                    )
                if slot.flight is flight:
                    slot.flight = None
                if flight.error is not None:
                    self._note_failure(slot, flight.error)
                    if slot.fresh_until == -math.inf:
                        self._manager._reset_fresh_until(slot)
                else:  # a new pair, an adopted one, or a deferral: no failure streak
                    slot.failures, slot.last_error, slot.retry_at = 0, None, -math.inf
                flight.done.set()

    def _note_failure(self, slot: Slot, error: Exception) -> None:
        """Remember a failed refresh and when the key may be tried again (backoff, Retry-After).

        The refresher task sleeps until then; callers of a still-valid stale
        token get this failure (or, with ``stale_while_error``, the token)
        without a new request until then.
        """
        if isinstance(error, ReauthorizationRequired | NoToken):
            return
        manager = self._manager
        slot.failures += 1
        delay = _schedule.backoff(
            slot.failures,
            manager._policy,
            rand=manager._rng.random(),
            retry_after=getattr(error, "retry_after", None),
        )
        slot.last_error = error
        slot.retry_at = manager._clock() + delay

    async def _refresh_locked(self, slot: Slot, reason: str, replacing: Token | None) -> Token:
        key = slot.key
        async with self._manager._limiter, slot.locked():
            if self._manager._slots.get(key) is not slot:
                raise NoToken(f"{key} was forgotten", key=key)
            self._manager._token_or_raise(slot)
            if slot.unsaved is not None:
                await self.save_pending(slot)
            locked = getattr(self._manager._callback, "locked", None)
            if locked is None:
                try:
                    stored = await self._manager._load(key)
                except PersistenceError as exc:
                    self._store_stopped(slot, exc, reason)
                    raise
                save = functools.partial(self._manager._callback.save_tokens, key)
                return await self._decide(slot, stored, save, reason, replacing)
            urgent = replacing is not None or not self._still_valid(slot)
            if not urgent:
                # Another process or node may have rotated already (or be
                # rotating, if we left it the lock last time): a plain read
                # finds its pair without queueing for the lock.
                adopted = await self._adopt_stored(slot, reason)
                if adopted is not None:
                    return adopted
            entered = await self._enter_store_lock(slot, locked, reason, urgent=urgent)
            if entered is None:
                return self._defer(slot, reason)
            handle_cm, handle = entered
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
                    self.save_failed(slot, refreshed[0], exc)
            return token

    def _still_valid(self, slot: Slot) -> bool:
        """Whether the slot's own token may still be served (so a refresh can wait)."""
        now = self._manager._clock()
        return slot.unsaved is None and not slot.dead and now < min(slot.hard_at, slot.dead_at)

    async def _enter_store_lock(
        self, slot: Slot, locked: Callable[..., Any], reason: str, *, urgent: bool
    ) -> tuple[Any, LockedToken] | None:
        """Enter the store's lock; None if a refresh that is not urgent leaves it to its holder.

        An urgent refresh (the token is hard-expired or being replaced) waits
        up to ``lock_timeout``; any other waits ``stale_lock_timeout``: the
        holder is most likely another node rotating this very key, and
        queueing behind it would only hold a pooled connection.
        """
        policy = self._manager._policy
        key = slot.key
        while True:
            timeout = policy.lock_timeout if urgent else policy.stale_lock_timeout
            handle_cm = locked(key, timeout=timeout)
            try:
                return handle_cm, await handle_cm.__aenter__()
            except LockTimeout as exc:
                if not urgent:
                    if self._still_valid(slot):
                        return None
                    urgent = True  # the token expired while we waited: now we queue
                    continue
                self._store_stopped(slot, exc, reason)
                raise
            except ShopTokenError as exc:
                self._store_stopped(slot, exc, reason)
                raise
            except Exception as exc:
                error = PersistenceError(f"locking {key} failed: {describe(exc)}", key=key)
                self._store_stopped(slot, error, reason)
                raise error from exc

    async def _adopt_stored(self, slot: Slot, reason: str) -> Token | None:
        """Read the store without its lock; adopt a fresh pair another holder saved.

        Only a shortcut: when the read fails or finds nothing new, the
        refresh goes on under the lock, which re-reads (and reports).
        """
        manager = self._manager
        try:
            stored = await manager._load(slot.key)
        except PersistenceError:
            return None  # counted in loads_failed; the locked re-read decides (and reports)
        if stored is None or stored == slot.token:
            return None
        state = _schedule.freshness(stored, slot.key, manager._clock(), manager._policy)
        if state is not _schedule.Freshness.FRESH:
            return None
        self._adopt(slot, stored, reason)
        return stored

    def _adopt(self, slot: Slot, token: Token, reason: str) -> None:
        """Take a pair another task, process or node stored (no request of ours)."""
        manager = self._manager
        manager._install(slot, token)
        manager._counters.refreshes_adopted += 1
        manager._emit(EventKind.REFRESH_ADOPTED, slot, expires_at=token.expires_at, reason=reason)

    def _defer(self, slot: Slot, reason: str) -> Token:
        """Serve the still-valid token and look again after a backoff (never past hard expiry)."""
        manager = self._manager
        slot.deferrals += 1
        now = manager._clock()
        delay = _schedule.backoff(slot.deferrals, manager._policy, rand=manager._rng.random())
        delay = min(delay, slot.hard_at - now)
        slot.stale_at = now + delay
        manager._reset_fresh_until(slot)
        manager._counters.refreshes_deferred += 1
        manager._emit(
            EventKind.REFRESH_DEFERRED, slot, reason=reason, retry_in=delay, attempt=slot.deferrals
        )
        assert slot.token is not None  # noqa: S101 - _still_valid held
        return slot.token

    def _store_stopped(self, slot: Slot, exc: ShopTokenError, reason: str) -> None:
        """Report a refresh the store stopped before Shopify was asked (re-read or lock).

        As ``refresh.failed``: ``persistence.failed`` means a rotated pair's
        save failed (a pair held only in memory), which this is not.
        """
        self._manager._emit(
            EventKind.REFRESH_FAILED, slot, error=describe(exc, _secrets(slot)), reason=reason
        )

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
            del self._manager._slots[key]
            self._manager._retire(slot)
            raise NoToken(f"{key} is no longer stored (deleted elsewhere)", key=key)
        else:
            base = stored
        now = self._manager._clock()
        state = _schedule.freshness(base, key, now, self._manager._policy)
        forced = replacing is not None and base.access_token == replacing.access_token
        if state is _schedule.Freshness.DEAD and not base.refreshable:
            self._manager._mark_dead(slot, "token expired and has no refresh token")
            raise ReauthorizationRequired(f"{key} expired and cannot be refreshed", key=key)
        if not forced and state in (_schedule.Freshness.FRESH, _schedule.Freshness.NON_EXPIRING):
            if base != slot.token:
                self._adopt(slot, base, reason)
            return base
        return await self._rotate(slot, base, save, reason, refreshed=refreshed)

    async def _rotate(
        self, slot: Slot, base: Token, save: Save, reason: str, *, refreshed: list[Token] | None
    ) -> Token:
        self._manager._emit(EventKind.REFRESH_STARTED, slot, reason=reason)
        started = trio.current_time()
        obtained_at = self._manager._clock()
        try:
            new = await self._manager._refresher.refresh(slot.key, base, clock=self._manager._clock)
        except ReauthorizationRequired as exc:
            self._manager._counters.refreshes_failed += 1
            self._manager._mark_dead(slot, describe(exc, secrets_of(base)))
            raise
        except Exception as exc:
            self._manager._counters.refreshes_failed += 1
            self._manager._emit(
                EventKind.REFRESH_FAILED,
                slot,
                error=describe(exc, secrets_of(base)),
                reason=reason,
            )
            if isinstance(exc, RefreshFailed):
                raise
            raise RefreshFailed(
                f"refresher raised unexpectedly for {slot.key}: {describe(exc, secrets_of(base))}",
                key=slot.key,
            ) from exc
        if refreshed is not None:
            refreshed.append(new)
        self._manager._counters.refreshes_succeeded += 1
        try:
            with store_deadline("save_tokens", slot.key, self._manager._policy.store_timeout):
                await save(new)
        except Exception as exc:  # noqa: BLE001 - any store failure (or a hang): keep the pair, retry the save
            self.save_failed(slot, new, exc)
        else:
            slot.unsaved = None
        self._manager._install(slot, new, obtained_at=obtained_at)
        slot.crashes = 0
        self._manager._emit(
            EventKind.REFRESH_SUCCEEDED,
            slot,
            expires_at=new.expires_at,
            duration=trio.current_time() - started,
            reason=reason,
        )
        return new

    # -- saves that failed ----------------------------------------------------------

    def save_failed(self, slot: Slot, token: Token, exc: Exception) -> None:
        """Keep a rotated pair that could not be saved, serve it, and retry the save."""
        self._manager._counters.saves_failed += 1
        slot.unsaved = token
        self._manager._emit(
            EventKind.PERSISTENCE_FAILED, slot, error=describe(exc, secrets_of(token)), attempt=1
        )
        if not slot.saving and not self._manager._closed:
            slot.saving = True
            self._manager._critical.start_soon(self._save_retries, slot)

    async def save_pending(self, slot: Slot) -> bool:
        """Try once to save the slot's unsaved pair (caller holds the slot lock).

        With a store that can lock across processes, the save happens under
        that lock, and only if the stored pair is not newer than ours: when
        another node rotated after us (ours is then already revoked), its
        pair is adopted instead of being overwritten.
        """
        token = slot.unsaved
        assert token is not None  # noqa: S101 - only called with a pending pair
        try:
            with store_deadline("save_tokens", slot.key, self._manager._policy.store_timeout):
                if await self._save_unless_superseded(slot, token):
                    return True
        except Exception as exc:  # noqa: BLE001 - reported, retried later
            self._manager._counters.saves_failed += 1
            self._manager._emit(
                EventKind.PERSISTENCE_FAILED, slot, error=describe(exc, secrets_of(token))
            )
            return False
        if slot.unsaved is token:
            slot.unsaved = None
        self._manager._emit(EventKind.PERSISTENCE_RECOVERED, slot)
        return True

    async def _save_unless_superseded(self, slot: Slot, token: Token) -> bool:
        """Save ``token``; True if a newer stored pair was adopted instead."""
        manager = self._manager
        locked = getattr(manager._callback, "locked", None)
        if locked is None:
            await manager._callback.save_tokens(slot.key, token)
            return False
        async with locked(slot.key, timeout=manager._policy.lock_timeout) as handle:
            stored = handle.token
            if stored is not None and _newer(stored, token):
                if slot.unsaved is token:
                    slot.unsaved = None
                self._adopt(slot, stored, "superseded while unsaved")
                return True
            await handle.save(token)
        return False

    async def _save_retries(self, slot: Slot) -> None:
        with trio.CancelScope(shield=True) as scope:
            self._manager._register_critical(scope)
            try:
                attempt = 0
                while slot.unsaved is not None:
                    attempt += 1
                    await trio.sleep(
                        _schedule.backoff(
                            attempt, self._manager._policy, rand=self._manager._rng.random()
                        )
                    )
                    async with slot.locked():
                        if slot.unsaved is not None:
                            await self.save_pending(slot)
            finally:
                self._manager._critical_scopes.discard(scope)
                slot.saving = False
                if slot.unsaved is not None and self._manager._closed:
                    self._manager._emit(
                        EventKind.PERSISTENCE_FAILED,
                        slot,
                        error="the manager exited before this pair could be saved",
                        reason="cut at shutdown_grace",
                    )


@contextmanager
def store_deadline(what: str, key: TokenKey, timeout: float) -> Iterator[None]:
    """Bound one store call made for a refresh; a hang becomes a `PersistenceError`."""
    try:
        with trio.fail_after(timeout):
            yield
    except trio.TooSlowError:
        msg = f"{what} for {key} did not return within {timeout:g} s (store_timeout)"
        raise PersistenceError(msg, key=key) from None


def _newer(stored: Token, ours: Token) -> bool:
    """Whether the stored pair was issued after ours (it expires later)."""
    return (
        stored.expires_at is not None
        and ours.expires_at is not None
        and stored.expires_at > ours.expires_at
    )


def secrets_of(token: Token | None) -> tuple[str | None, ...]:
    """The secrets of ``token``, to scrub from any text we report."""
    return () if token is None else (token.access_token, token.refresh_token)


def _secrets(slot: Slot | None) -> tuple[str | None, ...]:
    if slot is None:
        return ()
    return secrets_of(slot.token) + secrets_of(slot.unsaved)


async def _aexit(cm: Any, exc: BaseException | None) -> None:
    if exc is None:
        await cm.__aexit__(None, None, None)
    else:
        await cm.__aexit__(type(exc), exc, exc.__traceback__)
