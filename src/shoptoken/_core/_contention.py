"""Contention: refreshing a key that other processes and nodes share through a store.

When a store can lock across processes (SQLite, PostgreSQL), a refresh of
a still-valid token does not queue for that lock: another holder is most
likely rotating this very key. It first reads the store without the lock
and adopts a fresh pair it finds; else it waits ``stale_lock_timeout`` for
the lock, and if the lock stays taken, keeps serving its token and looks
again after a backoff (a deferral, never past the hard expiry). Urgent
refreshes (hard-expired, suspect or forced) queue up to ``lock_timeout``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .._errors import LockTimeout, PersistenceError, ShopTokenError
from .._events import EventKind, describe
from ._decision import Action
from ._store import secrets_of

if TYPE_CHECKING:
    from .._token import Token
    from ._context import Core
    from ._state import KeyState
    from ._store import Locked


@attrs.define(eq=False)
class Contention:
    """Lock entry, adoption and deferral for one manager's refreshes."""

    core: Core

    def still_valid(self, state: KeyState, *, draining: bool = False) -> bool:
        """Whether the held token may still be served (so a refresh can wait).

        A draining refresh withheld the token itself (it is not revoked).
        """
        now = self.core.clock()
        return (
            state.unsaved is None
            and state.token is not None
            and not state.dead
            and (draining or not state.suspect)
            and now < min(state.hard_at, state.dead_at)
        )

    async def enter(
        self, state: KeyState, locked: Locked, reason: str, *, urgent: bool, draining: bool
    ) -> tuple[Any, Any] | None:
        """Enter the store's lock; None if a refresh that is not urgent leaves it to its holder.

        An urgent refresh (the token is hard-expired, suspect or being
        replaced) waits up to ``lock_timeout``; any other waits
        ``stale_lock_timeout``: the holder is most likely another node
        rotating this very key, and queueing behind it would only hold a
        pooled connection.
        """
        policy = self.core.policy
        key = state.key
        while True:
            timeout = policy.lock_timeout if urgent else policy.stale_lock_timeout
            handle_cm = locked(key, timeout=timeout)
            try:
                return handle_cm, await handle_cm.__aenter__()
            except LockTimeout as exc:
                if not urgent:
                    if self.still_valid(state, draining=draining):
                        return None
                    urgent = True  # the token expired while we waited: now we queue
                    continue
                self.store_stopped(state, exc, reason)
                raise
            except ShopTokenError as exc:
                self.store_stopped(state, exc, reason)
                raise
            except Exception as exc:
                error = PersistenceError(f"locking {key} failed: {describe(exc)}", key=key)
                self.store_stopped(state, error, reason)
                raise error from exc

    async def adopt_stored(self, state: KeyState, reason: str) -> Token | None:
        """Read the store without its lock; adopt a fresh pair another holder saved."""
        core = self.core
        try:
            stored = await core.store.load(state.key)
        except PersistenceError:
            return None  # counted; the locked re-read decides (and reports)
        if stored is None or stored == state.token:
            return None
        if core.judge(state.key, stored) is not Action.SERVE:
            return None
        self.adopt(state, stored, reason)
        return stored

    def adopt(self, state: KeyState, token: Token, reason: str) -> None:
        """Take a pair another task, process or node stored (no request of ours)."""
        core = self.core
        core.install(state, token)
        core.counters.refreshes_adopted += 1
        core.emit(EventKind.REFRESH_ADOPTED, state, expires_at=token.expires_at, reason=reason)

    def defer(self, state: KeyState, reason: str, *, draining: bool) -> Token:
        """Serve the still-valid token and look again after a backoff (never past hard expiry)."""
        core = self.core
        if draining:
            state.trust()  # it was withheld for a rotation that another holder now makes
        state.deferrals += 1
        now = core.clock()
        delay = min(core.backoff(state.deferrals), state.hard_at - now)
        state.reschedule(now + delay)
        core.counters.refreshes_deferred += 1
        core.emit(
            EventKind.REFRESH_DEFERRED,
            state,
            reason=reason,
            retry_in=delay,
            attempt=state.deferrals,
        )
        assert state.token is not None  # noqa: S101 - still_valid held
        return state.token

    def store_stopped(self, state: KeyState, exc: ShopTokenError, reason: str) -> None:
        """Report a refresh the store stopped before Shopify was asked (re-read or lock)."""
        self.core.emit(
            EventKind.REFRESH_FAILED, state, error=describe(exc, held_secrets(state)), reason=reason
        )


def held_secrets(state: KeyState) -> tuple[str | None, ...]:
    """The secrets a key holds (its token and any unsaved pair), to scrub from reports."""
    return secrets_of(state.token) + secrets_of(state.unsaved)
