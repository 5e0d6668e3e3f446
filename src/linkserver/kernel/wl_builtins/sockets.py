"""TCP client sockets, as the Wolfram Language's ``SocketConnect`` family gives them.

``SocketConnect[address]`` opens a TCP connection and gives
``SocketObject["uuid"]``; ``SocketReadyQ``, ``SocketReadMessage``,
``BinaryWrite``, ``WriteString`` and ``Close`` use it, and
``SocketObject[...]["DestinationPort"]`` and the like describe it. Only
client TCP sockets (no ``SocketOpen``, no ZeroMQ, no TLS): what
``wl/LinkServerClient.wl`` and a Wolfram Language script talking to a server
need.

Every wait is bounded and abortable. A socket is non-blocking; waiting is
``select`` in slices of :data:`SLICE` seconds, and between slices the
evaluation is asked whether it must stop (:func:`.aborts.stop_point`: an
ABORT from the client, a time limit, ``TimeConstrained``), which also lets
linkserver's kernel serve a preemptive request while a socket waits.
Connecting gives up after :data:`CONNECT_TIMEOUT` seconds, writing after
:data:`WRITE_TIMEOUT` seconds without progress; ``SocketReadyQ[s, t]`` waits
at most t seconds and ``SocketReadMessage`` at most its ``TimeConstraint``
(default ``Infinity``, as the Wolfram Language blocks; still abortable).
Failures are messages and ``$Failed``; the end of the peer's stream is
``EndOfFile``. Name resolution (``getaddrinfo``) is the one call that is not
sliced; network tests use ``127.0.0.1``.

The sockets of a process live in one table, by uuid: a ``SocketObject`` is a
name for a table entry, as in the Wolfram Language, and stays valid across
evaluations until ``Close``. Sockets are network access: they are not made in
a Mathics3 sandbox (``MATHICS3_SANDBOX``, see :func:`available`).
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import select
import socket
import time
import uuid
from typing import Any

from mathics.builtin.binary.io import BinaryWrite as _MathicsBinaryWrite
from mathics.builtin.files_io.files import Close as _MathicsClose
from mathics.builtin.files_io.files import WriteString as _MathicsWriteString
from mathics.core.atoms import ByteArray, Integer, Real, String
from mathics.core.attributes import A_PROTECTED, A_READ_PROTECTED
from mathics.core.builtin import Builtin
from mathics.core.expression import Expression
from mathics.core.list import ListExpression
from mathics.core.symbols import Symbol, SymbolFalse, SymbolNull, SymbolTrue
from mathics.core.systemsymbols import SymbolEndOfFile, SymbolFailed

from .aborts import stop_point

__all__ = [
    "CONNECT_TIMEOUT",
    "SLICE",
    "WRITE_TIMEOUT",
    "BinaryWrite",
    "Close",
    "SocketConnect",
    "SocketObject",
    "SocketReadMessage",
    "SocketReadyQ",
    "WriteString",
    "available",
]

#: Seconds between two looks at the evaluation's stop flag while a socket waits:
#: an abort is obeyed within this time, and an idle wait costs 20 wake-ups a second.
SLICE = 0.05
#: Seconds SocketConnect waits for the peer to accept.
CONNECT_TIMEOUT = 10.0
#: Seconds BinaryWrite waits for a peer that takes no more bytes.
WRITE_TIMEOUT = 60.0
#: Largest ByteArray one SocketReadMessage gives (what the OS has, up to this).
READ_SIZE = 1 << 20

SymbolSocketObject = Symbol("System`SocketObject")
SymbolIPAddress = Symbol("System`IPAddress")

PROPERTIES = ("DestinationIPAddress", "DestinationPort", "SourceIPAddress", "SourcePort",
              "Protocol", "Properties")


def available() -> bool:
    """False in a Mathics3 sandbox, where system commands are turned off: no sockets there."""
    from mathics import settings

    return bool(settings.ENABLE_SYSTEM_COMMANDS)


@dataclasses.dataclass
class _Connection:
    sock: socket.socket
    peer: tuple[str, int]
    local: tuple[str, int]
    ended: bool = False  # the peer's end of stream was read


#: The open sockets of this process, by uuid.
_OPEN: dict[str, _Connection] = {}


def _socket_object(key: str) -> Any:
    return Expression(SymbolSocketObject, String(key))


def _lookup(symbol: str, s: Any, evaluation: Any) -> _Connection | None:
    """The connection of ``SocketObject[uuid]``, or None after a message (closed or unknown)."""
    conn = _OPEN.get(s.elements[0].value)
    if conn is None:
        evaluation.message(symbol, "closed", s)
    return conn


def _seconds(t: Any) -> float | None:
    """A timeout given as a non-negative number or Infinity; None if it is neither."""
    if t.get_name() == "System`Infinity" or (
        t.has_form("DirectedInfinity", 1) and t.elements[0] == Integer(1)
    ):
        return math.inf
    if isinstance(t, (Integer, Real)):
        value = float(t.to_python())
        if value >= 0:
            return value
    return None


def _wait(sock: socket.socket, *, write: bool, seconds: float, evaluation: Any) -> bool:
    """Wait until ``sock`` is readable (or writable), at most ``seconds``; True if it is.

    Raises:
        AbortInterrupt: the evaluation must stop.
    """
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        step = max(0.0, min(SLICE, remaining))
        readable, writable, _ = select.select(
            [] if write else [sock], [sock] if write else [], [], step
        )
        if readable or writable:
            return True
        stop_point(evaluation)
        if time.monotonic() >= deadline:
            return False


# ------------------------------------------------------------ addresses


def _address(spec: Any) -> tuple[str, int | str] | None:
    """(host, port or service) of a SocketConnect address, or None if it is not one."""
    if isinstance(spec, Integer):
        return "localhost", spec.value
    if isinstance(spec, String):
        text = spec.value
        if text.startswith("["):  # "[::1]:8000"
            host, sep, port = text[1:].partition("]:")
        else:
            host, sep, port = text.rpartition(":")
        if not sep or not host or not port:
            return None
        return host, int(port) if port.isdigit() else port
    if spec.has_form("List", 2):
        host, port = spec.elements
        if isinstance(host, String) and isinstance(port, Integer):
            return host.value, port.value
        if isinstance(host, String) and isinstance(port, String):
            return host.value, int(port.value) if port.value.isdigit() else port.value
    return None


class SocketConnect(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/SocketConnect.html</url>
    <dl>
      <dt>'SocketConnect'[{"$host$", $port$}]
      <dt>'SocketConnect'["$host$:$port$"]
      <dt>'SocketConnect'[$port$]
      <dd>opens a TCP connection and gives a 'SocketObject' for it.
      <dt>'SocketConnect'[$address$, "TCP"]
      <dd>the same; "TCP" is the only protocol here.
    </dl>
    """

    name = "SocketConnect"
    context = "System`"
    attributes = A_PROTECTED | A_READ_PROTECTED
    summary_text = "open a TCP connection"
    messages = {
        "addrspec": '`1` is not a socket address; give {"host", port}, "host:port" or a port.',
        "protocol": '`1` is not a protocol SocketConnect speaks here; only "TCP" is.',
        "conn": "Cannot connect to `1`: `2`.",
        "timeout": "Nothing accepted a connection at `1` within `2` s; check that a server listens there.",
    }

    def eval(self, spec: Any, evaluation: Any) -> Any:
        "SocketConnect[spec_]"
        return self._connect(spec, evaluation)

    def eval_protocol(self, spec: Any, protocol: Any, evaluation: Any) -> Any:
        "SocketConnect[spec_, protocol_]"
        if not (isinstance(protocol, String) and protocol.value.upper() == "TCP"):
            evaluation.message("SocketConnect", "protocol", protocol)
            return SymbolFailed
        return self._connect(spec, evaluation)

    def _connect(self, spec: Any, evaluation: Any) -> Any:
        address = _address(spec)
        if address is None:
            evaluation.message("SocketConnect", "addrspec", spec)
            return SymbolFailed
        host, port = address
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            evaluation.message("SocketConnect", "conn", spec, String(_reason(exc)))
            return SymbolFailed
        deadline = time.monotonic() + CONNECT_TIMEOUT
        reason = "no address"
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                code = sock.connect_ex(sockaddr)
                if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                    reason = os.strerror(code)
                    sock.close()
                    continue
                left = deadline - time.monotonic()
                if not _wait(sock, write=True, seconds=max(0.0, left), evaluation=evaluation):
                    sock.close()
                    evaluation.message("SocketConnect", "timeout", spec, Real(CONNECT_TIMEOUT))
                    return SymbolFailed
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code != 0:
                    reason = os.strerror(code)
                    sock.close()
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                key = str(uuid.uuid4())
                _OPEN[key] = _Connection(sock, sock.getpeername()[:2], sock.getsockname()[:2])
                return _socket_object(key)
            except BaseException:  # an abort while connecting: no socket is left open
                sock.close()
                raise
        evaluation.message("SocketConnect", "conn", spec, String(reason))
        return SymbolFailed


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"the host is unknown ({exc.strerror})"
    return getattr(exc, "strerror", None) or str(exc)


