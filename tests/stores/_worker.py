"""A separate OS process that takes a store's lock, for the cross-process tests.

Run as ``python _worker.py CONFIG_JSON``. CONFIG has ``store`` (``{"sqlite":
PATH}`` or ``{"postgres": DSN, "schema": S, "table": T}``), ``key``, and
``action``:

- ``"hold"``: take ``locked(key)``, save ``access_token`` inside it (not
  committed), print ``locked``, then hold until killed.
- ``"wait"``: print ``waiting``, then try ``locked(key, timeout=TIMEOUT)``
  and print one JSON line: ``{"result": "granted" | "timeout", "elapsed": s,
  "access_token": the token read under the lock}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import trio

from shoptoken import LockTimeout, Token, TokenKey


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _store(config: dict[str, Any]) -> Any:
    if "sqlite" in config:
        from shoptoken.stores import SQLiteStore

        return SQLiteStore(config["sqlite"])
    from shoptoken.stores import PostgresStore

    return PostgresStore(config["postgres"], schema=config["schema"], table=config["table"])


async def main(config: dict[str, Any]) -> None:
    """Do what ``config`` asks."""
    key = TokenKey.parse(config["key"])
    async with _store(config["store"]) as store:
        if config["action"] == "hold":
            async with store.locked(key, timeout=10.0) as handle:
                await handle.save(Token(access_token=config["access_token"]))
                _say("locked")
                await trio.sleep_forever()
        _say("waiting")
        start = trio.current_time()
        try:
            async with store.locked(key, timeout=config["timeout"]) as handle:
                result = "granted"
                token = handle.token
        except LockTimeout:
            result, token = "timeout", None
        _say(
            json.dumps(
                {
                    "result": result,
                    "elapsed": trio.current_time() - start,
                    "access_token": None if token is None else token.access_token,
                }
            )
        )


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
