"""The stores' locks between real OS processes, including one killed while holding it.

Each case starts ``_worker.py`` processes (``sys.executable``): one holds the
key's lock with an uncommitted save, others wait for it. Real time: these
are separate processes.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from shoptoken import LockTimeout, Token, TokenKey
from shoptoken.stores import SQLiteStore

from .conftest import Store

WORKER = Path(__file__).with_name("_worker.py")
KEY = TokenKey.offline("my-store")
COMMITTED = Token(access_token="shpat_committed", refresh_token="shprt_committed")


@attrs.define(eq=False)
class Worker:
    """A running ``_worker.py`` and its output, line by line."""

    process: trio.Process
    stderr: Path
    _buffer: bytearray = attrs.Factory(bytearray)

    async def line(self) -> str:
        """The worker's next output line (fails the test after 15 s)."""
        assert self.process.stdout is not None
        with trio.fail_after(15):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some()
                if not chunk:
                    pytest.fail(f"worker exited: {self.stderr.read_text()[-2000:]}")
                self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        return line.decode()

    async def expect(self, text: str) -> None:
        """Read the next line and check it is ``text``."""
        assert await self.line() == text

    async def result(self) -> dict[str, Any]:
        """The JSON result line of a ``wait``."""
        result: dict[str, Any] = json.loads(await self.line())
        return result


@pytest.fixture(params=["sqlite", "postgres"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The store's config for the workers (a sync fixture: its skips keep their reason)."""
    if request.param == "sqlite":
        return {"sqlite": str(tmp_path / "tokens.db")}
    return {
        "postgres": request.getfixturevalue("pg_dsn"),
        "schema": request.getfixturevalue("pg_schema"),
        "table": f"p_{secrets.token_hex(4)}",
    }


@pytest.fixture
async def store(config: dict[str, Any]) -> AsyncIterator[Store]:
    """A store on the workers' storage, in this process."""
    if "sqlite" in config:
        store: Store = SQLiteStore(config["sqlite"])
    else:
        from shoptoken.stores import PostgresStore

        store = PostgresStore(config["postgres"], schema=config["schema"], table=config["table"])
        await store.create_schema()
    async with store:
        yield store


@asynccontextmanager
async def worker(tmp_path: Path, store: dict[str, Any], **config: Any) -> AsyncIterator[Worker]:
    """Start ``_worker.py`` with ``config``; kill it on exit if it still runs."""
    stderr = tmp_path / f"worker-{secrets.token_hex(3)}.err"
    argument = json.dumps({"store": store, "key": str(KEY), **config})
    with stderr.open("wb") as err:
        process = await trio.lowlevel.open_process(
            [sys.executable, str(WORKER), argument], stdout=subprocess.PIPE, stderr=err
        )
    try:
        yield Worker(process, stderr)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


async def test_lock_holds_across_processes_and_survives_sigkill(
    config: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    """Other processes wait and time out; a holder SIGKILLed frees the lock soon, losing nothing."""
    await store.save_tokens(KEY, COMMITTED)
    async with worker(tmp_path, config, action="hold", access_token="shpat_uncommitted") as holder:
        await holder.expect("locked")
        # Readers are not blocked, and see only the committed pair.
        assert await store.load_tokens(KEY) == COMMITTED

        async with worker(tmp_path, config, action="wait", timeout=0.5) as waiter:
            await waiter.expect("waiting")
            result = await waiter.result()
        assert result["result"] == "timeout"
        assert 0.5 <= result["elapsed"] < 2.0

        start = trio.current_time()
        with pytest.raises(LockTimeout):
            async with store.locked(KEY, timeout=0.3):
                pytest.fail("lock granted while another process holds it")
        assert trio.current_time() - start >= 0.3

        async with worker(tmp_path, config, action="wait", timeout=10.0) as waiter:
            await waiter.expect("waiting")
            await trio.sleep(0.3)  # the waiter is now blocked on the lock
            holder.process.send_signal(signal.SIGKILL)
            result = await waiter.result()
        assert await holder.process.wait() == -signal.SIGKILL
    # Granted soon after the kill (well within its 10 s timeout), with the
    # committed pair: the killed holder's uncommitted save is gone, nothing else.
    assert result["result"] == "granted"
    assert 0.2 <= result["elapsed"] < 5.0
    assert result["access_token"] == COMMITTED.access_token
    async with store.locked(KEY, timeout=1.0) as handle:
        assert handle.token == COMMITTED