class SocketObject(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/SocketObject.html</url>
    <dl>
      <dt>'SocketObject'["$uuid$"]
      <dd>is a socket opened by 'SocketConnect'.
      <dt>'SocketObject'[...]["$property$"]
      <dd>gives "DestinationIPAddress", "DestinationPort", "SourceIPAddress",
        "SourcePort", "Protocol" or "Properties" (the list of them).
    </dl>
    """

    name = "SocketObject"
    context = "System`"
    attributes = A_PROTECTED | A_READ_PROTECTED
    summary_text = "a socket connection"
    messages = {
        "closed": "`1` is closed.",
        "property": "`1` is not a property of a socket; use one of `2`.",
    }

    def eval_property(self, key: Any, prop: Any, evaluation: Any) -> Any:
        "SocketObject[key_String][prop_String]"
        name = prop.value
        if name == "Properties":
            return ListExpression(*(String(p) for p in PROPERTIES))
        if name == "Protocol":
            return String("TCP")
        if name not in PROPERTIES:
            evaluation.message("SocketObject", "property", prop, ListExpression(
                *(String(p) for p in PROPERTIES)))
            return SymbolFailed
        conn = _lookup("SocketObject", _socket_object(key.value), evaluation)
        if conn is None:
            return SymbolFailed
        host, port = conn.peer if name.startswith("Destination") else conn.local
        if name.endswith("Port"):
            return Integer(port)
        return Expression(SymbolIPAddress, String(host))


class SocketReadyQ(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/SocketReadyQ.html</url>
    <dl>
      <dt>'SocketReadyQ'[$socket$]
      <dd>gives 'True' if 'SocketReadMessage' on $socket$ would not wait: bytes
        have come, or the peer ended its stream.
      <dt>'SocketReadyQ'[$socket$, $t$]
      <dd>waits at most $t$ seconds for that.
    </dl>
    """

    name = "SocketReadyQ"
    context = "System`"
    attributes = A_PROTECTED
    summary_text = "test whether a socket has something to read"
    messages = {
        "closed": "`1` is closed; open a new connection with SocketConnect.",
        "time": "`1` is not a number of seconds (a non-negative number or Infinity).",
    }

    def eval(self, s: Any, evaluation: Any) -> Any:
        "SocketReadyQ[s:SocketObject[_String]]"
        return self._ready(s, 0.0, evaluation)

    def eval_wait(self, s: Any, t: Any, evaluation: Any) -> Any:
        "SocketReadyQ[s:SocketObject[_String], t_]"
        seconds = _seconds(t)
        if seconds is None:
            evaluation.message("SocketReadyQ", "time", t)
            return SymbolFailed
        return self._ready(s, seconds, evaluation)

    def _ready(self, s: Any, seconds: float, evaluation: Any) -> Any:
        conn = _lookup("SocketReadyQ", s, evaluation)
        if conn is None:
            return SymbolFalse
        if conn.ended:
            return SymbolTrue
        return SymbolTrue if _wait(conn.sock, write=False, seconds=seconds,
                                   evaluation=evaluation) else SymbolFalse


class SocketReadMessage(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/SocketReadMessage.html</url>
    <dl>
      <dt>'SocketReadMessage'[$socket$]
      <dd>waits for bytes on $socket$ and gives the bytes there are, as a
        'ByteArray'; 'EndOfFile' once the peer has ended its stream.
      <dt>'SocketReadMessage'[$socket$, 'TimeConstraint' -> $t$]
      <dd>gives up after $t$ seconds ('$Failed' and a message).
    </dl>
    """

    name = "SocketReadMessage"
    context = "System`"
    attributes = A_PROTECTED
    options = {"TimeConstraint": "Infinity"}
    summary_text = "read the bytes a socket has"
    messages = {
        "closed": "`1` is closed; open a new connection with SocketConnect.",
        "time": "TimeConstraint -> `1` is not a number of seconds (a non-negative number or Infinity).",
        "timeout": "No bytes came on `1` within `2` s.",
        "broken": "The connection of `1` broke: `2`.",
    }

    def eval(self, s: Any, evaluation: Any, options: Any = None) -> Any:
        "SocketReadMessage[s:SocketObject[_String], OptionsPattern[SocketReadMessage]]"
        limit = self.get_option(options or {}, "TimeConstraint", evaluation)
        if limit is None:
            limit = Symbol("System`Infinity")
        seconds = _seconds(limit)
        if seconds is None:
            evaluation.message("SocketReadMessage", "time", limit)
            return SymbolFailed
        conn = _lookup("SocketReadMessage", s, evaluation)
        if conn is None:
            return SymbolFailed
        if conn.ended:
            return SymbolEndOfFile
        if not _wait(conn.sock, write=False, seconds=seconds, evaluation=evaluation):
            evaluation.message("SocketReadMessage", "timeout", s, limit)
            return SymbolFailed
        try:
            data = conn.sock.recv(READ_SIZE)
        except BlockingIOError:  # woken for nothing (it happens): nothing there yet
            return self.eval(s, evaluation, options)
        except OSError as exc:
            evaluation.message("SocketReadMessage", "broken", s, String(_reason(exc)))
            conn.ended = True
            return SymbolFailed
        if not data:
            conn.ended = True
            return SymbolEndOfFile
        return ByteArray(data)


def _bytes(data: Any) -> bytes | None:
    """The bytes BinaryWrite writes for ``data``, or None if it is not bytes."""
    if isinstance(data, ByteArray):
        return bytes(data.value)
    if isinstance(data, Integer):
        return bytes([data.value]) if 0 <= data.value <= 255 else None
    if isinstance(data, String):
        try:
            return str(data.value).encode("latin-1")  # the raw characters, as BinaryWrite writes them
        except UnicodeEncodeError:
            return None
    if data.has_form("List", None):
        values = data.elements
        if all(isinstance(v, Integer) and 0 <= v.value <= 255 for v in values):
            return bytes(v.value for v in values)
    return None


def _send(symbol: str, s: Any, data: bytes, evaluation: Any) -> bool:
    """Write all of ``data`` to the socket; False after a message."""
    conn = _lookup(symbol, s, evaluation)
    if conn is None:
        return False
    view = memoryview(data)
    while view:
        try:
            sent = conn.sock.send(view)
        except BlockingIOError:
            if not _wait(conn.sock, write=True, seconds=WRITE_TIMEOUT, evaluation=evaluation):
                evaluation.message(symbol, "wtimeout", s, Real(WRITE_TIMEOUT))
                return False
            continue
        except OSError as exc:
            evaluation.message(symbol, "broken", s, String(_reason(exc)))
            return False
        view = view[sent:]
    return True


_WRITE_MESSAGES = {
    "closed": "`1` is closed; open a new connection with SocketConnect.",
    "wtimeout": "The peer of `1` took no bytes for `2` s; the bytes were not all written.",
    "broken": "The connection of `1` broke: `2`.",
}


class BinaryWrite(_MathicsBinaryWrite):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/BinaryWrite.html</url>
    <dl>
      <dt>'BinaryWrite'[$channel$, $b$]
      <dd>writes a byte, a list of bytes, a 'ByteArray' or the characters of a
        string to a stream or a socket.
      <dt>'BinaryWrite'[$channel$, $x$, $type$]
      <dd>writes $x$ as the specified type (streams).
    </dl>
    """

    name = "BinaryWrite"
    context = "System`"
    messages = {**_MathicsBinaryWrite.messages, **_WRITE_MESSAGES,
                "bytes": "`1` is not bytes: give a ByteArray, a list of integers 0 to 255, or a string."}

    def eval_socket(self, s: Any, data: Any, evaluation: Any) -> Any:
        "BinaryWrite[s:SocketObject[_String], data_]"
        raw = _bytes(data)
        if raw is None:
            evaluation.message("BinaryWrite", "bytes", data)
            return SymbolFailed
        return s if _send("BinaryWrite", s, raw, evaluation) else SymbolFailed


class WriteString(_MathicsWriteString):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/WriteString.html</url>
    <dl>
      <dt>'WriteString'[$channel$, $expr_1$, $expr_2$, ...]
      <dd>writes the strings (or the OutputForm of other expressions) to a
        stream, or their UTF-8 bytes to a socket.
    </dl>
    """

    name = "WriteString"
    context = "System`"
    messages = {**_MathicsWriteString.messages, **_WRITE_MESSAGES}

    def eval_socket(self, s: Any, exprs: Any, evaluation: Any) -> Any:
        "WriteString[s:SocketObject[_String], exprs___]"
        parts = []
        for expr in exprs.get_sequence():
            if isinstance(expr, String):
                parts.append(expr.value)
            else:
                parts.append(str(evaluation.format_output(expr, "text")))
        ok = _send("WriteString", s, "".join(parts).encode("utf-8"), evaluation)
        return SymbolNull if ok else SymbolFailed


class Close(_MathicsClose):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/Close.html</url>
    <dl>
      <dt>'Close'[$obj$]
      <dd>closes a stream or a socket.
    </dl>
    """

    name = "Close"
    context = "System`"
    messages = {**_MathicsClose.messages, "closed": "`1` is already closed."}

    def eval_socket(self, s: Any, evaluation: Any) -> Any:
        "Close[s:SocketObject[_String]]"
        conn = _OPEN.pop(s.elements[0].value, None)
        if conn is None:
            evaluation.message("Close", "closed", s)
            return SymbolFailed
        conn.sock.close()
        return SymbolNull
