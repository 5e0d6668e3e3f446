"""Key authentication in the sans-I/O handshake (docs/protocol.md §3.5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkserver.errors import AuthenticationError, LocalProtocolError, VersionError
from linkserver.protocol import CloseCode, Connection, HandshakeComplete, Side, State
from linkserver.protocol import oob
from linkserver.protocol.framing import FrameKind, FrameParser
from linkserver.protocol.handshake import (
    CLIENT_HELLO,
    SERVER_HELLO,
    ClientHello,
    HelloStatus,
    ServerHello,
    client_proof,
    server_proof,
)

LINK_ID = bytes(range(16))
KEY = b"k" * 32
SERVER_NONCE = bytes(range(100, 132))
CLIENT_NONCE = bytes(range(200, 232))


def server(keys: tuple[tuple[str, bytes], ...] = (("admin", KEY),), nonce: bytes = SERVER_NONCE) -> Connection:
    return Connection(Side.SERVER, link_id=LINK_ID, keys=keys, nonce=nonce)


def client(key: bytes | None = KEY, nonce: bytes = CLIENT_NONCE) -> Connection:
    return Connection(Side.CLIENT, key=key, nonce=nonce)


def pump(a: Connection, b: Connection, rounds: int = 4) -> None:
    """Exchange bytes both ways until both are quiet."""
    for _ in range(rounds):
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())


def close_frame(data: bytes) -> tuple[int, str]:
    parser = FrameParser(1 << 20)
    parser.feed(data)
    frame = parser.next_frame()
    assert frame is not None and frame[0] is FrameKind.CLOSE
    code, reason = oob.decode_close(frame[1])
    return int(code), reason


def test_matching_keys_open_both_sides_and_give_the_role() -> None:
    s = server(keys=(("user", b"u" * 32), ("admin", KEY)))
    c = client()
    pump(c, s)
    assert c.state is State.OPEN and s.state is State.OPEN
    assert s.role == "admin"
    assert [type(e) for e in c.events_received()] == [HandshakeComplete]
    assert [type(e) for e in s.events_received()] == [HandshakeComplete]
    assert c.link_id == LINK_ID


def test_the_key_never_crosses_the_wire() -> None:
    s, c = server(), client()
    wire = bytearray()
    for _ in range(4):
        data = c.data_to_send()
        wire += data
        s.receive_data(data)
        data = s.data_to_send()
        wire += data
        c.receive_data(data)
    assert s.state is State.OPEN
    assert KEY not in wire and KEY[:8] not in wire


def test_wire_bytes_are_as_documented() -> None:
    s, c = server(), client()
    hello = c.data_to_send()
    assert hello == ClientHello(flags=1).encode()
    s.receive_data(hello)
    answer = s.data_to_send()
    assert answer == ServerHello(LINK_ID, flags=1).encode() + SERVER_NONCE
    c.receive_data(answer)
    proof = c.data_to_send()
    assert proof == CLIENT_NONCE + client_proof(KEY, SERVER_NONCE, CLIENT_NONCE, LINK_ID)
    s.receive_data(proof)
    verdict = s.data_to_send()
    assert verdict == b"\x00" + server_proof(KEY, SERVER_NONCE, CLIENT_NONCE, LINK_ID)
    assert client_proof(KEY, SERVER_NONCE, CLIENT_NONCE, LINK_ID) != server_proof(
        KEY, SERVER_NONCE, CLIENT_NONCE, LINK_ID
    )


def test_wrong_key_fails_both_sides_with_a_clear_reason() -> None:
    s, c = server(), client(key=b"w" * 32)
    pump(c, s)
    assert s.state is State.ERROR and c.state is State.ERROR
    assert isinstance(s.error, AuthenticationError)
    assert isinstance(c.error, AuthenticationError)
    assert "key is wrong" in c.error.message


def test_a_client_without_a_key_is_refused_with_auth_failed() -> None:
    s, c = server(), Connection(Side.CLIENT)
    c_hello = c.data_to_send()
    s.receive_data(c_hello)
    answer = s.data_to_send()
    status = ServerHello.decode(answer[: SERVER_HELLO.size]).status
    assert status is HelloStatus.AUTH_REQUIRED
    code, reason = close_frame(answer[SERVER_HELLO.size :])
    assert code == CloseCode.AUTH_FAILED and "requires a key" in reason
    c.receive_data(answer)
    assert isinstance(c.error, AuthenticationError)
    assert "requires a key" in c.error.message
    assert isinstance(s.error, AuthenticationError)


def test_a_client_with_a_key_refuses_a_server_that_does_not_ask() -> None:
    s = Connection(Side.SERVER, link_id=LINK_ID)
    c = client()
    pump(c, s)
    assert isinstance(c.error, AuthenticationError)
    assert "did not ask" in c.error.message


def test_a_replayed_proof_fails_against_a_fresh_nonce() -> None:
    first_server, first_client = server(), client()
    first_server.receive_data(first_client.data_to_send())
    first_client.receive_data(first_server.data_to_send())
    recorded = ClientHello(flags=1).encode() + first_client.data_to_send()
    # An eavesdropper replays the whole recorded client side to a new challenge.
    replay = server(nonce=bytes(32))
    replay.receive_data(recorded)
    assert replay.state is State.ERROR
    assert isinstance(replay.error, AuthenticationError)


def test_a_fake_server_without_the_key_is_caught_by_the_client() -> None:
    c = client()
    c.receive_data(ServerHello(LINK_ID, flags=1).encode() + SERVER_NONCE)
    c.data_to_send()
    c.receive_data(b"\x00" + bytes(32))
    assert isinstance(c.error, AuthenticationError)
    assert "could not prove" in c.error.message


def test_frames_after_the_proof_in_the_same_chunk_are_kept() -> None:
    s, c = server(), client()
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    proof = c.data_to_send()
    from linkserver.protocol.framing import encode_frame

    s.receive_data(proof + encode_frame(FrameKind.EXPRESSION, b"8:C\x05"))
    kinds = [type(e).__name__ for e in s.events_received()]
    assert kinds == ["HandshakeComplete", "ExpressionReceived"]


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_any_split_of_the_auth_exchange_opens(sizes: list[int]) -> None:
    s, c = server(), client()
    to_server = c.data_to_send()
    for chunk in _split(to_server, sizes):
        s.receive_data(chunk)
    to_client = s.data_to_send()
    for chunk in _split(to_client, sizes):
        c.receive_data(chunk)
    to_server = c.data_to_send()
    for chunk in _split(to_server, sizes):
        s.receive_data(chunk)
    for chunk in _split(s.data_to_send(), sizes):
        c.receive_data(chunk)
    assert s.state is State.OPEN and c.state is State.OPEN


def _split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i : i + n])
        i += n
        k += 1
    return out


def test_eof_while_challenged_is_an_auth_failure() -> None:
    s = server()
    s.receive_data(ClientHello(flags=1).encode())
    s.receive_eof()
    assert isinstance(s.error, AuthenticationError)


def test_keys_need_a_nonce_and_must_not_be_empty() -> None:
    with pytest.raises(LocalProtocolError, match="nonce"):
        Connection(Side.SERVER, link_id=LINK_ID, keys=(("admin", KEY),))
    with pytest.raises(LocalProtocolError, match="empty"):
        Connection(Side.CLIENT, key=b"", nonce=CLIENT_NONCE)


def test_old_client_hello_without_flags_gets_the_refusal_it_understands() -> None:
    # A protocol 1.0 client reads a non-OK status and then the CLOSE reason.
    s = server()
    s.receive_data(ClientHello(version=(1, 0)).encode())
    answer = s.data_to_send()
    assert answer[: CLIENT_HELLO.size - 4][:8] == answer[:8]
    assert ServerHello.decode(answer[: SERVER_HELLO.size]).status is HelloStatus.AUTH_REQUIRED
    assert not isinstance(s.error, VersionError)
