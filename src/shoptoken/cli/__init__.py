"""The ``shoptoken`` command: demo, status, run, refresh, forget, migrate, fake-shopify.

Needs the ``cli`` extra (``pip install 'shoptoken[cli]'``). Without it,
``import shoptoken.cli`` still works and `main` says which extra to install
instead of failing with a traceback.
"""

from __future__ import annotations

import sys
from typing import Final

__all__ = ["main"]

#: The modules the ``cli`` extra installs (hypercorn through ``testing``).
_EXTRA_MODULES: Final = frozenset({"click", "rich", "hypercorn"})
_HINT: Final = "shoptoken: the command needs the 'cli' extra: pip install 'shoptoken[cli]'"


def main() -> None:
    """Run the ``shoptoken`` command (the console script's entry point)."""
    try:
        from ._app import main as run  # noqa: PLC0415 - needs the optional cli extra
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _EXTRA_MODULES:
            raise
        print(_HINT, file=sys.stderr)  # noqa: T201 - the command's one line, before click exists
        sys.exit(1)
    run()
