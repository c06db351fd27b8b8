"""An app's webhook endpoint: verify every delivery, end a shop's tokens on uninstall.

Shopify POSTs webhooks to the app: ``app/uninstalled`` when a merchant
removes it, and the mandatory compliance topics (``customers/data_request``,
``customers/redact``, ``shop/redact``). The endpoint here is one
framework-free handler, `Endpoint.receive`, served on 127.0.0.1 (any web
framework would call it the same way with the raw body and the headers):

- ``oauth.verify_webhook(body, headers)`` checks the signature (the app's
  client secret) and the headers; a forged delivery gets 401, as Shopify
  requires;
- `SeenWebhooks` recognises a repeated delivery (same webhook id): one
  already handled gets 200, one whose first delivery is still being handled
  gets 409 (the first may yet fail; Shopify delivers it again later);
- ``handle_webhook(tokens, webhook)`` does what shoptoken must: an uninstall
  or ``shop/redact`` forgets every key of the shop (in memory and in the
  SQLite file), ``customers/redact`` forgets that customer's tokens.

FakeShopify plays Shopify: it signs and sends the webhooks, and its
uninstall revokes the shop's tokens as Shopify does. No token is printed.
Needs hypercorn (``pip install 'shoptoken[testing]'``).

    python examples/webhooks_uninstall.py
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from shoptoken import (
    Delivery,
    InvalidWebhook,
    NoToken,
    PersistenceError,
    SeenWebhooks,
    ShopifyOAuth,
    Token,
    TokenKey,
    TokenManager,
    handle_webhook,
    open_token_manager,
)
from shoptoken.stores import SQLiteStore
from shoptoken.testing import FakeShopify, serve_app, serve_loopback, webhook_app

if TYPE_CHECKING:
    import httpx

# -- Where a real app's settings go ---------------------------------------------------
# The app's credentials: Shopify signs webhooks with the client secret. A real
# app reads them from its environment; the fake Shopify accepts these.
CLIENT_ID = "example-app-client-id"
CLIENT_SECRET = "example-app-client-secret-not-a-real-one"
# The webhook path configured for the app (shopify.app.toml: [webhooks]).
WEBHOOK_PATH = "/webhooks"
SHOPS = ("acme-outdoor.myshopify.com", "bright-books.myshopify.com")
# A storefront customer of bright-books holding a Customer Account API token.
CUSTOMER_ID = 207119551


@attrs.define(eq=False)
class Endpoint:
    """The app's webhook endpoint: verify, skip repeats, act; what it answered, for the report."""

    oauth: ShopifyOAuth
    tokens: TokenManager
    seen: SeenWebhooks = attrs.Factory(SeenWebhooks)
    log: list[str] = attrs.Factory(list)

    async def receive(self, body: bytes, headers: httpx.Headers) -> int:
        """``POST /webhooks``: the HTTP status to answer with.

        Args:
            body: The raw request body, exactly as received.
            headers: The request's headers.
        """
        try:
            webhook = self.oauth.verify_webhook(body, headers)  # local: no HTTP
        except InvalidWebhook as exc:
            self.log.append(f"401  refused: {exc}")
            return 401
        delivery = self.seen.begin(webhook)
        if delivery is Delivery.DONE:
            self.log.append(f"200  {webhook.topic} for {webhook.shop}: a repeated delivery")
            return 200
        if delivery is Delivery.IN_PROGRESS:  # Shopify gave up waiting and sent it again
            self.log.append(f"409  {webhook.topic} for {webhook.shop}: still being handled")
            return 409  # not 2xx: the first may yet fail, so Shopify must try again later
        try:
            forgotten = await handle_webhook(self.tokens, webhook)
        except PersistenceError:
            self.seen.discard(webhook)  # Shopify retries; that delivery must be handled
            self.log.append(f"500  {webhook.topic} for {webhook.shop}: the store failed")
            return 500
        except BaseException:
            self.seen.discard(webhook)  # any failure: never left "in progress"
            raise
        self.seen.done(webhook)
        keys = ", ".join(str(key) for key in forgotten) or "nothing"
        self.log.append(f"200  {webhook.topic} for {webhook.shop}: forgot {keys}")
        return 200


async def stored_keys(store: SQLiteStore) -> str:
    """The keys the store holds, for the report."""
    return ", ".join(sorted([str(key) async for key in store.list_keys()])) or "none"


async def main() -> None:
    """Install two shops, then play Shopify's webhooks against the app's endpoint."""
    fake = FakeShopify(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with tempfile.TemporaryDirectory() as scratch:
        async with (
            serve_loopback(fake) as shopify,
            SQLiteStore(Path(scratch) / "tokens.db") as store,
            shopify.oauth() as oauth,
            open_token_manager(oauth, store) as tokens,
        ):
            for shop in SHOPS:
                await tokens.put_token(TokenKey.offline(shop), fake.install(shop))
            # A headless storefront stored its customer's token in the same table.
            customer = TokenKey.customer(SHOPS[1], f"gid://shopify/Customer/{CUSTOMER_ID}")
            await store.save_tokens(customer, Token(access_token="shcat_fake_customer"))
            endpoint = Endpoint(oauth, tokens)
            async with serve_app(webhook_app(endpoint.receive)) as base:
                url = base + WEBHOOK_PATH
                print(f"stored: {await stored_keys(store)}")

                # Anyone can POST to the endpoint: only Shopify's signature counts.
                forged = fake.webhook("app/uninstalled", SHOPS[0], secret="guessed-secret")
                await fake.send_webhook(url, forged)

                # The compliance topics: a customer asks for, then about, their data.
                for topic in ("customers/data_request", "customers/redact"):
                    request = fake.webhook(topic, SHOPS[1], customer_id=CUSTOMER_ID)
                    await fake.send_webhook(url, request)

                # acme-outdoor uninstalls the app: Shopify revokes its tokens and
                # sends app/uninstalled; a lost acknowledgement makes it send again.
                await tokens.refresh_token(TokenKey.offline(SHOPS[0]))
                before = fake.statistics(SHOPS[0]).refreshes
                fake.revoke(SHOPS[0])
                uninstalled = fake.webhook("app/uninstalled", SHOPS[0])
                for _ in range(2):
                    await fake.send_webhook(url, uninstalled)
                try:
                    await tokens.valid_token(TokenKey.offline(SHOPS[0]))
                    after = "still served (wrong!)"
                except NoToken:
                    after = "NoToken, at once"
                await trio.sleep(0.2)
                requests = fake.statistics(SHOPS[0]).refreshes - before

                # 48 hours later Shopify asks to erase the shop's data.
                await fake.send_webhook(url, fake.webhook("shop/redact", SHOPS[0]))
            for line in endpoint.log:
                print(line)
            print(f"valid_token of {SHOPS[0]} after its uninstall: {after}")
            print(f"refreshes of {SHOPS[0]} after its uninstall: {requests}")
            print(f"stored: {await stored_keys(store)}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    trio.run(main)
