"""Many threads and asyncio tasks at once: one refresh, and cancelled waiters lose nothing."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shoptoken import ServiceTimeout, Token, TokenService

from .._managers import KEY
from ._harness import running, stored, wait_until

LOOPS, TASKS, THREADS = 8, 1200, 400  # 8 x 1200 asyncio tasks + 400 threads = 10,000


def _asyncio_herd(service: TokenService, start: threading.Barrier) -> list[Token]:
    async def herd() -> list[Token]:
        start.wait()
        return list(await asyncio.gather(*(service.aio.valid_token(KEY) for _ in range(TASKS))))

    return asyncio.run(herd())


def _thread_caller(service: TokenService, start: threading.Barrier) -> Token:
    start.wait()
    return service.valid_token(KEY)


def test_ten_thousand_callers_of_an_expired_key_cause_one_refresh() -> None:
    """8 asyncio loops of 1,200 tasks and 400 threads, all at once: one refresh request."""
    # The refresh takes 1 s at the fake: every caller arrives while it is in flight.
    with running(latency=1.0) as h:
        h.expire()
        start = threading.Barrier(LOOPS + THREADS)
        with ThreadPoolExecutor(max_workers=LOOPS + THREADS) as pool:
            loops = [pool.submit(_asyncio_herd, h.service, start) for _ in range(LOOPS)]
            threads = [pool.submit(_thread_caller, h.service, start) for _ in range(THREADS)]
            got = [t for loop in loops for t in loop.result()] + [t.result() for t in threads]
        assert len(got) == 10_000
        assert h.fake.requests == 1
        assert h.fake.statistics(KEY.shop).refreshes == 1
        assert {t.access_token for t in got} == {got[0].access_token}
        assert got[0] != h.token
        assert h.fake.is_valid(KEY.shop, got[0].access_token)
        assert h.service.statistics().refreshes_succeeded == 1


def test_a_cancelled_asyncio_caller_loses_no_rotation() -> None:
    """The awaiting task is cancelled mid-refresh; the rotation lands, is saved and served."""
    with running(latency=0.3) as h:
        h.expire()

        async def cancel_one() -> Token:
            waiter = asyncio.create_task(h.service.aio.valid_token(KEY))
            await asyncio.sleep(0.05)  # the request is at the fake by now
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await h.service.aio.valid_token(KEY)
            return await h.service.aio.valid_token(KEY)

        new = asyncio.run(cancel_one())
        assert new != h.token
        assert h.fake.statistics(KEY.shop).refreshes == 1
        assert h.fake.is_valid(KEY.shop, new.access_token)
        assert stored(h.store, KEY) == new
        assert h.service.statistics().refreshes_succeeded == 1


def test_a_rotation_in_flight_is_never_served_from_the_view() -> None:
    """While a forced refresh is in flight the old token may be revoked: callers wait for it."""
    with running(latency=0.5) as h:
        assert h.service.valid_token(KEY) == h.token
        forced = threading.Thread(target=h.service.refresh_token, args=(KEY,))
        forced.start()
        wait_until(lambda: h.service.statistics().refreshes_in_flight == 1)
        # Not the old token from the view: the caller joins the refresh (and times out).
        with pytest.raises(ServiceTimeout):
            h.service.valid_token(KEY, timeout=0.05)
        forced.join()
        new = h.service.valid_token(KEY)
        assert new != h.token
        assert h.fake.is_valid(KEY.shop, new.access_token)


def test_close_from_another_thread_lets_a_refresh_in_flight_land() -> None:
    """close() from a second thread: the waiting caller gets the new pair, saved first."""
    with running(latency=0.3, shutdown_grace=5.0) as h:
        h.expire()
        got: list[Token] = []
        caller = threading.Thread(target=lambda: got.append(h.service.valid_token(KEY)))
        caller.start()
        wait_until(lambda: h.fake.requests == 1)  # the refresh is at the fake
        closer = threading.Thread(target=h.service.close)
        closer.start()
        closer.join()
        caller.join()
        assert len(got) == 1
        assert got[0] != h.token
        assert h.fake.is_valid(KEY.shop, got[0].access_token)
        assert stored(h.store, KEY) == got[0]
        with pytest.raises(RuntimeError, match="closed"):
            h.service.valid_token(KEY)
