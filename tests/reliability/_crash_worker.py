"""A manager node that the crash tests kill: ``python _crash_worker.py``.

The process imports everything, prints ``{"event": "imported"}`` and waits
for one JSON line on stdin, its configuration, so that a test can start the
next worker's interpreter while the current one runs and pay Python's
start-up time off the clock. Then it opens the store, runs a `TokenManager`
whose `ShopifyOAuth` reaches a FakeShopify served on loopback, and:

1. **recovers**: for every shop, one Admin API call through ``tokens.auth``
   (a 401 forces one refresh, which presents the stored refresh token), and
   prints ``{"event": "recovered", "outcomes": {shop: "ok" | error type}}``;
2. **runs**: ``valid_token`` and an API call per shop, round-robin, until
   ``run_for`` seconds are up or it is killed.

It reports on stdout, one JSON line each: ``answered`` (Shopify's answer to a
refresh arrived), ``saved`` (the new pair is committed; ``window`` is the time
since the answer, during which a crash leaves the store one pair behind),
``save_failed``, and ``dying`` before it kills itself.

Configuration keys: ``port``, ``store`` (a store URL), ``shops``, ``policy``
(`RefreshPolicy` arguments), ``save_delay`` (seconds a save sleeps before
writing, to widen the window), ``fail_saves`` (every save raises),
``die_after_refresh`` (SIGKILL itself right after the N-th refresh answer,
before its save), ``die_after_failed_saves`` (SIGKILL itself after the N-th
failed save), ``run_for``. The fake's credentials come from
SHOPTOKEN_CLIENT_ID and SHOPTOKEN_CLIENT_SECRET.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio

from shoptoken import (
    RefreshPolicy,
    ShopifyOAuth,
    ShopTokenError,
    Token,
    TokenCallback,
    TokenEvent,
    TokenKey,
    TokenManager,
    open_token_manager,
)
from shoptoken.stores import open_store
from shoptoken.testing import LoopbackTransport


def say(event: str, **fields: object) -> None:
    """Print one JSON line at once (the test reads them as they come)."""
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def die(reason: str, manager: TokenManager | None) -> None:
    """Report, then SIGKILL this process: no cleanup, no commit, no flush."""
    pending = None if manager is None else manager.statistics().saves_pending
    say("dying", reason=reason, saves_pending=pending)
    os.kill(os.getpid(), signal.SIGKILL)


@attrs.define(eq=False)
class Run:
    """The worker's configuration and the state its wrappers share."""

    config: dict[str, Any]
    manager: TokenManager | None = None
    answered: dict[str, float] = attrs.field(factory=dict)
    refreshes: int = 0
    failed_saves: int = 0

    async def before_save(self, key: TokenKey, token: Token) -> None:
        """The injected save latency, failure and self-kill."""
        delay = float(self.config.get("save_delay", 0.0))
        if delay:
            await trio.sleep(delay)
        if self.config.get("fail_saves"):
            self.failed_saves += 1
            say("save_failed", key=str(key), n=self.failed_saves)
            if self.failed_saves == self.config.get("die_after_failed_saves"):
                die(f"after failed save {self.failed_saves}", self.manager)
            msg = f"injected save failure for {key}"
            raise OSError(msg)

    def saved(self, key: TokenKey) -> None:
        """Report a committed save and the window it closed."""
        answered = self.answered.pop(str(key), None)
        window = None if answered is None else time.monotonic() - answered
        say("saved", key=str(key), window=window)


@attrs.define(eq=False)
class KillingRefresher:
    """The real `ShopifyOAuth`, reporting each answer (and dying after the N-th)."""

    oauth: ShopifyOAuth
    run: Run

    async def refresh(
        self, key: TokenKey, token: Token, *, clock: Callable[[], float] | None = None
    ) -> Token:
        """Refresh through the real client; Shopify has rotated once this returns."""
        new = await self.oauth.refresh(key, token, clock=clock)
        self.run.refreshes += 1
        self.run.answered[str(key)] = time.monotonic()
        say("answered", key=str(key), n=self.run.refreshes)
        if self.run.refreshes == self.run.config.get("die_after_refresh"):
            die(f"after refresh answer {self.run.refreshes}, before its save", self.run.manager)
        return new


