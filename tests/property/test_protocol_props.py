"""Hypothesis: the protocol core under arbitrary splits, bytes and interleavings."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from linkserver.errors import LinkError
from linkserver.protocol import (
    CloseReceived,
    Connection,
    ConnectionFailed,
    ExpressionReceived,
    HandshakeComplete,
    MessageReceived,
    Side,
    State,
)
from linkserver.protocol.framing import FrameKind, encode_frame
from linkserver.protocol.handshake import ClientHello
from linkserver.protocol.oob import encode_close, encode_message

LINK_ID = bytes(16)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

frames = st.one_of(
    st.binary(max_size=64).map(lambda p: encode_frame(FrameKind.EXPRESSION, p)),
    st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1)).map(
        lambda m: encode_frame(FrameKind.MESSAGE, encode_message(*m))
    ),
    st.binary(max_size=125).map(lambda p: encode_frame(FrameKind.PING, p)),
    st.binary(max_size=20).map(lambda p: encode_frame(FrameKind.PONG, p)),
)


def feed(chunks: list[bytes]) -> tuple[list[object], bytes, State]:
    conn = Connection(Side.SERVER, link_id=LINK_ID, max_frame_size=1024)
    events: list[object] = []
    out = b""
    for chunk in chunks:
        conn.receive_data(chunk)
        events.extend(conn.events_received())
        out += conn.data_to_send()
    return events, out, conn.state


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


@SETTINGS
@given(st.lists(frames, max_size=12), st.lists(st.integers(0, 10_000), max_size=20), st.booleans())
def test_chunking_does_not_change_events(body: list[bytes], cuts: list[int], close: bool) -> None:
    stream = ClientHello().encode() + b"".join(body)
    if close:
        stream += encode_frame(FrameKind.CLOSE, encode_close(0, "bye"))
    whole = feed([stream])
    assert feed([bytes([b]) for b in stream]) == whole
    assert feed(split(stream, cuts)) == whole
    events = whole[0]
    assert isinstance(events[0], HandshakeComplete)
    assert not any(isinstance(e, ConnectionFailed) for e in events)
    expressions = [e for e in events if isinstance(e, ExpressionReceived)]
    assert len(expressions) == sum(1 for f in body if f[0] == FrameKind.EXPRESSION)
    assert whole[2] is (State.CLOSED if close else State.OPEN)


@SETTINGS
@given(st.binary(max_size=512), st.sampled_from([Side.SERVER, Side.CLIENT]), st.booleans())
def test_arbitrary_bytes_never_raise(data: bytes, side: Side, after_hello: bool) -> None:
    conn = Connection(side, link_id=LINK_ID if side is Side.SERVER else None, max_frame_size=256)
    if after_hello and side is Side.SERVER:
        data = ClientHello().encode() + data
    conn.receive_data(data)  # must not raise, whatever the bytes
    conn.receive_eof()
    events = conn.events_received()
    conn.data_to_send()
    failures = [e for e in events if isinstance(e, ConnectionFailed)]
    assert len(failures) <= 1
    assert all(isinstance(f.error, LinkError) for f in failures)
    assert conn.state in (State.OPEN, State.CLOSED, State.ERROR) or conn.should_close
    assert conn.should_close or conn.state is State.OPEN


class LinkPairMachine(RuleBasedStateMachine):
    """Two connections joined by a wire that delivers in arbitrary slices."""

    def __init__(self) -> None:
        super().__init__()
        self.client = Connection(Side.CLIENT)
        self.server = Connection(Side.SERVER, link_id=LINK_ID)
        self.wire = {id(self.client): bytearray(), id(self.server): bytearray()}
        self.sent: dict[int, list[bytes]] = {id(self.client): [], id(self.server): []}
        self.got: dict[int, list[bytes]] = {id(self.client): [], id(self.server): []}
        self.msgs_sent = {id(self.client): 0, id(self.server): 0}
        self.msgs_got = {id(self.client): 0, id(self.server): 0}
        self.closed_by: Connection | None = None

    def peer(self, conn: Connection) -> Connection:
        return self.server if conn is self.client else self.client

    def pump(self, conn: Connection, n: int) -> None:
        """Deliver up to n pending bytes from conn to its peer."""
        self.wire[id(conn)] += conn.data_to_send()
        pending = self.wire[id(conn)]
        chunk = bytes(pending[:n])
        del pending[:n]
        peer = self.peer(conn)
        peer.receive_data(chunk)
        for event in peer.events_received():
            assert not isinstance(event, ConnectionFailed), event
            if isinstance(event, ExpressionReceived):
                self.got[id(peer)].append(event.payload)
            elif isinstance(event, MessageReceived):
                self.msgs_got[id(peer)] += 1
            elif isinstance(event, CloseReceived):
                pass

    ends = st.sampled_from(["client", "server"])

    @rule(end=ends, n=st.integers(1, 64))
    def deliver(self, end: str, n: int) -> None:
        self.pump(getattr(self, end), n)

    @precondition(lambda self: self.client.state is State.OPEN and self.server.state is State.OPEN)
    @rule(end=ends, payload=st.binary(max_size=40))
    def send_expression(self, end: str, payload: bytes) -> None:
        conn = getattr(self, end)
        conn.send_expression(payload)
        self.sent[id(conn)].append(payload)

    @precondition(lambda self: self.client.state is State.OPEN and self.server.state is State.OPEN)
    @rule(end=ends, code=st.integers(0, 255))
    def send_message(self, end: str, code: int) -> None:
        conn = getattr(self, end)
        conn.send_message(code)
        self.msgs_sent[id(conn)] += 1

    @precondition(lambda self: self.closed_by is None and self.client.state is State.OPEN
                  and self.server.state is State.OPEN)
    @rule(end=ends)
    def close(self, end: str) -> None:
        conn = getattr(self, end)
        conn.send_close()
        self.closed_by = conn

    @invariant()
    def order_kept_nothing_invented(self) -> None:
        for conn in (self.client, self.server):
            got = self.got[id(self.peer(conn))]
            assert got == self.sent[id(conn)][: len(got)]
            assert self.msgs_got[id(self.peer(conn))] <= self.msgs_sent[id(conn)]

    def teardown(self) -> None:
        # Drain the wire completely: everything sent arrives, exactly once.
        for _ in range(200):
            for conn in (self.client, self.server):
                self.pump(conn, 1 << 20)
        for conn in (self.client, self.server):
            assert self.got[id(self.peer(conn))] == self.sent[id(conn)]
            assert self.msgs_got[id(self.peer(conn))] == self.msgs_sent[id(conn)]
        if self.closed_by is not None:
            assert self.client.state is State.CLOSED and self.server.state is State.CLOSED


TestLinkPair = LinkPairMachine.TestCase
TestLinkPair.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
