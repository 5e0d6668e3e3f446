"""Ways to make a connected (client, server) pair of blocking links, one per transport.

The conformance tests run once for each: every transport must behave the same.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import linkserver

Pair = tuple[linkserver.Link, linkserver.Link]


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@contextmanager
def via_server(interface: str | None = "127.0.0.1", path: str | None = None,
               mode: linkserver.LinkMode = linkserver.LinkMode.LINKSERVER) -> Iterator[Pair]:
    with linkserver.LinkServer(0, interface, path=path) as server:
        name = f"unix:{path}" if path else server.name
        client = linkserver.connect(name, timeout=10, mode=mode)
        peer = server.accept(timeout=10)
        try:
            yield client, peer
        finally:
            client.close()
            peer.close()


@contextmanager
def tcp4(tmp: Path) -> Iterator[Pair]:
    with via_server("127.0.0.1") as pair:
        yield pair


@contextmanager
def tcp6(tmp: Path) -> Iterator[Pair]:
    with via_server("::1") as pair:
        yield pair


@contextmanager
def unix(tmp: Path) -> Iterator[Pair]:
    with via_server(path=str(tmp / "link.sock")) as pair:
        yield pair


@contextmanager
def memory(tmp: Path) -> Iterator[Pair]:
    a, b = linkserver.link_pair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@contextmanager
def direct(tmp: Path) -> Iterator[Pair]:
    listener = linkserver.listen("0@127.0.0.1")
    client = linkserver.connect(listener.name, timeout=10, mode=linkserver.LinkMode.DIRECT)
    listener.activate(timeout=10)
    try:
        yield client, listener
    finally:
        client.close()
        listener.close()


TRANSPORTS: dict[str, Callable[[Path], object]] = {
    "tcp4": tcp4, "tcp6": tcp6, "unix": unix, "memory": memory, "direct": direct,
}
