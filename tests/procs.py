"""What tests ask Linux about processes and sockets: liveness, children, fds, replies."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time
from typing import Any

from tests.timeouts import TIMEOUT


def alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int, *, recursive: bool = False) -> set[int]:
    """The live child processes of ``pid`` (every descendant with ``recursive``)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = {int(p) for p in f.read().split()}
            except FileNotFoundError:
                continue
            if recursive:
                todo.extend(kids - found)
            found |= kids
    return {p for p in found if alive(p)}


def open_fds(pid: int | str = "self") -> int:
    """How many file descriptors ``pid`` (this process by default) has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def read_until_closed(socks: list[socket.socket], timeout: float) -> tuple[dict[socket.socket, bytes], set[socket.socket]]:
    """Read every socket until the peer closes it or ``timeout`` passes.

    Returns:
        what each socket received, and the sockets still open at the end.
    """
    selector = selectors.DefaultSelector()
    replies: dict[socket.socket, bytes] = {}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        replies[sock] = b""
    still_open = set(socks)
    deadline = time.monotonic() + timeout
    while still_open and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                replies[sock] += chunk
            else:
                still_open.discard(sock)
                selector.unregister(sock)
    selector.close()
    return replies, still_open


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_to_eof(sock: socket.socket, timeout: float) -> bytes:
    """Everything ``sock`` receives until the peer closes it (or resets it)."""
    chunks = []
    sock.settimeout(timeout)
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def stop(proc: subprocess.Popen[Any]) -> None:
    """End a process a test started: SIGTERM, then SIGKILL after TIMEOUT; close its stdout."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
