"""Pure decisions: when a token turns stale, what state it is in, how long to back off.

Nothing here reads a clock or sleeps: callers pass ``now`` (epoch seconds of
the manager's wall clock), so every rule is tested synchronously.
"""

from __future__ import annotations

import enum
import hashlib
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from .._keys import TokenKey
    from .._token import Token
    from ._policy import RefreshPolicy


class Freshness(enum.Enum):
    """Where a stored token stands at a given instant (the decision table's rows)."""

    FRESH = "fresh"
    """Before its refresh time: serve as is."""
    STALE = "stale"
    """Past its refresh time but not hard-expired: refresh, may still be served."""
    EXPIRED = "expired"
    """Hard-expired (``now >= expires_at - skew``): must be refreshed first."""
    NON_EXPIRING = "non-expiring"
    """No expiry: serve as is (a legacy token that needs migrating)."""
    DEAD = "dead"
    """Cannot be renewed: the refresh token expired, or none and expired."""


def jitter_offset(key: TokenKey, jitter: float) -> float:
    """Return the key's fixed offset in ``[0, jitter)``.

    Derived from a hash of ``str(key)``, so it is the same in every process
    and every run, and uniform across keys.
    """
    if jitter <= 0:
        return 0.0
    digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
    # 53 bits fit a float exactly, so the fraction stays strictly below 1.
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53 * jitter


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def refresh_at(token: Token, key: TokenKey, policy: RefreshPolicy) -> float:
    """Return the wall time (epoch s) at which ``token`` turns stale.

    The one rule, for the manager and for ``shoptoken status`` alike:
    ``expires_at - refresh_before - jitter offset``, but never before the
    middle of the token's life when its ``obtained_at`` is known. So a token
    whose whole lifetime is shorter than the lead time refreshes at mid-life
    instead of at once, and can never cause a refresh loop.

    Args:
        token: The token.
        key: Its key (for the per-key jitter).
        policy: The policy.

    Returns:
        ``inf`` for tokens that never turn stale: non-expiring ones. For a
        token without a refresh token this is its hard-expiry time (it
        cannot be renewed, only served until then), unless its key is
        mintable (client credentials): that one is minted again in time.
    """
    return times(token, key, policy)[0]


def times(token: Token, key: TokenKey, policy: RefreshPolicy) -> tuple[float, float, float]:
    """Return ``token``'s `refresh_at`, `hard_expiry` and `dead_after` at once.

    Each datetime is converted once: the manager computes these for every
    token it installs (100,000 of them when a fleet starts).
    """
    rte = token.refresh_token_expires_at
    dead = math.inf if rte is None else _epoch(rte)
    if token.expires_at is None:
        return math.inf, math.inf, dead
    expires = _epoch(token.expires_at)
    hard = expires - policy.skew
    if token.refresh_token is None and not key.mintable:
        return hard, hard, dead
    stale = expires - policy.refresh_before - jitter_offset(key, policy.jitter)
    if token.obtained_at is not None:
        obtained = _epoch(token.obtained_at)
        stale = max(stale, obtained + (expires - obtained) / 2)
    return min(stale, dead), hard, dead


def classify(token: Token, now: float, stale_at: float, policy: RefreshPolicy) -> Freshness:
    """Place ``token`` in the decision table at wall time ``now``.

    Args:
        token: The token.
        now: Wall time (epoch seconds).
        stale_at: Its `refresh_at`.
        policy: The policy (for ``skew``).
    """
    hard_at, dead_at = hard_expiry(token, policy), dead_after(token)
    return classify_times(now, stale_at, hard_at, dead_at, refreshable=token.refreshable)


def freshness(token: Token, key: TokenKey, now: float, policy: RefreshPolicy) -> Freshness:
    """`classify` a token freshly read for ``key`` (its times computed here, each once)."""
    stale_at, hard_at, dead_at = times(token, key, policy)
    renewable = token.refreshable or key.mintable
    return classify_times(now, stale_at, hard_at, dead_at, refreshable=renewable)


def hard_expiry(token: Token, policy: RefreshPolicy) -> float:
    """Wall time from which ``token`` is never served: ``expires_at - skew`` (inf if none)."""
    return math.inf if token.expires_at is None else _epoch(token.expires_at) - policy.skew


def dead_after(token: Token) -> float:
    """Wall time at which the refresh token expires (inf if unknown)."""
    expires = token.refresh_token_expires_at
    return math.inf if expires is None else _epoch(expires)


def classify_times(
    now: float, stale_at: float, hard_at: float, dead_at: float, *, refreshable: bool
) -> Freshness:
    """`classify` on a token's precomputed times (the manager caches them per key).

    ``hard_at`` is inf only for non-expiring tokens.
    """
    if now >= dead_at:
        return Freshness.DEAD
    if hard_at == math.inf:
        return Freshness.NON_EXPIRING
    if now >= hard_at:
        return Freshness.EXPIRED if refreshable else Freshness.DEAD
    if now < stale_at:
        return Freshness.FRESH
    return Freshness.STALE


def backoff(
    attempt: int,
    policy: RefreshPolicy,
    *,
    rand: float,
    retry_after: float | None = None,
) -> float:
    """Return the delay before retry number ``attempt`` (1 for the first retry).

    Exponential from ``retry_initial`` by ``retry_multiplier``, capped at
    ``retry_max``; the top ``retry_jitter`` fraction of it is randomized by
    ``rand`` (in ``[0, 1)``). A server's ``Retry-After`` is a floor: we never
    retry sooner than asked, even past ``retry_max``.
    """
    if attempt < 1:
        msg = "attempt counts from 1"
        raise ValueError(msg)
    initial, growth, cap = policy.retry_initial, policy.retry_multiplier, policy.retry_max
    if growth <= 1 or initial >= cap:
        base = min(initial, cap)
    # Past this many steps the cap is reached; stopping there also keeps
    # growth ** steps from overflowing a float in a long outage.
    elif attempt - 1 >= math.log(cap / initial) / math.log(growth):
        base = cap
    else:
        base = min(cap, initial * growth ** (attempt - 1))
    delay = base * (1.0 - policy.retry_jitter * rand)
    if retry_after is not None and math.isfinite(retry_after):
        delay = max(delay, retry_after)
    return delay
