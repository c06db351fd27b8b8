from __future__ import annotations

import math
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoptoken import RefreshPolicy, Token, TokenKey
from shoptoken._core import _schedule
from shoptoken._core._schedule import Freshness, backoff, classify, jitter_offset, refresh_at

EPOCH = 1_700_000_000.0
KEY = TokenKey.offline("my-store")
DAY = 86400.0

keys = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True).map(TokenKey.offline),
    st.builds(
        TokenKey.online,
        st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
        st.integers(min_value=1, max_value=10**12),
    ),
)


def at(seconds: float) -> datetime:
    """The aware UTC datetime of epoch ``seconds``."""
    return datetime.fromtimestamp(seconds, UTC)


def token(
    *,
    expires: float | None = EPOCH + 3600,
    refresh: bool = True,
    refresh_expires: float | None = EPOCH + 90 * DAY,
    obtained: float | None = None,
) -> Token:
    """A token expiring at epoch ``expires``, refreshable unless told otherwise."""
    return Token(
        access_token="shpat_a",
        refresh_token="shprt_r" if refresh else None,
        expires_at=None if expires is None else at(expires),
        refresh_token_expires_at=None if refresh_expires is None else at(refresh_expires),
        obtained_at=None if obtained is None else at(obtained),
    )


# --- jitter_offset ---------------------------------------------------------------------


def test_jitter_offset_is_deterministic() -> None:
    """Equal keys get the same offset, however they were built."""
    first = jitter_offset(TokenKey.offline("my-store"), 60.0)
    assert jitter_offset(TokenKey.offline("MY-STORE.myshopify.com"), 60.0) == first
    assert jitter_offset(TokenKey.offline("my-store"), 60.0) == first


def test_jitter_offset_scales_with_jitter() -> None:
    """A key's offset is a fixed fraction of the jitter width."""
    assert jitter_offset(KEY, 120.0) == 2 * jitter_offset(KEY, 60.0)


@pytest.mark.parametrize("jitter", [0.0, -1.0])
def test_jitter_offset_zero_without_jitter(jitter: float) -> None:
    """No jitter width means no offset."""
    assert jitter_offset(KEY, jitter) == 0.0


@given(key=keys, jitter=st.floats(min_value=1e-6, max_value=1e6))
def test_jitter_offset_in_range(key: TokenKey, jitter: float) -> None:
    """The offset lies in [0, jitter)."""
    assert 0.0 <= jitter_offset(key, jitter) < jitter


