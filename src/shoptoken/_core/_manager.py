"""TokenManager: look up the key, decide, act.

The hot path serves a fresh token from the key's cached ``fresh_until``;
everything else asks `decide` and does what it says: serve, serve and start
a background refresh, join or start a refresh and wait, raise, or re-read
the store for a key marked for re-authorization.
"""

from __future__ import annotations

import random
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from .._errors import NoToken, PersistenceError
from .._events import Emitter, EventHook
from .._keys import TokenKey, TokenKind, normalize_shop
from .._persistence import TokenCallback
from .._token import Token, check_aware
from ._contention import Contention
from ._context import Core
from ._decision import Action, decide
from ._exchange import Exchange
from ._flight import copy_error
from ._forgetting import Forgetter
from ._loading import WARM_UP_BATCH, Loader, WarmUpFigures
from ._policy import RefreshPolicy
from ._refresher import as_refresher
from ._rotation import Rotator
from ._saves import PendingSaves
from ._state import KeyState, Phase, StateObserver
from ._statistics import Counters, TokenManagerStatistics
from ._store import StoreAdapter
from ._supervision import Supervision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Mapping
    from datetime import datetime

    import httpx

    from ._refresher import Refresher


@attrs.define(eq=False, init=False)
class TokenManager:
    """Keeps every key's token valid; made by `open_token_manager`.

    All methods must be called from the trio run that opened the manager.
    """

    _core: Core
    _states: dict[TokenKey, KeyState]
    _clock: Callable[[], float]
    _rotator: Rotator
    _supervision: Supervision
    _forgetter: Forgetter
    _loader: Loader

    def __init__(self, core: Core) -> None:
        self._core = core
        self._states = core.states
        self._clock = core.clock
        contention = Contention(core)
        exchange = Exchange(core, PendingSaves(core), contention)
        self._rotator = Rotator(core, exchange, contention)
        self._supervision = Supervision(core, self._rotator, self._load_unused)
        self._forgetter = Forgetter(core)
        self._loader = Loader(core, self._supervision, self._state_for)
        core.background.start_soon(self._supervision.sweep)
        core.background.start_soon(core.alarms.run)

    # -- the hot path ---------------------------------------------------------

    async def valid_token(self, key: TokenKey) -> Token:
        """Return a token for ``key`` that is valid now.

        A fresh cached token is returned at once: no lock, no I/O and, unlike
        other trio async functions, no checkpoint (it does not yield to the
        scheduler, as a cache hit should not). Otherwise the decision table
        in the docs applies: load lazily on first use; serve a stale but
        valid token and refresh it in the background; wait for a refresh
        when no valid token is held; raise when nothing can be served.

        Raises:
            NoToken: Nothing is stored for ``key``.
            ReauthorizationRequired: The refresh token is expired or revoked.
            RefreshFailed: No valid token is held and the refresh failed, or
                the key is inside a backoff or Retry-After window
                (``retry_after`` says how long).
            LockTimeout: The store's cross-process lock timed out.
            PersistenceError: The store failed to load the token.
            RuntimeError: The manager is closed.
        """
        state = self._states.get(key)
        if state is not None:
            now = self._clock()
            if now < state.fresh_until:
                state.used = now
                return state.token  # type: ignore[return-value]  # fresh_until > -inf only with a token
            flight = state.flight
            if flight is not None and state.join_from <= now < state.dead_at and state.running:
                # decide() says JOIN (the cached answer): no valid token, its
                # refresh in flight. Joined here, a herd's callers each run
                # one coroutine level less.
                state.used = now
                await flight.done().wait()
                return flight.result()
        return await self._valid_token_slow(key)

    async def _valid_token_slow(self, key: TokenKey) -> Token:
        state, loaded = await self._activate(key)
        for _ in range(2):  # once more after a recheck found a new pair
            now = self._clock()
            state.used = now
            action = decide(state, now)
            if action is Action.SERVE or action is Action.SERVE_AND_REFRESH:
                if action is Action.SERVE_AND_REFRESH:
                    self._rotator.start(state, reason="stale")
                if state.failures:
                    self._core.counters.stale_served += 1
                if not loaded:
                    # A first use checkpointed in its load; a fleet's start
                    # then takes one scheduler pass per key, not two.
                    await trio.lowlevel.checkpoint()
                return state.token  # type: ignore[return-value]  # SERVE implies a token
            if action is Action.JOIN or action is Action.REFRESH:
                if state.vacant:
                    return await self._first_mint(state)
                reason = "outcome unknown" if state.suspect else "expired"
                return await self._rotator.refresh(state, reason=reason)
            if action is Action.RETRY_LATER:
                raise self._rotator.retry_later(state, now)
            if action is Action.RECHECK:
                await self._rotator.recheck(state)
                self._supervision.start(state)
                continue
            break  # REAUTHORIZE (LOAD cannot follow _activate)
        if not state.dead:
            self._core.mark_dead(state, "the refresh token expired")
        self._core.raise_if_dead(state)
        raise AssertionError  # pragma: no cover - raise_if_dead raised

    async def _first_mint(self, state: KeyState) -> Token:
        """Mint a vacant key's first token (or join that mint), then keep it fresh.

        The keeper starts either way: it keeps the token fresh, or retries a
        failed first mint when its backoff ends.
        """
        try:
            return await self._rotator.refresh(state, reason="first token")
        finally:
            self._supervision.start(state)

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
        core = self._core
        core.check_open()
        while True:
            state = self._state_for(key)
            async with state.locked():
                if not core.is_current(state):
                    continue
                try:
                    await core.store.save(key, token)
                except PersistenceError:
                    core.counters.saves_failed += 1
                    raise
                state.unsaved = None
                core.install(state, token)
                state.used = self._clock()
            self._supervision.start(state)
            return

    async def fetch_token(self, key: TokenKey) -> Token:
        """Return the token held for ``key`` as is, without refreshing it.

        Raises:
            NoToken: Nothing is stored for ``key``.
            PersistenceError: The store failed to load it.
        """
        state, _ = await self._activate(key, use=False)
        await trio.lowlevel.checkpoint()
        if state.token is None:  # a vacant mintable key: nothing stored yet
            raise NoToken(f"no token stored for {key} (not minted yet)", key=key)
        return state.token

    async def refresh_token(self, key: TokenKey, *, rejected: Token | None = None) -> Token:
        """Refresh ``key`` now (single-flight) and return the new token. Counts as use.

        The decision is re-taken under the lock after re-reading the store:
        if another task, process or node replaced the token since this call
        began, that token is returned instead of refreshing twice.

        Args:
            key: The key.
            rejected: The token an API call was just refused with (a 401).
                When the key already holds another valid token, that one is
                returned without a refresh. `auth` passes it; so can an
                app's own httpx Auth.

        Raises:
            NoToken: Nothing is stored for ``key``.
            ReauthorizationRequired: The token cannot be refreshed.
            RefreshFailed: The refresh failed, or the key is inside a
                backoff or Retry-After window (no request is made then).
        """
        state, _ = await self._activate(key)
        now = self._clock()
        state.used = now
        if decide(state, now) is Action.RECHECK:
            await self._rotator.recheck(state)
        if state.vacant and not state.dead:
            return await self._first_mint(state)
        token = self._core.raise_if_dead(state)
        if rejected is None:
            return await self._rotator.refresh(state, reason="forced", replacing=token)
        if token.access_token != rejected.access_token and decide(state, now) in _SERVABLE:
            return token
        return await self._rotator.refresh(state, reason="unauthorized", replacing=rejected)

    async def forget(self, key: TokenKey) -> None:
        """Forget one key (a customer's redaction) by the rules of `forget_shop`.

        The store's ``delete_tokens`` deletes it; without one the key is
        only dropped from memory.

        Raises:
            PersistenceError: The store failed to delete; call again.
        """
        await self._forgetter.forget((key,))

    async def forget_shop(self, shop: str, *, before: datetime | None = None) -> list[TokenKey]:
        """Forget every key of ``shop`` (app uninstalled): offline, online, customer.

        Their refreshers stop without a refresh attempt; a refresh in flight
        discards Shopify's answer instead of saving or serving it (its
        callers get `NoToken`); the store deletes them all (one
        ``delete_shop`` when it has one; else ``list_keys`` and
        ``delete_tokens``; else only the keys held in memory are dropped).
        A later `put_token` (a reinstall) starts the shop afresh.

        Args:
            shop: The shop's domain.
            before: Forget only keys whose token was obtained before this
                aware time (a token without ``obtained_at`` counts as
                before), in memory and in the store: `handle_webhook` passes
                the uninstall's ``triggered_at``, so a retry of it delivered
                after a reinstall leaves the reinstall's token alone.

        Returns:
            The keys forgotten (in memory or in the store), sorted.

        Raises:
            InvalidShopDomain: Bad shop domain.
            TypeError: ``before`` is not a datetime.
            ValueError: ``before`` is a naive datetime.
            PersistenceError: The store failed; call again (the webhook's retry).
        """
        check_aware(before)
        forgotten = await self._forgetter.forget(shop=normalize_shop(shop), before=before)
        return sorted(forgotten, key=str)

    async def warm_up(
        self, keys: Iterable[TokenKey] | None = None, *, batch_size: int = WARM_UP_BATCH
    ) -> WarmUpFigures:
        """Load ``keys`` (every stored key if None) and start keeping them fresh.

        For a daemon's start: keys are loaded ``batch_size`` at a time, in one
        store call per batch when the store has ``load_many`` (else one key
        at a time), and each loaded key counts as used and gets its keeper
        task, as on a first `valid_token`. Keys already in memory are only
        counted; a key a first use is loading meanwhile is loaded once. A
        `TokenEvent` of kind ``WARM_UP_PROGRESS`` follows every batch.
        Cancelled, it leaves the keys it had not loaded to load lazily.

        Args:
            keys: The keys to load; None lists the store (``list_keys``).
            batch_size: Keys per store call.

        Returns:
            How many keys were loaded, are due a refresh, need
            re-authorization, have nothing stored or failed, and the seconds.

        Raises:
            PersistenceError: Listing the store failed, or the store failed
                every load of a batch (its bulk load, then the first keys one
                at a time): the store is down. Keys loaded until then stay
                loaded. Failed loads of some keys are counted in ``failed``.
            TypeError: ``keys`` is None and the store cannot list its keys,
                or an item of ``keys`` is not a `TokenKey`.
            ValueError: ``batch_size`` is less than 1.
            RuntimeError: The manager is closed.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            msg = f"batch_size must be a positive int, not {batch_size!r}"
            raise ValueError(msg)
        return await self._loader.warm_up(keys, batch_size)

    def statistics(self) -> TokenManagerStatistics:
        """Return a frozen snapshot of keys and counters."""
        core = self._core
        c = core.counters
        states = self._states.values()
        return TokenManagerStatistics(
            keys_known=len(self._states) + len(core.parked),
            keys_active=sum(1 for s in states if s.running),
            keys_parked=len(core.parked),
            keys_reauthorization_required=sum(1 for s in states if s.phase is Phase.DEAD),
            keys_suspect=sum(1 for s in states if s.phase is Phase.SUSPECT),
            refreshes_in_flight=sum(1 for s in states if s.flight is not None),
            refreshes_succeeded=c.refreshes_succeeded,
            refreshes_failed=c.refreshes_failed,
            refreshes_outcome_unknown=c.refreshes_outcome_unknown,
            refreshes_adopted=c.refreshes_adopted,
            refreshes_deferred=c.refreshes_deferred,
            app_credentials_rejected=c.app_credentials_rejected,
            refreshes_paused=c.refreshes_paused,
            saves_failed=c.saves_failed,
            saves_pending=sum(1 for s in states if s.unsaved is not None),
            loads_failed=c.loads_failed,
            stale_served=c.stale_served,
            refresher_crashes=c.refresher_crashes,
        )

    def auth(self, key: TokenKey) -> httpx.Auth:
        """Return an `httpx.Auth` that authenticates requests for ``key``.

        It sets ``X-Shopify-Access-Token`` from `valid_token`; on a 401 it
        forces one refresh (unless the token was already replaced) and
        retries the request once. It is built on `valid_token` and
        `refresh_token` alone.
        """
        from .._auth import ManagerAuth  # noqa: PLC0415 - keeps httpx off the import path of the core

        return ManagerAuth(self, key)

    # -- loading ---------------------------------------------------------------

    def _state_for(self, key: TokenKey) -> KeyState:
        state = self._states.get(key)
        if state is None:
            self._core.check_open()
            if not isinstance(key, TokenKey):
                msg = f"expected a TokenKey, not {type(key).__name__}"
                raise TypeError(msg)
            state = self._states[key] = KeyState(key, observer=self._core.observer)
            self._core.parked.pop(key, None)
        return state

    async def _load_unused(self, key: TokenKey) -> KeyState:
        return (await self._activate(key, use=False))[0]

    async def _activate(self, key: TokenKey, *, use: bool = True) -> tuple[KeyState, bool]:
        """Return the key's state (loaded once, single flight) and whether this call loaded it."""
        loaded = False
        while True:
            state = self._state_for(key)
            if state.token is None and not state.vacant:
                if state.loading is not None:
                    error = await self._loader.join(state)
                    if error is not None:
                        raise copy_error(error)  # we waited on a failed load
                    continue  # loaded now, or its loader was cancelled: look again
                await self._loader.load_one(state)
                loaded = True
            else:
                # No checkpoint here: every caller reaches one soon after, and
                # a herd of callers must not take an extra scheduler pass to join.
                self._core.check_open()
            if use:
                self._supervision.start(state)
            return state, loaded


