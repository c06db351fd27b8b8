"""Events: what the manager reports, to structlog and to the app's hooks.

Each event is logged to the standard library's logger ``shoptoken``
(through structlog, see `shoptoken._log`) under a namespaced name
(``shoptoken.refresh.succeeded``) and handed, as a frozen
`TokenEvent`, to every registered `EventHook`. The library never configures
logging. No event carries a secret: errors are reduced to their type and our
own message, and any text is scrubbed of the key's known tokens.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

import attrs

from ._log import get_logger

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from ._core._loading import WarmUpFigures
    from ._keys import TokenKey

log = get_logger()

REDACTED = "[redacted]"


class EventKind(enum.Enum):
    """What happened. The value is the structlog event name."""

    REFRESH_STARTED = "shoptoken.refresh.started"
    REFRESH_SUCCEEDED = "shoptoken.refresh.succeeded"
    REFRESH_FAILED = "shoptoken.refresh.failed"
    REFRESH_ADOPTED = "shoptoken.refresh.adopted"
    """Another task, process or node had refreshed already; its pair was taken."""
    REFRESH_DEFERRED = "shoptoken.refresh.deferred"
    """The store's lock was held elsewhere while the token was still valid: looked again later."""
    REAUTHORIZATION_REQUIRED = "shoptoken.reauthorization_required"
    KEY_REAUTHORIZED = "shoptoken.key.reauthorized"
    """A key marked for re-authorization found a new pair in the store (stored elsewhere)."""
    APP_CREDENTIALS_REJECTED = "shoptoken.refresh.app_credentials_rejected"
    """401 invalid_client: the app's client id or secret was refused; refreshing pauses."""
    PERSISTENCE_FAILED = "shoptoken.persistence.failed"
    PERSISTENCE_RECOVERED = "shoptoken.persistence.recovered"
    STALE_SERVED = "shoptoken.stale_served"
    REFRESHER_CRASHED = "shoptoken.refresher.crashed"
    KEY_PARKED = "shoptoken.key.parked"
    HOOK_FAILED = "shoptoken.hook.failed"
    WARM_UP_PROGRESS = "shoptoken.warm_up.progress"
    """`TokenManager.warm_up` finished a batch; ``progress`` holds the figures so far."""


_LEVELS = {
    EventKind.REFRESH_STARTED: "debug",
    EventKind.REFRESH_SUCCEEDED: "info",
    EventKind.REFRESH_FAILED: "warning",
    EventKind.REFRESH_ADOPTED: "info",
    EventKind.REFRESH_DEFERRED: "debug",
    EventKind.REAUTHORIZATION_REQUIRED: "error",
    EventKind.KEY_REAUTHORIZED: "info",
    EventKind.APP_CREDENTIALS_REJECTED: "critical",
    EventKind.PERSISTENCE_FAILED: "error",
    EventKind.PERSISTENCE_RECOVERED: "info",
    EventKind.STALE_SERVED: "warning",
    EventKind.REFRESHER_CRASHED: "error",
    EventKind.KEY_PARKED: "debug",
    EventKind.HOOK_FAILED: "error",
    EventKind.WARM_UP_PROGRESS: "debug",
}


@attrs.frozen
class TokenEvent:
    """One thing that happened to one key.

    Attributes:
        kind: What happened.
        key: The key it happened to.
        error: ``"ExceptionType: message"`` for failures, scrubbed of secrets.
        attempt: Consecutive failures so far (failures), else 0.
        retry_in: Seconds until the next attempt, when one is scheduled.
        expires_at: The (new) access token's expiry, when relevant.
        duration: Seconds the operation took, when measured.
        reason: Why a refresh ran ("scheduled", "expired", "stale", "forced",
            "keepalive") or why a save was retried.
        progress: A warm-up's figures so far (``WARM_UP_PROGRESS``; ``key``
            is then the last key of the batch).
    """

    kind: EventKind
    key: TokenKey
    error: str | None = None
    attempt: int = 0
    retry_in: float | None = None
    expires_at: datetime | None = None
    duration: float | None = None
    reason: str | None = None
    progress: WarmUpFigures | None = None


class EventHook(Protocol):
    """A function the app registers to receive every `TokenEvent`.

    Called synchronously in the manager's task: keep it quick and never let
    it block. An exception it raises is logged and otherwise ignored.
    """

    def __call__(self, event: TokenEvent, /) -> None:
        """Receive one event."""
        ...


def describe(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """Return ``"Type: message"`` for ``exc`` with every known secret removed."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


@attrs.define(eq=False)
class Emitter:
    """Logs events and fans them out to hooks; counts nothing itself."""

    hooks: list[EventHook] = attrs.field(factory=list)

    def emit(self, event: TokenEvent) -> None:
        """Log ``event`` and hand it to every hook."""
        fields = {
            name: value
            for name, value in (
                ("error", event.error),
                ("attempt", event.attempt or None),
                ("retry_in", event.retry_in),
                ("expires_at", None if event.expires_at is None else event.expires_at.isoformat()),
                ("duration", event.duration),
                ("reason", event.reason),
            )
            if value is not None
        }
        if event.progress is not None:
            fields.update(attrs.asdict(event.progress))
        getattr(log, _LEVELS[event.kind])(event.kind.value, key=str(event.key), **fields)
        for hook in self.hooks:
            try:
                hook(event)
            except Exception as exc:  # noqa: BLE001 - a broken hook must not break refreshing
                # Not log.exception: renderers that show locals would print tokens.
                log.error(  # noqa: TRY400
                    EventKind.HOOK_FAILED.value,
                    key=str(event.key),
                    hook=getattr(hook, "__qualname__", repr(hook)),
                    error=describe(exc),
                )