def test_jitter_offset_spreads_keys() -> None:
    """1000 shops spread over the jitter window: each tenth gets 50 to 150 of them."""
    buckets = [0] * 10
    for i in range(1000):
        offset = jitter_offset(TokenKey.offline(f"shop-{i}"), 60.0)
        buckets[int(offset // 6.0)] += 1
    assert sum(buckets) == 1000
    assert all(50 <= count <= 150 for count in buckets), buckets


def test_jitter_offset_different_kinds_differ() -> None:
    """Online keys of one shop do not all share the offline key's offset."""
    offsets = {jitter_offset(TokenKey.online("my-store", uid), 60.0) for uid in range(1, 21)}
    offsets.add(jitter_offset(KEY, 60.0))
    assert len(offsets) == 21


def test_jitter_offset_top_digest_stays_below_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even the largest possible digest maps strictly below the jitter width."""

    class _TopDigest:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def digest(self) -> bytes:
            return b"\xff" * 8

    # Replace only the module's view of hashlib, not hashlib itself.
    monkeypatch.setattr(_schedule, "hashlib", SimpleNamespace(blake2b=_TopDigest))
    assert jitter_offset(KEY, 60.0) < 60.0


# --- refresh_at ------------------------------------------------------------------------


@given(
    key=keys,
    refresh_before=st.floats(min_value=0, max_value=3600),
    jitter=st.floats(min_value=0, max_value=600),
    extra=st.floats(min_value=1.0, max_value=90 * DAY),
    with_obtained=st.booleans(),
)
def test_refresh_at_lies_in_policy_window(
    key: TokenKey, refresh_before: float, jitter: float, extra: float, with_obtained: bool
) -> None:
    """A long-lived refreshable token goes stale in [exp - before - jitter, exp - before]."""
    policy = RefreshPolicy(refresh_before=refresh_before, jitter=jitter)
    lifetime = 2 * (refresh_before + jitter) + extra
    tok = token(
        expires=EPOCH + lifetime, refresh_expires=None, obtained=EPOCH if with_obtained else None
    )
    assert tok.expires_at is not None
    expires = tok.expires_at.timestamp()
    result = refresh_at(tok, key, policy)
    assert expires - refresh_before - jitter <= result <= expires - refresh_before


def test_refresh_at_exact_with_jitter_off() -> None:
    """Without jitter a token goes stale exactly refresh_before before expiry."""
    policy = RefreshPolicy(refresh_before=300.0, jitter=0.0)
    assert refresh_at(token(), KEY, policy) == EPOCH + 3300.0
    assert refresh_at(token(obtained=EPOCH), KEY, policy) == EPOCH + 3300.0


def test_refresh_at_uses_the_keys_offset() -> None:
    """The jitter offset moves the refresh time earlier by exactly the key's offset."""
    policy = RefreshPolicy()
    expected = EPOCH + 3600.0 - 300.0 - jitter_offset(KEY, 60.0)
    assert refresh_at(token(), KEY, policy) == expected


def test_refresh_at_short_lifetime_is_mid_life() -> None:
    """A just-obtained token living less than the lead refreshes at mid-life."""
    policy = RefreshPolicy(refresh_before=300.0, jitter=60.0)
    tok = token(expires=EPOCH + 200.0, obtained=EPOCH)
    assert refresh_at(tok, KEY, policy) == EPOCH + 100.0


@given(
    key=keys,
    lifetime=st.floats(min_value=1e-3, max_value=2 * 3600.0),
    refresh_before=st.floats(min_value=0, max_value=3600),
)
def test_refresh_at_never_at_or_before_obtained(
    key: TokenKey, lifetime: float, refresh_before: float
) -> None:
    """With obtained_at, the refresh time is always after it (no refresh loop)."""
    policy = RefreshPolicy(refresh_before=refresh_before)
    tok = token(expires=EPOCH + lifetime, refresh_expires=None, obtained=EPOCH)
    assert refresh_at(tok, key, policy) > EPOCH


def test_refresh_at_capped_at_refresh_token_expiry() -> None:
    """A refresh token dying before the stale time pulls the refresh time to its death."""
    policy = RefreshPolicy()
    tok = token(refresh_expires=EPOCH + 100.0)
    assert refresh_at(tok, KEY, policy) == EPOCH + 100.0
    assert refresh_at(attrs.evolve(tok, obtained_at=at(EPOCH)), KEY, policy) == EPOCH + 100.0


@pytest.mark.parametrize("refresh", [True, False])
def test_refresh_at_non_expiring_is_inf(refresh: bool) -> None:
    """A token without expiry never turns stale."""
    tok = token(expires=None, refresh=refresh)
    assert refresh_at(tok, KEY, RefreshPolicy()) == math.inf
    assert refresh_at(attrs.evolve(tok, obtained_at=at(EPOCH)), KEY, RefreshPolicy()) == math.inf


def test_refresh_at_without_refresh_token_is_hard_expiry() -> None:
    """A token that cannot be refreshed is served until expires_at - skew."""
    tok = token(refresh=False, refresh_expires=None)
    assert refresh_at(tok, KEY, RefreshPolicy(skew=60.0)) == EPOCH + 3540.0
    assert refresh_at(tok, KEY, RefreshPolicy(skew=0.0)) == EPOCH + 3600.0


# --- classify --------------------------------------------------------------------------

POLICY = RefreshPolicy(refresh_before=300.0, jitter=0.0, skew=60.0)
STALE_AT = EPOCH + 3300.0
HARD = EPOCH + 3540.0  # expires_at - skew
RT_DIES = EPOCH + 90 * DAY


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (EPOCH, Freshness.FRESH),
        (STALE_AT - 0.001, Freshness.FRESH),
        (STALE_AT, Freshness.STALE),
        (HARD - 0.001, Freshness.STALE),
        (HARD, Freshness.EXPIRED),
        (EPOCH + 3600.0, Freshness.EXPIRED),
        (RT_DIES - 0.001, Freshness.EXPIRED),
        (RT_DIES, Freshness.DEAD),
        (RT_DIES + DAY, Freshness.DEAD),
    ],
)
def test_classify_refreshable(now: float, expected: Freshness) -> None:
    """A refreshable token walks FRESH, STALE, EXPIRED, DEAD with exact boundaries."""
    tok = token()
    assert refresh_at(tok, KEY, POLICY) == STALE_AT
    assert classify(tok, now, STALE_AT, POLICY) is expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (EPOCH, Freshness.FRESH),
        (HARD - 0.001, Freshness.FRESH),
        (HARD, Freshness.DEAD),
        (EPOCH + 3600.0, Freshness.DEAD),
    ],
)
def test_classify_without_refresh_token(now: float, expected: Freshness) -> None:
    """A token without refresh token is FRESH until expires_at - skew, then DEAD."""
    tok = token(refresh=False, refresh_expires=None)
    stale_at = refresh_at(tok, KEY, POLICY)
    assert stale_at == HARD
    assert classify(tok, now, stale_at, POLICY) is expected


