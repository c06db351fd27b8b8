"""The ``shoptoken`` command: demo, status, run, refresh, forget, migrate, fake-shopify.

Needs the ``cli`` extra (``pip install 'shoptoken[cli]'``).
"""

from ._app import main

__all__ = ["main"]
