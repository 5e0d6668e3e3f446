"""The blocking link: :class:`Link`, and ``connect``/``listen``/``loopback``.

A façade over :class:`linkserver.aio.Link` (one implementation, see
docs/design.md): expressions are encoded and decoded in the caller's thread;
the shared background loop (:mod:`.portal`) keeps the link's timers and
reads whenever no caller does. A put writes the socket from the caller's
thread (or is queued for the loop, keeping the order of puts and closes from
one thread); a get reads the socket in the caller's thread while the link
allows it (``aio.Link.read_direct``), else waits for the loop to hand it over.

Links are safe to share between threads, as ``WSEnableLinkLock`` makes WSTP
links: each put sends one whole expression and each get takes one whole
expression, so threads never interleave inside an expression. The WSTP-style
token calls (``put_function``, ``get_integer`` ...) keep their partial state
per thread for the same reason.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from . import aio, wxf
from .aio.link import LinkSettings, ThreadWaiter
from .errors import LimitError, LinkTimeout, TokenError
from .portal import Portal, get_portal
from .protocol import LinkMode, UrgentMessage
from .tokens import Token, TokenReader, TokenWriter

__all__ = ["Link", "connect", "link_pair", "listen", "loopback"]


class _TokenState(threading.local):
    def __init__(self) -> None:
        self.writer = TokenWriter()
        self.reader: TokenReader | None = None


class Link:
    """One end of a link, for ordinary (blocking) code.

    Get one from :func:`connect`, :func:`listen`, :func:`loopback` or
    :meth:`LinkServer.accept`. Use it as a context manager to close it.
    """

    def __init__(self, link: aio.Link, portal: Portal) -> None:
        self._aio = link
        self._portal = portal
        self._tokens = _TokenState()

    # ------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        """The link's name, e.g. ``"31415@127.0.0.1"``."""
        return self._aio.name

    @property
    def peer(self) -> str:
        """The peer's address, as ``"PORT@HOST"`` (or ``"memory"``)."""
        return self._aio.peer

    @property
    def role(self) -> str | None:
        """Server side: the role of the key the peer proved (None on a server without keys)."""
        return self._aio.role

    @property
    def link_id(self) -> str:
        """The id the server gave this link, as 32 hex digits."""
        return self._aio.link_id.hex()

    @property
    def mode(self) -> LinkMode:
        """The link mode the client asked for."""
        return self._aio.mode

    @property
    def closed(self) -> bool:
        """True once the link has ended (as far as what has arrived so far tells)."""
        if self._aio.direct:
            self._aio.read_direct(0)
        return self._aio.closed

    @property
    def aio(self) -> aio.Link:
        """The asyncio link underneath (for use inside the background loop)."""
        return self._aio

    # -------------------------------------------------------- expressions

    def activate(self, timeout: float | None = None) -> None:
        """Wait until the link has its peer and is open (``WSActivate``).

        Raises:
            LinkTimeout: no peer within ``timeout``.
            LinkError: the link failed before it opened.
        """
        self._portal.call(self._aio.activate(timeout))

    def put(self, expr: Any) -> None:
        """Send one expression.

        Returns once the expression is queued for sending; use :meth:`flush`
        to wait until it has been handed to the network.

        Raises:
            WXFEncodeError: ``expr`` has no Wolfram Language form.
            LimitError: the encoded expression is above the link's frame limit.
            LinkClosed: the link is closed.
            LinkBroken: the link was broken by the peer or the network.
        """
        self._put_payload(wxf.dumps(expr))

    def _put_payload(self, payload: bytes) -> None:
        link = self._aio
        if not link.is_open:
            if link.closed:
                raise link._closed_error()
            self.activate()
        limit = link._settings.max_frame_size
        if len(payload) > limit:
            raise LimitError(
                f"this expression encodes to {len(payload)} bytes, above the link's "
                f"max_frame_size of {limit}; raise the limit on both ends",
                code="frame-too-large",
            )
        if not link.put_payload_direct(payload):
            self._portal.call_soon(link.put_payload_nowait, payload)
        if link._paused:  # the peer reads slower than we write: wait, don't pile up
            self.flush()

    def get(self, timeout: float | None = None) -> Any:
        """Receive the next expression.

        Args:
            timeout: seconds to wait; None waits as long as the link lives.

        Raises:
            LinkTimeout: nothing arrived within ``timeout``.
            LinkClosed: the link was closed and everything sent before has been read.
            LinkBroken: the peer or the network broke the link.
            WXFDecodeError: the peer sent bytes that are not an expression.
        """
        return wxf.loads(self._get_payload(timeout))

    def _get_payload(self, timeout: float | None, taken: deque[bytes] | None = None) -> bytes:
        """The next payload; one taken off the link while the wait was given up goes to ``taken``.

        Without ``taken``, a wait ended by an exception of the caller's thread
        (Ctrl-C) may lose the payload that arrived at that moment.
        """
        link = self._aio
        payload = link.take_nowait()
        if payload is not None:
            return payload
        if self._reads_directly():
            deadline = None if timeout is None else time.monotonic() + timeout
            payload = self._read_direct(deadline, timeout)
            if payload is not None:
                return payload
            # The loop took reading back (the peer closed, an asyncio reader came):
            # wait for it, with the time that is left.
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
        waiter: ThreadWaiter[bytes] = ThreadWaiter()
        link.register_waiter(waiter)
        try:
            return waiter.result(timeout)
        except TimeoutError:
            if waiter.cancel():
                raise LinkTimeout(
                    f"no expression arrived on {self.name} within {timeout:g} s"
                ) from None
            return waiter.result()
        except BaseException:
            if taken is not None and not waiter.cancel() and waiter.exception() is None:
                taken.append(waiter.result())
            raise

    def _read_direct(self, deadline: float | None, timeout: float | None) -> bytes | None:
        """Read the socket in this thread until a payload is queued; None if the loop reads again.

        Raises:
            LinkTimeout: nothing arrived by ``deadline`` (``timeout`` s from the start).
        """
        link = self._aio
        while link.direct:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise LinkTimeout(f"no expression arrived on {self.name} within {timeout:g} s")
            link.read_direct(left)
            payload = link.take_nowait()
            if payload is not None:
                return payload
        return None

    def _reads_directly(self) -> bool:
        """Whether callers read this link's socket themselves, asking the loop once if they may."""
        link = self._aio
        if not link.direct and link.may_read_directly() and not self._portal.on_loop_thread():
            self._portal.run_sync(link.start_direct_reads)
        return link.direct

    def _look_direct(self) -> None:
        """Read what has arrived, without waiting, where callers read the socket themselves.

        So that ``ready`` and ``message_ready`` see what the socket holds, as
        a get would, not only what the loop has read so far.
        """
        if self._reads_directly():
            self._aio.read_direct(0)

    def ready(self) -> bool:
        """True if :meth:`get` would return at once (``WSReady``)."""
        self._look_direct()
        return self._aio.ready()

    def flush(self) -> None:
        """Wait until everything put so far has been handed to the network (``WSFlush``)."""
        self._portal.call(self._aio.flush())

    # ------------------------------------------------------- urgent messages

    def send_message(self, message: int, argument: int = 0) -> None:
        """Send an urgent message (``WSPutMessage``); it overtakes queued expressions.

        Raises:
            LinkClosed: the link is closed.
        """
        self._portal.call(self._aio.send_message(message, argument))

    def abort(self) -> None:
        """Ask the peer to abort its current evaluation (``WSAbortMessage``)."""
        self.send_message(UrgentMessage.ABORT)

    def interrupt(self) -> None:
        """Ask the peer to interrupt its current evaluation (``WSInterruptMessage``)."""
        self.send_message(UrgentMessage.INTERRUPT)

    def terminate(self) -> None:
        """Ask the peer to terminate (``WSTerminateMessage``)."""
        self.send_message(UrgentMessage.TERMINATE)

    def message_ready(self) -> bool:
        """True if an urgent message is waiting (``WSMessageReady``)."""
        self._look_direct()
        return self._aio.message_ready()

    def get_message(self, timeout: float | None = None) -> tuple[UrgentMessage | int, int]:
        """Receive the next urgent message as ``(message, argument)`` (``WSGetMessage``).

        Raises:
            LinkTimeout: nothing arrived within ``timeout``.
            LinkClosed: the link ended.
        """
        self._look_direct()
        if self._aio.direct and not self._aio.message_ready():  # the loop reads while we wait
            if self._portal.on_loop_thread():
                self._aio.stop_direct_reads()
            else:
                self._portal.run_sync(self._aio.stop_direct_reads)
        waiter: ThreadWaiter[tuple[UrgentMessage | int, int]] = ThreadWaiter()
        self._aio.register_waiter(waiter, messages=True)
        try:
            return waiter.result(timeout)
        except TimeoutError:
            if waiter.cancel():
                raise LinkTimeout(
                    f"no urgent message arrived on {self.name} within {timeout:g} s"
                ) from None
            return waiter.result()

    def log_stream(self, path: str | os.PathLike[str] | None) -> Path | None:
        """Write this link's traffic to a stream log file, or stop with ``None`` (WSLogStreamToFile).

        See :meth:`linkserver.aio.Link.log_stream`.

        Raises:
            RecordsError: the file cannot be opened.
            LinkClosed: the link has ended.
        """
        result: Path | None = self._portal.run_sync(self._aio.log_stream, path)
        return result

    # ------------------------------------------------------------- closing

    def close(self) -> None:
        """Close the link politely; waits (bounded) until the peer has seen it.

        Closing a closed link does nothing. Expressions already received stay
        readable with :meth:`get`.
        """
        self._portal.call(self._aio.aclose())

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._aio).replace("linkserver.aio.Link", "linkserver.Link")

    # ------------------------------------------------- WSTP-style token calls

    def _put_token(self, complete: Any | None) -> None:
        if complete is not None:
            self.put(complete)

    def put_function(self, head: str | Any, argc: int) -> None:
        """Start a function with ``argc`` arguments (``WSPutFunction``).

        The expression is sent when its last argument has been put.

        Raises:
            TokenError: ``argc`` is negative.
        """
        self._put_token(self._tokens.writer.put_function(head, argc))

    def put_string(self, value: str) -> None:
        """Put a string (``WSPutString``).

        Raises:
            TokenError: ``value`` is not a str.
        """
        if not isinstance(value, str):
            raise TokenError(f"put_string needs a str, not {type(value).__name__}")
        self._put_token(self._tokens.writer.put_expr(value))

    def put_integer(self, value: int) -> None:
        """Put an integer (``WSPutInteger``; any size).

        Raises:
            TokenError: ``value`` is not an int.
        """
        if not isinstance(value, int) or isinstance(value, bool):
            raise TokenError(f"put_integer needs an int, not {type(value).__name__}")
        self._put_token(self._tokens.writer.put_expr(value))

    def put_real(self, value: float) -> None:
        """Put a machine real (``WSPutReal64``).

        Raises:
            TokenError: ``value`` is not a number.
        """
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TokenError(f"put_real needs a float, not {type(value).__name__}")
        self._put_token(self._tokens.writer.put_expr(float(value)))

    def put_symbol(self, name: str) -> None:
        """Put a symbol by name (``WSPutSymbol``).

        Raises:
            TokenError: ``name`` is not a non-empty string.
        """
        self._put_token(self._tokens.writer.put_symbol(name))

    def _reader(self, timeout: float | None = None) -> TokenReader:
        state = self._tokens
        if state.reader is None or state.reader.exhausted:
            state.reader = TokenReader(self.get(timeout))
        return state.reader

    def get_next(self, timeout: float | None = None) -> Token:
        """Return the kind of the next token, receiving an expression if needed (``WSGetNext``).

        Unlike C's ``WSGetNext`` this does not consume the token: follow it with
        the matching ``get_*`` call.
        """
        return self._reader(timeout).next()

    def get_function(self, timeout: float | None = None) -> tuple[Any, int]:
        """Read a function token: ``(head name, argument count)`` (``WSGetFunction``).

        Raises:
            TokenError: the next token is not a function.
        """
        return self._reader(timeout).get_function()

    def get_string(self, timeout: float | None = None) -> str:
        """Read a string token (``WSGetString``).

        Raises:
            TokenError: the next token is not a string.
        """
        return self._reader(timeout).get_string()

    def get_integer(self, timeout: float | None = None) -> int:
        """Read an integer token (``WSGetInteger``).

        Raises:
            TokenError: the next token is not an integer.
        """
        return self._reader(timeout).get_integer()

    def get_real(self, timeout: float | None = None) -> float:
        """Read a real token (``WSGetReal64``).

        Raises:
            TokenError: the next token is not a real.
        """
        return self._reader(timeout).get_real()

    def get_symbol(self, timeout: float | None = None) -> str:
        """Read a symbol token's name (``WSGetSymbol``).

        Raises:
            TokenError: the next token is not a symbol.
        """
        return self._reader(timeout).get_symbol()

    def new_packet(self) -> None:
        """Skip the rest of the expression being read token by token (``WSNewPacket``)."""
        self._tokens.reader = None


