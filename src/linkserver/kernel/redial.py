"""Redialling: how a kept kernel on a Ray node finds the server that adopted it.

A kernel of a Ray pool with a keep-alive runs for a *detached* actor
(:class:`linkserver.kernel.ray_node.KernelActor`), which outlives the server
that placed it. When the kernel's link to that server ends -- the server was
killed, stopped or restarted -- the kernel keeps its session and asks its
actor, on the node, where to dial next. The actor answers once a server has
adopted it (:meth:`~linkserver.kernel.ray_node.KernelActor.rebind`), or tells
the kernel to end when no one adopted it within its keep-alive time or it was
never kept for a client.

This module is both halves' shared vocabulary and the kernel's half. The
rendezvous is a Unix stream socket of the actor's in Linux's abstract
namespace (so nothing is left on disk when Ray kills the actor), named to
the kernel by ``$LINKSERVER_REDIAL`` as ``@NAME``, NAME random. Each side
checks the other by the socket's peer credentials: the actor answers only
its kernel's process, and the kernel believes only its guardian, the actor's
process (``$LINKSERVER_WATCH_PID``). The kernel connects and reads one line;
nothing travels the other way::

    actor -> dial PORT@HOST KEY FINGERPRINT     ("-" for an endpoint without TLS)
    actor -> exit

then the actor closes the connection. The kernel dials the endpoint with the
new server's key (and pins its certificate), and greets it with the same
``KernelReady`` and id as the first time (docs/protocol.md §8.12).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

__all__ = ["REDIAL_ENV", "Endpoint", "address", "ask", "format_answer", "parse_answer",
           "peer_pid"]

#: The environment variable that names the actor's rendezvous socket to its kernel.
REDIAL_ENV = "LINKSERVER_REDIAL"

#: A line longer than this is not an answer (an endpoint, a 64-digit key, a fingerprint).
_MAX_LINE = 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a kept kernel dials next, and what it proves and pins there."""

    connect: str  #: ``PORT@HOST`` of the adopting server's kernel endpoint
    key: str  #: that endpoint's key
    fingerprint: str | None  #: its certificate's fingerprint; None without TLS


def address(name: str) -> str:
    """The socket address of a rendezvous named ``@NAME`` (Linux's abstract namespace)."""
    return "\0" + name[1:] if name.startswith("@") else name


def peer_pid(sock: socket.socket) -> int:
    """The process id at the other end of a connected Unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", creds)[0]
    return pid


def format_answer(endpoint: Endpoint | None) -> bytes:
    """The actor's one line: ``dial ...`` for ``endpoint``, ``exit`` for None."""
    if endpoint is None:
        return b"exit\n"
    return f"dial {endpoint.connect} {endpoint.key} {endpoint.fingerprint or '-'}\n".encode()


def parse_answer(line: bytes) -> Endpoint | None:
    """The endpoint in the actor's line; None for ``exit`` or anything malformed."""
    words = line.decode(errors="replace").split()
    if len(words) == 4 and words[0] == "dial":
        return Endpoint(words[1], words[2], None if words[3] == "-" else words[3])
    return None


def ask(name: str, actor_pid: int | None) -> Endpoint | None:
    """Ask the actor at rendezvous ``name`` where to dial; block until it answers.

    The actor bounds the wait by the kernel's keep-alive; if the actor
    itself dies, its socket closes (and the kernel's guardian ends the
    kernel anyway).

    Args:
        name: ``$LINKSERVER_REDIAL``.
        actor_pid: the only process whose answer counts (the kernel's guardian).

    Returns:
        The endpoint, or None: the kernel must end.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(address(name))
            if actor_pid is not None and peer_pid(sock) != actor_pid:
                return None  # someone else holds the name: never believe it
            data = b""
            while not data.endswith(b"\n") and len(data) < _MAX_LINE:
                chunk = sock.recv(_MAX_LINE)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    return parse_answer(data)
