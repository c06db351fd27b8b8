"""ServiceThread: one trio run on a daemon thread, and calls into it from any thread.

Lifecycle (``phase``, changed only under ``_lock``)::

    NEW ──start──▶ STARTING ──ready──▶ RUNNING ──close──▶ CLOSING ──run ends──▶ CLOSED
                      └───── start failed or closed first ─────────────────────▶ CLOSED
    any phase ──os.fork(), in the child──▶ FORKED (every use raises; close is a no-op)

A call (`submit`) is queued with the run's `trio.lowlevel.TrioToken` and runs
as a task of the ``calls`` nursery, inside the manager's block; its outcome
goes to the caller through ``deliver`` (a thread event, or an asyncio
future's loop). A caller that stops waiting (`abandon`) cancels only its own
task: the refresh it joined runs in the manager's nursery and goes on. Every
call still pending when the run ends is answered with the closed error, so
no caller waits for a thread that is gone.

The thread is a daemon and `close` is registered with `atexit`: a process
that exits without closing the service still lets rotations and saves in
flight finish (``shutdown_grace``), and never hangs on the thread.
"""

from __future__ import annotations

import atexit
import enum
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

import outcome
import trio

from .._errors import ServiceTimeout
from ._published import Published

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    from .._core._manager import TokenManager

FORK_MESSAGE = (
    "this TokenService was started before os.fork() and its trio thread does not exist in "
    "this child process; start one TokenService per process after the fork (gunicorn: in "
    "post_fork or without --preload; Celery: in worker_process_init; multiprocessing: in "
    "the child's target)"
)


