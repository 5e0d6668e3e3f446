"""The asyncio link: one end of a link over any transport (docs/protocol.md).

:class:`Link` is both the public asyncio API (``await link.put(expr)``,
``await link.get()``) and the asyncio ``Protocol`` that glues a transport to
the sans-I/O :class:`~linkserver.protocol.Connection`. The blocking
:class:`linkserver.Link` is a thin façade over this class; it calls the
thread-safe entry points at the bottom of this module from its own threads
and never duplicates the logic.

Theory of operation
-------------------

* Bytes from the transport go to ``Connection.receive_data``. The link is a
  buffered protocol: the transport reads into one buffer per thread, which
  the connection copies from at once, so a read allocates no 256 KiB chunk
  (asyncio's default: an mmap, an mremap and a munmap per read). The events that
  come out fill two queues -- expression payloads and urgent messages -- kept
  apart so an abort overtakes queued results. Payloads stay WXF bytes until
  someone asks for them: decoding happens in the reader's task or thread.
* Whoever waits for a payload or a message registers a *waiter*: an asyncio
  future (aio callers) or a :class:`ThreadWaiter` (blocking callers in
  other threads, registering directly under ``_lock``: one thread hop saved
  per get). Delivery hands each payload to the oldest live waiter, or queues
  it. A waiter that timed out is cancelled and skipped.
* Bytes the connection queued are written right after each input. Time limits
  run from one timer per link (``Connection.check_timers``).
* A blocking caller's expression is written by its own thread, straight to
  the socket (:meth:`Link.put_payload_direct`): no hop through the loop. The
  connection and every write are guarded by ``_wlock``, in whichever thread
  they happen; a thread writes itself only while the transport holds nothing
  unsent, and whatever the socket does not take at once goes to ``_backlog``,
  which the loop writes before anything sent after it. TLS and traced links
  write from the loop, as everything else does.
* A blocking caller reads for itself, too (:meth:`Link.start_direct_reads`):
  on a plain socket that nobody else consumes, the transport stops reading
  and the thread that waits for an expression reads the socket
  (:meth:`Link.read_direct`), so an answer wakes that thread and not the loop
  first. Expressions and urgent messages are queued as the loop would queue
  them; anything else (a close, a failure, an asyncio reader, a receiver)
  hands reading back to the loop, and so does a link nobody has read for
  ``DIRECT_IDLE`` s, so that an idle link still answers pings and closes.
* When the link ends -- closed by us, closed by the peer, broken -- every
  waiter is woken with the error; payloads that arrived before the end stay
  readable (nothing lost).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import secrets
import select
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from .. import records, wxf
from ..errors import LinkClosed, LinkError, LinkTimeout
from ..protocol import (
    CloseCode,
    CloseReceived,
    Connection,
    ConnectionFailed,
    Event,
    ExpressionReceived,
    HandshakeComplete,
    LinkMode,
    MessageReceived,
    PongReceived,
    Side,
    State,
    UrgentMessage,
)
from ..protocol.connection import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT
from ..protocol.framing import DEFAULT_MAX_FRAME_SIZE
from ..transport.stream import read_buffer

__all__ = ["Link", "LinkSettings"]

log = logging.getLogger("linkserver.link")


T = TypeVar("T")


class ThreadWaiter(Generic[T]):
    """A one-shot hand-over of a payload to a blocking thread.

    It has the part of ``concurrent.futures.Future`` a waiter needs (``done``,
    ``set_result``, ``set_exception``, ``cancel``, ``result``, ``exception``)
    and no more: no condition, no callbacks. Handing a payload over costs one
    futex wake and the wait one futex sleep, where a Future costs about five.
    """

    __slots__ = ("_error", "_guard", "_ready", "_state", "_value")

    _WAITING, _DONE, _CANCELLED = 0, 1, 2

    def __init__(self) -> None:
        self._ready = threading.Lock()  # held until the value is in
        self._ready.acquire()
        self._guard = threading.Lock()  # makes completing and cancelling exclusive
        self._state = self._WAITING
        self._value: T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._state != self._WAITING

    def set_result(self, value: T) -> None:
        self._complete(value, None)

    def set_exception(self, error: BaseException) -> None:
        self._complete(None, error)

    def _complete(self, value: T | None, error: BaseException | None) -> None:
        with self._guard:
            if self._state != self._WAITING:
                raise concurrent.futures.InvalidStateError("the waiter is done or cancelled")
            self._value, self._error = value, error
            self._state = self._DONE
        self._ready.release()

    def cancel(self) -> bool:
        """Give the wait up; False if the value came first (then :meth:`result` has it)."""
        with self._guard:
            if self._state == self._DONE:
                return False
            self._state = self._CANCELLED
            return True

    def result(self, timeout: float | None = None) -> T:
        """The value (or raise its error), waiting at most ``timeout`` s.

        Raises:
            TimeoutError: nothing came within ``timeout``.
        """
        if self._state != self._DONE:
            if not self._ready.acquire(True, -1 if timeout is None else timeout):
                raise TimeoutError
            self._ready.release()  # so that a second call returns at once
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set with the state, before _DONE

    def exception(self) -> BaseException | None:
        """The error it was completed with (call only once it is done)."""
        return self._error


Waiter = asyncio.Future[Any] | concurrent.futures.Future[Any] | ThreadWaiter[Any]

# A client pings after this long without sending, so a server's idle limit
# only ever reaps peers that are really gone.
DEFAULT_KEEPALIVE = 300.0

# How long a caller's read waits at most before it looks again whether the loop
# took reading back (Link.read_direct).
DIRECT_TICK = 0.1
# The loop takes reading back from callers that have not read for this long
# (two looks in a row), so that an idle link still answers a ping or a close.
DIRECT_IDLE = 0.02


class _WriteBatch(threading.local):
    """Links written to while a loop thread handles several frames of one read.

    Their writes wait for the batch's end, so what one read brought in goes
    out in one write per link (an answer's last packets, a burst of prints).
    """

    def __init__(self) -> None:
        self.depth = 0
        self.links: list[Link] = []


_write_batch = _WriteBatch()


# Compared by identity, and its repr shows no fields: a key must not reach a log.
@dataclasses.dataclass(slots=True, kw_only=True, eq=False, repr=False)
class LinkSettings:
    """The limits a link is created with (each a Connection argument).

    Args:
        max_frame_size: largest expression accepted, in encoded bytes.
        handshake_timeout: seconds for the hello exchange.
        idle_timeout: seconds of silence before the link is closed.
        keepalive_interval: seconds of our silence before we ping.
        key: a client's key, proved in the handshake (docs/protocol.md §3.5).
        keys: a server's ``(role, key)`` pairs; a client must prove one of them.
    """

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    keepalive_interval: float | None = None
    key: bytes | None = None
    keys: tuple[tuple[str, bytes], ...] = ()

    def replace(self, **changes: Any) -> LinkSettings:
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def _unsent(transport: asyncio.BaseTransport) -> int:
    """Bytes the transport holds unsent, read from another thread (unknown counts as some)."""
    try:
        return int(transport.get_write_buffer_size())  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return 1


async def await_waiter(waiter: asyncio.Future[T], timeout: float | None, what: str) -> T:
    """Await ``waiter``, cancelled if the wait ends first; at most ``timeout`` seconds (None: no limit).

    Raises:
        LinkTimeout: ``"no {what} within {timeout} s"``.
        LinkError: the one the waiter was given (a LinkTimeout too), as it is.
    """
    if timeout is None:  # the common case: no timeout context to pay for
        try:
            return await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
    try:
        async with asyncio.timeout(timeout):
            return await waiter
    except LinkError:
        raise
    except TimeoutError:
        raise LinkTimeout(f"no {what} within {timeout:g} s") from None
    finally:
        if not waiter.done():
            waiter.cancel()


def _wake(waiter: Waiter, result: Any = None, error: BaseException | None = None) -> bool:
    """Complete ``waiter`` unless it is already done; return whether it took the value."""
    if waiter.done():
        return False
    try:
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)
    except (asyncio.InvalidStateError, concurrent.futures.InvalidStateError):
        return False  # cancelled by its timed-out owner in another thread meanwhile
    return True


def _wake_first(waiters: deque[Waiter], result: Any) -> bool:
    """Give ``result`` to the first of ``waiters`` still waiting; False if none took it."""
    while waiters:
        if _wake(waiters.popleft(), result):
            return True
    return False


class Link(asyncio.BufferedProtocol):
    """One end of a link, for asyncio code.

    Obtain links from :func:`linkserver.aio.connect`, :func:`~linkserver.aio.listen`,
    :func:`~linkserver.aio.loopback` or a :class:`~linkserver.aio.LinkServer`;
    do not construct them directly.

    Attributes:
        name: the link's name, e.g. ``"31415@127.0.0.1"``.
    """

    def __init__(
        self,
        side: Side,
        *,
        name: str = "",
        mode: LinkMode = LinkMode.LINKSERVER,
        settings: LinkSettings | None = None,
        on_open: Callable[[Link], None] | None = None,
        on_end: Callable[[Link], None] | None = None,
    ) -> None:
        self.name = name
        self._side = side
        self._mode = mode
        self._settings = settings or LinkSettings()
        self._on_open = on_open
        self._end_callbacks: list[Callable[[Link], None]] = [on_end] if on_end else []
        self._loop = asyncio.get_running_loop()
        self._conn: Connection | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._incoming: deque[bytes] = deque()
        self._messages: deque[tuple[UrgentMessage | int, int]] = deque()
        self._recv_waiters: deque[Waiter] = deque()
        self._msg_waiters: deque[Waiter] = deque()
        # Guards the queues, the waiter lists and _error together, so a thread
        # may register a waiter without a hop through the event loop.
        self._lock = threading.Lock()
        # Guards the connection's state and every write (see theory of operation).
        self._wlock = threading.RLock()
        self._backlog: list[bytes | memoryview] = []  # unsent direct writes, in order
        self._wsock: socket.socket | None = None  # a thread's own handle on the socket
        self._wsock_tried = False
        self._message_handlers: list[Callable[[UrgentMessage | int, int], None]] = []
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._error: LinkError | None = None  # set once the link ended
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._reflect = False  # loopback: send every urgent message back
        self._receiver: Callable[[bytes], None] | None = None
        self._batched = False  # in _write_batch.links: a write waits for the batch's end
        # Direct reads (see "reading in a caller's thread"): while _direct, the
        # transport does not read; blocking callers read the socket themselves,
        # one at a time (_rlock), until the loop takes reading back.
        self._direct = False
        self._direct_used = False  # a caller read since the loop last looked
        self._direct_timer: asyncio.TimerHandle | None = None
        self._rlock = threading.Lock()
        self._poller: select.poll | None = None
        self.peer = ""
        self.link_id = b""
        #: server side: the role of the key the peer proved (None without keys)
        self.role: str | None = None
        #: bytes read from and written to the socket (the side port's metrics)
        self.bytes_in = 0
        self.bytes_out = 0
        # Trace and stream log (linkserver.records); None costs one check per expression.
        self._tap: records.Tap | None = records.Tap(self, trace=True) if records.tracing() else None

    # ---------------------------------------------------------- asyncio glue

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            host = f"[{peer[0]}]" if ":" in str(peer[0]) else peer[0]
            self.peer = f"{peer[1]}@{host}"
        else:
            self.peer = str(peer or "unix")
        s = self._settings
        now = self._loop.time()
        if self._side is Side.SERVER:
            link_id: bytes | None = uuid.uuid4().bytes
            keepalive = None
        else:
            link_id = None
            keepalive = s.keepalive_interval
        self._conn = Connection(
            self._side,
            now=now,
            link_id=link_id,
            mode=self._mode,
            max_frame_size=s.max_frame_size,
            handshake_timeout=s.handshake_timeout,
            idle_timeout=s.idle_timeout,
            keepalive_interval=keepalive,
            keys=s.keys,
            key=s.key,
            nonce=secrets.token_bytes(32) if s.keys or s.key is not None else None,
        )
        self._flush_out()
        self._on_timer()

    def get_buffer(self, sizehint: int) -> memoryview:
        # asyncio calls this, reads into the buffer and calls buffer_updated, in
        # one go on the loop's thread; receive_data copies the bytes before any
        # callback could run another read on this thread.
        return read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(read_buffer()[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        conn = self._conn
        if conn is None:  # pragma: no cover - asyncio calls connection_made first
            return
        self.bytes_in += len(data)
        with self._wlock:
            conn.receive_data(data)
        self._after_input(conn)

    def _after_input(self, conn: Connection) -> None:
        """Act on what the connection made of its last input, then write its answer."""
        with self._wlock:
            events = conn.events_received()
        if events:
            self._handle(events)
        self._flush_out()

    def eof_received(self) -> bool | None:
        self._lost()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()
        with self._wlock:  # before asyncio closes the socket this handle shares
            wsock, self._wsock, self._wsock_tried = self._wsock, None, True
            self._direct = False
            self._backlog.clear()
        if wsock is not None:
            wsock.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._direct_timer is not None:
            self._direct_timer.cancel()
            self._direct_timer = None
        if not self._finished.done():
            self._finished.set_result(None)
        self._wake_drainers()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers()

    def _wake_drainers(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    def _lost(self) -> None:
        conn = self._conn
        if conn is None:
            return
        with self._wlock:
            conn.receive_eof()
        self._after_input(conn)

    def _flush_out(self) -> None:
        conn = self._conn
        transport = self._transport
        if conn is None or transport is None:
            return
        with self._wlock:
            data = conn.data_to_send()
            if data and not transport.is_closing():
                self._write(transport, data)
            if conn.should_close and not transport.is_closing():
                self._write_backlog_locked(transport)  # close() sends what it holds, then ends
        if conn.should_close:
            if self._error is None:
                self._end(conn.error or LinkClosed("the link is closed"))
            if not transport.is_closing():
                transport.close()

    def _on_timer(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._timer = None
        with self._wlock:
            deadline = conn.check_timers(self._loop.time())
        self._after_input(conn)
        if deadline is not None and not conn.should_close:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _handle(self, events: list[Event]) -> None:
        if len(events) < 2:
            self._handle_each(events)
            return
        batch = _write_batch
        batch.depth += 1
        try:
            self._handle_each(events)
        finally:
            batch.depth -= 1
            if not batch.depth:
                links, batch.links = batch.links, []
                for link in links:
                    link._write_batched()

    def _handle_each(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is ExpressionReceived:
                if self._tap is not None:
                    self._tap.expression("<", event.payload)
                receiver = self._receiver
                if receiver is not None:
                    self._call_receiver(receiver, event.payload)
                    continue
                with self._lock:
                    if not _wake_first(self._recv_waiters, event.payload):
                        self._incoming.append(event.payload)
            elif isinstance(event, MessageReceived):
                if self._tap is not None:
                    self._tap.message("<", event.message, event.argument)
                self._deliver_message(event.message, event.argument)
            elif isinstance(event, HandshakeComplete):
                self.link_id = event.link_id
                self._mode = event.mode
                self.role = self._conn.role if self._conn is not None else None
                if not self._opened.done():
                    self._opened.set_result(None)
                log.debug("= link %s open with %s (mode %s)", self.name, self.peer, event.mode.name)
                if self._on_open is not None:
                    self._on_open(self)
            elif isinstance(event, CloseReceived):
                if self._tap is not None:
                    self._tap.close_frame("<", event.code, event.reason)
                assert self._conn is not None and self._conn.error is not None
                self._end(self._conn.error)
            elif isinstance(event, ConnectionFailed):
                self._end(event.error)

    def _call_receiver(self, receiver: Callable[[bytes], None], payload: bytes) -> None:
        try:
            receiver(payload)
        except LinkError as exc:  # e.g. it answered on a link that is closing
            log.debug("! receiver of link %s: %s", self.name, exc)
        except Exception:  # a user callback: log it, end this link only
            log.exception("! receiver of link %s failed", self.name)
            self.close_nowait(CloseCode.INTERNAL_ERROR, "the receiving handler failed")

    def _deliver_message(self, message: UrgentMessage | int, argument: int) -> None:
        if self._reflect:
            self.send_message_nowait(message, argument)
            return
        for handler in list(self._message_handlers):
            try:
                handler(message, argument)
            except Exception:  # a user callback: log it, keep the link alive
                log.exception("! message handler %r failed", handler)
        with self._lock:
            if not _wake_first(self._msg_waiters, (message, argument)):
                self._messages.append((message, argument))

    def _end(self, error: LinkError) -> None:
        """Record why the link ended and wake everyone waiting on it."""
        with self._lock:
            if self._error is not None:
                return
            self._error = error
            for waiters in (self._recv_waiters, self._msg_waiters):
                while waiters:
                    _wake(waiters.popleft(), error=error)
        if self._tap is not None:
            self._tap.ended(str(error))
        log.debug("x link %s ended: %s", self.name, error)
        if not self._opened.done():
            self._opened.set_exception(error)
            self._opened.exception()  # mark retrieved: not everyone awaits it
        for callback in self._end_callbacks:
            try:
                callback(self)
            except Exception:  # one failing callback must not keep the others from running
                log.exception("! end callback %r of link %s failed", callback, self.name)

    # ------------------------------------------------ loop-thread primitives

    def set_receiver(self, receiver: Callable[[bytes], None] | None) -> None:
        """Hand every expression that arrives to ``receiver(payload)`` instead of queueing it.

        The receiver runs in the event loop as each expression arrives, with
        its WXF bytes undecoded -- the cheapest way to forward or answer
        expressions (no task switch per expression). Expressions already
        queued are handed over at once, in order. ``None`` goes back to
        queueing for :meth:`get`. Loop thread only.
        """
        self.stop_direct_reads()
        self._receiver = receiver
        if receiver is not None:
            while self._incoming:
                self._call_receiver(receiver, self._incoming.popleft())

    def push_back(self, payload: bytes) -> None:
        """Deliver ``payload`` again, ahead of everything queued (loop thread only).

        For a handler that looked at an expression and decided it belongs to
        someone else: it goes to the receiver if one is set, else to the
        front of the queue, so a receiver set later gets it first.
        """
        receiver = self._receiver
        if receiver is not None:
            self._call_receiver(receiver, payload)
            return
        with self._lock:
            if not _wake_first(self._recv_waiters, payload):
                self._incoming.appendleft(payload)

    def put_payload_nowait(self, payload: bytes) -> None:
        """Send one already encoded expression at once (loop thread only).

        Raises:
            LinkClosed: the link is closing or closed.
            LocalProtocolError: the link is not open yet.
            LimitError: the payload exceeds the frame limit.
        """
        conn = self._conn
        if conn is None:
            raise self._not_open()
        with self._wlock:
            conn.send_expression(payload)
            if self._tap is not None:
                self._tap.expression(">", payload)
            if _write_batch.depth:  # several frames of one read: write at the batch's end
                if not self._batched:
                    self._batched = True
                    _write_batch.links.append(self)
                return
            data = conn.data_to_send()
            transport = self._transport
            if transport is not None and not transport.is_closing():
                self._write(transport, data)

    def _write_batched(self) -> None:
        # Loop thread: what put_payload_nowait left for the end of a batch.
        with self._wlock:
            self._batched = False
            conn, transport = self._conn, self._transport
            if conn is None or transport is None or transport.is_closing():
                return
            data = conn.data_to_send()
            if data:
                self._write(transport, data)

    def _write(self, transport: asyncio.BaseTransport, data: bytes) -> None:
        # Loop thread, _wlock held: behind any direct write still unsent.
        self.bytes_out += len(data)
        if self._backlog:
            self._backlog.append(data)
        else:
            transport.write(data)  # type: ignore[attr-defined]

    def put_payload_direct(self, payload: bytes) -> bool:
        """Send one encoded expression from a thread other than the loop's, writing it itself.

        Returns False, having sent nothing, where this link writes only from
        its loop (TLS, a trace, a transport without a socket, not open): then
        use :meth:`put_payload_nowait` in the loop.

        Raises:
            LinkClosed: the link is closing or closed.
            LimitError: the payload exceeds the frame limit.
        """
        if self._tap is not None:
            return False
        with self._wlock:
            conn, transport = self._conn, self._transport
            if conn is None or transport is None or transport.is_closing():
                return False
            wsock = self._wsock if self._wsock_tried else self._own_socket(transport)
            if wsock is None:
                return False
            conn.send_expression(payload)
            self._send_direct_locked(wsock, transport, conn.data_to_send())
        return True

    def _send_direct_locked(
        self, wsock: socket.socket, transport: asyncio.BaseTransport, data: bytes
    ) -> None:
        # _wlock held, in a thread other than the loop's: write ``data`` now if
        # nothing is waiting before it, else behind what is (the loop writes it).
        if not data:
            return
        self.bytes_out += len(data)
        sent = 0
        if not self._backlog and not self._paused and _unsent(transport) == 0:
            try:
                sent = wsock.send(data)
            except OSError:  # full, or broken: the loop's write finds out which
                sent = 0
        if sent < len(data):
            if not self._backlog:
                self._loop.call_soon_threadsafe(self._write_backlog)
            self._backlog.append(memoryview(data)[sent:])

    # ------------------------------------------- reading in a caller's thread

    @property
    def direct(self) -> bool:
        """True while blocking callers read the socket themselves (see :meth:`read_direct`)."""
        return self._direct

    def may_read_directly(self) -> bool:
        """Whether :meth:`start_direct_reads` could succeed now (any thread, no I/O).

        So that a blocking caller does not ask the loop in vain at every get:
        never over TLS, a memory pair, a trace or stream log, or while anyone
        else consumes what arrives.
        """
        transport = self._transport
        return not (
            self._error is not None or transport is None or not self.is_open
            or (self._wsock_tried and self._wsock is None)
            or transport.get_extra_info("socket") is None
            or transport.get_extra_info("sslcontext") is not None
            or self._consumed_elsewhere()
        )

    def _consumed_elsewhere(self) -> bool:
        # What arrives must pass the loop: a trace or stream log, a receiver,
        # a loopback's reflection, a message handler.
        return (self._tap is not None or self._receiver is not None or self._reflect
                or bool(self._message_handlers))

    def start_direct_reads(self) -> bool:
        """Let blocking callers read the socket in their own thread (loop thread only).

        The transport stops reading; :meth:`read_direct` reads instead, so an
        answer wakes the thread that waits for it, not the loop first. Only
        for a plain socket with nobody else consuming what arrives: no TLS, no
        trace or stream log, no receiver, no message handler, no waiter.
        Once callers have not read for :data:`DIRECT_IDLE` (at two looks in a
        row), the loop reads again, so that an idle link still answers a
        ping or a close. Returns whether direct reads are on.
        """
        if self._direct:
            return True
        conn, transport = self._conn, self._transport
        if (conn is None or transport is None or transport.is_closing() or not self.is_open
                or self._consumed_elsewhere() or self._recv_waiters or self._msg_waiters):
            return False
        with self._wlock:
            wsock = self._wsock if self._wsock_tried else self._own_socket(transport)
            if wsock is None:
                return False
            poller = select.poll()
            poller.register(wsock.fileno(), select.POLLIN)
            self._poller = poller
            transport.pause_reading()  # type: ignore[attr-defined]
            self._direct = True
            self._direct_used = True
        self._direct_timer = self._loop.call_later(DIRECT_IDLE, self._direct_idle_check)
        return True

    def _direct_idle_check(self) -> None:
        # Loop thread: take reading back once callers have stopped reading.
        self._direct_timer = None
        if not self._direct:
            return
        if self._direct_used or self._rlock.locked():
            self._direct_used = False
            self._direct_timer = self._loop.call_later(DIRECT_IDLE, self._direct_idle_check)
            return
        self.stop_direct_reads()

    def stop_direct_reads(self) -> None:
        """Take reading back into the loop (loop thread only; nothing is lost).

        Whatever a caller read is in the queues already: a caller's read
        queues what it read before it lets ``_wlock`` go. A caller waiting in
        :meth:`read_direct` notices within :data:`DIRECT_TICK` and waits on
        the loop from then on.
        """
        if self._direct_timer is not None:
            self._direct_timer.cancel()
            self._direct_timer = None
        if not self._direct:
            return
        with self._wlock:  # between two of a caller's reads (each holds it)
            self._direct = False
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()  # type: ignore[attr-defined]

    def read_direct(self, timeout: float | None) -> None:
        """Read what has arrived, waiting at most ``timeout`` s (None: a tick at a time).

        For blocking callers, in any thread but the loop's, while
        :attr:`direct`. Expressions and urgent messages go to the queues, as
        the loop would put them; anything else (the peer closing, the socket
        failing, a frame to answer) hands reading back to the loop, which
        deals with it as always. Returns after one read, a timeout or a tick.
        """
        self._direct_used = True
        wait = DIRECT_TICK if timeout is None else min(max(timeout, 0.0), DIRECT_TICK)
        if not self._rlock.acquire(True, wait):
            return  # another thread reads: what it reads is queued for everyone
        try:
            poller = self._poller
            if not self._direct or poller is None or not poller.poll(wait * 1000):
                return
            self._read_once()
        finally:
            self._rlock.release()

    def _read_once(self) -> None:
        # _rlock held: one recv, its events delivered before the lock is let go.
        events: list[Event] = []
        with self._wlock:
            conn, wsock, transport = self._conn, self._wsock, self._transport
            if not self._direct or conn is None or wsock is None or transport is None:
                return
            view = read_buffer()
            try:
                n = wsock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                n = 0  # reset: the loop reads it again and ends the link
            if n == 0:
                self._hand_back_locked([])
                return
            self.bytes_in += n
            conn.receive_data(view[:n])
            events = conn.events_received()
            try:
                self._send_direct_locked(wsock, transport, conn.data_to_send())
                self._deliver_direct(events)
            finally:  # even if Ctrl-C lands here: what is not queued goes to the loop
                if events or conn.should_close:
                    self._hand_back_locked(events)

    def _deliver_direct(self, events: list[Event]) -> None:
        # Queue expressions and messages as _handle would (nobody else consumes
        # them: start_direct_reads made sure), taking each off ``events``; stop
        # at the first that needs the loop, leaving it and the rest in order.
        while events:
            event = events[0]
            with self._lock:
                if isinstance(event, ExpressionReceived) and not self._recv_waiters:
                    self._incoming.append(event.payload)
                    del events[0]
                    continue
                if isinstance(event, MessageReceived) and not self._msg_waiters:
                    self._messages.append((event.message, event.argument))
                    del events[0]
                    continue
            if not isinstance(event, PongReceived):
                return
            del events[0]  # _handle has nothing to do for one either

    def _hand_back_locked(self, events: list[Event]) -> None:
        # _wlock held, a caller's thread: the loop reads from now on, starting
        # with ``events``, which it handles first.
        self._direct = False
        self._loop.call_soon_threadsafe(self._taken_back, events)

    def _taken_back(self, events: list[Event]) -> None:
        # Loop thread: after a caller's read handed reading back.
        if events:
            self._handle(events)
        self._flush_out()
        transport = self._transport
        if not self._direct and transport is not None and not transport.is_closing():
            transport.resume_reading()  # type: ignore[attr-defined]

    def _own_socket(self, transport: asyncio.BaseTransport) -> socket.socket | None:
        # _wlock held: a handle of our own on the transport's socket, made once.
        self._wsock_tried = True
        sock = transport.get_extra_info("socket")
        if sock is None or transport.get_extra_info("sslcontext") is not None:
            return None
        try:
            self._wsock = socket.socket(sock.family, sock.type, sock.proto, os.dup(sock.fileno()))
        except OSError:
            return None
        self._wsock.setblocking(False)
        return self._wsock

    def _write_backlog(self) -> None:
        # Loop thread: what direct writes left unsent, and what queued behind it.
        with self._wlock:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                self._write_backlog_locked(transport)
            self._backlog = []

    def _write_backlog_locked(self, transport: asyncio.BaseTransport) -> None:
        chunks, self._backlog = self._backlog, []
        for chunk in chunks:
            transport.write(chunk)  # type: ignore[attr-defined]

    def _not_open(self) -> LinkError:
        if self._error is not None:
            return self._closed_error()
        return LinkClosed("the link has no peer yet: wait for it with activate()", code="not-open")

    def _closed_error(self) -> LinkError:
        error = self._error
        if error is None:
            return LinkClosed("the link is closed")
        # A fresh instance per raise, so tracebacks do not pile up on one object.
        return type(error)(error.message, code=error.code)

    def send_message_nowait(self, message: int, argument: int = 0) -> None:
        """Send an urgent message now (loop thread only).

        Raises:
            LinkClosed: the link is closing or closed.
        """
        conn = self._conn
        if conn is None:
            raise self._not_open()
        with self._wlock:
            conn.send_message(message, argument)
        if self._tap is not None:
            self._tap.message(">", message, argument)
        self._flush_out()

    def register_waiter(self, waiter: Waiter, *, messages: bool = False) -> None:
        """Give ``waiter`` the next payload (or message), now or when it comes.

        Safe from any thread: the blocking façade registers its
        :class:`ThreadWaiter` directly, without a hop through the loop.
        """
        with self._lock:
            queue = self._messages if messages else self._incoming
            if queue:
                _wake(waiter, queue.popleft())
            elif self._error is not None:
                _wake(waiter, error=self._closed_error())
            else:
                (self._msg_waiters if messages else self._recv_waiters).append(waiter)

    def register_waiter_if_empty(self, waiter: Waiter) -> bool:
        """Give ``waiter`` the next payload to arrive, unless one is queued already.

        Safe from any thread. Returns False, registering nothing and leaving
        the queue alone, if a payload is queued: the caller takes it with
        :meth:`take_nowait` under its own lock. So a payload is only ever
        handed over either by the caller itself or, to a registered waiter,
        in the loop thread before the next frame is read -- never half-way
        between (the kernel loop numbers requests that way, loop.py). A link
        that has ended wakes the waiter with its error (True).
        """
        with self._lock:
            if self._incoming:
                return False
            if self._error is not None:
                _wake(waiter, error=self._closed_error())
            else:
                self._recv_waiters.append(waiter)
            return True

    def take_nowait(self) -> bytes | None:
        """Return the next queued payload, or None; safe from any thread."""
        try:
            return self._incoming.popleft()
        except IndexError:
            return None

    def take_nowait_if(self, accept: Callable[[bytes], bool]) -> bytes | None:
        """Return the next queued payload if ``accept(payload)``, else None; any thread.

        A payload not accepted stays first in the queue.
        """
        with self._lock:
            if self._incoming and accept(self._incoming[0]):
                return self._incoming.popleft()
        return None

    # ------------------------------------------------------------ public API

    @property
    def is_open(self) -> bool:
        """True while expressions can be sent."""
        conn = self._conn
        return conn is not None and conn.state is State.OPEN and self._error is None

    @property
    def closed(self) -> bool:
        """True once the link has ended (closed or broken)."""
        return self._error is not None

    @property
    def mode(self) -> LinkMode:
        """The link mode the client asked for (see docs/protocol.md §3.1)."""
        return self._mode

    @property
    def error(self) -> LinkError | None:
        """Why the link ended, or None while it is alive."""
        return self._error

    async def activate(self, timeout: float | None = None) -> None:
        """Wait until the link is connected and its handshake done (WSActivate).

        Raises:
            LinkTimeout: ``timeout`` passed first.
            LinkError: the link failed before it opened (the reason says why).
        """
        if self._opened.done():
            self._opened.result()
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._opened)
        except LinkError:
            raise  # LinkTimeout is a TimeoutError too: keep the link's own reason
        except TimeoutError:
            raise LinkTimeout(f"no peer connected to {self.name} within {timeout:g} s") from None

    async def put(self, expr: Any) -> None:
        """Send one expression (any value :func:`linkserver.wxf.dumps` accepts).

        Raises:
            LinkClosed: the link is closed.
            WXFEncodeError: ``expr`` has no Wolfram Language form.
            LimitError: the encoded expression is above the frame limit.
        """
        await self.put_payload(wxf.dumps(expr))

    async def put_payload(self, payload: bytes) -> None:
        """Send one expression that is already WXF-encoded (no re-encoding).

        Raises:
            LinkClosed: the link is closed.
            LimitError: the payload is above the frame limit.
        """
        if not self._opened.done():
            await self.activate()
        self.put_payload_nowait(payload)
        if self._paused:
            await self.flush()

    async def get(self, timeout: float | None = None) -> Any:
        """Receive the next expression, waiting up to ``timeout`` seconds.

        Raises:
            LinkTimeout: nothing arrived within ``timeout``.
            LinkClosed: the link was closed and every expression has been read.
            LinkBroken: the peer or the network broke the link.
            WXFDecodeError: the peer sent bytes that are not an expression.
        """
        return wxf.loads(await self.get_payload(timeout))

    async def get_payload(self, timeout: float | None = None) -> bytes:
        """Like :meth:`get` but return the expression's WXF bytes undecoded."""
        if self._incoming:
            return self._incoming.popleft()
        self.stop_direct_reads()  # an asyncio reader: the loop reads for it
        if not self._opened.done():
            await self.activate(timeout)
        waiter: asyncio.Future[bytes] = self._loop.create_future()
        self.register_waiter(waiter)
        if timeout is None:  # the hot path, without a second coroutine frame
            try:
                return await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
        return await await_waiter(waiter, timeout, f"expression arrived on {self.name}")

    def ready(self) -> bool:
        """True if an expression can be read without waiting (WSReady)."""
        return bool(self._incoming)

    def message_ready(self) -> bool:
        """True if an urgent message can be read without waiting (WSMessageReady)."""
        return bool(self._messages)

    async def get_message(self, timeout: float | None = None) -> tuple[UrgentMessage | int, int]:
        """Receive the next urgent message as ``(message, argument)``.

        Raises:
            LinkTimeout: nothing arrived within ``timeout``.
            LinkClosed: the link ended.
        """
        if self._messages:
            return self._messages.popleft()
        self.stop_direct_reads()
        waiter: asyncio.Future[tuple[UrgentMessage | int, int]] = self._loop.create_future()
        self.register_waiter(waiter, messages=True)
        return await await_waiter(waiter, timeout, f"urgent message arrived on {self.name}")

    def on_end(self, callback: Callable[[Link], None]) -> None:
        """Call ``callback(link)`` once, in the event loop, when the link ends.

        Ended means closed by either side or broken; :attr:`error` says which.
        A link that has already ended calls it at once.
        """
        if self._error is not None:
            callback(self)
        else:
            self._end_callbacks.append(callback)

    def on_message(self, handler: Callable[[UrgentMessage | int, int], None]) -> None:
        """Call ``handler(message, argument)`` in the event loop for each urgent message."""
        self.stop_direct_reads()  # the loop must read for the handler to be called
        self._message_handlers.append(handler)

    def log_stream(self, path: str | os.PathLike[str] | None) -> Path | None:
        """Write this link's traffic to a stream log file, or stop (WSLogStreamToFile).

        Every expression and urgent message sent (``>``) or received (``<``)
        from now on is appended to ``path`` as one line with the time of day
        and a short InputForm (docs/logging.md). A directory gets a new file
        named by the link id and the time. ``None`` stops and closes the
        file; the file is closed when the link ends, too. Loop thread only.

        Returns:
            The file written to, or None.

        Raises:
            RecordsError: the file cannot be opened.
            LinkClosed: the link has ended.
        """
        self.stop_direct_reads()  # a caller's read would pass the log by
        tap = self._tap
        if tap is not None and tap.stream is not None:
            tap.stream.close()
            tap.stream = None
        if path is None:
            if tap is not None and tap.idle:
                self._tap = None
            return None
        if self._error is not None:
            raise self._closed_error()
        side = "server" if self._side is Side.SERVER else "client"
        stream = records.StreamLog.open(path, self, side)
        if tap is None:
            tap = self._tap = records.Tap(self, trace=False)
        tap.stream = stream
        return stream.path

    async def send_message(self, message: int, argument: int = 0) -> None:
        """Send an urgent message (WSPutMessage); it overtakes queued expressions.

        Raises:
            LinkClosed: the link is closed.
        """
        if not self._opened.done():
            await self.activate()
        self.send_message_nowait(message, argument)

    async def abort(self) -> None:
        """Ask the peer to abort the current evaluation (WSAbortMessage)."""
        await self.send_message(UrgentMessage.ABORT)

    async def interrupt(self) -> None:
        """Ask the peer to interrupt the current evaluation (WSInterruptMessage)."""
        await self.send_message(UrgentMessage.INTERRUPT)

    async def terminate(self) -> None:
        """Ask the peer to terminate (WSTerminateMessage)."""
        await self.send_message(UrgentMessage.TERMINATE)

    async def flush(self) -> None:
        """Wait until everything put so far has been handed to the network (WSFlush)."""
        while self._paused and self._transport is not None and not self._transport.is_closing():
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def close_nowait(self, code: CloseCode = CloseCode.NORMAL, reason: str = "") -> None:
        """Start closing the link (loop thread only); never raises."""
        self.stop_direct_reads()  # the loop reads the peer's answer to the close
        conn = self._conn
        if conn is None:
            self._end(LinkClosed("the link was closed before it opened"))
            if self._transport is not None:
                self._transport.close()
            return
        if self._tap is not None and self._error is None:
            self._tap.close_frame(">", code, reason)
        with self._wlock:
            conn.send_close(code, reason, now=self._loop.time())
        if self._error is None:
            self._end(LinkClosed("the link was closed by this side"))
        self._flush_out()
        if self._timer is None and not conn.should_close:
            self._on_timer()

    async def aclose(self, code: CloseCode = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the link politely and wait (bounded) until the peer has seen it.

        Expressions already received stay readable with :meth:`get`.
        """
        self.close_nowait(code, reason)
        if self._transport is not None:
            await asyncio.shield(self._finished)

    async def __aenter__(self) -> Link:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "open" if self.is_open else ("closed" if self.closed else "opening")
        return f"<linkserver.aio.Link {self.name!r} {state}>"
