"""Built-in `TokenCallback` implementations.

`PostgresStore` needs the ``postgres`` extra and `EncryptedStore` the
``crypto`` extra; they are imported on first use, so ``import shoptoken``
works without either.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._memory import MemoryStore
from ._protocol import Store
from ._sqlite import SQLiteStore
from ._url import open_store, store_from_url

if TYPE_CHECKING:
    from ._encrypted import EncryptedStore
    from ._postgres import PostgresStore

__all__ = [
    "EncryptedStore",
    "MemoryStore",
    "PostgresStore",
    "SQLiteStore",
    "Store",
    "open_store",
    "store_from_url",
]

_LAZY = {"EncryptedStore": "._encrypted", "PostgresStore": "._postgres"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