class Phase(enum.Enum):
    """Where a `ServiceThread` is in its life (see the module docstring)."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"
    FORKED = "forked"


class Call:
    """One call into the trio thread: what to run and where its outcome goes."""

    __slots__ = ("abandoned", "args", "deliver", "fn", "scope")

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        deliver: Callable[[outcome.Outcome[Any]], None],
    ) -> None:
        self.fn = fn
        self.args = args
        self.deliver = deliver
        self.scope: trio.CancelScope | None = None
        self.abandoned = False


class ServiceThread:
    """Hosts a `TokenManager` on its own trio thread; what `TokenService` and its aio facade share.

    Attributes:
        published: The fresh tokens callers read without a hop.
        clock: The manager's wall clock (callers read it for the fresh check).
        timeout: The default seconds a caller waits for an answer.
    """

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float],
        timeout: float,
        grace: float,
    ) -> None:
        self.published = Published()
        #: Whether the published view may be read (running; not closing,
        #: closed or a fork's child): the fresh path's one check of the phase.
        self.serving = False
        self.clock = clock
        self.timeout = timeout
        self._name = name
        self._grace = grace
        self._lock = threading.Lock()
        self._phase = Phase.NEW
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._calls: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._manager: TokenManager | None = None
        self._error: BaseException | None = None
        self._pending: set[Call] = set()

    # -- lifecycle ---------------------------------------------------------------------

    def start(
        self, body: Callable[[], AbstractAsyncContextManager[TokenManager]], timeout: float
    ) -> None:
        """Start the thread, enter ``body`` there, and wait until it is ready.

        Raises:
            RuntimeError: Started before, closed, or a fork's child.
            ServiceTimeout: Not ready within ``timeout`` (it is closed then).
            Exception: What entering ``body`` raised (a bad store URL...), unwrapped.
        """
        with self._lock:
            if self._phase is not Phase.NEW:
                raise RuntimeError(self._unusable_message("start"))
            self._phase = Phase.STARTING
            self.serving = False
            self._thread = threading.Thread(
                target=self._run, args=(body,), name=self._name, daemon=True
            )
            _LIVE.add(self)
            self._thread.start()
        if not self._ready.wait(timeout):
            self.close()
            raise ServiceTimeout(f"the TokenService did not start within {timeout} s")
        if self._manager is None:
            error = self._error or RuntimeError(self._unusable_message("start"))
            raise error
        atexit.register(self.close)

    def close(self, timeout: float | None = None) -> None:
        """Stop the run: calls and refreshes in flight get ``grace``; wait for the thread.

        Idempotent, from any thread but the service's own; a no-op in a fork's child.

        Args:
            timeout: Longest wait for the thread (twice the grace plus 5 s by
                default); past it the daemon thread is left to the process's exit.
        """
        with self._lock:
            phase = self._phase
            if phase in (Phase.NEW, Phase.FORKED):
                if phase is Phase.NEW:
                    self._phase = Phase.CLOSED
                    self.serving = False
                return
            thread = self._thread
            if thread is threading.current_thread():
                msg = "a TokenService cannot be closed from its own thread (an event hook)"
                raise RuntimeError(msg)
            if phase in (Phase.STARTING, Phase.RUNNING):
                self._phase = Phase.CLOSING
                self.serving = False
                if phase is Phase.RUNNING:
                    self._run_soon(self._stop_soon)
        atexit.unregister(self.close)
        if thread is not None:
            thread.join(2 * self._grace + 5.0 if timeout is None else timeout)

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self._phase

    def manager(self) -> TokenManager:
        """The manager, while the service runs.

        Raises:
            RuntimeError: Not started, closed, or a fork's child.
        """
        manager = self._manager
        if self._phase is not Phase.RUNNING or manager is None:
            raise RuntimeError(self._unusable_message("use"))
        return manager

    def after_fork_in_child(self) -> None:
        """This process is a fork's child: the thread is gone; refuse every use."""
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        if self._phase is not Phase.CLOSED:  # a closed one stays closed, and says so
            self._phase = Phase.FORKED
            self.serving = False
        self._pending.clear()
        self.published.withdraw_all()

    def _unusable_message(self, what: str) -> str:
        phase = self._phase
        if phase is Phase.FORKED:
            return FORK_MESSAGE
        if phase is Phase.NEW:
            return "this TokenService is not started (call start() or use it as a context manager)"
        if phase in (Phase.CLOSING, Phase.CLOSED):
            if self._error is not None and self._manager is not None:
                return f"this TokenService stopped after an error: {self._error!r}"
            return "this TokenService is closed"
        return f"this TokenService cannot {what} now ({phase.value})"

    # -- the trio thread ---------------------------------------------------------------

    def _run(self, body: Callable[[], AbstractAsyncContextManager[TokenManager]]) -> None:
        try:
            trio.run(self._main, body)
        except BaseException as exc:  # noqa: BLE001 - reported to the starter or to callers
            self._error = exc
        finally:
            with self._lock:
                if self._phase is not Phase.FORKED:
                    self._phase = Phase.CLOSED
                    self.serving = False
            self.published.withdraw_all()
            closed = RuntimeError(self._unusable_message("use"))
            for call in list(self._pending):
                self._finish(call, outcome.Error(closed))
            self._ready.set()

    async def _main(self, body: Callable[[], AbstractAsyncContextManager[TokenManager]]) -> None:
        async with body() as manager, trio.open_nursery() as calls:
            stop = trio.Event()
            with self._lock:
                if self._phase is not Phase.STARTING:
                    return  # closed (or timed out) while starting
                self._manager, self._calls, self._stop = manager, calls, stop
                self._token = trio.lowlevel.current_trio_token()
                self._phase = Phase.RUNNING
                self.serving = True
            self._ready.set()
            await stop.wait()
            # Callers waiting on a refresh get its answer if it lands within the grace.
            calls.cancel_scope.deadline = trio.current_time() + self._grace

    def _stop_soon(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _run_soon(self, fn: Callable[..., object], *args: Any) -> bool:
        token = self._token
        if token is None:
            return False
        try:
            token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            return False
        return True

    # -- calls -------------------------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        deliver: Callable[[outcome.Outcome[Any]], None],
    ) -> Call:
        """Run ``await fn(*args)`` in the trio thread; hand its outcome to ``deliver`` there.

        Raises:
            RuntimeError: The service is not running (not started, closed, forked).
        """
        if self._phase is not Phase.RUNNING:
            raise RuntimeError(self._unusable_message("use"))
        call = Call(fn, args, deliver)
        self._pending.add(call)
        if not self._run_soon(self._spawn, call):
            self._pending.discard(call)
            raise RuntimeError(self._unusable_message("use"))
        return call

    def abandon(self, call: Call) -> None:
        """The caller stopped waiting: cancel its task (never the refresh it joined)."""
        call.abandoned = True
        self._run_soon(self._cancel, call)

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float | None) -> Any:
        """Run ``await fn(*args)`` in the trio thread and wait for it in this thread.

        Raises:
            ServiceTimeout: No answer within ``timeout`` (the default when None).
            RuntimeError: Called from the service's own thread, or it is not running.
            Exception: What ``fn`` raised, unwrapped.
        """
        if threading.current_thread() is self._thread:
            msg = "a TokenService's own thread (an event hook) cannot wait on it"
            raise RuntimeError(msg)
        done = threading.Event()
        box: list[outcome.Outcome[Any]] = []

        def deliver(result: outcome.Outcome[Any]) -> None:
            box.append(result)
            done.set()

        call = self.submit(fn, args, deliver)
        wait = self.timeout if timeout is None else timeout
        if not done.wait(wait):
            self.abandon(call)
            raise ServiceTimeout(f"no answer from the TokenService within {wait} s")
        return box[0].unwrap()

    def _spawn(self, call: Call) -> None:
        calls = self._calls
        try:
            if calls is None:
                raise RuntimeError(self._unusable_message("use"))  # noqa: TRY301 - one answer path
            calls.start_soon(self._serve, call, name="shoptoken.service.call")
        except RuntimeError as exc:  # the nursery closed: the service is closing
            self._finish(call, outcome.Error(exc))

    async def _serve(self, call: Call) -> None:
        result: outcome.Outcome[Any] | None = None
        try:
            with trio.CancelScope() as scope:
                call.scope = scope
                if call.abandoned:
                    scope.cancel()
                try:
                    result = outcome.Value(await call.fn(*call.args))
                except Exception as exc:  # noqa: BLE001 - crosses to the caller, unwrapped
                    result = outcome.Error(exc)
        finally:
            if result is None:  # cancelled: abandoned, or the service is closing
                result = outcome.Error(RuntimeError(self._unusable_message("use")))
            self._finish(call, result)

    def _cancel(self, call: Call) -> None:
        if call.scope is not None:
            call.scope.cancel()

    def _finish(self, call: Call, result: outcome.Outcome[Any]) -> None:
        self._pending.discard(call)
        call.deliver(result)


_LIVE: weakref.WeakSet[ServiceThread] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for service in list(_LIVE):
        service.after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX only; elsewhere there is no fork to guard
    os.register_at_fork(after_in_child=_after_fork_in_child)
