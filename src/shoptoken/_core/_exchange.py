"""Exchange: one refresh under the locks: re-read, decide, rotate, save, commit, install.

Runs inside a `Rotator` flight. Under the key's lock (and the store's
cross-process lock when it has one) the decision is re-taken on the re-read
token by `decide`; only then is Shopify asked. Every attempt ends in one of
three outcomes:

- rotated: Shopify revoked the old access token at once, so from the
  request on no caller gets it; the new pair is saved (for a locked store:
  its transaction committed) and only then installed and handed out. A pair
  whose save fails is kept in memory, served, and saved again with backoff.
- not rotated (a definite answer): the held token stays as good as it was.
- unknown (no usable answer): the held token may be revoked and is never
  served again; the stored pair is marked expired so no other process
  serves it either, and the refresh is retried promptly with the old
  refresh token, which Shopify's recovery window still accepts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._errors import NoToken, PersistenceError, ReauthorizationRequired, RefreshFailed
from .._events import EventKind, describe
from ._contention import held_secrets
from ._decision import Action
from ._refresher import mint
from ._store import secrets_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._token import Token
    from ._contention import Contention
    from ._context import Core
    from ._saves import PendingSaves
    from ._state import KeyState

    Save = Callable[[Token], Awaitable[None]]


@attrs.frozen
class _Rotated:
    """A rotation's new pair, and what became of its save."""

    token: Token
    started: float
    save_error: PersistenceError | None


