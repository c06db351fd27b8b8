"""The decision function against DESIGN.md's decision table, row by row and by property."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoptoken import Token, TokenKey
from shoptoken._core._decision import Action, StoredView, decide, fresh_until, join_from
from shoptoken._core._flight import Flight
from shoptoken._core._state import KeyState

NOW = 1_000_000.0
EXPIRING = Token(
    access_token="shpat_a_SECRET",
    refresh_token="shprt_r_SECRET",
    expires_at=datetime.fromtimestamp(NOW + 3600, UTC),
)
LEGACY = Token(access_token="shpat_legacy_SECRET")
#: A client credentials token: expiring, no refresh token, minted again.
MINTED = attrs.evolve(EXPIRING, refresh_token=None)


@attrs.define
class State:
    """A key's state as `decide` reads it (a stand-in for KeyState)."""

    token: Token | None = EXPIRING
    stale_at: float = NOW + 100
    hard_at: float = NOW + 200
    dead_at: float = math.inf
    suspect: bool = False
    dead: bool = False
    recheck_at: float = -math.inf
    retry_at: float = -math.inf
    flight: Flight | None = None
    mintable: bool = False
    vacant: bool = False


def _minted(**fields: Any) -> State:
    """A client-credentials key's state (mintable)."""
    return attrs.evolve(State(token=MINTED, mintable=True), **fields)


IN_FLIGHT = Flight()


