"""Fuzz target: a server-side protocol connection fed arbitrary bytes.

The sans-I/O :class:`linkserver.protocol.Connection` (docs/protocol.md) is
driven as the asyncio glue drives it. The input's first byte is a schedule:
its low 7 bits seed how the rest is cut into slices and which clock ticks
(``check_timers``) and local sends (expressions, urgent messages, PING,
CLOSE) come between the slices; its high bit asks for a server with a key
(when the tree has key authentication). The rest is what the peer sends,
then EOF. Seeds in fuzz/corpus/protocol/ are ``b"\\x00"`` + a real client's
bytes, made by fuzz/make_corpus.py with the project's own encoders.

Allowed, whatever the bytes:

- ``receive_data``, ``receive_eof``, ``check_timers``, ``events_received``
  and ``data_to_send`` never raise;
- local sends raise only what they document: ``LocalProtocolError``
  (before the handshake, or a bad ping), ``LinkClosed`` (after close) or
  ``LimitError`` (above the frame limit);
- events are the documented event types; at most one ``ConnectionFailed``,
  carrying a ``LinkError``, and no event after it; no expression or message
  is received once the connection says ``should_close``; the state is one
  of ``State``.

Run: ``python fuzz/fuzz_protocol.py fuzz/corpus/protocol`` (see fuzz/README.md).
"""

from __future__ import annotations

import random
import sys

import atheris

with atheris.instrument_imports(include=["linkserver.protocol"]):
    from linkserver.errors import LimitError, LinkClosed, LinkError, LocalProtocolError
    from linkserver.protocol import (
        CloseReceived,
        Connection,
        ConnectionFailed,
        ExpressionReceived,
        HandshakeComplete,
        MessageReceived,
        PongReceived,
        Side,
        State,
    )
    from linkserver.protocol import connection as _connection

# Key authentication is being added to the protocol; fuzz a keyed server once it is there.
NONCE_SIZE: int = getattr(_connection, "NONCE_SIZE", 0)

EVENTS = (CloseReceived, ConnectionFailed, ExpressionReceived, HandshakeComplete,
          MessageReceived, PongReceived)
SEND_ERRORS = (LocalProtocolError, LinkClosed, LimitError)
LINK_ID = bytes(range(16))
MAX_FRAME = 1024


def check(conn: Connection, seen: dict[str, bool]) -> None:
    for event in conn.events_received():
        assert isinstance(event, EVENTS), event
        assert not seen["failed"], f"{event!r} after ConnectionFailed"
        if isinstance(event, ConnectionFailed):
            assert isinstance(event.error, LinkError), event
            seen["failed"] = True
        elif seen["closed"] and isinstance(event, (ExpressionReceived, MessageReceived)):
            raise AssertionError(f"{event!r} after the connection said it should close")
    assert isinstance(conn.data_to_send(), bytes)
    assert isinstance(conn.state, State)
    if conn.should_close:
        seen["closed"] = True


def local_send(conn: Connection, rng: random.Random, now: float) -> None:
    action = rng.randrange(4)
    try:
        if action == 0:
            conn.send_expression(rng.randbytes(rng.choice((0, 8, MAX_FRAME + 1))))
        elif action == 1:
            conn.send_message(rng.randrange(256), rng.randrange(2**32))
        elif action == 2:
            conn.send_ping(rng.randbytes(rng.choice((0, 16, 126))))
        else:
            conn.send_close(rng.randrange(5000), "fuzz", now=now)
    except SEND_ERRORS:
        pass


def test_one_input(data: bytes) -> None:
    if not data:
        return
    schedule, stream = data[0], data[1:]
    rng = random.Random(schedule & 0x7F)
    options: dict[str, object] = {}
    if schedule & 0x80 and NONCE_SIZE:
        options = {"keys": [("user", b"k" * 32)], "nonce": bytes(NONCE_SIZE)}
    conn = Connection(Side.SERVER, link_id=LINK_ID, max_frame_size=MAX_FRAME,
                      handshake_timeout=10.0, idle_timeout=60.0, keepalive_interval=20.0,
                      **options)  # type: ignore[arg-type]
    seen = {"failed": False, "closed": False}
    now, pos = 0.0, 0
    while pos < len(stream):
        size = rng.choice((1, 2, 5, 12, 64, 4096)) if schedule & 0x7F else len(stream)
        conn.receive_data(stream[pos : pos + size])
        pos += size
        check(conn, seen)
        roll = rng.random()
        if roll < 0.1:
            now += rng.choice((0.5, 15.0, 30.0, 90.0))
            conn.check_timers(now)
        elif roll < 0.2:
            local_send(conn, rng, now)
        check(conn, seen)
    conn.receive_eof()
    check(conn, seen)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
