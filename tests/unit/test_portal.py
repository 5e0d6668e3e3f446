"""The portal: a blocking caller's coroutines and functions run on the background loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest

from linkserver.errors import LinkError, LinkTimeout
from linkserver.portal import get_portal


def test_call_returns_the_result_and_raises_the_error() -> None:
    portal = get_portal()

    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    async def failing() -> None:
        raise KeyError("gone")

    assert portal.call(value()) == 7
    with pytest.raises(KeyError, match="gone"):
        portal.call(failing())


def test_call_runs_on_the_loop_thread() -> None:
    portal = get_portal()

    async def where() -> bool:
        return portal.on_loop_thread()

    assert portal.call(where()) is True
    assert portal.run_sync(portal.on_loop_thread) is True
    assert portal.on_loop_thread() is False


def test_a_call_that_times_out_is_cancelled() -> None:
    portal = get_portal()
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(LinkTimeout, match="did not finish within 0.05 s"):
        portal.call(forever(), timeout=0.05)
    assert cancelled.wait(5)


def test_a_cancelled_coroutine_raises_cancelled_error() -> None:
    portal = get_portal()

    async def cancel_myself() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    with pytest.raises(concurrent.futures.CancelledError):
        portal.call(cancel_myself())


def test_run_sync_hands_the_error_over() -> None:
    portal = get_portal()

    def failing() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        portal.run_sync(failing)
    assert portal.run_sync(lambda a, b: a + b, 2, 3) == 5


def test_waiting_on_the_loop_thread_is_refused() -> None:
    portal = get_portal()

    async def nested() -> str:
        coro = asyncio.sleep(0)
        try:
            portal.call(coro)
        except LinkError as exc:
            return str(exc)
        return "not refused"

    assert portal.call(nested()) != "not refused"


def test_a_call_given_up_before_it_started_never_runs() -> None:
    portal = get_portal()
    ran = threading.Event()

    async def mark() -> None:
        ran.set()

    portal.call_soon(time.sleep, 0.5)  # the loop is busy: the call cannot start in time
    with pytest.raises(LinkTimeout):
        portal.call(mark(), timeout=0.05)
    portal.run_sync(lambda: None)  # the loop has come to the call by now
    assert not ran.is_set()
