"""Secrets: a whole demo-sized run leaves no token in any text, nor in plaintext at rest.

Eight shops over a FakeShopify served on loopback (real sockets, real clock,
3-second tokens), installed by every route Shopify offers: the authorization
code flow (signed callback, verification, code exchange), session token
exchange, and migration of a non-expiring token. Four shops live in a plain
SQLiteStore, four in an EncryptedStore over SQLite, each store under its own
manager. While the apps call the Admin API through ``tokens.auth``, the fake
injects faults into a fifth of the token requests, one shop is uninstalled
(re-authorization required, then authorized again), saves fail for a while
(with an error message that quotes the token, as a careless store's would),
and forged or expired session tokens are refused.

Everything a human or a log pipeline could see is collected: every structlog
event (``capture_logs``), every `TokenEvent`, every exception (``str``,
``repr``, the formatted traceback and the whole ``__cause__`` /
``__context__`` chain), and the ``repr`` of every object (managers, their
statistics, OAuth clients, stores, tokens, keys, claims). No secret the fake
ever issued (access and refresh tokens, authorization codes, session tokens,
the client secret) appears in any of it. The EncryptedStore's database file
(and its ``-wal`` file, read while the store is open and again after) holds
no token in plaintext; the plain store's file, as a control, does.
"""

from __future__ import annotations

