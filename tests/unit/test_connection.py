"""The sans-I/O Connection: handshake, frames, messages, close, limits, state table."""

from __future__ import annotations

import pytest

from linkserver.errors import (
    LimitError,
    LinkBroken,
    LinkClosed,
    LinkTimeout,
    LocalProtocolError,
    NotALinkServerError,
    RemoteProtocolError,
    VersionError,
)
from linkserver.protocol import (
    CloseCode,
    CloseReceived,
    Connection,
    ConnectionFailed,
    ExpressionReceived,
    HandshakeComplete,
    LinkMode,
    MessageReceived,
    PongReceived,
    Side,
    State,
    UrgentMessage,
)
from linkserver.protocol import oob
from linkserver.protocol.connection import _TRANSITIONS, _In
from linkserver.protocol.framing import FrameKind, encode_frame
from linkserver.protocol.handshake import MAGIC, NOT_LINKSERVER_LINE, VERSION, ClientHello

LINK_ID = bytes(range(16))


def server(**kwargs: object) -> Connection:
    return Connection(Side.SERVER, link_id=LINK_ID, **kwargs)  # type: ignore[arg-type]


def client(**kwargs: object) -> Connection:
    return Connection(Side.CLIENT, **kwargs)  # type: ignore[arg-type]


def transfer(src: Connection, dst: Connection) -> list[object]:
    """Move src's pending bytes to dst; return dst's events."""
    dst.receive_data(src.data_to_send())
    return list(dst.events_received())


def open_pair(**kwargs: object) -> tuple[Connection, Connection]:
    c, s = client(**kwargs), server(**kwargs)
    assert transfer(c, s) == [HandshakeComplete(LINK_ID, LinkMode.LINKSERVER, VERSION)]
    assert transfer(s, c) == [HandshakeComplete(LINK_ID, LinkMode.LINKSERVER, VERSION)]
    return c, s


def test_handshake_opens_both_sides() -> None:
    c, s = open_pair()
    assert c.state is State.OPEN and s.state is State.OPEN
    assert c.link_id == LINK_ID


@pytest.mark.parametrize("mode", list(LinkMode))
def test_server_accepts_every_link_mode(mode: LinkMode) -> None:
    # The LinkOptions -> 4 trap: a "plain" client is accepted, never left waiting.
    c, s = client(mode=mode), server()
    events = transfer(c, s)
    assert events == [HandshakeComplete(LINK_ID, mode, VERSION)]
    assert s.mode is mode


def test_expressions_flow_both_ways_in_order() -> None:
    c, s = open_pair()
    for i in range(3):
        c.send_expression(b"8:C" + bytes([i]))
    assert transfer(c, s) == [ExpressionReceived(b"8:C" + bytes([i])) for i in range(3)]
    s.send_expression(b"8:S\x00")
    assert transfer(s, c) == [ExpressionReceived(b"8:S\x00")]


def test_client_may_pipeline_frames_after_its_hello() -> None:
    c, s = client(), server()
    hello = c.data_to_send()
    frame = encode_frame(FrameKind.EXPRESSION, b"8:C\x01")
    s.receive_data(hello + frame)
    assert s.events_received()[1:] == [ExpressionReceived(b"8:C\x01")]


def test_urgent_message_overtakes_queued_expressions() -> None:
    c, s = open_pair()
    c.send_expression(b"8:C\x01")
    c.send_message(UrgentMessage.ABORT)
    events = transfer(c, s)
    assert events == [MessageReceived(UrgentMessage.ABORT, 0), ExpressionReceived(b"8:C\x01")]


def test_unknown_message_code_is_delivered_as_number() -> None:
    c, s = open_pair()
    c.send_message(200, 7)
    assert transfer(c, s) == [MessageReceived(200, 7)]


def test_ping_is_answered_with_pong() -> None:
    c, s = open_pair()
    c.send_ping(b"hi")
    assert transfer(c, s) == []
    assert transfer(s, c) == [PongReceived(b"hi")]


def test_ping_payload_limit_both_ways() -> None:
    c, s = open_pair()
    with pytest.raises(LocalProtocolError):
        c.send_ping(b"x" * 126)
    s.receive_data(encode_frame(FrameKind.PING, b"x" * 126))
    (event,) = s.events_received()
    assert isinstance(event, ConnectionFailed) and s.state is State.ERROR