@pytest.mark.parametrize("now", [EPOCH, EPOCH + 10 * 365 * DAY])
@pytest.mark.parametrize("refresh", [True, False])
def test_classify_non_expiring(now: float, refresh: bool) -> None:
    """A token without expiry is NON_EXPIRING at any time."""
    tok = token(expires=None, refresh=refresh, refresh_expires=None)
    assert classify(tok, now, math.inf, POLICY) is Freshness.NON_EXPIRING


@pytest.mark.parametrize(
    ("now", "expected"),
    [(EPOCH + 9.999, Freshness.NON_EXPIRING), (EPOCH + 10.0, Freshness.DEAD)],
)
def test_classify_non_expiring_with_dead_refresh_token(now: float, expected: Freshness) -> None:
    """A non-expiring token whose refresh token expired is DEAD from that instant."""
    tok = token(expires=None, refresh_expires=EPOCH + 10.0)
    assert classify(tok, now, math.inf, POLICY) is expected


def test_classify_refresh_token_dead_while_fresh() -> None:
    """An expired refresh token makes even a not-yet-stale token DEAD."""
    tok = token(refresh_expires=EPOCH + 10.0)
    assert classify(tok, EPOCH + 10.0, STALE_AT, POLICY) is Freshness.DEAD
    assert classify(tok, EPOCH + 9.0, STALE_AT, POLICY) is Freshness.FRESH


def test_classify_skew_zero_expires_at_expires_at() -> None:
    """With skew 0 the hard expiry is expires_at itself."""
    policy = attrs.evolve(POLICY, skew=0.0)
    tok = token()
    assert classify(tok, EPOCH + 3599.999, STALE_AT, policy) is Freshness.STALE
    assert classify(tok, EPOCH + 3600.0, STALE_AT, policy) is Freshness.EXPIRED


# --- backoff ---------------------------------------------------------------------------

DEFAULT = RefreshPolicy()  # retry_initial=1, multiplier=2, retry_max=120, retry_jitter=0.5


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999])
def test_backoff_first_attempt(rand: float) -> None:
    """Attempt 1 waits retry_initial * (1 - retry_jitter * rand)."""
    policy = RefreshPolicy(retry_initial=3.0, retry_max=100.0, retry_jitter=0.4)
    assert backoff(1, policy, rand=rand) == 3.0 * (1 - 0.4 * rand)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (1, 1.0),
        (2, 2.0),
        (3, 4.0),
        (4, 8.0),
        (5, 16.0),
        (6, 32.0),
        (7, 64.0),
        (8, 120.0),
        (9, 120.0),
        (50, 120.0),
    ],
)
def test_backoff_doubles_up_to_cap(attempt: int, expected: float) -> None:
    """The delay doubles per attempt and is capped at retry_max."""
    assert backoff(attempt, DEFAULT, rand=0.0) == expected
    assert backoff(attempt, DEFAULT, rand=0.5) == expected * 0.75


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, 30.0, 30.0),
        (1, 500.0, 500.0),  # above retry_max: still honoured
        (7, 5.0, 64.0),  # below the computed delay: no effect
        (7, 64.0, 64.0),
        (1, 0.0, 1.0),
        (20, 3600.0, 3600.0),
    ],
)
def test_backoff_retry_after_is_a_floor(attempt: int, retry_after: float, expected: float) -> None:
    """Retry-After is a lower bound on the delay, even past retry_max."""
    assert backoff(attempt, DEFAULT, rand=0.0, retry_after=retry_after) == expected


@pytest.mark.parametrize("attempt", [0, -1, -(10**6)])
def test_backoff_rejects_attempt_below_one(attempt: int) -> None:
    """Attempts count from 1."""
    with pytest.raises(ValueError, match="attempt"):
        backoff(attempt, DEFAULT, rand=0.0)


@pytest.mark.parametrize("rand", [0.0, 0.5])
def test_backoff_huge_attempt(rand: float) -> None:
    """Attempt 10**6 returns the capped delay, without overflow or a long loop."""
    assert backoff(10**6, DEFAULT, rand=rand) == 120.0 * (1 - 0.5 * rand)


@pytest.mark.parametrize("initial", [1.0, 10.0, 100.0])
def test_backoff_huge_multiplier(initial: float) -> None:
    """A multiplier near float max caps at retry_max instead of overflowing to inf."""
    policy = RefreshPolicy(retry_initial=initial, retry_max=120.0, retry_multiplier=1e308)
    assert backoff(2, policy, rand=0.0) == 120.0
    assert backoff(10**6, policy, rand=0.0) == 120.0


