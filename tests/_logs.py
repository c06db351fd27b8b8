"""Capturing the library's log events in tests (they go through the standard library's logging)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# A LogRecord's own attributes: everything else on a record is an event field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class _Collect(logging.Handler):
    """Appends each record, as an event dict, to a list."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        self.events.append(
            {"event": record.getMessage(), "log_level": record.levelname.lower(), **fields}
        )


@contextmanager
def captured_events(name: str = "shoptoken") -> Iterator[list[dict[str, Any]]]:
    """Every event logged under ``name`` (debug and up) while the block runs, as dicts."""
    events: list[dict[str, Any]] = []
    logger = logging.getLogger(name)
    handler = _Collect(events)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield events
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
