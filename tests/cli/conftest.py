"""Fixtures for the command's tests: a fake Shopify on loopback, SQLite stores, a checked runner.

Every command run through `Cli.invoke` is checked for what must never
happen: a traceback, or a token the fake issued (or the app's client
secret) in its output.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import click.testing
import pytest
import trio

from shoptoken import Token, TokenKey
from shoptoken.cli._app import cli
from shoptoken.stores import SQLiteStore
from shoptoken.testing import FakeShopify, serve_loopback
from shoptoken.testing._fake_shopify import _Pair

#: What a token of the fake looks like: none may ever appear in any output.
FAKE_TOKEN = re.compile(r"shp(?:at|rt|ua)_fake_")


@attrs.define(eq=False)
class RecordingShopify(FakeShopify):
    """A FakeShopify that remembers every secret it issued."""

    issued: list[str] = attrs.field(factory=list)

    def _issue(self, shop: str) -> _Pair:
        pair = super()._issue(shop)
        self.issued += [pair.access, pair.refresh]
        return pair

    def install_non_expiring(self, shop: str, *, scope: str = "read_orders") -> Token:
        """Install the legacy way, remembering the token."""
        token = super().install_non_expiring(shop, scope=scope)
        self.issued.append(token.access_token)
        return token


def assert_no_secret(text: str, secrets: list[str]) -> None:
    """No token (by value or by shape) and no listed secret in ``text``."""
    assert not FAKE_TOKEN.search(text), text
    for secret in secrets:
        assert secret not in text


@attrs.define
class Served:
    """A fake Shopify served on loopback from a thread, for commands run in this process."""

    fake: RecordingShopify
    port: int

    @property
    def env(self) -> dict[str, str]:
        """The environment that points the command at this fake, with its credentials."""
        return {
            "SHOPTOKEN_FAKE_SHOPIFY_URL": f"http://127.0.0.1:{self.port}",
            "SHOPTOKEN_CLIENT_ID": self.fake.client_id,
            "SHOPTOKEN_CLIENT_SECRET": self.fake.client_secret,
        }


@pytest.fixture
def served() -> Iterator[Served]:
    """A `RecordingShopify` on a loopback port, served by its own trio run in a thread."""
    fake = RecordingShopify()
    ready = threading.Event()
    stop: list[trio.Event] = []
    port: list[int] = []
    token: list[trio.lowlevel.TrioToken] = []

    async def serve() -> None:
        async with serve_loopback(fake) as server:
            stop.append(trio.Event())
            port.append(server.port)
            token.append(trio.lowlevel.current_trio_token())
            ready.set()
            await stop[0].wait()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield Served(fake, port[0])
    trio.from_thread.run_sync(stop[0].set, trio_token=token[0])
    thread.join(10)


@attrs.define
class Cli:
    """Runs ``shoptoken`` in process and checks its output for secrets and tracebacks."""

    secrets: list[str] = attrs.field(factory=list)
    fake: RecordingShopify | None = None

    def invoke(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        input: str | None = None,  # noqa: A002 - CliRunner's name for it
    ) -> click.testing.Result:
        """Run the command; assert it leaked nothing and crashed with no traceback."""
        result = click.testing.CliRunner().invoke(
            cli, list(args), env=env, input=input, catch_exceptions=True
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        issued = self.fake.issued if self.fake is not None else []
        shown = result.stdout + result.stderr
        assert "Traceback" not in shown
        assert_no_secret(shown, [*self.secrets, *issued])
        return result


@pytest.fixture
def run_cli(served: Served) -> Cli:
    """A checked runner that knows the served fake's tokens and client secret."""
    return Cli(secrets=[served.fake.client_secret], fake=served.fake)


@pytest.fixture
def offline_cli() -> Cli:
    """A checked runner for commands that reach no fake."""
    return Cli()


@pytest.fixture
def db(tmp_path: Path) -> str:
    """The URL of a SQLite store in a fresh file."""
    return f"sqlite:///{tmp_path / 'tokens.db'}"


def install_stale(fake: FakeShopify, key: TokenKey) -> Token:
    """Install ``key``'s shop with a 200 s token, stale at once under the 300 s lead.

    Undated (as a token stored by an earlier version is): a dated one would
    be refreshed at mid-life instead.
    """
    lifetime, fake.access_lifetime = fake.access_lifetime, 200
    try:
        return attrs.evolve(fake.install(key.shop), obtained_at=None)
    finally:
        fake.access_lifetime = lifetime


def save(url: str, tokens: dict[TokenKey, Token]) -> None:
    """Store ``tokens`` in the SQLite store at ``url`` (from a synchronous test)."""

    async def main() -> None:
        async with SQLiteStore(url.removeprefix("sqlite:///")) as store:
            await store.create_schema()
            for key, token in tokens.items():
                await store.save_tokens(key, token)

    trio.run(main)


def load(url: str, key: TokenKey) -> Token | None:
    """The token stored for ``key`` in the SQLite store at ``url``."""

    async def main() -> Token | None:
        async with SQLiteStore(url.removeprefix("sqlite:///")) as store:
            return await store.load_tokens(key)

    return trio.run(main)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command configures logging; the library's other tests expect the defaults."""
    ours, psycopg = logging.getLogger("shoptoken"), logging.getLogger("psycopg")
    handlers, level, propagate = list(ours.handlers), ours.level, ours.propagate
    psycopg_level = psycopg.level
    yield
    ours.handlers[:] = handlers
    ours.setLevel(level)
    ours.propagate = propagate
    psycopg.setLevel(psycopg_level)


def command(*args: str) -> list[str]:
    """The argv that runs ``shoptoken ARGS`` in a child process."""
    return [sys.executable, "-m", "shoptoken.cli", *args]


def child_env(**extra: str) -> dict[str, str]:
    """This environment plus ``extra``, unbuffered, without a terminal's colours."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **extra}


@contextmanager
def spawn(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Run ``shoptoken ARGS`` in a child process, output piped as text; killed if still running."""
    with subprocess.Popen(  # noqa: S603 - our own command, arguments from the test
        command(*args),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
