"""Retry-After windows: after a 429, Shopify keeps refusing until the delay has passed.

When the fake answers a shop's Admin token endpoint with 429 and a
``Retry-After`` (an injected fault), it remembers until when; a request to
that endpoint for the same shop before then is refused with 429 again, its
``Retry-After`` the time still to wait, and counted: a client that honours
``Retry-After`` never meets one. Times are the fake's wall clock.
"""

from __future__ import annotations

import math

import attrs

from ._answer import Answer


@attrs.define(eq=False)
class RetryAfterWindows:
    """Each shop's open Retry-After window (wall time it closes)."""

    _until: dict[str, float] = attrs.field(factory=dict)

    def answered(self, shop: str, answer: Answer, now: float) -> None:
        """Note ``answer`` sent to ``shop``: a 429 with ``Retry-After`` opens a window."""
        if answer.status != 429 or answer.drop is not None:  # noqa: PLR2004 - Too Many Requests
            return
        for name, value in answer.headers:
            if name.lower() == "retry-after":
                self._until[shop] = max(self._until.get(shop, now), now + float(value))

    def refusal(self, shop: str, now: float) -> Answer | None:
        """The 429 for a request to ``shop`` at ``now`` inside its window; None outside."""
        until = self._until.get(shop)
        if until is None:
            return None
        if now >= until:
            del self._until[shop]
            return None
        # Whole milliseconds, rounded up: waiting that long is always enough.
        wait = math.ceil((until - now) * 1000) / 1000
        return Answer.json(
            429, {"errors": "Too Many Requests"}, headers={"Retry-After": f"{wait:g}"}
        )
