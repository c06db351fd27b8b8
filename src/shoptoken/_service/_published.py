"""Published: each key's fresh token, readable from any thread without a lock.

The trio thread is the only writer; caller threads only read. Invariant:
while an `Entry` is in the dict, ``entry.fresh_until`` is never later than
the manager's own ``KeyState.fresh_until`` for that key. The manager tells
`Published.changed` of every transition synchronously, right after it
re-derives ``fresh_until`` and before it awaits anything (a refresh
distrusts the old token before its request is sent), so the copy is
replaced or withdrawn before the trio thread could act on the change.

A reader checks ``now < entry.fresh_until`` on the entry object it holds and
returns that entry's token: an entry's token never changes, and withdrawing
an entry first sets its ``fresh_until`` to ``-inf`` and then removes it, so
a reader holding a withdrawn entry finds it expired. A read therefore takes
effect at the instant of its check, when the manager would have served the
same token (as a trio task's ``valid_token`` would).

Reads count as use: a reader stamps ``entry.read_at``; the manager asks
`last_used` before it parks an idle key, and a withdrawn entry's stamp is
folded into the key's ``used`` (so a rotation does not forget the reads).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._core._state import KeyState
    from .._keys import TokenKey
    from .._token import Token


class Entry:
    """One key's published token and the wall time it stays fresh until."""

    __slots__ = ("fresh_until", "owner", "read_at", "token")

    def __init__(self, token: Token, fresh_until: float, owner: KeyState, read_at: float) -> None:
        self.token = token
        self.fresh_until = fresh_until
        self.owner = owner
        #: Written by readers (the latest read's wall time); a plain float store.
        self.read_at = read_at

    def __repr__(self) -> str:
        return f"Entry(fresh_until={self.fresh_until!r})"


class Published:
    """The fresh tokens a `TokenService` serves without a thread hop (a `StateObserver`)."""

    def __init__(self) -> None:
        #: Read by any thread; written only by the trio thread.
        self.entries: dict[TokenKey, Entry] = {}

    def changed(self, state: KeyState) -> None:
        """Publish, replace or withdraw ``state``'s entry to match its ``fresh_until``."""
        entries = self.entries
        old = entries.get(state.key)
        token, fresh_until = state.token, state.fresh_until
        if old is not None and old.owner is not state and old.owner.fresh_until > -math.inf:
            return  # a retired state's late news must not touch the current one's entry
        if token is None or fresh_until == -math.inf:
            if old is not None:
                old.fresh_until = -math.inf  # readers holding it see it expired
                del entries[state.key]
                # Its reads stay counted as use when the entry goes (a rotation
                # withdraws it first): folded into the key's own use stamp.
                state.used = max(state.used, old.read_at)
            return
        if old is not None:
            if old.token is token and old.fresh_until == fresh_until:
                return
            old.fresh_until = -math.inf
        read_at = old.read_at if old is not None else -math.inf
        entries[state.key] = Entry(token, fresh_until, state, read_at)

    def last_used(self, state: KeyState) -> float:
        """The latest read of ``state``'s key from the published view (-inf if none)."""
        entry = self.entries.get(state.key)
        return -math.inf if entry is None else entry.read_at

    def withdraw_all(self) -> None:
        """Withdraw every entry (the service closes, or this process is a fork's child)."""
        for entry in list(self.entries.values()):
            entry.fresh_until = -math.inf
        self.entries.clear()
