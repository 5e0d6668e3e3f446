"""One end of a link as a pure state machine: bytes in, events out (docs/protocol.md).

:class:`Connection` is the whole protocol for one side of one link -- the
handshake, framing, urgent messages, keep-alive, close and the limits -- with
no I/O: the caller feeds received bytes with :meth:`Connection.receive_data`,
collects :meth:`Connection.events_received`, asks for
:meth:`Connection.data_to_send` and writes it, and closes the transport when
:attr:`Connection.should_close` says so. Clocks and link ids come from the
caller. The shape is websockets' ``Protocol``; the state table is h11's idea.

Theory of operation
-------------------

States (docs/protocol.md §7)::

    HELLO ──hello ok──▶ OPEN ──send CLOSE──▶ CLOSING ──recv CLOSE / EOF──▶ CLOSED
      │                  │ └──recv CLOSE (we answer CLOSE)───────────────▶ CLOSED
      │                  └──EOF, bad frame, limit, timeout──▶ ERROR
      └──bad magic, bad hello, timeout──▶ ERROR

Every (state, input) pair that the table :data:`_TRANSITIONS` does not list is
a protocol violation: a received input moves to ERROR with a
:class:`~linkserver.errors.RemoteProtocolError`; a local send in a state that
does not allow it raises at once and changes nothing (the caller's mistake is
not the peer's).

The server answers by itself where the protocol says so -- the server hello,
the one-line rejection of a stranger, PONG for PING, the CLOSE answering a
CLOSE, the CLOSE that reports a broken limit -- by queueing bytes, so the I/O
glue only ever moves bytes and events.

Urgent MESSAGE frames are queued ahead of expression frames not yet collected
by :meth:`data_to_send` (§5: an abort overtakes queued results).

Timers are coarse on purpose: receiving bytes only sets a flag (the hot path
stays cheap); :meth:`check_timers` turns the flag into a timestamp and returns
when it next wants to be called. An idle deadline can therefore be late by at
most one check interval, never early.
"""

from __future__ import annotations

import enum

import hmac
from collections.abc import Sequence

from ..errors import (
    AuthenticationError,
    LimitError,
    LinkClosed,
    LinkError,
    LinkTimeout,
    LocalProtocolError,
    NotALinkServerError,
    RemoteProtocolError,
    VersionError,
    LinkBroken,
)
from . import oob
from .events import (
    CloseReceived,
    ConnectionFailed,
    Event,
    ExpressionReceived,
    HandshakeComplete,
    MessageReceived,
    PongReceived,
)
from .framing import DEFAULT_MAX_FRAME_SIZE, FrameKind, FrameParser, encode_frame
from .handshake import (
    CLIENT_HAS_KEY,
    CLIENT_HELLO,
    MAGIC,
    NONCE_SIZE,
    NOT_LINKSERVER_LINE,
    PROOF_SIZE,
    SERVER_CHALLENGE,
    SERVER_HELLO,
    VERDICT_FAILED,
    VERDICT_OK,
    VERSION,
    ClientHello,
    HelloStatus,
    LinkMode,
    ServerHello,
    client_proof,
    rejection_line,
    server_proof,
)

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "MAX_PING_PAYLOAD",
    "Connection",
    "Side",
    "State",
]

# Ten seconds, as websockets' open_timeout: a real client on any network
# finishes a 40-byte exchange far sooner; a silent or trickling peer is cut off.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

# One hour. Links are long-lived (a notebook may sit idle over lunch) and our
# clients send keep-alive pings, so this only reaps peers that vanished
# without a FIN or that connected and never spoke again.
DEFAULT_IDLE_TIMEOUT = 3600.0

# How long a side that sent CLOSE waits for the answering CLOSE.
DEFAULT_CLOSE_TIMEOUT = 10.0

# As WebSocket control frames (RFC 6455 §5.5): pings are tiny.
MAX_PING_PAYLOAD = 125


class Side(enum.Enum):
    """Which end of the link this connection is."""

    CLIENT = "client"  #: sends the client hello
    SERVER = "server"  #: answers it and assigns the link id


class State(enum.Enum):
    """Where a connection is in its life (docs/protocol.md §7)."""

    HELLO = "hello"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    ERROR = "error"


