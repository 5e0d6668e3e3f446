"""The asyncio link's glue: the thread waiter, the buffered read, reads in the caller's thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import linkserver
from linkserver import wxf
from linkserver.portal import get_portal
from linkserver.aio import link_pair
from linkserver.aio.link import ThreadWaiter, _wake
from linkserver.transport.stream import READ_BUFFER_SIZE

Pair = tuple[linkserver.Link, linkserver.Link]

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


# ------------------------------------------------- reads in the caller's thread


def _until(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@pytest.fixture
def tcp_pair() -> Iterator[tuple[linkserver.Link, linkserver.Link]]:
    with linkserver.listen("0@127.0.0.1") as server_end:
        with linkserver.connect(server_end.name, 10) as client_end:
            server_end.activate(10)
            yield client_end, server_end


def test_a_blocking_get_reads_the_socket_itself(
    tcp_pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, server = tcp_pair
    readers: list[threading.Thread] = []
    read_once = client.aio._read_once

    def recorded() -> None:
        readers.append(threading.current_thread())
        read_once()

    monkeypatch.setattr(client.aio, "_read_once", recorded)
    threading.Timer(0.05, server.put, ("one",)).start()  # after the get has begun to wait
    assert client.get(5) == "one"
    assert readers and set(readers) == {threading.current_thread()}  # not the loop's thread
    server.put("two")
    server.send_message(200, 7)
    assert client.get(5) == "two"
    assert _until(client.message_ready)
    assert client.get_message(5) == (200, 7)


def test_an_idle_link_is_read_by_the_loop_again_and_answers_a_close(tcp_pair: Pair) -> None:
    client, server = tcp_pair
    server.put("one")
    assert client.get(5) == "one"
    assert _until(lambda: not client.aio.direct)  # nobody reads it: the loop does
    server.close()  # waits for the client's answer to the close: the loop gives it
    assert _until(lambda: client.aio.closed)


def test_a_timed_out_direct_get_leaves_the_link_usable(tcp_pair: Pair) -> None:
    client, server = tcp_pair
    server.put("one")
    assert client.get(5) == "one"
    with pytest.raises(linkserver.LinkTimeout):
        client.get(0.05)
    server.put("two")
    assert client.get(5) == "two"


def test_an_asyncio_reader_takes_reading_back(tcp_pair: Pair) -> None:
    client, server = tcp_pair
    portal = get_portal()
    assert portal.run_sync(client.aio.start_direct_reads)
    pending = portal.submit(client.aio.get(5))
    server.put("two")
    assert pending.result(5) == "two"
    assert not client.aio.direct


def test_the_peer_closing_during_a_direct_wait_delivers_what_came_first(tcp_pair: Pair) -> None:
    client, server = tcp_pair
    server.put("one")
    assert client.get(5) == "one"

    def last_words() -> None:
        time.sleep(0.05)
        server.put("last")
        server.close()

    threading.Thread(target=last_words).start()
    assert client.get(5) == "last"
    with pytest.raises(linkserver.LinkClosed):
        client.get(5)
    assert client.closed


def test_a_memory_pair_is_never_read_directly() -> None:
    a, b = linkserver.link_pair()
    with a, b:
        a.put(1)
        assert b.get(5) == 1
        assert not b.aio.may_read_directly()
        assert not b.aio.direct


def test_frames_of_one_read_are_passed_on_in_one_write() -> None:
    # A relay as the server's: b's receiver puts each expression on c. Three
    # frames that arrive in one read leave c in one write.
    async def main() -> None:
        a, b = await link_pair()
        c, d = await link_pair()
        b.set_receiver(c.put_payload_nowait)
        transport = c._transport
        assert transport is not None
        writes: list[int] = []
        write = transport.write

        def counted(data: bytes | bytearray | memoryview) -> None:
            writes.append(len(data))
            write(data)

        transport.write = counted  # type: ignore[method-assign]
        conn, a_transport = a._conn, a._transport
        assert conn is not None and a_transport is not None
        for value in ("one", "two", "three"):
            conn.send_expression(wxf.dumps(value))
        a_transport.write(conn.data_to_send())  # three frames in one read for b
        assert [await d.get(5) for _ in range(3)] == ["one", "two", "three"]
        assert len(writes) == 1
        await a.put("four")  # one frame: written at once, as before
        assert await d.get(5) == "four"
        assert len(writes) == 2
        for link in (a, b, c, d):
            await link.aclose()

    asyncio.run(main())


def test_ready_and_closed_may_be_asked_on_the_loop_thread(tcp_pair: Pair) -> None:
    # A callback on the loop (LinkServer.on_link's, a door's) may look without waiting.
    client, server = tcp_pair
    server.put("one")
    assert client.get(5) == "one"
    portal = get_portal()
    assert portal.run_sync(client.ready) is False
    assert portal.run_sync(lambda: client.closed) is False
    server.put("two")
    assert _until(lambda: portal.run_sync(client.ready))
    assert client.get(5) == "two"