_SERVABLE = (Action.SERVE, Action.SERVE_AND_REFRESH)


@asynccontextmanager
async def open_token_manager(
    refresher: Refresher | Mapping[TokenKind, Refresher],
    callback: TokenCallback,
    *,
    policy: RefreshPolicy | None = None,
    clock: Callable[[], float] = time.time,
    hooks: Iterable[EventHook] = (),
    rng: random.Random | None = None,
    observer: StateObserver | None = None,
) -> AsyncIterator[TokenManager]:
    """Run a `TokenManager` for the duration of the ``async with`` block.

    The manager owns a nursery: a keeper task for each key being refreshed
    (the other active keys wait on one shared alarm clock), the alarm
    clock and a sweeper. Leaving the block lets refreshes and saves in
    flight finish (up to ``policy.shutdown_grace`` seconds), then cancels
    the rest. An exception raised in the block reaches the caller as is,
    never wrapped in an exception group.

    Args:
        refresher: The OAuth client, e.g. `ShopifyOAuth`; or a mapping from
            `TokenKind` to clients, to serve several kinds from one manager
            (``{TokenKind.OFFLINE: shopify, TokenKind.CUSTOMER: customers}``).
        callback: Where tokens are persisted (`TokenCallback`).
        policy: Refresh timing; `RefreshPolicy()` by default.
        clock: Wall clock in epoch seconds; tokens are dated with it.
        hooks: Functions called with every `TokenEvent`.
        rng: The randomness of retry jitter and ``node_spread`` (a seeded
            `random.Random` makes them reproducible); a fresh one by default.
        observer: Internal: the thread-hosted service's view of fresh tokens.

    Raises:
        TypeError: ``refresher`` or ``callback`` lacks the methods it needs.
    """
    # Checked before the nursery opens, so a misuse error is not wrapped.
    routed = as_refresher(refresher)
    if not isinstance(callback, TokenCallback):
        msg = f"{type(callback).__name__} is not a TokenCallback (load_tokens/save_tokens)"
        raise TypeError(msg)
    policy = policy or RefreshPolicy()
    counters = Counters()
    body_error: BaseException | None = None
    async with trio.open_nursery() as critical, trio.open_nursery() as background:
        core = Core(
            routed,
            StoreAdapter(callback, policy.store_timeout, counters),
            policy,
            clock,
            rng or random.Random(),  # noqa: S311 - retry jitter, not cryptography
            Emitter(list(hooks)),
            critical,
            background,
            counters,
            observer=observer,
        )
        try:
            yield TokenManager(core)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, unwrapped
            body_error = exc
        finally:
            core.close()
    if body_error is not None:
        raise body_error
