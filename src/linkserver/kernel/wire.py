"""The kernel's end of its link: a socket the kernel's own threads read and write, no event loop.

A kernel process has one link, to the server, and its main thread spends its
life either waiting on that link or evaluating. :class:`KernelWire` lets the
main thread read the socket itself whenever it waits, so that a request wakes
exactly one thread, the one that serves it (docs/performance.md, "Hop by
hop"). It speaks the protocol through the same sans-I/O
:class:`~linkserver.protocol.connection.Connection` as every other link; only
the driving differs from :class:`linkserver.aio.Link`.

Theory of operation
-------------------
*Reading.* Exactly one thread reads at a time: the one holding ``_rlock``.
It waits in ``poll`` on the socket and on a pipe of its own, reads what has
come, feeds the connection and delivers the events in order -- a payload to
the queue (``_incoming``), an urgent message to the handler, the link's end to
the end callback -- before it lets go of the lock, so that every event is
delivered in the order it came, whichever thread read it.

*Who reads.* The main thread, inside :meth:`KernelWire.wait` (waiting for
the next request, for the answer to an ``Input`` or to a call of an installed
function, during a ``Pause``). While it computes, nobody reads -- unless the
computation lasts: the *watcher* thread looks every :data:`WATCH_TICK`
seconds, and a computation it finds running at two looks in a row makes it the
reader until the main thread waits again. It then takes urgent messages
(ABORT, PREEMPT, TERMINATE) and the link's end as they come, which is how a
long evaluation is stopped. An urgent message that comes during a short
computation is read when it ends, which is what it would have found anyway: a
request already answered. The main thread gets the reading back by writing
to the watcher's pipe (``_yield_w``) and taking the lock; that handover
happens only after a long computation, while its answer travels.

A watcher that has looked :data:`IDLE_LOOKS` times and found the main thread
waiting each time sleeps until the next computation starts, so an idle
kernel costs no wake-ups.

*Writing.* Any thread may put; ``_wlock`` serialises the connection's state
and the socket's reads and writes (a TLS socket may not be read and written
at once), held only for non-blocking calls and, when the server reads slower
than the kernel writes, the wait for the socket to take more.

*Waking.* :meth:`KernelWire.wake` writes to the main thread's pipe, so a
thread that changes what the main thread waits for (a time limit, a stop)
makes the wait look again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .. import wxf
from ..errors import LinkBroken, LinkClosed, LinkError, LinkTimeout
from ..names import parse_name
from ..protocol import (
    CloseReceived,
    Connection,
    ConnectionFailed,
    ExpressionReceived,
    HandshakeComplete,
    LinkMode,
    MessageReceived,
    Side,
    State,
    UrgentMessage,
)
from ..security import check_fingerprint, credentials_for
from ..transport.stream import open_socket, read_buffer

__all__ = ["IDLE_LOOKS", "WATCH_TICK", "KernelWire", "connect_wire"]

log = logging.getLogger("linkserver.kernel")

#: Seconds between two looks of the watcher at the main thread: a computation
#: has its urgent messages read within about twice this.
WATCH_TICK = 0.02
#: Looks that find the main thread waiting before the watcher sleeps.
IDLE_LOOKS = 50

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT

MessageHandler = Callable[[UrgentMessage | int, int], None]


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        pass  # closed under us: nothing to drain


def _ms(timeout: float | None) -> int | None:
    if timeout is None:
        return None
    return max(0, int(timeout * 1000 + 0.999))


class KernelWire:
    """A kernel's open link to its server, read by the thread that waits on it.

    Make one with :func:`connect_wire`; call :meth:`start` before serving.
    """

    def __init__(self, sock: socket.socket, conn: Connection, name: str) -> None:
        #: the address dialled, e.g. ``"31415@127.0.0.1"``
        self.name = name
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._conn = conn
        self._wlock = threading.Lock()
        self._corked = 0  # puts inside corked() wait for its end
        self._rlock = threading.Lock()
        self._qlock = threading.Lock()
        self._incoming: deque[bytes] = deque()
        self._handler: MessageHandler | None = None
        self._on_end: Callable[[LinkError], None] | None = None
        #: why the link ended, once it has
        self.error: LinkError | None = None
        self._wake_r, self._wake_w = _pipe()
        self._yield_r, self._yield_w = _pipe()
        self._main_poll = select.poll()
        self._main_poll.register(self._fd, _POLLIN)
        self._main_poll.register(self._wake_r, _POLLIN)
        self._watch_poll = select.poll()
        self._watch_poll.register(self._fd, _POLLIN)
        self._watch_poll.register(self._yield_r, _POLLIN)
        # The computation running in the main thread (a number that changes
        # with each), or None while it waits on the wire.
        self._computing: int | None = 0
        self._computations = 0
        self._work = threading.Event()  # clear: the watcher sleeps until a computation
        self._work.set()
        self._watcher: threading.Thread | None = None
        self._shut = False
        self._opened = False

    # ------------------------------------------------------------ properties

    @property
    def closed(self) -> bool:
        """True once the link has ended."""
        return self.error is not None

    def ready(self) -> bool:
        """True if a payload has been read and not taken yet."""
        return bool(self._incoming)

    # --------------------------------------------------------------- serving

    def start(self, handler: MessageHandler, on_end: Callable[[LinkError], None]) -> None:
        """Deliver urgent messages to ``handler`` and the link's end to ``on_end``; start the watcher.

        Both are called in whichever thread reads: the main thread or the watcher.
        """
        self._handler = handler
        self._on_end = on_end
        if self.error is not None:
            on_end(self.error)
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name="linkserver-kernel-watcher", daemon=True
            )
            self._watcher.start()

    def take_nowait(self) -> bytes | None:
        """The first payload read and not taken yet, or None."""
        with self._qlock:
            return self._incoming.popleft() if self._incoming else None

    def take_nowait_if(self, accept: Callable[[bytes], bool]) -> bytes | None:
        """The first payload waiting for which ``accept`` is true (taken out of turn), or None."""
        with self._qlock:
            for i, payload in enumerate(self._incoming):
                if accept(payload):
                    del self._incoming[i]
                    return payload
        return None

    def wait(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Main thread: read the link until ``done()``, the link's end, or ``timeout`` seconds.

        ``done`` is called again after everything read is delivered and after
        each :meth:`wake`.

        Returns:
            ``done()`` as the wait ended.
        """
        if done():
            return True
        self._computing = None
        try:
            self._take_reading()
            try:
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    if done():
                        return True
                    if self.error is not None:
                        return False
                    remaining = None
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                    self._pump(self._main_poll, self._wake_r, remaining)
            finally:
                self._rlock.release()
        finally:
            self._computations += 1
            self._computing = self._computations
            if not self._work.is_set():
                self._work.set()

    def wake(self) -> None:
        """Make the main thread's :meth:`wait` look at its condition again (any thread, signal handlers too)."""
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def put(self, expr: Any) -> None:
        """Send one expression.

        Raises:
            WXFEncodeError: ``expr`` has no WXF form.
            LimitError: it is larger than a frame may be.
            LinkError: the link is closed or broken.
        """
        self.put_payload(wxf.dumps(expr))

    def put_payload(self, payload: bytes) -> None:
        """Send one encoded expression (any thread).

        Raises:
            LimitError: it is larger than a frame may be.
            LinkError: the link is closed or broken.
        """
        with self._wlock:
            if self.error is not None:
                raise self.error
            self._conn.send_expression(payload)
            if not self._corked:
                self._send_locked(self._conn.data_to_send())

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Send what is put inside the block in one write, as it ends (any thread).

        For packets that go out together (an answer's last ones): the server
        then reads them at once and passes them on in one write too. A read
        meanwhile may send them sooner, never later or out of order.

        Raises:
            LinkError: the link broke while sending (as it ends).
        """
        with self._wlock:
            self._corked += 1
        try:
            yield
        finally:
            with self._wlock:
                self._corked -= 1
                if not self._corked and self.error is None:
                    self._send_locked(self._conn.data_to_send())

    # --------------------------------------------------------------- reading

    def _buffered(self) -> bool:
        """True if TLS holds decrypted bytes that ``poll`` cannot see."""
        sock = self._sock
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def _take_reading(self) -> None:
        if not self._rlock.acquire(blocking=False):
            # The watcher reads (a long computation just ended): ask it back.
            try:
                os.write(self._yield_w, b"\0")
            except (BlockingIOError, OSError):
                pass
            self._rlock.acquire()

    def _pump(self, poller: select.poll, pipe: int, timeout: float | None) -> bool:
        """With ``_rlock`` held: wait up to ``timeout`` for the socket or ``pipe``; read and deliver.

        Returns:
            True if ``pipe`` was written to (and is now drained).
        """
        woken = False
        if not self._buffered():
            try:
                events = poller.poll(_ms(timeout))
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                return False
            readable = False
            for fd, _mask in events:
                if fd == pipe:
                    _drain(pipe)
                    woken = True
                else:
                    readable = True
            if not readable:
                return woken
        self._read()
        return woken

    def _read(self) -> None:
        """With ``_rlock`` held: read what the socket has, feed the connection, deliver the events."""
        conn = self._conn
        with self._wlock:
            ended = False
            view = read_buffer()
            while True:
                try:
                    n = self._sock.recv_into(view)
                except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                        ssl.SSLWantWriteError):
                    break
                except OSError:  # reset: the connection says the peer went away
                    ended = True
                    break
                if not n:
                    ended = True
                    break
                conn.receive_data(view[:n])  # copied: the buffer is the thread's
                if n < len(view) and not self._buffered():
                    break  # drained: no need for the call that would say so
            if ended:
                conn.receive_eof()
            events = conn.events_received()
            out = conn.data_to_send()
            if out and self.error is None:
                try:
                    self._send_locked(out)
                except LinkError:
                    pass  # the events say why the link ended
            if conn.should_close:
                self._hang_up()
        self._deliver(events)

    def _hang_up(self) -> None:
        """End the TCP connection (the peer waits for that after CLOSE); the descriptor stays ours."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def _deliver(self, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is ExpressionReceived:
                self._incoming.append(event.payload)
            elif kind is MessageReceived:
                handler = self._handler
                if handler is not None:
                    try:
                        handler(event.message, event.argument)
                    except Exception:  # the kernel's own handler: log it, read on
                        log.exception("! kernel: urgent message handler failed")
            elif kind is HandshakeComplete:
                self._opened = True
            elif kind is CloseReceived:
                self._end(self._conn.error or LinkClosed("the server closed the link"))
            elif kind is ConnectionFailed:
                self._end(event.error)

    def _end(self, error: LinkError) -> None:
        if self.error is not None:
            return
        self.error = error
        log.debug("x kernel link %s ended: %s", self.name, error)
        if self._on_end is not None:
            try:
                self._on_end(error)
            except Exception:
                log.exception("! kernel: link end callback failed")

    # --------------------------------------------------------------- writing

    def _send_locked(self, data: bytes) -> None:
        """With ``_wlock`` held: write all of ``data``, waiting while the socket is full.

        Raises:
            LinkBroken: the socket failed (the link is ended).
        """
        view = memoryview(data)
        waiter: select.poll | None = None
        while view:
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                if waiter is None:
                    waiter = select.poll()
                    waiter.register(self._fd, _POLLOUT)
                waiter.poll(1000)
                continue
            except OSError as exc:
                self._conn.receive_eof()
                self._conn.events_received()
                error = LinkBroken(f"the link to the server broke while sending ({exc.strerror or exc})")
                self._end(error)
                raise error from exc
            view = view[sent:]

    # --------------------------------------------------------------- watching

    def _watch(self) -> None:
        """The watcher thread: read while a computation lasts (see theory of operation)."""
        seen: int | None = None
        idle = 0
        while not self._shut and self.error is None:
            time.sleep(WATCH_TICK)
            current = self._computing
            if current is None:
                seen = None
                idle += 1
                if idle >= IDLE_LOOKS:
                    self._work.clear()
                    if self._computing is None:  # looked at after clearing: no wake-up is lost
                        self._work.wait()
                    idle = 0
                continue
            idle = 0
            if current != seen:
                seen = current
                continue
            self._read_while(current)
            seen = None

    def _read_while(self, computation: int) -> None:
        if not self._rlock.acquire(blocking=False):
            return  # the main thread has just begun to wait: it reads
        try:
            while self._computing == computation and self.error is None and not self._shut:
                if self._pump(self._watch_poll, self._yield_r, WATCH_TICK):
                    return  # the main thread wants to read
        finally:
            self._rlock.release()

    # --------------------------------------------------------------- closing

    def close(self, timeout: float = 2.0) -> None:
        """Close the link politely: send CLOSE, wait (at most ``timeout`` s) for the server's, hang up.

        Closing twice does nothing.
        """
        if self._shut:
            return
        with self._wlock:
            if self.error is None and self._conn.state is State.OPEN:
                self._conn.send_close(now=time.monotonic())
                try:
                    self._send_locked(self._conn.data_to_send())
                except LinkError:
                    pass
        if self.error is None:
            self._end(LinkClosed("the link was closed by this side"))
        deadline = time.monotonic() + timeout
        self._computing = None
        self._take_reading()
        try:
            while self._conn.state is State.CLOSING and not self._conn.should_close:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._pump(self._main_poll, self._wake_r, remaining)
        finally:
            self._shut = True
            self._rlock.release()
        self._work.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=1.0)
        try:
            self._sock.close()
        except OSError:
            pass
        for fd in (self._wake_r, self._wake_w, self._yield_r, self._yield_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _handshake(self, timeout: float | None) -> None:
        """Send the hello and read until the link is open.

        Raises:
            LinkError: the server refused, failed or did not finish in time.
        """
        with self._wlock:
            self._send_locked(self._conn.data_to_send())
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._rlock:
            while not self._opened:
                if self.error is not None:
                    raise self.error
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise LinkTimeout(
                        f"{self.name} accepted the connection but did not finish the handshake "
                        f"within {timeout:g} s"
                    )
                self._pump(self._main_poll, self._wake_r, remaining)

    def __repr__(self) -> str:
        return f"<KernelWire {self.name!r} {'closed' if self.closed else 'open'}>"


def connect_wire(
    name: str,
    timeout: float | None,
    *,
    mode: LinkMode = LinkMode.DIRECT,
    key: str | bytes | None = None,
    tls: bool | None = None,
    fingerprint: str | None = None,
) -> KernelWire:
    """Dial the server's kernel endpoint ``name`` and finish the handshake, as ``linkserver.connect`` does.

    Args:
        name: ``"PORT@HOST"`` or ``"unix:/path"``.
        timeout: seconds for connecting and the handshake together.
        key, tls, fingerprint: as :func:`linkserver.aio.connect` (by default
            from ``$LINKSERVER_KEY`` and the server's connection file).

    Raises:
        LinkNameError: ``name`` cannot be parsed, or is a service name.
        ConnectFailed: nothing accepted the connection, or TLS failed.
        AuthenticationError: the key was missing or wrong.
        SecurityError: a certificate other than the pinned one.
        LinkTimeout: the handshake did not finish within ``timeout``.
    """
    address = parse_name(name)
    credentials = credentials_for(address, key=key, tls=tls, fingerprint=fingerprint)
    start = time.monotonic()
    sock = open_socket(address, timeout=timeout, tls=credentials.tls)
    try:
        if credentials.fingerprint is not None:
            assert isinstance(sock, ssl.SSLSocket)
            check_fingerprint(sock.getpeercert(binary_form=True), credentials.fingerprint,
                              str(address))
        if address.kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn = Connection(
            Side.CLIENT,
            now=start,
            mode=mode,
            idle_timeout=None,
            handshake_timeout=timeout,
            key=credentials.key,
            nonce=secrets.token_bytes(32) if credentials.key is not None else None,
        )
        wire = KernelWire(sock, conn, str(address))
    except BaseException:
        sock.close()
        raise
    try:
        wire._handshake(timeout)
    except BaseException:
        wire.close(timeout=0)
        raise
    return wire
