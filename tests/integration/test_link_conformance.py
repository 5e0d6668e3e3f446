"""One conformance suite for every transport (trio's check_streams idea)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from wolframclient.language import wl

import linkserver
from linkserver import UrgentMessage

from tests.integration.transports import TRANSPORTS, Pair, ipv6_loopback_available
from tests.timeouts import TIMEOUT


@pytest.fixture(params=sorted(TRANSPORTS))
def links(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    if request.param == "tcp6" and not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback (::1) to test on")
    with TRANSPORTS[request.param](tmp_path) as pair:  # type: ignore[attr-defined]
        yield pair


# (what is put, what comes back): wolframclient's decoding, e.g. lists as tuples.
VALUES = [
    (0, 0), (-1, -1), (2**70, 2**70), (-(2**100), -(2**100)), (1.5, 1.5),
    ("unicode ∑ ✓", "unicode ∑ ✓"), (b"\x00\x01bytes", b"\x00\x01bytes"), (wl.x, wl.x),
    (wl.Global.x, wl.Global.x), ([1, [2, [3]]], (1, (2, (3,)))),
    ({"a": 1, "b": [2.5]}, {"a": 1, "b": (2.5,)}),
    (wl.Print("Hello client program."), wl.Print("Hello client program.")),
    (wl.Plus(1, wl.Times(2, wl.Power(wl.x, 3))), wl.Plus(1, wl.Times(2, wl.Power(wl.x, 3)))),
    (Decimal("1.5"), Decimal("1.5")), (Fraction(1, 3), wl.Rational(1, 3)),
    (1 + 2j, wl.Complex(1.0, 2.0)), (True, True), (None, None),
]


def test_round_trip_of_expressions(links: Pair) -> None:
    client, server = links
    for value, _ in VALUES:
        client.put(value)
    got = [server.get(TIMEOUT) for _ in VALUES]
    assert got == [expected for _, expected in VALUES]


def test_numpy_array_round_trip(links: Pair) -> None:
    client, server = links
    array = np.arange(10000, dtype=np.float64).reshape(100, 100)
    server.put(array)
    back = client.get(TIMEOUT)
    assert np.array_equal(np.asarray(back), array)


def test_order_is_kept(links: Pair) -> None:
    client, server = links
    for i in range(500):
        client.put(i)
    assert [server.get(TIMEOUT) for _ in range(500)] == list(range(500))


def test_both_directions_at_once(links: Pair) -> None:
    client, server = links
    client.put("to server")
    server.put("to client")
    assert server.get(TIMEOUT) == "to server"
    assert client.get(TIMEOUT) == "to client"


def test_get_timeout_leaves_link_usable(links: Pair) -> None:
    client, server = links
    with pytest.raises(linkserver.LinkTimeout):
        server.get(timeout=0.05)
    assert not server.ready()
    client.put(1)
    assert server.get(TIMEOUT) == 1


def test_ready_reports_waiting_expression(links: Pair) -> None:
    client, server = links
    assert not server.ready()
    client.put(7)
    client.flush()
    # Wait on the message, not on time: a round trip guarantees 7 arrived first.
    client.put(8)
    assert server.get(TIMEOUT) == 7
    server.put("ack")
    client.get(TIMEOUT)
    assert server.ready()
    assert server.get(TIMEOUT) == 8


def test_large_expression(links: Pair) -> None:
    client, server = links
    text = "x" * (5 * 1024 * 1024)
    client.put(text)
    assert server.get(TIMEOUT) == text


@pytest.mark.parametrize(
    ("method", "code"),
    [("abort", UrgentMessage.ABORT), ("interrupt", UrgentMessage.INTERRUPT),
     ("terminate", UrgentMessage.TERMINATE)],
)
def test_urgent_messages_travel_apart(links: Pair, method: str, code: UrgentMessage) -> None:
    client, server = links
    client.put("queued result")
    getattr(client, method)()
    assert server.get_message(TIMEOUT) == (code, 0)
    assert server.get(TIMEOUT) == "queued result"
    assert not server.message_ready()


def test_user_message_with_argument(links: Pair) -> None:
    client, server = links
    server.send_message(200, 42)
    assert client.get_message(TIMEOUT) == (200, 42)


def test_close_delivers_queued_then_reports_closed(links: Pair) -> None:
    client, server = links
    server.put("last words")
    server.close()
    assert client.get(TIMEOUT) == "last words"
    with pytest.raises(linkserver.LinkClosed, match="peer closed"):
        client.get(TIMEOUT)
    assert client.closed
    with pytest.raises(linkserver.LinkClosed):
        client.put(1)
    with pytest.raises(linkserver.LinkClosed):
        server.put(1)
    server.close()  # closing twice is harmless


def test_blocked_get_is_woken_by_close(links: Pair) -> None:
    client, server = links
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            client.get(TIMEOUT)
        except linkserver.LinkError as exc:
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    server.close()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], linkserver.LinkClosed)


def test_tokens_port_line_by_line(links: Pair) -> None:
    client, server = links
    # WSPutFunction(lp, "Print", 1); WSPutString(lp, "Hello client program.")
    client.put_function("Print", 1)
    assert not server.ready()
    client.put_string("Hello client program.")
    assert server.get(TIMEOUT) == wl.Print("Hello client program.")
    client.put_function("f", 4)
    client.put_integer(2**80)
    client.put_real(0.25)
    client.put_symbol("x")
    client.put_function("List", 0)
    server.put(server.get(TIMEOUT))
    assert client.get_next(TIMEOUT) is linkserver.Token.FUNCTION
    assert client.get_function() == ("f", 4)
    assert client.get_integer() == 2**80
    assert client.get_real() == 0.25
    assert client.get_symbol() == "x"
    assert client.get_function() == ("List", 0)
    with pytest.raises(linkserver.TokenError):
        client.put_string(5)  # type: ignore[arg-type]


def test_eight_threads_hammering_one_link(links: Pair) -> None:
    client, server = links
    threads, per_thread = 8, 150
    stop = threading.Event()

    def echo() -> None:  # the far end sends back every expression it gets
        for _ in range(threads * per_thread):
            server.put(server.get(TIMEOUT))

    echoer = threading.Thread(target=echo)
    echoer.start()
    received: list[list[object]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []

    def work(tid: int) -> None:
        try:
            for i in range(per_thread):
                if i % 3 == 0:  # token calls too: partial state is per thread
                    client.put_function("List", 3)
                    client.put_integer(tid)
                    client.put_integer(i)
                    client.put_string(f"t{tid}-{i}" * 20)
                else:
                    client.put([tid, i, f"t{tid}-{i}" * 20])
                received[tid].append(client.get(TIMEOUT))
        except BaseException as exc:  # report, don't hang the other threads
            failures.append(exc)
            stop.set()

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(TIMEOUT * 6)
    echoer.join(TIMEOUT)
    assert not failures
    everything = sorted(x for got in received for x in got)  # type: ignore[type-var]
    expected = sorted(
        (tid, i, f"t{tid}-{i}" * 20) for tid in range(threads) for i in range(per_thread)
    )
    assert [tuple(x) if not isinstance(x, tuple) else x for x in everything] == expected  # type: ignore[arg-type]