def test_backoff_small_multiplier_reaches_cap() -> None:
    """A slow-growing delay still reaches retry_max after enough attempts."""
    policy = RefreshPolicy(retry_multiplier=1.01)
    assert backoff(1000, policy, rand=0.0) == 120.0


@given(
    attempt=st.integers(min_value=1, max_value=65),
    initial=st.floats(min_value=1e-3, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=1000.0),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    retry_jitter=st.floats(min_value=0.0, max_value=1.0),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_within_jitter_band(
    *,
    attempt: int,
    initial: float,
    extra: float,
    multiplier: float,
    retry_jitter: float,
    rand: float,
) -> None:
    """The delay lies in [base * (1 - retry_jitter), base], base = capped exponential."""
    policy = RefreshPolicy(
        retry_initial=initial,
        retry_max=initial + extra,
        retry_multiplier=multiplier,
        retry_jitter=retry_jitter,
    )
    base = min(initial * multiplier ** (attempt - 1), policy.retry_max)
    delay = backoff(attempt, policy, rand=rand)
    # Step-by-step products differ from the power by a few ulps, nothing more.
    tolerance = 1e-12
    assert base * (1 - retry_jitter) * (1 - tolerance) <= delay <= base * (1 + tolerance)


# --- RefreshPolicy ---------------------------------------------------------------------

NON_NEGATIVE = [
    "refresh_before",
    "jitter",
    "skew",
    "retry_jitter",
    "keepalive_before",
    "shutdown_grace",
]
POSITIVE = [
    "retry_initial",
    "retry_max",
    "retry_multiplier",
    "idle_after",
    "sweep_interval",
    "lock_timeout",
]


@pytest.mark.parametrize("field", NON_NEGATIVE + POSITIVE)
@pytest.mark.parametrize("value", [-1.0, -1e-9, math.nan, math.inf, -math.inf, True, False, "1"])
def test_policy_rejects_bad_numbers(field: str, value: object) -> None:
    """Negative, NaN, infinite, bool and non-number values raise ValueError."""
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        RefreshPolicy(**kwargs)


@pytest.mark.parametrize("field", POSITIVE)
def test_policy_rejects_zero_where_positive(field: str) -> None:
    """Delays, intervals and the multiplier must be > 0."""
    kwargs: dict[str, Any] = {field: 0.0}
    with pytest.raises(ValueError, match=field):
        RefreshPolicy(**kwargs)


@pytest.mark.parametrize("field", NON_NEGATIVE)
def test_policy_accepts_zero_where_non_negative(field: str) -> None:
    """Lead times, jitter, skew and grace may be 0."""
    kwargs: dict[str, Any] = {field: 0}
    assert getattr(RefreshPolicy(**kwargs), field) == 0


def test_policy_retry_jitter_is_a_fraction() -> None:
    """retry_jitter above 1 raises ValueError; exactly 1 is allowed."""
    with pytest.raises(ValueError, match="retry_jitter"):
        RefreshPolicy(retry_jitter=1.5)
    assert RefreshPolicy(retry_jitter=1.0).retry_jitter == 1.0


def test_policy_retry_max_not_below_initial() -> None:
    """retry_max below retry_initial raises ValueError; equal is allowed."""
    with pytest.raises(ValueError, match="retry_max"):
        RefreshPolicy(retry_initial=10.0, retry_max=5.0)
    assert RefreshPolicy(retry_initial=10.0, retry_max=10.0).retry_max == 10.0


@pytest.mark.parametrize("cap", [0, -1, 1.5, 2.0, True, "4", None])
def test_policy_rejects_bad_max_concurrent_refreshes(cap: object) -> None:
    """max_concurrent_refreshes must be an int >= 1 (not a bool or float)."""
    with pytest.raises(ValueError, match="max_concurrent_refreshes"):
        RefreshPolicy(max_concurrent_refreshes=cap)  # type: ignore[arg-type]


def test_policy_defaults() -> None:
    """The defaults match Shopify's 60-minute tokens and the design notes."""
    policy = RefreshPolicy()
    assert policy.refresh_before == 300.0
    assert policy.jitter == 60.0
    assert policy.skew == 60.0
    assert policy.stale_while_error is False
    assert policy.idle_after >= 86400.0
    assert policy.max_concurrent_refreshes >= 1
    assert policy.retry_max < policy.refresh_before


def test_policy_is_frozen() -> None:
    """A policy cannot be mutated after construction."""
    policy = RefreshPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.jitter = 0.0  # type: ignore[misc]
