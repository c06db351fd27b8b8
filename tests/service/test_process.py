"""Real processes: a fork's child refuses the parent's service; exiting without close()."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from .._managers import KEY
from ._harness import running

ROOT = Path(__file__).parent.parent.parent


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_refuses_the_parents_service() -> None:
    """After os.fork() the child's copy raises (saying how to fix it); the parent's works on."""
    with running() as h:
        assert h.service.valid_token(KEY) == h.token  # published: the child has a copy
        with warnings.catch_warnings():
            # Python 3.12+ warns about forking a threaded process: that is this test.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which reports by exit status
            status = 1
            try:
                try:
                    h.service.valid_token(KEY)
                except RuntimeError as exc:
                    status = 0 if "one TokenService per process" in str(exc) else 2

                async def aio() -> None:
                    await h.service.aio.valid_token(KEY)

                try:
                    asyncio.run(aio())
                    status = 3
                except RuntimeError:
                    pass
                h.service.close()  # a no-op in the child
            finally:
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(wait_status) == 0
        assert h.service.valid_token(KEY) == h.token
        assert h.service.refresh_token(KEY) != h.token


def _child(mode: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-W", "error", "-m", "tests.service._exit_child", mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    return done, time.monotonic() - began


def test_exiting_without_close_lets_a_pending_save_land() -> None:
    """The main thread ends with a save pending: atexit closes the service, the save lands."""
    done, _ = _child("pending")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == [
        "shoptoken.persistence.failed",
        "served True",
        "shoptoken.persistence.recovered",
        "",
    ]


def test_exiting_with_a_refresh_stuck_does_not_hang() -> None:
    """A refresh hangs at Shopify: the process exits once shutdown_grace is spent."""
    done, took = _child("stuck")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "refresh started\n"
    assert took < 30.0
