"""A Celery-style worker: task functions called from a pool of threads share one TokenService.

A worker process starts its `TokenService` once, when the process starts
(Celery: the ``worker_process_init`` signal; RQ: the worker's setup), and
every task, in whichever thread it runs, asks it for a token. The store is
SQLite, so several worker processes on one machine share one refresh per
shop (a process started by fork must start its own service: a service
started before the fork refuses to work in the child).

Here the tasks run in six threads against a fake Shopify on 127.0.0.1,
whose tokens live 3 seconds (Shopify's live 60 minutes). No token is ever
printed.

    python examples/celery_worker.py
"""

from __future__ import annotations

import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from shoptoken import RefreshPolicy, ShopifyOAuth, ShopTokenError, TokenKey, TokenService
from shoptoken.testing import FakeShopify, ThreadedLoopback, serve_loopback_in_thread

SHOPS = ("alpha-store", "beta-store", "gamma-store", "delta-store")
GRAPHQL = "https://{shop}/admin/api/2025-01/graphql.json"
TASKS, THREADS = 120, 6


class Worker:
    """What a worker process holds, set up once by `worker_process_init`."""

    def __init__(self, service: TokenService, http: httpx.Client) -> None:
        self.service = service
        self.http = http


#: This process's worker (Celery apps keep such clients at module level).
WORKERS: list[Worker] = []


def worker() -> Worker:
    """This process's worker."""
    if not WORKERS:
        msg = "worker_process_init did not run in this process"
        raise RuntimeError(msg)
    return WORKERS[0]


def worker_process_init(shopify: FakeShopify, server: ThreadedLoopback, store_url: str) -> Worker:
    """Start this process's service (Celery: connect this to ``worker_process_init``)."""
    # Against real Shopify: ShopifyOAuth(client_id, client_secret) and no resources.
    oauth_http = httpx.AsyncClient(transport=server.transport())
    oauth = ShopifyOAuth(shopify.client_id, shopify.client_secret, http=oauth_http)
    policy = RefreshPolicy(refresh_before=1.5, jitter=0.5, skew=0.5)
    service = TokenService(oauth, store_url, policy=policy, resources=[oauth_http]).start()
    # A worker that exits without closing it closes it anyway (atexit).
    WORKERS.append(Worker(service, httpx.Client(transport=server.sync_transport(), timeout=30)))
    return WORKERS[0]


def sync_orders(shop: str, pause: threading.Event) -> int:
    """The task: one Admin API call for ``shop``; its HTTP status (0 if no token)."""
    service = worker().service
    key = TokenKey.offline(shop)
    try:
        token = service.valid_token(key)  # a dict read when fresh, in this thread
    except ShopTokenError:
        return 0  # re-authorization needed or an outage: retry the task later
    answer = call_api(key, token.access_token)
    if answer.status_code == httpx.codes.UNAUTHORIZED:
        # Revoked by a rotation just now (or elsewhere): one forced refresh, one retry.
        # (service.auth(key) on the httpx.Client does the same.)
        answer = call_api(key, service.refresh_token(key, rejected=token).access_token)
    pause.wait(0.1)  # the rest of the task's work
    return answer.status_code


def call_api(key: TokenKey, access_token: str) -> httpx.Response:
    """One Admin API GraphQL call for ``key``'s shop."""
    return worker().http.post(
        GRAPHQL.format(shop=key.shop),
        headers={"X-Shopify-Access-Token": access_token},
        json={"query": "{ shop { name } }"},
    )


def main() -> int:
    """Serve the fake, start the worker, run the tasks in threads; return the exit status."""
    # The library never configures logging; this worker shows errors only.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    shopify = FakeShopify(access_lifetime=3)
    with (
        tempfile.TemporaryDirectory() as scratch,
        serve_loopback_in_thread(shopify) as server,
    ):
        store_url = f"sqlite:///{Path(scratch) / 'tokens.db'}"
        service = worker_process_init(shopify, server, store_url).service
        for shop in SHOPS:
            # The app's OAuth callback stored each shop's first token.
            service.put_token(TokenKey.offline(shop), shopify.install(shop))
        pause = threading.Event()  # never set: a sleep that reads as one
        with ThreadPoolExecutor(THREADS) as pool:
            jobs = [pool.submit(sync_orders, SHOPS[i % len(SHOPS)], pause) for i in range(TASKS)]
            statuses = [job.result() for job in jobs]
        service.close()
        worker().http.close()
    seen = [shopify.statistics(shop) for shop in SHOPS]
    refreshes = sum(s.refreshes for s in seen)
    ok = statuses.count(200)
    print(
        f"{TASKS} tasks in {THREADS} threads ({ok} Admin API calls answered 200), "
        f"{refreshes} token refreshes for {len(SHOPS)} shops"
    )
    return 0 if ok == TASKS and refreshes >= len(SHOPS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
