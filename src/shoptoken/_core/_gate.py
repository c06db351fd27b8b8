"""AppGate: while the app's own credentials are refused, one probe at a time.

A 401 ``invalid_client`` says the app's client id or secret is wrong (a
misconfiguration, or a rotated secret): every shop would get the same
answer, and none of them is at fault. So the whole manager pauses: no token
request is sent until the pause ends; then one request goes as a probe while
every other waits its turn; the probe's answer closes the gate again (with a
longer pause) or opens it for everyone.
"""

from __future__ import annotations

import math

import attrs


@attrs.define
class AppGate:
    """The manager-wide pause on token requests after ``invalid_client``."""

    failures: int = 0
    paused_until: float = -math.inf
    probing: bool = False

    def admit(self, now: float, probe_wait: float) -> float | None:
        """May a token request be sent at ``now``? None if so, else seconds to wait.

        Args:
            now: Wall time (epoch seconds).
            probe_wait: What to tell a request that finds a probe in flight.
        """
        if not self.failures:
            return None
        if now < self.paused_until:
            return self.paused_until - now
        if self.probing:
            return probe_wait
        self.probing = True
        return None

    def rejected(self, now: float, pause: float) -> None:
        """A request got ``invalid_client``: pause every request for ``pause`` seconds."""
        if self.probing or now >= self.paused_until:
            self.failures += 1
            self.paused_until = now + pause
        self.probing = False

    def answered(self) -> None:
        """A request got any other answer: the app's credentials are accepted."""
        self.failures, self.paused_until, self.probing = 0, -math.inf, False

    def unanswered(self) -> None:
        """A probe ended with no answer: the next request probes again."""
        self.probing = False

    @property
    def paused(self) -> bool:
        """Whether requests are paused (or probing)."""
        return self.failures > 0
