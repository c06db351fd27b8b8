"""The manager's counters, and the frozen snapshot `TokenManager.statistics` returns."""

from __future__ import annotations

import attrs


@attrs.frozen
class TokenManagerStatistics:
    """A snapshot of a `TokenManager`'s state and counters.

    Attributes:
        keys_known: Keys in memory plus parked keys.
        keys_active: Keys in memory kept fresh (a keeper task runs, or their
            alarm is set for the next refresh).
        keys_parked: Keys parked after ``idle_after`` without use.
        keys_reauthorization_required: Keys waiting for a new authorization.
        keys_suspect: Keys whose token may have been revoked by a rotation
            whose outcome is unknown (never served; a retry is due).
        refreshes_in_flight: Refreshes running now.
        refreshes_succeeded: Refresh requests that returned a new pair.
        refreshes_failed: Refresh requests that failed (any reason).
        refreshes_outcome_unknown: Failed refreshes whose outcome is unknown
            (no usable answer; Shopify may have rotated).
        refreshes_adopted: Refreshes avoided because the store already had a
            newer pair (refreshed by another task, process or node).
        refreshes_deferred: Refreshes of a still-valid token left to another
            holder of the store's lock, to be looked at again after a backoff.
        app_credentials_rejected: Token requests answered 401
            ``invalid_client`` (the app's client id or secret).
        refreshes_paused: Refreshes not sent because the app's credentials
            were being rejected (the manager probes one at a time).
        saves_failed: Failed attempts to persist a rotated pair.
        saves_pending: Rotated pairs held in memory until a save lands.
        loads_failed: Failed ``load_tokens`` calls.
        stale_served: Calls answered with a still-valid token while its
            refresh was failing.
        refresher_crashes: Unexpected exceptions in keeper tasks.
    """

    keys_known: int
    keys_active: int
    keys_parked: int
    keys_reauthorization_required: int
    keys_suspect: int
    refreshes_in_flight: int
    refreshes_succeeded: int
    refreshes_failed: int
    refreshes_outcome_unknown: int
    refreshes_adopted: int
    refreshes_deferred: int
    app_credentials_rejected: int
    refreshes_paused: int
    saves_failed: int
    saves_pending: int
    loads_failed: int
    stale_served: int
    refresher_crashes: int


@attrs.define
class Counters:
    """The manager's running counters (mutable; snapshotted by `statistics`)."""

    refreshes_succeeded: int = 0
    refreshes_failed: int = 0
    refreshes_outcome_unknown: int = 0
    refreshes_adopted: int = 0
    refreshes_deferred: int = 0
    app_credentials_rejected: int = 0
    refreshes_paused: int = 0
    saves_failed: int = 0
    loads_failed: int = 0
    stale_served: int = 0
    refresher_crashes: int = 0