@attrs.define(eq=False)
class _Handle:
    inner: Any
    run: Run
    key: TokenKey
    wrote: bool = False

    @property
    def token(self) -> Token | None:
        return self.inner.token  # type: ignore[no-any-return]

    async def save(self, token: Token) -> None:
        await self.run.before_save(self.key, token)
        await self.inner.save(token)
        self.wrote = True


@attrs.define(eq=False)
class CrashStore:
    """Wraps the real store: slow or failing saves, and a report of each commit."""

    inner: Any
    run: Run

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load from the real store."""
        return await self.inner.load_tokens(key)  # type: ignore[no-any-return]

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Save (after the injected delay or failure) and report it."""
        await self.run.before_save(key, token)
        await self.inner.save_tokens(key, token)
        self.run.saved(key)

    @asynccontextmanager
    async def locked(self, key: TokenKey, *, timeout: float) -> AsyncIterator[_Handle]:  # noqa: ASYNC109 - the protocol's signature
        """The real store's lock; a save inside it is reported once committed."""
        async with self.inner.locked(key, timeout=timeout) as inner:
            handle = _Handle(inner, self.run, key)
            yield handle
        if handle.wrote:
            self.run.saved(key)


async def _api_call(api: httpx.AsyncClient, tokens: TokenManager, key: TokenKey) -> str:
    try:
        response = await api.get(
            f"https://{key.shop}/admin/api/2026-10/shop.json", auth=tokens.auth(key)
        )
    except ShopTokenError as exc:
        return type(exc).__name__
    return "ok" if response.status_code == httpx.codes.OK else f"HTTP {response.status_code}"


async def main(run: Run) -> None:
    """Recover every shop, then keep using them until killed (or ``run_for`` is up)."""
    config = run.config
    keys = [TokenKey.offline(shop) for shop in config["shops"]]
    policy = RefreshPolicy(**config["policy"], retry_initial=0.05, retry_max=0.3, lock_timeout=5.0)

    def report(event: TokenEvent) -> None:
        say(event.kind.value, key=str(event.key), error=event.error)

    transport = LoopbackTransport(config["port"])
    async with (
        open_store(config["store"]) as real_store,
        httpx.AsyncClient(transport=transport, timeout=10) as http,
        httpx.AsyncClient(transport=LoopbackTransport(config["port"]), timeout=10) as api,
    ):
        oauth = ShopifyOAuth(
            os.environ["SHOPTOKEN_CLIENT_ID"], os.environ["SHOPTOKEN_CLIENT_SECRET"], http=http
        )
        store: TokenCallback = CrashStore(real_store, run)
        async with open_token_manager(
            KillingRefresher(oauth, run), store, policy=policy, hooks=[report]
        ) as tokens:
            run.manager = tokens
            started = time.monotonic()
            outcomes = {key.shop: await _api_call(api, tokens, key) for key in keys}
            say("recovered", outcomes=outcomes, elapsed=time.monotonic() - started)
            deadline = trio.current_time() + float(config.get("run_for", 0.0))
            calls = 0
            errors: dict[str, int] = {}
            while trio.current_time() < deadline:
                outcome = await _api_call(api, tokens, keys[calls % len(keys)])
                calls += 1
                if outcome != "ok":
                    errors[outcome] = errors.get(outcome, 0) + 1
                await trio.sleep(0.01)
        stats = tokens.statistics()
    say("done", calls=calls, errors=errors, refreshes=stats.refreshes_succeeded)


if __name__ == "__main__":
    # Events go to the test through the hook; keep the library's logs quiet.
    logging.getLogger("shoptoken").setLevel(logging.CRITICAL)
    say("imported")
    trio.run(main, Run(json.loads(sys.stdin.readline())))