import json
import logging
import secrets
import traceback
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from shoptoken import (
    InvalidSessionToken,
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
from shoptoken.stores import EncryptedStore, SQLiteStore
from shoptoken.testing import FakeShopify, FaultPlan, LoopbackServer, serve_loopback
from shoptoken.testing._admin import _Pair
from shoptoken.testing._answer import Answer

from .._logs import captured_events
from . import report

RUN_FOR = 8.0
SHOPS = [f"secret-shop-{i}" for i in range(8)]
PLAIN_SHOPS, ENCRYPTED_SHOPS = SHOPS[:4], SHOPS[4:]
REVOKED = SHOPS[1]
MIGRATED = SHOPS[2]
EXCHANGED = SHOPS[5]
POLICY = RefreshPolicy(
    refresh_before=1.0, jitter=0.5, skew=0.3, retry_initial=0.05, retry_max=0.5, lock_timeout=5.0
)


@attrs.define(eq=False)
class RecordingShopify(FakeShopify):
    """A FakeShopify that keeps every secret it ever issued or answered with."""

    issued: set[str] = attrs.field(factory=set, repr=False)

    def _issue(self, shop: str) -> _Pair:
        pair = super()._issue(shop)
        self.issued |= {pair.access, pair.refresh}
        return pair

    async def answer(self, request: httpx.Request) -> Answer:
        """Answer as the fake does, and note any token in the answer."""
        answer = await super().answer(request)
        try:
            data = json.loads(answer.body)
        except ValueError:
            return answer
        if isinstance(data, dict):
            for field in ("access_token", "refresh_token", "id_token"):
                if isinstance(data.get(field), str):
                    self.issued.add(data[field])
        return answer

    def harvest(self) -> None:
        """Note every token the fake still holds (current, previous, non-expiring, online)."""
        for record in self._admin.shops.values():
            pair = record.pair
            if pair is not None:
                self.issued |= {pair.access, pair.refresh}
                if pair.previous_refresh is not None:
                    self.issued.add(pair.previous_refresh)
            if record.non_expiring is not None:
                self.issued.add(record.non_expiring)
            self.issued |= set(record.online)


@attrs.define(eq=False)
class FailingSaves:
    """Wraps a store; fails the next ``fail`` saves with a message quoting the token."""

    inner: Any
    fail: int = 0
    failed: int = 0

    def _check(self, token: Token) -> None:
        if self.fail:
            self.fail -= 1
            self.failed += 1
            msg = f"disk full writing {token.access_token} / {token.refresh_token}"
            raise OSError(msg)

    async def load_tokens(self, key: TokenKey) -> Token | None:
        """Load from the inner store."""
        return await self.inner.load_tokens(key)  # type: ignore[no-any-return]

    async def save_tokens(self, key: TokenKey, token: Token) -> None:
        """Save, unless told to fail."""
        self._check(token)
        await self.inner.save_tokens(key, token)

    @asynccontextmanager
    async def locked(self, key: TokenKey, *, timeout: float) -> AsyncIterator[Any]:  # noqa: ASYNC109 - the protocol's signature
        """The inner store's lock; saves inside it may fail too."""
        async with self.inner.locked(key, timeout=timeout) as handle:
            outer = self

            @attrs.define(eq=False)
            class Handle:
                token: Token | None = handle.token

                async def save(self, token: Token) -> None:
                    outer._check(token)
                    await handle.save(token)
                    self.token = token

            yield Handle()


@attrs.define(eq=False)
class Evidence:
    """Every text a person or a log pipeline could see during the run."""

    texts: list[str] = attrs.field(factory=list)
    counts: dict[str, int] = attrs.field(factory=dict)

    def add(self, kind: str, *texts: str) -> None:
        """Keep ``texts``, counted under ``kind``."""
        self.texts.extend(texts)
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def error(self, exc: BaseException) -> None:
        """Keep an exception: str and repr of it and its whole chain, and its traceback."""
        self.add("exceptions", "".join(traceback.format_exception(exc)))
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self.add("exception links", str(current), repr(current), repr(vars(current)))
            current = current.__cause__ or current.__context__

    def objects(self, *objects: object) -> None:
        """Keep the repr and str of each object."""
        for obj in objects:
            self.add("reprs", repr(obj), str(obj))


async def call_api(
    api: httpx.AsyncClient, tokens: TokenManager, key: TokenKey, evidence: Evidence
) -> None:
    """One Admin API call through ``tokens.auth``; keep what it shows."""
    try:
        token = await tokens.valid_token(key)
        response = await api.get(
            f"https://{key.shop}/admin/api/2026-10/shop.json", auth=tokens.auth(key)
        )
    except ShopTokenError as exc:
        evidence.error(exc)
        return
    evidence.objects(token, key, tokens.auth(key))
    evidence.add("api calls", str(response.status_code))


async def install(
    fake: RecordingShopify,
    oauth: ShopifyOAuth,
    tokens: TokenManager,
    shop: str,
    evidence: Evidence,
) -> None:
    """Install ``shop`` the way the scenario says: code flow, session token, or migration."""
    key = TokenKey.offline(shop)
    if shop == MIGRATED:
        legacy = fake.install_non_expiring(shop)
        fake.issued.add(legacy.access_token)
        await tokens.put_token(key, legacy)
        token = await oauth.migrate_to_expiring(shop, legacy)
    elif shop == EXCHANGED:
        session_token = fake.session_token(shop)
        fake.issued.add(session_token)
        claims = oauth.verify_session_token(session_token)
        evidence.objects(claims)
        key, token = await oauth.exchange_session_token(session_token, online=False)
    else:
        token = await authorize(fake, oauth, shop)
    evidence.objects(token)
    await tokens.put_token(key, token)


async def authorize(fake: RecordingShopify, oauth: ShopifyOAuth, shop: str) -> Token:
    """The authorization code flow, by hand, so the code and HMAC are known secrets too."""
    state = secrets.token_urlsafe(16)
    query = fake.callback_query(shop, state=state)
    fake.issued |= {query["code"], query["hmac"], state}
    verified = oauth.verify_callback(query, state=state)
    return await oauth.exchange_code(verified["shop"], query["code"])


async def refused_session_tokens(
    fake: RecordingShopify, oauth: ShopifyOAuth, evidence: Evidence
) -> None:
    """Forged, expired and foreign session tokens: refused, each error kept."""
    bad = [
        fake.session_token(SHOPS[0], secret="shpss_not_the_app_secret_0000000000"),
        fake.session_token(SHOPS[0], expires_in=-120),
        fake.session_token(SHOPS[0], aud="another-app"),
        fake.session_token(SHOPS[0], alg="none"),
    ]
    fake.issued |= set(bad)
    for token in bad:
        for attempt in (oauth.verify_session_token, None):
            try:
                if attempt is None:
                    await oauth.exchange_session_token(token, online=True)
                else:
                    attempt(token)
            except InvalidSessionToken as exc:
                evidence.error(exc)
            else:  # pragma: no cover - a forgery would land here
                raise AssertionError("a bad session token was accepted")


async def scenario(
    server: LoopbackServer,
    fake: RecordingShopify,
    *,
    stores: dict[str, TokenCallback],
    failing: FailingSaves,
    evidence: Evidence,
    events: list[TokenEvent],
) -> list[TokenManager]:
    """Install every shop, run the apps for `RUN_FOR` seconds through the incidents."""
    managers: list[TokenManager] = []
    oauth = server.oauth()
    api = server.client(timeout=10)
    async with (
        open_token_manager(oauth, stores["plain"], policy=POLICY, hooks=[events.append]) as plain,
        open_token_manager(oauth, failing, policy=POLICY, hooks=[events.append]) as encrypted,
    ):
        managers += [plain, encrypted]
        owner = dict.fromkeys(PLAIN_SHOPS, plain) | dict.fromkeys(ENCRYPTED_SHOPS, encrypted)
        for shop in SHOPS:
            await install(fake, oauth, owner[shop], shop, evidence)
        fake.faults = FaultPlan(rate=0.2, seed=20260828)
        deadline = trio.current_time() + RUN_FOR

        async def app(shop: str) -> None:
            while trio.current_time() < deadline:
                await call_api(api, owner[shop], TokenKey.offline(shop), evidence)
                await trio.sleep(0.05)

        async def incidents() -> None:
            await trio.sleep(1.0)
            fake.revoke(REVOKED)  # uninstalled: the next refresh is refused
            failing.fail = 6  # the encrypted store fails for a while
            await refused_session_tokens(fake, oauth, evidence)
            await trio.sleep(3.5)
            fake.faults = None
            token = await authorize(fake, oauth, REVOKED)  # the merchant comes back
            await plain.put_token(TokenKey.offline(REVOKED), token)
            fake.faults = FaultPlan(rate=0.2, seed=7)

        async with trio.open_nursery() as nursery:
            for shop in SHOPS:
                nursery.start_soon(app, shop)
            nursery.start_soon(incidents)
        fake.faults = None
        for manager in managers:
            evidence.objects(manager, manager.statistics())
        for shop in SHOPS:
            try:
                evidence.objects(await owner[shop].fetch_token(TokenKey.offline(shop)))
            except ShopTokenError as exc:
                evidence.error(exc)
        evidence.objects(oauth, server, *stores.values(), failing)
    for manager in managers:
        evidence.objects(manager, manager.statistics())
    await api.aclose()
    await oauth.aclose()
    return managers


def files_bytes(path: Path) -> bytes:
    """The database file and its -wal and -shm files, as they are on disk now."""
    return b"".join(
        candidate.read_bytes()
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if candidate.exists()
    )


def leaks(secrets: Iterable[str], texts: Iterable[str]) -> list[tuple[str, str]]:
    """Each (secret, excerpt of the text it appears in)."""
    found = []
    for text in texts:
        for secret in secrets:
            at = text.find(secret)
            if at >= 0:
                found.append((secret, text[max(0, at - 80) : at + len(secret) + 20]))
    return found


async def test_demo_run_leaks_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A full run with faults and incidents: no secret in any text, none in plaintext at rest."""
    # The standard library's records too (httpx, httpcore, hypercorn), at every level.
    caplog.set_level(logging.DEBUG)
    fake = RecordingShopify(access_lifetime=3.0)
    key = EncryptedStore.generate_key()
    plain_db, encrypted_db = tmp_path / "plain.db", tmp_path / "encrypted.db"
    evidence = Evidence()
    events: list[TokenEvent] = []
    at_rest_open: bytes = b""
    with captured_events() as logs:
        async with (
            serve_loopback(fake) as server,
            SQLiteStore(plain_db) as plain,
            EncryptedStore(SQLiteStore(encrypted_db), {"2026-11": key}) as encrypted,
        ):
            failing = FailingSaves(encrypted)
            stores: dict[str, TokenCallback] = {"plain": plain, "encrypted": encrypted}
            managers = await scenario(
                server, fake, stores=stores, failing=failing, evidence=evidence, events=events
            )
            # The WAL holds the latest frames while the store is open.
            at_rest_open = files_bytes(encrypted_db)
            plain_open = files_bytes(plain_db)
    fake.harvest()
    at_rest_closed = files_bytes(encrypted_db)
    evidence.texts += [repr(event) for event in events]
    evidence.texts += [repr(entry) for entry in logs]
    evidence.counts["token events"] = len(events)
    evidence.texts += [record.getMessage() for record in caplog.records]
    evidence.counts["log events"] = len(logs)
    evidence.counts["stdlib log records"] = len(caplog.records)

    secrets_ = fake.issued | {fake.client_secret}
    stats = [manager.statistics() for manager in managers]
    kinds = {entry["event"] for entry in logs}
    found = leaks(secrets_, evidence.texts)
    tokens = [s for s in fake.issued if s.startswith(("shpat_", "shprt_", "shpua_"))]
    at_rest = [s for s in tokens if s.encode() in at_rest_open + at_rest_closed]
    control = [s for s in tokens if s.encode() in plain_open]
    report(
        "secrets demo run",
        secrets_issued=len(secrets_),
        tokens_issued=len(tokens),
        texts_scanned=len(evidence.texts),
        characters_scanned=sum(len(text) for text in evidence.texts),
        **{name.replace(" ", "_"): count for name, count in sorted(evidence.counts.items())},
        refreshes=sum(s.refreshes_succeeded for s in stats),
        saves_failed=sum(s.saves_failed for s in stats),
        faults_injected=len(fake.injected),
        leaks_in_text=len(found),
        encrypted_file_bytes=len(at_rest_open),
        plaintext_tokens_in_encrypted_files=len(at_rest),
        plaintext_tokens_in_plain_file_control=len(control),
    )
    # The run went through everything it claims to.
    assert sum(s.refreshes_succeeded for s in stats) >= 10
    assert failing.failed > 0
    assert sum(s.saves_failed for s in stats) > 0
    assert len(fake.injected) > 0
    assert {
        "shoptoken.refresh.succeeded",
        "shoptoken.refresh.failed",
        "shoptoken.persistence.failed",
        "shoptoken.reauthorization_required",
        "shoptoken.oauth.session_token_rejected",
    } <= kinds, kinds
    assert fake.statistics(MIGRATED).migrations == 1
    assert fake.statistics(EXCHANGED).token_exchanges == 1
    assert evidence.counts["exceptions"] > 0
    # The store's message quoted the token; the manager scrubbed it.
    assert any("[redacted]" in text for text in evidence.texts)
    # And no secret anywhere.
    assert found == []
    assert at_rest == []
    assert len(control) > 0
