"""Open and listen on named addresses (TCP and Unix sockets) with clear errors.

The only place sockets are opened. Everything here is asyncio's own machinery
(``create_connection``, ``create_server`` and their Unix twins), except
:func:`open_socket`, the same connection made without an event loop for a
kernel's own link (:mod:`linkserver.kernel.wire`); what it adds is the
translation of ``OSError`` into one-sentence
:class:`~linkserver.errors.ConnectFailed` messages that say what to do.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import stat
import threading
from collections.abc import Callable

from ..errors import ConnectFailed, LinkError, LinkNameError
from ..names import LinkName

__all__ = ["READ_BUFFER_SIZE", "listen_on", "open_socket", "open_to", "read_buffer"]

READ_BUFFER_SIZE = 256 * 1024  # what one read of a socket may take at most


class _ReadBuffer(threading.local):
    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_BUFFER_SIZE))


_read_buffers = _ReadBuffer()


def read_buffer() -> memoryview:
    """This thread's buffer to read a socket into (``recv_into``).

    One per thread, made once: reading into a fresh 256 KiB ``bytes`` costs an
    allocation (often an ``mmap``, ``mremap`` and ``munmap``) per read. Whoever
    reads into it must copy the bytes out before anything else runs on the
    thread; a link's connection does, as it is fed.
    """
    return _read_buffers.view

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def _why(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is a linkserver running there? start one with 'linkserver serve')"
    if isinstance(exc, socket.gaierror):
        return f"the host name could not be resolved ({exc.strerror})"
    if isinstance(exc, FileNotFoundError):
        return "no such socket file (is the server running?)"
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (choose another port, or port 0 for any free one)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such interface address"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (ports below 1024 need privileges)"
    return exc.strerror or str(exc)


async def open_to(
    name: LinkName,
    factory: ProtocolFactory,
    *,
    timeout: float | None,
    tls: ssl.SSLContext | None = None,
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """Connect a new protocol from ``factory`` to ``name``, over TLS with ``tls``.

    Raises:
        ConnectFailed: no connection could be made, the TLS handshake failed,
            or ``timeout`` passed.
        LinkNameError: ``name`` is a service name (resolve it first).
    """
    loop = asyncio.get_running_loop()
    handshake = (timeout or 10.0) if tls is not None else None
    hostname = None if tls is None else _server_hostname(name, tls)
    try:
        async with asyncio.timeout(timeout):
            if name.kind == "tcp":
                return await loop.create_connection(
                    factory, name.host, name.port, ssl=tls, server_hostname=hostname,
                    ssl_handshake_timeout=handshake,
                )
            if name.kind == "unix":
                return await loop.create_unix_connection(
                    factory, name.path, ssl=tls, server_hostname=hostname,
                    ssl_handshake_timeout=handshake,
                )
    except OSError as exc:  # TimeoutError and ssl.SSLError among them
        raise _not_connected(name, exc, timeout, tls) from (
            None if isinstance(exc, TimeoutError) else exc)
    raise LinkNameError(
        f"{name} is a service name: resolve it first with linkserver.discovery.aresolve() "
        "(linkserver.connect does)"
    )


def _server_hostname(name: LinkName, tls: ssl.SSLContext) -> str | None:
    """The name to check the certificate against: None where asyncio may take it from the address."""
    if name.kind == "unix" or not tls.check_hostname:
        return name.host if tls.check_hostname else ""
    return None


def open_socket(
    name: LinkName, *, timeout: float | None, tls: ssl.SSLContext | None = None
) -> socket.socket:
    """Connect a blocking socket to ``name`` (over TLS with ``tls``), as :func:`open_to` does.

    Returns the socket, still blocking, with the TLS handshake done.

    Raises:
        ConnectFailed: as :func:`open_to`.
        LinkNameError: ``name`` is a service name.
    """
    if name.kind not in ("tcp", "unix"):
        raise LinkNameError(f"{name} is a service name: resolve it first")
    try:
        if name.kind == "tcp":
            sock = socket.create_connection((name.host, name.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(name.path)
            except BaseException:
                sock.close()
                raise
        if tls is not None:
            hostname = _server_hostname(name, tls)
            sock.settimeout(timeout or 10.0)
            try:
                sock = tls.wrap_socket(
                    sock, server_hostname=name.host if hostname is None else (hostname or None)
                )
            except BaseException:
                sock.close()
                raise
    except OSError as exc:  # TimeoutError and ssl.SSLError among them
        raise _not_connected(name, exc, timeout, tls) from (
            None if isinstance(exc, TimeoutError) else exc)
    return sock


def _not_connected(
    name: LinkName, exc: OSError, timeout: float | None, tls: ssl.SSLContext | None
) -> ConnectFailed:
    """What it means that connecting to ``name`` failed with ``exc``, in one sentence."""
    if isinstance(exc, TimeoutError):
        return ConnectFailed(f"could not connect to {name} within {timeout or 0:g} s")
    if isinstance(exc, ssl.SSLError):
        return ConnectFailed(f"could not connect to {name} over TLS: {_tls_why(exc)}")
    return _connect_failed(name, exc, tls)


def _connect_failed(name: LinkName, exc: OSError, tls: ssl.SSLContext | None) -> ConnectFailed:
    if tls is not None and isinstance(exc, ConnectionResetError):
        return ConnectFailed(
            f"could not connect to {name} over TLS: the server closed the connection "
            "during the TLS handshake (does it speak TLS?)"
        )
    return ConnectFailed(f"could not connect to {name}: {_why(exc)}")


def _tls_why(exc: ssl.SSLError) -> str:
    reason = getattr(exc, "reason", None) or str(exc)
    if reason in ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE"):
        return "the server does not speak TLS (connect without TLS, or check the port)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its certificate is not trusted ({exc.verify_message}); pin it by fingerprint"
    return f"the TLS handshake failed ({reason})"


async def listen_on(
    name: LinkName,
    factory: ProtocolFactory,
    *,
    backlog: int = 1024,
    tls: ssl.SSLContext | None = None,
    tls_handshake_timeout: float = 10.0,
) -> asyncio.Server:
    """Listen on ``name`` (an empty TCP host means every interface), over TLS with ``tls``.

    A stale Unix socket file left by a dead server is replaced; a live one is not.

    Raises:
        LinkError: the address cannot be listened on (in use, no such interface...).
    """
    loop = asyncio.get_running_loop()
    handshake = tls_handshake_timeout if tls is not None else None
    try:
        if name.kind == "tcp" and not name.host:
            return await loop.create_server(
                factory, sock=_every_interface_socket(name.port), backlog=backlog, ssl=tls,
                ssl_handshake_timeout=handshake,
            )
        if name.kind == "tcp":
            return await loop.create_server(
                factory, name.host, name.port, backlog=backlog, reuse_address=True, ssl=tls,
                ssl_handshake_timeout=handshake,
            )
        if name.kind == "unix":
            _remove_stale_socket(name.path)
            return await loop.create_unix_server(
                factory, name.path, backlog=backlog, ssl=tls, ssl_handshake_timeout=handshake
            )
    except OSError as exc:
        raise LinkError(f"cannot listen on {name}: {_why(exc)}", code="listen-failed") from exc
    raise LinkNameError(f"cannot listen on {name}: give PORT@INTERFACE or unix:/path")


def _every_interface_socket(port: int) -> socket.socket:
    """One socket for every interface, so port 0 names a single port.

    asyncio would open one socket per address family, each with its own
    random port when 0 is asked for; a dual-stack IPv6 socket avoids that.
    """
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address: tuple[str, int] = ("0.0.0.0", port)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address = ("::", port)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _remove_stale_socket(path: str) -> None:
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except OSError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody answers: a leftover of a dead server
    finally:
        probe.close()