class _In(enum.Enum):
    RECV_HELLO = enum.auto()
    RECV_EXPRESSION = enum.auto()
    RECV_MESSAGE = enum.auto()
    RECV_PING = enum.auto()
    RECV_PONG = enum.auto()
    RECV_CLOSE = enum.auto()
    RECV_EOF = enum.auto()
    SEND_EXPRESSION = enum.auto()
    SEND_MESSAGE = enum.auto()
    SEND_PING = enum.auto()
    SEND_CLOSE = enum.auto()


_H, _O, _C, _X = State.HELLO, State.OPEN, State.CLOSING, State.CLOSED

_TRANSITIONS: dict[tuple[State, _In], State] = {
    (_H, _In.RECV_HELLO): _O,
    (_O, _In.RECV_EXPRESSION): _O,
    (_O, _In.RECV_MESSAGE): _O,
    (_O, _In.RECV_PING): _O,
    (_O, _In.RECV_PONG): _O,
    (_O, _In.RECV_CLOSE): _X,
    (_O, _In.SEND_EXPRESSION): _O,
    (_O, _In.SEND_MESSAGE): _O,
    (_O, _In.SEND_PING): _O,
    (_O, _In.SEND_CLOSE): _C,
    # After we sent CLOSE the peer may still have frames in flight: they are
    # delivered (nothing lost) until its CLOSE or EOF.
    (_C, _In.RECV_EXPRESSION): _C,
    (_C, _In.RECV_MESSAGE): _C,
    (_C, _In.RECV_PING): _C,
    (_C, _In.RECV_PONG): _C,
    (_C, _In.RECV_CLOSE): _X,
    (_C, _In.RECV_EOF): _X,
}

_FRAME_INPUT = {
    FrameKind.EXPRESSION: _In.RECV_EXPRESSION,
    FrameKind.MESSAGE: _In.RECV_MESSAGE,
    FrameKind.PING: _In.RECV_PING,
    FrameKind.PONG: _In.RECV_PONG,
    FrameKind.CLOSE: _In.RECV_CLOSE,
}

_ZERO_ID = bytes(16)


