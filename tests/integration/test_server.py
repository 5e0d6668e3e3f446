"""LinkServer: accept, links, on_link, many clients at one address, and closing."""

from __future__ import annotations

import threading
import time

import pytest
from wolframclient.language import wl

import linkserver
from linkserver import LinkMode
from tests.timeouts import TIMEOUT


def test_port_zero_picks_a_port_and_names_it(server: linkserver.LinkServer) -> None:
    assert server.port > 0
    assert server.interface == "127.0.0.1"
    assert server.name == f"{server.port}@127.0.0.1"


def test_accept_times_out_clearly(server: linkserver.LinkServer) -> None:
    with pytest.raises(linkserver.LinkTimeout, match="no link arrived"):
        server.accept(timeout=0.05)


def test_many_clients_one_address(server: linkserver.LinkServer) -> None:
    clients = [linkserver.connect(server.name, timeout=TIMEOUT) for _ in range(40)]
    accepted = [server.accept(timeout=TIMEOUT) for _ in clients]
    assert len({link.link_id for link in accepted}) == 40
    for i, c in enumerate(clients):
        c.put(i)
    by_id = {link.link_id: link for link in accepted}
    for i, c in enumerate(clients):
        assert by_id[c.link_id].get(TIMEOUT) == i
    for link in clients + accepted:
        link.close()


def test_links_returns_arrivals_without_waiting(server: linkserver.LinkServer) -> None:
    assert server.links() == []
    clients = [linkserver.connect(server.name, timeout=TIMEOUT) for _ in range(3)]
    # The client side opens when the server has processed the hello, so by the
    # time connect() returns the link is waiting in the server.
    arrived = server.links()
    assert sorted(link.link_id for link in arrived) == sorted(c.link_id for c in clients)
    assert server.links() == []
    for link in clients + arrived:
        link.close()


def test_on_link_callback_serves_concurrent_clients(server: linkserver.LinkServer) -> None:
    def handler(link: linkserver.Link) -> None:
        link.put(wl.Print("Hello client program."))
        link.put(link.get(TIMEOUT))  # each callback runs in its own thread: blocking is fine
        link.close()

    server.on_link(handler)
    results: list[object] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        with linkserver.connect(server.name, timeout=TIMEOUT) as link:
            greeting = link.get(TIMEOUT)
            link.put(i)
            echoed = link.get(TIMEOUT)
            with lock:
                results.append((greeting, echoed))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 3)
    assert sorted(r[1] for r in results) == list(range(30))  # type: ignore[index]
    assert all(r[0] == wl.Print("Hello client program.") for r in results)  # type: ignore[index]


def test_failing_callback_closes_only_its_link(server: linkserver.LinkServer) -> None:
    calls = []

    def handler(link: linkserver.Link) -> None:
        calls.append(link)
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        link.put("fine")

    server.on_link(handler)
    first = linkserver.connect(server.name, timeout=TIMEOUT)
    with pytest.raises(linkserver.LinkClosed, match="handler failed"):
        first.get(TIMEOUT)
    second = linkserver.connect(server.name, timeout=TIMEOUT)
    assert second.get(TIMEOUT) == "fine"
    first.close()
    second.close()


def test_on_link_takes_links_already_waiting(server: linkserver.LinkServer) -> None:
    client = linkserver.connect(server.name, timeout=TIMEOUT)
    got = threading.Event()
    server.on_link(lambda link: (link.put("hi"), got.set()))
    assert client.get(TIMEOUT) == "hi"
    assert got.wait(TIMEOUT)
    client.close()


@pytest.mark.parametrize("mode", list(LinkMode))
def test_plain_client_is_accepted_not_left_hanging(
    server: linkserver.LinkServer, mode: LinkMode
) -> None:
    # WSTP's trap: a client without LinkOptions -> 4 hung forever. Both modes work here.
    client = linkserver.connect(server.name, timeout=TIMEOUT, mode=mode)
    link = server.accept(timeout=TIMEOUT)
    assert link.mode is mode
    link.put("welcome")
    assert client.get(TIMEOUT) == "welcome"
    client.close()
    link.close()


def test_server_close_refuses_new_and_keeps_handed_over_links() -> None:
    server = linkserver.LinkServer()
    client = linkserver.connect(server.name, timeout=TIMEOUT)
    kept = server.accept(timeout=TIMEOUT)
    waiting = linkserver.connect(server.name, timeout=TIMEOUT)  # never accepted
    server.close()
    with pytest.raises(linkserver.LinkClosed, match="server is closed"):
        server.accept(timeout=TIMEOUT)
    with pytest.raises(linkserver.LinkClosed, match="shutting down"):
        waiting.get(TIMEOUT)
    with pytest.raises(linkserver.ConnectFailed, match="refused"):
        linkserver.connect(server.name, timeout=TIMEOUT)
    kept.put("still here")
    assert client.get(TIMEOUT) == "still here"
    client.close()
    kept.close()


