"""The kernel's wire: who reads the socket, in what order, and how a link's end is seen.

Each test dials a real listening link (or a TLS LinkServer) over loopback with
``connect_wire`` and plays the server with the blocking API.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import linkserver
from linkserver import security
from linkserver.errors import LinkError
from linkserver.kernel import wire as wire_module
from linkserver.kernel.wire import WATCH_TICK, KernelWire, connect_wire
from linkserver.protocol import UrgentMessage
from tests.timeouts import TIMEOUT, wait_until


class Seen:
    """What the wire delivered: urgent messages with the thread that read each, and the end."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, int, str]] = []
        self.ended: list[LinkError] = []

    def message(self, message: UrgentMessage | int, argument: int) -> None:
        self.messages.append((int(message), argument, threading.current_thread().name))

    def end(self, error: LinkError) -> None:
        self.ended.append(error)


@pytest.fixture
def pair() -> Iterator[tuple[linkserver.Link, KernelWire, Seen]]:
    server = linkserver.listen("0@127.0.0.1")
    wire = connect_wire(server.name, TIMEOUT, key=None, tls=False)
    seen = Seen()
    wire.start(seen.message, seen.end)
    server.activate(TIMEOUT)
    yield server, wire, seen
    wire.close(timeout=1.0)
    server.close()


def take(wire: KernelWire) -> bytes:
    assert wire.wait(wire.ready, TIMEOUT)
    payload = wire.take_nowait()
    assert payload is not None
    return payload


def test_expressions_go_both_ways_in_order(
    pair: tuple[linkserver.Link, KernelWire, Seen]
) -> None:
    server, wire, _seen = pair
    for i in range(50):
        server.put(i)
    got = [linkserver.wxf.loads(take(wire)) for _ in range(50)]
    assert got == list(range(50))
    big = "y" * 3_000_000  # more than a socket buffer: the write waits for the reader
    wire.put(big)
    wire.put("after")
    assert server.get(timeout=TIMEOUT) == big
    assert server.get(timeout=TIMEOUT) == "after"
    server.put(big)  # many reads of the thread's buffer: the frame arrives whole
    server.put("after")
    assert linkserver.wxf.loads(take(wire)) == big
    assert linkserver.wxf.loads(take(wire)) == "after"


def test_the_main_thread_reads_what_comes_while_it_waits(
    pair: tuple[linkserver.Link, KernelWire, Seen]
) -> None:
    server, wire, seen = pair
    server.put("request")
    server.abort()
    assert linkserver.wxf.loads(take(wire)) == "request"
    assert wire.wait(lambda: bool(seen.messages), TIMEOUT)
    assert seen.messages == [(int(UrgentMessage.ABORT), 0, threading.current_thread().name)]


def test_a_long_computation_has_its_urgent_messages_read_by_the_watcher(
    pair: tuple[linkserver.Link, KernelWire, Seen]
) -> None:
    server, wire, seen = pair
    server.put("go")
    take(wire)  # from here on the main thread "computes" (does not wait on the wire)
    server.abort()
    # Busy here, as an evaluation is: the watcher must read the ABORT meanwhile.
    assert wait_until(lambda: bool(seen.messages), TIMEOUT)
    [(message, _argument, thread)] = seen.messages
    assert message == int(UrgentMessage.ABORT)
    assert thread == "linkserver-kernel-watcher"
    # The main thread takes the reading back when it waits again.
    server.put("next")
    assert linkserver.wxf.loads(take(wire)) == "next"


def test_a_short_computation_leaves_its_messages_to_the_next_wait(
    pair: tuple[linkserver.Link, KernelWire, Seen]
) -> None:
    server, wire, seen = pair
    server.put("go")
    take(wire)
    server.abort()
    server.put("next")
    time.sleep(WATCH_TICK / 4)  # well under two looks of the watcher (it may still look once)
    assert linkserver.wxf.loads(take(wire)) == "next"
    assert [m[0] for m in seen.messages] == [int(UrgentMessage.ABORT)]  # before "next": in order


def test_wake_makes_a_wait_look_again(pair: tuple[linkserver.Link, KernelWire, Seen]) -> None:
    _server, wire, _seen = pair
    flag = threading.Event()

    def later() -> None:
        time.sleep(0.05)
        flag.set()
        wire.wake()

    threading.Thread(target=later).start()
    assert wire.wait(flag.is_set, TIMEOUT)


