"""``python -m shoptoken.cli``: the ``shoptoken`` command."""

from ._app import main

main()
