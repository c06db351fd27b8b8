"""Every OAuth flow end to end over real loopback HTTP, against FakeShopify served by hypercorn.

Real sockets and the real clock; each flow uses the library's public clients
exactly as an app would, with only the transport routed to 127.0.0.1.
"""

from __future__ import annotations

import pytest
import trio

from shoptoken import (
    CustomerAccountOAuth,
    InvalidCallback,
    InvalidSessionToken,
    ReauthorizationRequired,
    RefreshFailed,
    TokenKey,
    new_pkce,
)
from shoptoken.testing import FakeShopify, FaultKind, serve_loopback

LIMIT = 20.0


async def test_admin_flows_over_loopback() -> None:
    """Install by code, many rotations, token exchange (online, offline), migration."""
    fake = FakeShopify()
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server, server.oauth() as oauth:
            # Install: the real authorization-code flow, HMAC-verified callback.
            token = await fake.authorize(oauth, "loop-install", "read_orders,write_products")
            key = TokenKey.offline("loop-install")
            for _ in range(12):
                token = await oauth.refresh(key, token)
            # Embedded app: token exchange with App Bridge session tokens.
            offline_key, offline = await oauth.exchange_session_token(
                fake.session_token("loop-embedded", user_id=7), online=False
            )
            online_key, online = await oauth.exchange_session_token(
                fake.session_token("loop-embedded", user_id=7), online=True
            )
            # Before 2027-01-01: migrate a non-expiring token.
            legacy = fake.install_non_expiring("loop-legacy")
            migrated = await oauth.migrate_to_expiring("loop-legacy", legacy)
    assert fake.is_valid(key.shop, token.access_token)
    assert fake.statistics(key.shop).refreshes == 12
    assert offline_key == TokenKey.offline("loop-embedded")
    assert offline.refresh_token is not None
    assert online_key == TokenKey.online("loop-embedded", 7)
    assert online.refresh_token is None
    assert online.associated_user_id == 7
    assert migrated.refresh_token is not None
    assert fake.refresh_token_works("loop-legacy", migrated.refresh_token)
    assert not fake.is_valid("loop-legacy", legacy.access_token)


async def test_admin_error_paths_over_loopback() -> None:
    """Forged callbacks and session tokens, replayed and revoked tokens, faults: each its error."""
    fake = FakeShopify()
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server, server.oauth() as oauth:
            key = TokenKey.offline("loop-errors")
            first = fake.install(key.shop)
            second = await oauth.refresh(key, first)
            await oauth.refresh(key, second)
            with pytest.raises(ReauthorizationRequired):
                await oauth.refresh(key, first)  # retired twice over: replay refused
            query = dict(fake.callback_query(key.shop))
            query["shop"] = "evil-store.myshopify.com"
            with pytest.raises(InvalidCallback):
                oauth.verify_callback(query)
            with pytest.raises(InvalidSessionToken):
                await oauth.exchange_session_token(
                    fake.session_token(key.shop, secret="not-the-app-secret-" * 2), online=False
                )
            fake.fail_next(429)
            with pytest.raises(RefreshFailed) as limited:
                await oauth.refresh(key, await oauth.refresh(key, fake.install(key.shop)))
            for fault in (FaultKind.DROP, FaultKind.TRUNCATE):
                fake.fail_next(fault)
                with pytest.raises(RefreshFailed) as dropped:
                    await oauth.refresh(key, fake.install(key.shop))
                assert dropped.value.transient
            fake.revoke(key.shop)
            with pytest.raises(ReauthorizationRequired):
                await oauth.refresh(key, fake.install_non_expiring(key.shop))
    assert limited.value.status == 429
    assert limited.value.retry_after is not None


async def test_customer_account_flow_over_loopback() -> None:
    """A public client: discovery, PKCE login, code exchange, rotations, then logout."""
    fake = FakeShopify()
    shop = "loop-customer.myshopify.com"
    verifier, challenge = new_pkce()
    redirect = "https://storefront.example/callback"
    with trio.fail_after(LIMIT):
        async with serve_loopback(fake) as server:
            customers = CustomerAccountOAuth(
                fake.shop_id(shop), fake.customer_client_id, http=server.client(), shop=shop
            )
            async with customers:
                await customers.discover()
                code = fake.customer_login(
                    shop, 42, code_challenge=challenge, redirect_uri=redirect
                )
                token = await customers.exchange_code(code, redirect, code_verifier=verifier)
                key = TokenKey.customer(shop, 42)
                for _ in range(5):
                    token = await customers.refresh(key, token)
                fake.log_out_customer(shop, 42)
                with pytest.raises(ReauthorizationRequired):
                    await customers.refresh(key, token)
    assert fake.statistics(shop).customer_refreshes == 5