@pytest.mark.parametrize(
    ("row", "state", "action"),
    [
        ("no token held", State(token=None), Action.LOAD),
        ("refresh token expired", State(dead_at=NOW), Action.REAUTHORIZE),
        ("fresh", State(), Action.SERVE),
        ("stale", State(stale_at=NOW), Action.SERVE_AND_REFRESH),
        ("stale, refresh running", State(stale_at=NOW, flight=IN_FLIGHT), Action.SERVE),
        ("stale, in backoff", State(stale_at=NOW, retry_at=NOW + 1), Action.SERVE),
        ("outcome unknown", State(suspect=True), Action.REFRESH),
        ("outcome unknown, retrying", State(suspect=True, flight=IN_FLIGHT), Action.JOIN),
        ("outcome unknown, in backoff", State(suspect=True, retry_at=NOW + 1), Action.RETRY_LATER),
        ("hard-expired", State(stale_at=NOW - 2, hard_at=NOW), Action.REFRESH),
        ("hard-expired, refresh running", State(hard_at=NOW, flight=IN_FLIGHT), Action.JOIN),
        ("hard-expired, Retry-After", State(hard_at=NOW, retry_at=NOW + 60), Action.RETRY_LATER),
        ("marked dead", State(dead=True, recheck_at=NOW + 1), Action.REAUTHORIZE),
        ("marked dead, recheck due", State(dead=True, recheck_at=NOW), Action.RECHECK),
        (
            "non-expiring",
            State(token=LEGACY, stale_at=math.inf, hard_at=math.inf),
            Action.SERVE,
        ),
        (
            "expired, no refresh token",
            State(token=attrs.evolve(EXPIRING, refresh_token=None), stale_at=NOW, hard_at=NOW),
            Action.REAUTHORIZE,
        ),
        ("mintable, not loaded yet", _minted(token=None), Action.LOAD),
        ("mintable, nothing stored", _minted(token=None, vacant=True), Action.REFRESH),
        (
            "mintable, nothing stored, minting",
            _minted(token=None, vacant=True, flight=IN_FLIGHT),
            Action.JOIN,
        ),
        (
            "mintable, nothing stored, in backoff",
            _minted(token=None, vacant=True, retry_at=NOW + 1),
            Action.RETRY_LATER,
        ),
        ("mintable, fresh", _minted(), Action.SERVE),
        ("mintable, stale", _minted(stale_at=NOW), Action.SERVE_AND_REFRESH),
        ("mintable, hard-expired", _minted(stale_at=NOW - 2, hard_at=NOW), Action.REFRESH),
        ("mintable, outcome unknown", _minted(suspect=True), Action.REFRESH),
        ("mintable, marked dead", _minted(dead=True, recheck_at=NOW + 1), Action.REAUTHORIZE),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_decision_table(row: str, state: State, action: Action) -> None:
    """Each row of DESIGN.md's decision table maps to its action."""
    assert decide(state, NOW) is action, row


times = st.floats(min_value=NOW - 1000, max_value=NOW + 1000) | st.just(math.inf)
states = st.builds(
    State,
    token=st.sampled_from([EXPIRING, LEGACY, attrs.evolve(EXPIRING, refresh_token=None), None]),
    stale_at=times,
    hard_at=times,
    dead_at=times,
    suspect=st.booleans(),
    dead=st.booleans(),
    recheck_at=times,
    retry_at=times | st.just(-math.inf),
    flight=st.sampled_from([None, IN_FLIGHT]),
    mintable=st.booleans(),
    vacant=st.booleans(),
).map(
    # As KeyState keeps it: only a mintable key with no token held is vacant.
    lambda s: attrs.evolve(s, vacant=s.vacant and s.mintable and s.token is None)
)


@given(states)
def test_a_mintable_key_is_never_reauthorized_for_its_expiry(state: State) -> None:
    """Expired or absent, a mintable key is minted (or waits for one); only a dead mark stops it."""
    action = decide(state, NOW)
    if state.mintable and action is Action.REAUTHORIZE:
        assert state.dead or state.dead_at <= NOW


@given(states)
def test_the_hot_path_serves_exactly_what_decide_serves(state: State) -> None:
    """Before ``fresh_until`` decide says SERVE; the hot path never serves what decide would not."""
    if fresh_until(state) > NOW:
        assert decide(state, NOW) is Action.SERVE


@given(states)
def test_the_herd_joins_exactly_when_decide_says_join(state: State) -> None:
    """The herd's cached ``join_from`` agrees with decide's JOIN, both ways."""
    assert (join_from(state) <= NOW < state.dead_at) == (decide(state, NOW) is Action.JOIN)


@given(states)
def test_never_serves_a_suspect_dead_or_hard_expired_token(state: State) -> None:
    """A possibly revoked, dead or hard-expired token is never served."""
    action = decide(state, NOW)
    if action in (Action.SERVE, Action.SERVE_AND_REFRESH):
        assert not state.suspect
        assert not state.dead
        assert state.hard_at > NOW or state.hard_at == math.inf
        assert state.dead_at > NOW


@given(states)
def test_no_request_inside_a_retry_window(state: State) -> None:
    """Inside a backoff or Retry-After window no refresh is started, whoever asks."""
    if state.retry_at > NOW:
        assert decide(state, NOW) not in (Action.REFRESH, Action.SERVE_AND_REFRESH)


@given(states)
def test_a_running_refresh_is_joined_not_doubled(state: State) -> None:
    """With a refresh in flight, decide never starts another one."""
    if state.flight is not None:
        assert decide(state, NOW) not in (Action.REFRESH, Action.SERVE_AND_REFRESH)


def test_a_stored_view_is_judged_by_the_same_table() -> None:
    """The re-read under the store's lock: adopt a fresh pair, rotate a stale or suspect one."""
    fresh = StoredView(EXPIRING, NOW + 100, NOW + 200, math.inf, suspect=False)
    assert decide(fresh, NOW) is Action.SERVE
    assert decide(attrs.evolve(fresh, suspect=True), NOW) is Action.REFRESH
    assert decide(attrs.evolve(fresh, stale_at=NOW), NOW) is Action.SERVE_AND_REFRESH


@given(
    st.sampled_from([TokenKey.offline("my-store"), TokenKey.client_credentials("my-store")]),
    st.lists(
        st.sampled_from(
            ["install", "distrust", "trust", "dead", "fly", "land", "reschedule", "vacate"]
        ),
        max_size=12,
    ),
)
def test_a_key_state_keeps_its_hot_path_answers_derived(key: TokenKey, steps: list[str]) -> None:
    """Whatever the transitions, KeyState's cached answers equal the pure functions'."""
    state = KeyState(key)
    flight = Flight()
    for step in steps:
        if step == "vacate":
            if key.mintable and state.token is None:
                state.vacate()
        elif step == "install":
            state.install(EXPIRING, NOW + 100, NOW + 200, math.inf)
        elif step == "distrust":
            state.distrust()
        elif step == "trust":
            state.trust()
        elif step == "dead":
            state.mark_dead(NOW + 30)
        elif step == "fly":
            state.take_off(flight)
        elif step == "land":
            state.land(flight)
        else:
            state.reschedule(NOW + 50)
        assert state.fresh_until == fresh_until(state)
        assert state.join_from == join_from(state)
