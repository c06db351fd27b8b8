"""Rotator: single-flight refresh, its outcome remembered on the key, and rechecks.

One refresh per key runs at a time (a `Flight`), in the manager's critical
nursery and shielded from its callers' cancellation: every caller joins it,
and a cancelled caller never cuts a rotation Shopify may have performed.
What the flight runs is an `Exchange`. A failure is remembered on the key
with its backoff (``Retry-After`` as a floor): no request for the key is
made before ``retry_at``, whoever asks. An unknown outcome leaves the held
token suspect; a definite failure of a refresh that withheld it trusts it
again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from .._errors import (
    NoToken,
    PersistenceError,
    ReauthorizationRequired,
    RefreshFailed,
    ShopTokenError,
)
from .._events import EventKind, describe
from ._contention import held_secrets
from ._decision import Action
from ._flight import Flight, copy_error
from ._store import secrets_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._token import Token
    from ._contention import Contention
    from ._context import Core
    from ._exchange import Exchange
    from ._state import KeyState

    Save = Callable[[Token], Awaitable[None]]


@attrs.define(eq=False)
class Rotator:
    """Runs the refreshes, rechecks and pending saves of one manager."""

    core: Core
    exchange: Exchange
    contention: Contention

    # -- single flight ---------------------------------------------------------------

    def start(self, state: KeyState, *, reason: str, replacing: Token | None = None) -> Flight:
        """Start the key's refresh in the background unless one is in flight."""
        flight = state.flight
        if flight is None:
            self.core.check_open()
            flight = Flight(replacing=replacing)
            state.take_off(flight)
            held = state.token
            if (
                replacing is not None
                and held is not None
                and not state.suspect
                and replacing.access_token == held.access_token
            ):
                # A forced refresh: its rotation revokes this token, so stop serving it now.
                state.distrust()
                flight.distrusted = True
            self.core.critical.start_soon(self._fly, state, flight, reason)
        return flight

    async def refresh(
        self, state: KeyState, *, reason: str, replacing: Token | None = None
    ) -> Token:
        """Join the key's refresh in flight, or start one, and return its token.

        Raises:
            RefreshFailed: At once, with ``retry_after``, inside the key's
                backoff or Retry-After window (no request is made).
        """
        for _ in range(2):
            flight = state.flight
            if flight is None:
                now = self.core.clock()
                if now < state.retry_at:
                    raise self.retry_later(state, now)
                flight = self.start(state, reason=reason, replacing=replacing)
            await flight.done().wait()
            token = flight.result()
            # A joined refresh may have been decided before our token went bad;
            # if it handed back the very token we must replace, go once more.
            if replacing is None or token.access_token != replacing.access_token:
                return token
        return token

    def retry_later(self, state: KeyState, now: float) -> Exception:
        """The error for a caller with no valid token inside the key's retry window."""
        last = state.last_error
        wait = state.retry_at - now
        if last is not None and not isinstance(last, RefreshFailed):
            return copy_error(last)  # the store failed: say so, as it did
        why = (
            ""
            if last is None
            else f" (the last one failed: {describe(last, secrets_of(state.token))})"
        )
        error = RefreshFailed(
            f"{state.key}: no valid token; next refresh attempt in {wait:.3g} s{why}",
            key=state.key,
            status=None if last is None else last.status,
            error=None if last is None else last.error,
            retry_after=wait,
            transient=True if last is None else last.transient,
            outcome_unknown=False,
        )
        error.__cause__ = last
        return error

    async def _fly(self, state: KeyState, flight: Flight, reason: str) -> None:
        # Shielded: neither a cancelled caller nor the manager's exit may cut a
        # rotation Shopify has performed. Core.close() bounds it with a deadline.
        core = self.core
        token: Token | None = None
        error: Exception | None = None
        with core.shielded():
            try:
                draining = await self._drain(state, flight)
                token = await self.exchange.run(state, reason, flight.replacing, draining=draining)
            except ShopTokenError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - a bug reaches callers as a refresh failure
                why = describe(exc, held_secrets(state))
                error = RefreshFailed(
                    f"refresh of {state.key} failed unexpectedly: {why}",
                    key=state.key,
                    outcome_unknown=True,
                )
                error.__cause__ = exc
            finally:
                if token is None and error is None:
                    error = RefreshFailed(
                        f"refresh of {state.key} was cut short by the manager's exit",
                        key=state.key,
                        outcome_unknown=True,
                    )
                    core.emit(
                        EventKind.REFRESH_FAILED,
                        state,
                        error=describe(error),
                        reason="cut at shutdown_grace",
                    )
                state.land(flight)
                if error is not None:
                    self._failed(state, error, trusted=flight.distrusted)
                else:
                    state.clear_failures()
                flight.finish(token, error)

    async def _drain(self, state: KeyState, flight: Flight) -> bool:
        """Withhold a still-valid token for ``drain`` seconds before it is rotated.

        Shopify revokes the old access token the moment it rotates: API calls
        already made with it must reach Shopify first. Callers meanwhile wait
        for this flight. Returns whether the token was withheld.
        """
        core = self.core
        drain = core.policy.drain
        if (
            not drain
            or flight.replacing is not None
            or not self.contention.still_valid(state)
            or core.clock() + drain >= state.hard_at
        ):
            return False
        state.distrust()
        flight.distrusted = True  # a refresh that ends without rotating trusts it again
        await trio.sleep(drain)
        return True

    def _failed(self, state: KeyState, error: Exception, *, trusted: bool) -> None:
        """Remember a failed refresh and when the key may be asked about again."""
        if isinstance(error, ReauthorizationRequired | NoToken):
            return
        core = self.core
        unknown = getattr(error, "outcome_unknown", False)
        if unknown:
            state.distrust()  # Shopify may have rotated: the old token may be revoked
        elif trusted and state.suspect:
            state.trust()  # a forced refresh that definitely did not rotate
        delay = core.backoff(state.failures + 1, getattr(error, "retry_after", None))
        state.note_failure(error, core.clock() + delay)
        if not state.suspect and state.token is not None and core.clock() < state.hard_at:
            core.emit(
                EventKind.STALE_SERVED,
                state,
                error=describe(error, held_secrets(state)),
                retry_in=delay,
            )

    # -- a key marked for re-authorization ----------------------------------------------

    async def recheck(self, state: KeyState) -> None:
        """Re-read a dead key's store entry (at most every ``recheck_interval``).

        Another process (the web app that handled the merchant's new
        install) may have stored a new pair: it is installed and the key is
        live again. Otherwise the key stays dead.

        Raises:
            NoToken: The key is no longer stored.
        """
        core = self.core
        async with state.locked():
            now = core.clock()
            if not state.dead or now < state.recheck_at or not core.is_current(state):
                return
            state.recheck_at = now + core.policy.recheck_interval
            try:
                stored = await core.store.load(state.key)
            except PersistenceError as exc:
                self.contention.store_stopped(state, exc, "recheck")
                return
            if stored is None:
                if state.vacant:
                    return  # a mintable key its shop refused: nothing stored, it stays dead
                core.drop(state)
                raise NoToken(f"{state.key} is no longer stored (deleted elsewhere)", key=state.key)
            if stored == state.token:
                return
            if core.judge(state.key, stored) is Action.REAUTHORIZE:
                return
            core.install(state, stored)
            core.emit(EventKind.KEY_REAUTHORIZED, state, expires_at=stored.expires_at)