def test_close_handshake() -> None:
    c, s = open_pair()
    c.send_close(CloseCode.NORMAL, "done")
    assert c.state is State.CLOSING
    assert transfer(c, s) == [CloseReceived(CloseCode.NORMAL, "done")]
    assert s.state is State.CLOSED and s.should_close
    assert transfer(s, c) == [CloseReceived(CloseCode.NORMAL, "")]
    assert c.state is State.CLOSED and c.should_close


def test_frames_in_flight_after_our_close_are_delivered() -> None:
    c, s = open_pair()
    s.send_expression(b"8:late")
    c.send_close()
    assert transfer(s, c) == [ExpressionReceived(b"8:late")]
    assert c.state is State.CLOSING


def test_send_after_close_raises_link_closed_and_changes_nothing() -> None:
    c, _ = open_pair()
    c.send_close()
    with pytest.raises(LinkClosed):
        c.send_expression(b"8:x")
    with pytest.raises(LinkClosed):
        c.send_message(UrgentMessage.ABORT)
    assert c.state is State.CLOSING


def test_send_before_handshake_is_a_local_error() -> None:
    c = client()
    with pytest.raises(LocalProtocolError):
        c.send_expression(b"8:x")
    assert c.state is State.HELLO


def test_send_close_before_handshake_just_ends() -> None:
    c = client()
    c.send_close()
    assert c.should_close
    assert isinstance(c.error, LinkClosed)


def test_eof_while_open_is_a_broken_link() -> None:
    c, s = open_pair()
    s.receive_eof()
    (event,) = s.events_received()
    assert isinstance(event, ConnectionFailed) and isinstance(event.error, LinkBroken)
    assert s.state is State.ERROR


def test_eof_during_handshake() -> None:
    s = server()
    s.receive_data(MAGIC[:3])
    s.receive_eof()
    (event,) = s.events_received()
    assert isinstance(event, ConnectionFailed) and isinstance(event.error, LinkBroken)


def test_stranger_gets_one_line_at_first_wrong_byte() -> None:
    s = server()
    s.receive_data(b"G")
    assert s.data_to_send() == NOT_LINKSERVER_LINE
    (event,) = s.events_received()
    assert isinstance(event, ConnectionFailed)
    assert event.error.code == "not-linkserver"
    assert s.should_close
    s.receive_data(b"ET / HTTP/1.1\r\n")  # ignored once failed
    assert s.data_to_send() == b"" and s.events_received() == []


def test_client_reports_what_a_stranger_answered() -> None:
    c = client()
    c.data_to_send()
    c.receive_data(b"HTTP/1.1 400 Bad")
    assert c.state is State.HELLO  # waits for the end of the line
    c.receive_data(b" Request\r\nmore")
    (event,) = c.events_received()
    assert isinstance(event, ConnectionFailed)
    assert isinstance(event.error, NotALinkServerError)
    assert "HTTP/1.1 400 Bad Request" in str(event.error)


def test_client_reports_stranger_on_eof() -> None:
    c = client()
    c.receive_data(b"SSH-2.0")
    c.receive_eof()
    (event,) = c.events_received()
    assert isinstance(event, ConnectionFailed) and isinstance(event.error, NotALinkServerError)


def test_unknown_link_mode_is_rejected_with_a_line() -> None:
    s = server()
    s.receive_data(MAGIC + bytes([1, 0, 9, 0]))
    assert s.data_to_send().startswith(b"linkserver: ")
    (event,) = s.events_received()
    assert isinstance(event, ConnectionFailed) and isinstance(event.error, RemoteProtocolError)


def test_version_mismatch_is_refused_with_reason() -> None:
    s = server()
    s.receive_data(ClientHello(version=(2, 0)).encode())
    (event,) = s.events_received()
    assert isinstance(event, ConnectionFailed) and isinstance(event.error, VersionError)
    reply = s.data_to_send()
    c = client()
    c.data_to_send()
    c.receive_data(reply)
    (event,) = c.events_received()
    assert isinstance(event.error, VersionError)  # type: ignore[union-attr]
    assert "protocol 1.1" in str(event.error)  # type: ignore[union-attr]


def test_client_refuses_server_of_other_major_version() -> None:
    c = client()
    c.data_to_send()
    reply = bytearray(server().data_to_send() or b"")
    s = server()
    s.receive_data(ClientHello().encode())
    reply = bytearray(s.data_to_send())
    reply[8] = 9
    c.receive_data(bytes(reply))
    (event,) = c.events_received()
    assert isinstance(event, ConnectionFailed) and isinstance(event.error, VersionError)