def test_a_wait_with_a_timeout_returns_false(pair: tuple[linkserver.Link, KernelWire, Seen]) -> None:
    _server, wire, _seen = pair
    assert wire.wait(lambda: False, 0.05) is False


def test_the_end_of_the_link_is_seen_by_the_reader_and_ends_puts(
    pair: tuple[linkserver.Link, KernelWire, Seen]
) -> None:
    server, wire, seen = pair
    server.close()
    wire.wait(lambda: False)  # returns because the link ended
    assert wire.closed
    assert len(seen.ended) == 1
    with pytest.raises(LinkError):
        wire.put("nobody reads this")


def test_the_end_of_the_link_reaches_a_long_computation(
    pair: tuple[linkserver.Link, KernelWire, Seen]
) -> None:
    server, wire, seen = pair
    server.put("go")
    take(wire)
    server.close()
    assert wait_until(lambda: bool(seen.ended), TIMEOUT)  # the watcher saw it
    assert wire.closed


def test_an_idle_watcher_sleeps_and_wakes_for_the_next_computation(
    pair: tuple[linkserver.Link, KernelWire, Seen]
) -> None:
    server, wire, seen = pair
    stop = threading.Event()

    def nudge() -> None:  # makes the wait below look at its condition now and then
        while not stop.wait(0.05):
            wire.wake()

    nudger = threading.Thread(target=nudge)
    nudger.start()
    try:
        idle_for = WATCH_TICK * wire_module.IDLE_LOOKS
        # Waiting all along, until the watcher sleeps.
        assert wire.wait(lambda: not wire._work.is_set(), idle_for + TIMEOUT)
    finally:
        stop.set()
        nudger.join()
    server.put("go")
    take(wire)  # a computation starts: the watcher wakes for it
    assert wire._work.is_set()
    server.abort()
    assert wait_until(lambda: bool(seen.messages), TIMEOUT)
    assert seen.messages[0][2] == "linkserver-kernel-watcher"


def test_close_is_polite_and_bounded(pair: tuple[linkserver.Link, KernelWire, Seen]) -> None:
    server, wire, _seen = pair
    wire.close(timeout=1.0)
    with pytest.raises(LinkError):
        server.get(timeout=TIMEOUT)  # the server saw our CLOSE
    assert wire.closed
    wire.close()  # twice: nothing


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return security.self_signed(tmp_path_factory.mktemp("tls"))


def test_a_wire_over_tls_pins_the_certificate_and_carries_big_answers(
    certificate: tuple[Path, Path]
) -> None:
    context, fingerprint = security.server_context(*certificate)
    with linkserver.LinkServer(tls=context) as server:
        with pytest.raises(LinkError, match="fingerprint"):
            connect_wire(server.name, TIMEOUT, key=None, tls=True,
                         fingerprint="sha256:" + "0" * 64)
        wire = connect_wire(server.name, TIMEOUT, key=None, tls=True, fingerprint=fingerprint)
        seen = Seen()
        wire.start(seen.message, seen.end)
        try:
            link = server.accept(timeout=TIMEOUT)
            big = "z" * 2_000_000
            link.put(big)
            link.put("small")
            assert linkserver.wxf.loads(take(wire)) == big
            assert linkserver.wxf.loads(take(wire)) == "small"  # held by TLS, unseen by poll
            wire.put(big)
            assert link.get(timeout=TIMEOUT) == big
            link.close()
        finally:
            wire.close(timeout=1.0)


def test_what_is_put_while_corked_goes_out_in_one_write(
    pair: tuple[linkserver.Link, KernelWire, Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, wire, _seen = pair
    writes: list[int] = []
    send_locked = wire._send_locked

    def counted(data: bytes) -> None:
        writes.append(len(data))
        send_locked(data)

    monkeypatch.setattr(wire, "_send_locked", counted)
    with wire.corked():
        for value in ("OutputNamePacket", "ReturnTextPacket", "InputNamePacket"):
            wire.put(value)
        assert writes == []  # nothing sent inside the block
    assert len(writes) == 1
    assert [server.get(TIMEOUT) for _ in range(3)] == [
        "OutputNamePacket", "ReturnTextPacket", "InputNamePacket"]
    wire.put("after")  # uncorked: written at once again
    assert len(writes) == 2
    assert server.get(TIMEOUT) == "after"
