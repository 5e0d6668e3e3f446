"""Hostile peers against a real ``linkserver serve`` process: leaks, floods, port scans.

tests/integration/test_hostile.py checks each kind of stranger against an
in-process server. Here the server is a subprocess (with a Mathics3 kernel
behind it), so its own file descriptors and resident memory can be read
from /proc and compared before and after: garbage, HTTP, a TLS ClientHello,
a huge declared frame length, a slowloris, resets mid-frame and 1,000 idle
connections at once, while a real client is served. Then what a port scanner
does: the probes of a service scan (our own representative list, after the
kinds nmap's service detection sends), one per connection, in sequence and
all at once -- and nmap itself, when it is installed.

Every wait is bounded by :data:`tests.timeouts.TIMEOUT`; nothing asserts time.
"""

from __future__ import annotations

import os
import random
import re
import resource
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from wolframclient.language import wl

import linkserver
from linkserver.protocol.framing import FrameKind
from linkserver.protocol.handshake import MAGIC, NOT_LINKSERVER_LINE, ClientHello
from linkserver.protocol.oob import CloseCode, decode_close
from tests.procs import read_to_eof, read_until_closed
from tests.timeouts import TIMEOUT, wait_until

pytestmark = pytest.mark.slow

KERNEL_TIMEOUT = TIMEOUT * 6
HANDSHAKE_TIMEOUT = 2.0  # the server's: how long a silent connection may sit
IDLE_CONNECTIONS = 1000
SPARE_FDS = 200  # descriptors besides the idle connections, per process
RSS_SLACK_KB = 8 * 1024  # allocator noise; a leak of 1,000 connections' state is far above


def raise_fd_limit(wanted: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE (the server inherits it), or skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} descriptors "
                        f"{IDLE_CONNECTIONS} idle connections need")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@dataclass