def test_frame_too_large_is_refused_from_its_header() -> None:
    c, s = open_pair(max_frame_size=1000)
    # Declares 4 GiB - 1; only the header arrives.
    s.receive_data(bytes([FrameKind.EXPRESSION]) + (2**32 - 1).to_bytes(4, "little"))
    (event,) = s.events_received()
    assert isinstance(event, ConnectionFailed) and isinstance(event.error, LimitError)
    close = s.data_to_send()
    assert close[0] == FrameKind.CLOSE
    assert oob.decode_close(close[5:])[0] is CloseCode.FRAME_TOO_LARGE


def test_sending_frame_above_limit_is_refused_locally() -> None:
    c, _ = open_pair(max_frame_size=10)
    with pytest.raises(LimitError):
        c.send_expression(b"x" * 11)
    assert c.state is State.OPEN


def test_unknown_frame_kind_is_a_protocol_error() -> None:
    _, s = open_pair()
    s.receive_data(b"\x7f\x00\x00\x00\x00")
    (event,) = s.events_received()
    assert isinstance(event.error, RemoteProtocolError)  # type: ignore[union-attr]
    assert oob.decode_close(s.data_to_send()[5:])[0] is CloseCode.PROTOCOL_ERROR


def test_bad_message_payload_is_a_protocol_error() -> None:
    _, s = open_pair()
    s.receive_data(encode_frame(FrameKind.MESSAGE, b"\x01\x02"))
    (event,) = s.events_received()
    assert isinstance(event, ConnectionFailed)


def test_handshake_timeout_server_sends_line() -> None:
    s = server(now=100.0, handshake_timeout=5.0)
    assert s.check_timers(101.0) == 105.0
    s.receive_data(MAGIC[:2])  # a trickle does not extend the limit
    assert s.check_timers(105.0) is None
    assert s.data_to_send().startswith(b"linkserver: no handshake within 5 s")
    (event,) = s.events_received()
    assert isinstance(event.error, LinkTimeout)  # type: ignore[union-attr]


def test_handshake_timeout_client() -> None:
    c = client(now=0.0, handshake_timeout=1.0)
    c.check_timers(1.0)
    (event,) = c.events_received()
    assert isinstance(event.error, LinkTimeout)  # type: ignore[union-attr]


def test_idle_timeout_closes_with_code() -> None:
    c, s = open_pair(now=0.0, idle_timeout=10.0)
    assert s.check_timers(0.0) == 10.0  # the handshake bytes count as activity at 0
    assert s.check_timers(5.0) == 10.0
    c.send_ping()
    transfer(c, s)
    assert s.data_to_send() == encode_frame(FrameKind.PONG, b"")
    assert s.check_timers(9.0) == 19.0  # activity seen: the deadline moved
    assert s.check_timers(19.0) is None
    (event,) = s.events_received()
    assert isinstance(event.error, LinkTimeout)  # type: ignore[union-attr]
    assert oob.decode_close(s.data_to_send()[5:])[0] is CloseCode.IDLE_TIMEOUT


def test_keepalive_pings_after_silence() -> None:
    c, s = open_pair(now=0.0, idle_timeout=None, keepalive_interval=30.0)
    assert c.check_timers(10.0) == 30.0
    assert c.check_timers(30.0) == 60.0
    assert c.data_to_send() == encode_frame(FrameKind.PING, b"")


def test_close_timeout_ends_closing() -> None:
    c, _ = open_pair()
    c.send_close(now=0.0)
    assert c.check_timers(1.0) == 10.0
    c.check_timers(10.0)
    assert c.state is State.CLOSED


def test_server_requires_link_id() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(Side.SERVER)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("what", [i for i in _In if i.name.startswith("SEND")])
def test_every_send_in_every_state_is_valid_or_refused(state: State, what: _In) -> None:
    c, _ = open_pair()
    c.state = state
    senders = {
        _In.SEND_EXPRESSION: lambda: c.send_expression(b"8:x"),
        _In.SEND_MESSAGE: lambda: c.send_message(UrgentMessage.ABORT),
        _In.SEND_PING: lambda: c.send_ping(),
        _In.SEND_CLOSE: lambda: c.send_close(),
    }
    allowed = (state, what) in _TRANSITIONS
    if allowed:
        senders[what]()
        assert c.state is _TRANSITIONS[(state, what)]
    elif what is _In.SEND_CLOSE:
        senders[what]()  # closing is always allowed and idempotent
        assert c.state in (State.ERROR, State.CLOSED, State.CLOSING)
    else:
        with pytest.raises((LinkClosed, LocalProtocolError)):
            senders[what]()
        assert c.state is state
