"""The asyncio link's glue: the thread waiter and the buffered read."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

import linkserver
from linkserver.aio import link_pair
from linkserver.aio.link import READ_BUFFER_SIZE, ThreadWaiter, _wake

# ------------------------------------------------------------ ThreadWaiter


def test_a_value_set_in_another_thread_reaches_the_waiting_thread() -> None:
    waiter: ThreadWaiter[bytes] = ThreadWaiter()
    threading.Timer(0.05, waiter.set_result, (b"payload",)).start()
    assert waiter.result(5) == b"payload"
    assert waiter.done()
    assert waiter.result() == b"payload"  # a second call returns at once


def test_a_wait_gives_up_after_its_timeout() -> None:
    waiter: ThreadWaiter[bytes] = ThreadWaiter()
    with pytest.raises(TimeoutError):
        waiter.result(0.01)
    assert not waiter.done()


def test_a_cancelled_waiter_takes_nothing() -> None:
    waiter: ThreadWaiter[bytes] = ThreadWaiter()
    assert waiter.cancel()
    assert waiter.done()
    assert not _wake(waiter, b"payload")  # the link gives the payload to the next waiter
    with pytest.raises(concurrent.futures.InvalidStateError):
        waiter.set_result(b"payload")


def test_cancelling_after_the_value_came_keeps_the_value() -> None:
    waiter: ThreadWaiter[bytes] = ThreadWaiter()
    assert _wake(waiter, b"payload")
    assert not waiter.cancel()
    assert waiter.exception() is None
    assert waiter.result() == b"payload"
    assert not _wake(waiter, b"second")  # completed once only


def test_an_error_is_raised_by_result() -> None:
    waiter: ThreadWaiter[bytes] = ThreadWaiter()
    error = ValueError("the link ended")
    assert _wake(waiter, error=error)
    assert waiter.exception() is error
    with pytest.raises(ValueError, match="the link ended"):
        waiter.result(1)


def test_only_one_of_many_racing_completions_wins() -> None:
    for _ in range(50):
        waiter: ThreadWaiter[int] = ThreadWaiter()
        wins: list[int] = []
        start = threading.Barrier(4)

        def complete(value: int, waiter: ThreadWaiter[int] = waiter) -> None:
            start.wait()
            if _wake(waiter, value):
                wins.append(value)

        threads = [threading.Thread(target=complete, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1
        assert waiter.result(1) == wins[0]


# ------------------------------------------------------------ buffered read


def test_a_payload_larger_than_the_read_buffer_arrives_whole() -> None:
    # The memory transport hands bytes over as a socket would: through the
    # link's one read buffer, in pieces no larger than it.
    async def main() -> None:
        a, b = await link_pair()
        big = "x" * (3 * READ_BUFFER_SIZE + 17)
        await a.put(big)
        await a.put("after")
        assert await b.get(5) == big
        assert await b.get(5) == "after"
        assert b.bytes_in > 3 * READ_BUFFER_SIZE
        await a.aclose()
        await b.aclose()

    asyncio.run(main())


def test_a_blocking_link_over_tcp_reads_frames_larger_than_the_buffer() -> None:
    with linkserver.listen("0@127.0.0.1") as server_end:
        with linkserver.connect(server_end.name, 10) as client_end:
            server_end.activate(10)
            payloads = [b"y" * (READ_BUFFER_SIZE * 2 + 1), b"z", b"w" * READ_BUFFER_SIZE]
            for payload in payloads:
                client_end.put(payload)
            assert [server_end.get(10) for _ in payloads] == payloads