class Served:
    proc: subprocess.Popen[str]
    name: str
    port: int

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as status:
            match = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.M)
        assert match
        return int(match.group(1))

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    raise_fd_limit(IDLE_CONNECTIONS + SPARE_FDS)
    # --no-key: the raw cases below speak the protocol past the hello (a huge frame, a
    # reset mid-frame), which a keyed server would stop at its challenge. Strangers are
    # turned away before any key matters. Its connection file goes to a private folder.
    env = dict(os.environ, LINKSERVER_RUNTIME_DIR=str(tmp_path_factory.mktemp("runtime")))
    drains: list[threading.Thread] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--log-level", "error",
         "--no-key", "--handshake-timeout", str(HANDSHAKE_TIMEOUT),
         "--max-frame-size", str(1 << 20)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        name = ""
        while not name:
            line = proc.stdout.readline()
            assert line, f"the server exited before listening: {proc.stderr.read()}"  # type: ignore[union-attr]
            match = re.search(r"listening on (\S+)", line)
            name = match.group(1) if match else ""
        # Drain its output so a full pipe never blocks it.
        drains = [threading.Thread(target=stream.read, daemon=True)  # type: ignore[union-attr]
                  for stream in (proc.stdout, proc.stderr)]
        for drain in drains:
            drain.start()
        yield Served(proc, name, int(name.partition("@")[0]))
    finally:
        proc.terminate()
        try:
            proc.wait(KERNEL_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(TIMEOUT)
        for drain in drains:
            drain.join(TIMEOUT)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def assert_serves(served: Served) -> None:
    assert served.alive(), "the server process died"
    with linkserver.Client(served.name, timeout=TIMEOUT) as client:
        assert client.evaluate(wl.Plus(40, 2)) == 42



def exchange(served: Served, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection, read until the server closes it."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT) as sock:
        if data:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may close before we finish writing
        return read_to_eof(sock, TIMEOUT)


def assert_rejection(reply: bytes) -> None:
    """Nothing, or one human-readable line from us (docs/protocol.md §2), then the close."""
    assert reply.count(b"\n") <= 1, reply
    assert reply == b"" or (reply.startswith(b"linkserver: ") and reply.endswith(b"\r\n")), reply


def tls_client_hello() -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


# ------------------------------------------------------------- one hostile round


def slowloris(served: Served) -> bytes:
    """Trickle the magic one byte at a time, slower than the handshake limit allows."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT) as sock:
        try:
            for byte in MAGIC[:-1]:  # never the whole hello
                sock.sendall(bytes([byte]))
                time.sleep(HANDSHAKE_TIMEOUT / 3)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_to_eof(sock, TIMEOUT)


def reset_mid_frame(served: Served) -> None:
    """A valid hello, half a frame, then RST instead of FIN."""
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT)
    sock.sendall(ClientHello().encode() + struct.pack("<BI", FrameKind.EXPRESSION, 1000) + b"8:f")
    sock.recv(28)  # the server hello: the link is open on the server's side
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def idle_flood(served: Served, count: int) -> None:
    """``count`` connections that never speak, while a real client is served."""
    socks = [socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT)
             for _ in range(count)]
    try:
        assert_serves(served)  # served while they sit there
        replies, open_ = read_until_closed(socks, HANDSHAKE_TIMEOUT + KERNEL_TIMEOUT)
        assert not open_, f"{len(open_)} idle connections were never closed by the server"
        for reply in replies.values():
            assert_rejection(reply)
            assert reply.startswith(b"linkserver: no handshake within"), reply
    finally:
        for sock in socks:
            sock.close()


def hostile_round(served: Served) -> None:
    rng = random.Random(7)
    strangers = [rng.randbytes(4096), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                 tls_client_hello(), bytes(64)]
    for data in strangers:
        assert exchange(served, data) == NOT_LINKSERVER_LINE
    # A frame that declares 4 GiB: refused by its header, nothing allocated.
    reply = exchange(served, ClientHello().encode() + struct.pack("<BI", FrameKind.EXPRESSION,
                                                                  2**32 - 1) + b"x" * 100)
    assert reply[:8] == MAGIC and reply[28] == FrameKind.CLOSE
    assert decode_close(reply[28 + 5:])[0] is CloseCode.FRAME_TOO_LARGE
    assert slowloris(served).startswith(b"linkserver: no handshake within")
    for _ in range(20):
        reset_mid_frame(served)
    idle_flood(served, IDLE_CONNECTIONS)
    assert_serves(served)


def test_hostile_peers_leave_no_descriptors_or_memory(served: Served) -> None:
    assert_serves(served)
    hostile_round(served)  # the first round reaches the allocator's high-water mark
    base_fds, base_rss = served.fds(), served.rss_kb()
    hostile_round(served)
    # Every hostile connection's descriptor is closed again on the server...
    assert wait_until(lambda: served.fds() <= base_fds, KERNEL_TIMEOUT), (served.fds(), base_fds)
    # ...and another round of 1,000+ connections did not grow its memory.
    assert served.rss_kb() <= base_rss + RSS_SLACK_KB, (served.rss_kb(), base_rss)
    assert_serves(served)


# ----------------------------------------------------------- a port scanner's probes


def _ssl3_hello() -> bytes:
    """An SSLv3 ClientHello record, written by hand (old scanners still send these)."""
    body = (b"\x03\x00" + bytes(range(32))  # version, random
            + b"\x00"  # no session id
            + b"\x00\x04\x00\x0a\x00\x05"  # cipher suites (2 of them, 4 bytes)
            + b"\x01\x00")  # one compression method: null
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x00" + len(handshake).to_bytes(2, "big") + handshake


def _smb_negotiate() -> bytes:
    """A NetBIOS session message carrying an SMB1 NEGOTIATE (command 0x72)."""
    dialects = b"".join(b"\x02" + d + b"\x00" for d in (b"PC NETWORK PROGRAM 1.0", b"NT LM 0.12"))
    smb = (b"\xffSMB\x72" + bytes(4) + b"\x18\x01\x28" + bytes(14) + b"\xff\xff\x00\x00"
           + b"\x00\x00" + len(dialects).to_bytes(2, "little") + dialects)
    return b"\x00" + len(smb).to_bytes(3, "big") + smb


def _dns_version_bind() -> bytes:
    """A DNS query for version.bind TXT CH, framed for TCP (two length bytes)."""
    query = (b"\x13\x37\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             + b"\x07version\x04bind\x00" + b"\x00\x10\x00\x03")
    return len(query).to_bytes(2, "big") + query


PROBES: dict[str, bytes] = {
    "null": b"",  # connect and wait for a banner: we send none until the client speaks
    "generic-lines": b"\r\n\r\n",
    "get-request": b"GET / HTTP/1.0\r\n\r\n",
    "http-options": b"OPTIONS / HTTP/1.0\r\n\r\n",
    "rtsp-request": b"OPTIONS / RTSP/1.0\r\n\r\n",
    "help": b"HELP\r\n",
    "ssl3-hello": _ssl3_hello(),
    "tls-hello": tls_client_hello(),
    "smb-negotiate": _smb_negotiate(),
    "x11-probe": b"l\x00\x0b\x00" + bytes(8),  # little-endian, protocol 11.0, no auth
    "dns-version-bind": _dns_version_bind(),
    "sip-options": (b"OPTIONS sip:nm SIP/2.0\r\nVia: SIP/2.0/TCP nm;branch=foo\r\n"
                    b"From: <sip:nm@nm>;tag=root\r\nTo: <sip:nm2@nm2>\r\nCall-ID: 50000\r\n"
                    b"CSeq: 42 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"),
    "ldap-bind": bytes.fromhex("300c020101600702010304008000"),
    "magic-prefix": MAGIC[:5],  # starts like us, then stops: waits out the handshake
    "random-binary": random.Random(99).randbytes(1500),
}


def probe(served: Served, data: bytes) -> bytes:
    reply = exchange(served, data)
    assert_rejection(reply)
    return reply


@pytest.mark.parametrize("order", ["in-sequence", "all-at-once"])
def test_service_scan_probes_get_one_line_each(served: Served, order: str) -> None:
    base_fds = served.fds()
    replies: dict[str, bytes] = {}
    errors: list[BaseException] = []
    if order == "in-sequence":
        for name, data in PROBES.items():
            replies[name] = probe(served, data)
    else:
        def run(name: str, data: bytes) -> None:
            try:
                replies[name] = probe(served, data)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=item) for item in PROBES.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(KERNEL_TIMEOUT)
        assert not any(t.is_alive() for t in threads), "a probe was never answered or closed"
        if errors:
            raise errors[0]
    assert set(replies) == set(PROBES)
    for name, reply in replies.items():
        if name in ("null", "magic-prefix"):  # silence is cut off by the handshake limit
            assert reply.startswith(b"linkserver: no handshake within"), (name, reply)
        else:  # everything else is recognised as a stranger at once
            assert reply == NOT_LINKSERVER_LINE, (name, reply)
    assert_serves(served)
    assert wait_until(lambda: served.fds() <= base_fds, KERNEL_TIMEOUT), (served.fds(), base_fds)


def test_nmap_service_scan(served: Served) -> None:
    nmap = shutil.which("nmap")
    if nmap is None:
        pytest.skip("nmap is not installed")
    base_fds = served.fds()
    scan = subprocess.run(
        [nmap, "-sV", "-p", str(served.port), "127.0.0.1"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=KERNEL_TIMEOUT * 3,
    )
    assert scan.returncode == 0, scan.stderr
    assert f"{served.port}/tcp open" in scan.stdout, scan.stdout
    # nmap could not name the service, so it prints what each probe got back: our one line.
    assert "linkserver:" in scan.stdout, scan.stdout
    assert_serves(served)
    assert wait_until(lambda: served.fds() <= base_fds, KERNEL_TIMEOUT), (served.fds(), base_fds)
