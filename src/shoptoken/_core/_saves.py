"""PendingSaves: a rotated pair the store did not take is kept, served and saved again.

Never dropped, never replaced by the old pair: the new pair is the only
valid one (Shopify revoked the old access token as it rotated). It is held
as the key's ``unsaved`` token and saved again with backoff until it lands;
each failure is reported. With a store that can lock across processes, a
retried save happens under that lock and only if the stored pair is not
newer: another node that rotated after us (ours is then already revoked)
wins, and its pair is adopted instead of being overwritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from .._errors import NoToken, PersistenceError
from .._events import EventKind, describe
from ._store import secrets_of

if TYPE_CHECKING:
    from .._token import Token
    from ._context import Core
    from ._state import KeyState


@attrs.define(eq=False)
class PendingSaves:
    """Keeps and re-saves the pairs of one manager that failed to save."""

    core: Core

    def failed(self, state: KeyState, token: Token, exc: Exception) -> None:
        """Hold ``token`` in memory, serve it, report the failure, and retry the save."""
        core = self.core
        core.counters.saves_failed += 1
        state.unsaved = token
        core.install(state, token)
        core.emit(
            EventKind.PERSISTENCE_FAILED, state, error=describe(exc, secrets_of(token)), attempt=1
        )
        if not state.saving and not core.closed:
            state.saving = True
            core.critical.start_soon(self._retry, state)

    async def save_pending(self, state: KeyState) -> bool:
        """Try once to save the key's unsaved pair (the caller holds the key's lock).

        Returns:
            Whether the pair landed (or a newer stored pair was adopted).
        """
        core = self.core
        token = state.unsaved
        assert token is not None  # noqa: S101 - only called with a pending pair
        try:
            deleted = await self._deleted_elsewhere(state)
        except PersistenceError:
            return False  # a failed load (counted as one): retried later
        if deleted:
            state.unsaved = None
            core.drop(state)
            return True
        try:
            newer = await self._save_unless_superseded(state, token)
        except NoToken:
            # Deleted elsewhere (an uninstall handled by another process): the
            # pair must not bring the key back, nor be served.
            state.unsaved = None
            core.drop(state)
            return True
        except Exception as exc:  # noqa: BLE001 - reported, retried later
            core.counters.saves_failed += 1
            core.emit(EventKind.PERSISTENCE_FAILED, state, error=describe(exc, secrets_of(token)))
            return False
        if state.unsaved is token:
            state.unsaved = None
        if newer is not None:
            core.install(state, newer)
            core.counters.refreshes_adopted += 1
            core.emit(
                EventKind.REFRESH_ADOPTED,
                state,
                expires_at=newer.expires_at,
                reason="superseded while unsaved",
            )
        core.emit(EventKind.PERSISTENCE_RECOVERED, state)
        return True

    async def _deleted_elsewhere(self, state: KeyState) -> bool:
        """Whether a store without a lock lost the key's row (another process deleted it).

        A read before the save narrows (cannot close) the window in which
        another process's delete is undone; a locking store re-reads under
        its lock instead (`_save_unless_superseded`).
        """
        store = self.core.store
        return store.locked is None and state.stored and await store.load(state.key) is None

    async def _save_unless_superseded(self, state: KeyState, token: Token) -> Token | None:
        """Save ``token``; the stored pair instead when it is newer than ours."""
        store = self.core.store
        key = state.key
        locked = store.locked
        if locked is None:
            await store.save(key, token)
            return None
        async with locked(key, timeout=self.core.policy.lock_timeout) as handle:
            stored = handle.token
            if stored is None and state.stored:
                raise NoToken(f"{key} is no longer stored (deleted elsewhere)", key=key)
            if stored is not None and _newer(stored, token):
                return stored
            await store.run_save(key, token, handle.save)
        return None

    async def _retry(self, state: KeyState) -> None:
        core = self.core
        with core.shielded():
            try:
                attempt = 0
                while state.unsaved is not None:
                    attempt += 1
                    await trio.sleep(core.backoff(attempt))
                    async with state.locked():
                        if not core.is_current(state):
                            state.unsaved = None  # forgotten: its pair must not come back
                        elif state.unsaved is not None:
                            await self.save_pending(state)
            finally:
                state.saving = False
                if state.unsaved is not None and core.closed:
                    core.emit(
                        EventKind.PERSISTENCE_FAILED,
                        state,
                        error="the manager exited before this pair could be saved",
                        reason="cut at shutdown_grace",
                    )


def _newer(stored: Token, ours: Token) -> bool:
    """Whether the stored pair was issued after ours (it expires later)."""
    return (
        stored.expires_at is not None
        and ours.expires_at is not None
        and stored.expires_at > ours.expires_at
    )