class Connection:
    """The protocol state of one end of one link, without I/O.

    Args:
        side: ``Side.CLIENT`` sends the first hello; ``Side.SERVER`` answers.
        now: the caller's clock at creation (any monotonic clock, seconds).
        link_id: 16 bytes; required on the server side, which assigns it.
        mode: the link mode a client asks for (ignored on the server side).
        max_frame_size: largest payload accepted from the peer, in bytes.
        handshake_timeout: seconds allowed for the hello exchange, or None.
        idle_timeout: seconds without receiving anything before the link is
            closed, or None for no limit.
        keepalive_interval: send a PING after this many seconds without
            sending anything, or None never to.
        close_timeout: seconds to wait for the answer to our CLOSE.
        keys: server side: ``(role, key)`` pairs; when any is given, every
            client must prove it holds one of them (docs/protocol.md §3.5),
            and :attr:`role` tells which.
        key: client side: the key to prove, or None.
        nonce: 32 fresh random bytes for the key challenge (the caller's
            randomness: this module draws none); needed with ``keys``/``key``.

    Raises:
        LocalProtocolError: a server without a 16-byte ``link_id``, or keys
            without a 32-byte nonce.
    """

    def __init__(
        self,
        side: Side,
        *,
        now: float = 0.0,
        link_id: bytes | None = None,
        mode: LinkMode = LinkMode.LINKSERVER,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        keepalive_interval: float | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        keys: Sequence[tuple[str, bytes]] = (),
        key: bytes | None = None,
        nonce: bytes | None = None,
    ) -> None:
        if side is Side.SERVER and (link_id is None or len(link_id) != 16):
            raise LocalProtocolError("a server-side connection needs a 16-byte link_id")
        if side is Side.SERVER:
            key = None
        else:
            keys = ()
        if (keys or key is not None) and (nonce is None or len(nonce) != NONCE_SIZE):
            raise LocalProtocolError(f"key authentication needs a {NONCE_SIZE}-byte random nonce")
        if any(not k for _role, k in keys) or key == b"":
            raise LocalProtocolError("an authentication key must not be empty")
        self.side = side
        self.mode = mode
        self.link_id: bytes | None = link_id if side is Side.SERVER else None
        self.peer_version: tuple[int, int] | None = None
        self.max_frame_size = max_frame_size
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.keepalive_interval = keepalive_interval
        self.close_timeout = close_timeout

        self.state = State.HELLO
        #: the error that ended the link, once in ERROR (or a clean close's LinkClosed)
        self.error: LinkError | None = None
        #: the peer's close code and reason, once it sent CLOSE
        self.close_received: tuple[oob.CloseCode | int, str] | None = None

        self._parser = FrameParser(max_frame_size)
        self._hello_buf = bytearray()
        self._stranger = False  # client side: the server did not open with MAGIC
        self._refused = False  # client side: server hello said no; CLOSE follows
        self._refusal = HelloStatus.UNSUPPORTED_VERSION
        self._events: list[Event] = []
        self._urgent: list[bytes] = []
        self._out: list[bytes] = []
        self._eof = False
        self._closing_since = 0.0

        #: server side, once open: the role of the key the client proved
        #: (None without keys)
        self.role: str | None = None
        self._keys = tuple(keys)
        self._key = key
        self._nonce = nonce or b""
        self._peer_nonce = b""
        self._proved_key = b""
        # Where the handshake is: "hello"; server: "proof" (challenge sent,
        # waiting for the client's proof); client: "verdict" (proof sent).
        self._phase = "hello"

        self._started = now
        self._last_recv = now
        self._last_sent = now
        self._recv_flag = False
        self._sent_flag = False

        if side is Side.CLIENT:
            flags = CLIENT_HAS_KEY if key is not None else 0
            self._out.append(ClientHello(VERSION, mode, flags).encode())

    # ------------------------------------------------------------------ output

    def data_to_send(self) -> bytes:
        """Return (and forget) every byte queued for the peer, urgent ones first."""
        if not self._out and not self._urgent:
            return b""
        if self._urgent:
            chunks = self._urgent + self._out
            self._urgent = []
        else:
            chunks = self._out
        self._out = []
        if not chunks:
            return b""
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    @property
    def should_close(self) -> bool:
        """True once the transport should be closed (after writing :meth:`data_to_send`)."""
        return self.state is State.CLOSED or self.state is State.ERROR

    def events_received(self) -> list[Event]:
        """Return (and forget) the events produced since the last call."""
        events = self._events
        self._events = []
        return events

    # -------------------------------------------------------------- local sends

    def _check_send(self, what: _In) -> None:
        if self.state is State.OPEN and what is not _In.SEND_CLOSE:
            self._sent_flag = True  # the hot path: OPEN stays OPEN for these sends
            return
        new = _TRANSITIONS.get((self.state, what))
        if new is None:
            if self.state is State.HELLO:
                raise LocalProtocolError(
                    "the link is not open yet: wait for the handshake to complete"
                )
            raise self._closed_error()
        self._sent_flag = True
        self.state = new

    def _closed_error(self) -> LinkError:
        if self.error is not None:
            if isinstance(self.error, LinkClosed):
                return self.error
            return LinkClosed(f"the link is closed: {self.error.message}")
        return LinkClosed("the link is closed; open a new one")

    def send_expression(self, payload: bytes) -> None:
        """Queue one expression, already WXF-encoded.

        Raises:
            LocalProtocolError: the handshake has not completed.
            LinkClosed: the link is closing or closed.
            LimitError: the payload is larger than ``max_frame_size``.
        """
        if len(payload) > self.max_frame_size:
            raise LimitError(
                f"this expression encodes to {len(payload)} bytes, above the link's "
                f"max_frame_size of {self.max_frame_size}; raise the limit on both ends",
                code="frame-too-large",
            )
        self._check_send(_In.SEND_EXPRESSION)
        self._out.append(encode_frame(FrameKind.EXPRESSION, payload))

    def send_message(self, message: int, argument: int = 0) -> None:
        """Queue an urgent message ahead of queued expressions (docs/protocol.md §5).

        Raises:
            LocalProtocolError: the handshake has not completed.
            LinkClosed: the link is closing or closed.
            ValueError: code or argument outside 32 unsigned bits.
        """
        payload = oob.encode_message(message, argument)
        self._check_send(_In.SEND_MESSAGE)
        self._urgent.append(encode_frame(FrameKind.MESSAGE, payload))

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a PING; the peer answers with a PONG carrying ``payload``.

        Raises:
            LocalProtocolError: handshake not complete, or payload over 125 bytes.
            LinkClosed: the link is closing or closed.
        """
        if len(payload) > MAX_PING_PAYLOAD:
            raise LocalProtocolError(f"a ping carries at most {MAX_PING_PAYLOAD} bytes")
        self._check_send(_In.SEND_PING)
        self._out.append(encode_frame(FrameKind.PING, payload))

    def send_close(
        self, code: oob.CloseCode | int = oob.CloseCode.NORMAL, reason: str = "", *, now: float = 0.0
    ) -> None:
        """Queue a CLOSE; nothing may be sent after it. Closing twice does nothing.

        Before the handshake completes there is nothing to close politely:
        the connection just ends (``should_close`` becomes true).

        Args:
            code: why; see :class:`~.oob.CloseCode`.
            reason: one sentence for the peer.
            now: the caller's clock, to time out a peer that never answers.
        """
        if self.state is State.HELLO:
            self._fail(LinkClosed("the link was closed before its handshake completed"))
            return
        if self.state is not State.OPEN:
            return
        self._check_send(_In.SEND_CLOSE)
        self._closing_since = now
        self._out.append(encode_frame(FrameKind.CLOSE, oob.encode_close(code, reason)))

    def fail(self, error: LinkError, code: oob.CloseCode | int | None = None) -> None:
        """End the link because of ``error`` found outside the core.

        If ``code`` is given and the link is open, a CLOSE with that code and
        the error's message is queued first, so the peer learns why.
        """
        if code is not None and self.state is State.OPEN:
            self._out.append(encode_frame(FrameKind.CLOSE, oob.encode_close(code, error.message)))
        self._fail(error)

    def _fail(self, error: LinkError) -> None:
        if self.state is State.ERROR or self.state is State.CLOSED:
            return
        self.state = State.ERROR
        self.error = error
        self._events.append(ConnectionFailed(error))

    # ----------------------------------------------------------------- receive

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the peer; then read :meth:`events_received`."""
        if not data or self.state is State.CLOSED or self.state is State.ERROR:
            return
        self._recv_flag = True
        if self.state is State.HELLO:
            self._hello_buf += data
            self._receive_hello()
            if self.state is State.HELLO or self.should_close:
                return
        else:
            self._parser.feed(data)
        self._receive_frames()

    def receive_eof(self) -> None:
        """Tell the connection the peer closed its side (or the transport was lost)."""
        if self._eof:
            return
        self._eof = True
        state = self.state
        if state is State.CLOSING:
            self.state = State.CLOSED
            if self.error is None:
                self.error = LinkClosed("the link was closed")
        elif state is State.HELLO:
            if self._stranger:
                self._fail(self._stranger_error())
            elif self._refused and self._refusal is HelloStatus.AUTH_REQUIRED:
                self._fail(AuthenticationError("the server refused this client's key"))
            elif self._refused:
                self._fail(VersionError("the server refused our protocol version"))
            elif self.side is Side.SERVER and self._phase == "proof":
                self._fail(
                    AuthenticationError(
                        "the peer disconnected instead of answering the key challenge"
                    )
                )
            elif self.side is Side.SERVER:
                self._fail(LinkBroken("the peer disconnected before finishing its handshake"))
            else:
                self._fail(
                    LinkBroken(
                        "the server closed the connection during the handshake; it may "
                        "require TLS (connect with tls=True), be overloaded or be shutting down"
                    )
                )
        elif state is State.OPEN:
            self._fail(
                LinkBroken("the peer went away without closing the link (connection lost)")
            )

    def _receive_hello(self) -> None:
        if self._phase == "proof":
            self._receive_client_proof()
            return
        if self._phase == "verdict":
            self._receive_verdict()
            return
        buf = self._hello_buf
        n = min(len(buf), len(MAGIC))
        if self._stranger or buf[:n] != MAGIC[:n]:
            self._stranger = True
            if self.side is Side.SERVER:
                # docs/protocol.md §3.3: one readable line, then close.
                self._out.append(NOT_LINKSERVER_LINE)
                self._fail(
                    RemoteProtocolError(
                        "the peer does not speak the linkserver protocol", code="not-linkserver"
                    )
                )
            elif b"\n" in buf or len(buf) >= 200:
                # Wait for a whole first line: it is the most useful thing to show.
                self._fail(self._stranger_error())
            return
        if self.side is Side.SERVER:
            self._receive_client_hello()
        else:
            self._receive_server_hello()

    def _stranger_error(self) -> LinkError:
        if bytes(self._hello_buf[:1]) in (b"\x15", b"\x16"):  # a TLS alert or handshake record
            return NotALinkServerError(
                "the server answered in TLS; connect with tls=True (its connection file "
                "says so, and pins its certificate)"
            )
        first = bytes(self._hello_buf).split(b"\n", 1)[0][:120]
        shown = first.decode("ascii", "backslashreplace").strip()
        return NotALinkServerError(
            f"the peer is not a linkserver (it answered {shown!r}); check the address and port"
        )

    def _receive_client_hello(self) -> None:
        buf = self._hello_buf
        if len(buf) < CLIENT_HELLO.size:
            return
        try:
            hello = ClientHello.decode(bytes(buf[: CLIENT_HELLO.size]))
        except RemoteProtocolError as exc:
            self._out.append(rejection_line(exc.message))
            self._fail(exc)
            return
        rest = bytes(buf[CLIENT_HELLO.size :])
        self._hello_buf = bytearray()
        assert self.link_id is not None
        if hello.version[0] != VERSION[0]:
            message = (
                f"this server speaks protocol {VERSION[0]}.{VERSION[1]}, the client "
                f"{hello.version[0]}.{hello.version[1]}; upgrade the older side"
            )
            self._out.append(ServerHello(_ZERO_ID, HelloStatus.UNSUPPORTED_VERSION).encode())
            self._out.append(
                encode_frame(
                    FrameKind.CLOSE, oob.encode_close(oob.CloseCode.UNSUPPORTED_VERSION, message)
                )
            )
            self._fail(VersionError(message))
            return
        self.mode = hello.mode
        self.peer_version = hello.version
        if self._keys:
            if not hello.flags & CLIENT_HAS_KEY:
                message = (
                    "this server requires a key: give the client the server's key "
                    "(its connection file has it)"
                )
                self._out.append(ServerHello(_ZERO_ID, HelloStatus.AUTH_REQUIRED).encode())
                self._out.append(
                    encode_frame(FrameKind.CLOSE, oob.encode_close(oob.CloseCode.AUTH_FAILED, message))
                )
                self._fail(AuthenticationError("the client offered no key"))
                return
            self._out.append(ServerHello(self.link_id, flags=SERVER_CHALLENGE).encode() + self._nonce)
            self._phase = "proof"
            self._hello_buf = bytearray(rest)
            self._receive_client_proof()
            return
        self._out.append(ServerHello(self.link_id).encode())
        self._open(rest)

    def _open(self, rest: bytes) -> None:
        assert self.link_id is not None and self.peer_version is not None
        self._phase = "open"
        self.state = State.OPEN
        self._events.append(HandshakeComplete(self.link_id, self.mode, self.peer_version))
        self._parser.feed(rest)

    def _receive_client_proof(self) -> None:
        # Server, challenge sent: the client answers its nonce and its proof.
        buf = self._hello_buf
        if len(buf) < NONCE_SIZE + PROOF_SIZE:
            return
        client_nonce = bytes(buf[:NONCE_SIZE])
        proof = bytes(buf[NONCE_SIZE : NONCE_SIZE + PROOF_SIZE])
        rest = bytes(buf[NONCE_SIZE + PROOF_SIZE :])
        self._hello_buf = bytearray()
        assert self.link_id is not None
        for role, key in self._keys:
            expected = client_proof(key, self._nonce, client_nonce, self.link_id)
            if hmac.compare_digest(proof, expected):
                self.role = role
                answer = server_proof(key, self._nonce, client_nonce, self.link_id)
                self._out.append(bytes([VERDICT_OK]) + answer)
                self._open(rest)
                return
        message = "the key is wrong: this server holds a different key"
        self._out.append(
            bytes([VERDICT_FAILED])
            + encode_frame(FrameKind.CLOSE, oob.encode_close(oob.CloseCode.AUTH_FAILED, message))
        )
        self._fail(AuthenticationError("the client proved a key this server does not hold"))

    def _receive_server_hello(self) -> None:
        buf = self._hello_buf
        if self._refused:
            self._parser.feed(buf)
            self._hello_buf = bytearray()
            self._receive_refusal()
            return
        if len(buf) < SERVER_HELLO.size:
            return
        try:
            hello = ServerHello.decode(bytes(buf[: SERVER_HELLO.size]))
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        challenged = hello.status is HelloStatus.OK and hello.flags & SERVER_CHALLENGE
        if challenged and len(buf) < SERVER_HELLO.size + NONCE_SIZE:
            return
        end = SERVER_HELLO.size + (NONCE_SIZE if challenged else 0)
        server_nonce = bytes(buf[SERVER_HELLO.size : end])
        rest = bytes(buf[end:])
        self._hello_buf = bytearray()
        if hello.status is not HelloStatus.OK:
            self._refused = True
            self._refusal = hello.status
            self._parser.feed(rest)
            self._receive_refusal()
            return
        if hello.version[0] != VERSION[0]:
            self._fail(
                VersionError(
                    f"the server speaks protocol {hello.version[0]}.{hello.version[1]}, "
                    f"this client {VERSION[0]}.{VERSION[1]}; upgrade the older side"
                )
            )
            return
        self.link_id = hello.link_id
        self.peer_version = hello.version
        if challenged:
            if self._key is None:
                self._fail(
                    AuthenticationError(
                        "the server asks for a key and this client has none; give it the "
                        "server's key (its connection file has it)"
                    )
                )
                return
            self._peer_nonce = server_nonce
            proof = client_proof(self._key, server_nonce, self._nonce, hello.link_id)
            self._out.append(self._nonce + proof)
            self._phase = "verdict"
            self._hello_buf = bytearray(rest)
            self._receive_verdict()
            return
        if self._key is not None:
            self._fail(
                AuthenticationError(
                    "the server did not ask for the key this client holds, so it cannot "
                    "prove it is the server the key belongs to; check the address"
                )
            )
            return
        self._open(rest)

    def _receive_verdict(self) -> None:
        # Client, proof sent: one verdict byte, then the server's proof or a CLOSE.
        buf = self._hello_buf
        if not buf:
            return
        if buf[0] == VERDICT_FAILED:
            self._refused = True
            self._refusal = HelloStatus.AUTH_REQUIRED
            self._parser.feed(bytes(buf[1:]))
            self._hello_buf = bytearray()
            self._receive_refusal()
            return
        if buf[0] != VERDICT_OK:
            self._fail(
                RemoteProtocolError(
                    f"the server answered the key proof with unknown verdict {buf[0]}",
                    code="bad-handshake",
                )
            )
            return
        if len(buf) < 1 + PROOF_SIZE:
            return
        answer = bytes(buf[1 : 1 + PROOF_SIZE])
        rest = bytes(buf[1 + PROOF_SIZE :])
        self._hello_buf = bytearray()
        assert self._key is not None and self.link_id is not None
        expected = server_proof(self._key, self._peer_nonce, self._nonce, self.link_id)
        if not hmac.compare_digest(answer, expected):
            self._fail(
                AuthenticationError(
                    "the server could not prove it holds the key; it is not the server "
                    "the key belongs to"
                )
            )
            return
        self._open(rest)

    def _receive_refusal(self) -> None:
        # The server refused the hello and sends one CLOSE saying why.
        try:
            frame = self._parser.next_frame()
        except LinkError as exc:
            self._fail(exc)
            return
        if frame is None:
            return
        kind, payload = frame
        reason = "the server refused the handshake"
        if kind is FrameKind.CLOSE:
            try:
                reason = oob.decode_close(payload)[1] or reason
            except RemoteProtocolError:
                pass
        if self._refusal is HelloStatus.AUTH_REQUIRED:
            self._fail(AuthenticationError(reason))
        else:
            self._fail(VersionError(reason))

    def _receive_frames(self) -> None:
        parser = self._parser
        events = self._events
        while True:
            try:
                frame = parser.next_frame()
            except LimitError as exc:
                self.fail(exc, oob.CloseCode.FRAME_TOO_LARGE)
                return
            except RemoteProtocolError as exc:
                self.fail(exc, oob.CloseCode.PROTOCOL_ERROR)
                return
            if frame is None:
                return
            kind, payload = frame
            if kind is FrameKind.EXPRESSION:
                # The hot path: no table lookup needed, OPEN and CLOSING both accept.
                events.append(ExpressionReceived(payload))
                continue
            what = _FRAME_INPUT[kind]
            new = _TRANSITIONS.get((self.state, what))
            if new is None:  # pragma: no cover - every frame kind is in the table
                self.fail(RemoteProtocolError(f"unexpected {kind.name} frame"), oob.CloseCode.PROTOCOL_ERROR)
                return
            try:
                self._handle_control(kind, payload)
            except RemoteProtocolError as exc:
                self.fail(exc, oob.CloseCode.PROTOCOL_ERROR)
                return
            self.state = new
            if self.should_close:
                return

    def _handle_control(self, kind: FrameKind, payload: bytes) -> None:
        if kind is FrameKind.MESSAGE:
            message, argument = oob.decode_message(payload)
            self._events.append(MessageReceived(message, argument))
        elif kind is FrameKind.PING:
            if len(payload) > MAX_PING_PAYLOAD:
                raise RemoteProtocolError(
                    f"a PING carries at most {MAX_PING_PAYLOAD} bytes", code="bad-frame"
                )
            if self.state is State.OPEN:
                self._out.append(encode_frame(FrameKind.PONG, payload))
        elif kind is FrameKind.PONG:
            self._events.append(PongReceived(payload))
        else:  # CLOSE
            code, reason = oob.decode_close(payload)
            self.close_received = (code, reason)
            if self.state is State.OPEN:
                # Answer the close (docs/protocol.md §6): the peer may now hang up.
                self._out.append(encode_frame(FrameKind.CLOSE, oob.encode_close(oob.CloseCode.NORMAL)))
            shown = f": {reason}" if reason else ""
            self.error = LinkClosed(f"the peer closed the link ({_code_name(code)}){shown}")
            self._events.append(CloseReceived(code, reason))

    # ------------------------------------------------------------------ timers

    def check_timers(self, now: float) -> float | None:
        """Apply the time limits at ``now``; return when to call again (or None).

        Breaking a limit queues what the peer should read (a rejection line or
        a CLOSE) and ends the connection with a :class:`LinkTimeout`.
        """
        if self._recv_flag:
            self._recv_flag = False
            self._last_recv = now
        if self._sent_flag:
            self._sent_flag = False
            self._last_sent = now
        state = self.state
        if state is State.HELLO:
            if self.handshake_timeout is None:
                return None
            deadline = self._started + self.handshake_timeout
            if now >= deadline:
                reason = f"no handshake within {self.handshake_timeout:g} s"
                if self.side is Side.SERVER:
                    self._out.append(rejection_line(reason))
                    self._fail(LinkTimeout(f"the peer sent {reason}", code="handshake-timeout"))
                else:
                    self._fail(
                        LinkTimeout(
                            f"the server did not finish the handshake within "
                            f"{self.handshake_timeout:g} s",
                            code="handshake-timeout",
                        )
                    )
                return None
            return deadline
        if state is State.OPEN:
            deadlines = []
            if self.idle_timeout is not None:
                deadline = self._last_recv + self.idle_timeout
                if now >= deadline:
                    self.fail(
                        LinkTimeout(
                            f"nothing was received for {self.idle_timeout:g} s (idle_timeout)",
                            code="idle-timeout",
                        ),
                        oob.CloseCode.IDLE_TIMEOUT,
                    )
                    return None
                deadlines.append(deadline)
            if self.keepalive_interval is not None:
                due = self._last_sent + self.keepalive_interval
                if now >= due:
                    self.send_ping()
                    self._sent_flag = False
                    self._last_sent = now
                    due = now + self.keepalive_interval
                deadlines.append(due)
            return min(deadlines) if deadlines else None
        if state is State.CLOSING:
            deadline = self._closing_since + self.close_timeout
            if now >= deadline:
                self.state = State.CLOSED
                return None
            return deadline
        return None


def _code_name(code: oob.CloseCode | int) -> str:
    if isinstance(code, oob.CloseCode):
        return code.name.lower().replace("_", " ")
    return f"code {code}"
