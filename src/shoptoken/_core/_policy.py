"""RefreshPolicy: when to refresh, how to retry, when to park."""

from __future__ import annotations

import math
import warnings

import attrs


def _non_negative(
    instance: object,  # noqa: ARG001 - attrs validator signature
    attribute: attrs.Attribute[float],
    value: float,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"RefreshPolicy.{attribute.name} must be a finite number, not {value!r}"
        raise ValueError(msg)
    if value < 0:
        msg = f"RefreshPolicy.{attribute.name} must be >= 0, not {value!r}"
        raise ValueError(msg)


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _non_negative(instance, attribute, value)
    if value == 0:
        msg = f"RefreshPolicy.{attribute.name} must be > 0"
        raise ValueError(msg)


def _field(default: float, *, positive: bool = False) -> float:
    return attrs.field(default=default, validator=_positive if positive else _non_negative)


@attrs.frozen
class RefreshPolicy:
    """How a `TokenManager` schedules, retries and parks refreshes (seconds).

    The defaults suit Shopify's 60-minute access tokens and 90-day refresh
    tokens. Every key refreshes inside
    ``[expires_at - refresh_before - jitter, expires_at - refresh_before]``,
    at an offset fixed per key (a hash of the key), so a fleet installed in
    the same minute does not refresh in the same second.

    Attributes:
        refresh_before: Lead time before expiry at which a token turns stale
            and is refreshed. 300 s, as in Shopify's own libraries.
        jitter: Width of the per-key spread added to the lead time (60 s).
        skew: A token is hard-expired ``skew`` seconds before its
            ``expires_at`` and never served after that, allowing for clock
            drift and request latency (60 s).
        stale_while_error: Deprecated, no effect: a token that is still
            valid (before its hard expiry, and not possibly revoked by a
            rotation) is now always served while its refresh fails, and an
            expired or possibly revoked one never is. Setting it warns.
        retry_initial: First retry delay after a failed refresh or save (1 s).
        retry_max: Cap on the retry delay (120 s): well inside the 300 s
            lead, so several retries happen before a token expires.
        retry_multiplier: Growth of the delay per attempt (2).
        retry_jitter: Fraction of each delay that is randomized (0.5), so
            shops that failed together do not retry together.
        max_concurrent_refreshes: Cap on refresh requests in flight (16),
            to stay under Shopify's rate limits when many tokens are due.
        idle_after: A key not used (`valid_token`/`put_token`) for this long
            is parked: no task, not cached (24 h).
        keepalive_before: A parked key whose refresh token expires within
            this window is refreshed by the sweeper (7 days of the 90).
        sweep_interval: Longest time between sweeper passes (1 h).
        lock_timeout: Timeout of a store's cross-process lock (30 s).
        stale_lock_timeout: How long a refresh that is not yet urgent (the
            token is stale but still valid, and not being replaced) waits for
            the store's lock (0.05 s). Another process or node holding it is
            rotating that key, or writing: rather than queue, this manager
            keeps serving its token, looks again after a backoff and adopts
            the stored pair (``shoptoken.refresh.deferred``). Past the hard
            expiry, refreshes wait up to ``lock_timeout``.
        store_timeout: Longest a refresh waits for one ``load_tokens`` (the
            re-read) or ``save_tokens`` call (60 s). A re-read that hangs
            fails the refresh; a save that hangs counts as a failed save: the
            pair is served from memory and the save retried. First loads are
            not bounded: their caller's own cancel scope bounds them.
        node_spread: For several processes or nodes sharing one store: each
            manager delays each key's refresh by its own random offset in
            ``[0, node_spread)`` (capped at half the time left before hard
            expiry). The first to wake rotates; the others, waking later,
            find the new pair with a plain read of the store and adopt it,
            without the lock (0: off, every node wakes at the same moment).
            A few tens of seconds suits Shopify's 300 s lead.
        drain: Seconds a refresh of a still-valid token withholds it before
            the rotation is sent (0: off). Shopify revokes the old access
            token the moment it rotates, so an API call made with it just
            before gets a 401; withheld a little (callers wait for the
            refresh meanwhile), the calls already made reach Shopify first.
            Set it to about your API calls' p99 latency (the demo uses 1 s).
        recheck_interval: A key marked for re-authorization re-reads the
            store at most this often when asked (30 s): another process (the
            web app that handled the merchant's new install) may have stored
            a new pair. The sweeper rechecks such keys on each pass too.
        shutdown_grace: On leaving the manager, how long an in-flight
            refresh-and-save may still run (10 s).
    """

    refresh_before: float = _field(300.0)
    jitter: float = _field(60.0)
    skew: float = _field(60.0)
    stale_while_error: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )
    retry_initial: float = _field(1.0, positive=True)
    retry_max: float = _field(120.0, positive=True)
    retry_multiplier: float = _field(2.0, positive=True)
    retry_jitter: float = _field(0.5)
    max_concurrent_refreshes: int = attrs.field(default=16)
    idle_after: float = _field(86400.0, positive=True)
    keepalive_before: float = _field(7 * 86400.0)
    sweep_interval: float = _field(3600.0, positive=True)
    lock_timeout: float = _field(30.0, positive=True)
    stale_lock_timeout: float = _field(0.05)
    shutdown_grace: float = _field(10.0)
    node_spread: float = _field(0.0)
    store_timeout: float = _field(60.0, positive=True)
    recheck_interval: float = _field(30.0)
    drain: float = _field(0.0)

    def __attrs_post_init__(self) -> None:
        if self.stale_while_error:
            warnings.warn(
                "RefreshPolicy.stale_while_error has no effect: a still-valid token is "
                "always served while its refresh fails, and never an expired or revoked one",
                DeprecationWarning,
                stacklevel=3,
            )
        if self.retry_jitter > 1:
            msg = "RefreshPolicy.retry_jitter is a fraction in [0, 1]"
            raise ValueError(msg)
        if self.retry_multiplier < 1:
            msg = "RefreshPolicy.retry_multiplier must be >= 1 (delays do not shrink)"
            raise ValueError(msg)
        if self.retry_max < self.retry_initial:
            msg = "RefreshPolicy.retry_max must be >= retry_initial"
            raise ValueError(msg)
        if self.stale_lock_timeout > self.lock_timeout:
            msg = "RefreshPolicy.stale_lock_timeout must be <= lock_timeout"
            raise ValueError(msg)
        cap = self.max_concurrent_refreshes
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            msg = f"RefreshPolicy.max_concurrent_refreshes must be an int >= 1, not {cap!r}"
            raise ValueError(msg)