def connect(
    name: Any, timeout: float | None = None, *, mode: LinkMode = LinkMode.LINKSERVER,
    settings: LinkSettings | None = None, key: str | bytes | None = None,
    tls: bool | None = None, fingerprint: str | None = None, cafile: str | None = None,
) -> Link:
    """Connect to a LinkServer or a listening link (``LinkConnect``).

    Args:
        name: ``"PORT@HOST"`` (as ``LinkConnect["8000@127.0.0.1"]``),
            ``"unix:/path"``, ``(host, port)`` or ``"service:NAME"`` (found on
            the local network, see :func:`linkserver.browse`).
        timeout: seconds for connecting and the handshake together.
        mode: what to say we connect to; servers accept both modes.
        settings: the link's limits.
        key, tls, fingerprint, cafile: as :func:`linkserver.aio.connect`;
            by default from ``$LINKSERVER_KEY`` and the server's connection file.

    Raises:
        LinkNameError: ``name`` cannot be parsed.
        ConnectFailed: nothing accepted the connection, or TLS failed.
        NotALinkServerError: something answered, but not a linkserver.
        AuthenticationError: the key was missing or wrong.
        LinkTimeout: the handshake did not finish in time.
    """
    portal = get_portal()
    return Link(
        portal.call(
            aio.connect(
                name, timeout, mode=mode, settings=settings, key=key, tls=tls,
                fingerprint=fingerprint, cafile=cafile,
            )
        ),
        portal,
    )


def listen(name: Any = 0, *, settings: LinkSettings | None = None) -> Link:
    """Create a one-to-one link that waits for one peer (``LinkCreate``).

    Returns at once; read :attr:`Link.name` to learn the port, then hand that
    name to the peer. ``put``/``get``/``activate`` wait for the peer.

    Raises:
        LinkError: the address cannot be listened on.
    """
    portal = get_portal()
    return Link(portal.call(aio.listen(name, settings=settings)), portal)


def loopback() -> Link:
    """Return a link that gives back what is put on it (``WSLoopbackOpen``)."""
    portal = get_portal()
    return Link(portal.call(aio.loopback()), portal)


def link_pair() -> tuple[Link, Link]:
    """Return two links joined inside this process: what one puts, the other gets."""
    portal = get_portal()
    a, b = portal.call(aio.link_pair())
    return Link(a, portal), Link(b, portal)
