"""Hostile and broken peers: each gets at most one line and a closed connection.

After every case the same server must still serve a real client, and once the
strangers are gone the server holds no more file descriptors than before.
"""

from __future__ import annotations

import random
import socket
import ssl
import struct
import time
from collections.abc import Iterator

import pytest
from wolframclient.language import wl

import linkserver
from linkserver.demo import greet_and_echo
from linkserver.protocol.framing import FrameKind
from linkserver.protocol.handshake import MAGIC, NOT_LINKSERVER_LINE, ClientHello
from linkserver.protocol.oob import CloseCode, decode_close
from tests.procs import open_fds, read_to_eof, read_until_closed
from tests.timeouts import TIMEOUT, wait_until

HANDSHAKE_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def server() -> Iterator[linkserver.LinkServer]:
    settings = linkserver.LinkSettings(handshake_timeout=HANDSHAKE_TIMEOUT, max_frame_size=1 << 20)
    srv = linkserver.LinkServer(0, "127.0.0.1", settings=settings)
    srv._portal.run_sync(srv.aio.on_link, greet_and_echo)
    yield srv
    srv.close()



def assert_still_serves(server: linkserver.LinkServer) -> None:
    with linkserver.connect(server.name, timeout=TIMEOUT) as link:
        assert link.get(TIMEOUT) == wl.Print("Hello client program.")
        link.put(wl.f("still", 1))
        assert link.get(TIMEOUT) == wl.f("still", 1)


def raw_exchange(server: linkserver.LinkServer, data: bytes) -> bytes:
    """Send ``data``, then read until the server closes; return what it sent."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before we finish writing
        return read_to_eof(sock, TIMEOUT)



def assert_one_line(reply: bytes) -> None:
    assert reply.count(b"\n") <= 1
    assert reply == b"" or reply.startswith(b"linkserver: ")


def tls_client_hello() -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


STRANGERS = {
    "http": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "tls": tls_client_hello(),
    "ssh": b"SSH-2.0-OpenSSH_9.2\r\n",
    "random": random.Random(1).randbytes(4096),
    "random-after-magic-byte": MAGIC[:1] + random.Random(2).randbytes(100),
    "almost-magic": MAGIC[:7] + b"X" + bytes(4),
    "nul": bytes(64),
}


@pytest.mark.parametrize("name", sorted(STRANGERS))
def test_stranger_gets_one_line_and_close(server: linkserver.LinkServer, name: str) -> None:
    reply = raw_exchange(server, STRANGERS[name])
    assert reply == NOT_LINKSERVER_LINE
    assert_still_serves(server)


def test_frame_declaring_4_gib_is_refused_without_allocating(server: linkserver.LinkServer) -> None:
    header = struct.pack("<BI", FrameKind.EXPRESSION, 2**32 - 1)
    reply = raw_exchange(server, ClientHello().encode() + header + b"partial payload")
    assert reply[:8] == MAGIC  # the server hello, then one CLOSE frame
    close = reply[28:]
    assert close[0] == FrameKind.CLOSE
    code, reason = decode_close(close[5:])
    assert code is CloseCode.FRAME_TOO_LARGE and "max_frame_size" in reason
    assert_still_serves(server)


def test_garbage_after_valid_hello_is_a_protocol_error(server: linkserver.LinkServer) -> None:
    reply = raw_exchange(server, ClientHello().encode() + b"\xff" * 10)
    code, _reason = decode_close(reply[28 + 5 :])
    assert code is CloseCode.PROTOCOL_ERROR
    assert_still_serves(server)


def test_invalid_wxf_payload_is_reported_to_the_reader_only() -> None:
    a, b = linkserver.link_pair()
    a._portal.call_soon(a.aio.put_payload_nowait, b"not wxf at all")
    with pytest.raises(linkserver.WXFDecodeError):
        b.get(TIMEOUT)
    a.put("next")
    assert b.get(TIMEOUT) == "next"  # the link survives a bad expression
    a.close()
    b.close()


def test_slowloris_is_cut_off_by_the_handshake_limit(server: linkserver.LinkServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sent = 0
        try:
            for byte in MAGIC:  # one byte a second, never finishing
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(1.0)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_to_eof(sock, TIMEOUT)
    assert sent < len(MAGIC)
    assert reply.startswith(b"linkserver: no handshake within")
    assert_one_line(reply)
    assert_still_serves(server)


def test_connect_and_reset(server: linkserver.LinkServer) -> None:
    before = server.statistics()
    for payload in (b"", MAGIC[:4], ClientHello().encode()):
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            if payload:
                sock.sendall(payload)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST, not FIN
    # The kernel may drop a reset connection before the server accepts it, so
    # count what was accepted, and check that each one was accounted for.
    def settled() -> bool:
        now = server.statistics()
        accepted = now.connections - before.connections
        ended = (now.rejected - before.rejected) + (now.links_opened - before.links_opened)
        return now.handshaking == 0 and accepted >= 10 and ended == accepted

    assert wait_until(settled)
    assert server.statistics().connections - before.connections <= 30
    assert_still_serves(server)


def test_500_silent_connections_then_real_client(server: linkserver.LinkServer) -> None:
    baseline = open_fds()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) for _ in range(500)]
    # While they sit there, a real client is served.
    assert_still_serves(server)
    replies, still_open = read_until_closed(socks, HANDSHAKE_TIMEOUT + TIMEOUT)
    for sock in socks:
        sock.close()
    assert not still_open, "some silent connections were never closed by the server"
    for reply in replies.values():
        assert_one_line(reply)
        assert reply.startswith(b"linkserver: no handshake within")
    assert wait_until(lambda: server.statistics().handshaking == 0)
    # The server's side of each connection is gone too: no descriptor leaks.
    assert wait_until(lambda: open_fds() <= baseline + 2), (open_fds(), baseline)
    assert_still_serves(server)


def test_client_vanishing_mid_frame(server: linkserver.LinkServer) -> None:
    before = open_fds()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(ClientHello().encode() + struct.pack("<BI", FrameKind.EXPRESSION, 100) + b"8:")
            assert sock.recv(28)[:8] == MAGIC
    assert wait_until(lambda: open_fds() <= before + 2)
    assert_still_serves(server)


def test_connecting_to_something_else_is_a_clear_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        import threading

        def http_server() -> None:
            conn, _ = listener.accept()
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

        thread = threading.Thread(target=http_server)
        thread.start()
        with pytest.raises(linkserver.NotALinkServerError, match="HTTP/1.1 400 Bad Request"):
            linkserver.connect(f"{port}@127.0.0.1", timeout=TIMEOUT)
        thread.join(TIMEOUT)


def test_silent_server_times_out_the_handshake() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(linkserver.LinkTimeout, match="handshake"):
            linkserver.connect(f"{port}@127.0.0.1", timeout=0.5)
