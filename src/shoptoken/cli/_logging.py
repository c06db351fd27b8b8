"""Where the command's log events go (the library never configures logging; the app does).

The library logs to the standard library's logger ``shoptoken``; the
command, being the app, attaches the handler. ``shoptoken run`` writes one
JSON object per event to stdout, for a log collector. The interactive
commands stay quiet, since they report outcomes themselves, unless asked
(``-v``: info, ``-vv``: debug, on stderr).
"""

from __future__ import annotations

import logging
import sys
from typing import Final, TextIO

import structlog

from .._log import ROOT

LEVELS: Final = ("debug", "info", "warning", "error")


class _CurrentStream(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` or ``sys.stderr`` is when a record comes.

    The command may run inside a test runner that swaps the streams per run.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    @property
    def stream(self) -> TextIO:
        stream: TextIO = getattr(sys, self._name)
        return stream

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the current one


def _attach(handler: logging.Handler | None, level: int) -> None:
    """Make ``handler`` the one handler of the library's logger, at ``level``."""
    logger = logging.getLogger(ROOT)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    if handler is not None:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _formatter(renderer: structlog.typing.Processor, *, time_format: str) -> logging.Formatter:
    """Renders the library's records (event name, fields as attributes) with ``renderer``."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.ExtraAdder(),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt=time_format, utc=time_format == "iso"),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def configure_json(level: str) -> None:
    """Log events at ``level`` and above as JSON lines on stdout, with time and level."""
    handler = _CurrentStream("stdout")
    handler.setFormatter(
        _formatter(structlog.processors.JSONRenderer(sort_keys=False), time_format="iso")
    )
    _attach(handler, logging.getLevelName(level.upper()))


def configure_console(verbosity: int) -> None:
    """Quiet at 0; info (1) or debug (2+) events, readable, on stderr."""
    if verbosity <= 0:
        _attach(logging.NullHandler(), logging.CRITICAL + 1)
        # psycopg's pool warns on stderr at each failed connection attempt; the
        # command reports the outcome in one line instead.
        logging.getLogger("psycopg").setLevel(logging.ERROR)
        return
    handler = _CurrentStream("stderr")
    # Plain tracebacks: rich's would show local variables, tokens among them.
    renderer = structlog.dev.ConsoleRenderer(
        colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
    )
    handler.setFormatter(_formatter(renderer, time_format="%H:%M:%S"))
    _attach(handler, logging.INFO if verbosity == 1 else logging.DEBUG)
