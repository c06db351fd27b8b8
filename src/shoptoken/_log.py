"""The library's loggers: structlog's API, delivered to the standard library's logging.

Every event goes to ``logging.getLogger("shoptoken")`` (or a child) as a
`logging.LogRecord` whose message is the event name and whose attributes
are the event's fields (structlog's ``render_to_log_kwargs``). So the app
configures shoptoken's logs as it configures any library's: unconfigured,
Python shows warnings and errors on stderr and nothing below them, and never
writes to stdout. To render the records as structlog events (JSON lines,
say), give a handler a ``structlog.stdlib.ProcessorFormatter`` with
``structlog.stdlib.ExtraAdder()``: docs/operations.md shows how.

The library never configures logging, neither structlog's global settings
nor the standard library's handlers.
"""

from __future__ import annotations

import logging
from typing import Final, cast

import structlog

ROOT: Final = "shoptoken"


def get_logger(name: str = ROOT) -> structlog.stdlib.BoundLogger:
    """A structlog logger writing to the standard library's logger ``name``.

    Events below the stdlib logger's effective level are dropped first, at
    the cost of one level check.
    """
    return cast(
        "structlog.stdlib.BoundLogger",
        structlog.wrap_logger(
            logging.getLogger(name),
            processors=[structlog.stdlib.filter_by_level, structlog.stdlib.render_to_log_kwargs],
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        ),
    )
