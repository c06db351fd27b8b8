"""``python -m shoptoken.cli``: the ``shoptoken`` command."""

from . import main

main()