@attrs.define(eq=False)
class Exchange:
    """Refreshes one key under its locks (what a `Rotator` flight runs)."""

    core: Core
    saves: PendingSaves
    contention: Contention

    # -- under the locks ---------------------------------------------------------------

    async def run(
        self, state: KeyState, reason: str, replacing: Token | None, *, draining: bool
    ) -> Token:
        core = self.core
        key = state.key
        async with core.limiter, state.locked():
            if not core.is_current(state) or core.being_forgotten(key):
                raise NoToken(f"{key} was forgotten", key=key)
            if state.dead or not state.vacant:
                core.raise_if_dead(state)
            if state.unsaved is not None:
                await self.saves.save_pending(state)
                if not core.is_current(state):
                    raise NoToken(f"{key} is no longer stored (deleted elsewhere)", key=key)
            if core.store.locked is None:
                stored = await self._reread(state, reason)
                outcome = await self._rotate_or_adopt(
                    state,
                    stored,
                    replacing,
                    reason,
                    lambda t: core.store.save(key, t),
                    draining=draining,
                )
            else:
                outcome = await self._under_store_lock(state, reason, replacing, draining=draining)
            if not core.is_current(state):
                # Forgotten (uninstalled) while its pair was saved: nobody gets
                # it (the forget deletes it again once this refresh has ended).
                raise NoToken(f"{key} was forgotten during its refresh", key=key)
            return self._land(state, outcome, reason) if isinstance(outcome, _Rotated) else outcome

    async def _under_store_lock(
        self, state: KeyState, reason: str, replacing: Token | None, *, draining: bool
    ) -> Token | _Rotated:
        """The refresh decision and rotation inside the store's cross-process lock.

        The lock's transaction commits before anything is installed: a new
        pair is handed out only once it is durable (a failed commit is a
        failed save).
        """
        core = self.core
        key = state.key
        assert core.store.locked is not None  # noqa: S101 - only called for a locking store
        urgent = replacing is not None or not self.contention.still_valid(state, draining=draining)
        if not urgent:
            # Another process or node may have rotated already (or be rotating,
            # if we left it the lock last time): a plain read finds its pair
            # without queueing for the lock.
            adopted = await self.contention.adopt_stored(state, reason)
            if adopted is not None:
                return adopted
        entered = await self.contention.enter(
            state, core.store.locked, reason, urgent=urgent, draining=draining
        )
        if entered is None:
            return self.contention.defer(state, reason, draining=draining)
        handle_cm, handle = entered
        try:
            outcome = await self._rotate_or_adopt(
                state,
                handle.token,
                replacing,
                reason,
                lambda t: core.store.run_save(key, t, handle.save),
                draining=draining,
            )
        except RefreshFailed as exc:
            # An unknown outcome stored its revocation mark: commit it.
            if exc.outcome_unknown:
                await self._commit_quietly(handle_cm, state)
            else:
                await handle_cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        except BaseException as exc:
            await handle_cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        try:
            await handle_cm.__aexit__(None, None, None)  # the commit
        except Exception as exc:  # noqa: BLE001 - a failed commit is a failed save
            if isinstance(outcome, _Rotated) and outcome.save_error is None:
                why = describe(exc, secrets_of(outcome.token))
                error = PersistenceError(f"committing {key}'s new pair failed: {why}", key=key)
                outcome = attrs.evolve(outcome, save_error=error)
        return outcome

    async def _commit_quietly(self, handle_cm: Any, state: KeyState) -> None:
        try:
            await handle_cm.__aexit__(None, None, None)
        except Exception as exc:  # noqa: BLE001 - best effort; the refresh's own failure is raised
            self._mark_failed(state, exc)

    async def _reread(self, state: KeyState, reason: str) -> Token | None:
        try:
            return await self.core.store.load(state.key)
        except PersistenceError as exc:
            self.contention.store_stopped(state, exc, reason)
            raise

    # -- the decision on the re-read token, and the rotation ---------------------------

    async def _rotate_or_adopt(
        self,
        state: KeyState,
        stored: Token | None,
        replacing: Token | None,
        reason: str,
        save: Save,
        *,
        draining: bool,
    ) -> Token | _Rotated:
        """Re-take the decision on the re-read token: adopt it, or rotate it and save."""
        core = self.core
        key = state.key
        if state.unsaved is not None and not (stored is None and state.stored):
            base = state.unsaved  # memory is newer than the store until the save lands
        elif stored is None and state.vacant:
            return await self._rotate(state, None, reason, save)  # a mintable key's first token
        elif stored is None:
            state.unsaved = None  # its row was deleted elsewhere: the pair must not come back
            core.drop(state)
            raise NoToken(f"{key} is no longer stored (deleted elsewhere)", key=key)
        else:
            base = stored
        held = state.token
        same = held is not None and base.access_token == held.access_token
        action = core.judge(
            key,
            base,
            suspect=(replacing is not None and base.access_token == replacing.access_token)
            or (state.suspect and same and not draining),
        )
        if action is Action.REAUTHORIZE:
            core.mark_dead(state, "the refresh token expired, or the token cannot be refreshed")
            raise ReauthorizationRequired(f"{key} expired and cannot be refreshed", key=key)
        if action is Action.SERVE:
            if not same or state.suspect:
                self.contention.adopt(state, base, reason)
            return base
        return await self._rotate(state, base, reason, save)

    async def _rotate(
        self, state: KeyState, base: Token | None, reason: str, save: Save
    ) -> _Rotated:
        """Ask Shopify for the key's next token: refresh ``base``, or mint (a mintable key)."""
        core = self.core
        key = state.key
        now = core.clock()
        wait = core.gate.admit(now, core.policy.retry_initial)
        if wait is not None:
            core.counters.refreshes_paused += 1
            raise RefreshFailed(
                f"{key}: not refreshed: the app's credentials were rejected "
                f"(invalid_client); the next probe is in {wait:.3g} s",
                key=key,
                status=401,
                error="invalid_client",
                retry_after=wait,
                transient=False,
            )
        core.emit(EventKind.REFRESH_STARTED, state, reason=reason)
        started = trio.current_time()
        # From the moment the request may reach Shopify, the held access token
        # may be revoked by it at any instant: callers wait for the answer
        # rather than get a token that dies in their hands.
        was_suspect = state.suspect
        state.distrust()
        try:
            if key.mintable:
                # A client credentials grant; modelled as revoking the shop's
                # previous such token, as a rotation does (see docs/client-credentials.md).
                new = await mint(core.refresher, key, core.clock)
            else:
                assert base is not None  # noqa: S101 - only a mintable key has no base
                new = await core.refresher.refresh(key, base, clock=core.clock)
        except ReauthorizationRequired as exc:
            core.gate.answered()
            core.counters.refreshes_failed += 1
            core.mark_dead(state, describe(exc, secrets_of(base)))
            raise
        except Exception as exc:
            error = self._refresh_error(state, base, exc, reason)
            if not core.is_current(state):
                raise NoToken(f"{key} was forgotten during its refresh", key=key) from error
            if error.outcome_unknown and base is not None:
                await self._mark_revoked(state, base, now, save)
            elif not was_suspect:
                state.trust()  # a definite answer: nothing was rotated
            raise error from exc
        core.gate.answered()
        core.counters.refreshes_succeeded += 1
        if not core.is_current(state):
            # Forgotten (uninstalled) while Shopify answered: the pair must not
            # bring the key back into the store, nor be served.
            raise NoToken(
                f"{key} was forgotten during its refresh; its new pair is discarded", key=key
            )
        if new.obtained_at is None:
            # A refresher of the user's that does not date its tokens: dated
            # here, so the refresh time is the same in every process.
            new = attrs.evolve(new, obtained_at=datetime.fromtimestamp(now, UTC))
        # Shopify revoked the old access token as it rotated: it stays suspect
        # until the new pair is saved (committed) and installed.
        try:
            await save(new)
        except PersistenceError as exc:
            return _Rotated(new, started, exc)
        return _Rotated(new, started, None)

    async def _mark_revoked(self, state: KeyState, base: Token, sent_at: float, save: Save) -> None:
        """Store ``base`` as expired at ``sent_at``: its access token may be revoked.

        Every process that loads it then (this one after a restart, another
        node) refreshes it before use, with its refresh token, which Shopify's
        recovery window still accepts, instead of serving a revoked token.
        Best effort: a failed save is reported and the pair kept as it was.
        """
        marked = attrs.evolve(base, expires_at=datetime.fromtimestamp(sent_at, UTC))
        try:
            await save(marked)
        except PersistenceError as exc:
            self._mark_failed(state, exc)

    def _mark_failed(self, state: KeyState, exc: Exception) -> None:
        """Report that a possibly revoked pair could not be marked in the store."""
        self.core.emit(
            EventKind.PERSISTENCE_FAILED,
            state,
            error=describe(exc, held_secrets(state)),
            reason="marking a possibly revoked token",
        )

    def _refresh_error(
        self, state: KeyState, base: Token | None, exc: Exception, reason: str
    ) -> RefreshFailed:
        """Count and report a failed request; the `RefreshFailed` callers get."""
        core = self.core
        core.counters.refreshes_failed += 1
        if isinstance(exc, RefreshFailed):
            error = exc
        else:
            error = RefreshFailed(
                f"refresher raised unexpectedly for {state.key}: {describe(exc, secrets_of(base))}",
                key=state.key,
                outcome_unknown=True,
            )
        if error.app_credentials_rejected:
            core.gate.rejected(core.clock(), core.backoff(core.gate.failures + 1))
            core.counters.app_credentials_rejected += 1
            core.emit(
                EventKind.APP_CREDENTIALS_REJECTED, state, error=describe(error), reason=reason
            )
        elif error.status is not None:
            core.gate.answered()
        else:
            core.gate.unanswered()
        if error.outcome_unknown:
            core.counters.refreshes_outcome_unknown += 1
        core.emit(
            EventKind.REFRESH_FAILED,
            state,
            error=describe(error, secrets_of(base)),
            reason=reason if not error.outcome_unknown else f"{reason}; outcome unknown",
        )
        return error

    def _land(self, state: KeyState, rotated: _Rotated, reason: str) -> Token:
        """Install a rotated pair: saved (committed), or held in memory until its save lands."""
        core = self.core
        if rotated.save_error is not None:
            self.saves.failed(state, rotated.token, rotated.save_error)
        else:
            state.unsaved = None
            core.install(state, rotated.token)
        state.crashes = 0
        core.emit(
            EventKind.REFRESH_SUCCEEDED,
            state,
            expires_at=rotated.token.expires_at,
            duration=trio.current_time() - rotated.started,
            reason=reason,
        )
        return rotated.token
