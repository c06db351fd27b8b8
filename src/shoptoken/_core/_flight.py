"""Flight: one operation in progress for a key, whose outcome every waiter shares.

Used for refreshes and first loads: the first caller starts the work, the
others wait on the same `Flight` and get its token or (a copy of) its error.

Invariants:

- A flight's `trio.Event` is made only when a caller must wait (`done`):
  a refresh in the background may have no waiter at all.
- ``finish`` is called exactly once, by the task that runs the operation,
  and wakes every waiter.
- Each waiter that gets the error raises its own copy (`copy_error`), so a
  thousand waiters do not pile their tracebacks onto one exception object.
- A first load starts with the shared `UNWAITED` marker instead of a flight
  of its own: the first caller to wait replaces it with a real `Flight`,
  which the loader finishes. A fleet's start then makes no flight at all.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Final

import attrs
import trio

if TYPE_CHECKING:
    from .._token import Token


def copy_error(error: Exception) -> Exception:
    """Return a copy of ``error`` chained to it, for one more caller to raise."""
    clone = copy.copy(error).with_traceback(None)
    clone.__cause__ = error
    return clone


@attrs.define(eq=False)
class Flight:
    """One refresh (or first load) in flight for a key.

    Attributes:
        replacing: The token a forced refresh replaces (Shopify revokes it as
            it rotates): a joined flight that hands back this very token is
            not the answer its caller waited for.
        distrusted: Whether starting this (forced) flight made the key's
            token suspect: a definite "not rotated" then makes it live again.
    """

    replacing: Token | None = None
    distrusted: bool = False
    token: Token | None = None
    error: Exception | None = None
    _done: trio.Event | None = attrs.field(default=None, init=False)
    _finished: bool = attrs.field(default=False, init=False)

    def done(self) -> trio.Event:
        """The Event set when the flight finishes (made on first use).

        Callers wait on it directly (``await flight.done().wait()``): one
        coroutine frame less per waiter, which a herd of 10,000 feels.
        """
        if self._done is None:
            self._done = trio.Event()
            if self._finished:
                self._done.set()
        return self._done

    def finish(self, token: Token | None = None, error: Exception | None = None) -> None:
        """Record the outcome and wake every waiter."""
        self.token, self.error, self._finished = token, error, True
        if self._done is not None:
            self._done.set()

    def result(self) -> Token:
        """The finished flight's token, or raise (a copy of) its error."""
        if self.error is not None:
            raise copy_error(self.error)
        assert self.token is not None  # noqa: S101 - finish() sets one of the two
        return self.token


#: Marks a first load that nobody waits for yet (never finished, never waited on).
UNWAITED: Final = Flight()
