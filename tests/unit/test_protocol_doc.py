"""The byte examples of docs/protocol.md, checked both ways."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from linkserver.protocol import oob
from linkserver.protocol.framing import FrameKind, FrameParser, encode_frame
from linkserver.protocol.handshake import (
    NOT_LINKSERVER_LINE,
    ClientHello,
    HelloStatus,
    LinkMode,
    ServerHello,
    client_proof,
    server_proof,
)
from linkserver import wxf
from wolframclient.language import wl

DOC = Path(__file__).parents[2] / "docs" / "protocol.md"
TEXT = DOC.read_text(encoding="utf-8")
EXAMPLES = {
    name: bytes.fromhex(body)
    for name, body in re.findall(r"```hex ([\w-]+)\n(.*?)```", TEXT, flags=re.S)
}

LINK_ID = bytes.fromhex("00112233445566778899aabbccddeeff")

EXPECTED = {
    "client-hello": ClientHello().encode(),
    "client-hello-direct": ClientHello(mode=LinkMode.DIRECT).encode(),
    "client-hello-key": ClientHello(flags=1).encode(),
    "server-hello-challenge": ServerHello(LINK_ID, flags=1).encode(),
    "auth-client-proof": client_proof(b"k" * 32, bytes(range(32)), bytes(range(32, 64)), LINK_ID),
    "auth-server-proof": server_proof(b"k" * 32, bytes(range(32)), bytes(range(32, 64)), LINK_ID),
    "server-hello": ServerHello(bytes.fromhex("00112233445566778899aabbccddeeff")).encode(),
    "server-hello-refusal": ServerHello(bytes(16), HelloStatus.UNSUPPORTED_VERSION).encode(),
    "expression-hello": encode_frame(
        FrameKind.EXPRESSION, wxf.dumps(wl.Print("Hello client program."))
    ),
    "ping": encode_frame(FrameKind.PING, b"hi"),
    "pong": encode_frame(FrameKind.PONG, b"hi"),
    "message-abort": encode_frame(FrameKind.MESSAGE, oob.encode_message(oob.UrgentMessage.ABORT)),
    "close-normal": encode_frame(FrameKind.CLOSE, oob.encode_close(oob.CloseCode.NORMAL)),
    "close-going-away": encode_frame(FrameKind.CLOSE, oob.encode_close(oob.CloseCode.GOING_AWAY, "bye")),
}


def test_every_example_is_checked() -> None:
    assert set(EXAMPLES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_code_produces_the_documented_bytes(name: str) -> None:
    assert EXPECTED[name] == EXAMPLES[name]


def test_hellos_parse_back() -> None:
    assert ClientHello.decode(EXAMPLES["client-hello"]) == ClientHello()
    hello = ServerHello.decode(EXAMPLES["server-hello"])
    assert hello.link_id.hex() == "00112233445566778899aabbccddeeff"
    assert ServerHello.decode(EXAMPLES["server-hello-refusal"]).status is HelloStatus.UNSUPPORTED_VERSION
    assert ClientHello.decode(EXAMPLES["client-hello-key"]).flags == 1
    assert ServerHello.decode(EXAMPLES["server-hello-challenge"]).flags == 1


@pytest.mark.parametrize(
    "name",
    [n for n in EXPECTED if ("hello" not in n or n == "expression-hello") and "proof" not in n],
)
def test_documented_frames_parse_back(name: str) -> None:
    parser = FrameParser()
    parser.feed(EXAMPLES[name])
    frame = parser.next_frame()
    assert frame is not None and parser.buffered == 0
    kind, payload = frame
    if kind is FrameKind.EXPRESSION:
        assert wxf.loads(payload) == wl.Print("Hello client program.")
    elif kind is FrameKind.MESSAGE:
        assert oob.decode_message(payload) == (oob.UrgentMessage.ABORT, 0)
    elif kind is FrameKind.CLOSE:
        code, _reason = oob.decode_close(payload)
        assert code in (oob.CloseCode.NORMAL, oob.CloseCode.GOING_AWAY)


def test_stranger_line_is_documented() -> None:
    line = NOT_LINKSERVER_LINE.decode("ascii").rstrip("\r\n")
    assert line in TEXT