def test_accept_blocked_in_thread_is_woken_by_close() -> None:
    server = linkserver.LinkServer()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            server.accept()
        except linkserver.LinkError as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    # accept() registers itself on the loop; a link arriving would be handed to it.
    deadline = time.monotonic() + TIMEOUT
    while not server.aio._accept_waiters and time.monotonic() < deadline:
        time.sleep(0.01)
    server.close()
    thread.join(TIMEOUT)
    assert [type(e) for e in errors] == [linkserver.LinkClosed]


def test_every_interface() -> None:
    with linkserver.LinkServer(0, "") as server:
        assert server.interface == ""
        with linkserver.connect(("127.0.0.1", server.port), timeout=TIMEOUT) as client:
            link = server.accept(timeout=TIMEOUT)
            client.put(1)
            assert link.get(TIMEOUT) == 1
            link.close()


def test_port_in_use_is_a_clear_error(server: linkserver.LinkServer) -> None:
    with pytest.raises(linkserver.LinkError, match="already in use"):
        linkserver.LinkServer(server.port, "127.0.0.1")


def test_connect_errors_are_clear() -> None:
    with pytest.raises(linkserver.LinkNameError):
        linkserver.connect("not a name", timeout=TIMEOUT)
    with pytest.raises(linkserver.ConnectFailed, match="no such socket"):
        linkserver.connect("unix:/nonexistent/linkserver.sock", timeout=TIMEOUT)


def test_one_to_one_link_refuses_a_second_peer() -> None:
    listener = linkserver.listen(0)
    first = linkserver.connect(listener.name, timeout=TIMEOUT)
    listener.activate(TIMEOUT)
    with pytest.raises((linkserver.NotALinkServerError, linkserver.ConnectFailed)):
        linkserver.connect(listener.name, timeout=TIMEOUT)
    first.put("ok")
    assert listener.get(TIMEOUT) == "ok"
    first.close()
    listener.close()


def test_loopback_gives_back_what_is_put() -> None:
    with linkserver.loopback() as link:
        link.put(wl.f(1, "two"))
        link.abort()
        assert link.get(TIMEOUT) == wl.f(1, "two")
        assert link.get_message(TIMEOUT) == (linkserver.UrgentMessage.ABORT, 0)


def test_statistics_count_links(server: linkserver.LinkServer) -> None:
    client = linkserver.connect(server.name, timeout=TIMEOUT)
    stats = server.statistics()
    assert stats.links_opened == 1 and stats.waiting == 1
    server.accept(timeout=TIMEOUT).close()
    client.close()


def test_direct_writes_keep_order_when_the_socket_is_full() -> None:
    # A blocking put writes to the socket from its own thread; what the socket
    # does not take at once waits in a backlog that the loop writes before
    # anything later. With the reader's transport paused the socket fills, so
    # the large payloads leave remainders and the small ones, from two
    # threads, must queue behind them.
    listener = linkserver.listen(0)
    writer = linkserver.connect(listener.name, timeout=TIMEOUT)
    listener.activate(TIMEOUT)
    transport = listener.aio._transport
    assert transport is not None
    listener._portal.run_sync(transport.pause_reading)  # type: ignore[attr-defined]
    big = "x" * (1 << 20)
    sent: list[object] = []
    for i in range(8):
        sent.extend([wl.big(i, big), wl.small(i)])
    backlogged = threading.Event()

    def put_all(items: list[object]) -> None:
        for item in items:
            writer.put(item)
            if writer.aio._backlog:
                backlogged.set()

    threads = [threading.Thread(target=put_all, args=(part,)) for part in (sent[:8], sent[8:])]
    threads[0].start()
    assert backlogged.wait(TIMEOUT)  # the socket was full: the backlog path ran
    threads[1].start()
    listener._portal.run_sync(transport.resume_reading)  # type: ignore[attr-defined]
    for thread in threads:
        thread.join(TIMEOUT)
    writer.flush()
    got = [listener.get(TIMEOUT) for _ in sent]
    assert sorted(repr(g) for g in got) == sorted(repr(s) for s in sent)
    for part in (sent[:8], sent[8:]):  # each thread's order is kept
        assert [g for g in got if g in part] == part
    assert writer.aio.bytes_out > 8 * len(big)
    writer.close()
    listener.close()
