"""Where the command's log events go (the library never configures logging; the app does).

``shoptoken run`` writes one JSON object per event to stdout, for a log
collector. The interactive commands stay quiet, since they report outcomes
themselves, unless asked (``-v``: info, ``-vv``: debug, on stderr).
"""

from __future__ import annotations

import logging
import sys
from typing import Final, NoReturn

import structlog

LEVELS: Final = ("debug", "info", "warning", "error")


def configure_json(level: str) -> None:
    """Log events at ``level`` and above as JSON lines on stdout, with time and level."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        # Not cached: the library's module-level loggers must see this configuration.
        cache_logger_on_first_use=False,
    )


def _drop(_logger: object, _name: str, _event: object) -> NoReturn:
    raise structlog.DropEvent


def configure_console(verbosity: int) -> None:
    """Quiet at 0; info (1) or debug (2+) events, readable, on stderr."""
    if verbosity <= 0:
        structlog.configure(processors=[_drop], cache_logger_on_first_use=False)
        # psycopg's pool warns on stderr at each failed connection attempt; the
        # command reports the outcome in one line instead.
        logging.getLogger("psycopg").setLevel(logging.ERROR)
        return
    level = logging.INFO if verbosity == 1 else logging.DEBUG
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            # Plain tracebacks: rich's would show local variables, tokens among them.
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            ),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
