"""The one background event loop behind the blocking API (docs/design.md §Sync).

The blocking classes (:class:`linkserver.Link`, :class:`linkserver.LinkServer`)
are thin façades over their asyncio twins in :mod:`linkserver.aio`. Their
coroutines and callbacks run on a single event loop in a daemon thread,
started on first use -- anyio's blocking-portal idea. Nothing here knows about
links; it only moves calls onto the loop and results back.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .aio.link import ThreadWaiter
from .errors import LinkError, LinkTimeout

__all__ = ["Portal", "get_portal"]

T = TypeVar("T")


class Portal:
    """An event loop running in its own daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="linkserver-loop", daemon=True
        )
        self._thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def on_loop_thread(self) -> bool:
        """True in the loop's own thread, where a blocking wait would hang the loop."""
        return threading.current_thread() is self._thread

    def _check_thread(self) -> None:
        if self.on_loop_thread():
            raise LinkError(
                "a blocking linkserver call was made from inside its own event loop; "
                "use linkserver.aio in callbacks that run there",
                code="wrong-thread",
            )

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result (or raise its error).

        Raises:
            LinkError: called from the loop's own thread.
            LinkTimeout: ``timeout`` passed (the coroutine is cancelled).
        """
        try:
            self._check_thread()
        except LinkError:
            coro.close()
            raise
        # A task whose end releases a lock this thread waits on: one wake, where
        # run_coroutine_threadsafe's Future takes a condition and callbacks.
        waiter: ThreadWaiter[T] = ThreadWaiter()
        tasks: list[asyncio.Task[T]] = []

        def ended(task: asyncio.Task[T]) -> None:
            try:
                if task.cancelled():
                    waiter.set_exception(concurrent.futures.CancelledError())
                elif (error := task.exception()) is not None:
                    waiter.set_exception(error)
                else:
                    waiter.set_result(task.result())
            except concurrent.futures.InvalidStateError:
                pass  # the caller gave up waiting (its timeout passed)

        def start() -> None:
            if waiter.done():  # given up on before it started: never run it
                coro.close()
                return
            task = self.loop.create_task(coro)
            tasks.append(task)
            task.add_done_callback(ended)

        self.loop.call_soon_threadsafe(start)
        try:
            return waiter.result(timeout)
        except TimeoutError:
            if waiter.cancel():
                self.loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
                raise LinkTimeout(f"the operation did not finish within {timeout:g} s") from None
            return waiter.result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop and return its future at once (cancel it to cancel it).

        Raises:
            LinkError: called from the loop's own thread.
        """
        try:
            self._check_thread()
        except LinkError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run plain ``fn(*args)`` on the loop thread and return its result."""
        self._check_thread()
        waiter: ThreadWaiter[T] = ThreadWaiter()

        def run() -> None:
            try:
                waiter.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller's thread, never lost
                waiter.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return waiter.result()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop without waiting (FIFO with other calls)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        """Stop the loop (at interpreter exit)."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


_portal: Portal | None = None
_portal_lock = threading.Lock()


def get_portal() -> Portal:
    """Return the process's portal, starting it on first use."""
    global _portal
    if _portal is None:
        with _portal_lock:
            if _portal is None:
                _portal = Portal()
                atexit.register(_portal.stop)
    return _portal
