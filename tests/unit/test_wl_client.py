"""The Wolfram Language client, wl/LinkServerClient.wl, checked without a Wolfram kernel.

No Wolfram kernel runs here, so (docs/wl-client.md, "What was verified how"):

* the package is loaded into one Mathics3 session that has linkserver's own
  Wolfram Language built-ins (:mod:`linkserver.kernel.wl_builtins`: sockets,
  ``BinarySerialize``, ``BitXor``, ...), as every linkserver kernel has them;
* each pure function of the wire format -- the bytes of the handshake, the frames, the
  HMAC proofs, the address parser -- is evaluated in that session and its bytes are
  compared with what the Python implementation (``linkserver.protocol``) makes;
  ``hmacSHA256`` is also checked by a Python model written line by line after the WL code;
* the socket code runs against scripted bytes: rules for the address 31415@127.0.0.1
  stand in front of ``SocketConnect``, ``BinaryWrite`` to a socket, ``SocketReadyQ`` and
  ``SocketReadMessage``, record what is written and hand out server bytes 7 at a time;
  every other address gets the real built-ins, which talk to a real ``linkserver.LinkServer``;
* ``BinarySerialize`` of the packets the package sends is compared with wolframclient's
  serializer (Wolfram's own Python twin of ``BinarySerialize``).

Kernel to kernel, with no stand-ins at all, is tests/integration/test_wl_client_kernels.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mathics")

from wolframclient.language import wl  # noqa: E402
from wolframclient.language.expression import WLSymbol  # noqa: E402
from wolframclient.serializers import export  # noqa: E402

from linkserver import wxf  # noqa: E402
from linkserver.names import parse_name  # noqa: E402
from linkserver.protocol.framing import FrameKind, encode_frame  # noqa: E402
from linkserver.protocol.handshake import (  # noqa: E402
    ClientHello,
    HelloStatus,
    ServerHello,
    client_proof,
    server_proof,
)
from linkserver.protocol.oob import CloseCode, UrgentMessage, encode_close, encode_message  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "wl" / "LinkServerClient.wl"
DOC = ROOT / "docs" / "wl-client.md"
PROTOCOL = ROOT / "docs" / "protocol.md"
PRIVATE = "LinkServerClient`Private`"

PUBLIC = {"LinkServerConnect", "LinkServerEvaluate", "LinkServerAbort", "LinkServerClose",
          "LinkServerConnection"}

#: System symbols of the Wolfram Language the package uses that Mathics3 does not define
#: (linkserver's built-ins define them all; any still missing is made as in Mathematica).
#: A capitalised private name without a definition would be a typo.
WL_ONLY = {
    "AbortProtect", "BinaryDeserialize", "BinarySerialize", "ByteArrayQ", "EnterTextPacket",
    "EvaluatePacket", "InputPacket", "InputStringPacket", "MessagePacket", "ReturnPacket",
    "SocketConnect", "SocketObject", "SocketReadMessage", "SocketReadyQ", "TextPacket",
}


class WL:
    """One Mathics3 session with the package loaded."""

    def __init__(self) -> None:
        from mathics.core.load_builtin import import_and_load_builtins, mathics3_builtins_modules
        from mathics.session import MathicsSession

        from linkserver.kernel import wl_builtins

        if not mathics3_builtins_modules:
            import_and_load_builtins()
        self.session = MathicsSession(catch_interrupt=False)
        wl_builtins.contribute(self.session.definitions)  # what every linkserver kernel has
        # System symbols of the Wolfram Language that Mathics3 lacks: made in System`, as
        # they are in Mathematica, so the package refers to them and not to its own.
        self.missing = {n for n in WL_ONLY if self.value(f'Names["System`{n}"]') == []}
        self.session.evaluate("; ".join(f"System`{n}" for n in sorted(self.missing)))
        self.session.evaluate(f'Get["{PACKAGE}"]')
        self.load_messages = [getattr(o, "text", str(o)) for o in self.session.evaluation.out]

    def expr(self, text: str) -> Any:
        result = self.session.evaluate(text)
        messages = [getattr(o, "text", str(o)) for o in self.session.evaluation.out]
        assert not messages, f"{text}: {messages}"
        return result

    def value(self, text: str) -> Any:
        from linkserver.kernel.mathics_exprs import from_mathics

        return lists(from_mathics(self.expr(text)))

    def call(self, name: str, *args: Any) -> Any:
        """Evaluate ``LinkServerClient`Private`name[args]``; bytes go in as lists."""
        return self.value(f"{PRIVATE}{name}[{', '.join(wl_form(a) for a in args)}]")


def lists(x: Any) -> Any:
    """Mathics3 gives lists as tuples; make them lists, inside dicts too."""
    if isinstance(x, tuple | list):
        return [lists(v) for v in x]
    if isinstance(x, dict):
        return {k: lists(v) for k, v in x.items()}
    if isinstance(x, WLSymbol):
        return x.name.rpartition("`")[2]
    return x


def wl_form(x: Any) -> str:
    if isinstance(x, bytes | bytearray):
        return "{" + ",".join(str(b) for b in x) + "}"
    if isinstance(x, bool):
        return "True" if x else "False"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, str):
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if x is None:
        return "None"
    raise TypeError(x)


@pytest.fixture(scope="module")
def session() -> WL:
    return WL()


def as_bytes(value: Any) -> bytes:
    assert isinstance(value, list), value
    return bytes(value)


def hex_block(path: Path, label: str) -> bytes:
    match = re.search(rf"```hex {re.escape(label)}\n(.*?)```", path.read_text(), re.S)
    assert match, f"no hex block {label} in {path.name}"
    return bytes.fromhex(match.group(1))


# ---------------------------------------------------------------- (1) the package loads


def test_package_parses_and_loads(session: WL) -> None:
    from mathics.core.parser import MathicsMultiLineFeeder, parse

    feeder = MathicsMultiLineFeeder(PACKAGE.read_text(), "LinkServerClient.wl")
    count = 0
    while not feeder.empty():
        if parse(session.session.definitions, feeder) is not None:
            count += 1
    assert count > 50
    assert session.load_messages == []
    assert set(session.value('Names["LinkServerClient`*"]')) == PUBLIC
    for name in PUBLIC:
        assert isinstance(session.value(f"{name}::usage"), str)
    assert session.value("$Context") == "Global`"


def test_no_undefined_names(session: WL) -> None:
    """Every capitalised private name is defined by the package or is a WL-only built-in."""
    names = session.value(f'Names["{PRIVATE}*"]')
    undefined = {
        n for n in names
        if n[:1].isupper()
        and not session.value(
            f"Length[DownValues[{PRIVATE}{n}]] + Length[OwnValues[{PRIVATE}{n}]]"
        )
    }
    assert not undefined, undefined
    for name in ("frame", "clientHello", "clientProof", "serverProof", "hmacSHA256", "u32le",
                 "sha256", "closeFrame", "messageFrame", "parseServerHello", "parseAddress"):
        assert session.value(f"Length[DownValues[{PRIVATE}{name}]]") > 0, name


# ---------------------------------------------------------------- (2) pure functions


@pytest.mark.parametrize("n", [0, 1, 258, 0x01020304, 2**32 - 1])
def test_u32le(session: WL, n: int) -> None:
    assert as_bytes(session.call("u32le", n)) == struct.pack("<I", n)
    assert session.call("fromLE", struct.pack("<I", n)) == n


@pytest.mark.parametrize("flags", [0, 1])
def test_client_hello(session: WL, flags: int) -> None:
    assert as_bytes(session.call("clientHello", flags)) == ClientHello(flags=flags).encode()
    label = "client-hello-key" if flags else "client-hello"
    assert as_bytes(session.call("clientHello", flags)) == hex_block(PROTOCOL, label)


def test_parse_server_hello(session: WL) -> None:
    link_id = bytes.fromhex("00112233445566778899aabbccddeeff")
    data = ServerHello(link_id, HelloStatus.AUTH_REQUIRED, flags=1).encode()
    got = session.call("parseServerHello", data)
    assert got == {"Magic": True, "Major": 1, "Minor": 1, "Status": 2, "Flags": 1,
                   "LinkID": list(link_id)}
    assert session.call("hex", link_id) == link_id.hex()
    assert session.call("parseServerHello", b"HTTP/1.1 400 Bad Request\r\n12")["Magic"] is False


@pytest.mark.parametrize(
    ("kind", "payload"),
    [(FrameKind.EXPRESSION, b""), (FrameKind.EXPRESSION, bytes(range(256)) * 3),
     (FrameKind.PING, b"hi"), (FrameKind.PONG, b"hi")],
)
def test_frame(session: WL, kind: FrameKind, payload: bytes) -> None:
    assert as_bytes(session.call("frame", int(kind), payload)) == encode_frame(kind, payload)


def test_expression_frame_ping_pong(session: WL) -> None:
    hello = wxf.dumps(wl.Print("Hello client program."))
    assert as_bytes(session.call("expressionFrame", hello)) == hex_block(PROTOCOL, "expression-hello")
    assert as_bytes(session.call("pingFrame", b"hi")) == hex_block(PROTOCOL, "ping")
    assert as_bytes(session.call("pongFrame", b"hi")) == hex_block(PROTOCOL, "pong")


@pytest.mark.parametrize(("code", "arg"), [(UrgentMessage.ABORT, 0), (200, 7), (2**32 - 1, 2**32 - 1)])
def test_message_frame(session: WL, code: int, arg: int) -> None:
    expected = encode_frame(FrameKind.MESSAGE, encode_message(code, arg))
    args = (int(code),) if arg == 0 else (int(code), arg)
    assert as_bytes(session.call("messageFrame", *args)) == expected
    assert session.call("parseMessage", encode_message(code, arg)) == [code, arg]
    if code == UrgentMessage.ABORT:
        assert as_bytes(session.call("messageFrame", 3)) == hex_block(PROTOCOL, "message-abort")


@pytest.mark.parametrize(
    ("code", "reason"),
    [(CloseCode.NORMAL, ""), (CloseCode.GOING_AWAY, "bye"), (CloseCode.PROTOCOL_ERROR, "é€𝄞"),
     (CloseCode.NORMAL, "é" * 600), (CloseCode.NORMAL, "a" + "é" * 600),
     (CloseCode.NORMAL, "ab" + "€" * 400), (CloseCode.NORMAL, "a" + "𝄞" * 300),
     (CloseCode.NORMAL, "x" * 1024), (CloseCode.NORMAL, "x" * 1025)],
)
def test_close_frame(session: WL, code: int, reason: str) -> None:
    expected = encode_frame(FrameKind.CLOSE, encode_close(code, reason))
    args = (int(code),) if reason == "" else (int(code), reason)
    assert as_bytes(session.call("closeFrame", *args)) == expected
    assert session.call("parseClose", encode_close(code, reason)) == [
        code, encode_close(code, reason)[2:].decode("utf-8")]


def test_close_frame_doc_examples(session: WL) -> None:
    assert as_bytes(session.call("closeFrame", 0)) == hex_block(PROTOCOL, "close-normal")
    assert as_bytes(session.call("closeFrame", 1, "bye")) == hex_block(PROTOCOL, "close-going-away")


def test_frame_header(session: WL) -> None:
    header = encode_frame(FrameKind.EXPRESSION, b"x" * 300)[:5]
    assert session.call("parseFrameHeader", header) == [1, 300]


def _leading_zero_input() -> bytes:
    """An input whose SHA-256 starts with a zero byte: IntegerDigits must keep it."""
    for i in range(100_000):
        data = str(i).encode()
        if hashlib.sha256(data).digest()[0] == 0:
            return data
    raise AssertionError


@pytest.mark.parametrize("data", [b"abc", b"\x00" * 64, bytes(range(256)), _leading_zero_input()])
def test_sha256(session: WL, data: bytes) -> None:
    assert as_bytes(session.call("sha256", data)) == hashlib.sha256(data).digest()


HMAC_CASES = [
    (b"key", b"The quick brown fox jumps over the lazy dog"),
    (b"\x0b" * 20, b"Hi There"),  # RFC 4231 test case 1
    (b"k" * 64, b"exactly one block of key"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),  # RFC 4231 case 6
]


@pytest.mark.parametrize(("key", "msg"), HMAC_CASES)
def test_hmac_sha256(session: WL, key: bytes, msg: bytes) -> None:
    """Run in Mathics3 (with linkserver's BitXor) against Python's hmac."""
    expected = hmac.new(key, msg, hashlib.sha256).digest()
    assert as_bytes(session.call("hmacSHA256", key, msg)) == expected


def wl_hmac_model(key: bytes, msg: bytes) -> bytes:
    """hmacSHA256 of wl/LinkServerClient.wl, line by line, with Python's own xor."""

    def sha256(b: list[int]) -> list[int]:  # IntegerDigits[Hash[ByteArray[b], "SHA256"], 256, 32]
        return list(int(hashlib.sha256(bytes(b)).hexdigest(), 16).to_bytes(32, "big"))

    k = list(key)
    if len(k) > 64:  # If[Length[k] > 64, k = sha256[k]]
        k = sha256(k)
    k = k + [0] * (64 - len(k))  # PadRight[k, 64]
    # sha256[Join[BitXor[k, 92], sha256[Join[BitXor[k, 54], msg]]]]
    return bytes(sha256([b ^ 92 for b in k] + sha256([b ^ 54 for b in k] + list(msg))))


@pytest.mark.parametrize(("key", "msg"), HMAC_CASES)
def test_hmac_python_model(key: bytes, msg: bytes) -> None:
    assert wl_hmac_model(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


# The worked example of docs/protocol.md §3.5.
KEY = "k" * 32
SERVER_NONCE = bytes(range(32))
CLIENT_NONCE = bytes(range(32, 64))
LINK_ID = bytes.fromhex("00112233445566778899aabbccddeeff")


def test_proofs_worked_example(session: WL) -> None:
    args = (KEY, SERVER_NONCE, CLIENT_NONCE, LINK_ID)
    got_client = as_bytes(session.call("clientProof", *args))
    got_server = as_bytes(session.call("serverProof", *args))
    key = KEY.encode()
    assert got_client == client_proof(key, SERVER_NONCE, CLIENT_NONCE, LINK_ID)
    assert got_server == server_proof(key, SERVER_NONCE, CLIENT_NONCE, LINK_ID)
    assert got_client == hex_block(PROTOCOL, "auth-client-proof")
    assert got_server == hex_block(PROTOCOL, "auth-server-proof")
    hello = session.call("parseServerHello", hex_block(PROTOCOL, "server-hello-challenge"))
    assert hello["Flags"] == 1 and bytes(hello["LinkID"]) == LINK_ID


def test_proof_non_ascii_key(session: WL) -> None:
    key = "schlüssel-ключ-鍵-0123456789"
    got = as_bytes(session.call("clientProof", key, SERVER_NONCE, CLIENT_NONCE, LINK_ID))
    assert got == client_proof(key.encode("utf-8"), SERVER_NONCE, CLIENT_NONCE, LINK_ID)


def test_nonce(session: WL) -> None:
    nonce = session.call("newNonce")
    assert len(nonce) == 32 and all(0 <= b <= 255 for b in nonce)


@pytest.mark.parametrize(
    "name",
    ["31415@127.0.0.1", "8000@example.org", "31415@host/big", "8000", "@otherhost",
     "@otherhost/p", "31415@[::1]", "31415@[::1]/big", "31415@::1"],
)
def test_parse_address(session: WL, name: str) -> None:
    expected = parse_name(name)
    got = session.call("parseAddress", name)
    assert got == {"Host": expected.host, "Port": expected.port, "Pool": expected.pool or "None"}


@pytest.mark.parametrize("name", ["http://x", "99999@host", "abc@host"])
def test_parse_address_refuses(session: WL, name: str) -> None:
    assert session.call("parseAddress", name) == "$Failed"


def test_select_packet(session: WL) -> None:
    from linkserver.kernel.mathics_exprs import from_mathics

    assert session.value(f"{PRIVATE}selectPacket[Automatic, False, None]") == "None"
    expr = from_mathics(session.expr(f'{PRIVATE}selectPacket["big", True, "4f1c2a9b7e30"]'))
    assert expr.head.name.rpartition("`")[2] == "LinkServerSelect"
    assert expr.args == ({"pool": "big", "persistent": True, "kernel": "4f1c2a9b7e30"},)


# ---------------------------------------------------------------- the handshake, scripted

#: Rules in front of the socket built-ins for 31415@127.0.0.1 only: SocketConnect gives
#: SocketObject[1], whatever the package writes lands in fakeWritten, SocketReadMessage
#: hands out fakeToRead 7 bytes at a time (so reads are split), then EndOfFile. newNonce is
#: fixed to the §3.5 client nonce. Other addresses reach the real built-ins.
FAKE_SOCKET = f"""
{PRIVATE}newNonce[] := Range[32, 63];
Unprotect[SocketConnect, BinaryWrite, Close, ByteArrayQ, SocketReadyQ, SocketReadMessage];
SocketConnect[{{_String, 31415}}, "TCP"] := SocketObject[1];
BinaryWrite[SocketObject[1], b_] := (fakeWritten = Join[fakeWritten, Normal[b]]);
Close[SocketObject[1]] := (fakeClosed = True);
fakeBytes /: Length[fakeBytes[l_]] := Length[l];
fakeBytes /: Normal[fakeBytes[l_]] := l;
ByteArrayQ[fakeBytes[_]] := True;
SocketReadyQ[SocketObject[1], _] := True;
SocketReadMessage[SocketObject[1]] := If[fakeToRead === {{}}, EndOfFile,
  With[{{c = Take[fakeToRead, Min[7, Length[fakeToRead]]]}},
    fakeToRead = Drop[fakeToRead, Length[c]]; fakeBytes[c]]];
"""


@pytest.fixture(scope="module")
def scripted(session: WL) -> WL:
    session.expr(FAKE_SOCKET)
    return session


def connect(w: WL, server_bytes: bytes, options: str = "") -> tuple[Any, list[str], bytes]:
    w.expr(f"fakeWritten = {{}}; fakeClosed = False; fakeToRead = {wl_form(server_bytes)};")
    result = w.session.evaluate(f'conn = LinkServerConnect["31415@127.0.0.1"{options}]')
    messages = [getattr(o, "text", str(o)) for o in w.session.evaluation.out]
    return result, messages, bytes(w.value("fakeWritten"))


def test_scripted_handshake_with_key(scripted: WL) -> None:
    key = KEY.encode()
    server = (ServerHello(LINK_ID, flags=1).encode() + SERVER_NONCE + b"\x00"
              + server_proof(key, SERVER_NONCE, CLIENT_NONCE, LINK_ID))
    result, messages, wrote = connect(scripted, server, f', "Key" -> "{KEY}"')
    assert messages == []
    assert wrote == (ClientHello(flags=1).encode() + CLIENT_NONCE
                     + client_proof(key, SERVER_NONCE, CLIENT_NONCE, LINK_ID))
    assert scripted.value('conn["LinkID"]') == LINK_ID.hex()
    assert scripted.value('conn["Open"]') is True
    scripted.expr("fakeWritten = {}; LinkServerAbort[conn]")
    assert bytes(scripted.value("fakeWritten")) == hex_block(PROTOCOL, "message-abort")
    scripted.expr(f"fakeWritten = {{}}; fakeToRead = {wl_form(encode_frame(FrameKind.CLOSE, encode_close(0)))};")
    scripted.expr("LinkServerClose[conn]")
    assert bytes(scripted.value("fakeWritten")) == hex_block(PROTOCOL, "close-normal")
    assert scripted.value('conn["Open"]') is False and scripted.value("fakeClosed") is True


def test_scripted_handshake_without_key(scripted: WL) -> None:
    result, messages, wrote = connect(scripted, ServerHello(LINK_ID).encode())
    assert messages == [] and wrote == ClientHello().encode()
    assert scripted.value('conn["LinkID"]') == LINK_ID.hex()


def test_scripted_wrong_server_proof(scripted: WL) -> None:
    server = ServerHello(LINK_ID, flags=1).encode() + SERVER_NONCE + b"\x00" + bytes(32)
    result, messages, _ = connect(scripted, server, f', "Key" -> "{KEY}"')
    assert scripted.value("conn") == "$Failed"
    assert len(messages) == 1 and "proof is wrong" in messages[0]


def test_scripted_wrong_key(scripted: WL) -> None:
    close = encode_frame(FrameKind.CLOSE, encode_close(CloseCode.AUTH_FAILED, "wrong key"))
    server = ServerHello(LINK_ID, flags=1).encode() + SERVER_NONCE + b"\x01" + close
    result, messages, _ = connect(scripted, server, f', "Key" -> "{KEY}"')
    assert scripted.value("conn") == "$Failed"
    assert len(messages) == 1 and "Key authentication" in messages[0] and "wrong key" in messages[0]


def test_scripted_key_required(scripted: WL) -> None:
    close = encode_frame(FrameKind.CLOSE, encode_close(CloseCode.AUTH_FAILED, "this server needs a key"))
    server = ServerHello(bytes(16), HelloStatus.AUTH_REQUIRED).encode() + close
    result, messages, _ = connect(scripted, server)
    assert len(messages) == 1 and "needs a key: give" in messages[0] and "this server needs" in messages[0]


def test_scripted_server_without_challenge(scripted: WL) -> None:
    result, messages, _ = connect(scripted, ServerHello(LINK_ID).encode(), f', "Key" -> "{KEY}"')
    assert len(messages) == 1 and "did not ask for the key" in messages[0]


def test_scripted_stranger(scripted: WL) -> None:
    result, messages, _ = connect(scripted, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    assert messages == ["The peer at 31415@127.0.0.1 does not speak the linkserver protocol; "
                        "it said: HTTP/1.1 400 Bad Request"]


def test_scripted_tls(scripted: WL) -> None:
    result, messages, _ = connect(scripted, bytes.fromhex("15030300020250"))
    assert len(messages) == 1 and "speaks TLS" in messages[0]
    scripted.session.evaluate('LinkServerConnect[<|"address" -> "31415@h", "tls" -> True|>]')
    assert "speaks TLS" in scripted.session.evaluation.out[0].text


def expression_frames(data: bytes) -> list[Any]:
    """The frames in data: expressions decoded, other kinds as (kind, payload)."""
    out = []
    while data:
        kind, length = struct.unpack_from("<BI", data)
        payload, data = data[5:5 + length], data[5 + length:]
        out.append(wxf.loads(payload) if kind == FrameKind.EXPRESSION else (kind, payload))
    return out


def frames(*exprs: Any) -> bytes:
    return b"".join(
        e if isinstance(e, bytes) else encode_frame(FrameKind.EXPRESSION, wxf.dumps(e))
        for e in exprs
    )


def evaluate(w: WL, server_bytes: bytes, expr: str) -> tuple[Any, list[tuple[str, str]], list[Any]]:
    connect(w, ServerHello(LINK_ID).encode())
    w.expr(f"fakeWritten = {{}}; fakeToRead = {wl_form(server_bytes)};")
    result = from_mathics_value(w.session.evaluate(f"LinkServerEvaluate[conn, {expr}]"))
    out = [(type(o).__name__, getattr(o, "text", str(o))) for o in w.session.evaluation.out]
    return result, out, expression_frames(bytes(w.value("fakeWritten")))


def from_mathics_value(x: Any) -> Any:
    from linkserver.kernel.mathics_exprs import from_mathics

    return lists(from_mathics(x))


def test_scripted_evaluate(scripted: WL) -> None:
    server = frames(
        wl.TextPacket("side output"),
        encode_frame(FrameKind.PING, b"hi"),
        wl.MessagePacket(wl.Power, "infy"),
        wl.TextPacket("Power::infy: Infinite expression 1/0 encountered."),
        wl.ReturnPacket(wl.Plus(wl.Global.y, 1)),
    )
    result, out, written = evaluate(scripted, server, "x = 1 + 1")
    # the expression went unevaluated: Set[x, Plus[1, 1]], and x was not set here;
    # BinarySerialize writes x with its context, as the Wolfram Language does
    assert written[0] == wl.EvaluatePacket(wl.Set(wl.Global.x, wl.Plus(1, 1)))
    assert scripted.value("ValueQ[x]") is False
    assert written[1:] == [(FrameKind.PONG, b"hi")]
    assert out == [("Print", "side output"),
                   ("Message", "Power::infy: Infinite expression 1/0 encountered.")]
    assert result == wl.Plus(1, wl.y)


def test_scripted_evaluate_server_error(scripted: WL) -> None:
    server = frames(
        wl.MessagePacket(wl.LinkServer, "kerneldied"),
        wl.TextPacket("LinkServer::kerneldied: the kernel died"),
        wl.ReturnPacket(WLSymbol("$Failed")),
    )
    result, out, _ = evaluate(scripted, server, "1")
    assert out == [("Message", "LinkServer::kerneldied: the kernel died")]
    assert result == "$Failed"


def test_scripted_evaluate_close(scripted: WL) -> None:
    server = frames(encode_frame(FrameKind.CLOSE, encode_close(CloseCode.GOING_AWAY, "bye")))
    result, out, written = evaluate(scripted, server, "1")
    assert result == "$Failed"
    assert out == [("Message", "The server closed the link (GOING_AWAY): bye")]
    assert written[1:] == [(FrameKind.CLOSE, encode_close(CloseCode.NORMAL))]
    assert scripted.value('conn["Open"]') is False
    result = scripted.session.evaluate("LinkServerEvaluate[conn, 1]")
    assert "is closed" in scripted.session.evaluation.out[0].text


def test_scripted_evaluate_broken(scripted: WL) -> None:
    result, out, _ = evaluate(scripted, frames(wl.TextPacket("half")), "1")
    assert result == "$Failed"
    assert out == [("Print", "half"),
                   ("Message", "The connection to 31415@127.0.0.1 broke (end of stream without CLOSE).")]


def test_scripted_pool_selection(scripted: WL) -> None:
    answer = {"pool": "big", "mode": "pool", "kernel": "4f1c2a9b7e30", "persistent": True,
              "keepalive": 600.0}
    server = ServerHello(LINK_ID).encode() + frames(wl.ReturnPacket(answer))
    result, messages, wrote = connect(scripted, server, ', "Persistent" -> True')
    assert messages == []
    assert wrote[:12] == ClientHello().encode()
    # the pool came from nowhere: only "persistent" is sent
    (select,) = expression_frames(wrote[12:])
    assert select.head.name.rpartition("`")[2] == "LinkServerSelect"
    assert select.args == ({"persistent": True},)
    assert scripted.value('conn["Kernel"]') == "4f1c2a9b7e30"
    assert scripted.value('conn["Pool"]') == "big"


def test_scripted_pool_refused(scripted: WL) -> None:
    server = ServerHello(LINK_ID).encode() + frames(
        wl.MessagePacket(wl.LinkServer, "nopool"),
        wl.TextPacket("LinkServer::nopool: there is no pool 'big'"),
        wl.ReturnPacket(WLSymbol("$Failed")),
        encode_frame(FrameKind.CLOSE, encode_close(CloseCode.NORMAL)),
    )
    w = scripted
    w.expr(f"fakeWritten = {{}}; fakeClosed = False; fakeToRead = {wl_form(server)};")
    w.session.evaluate('conn = LinkServerConnect["31415@127.0.0.1/big"]')
    messages = [getattr(o, "text", str(o)) for o in w.session.evaluation.out]
    assert w.value("conn") == "$Failed"
    assert messages == [
        "LinkServer::nopool: there is no pool 'big'",
        "The server at 31415@127.0.0.1/big refused the pool selection: "
        "LinkServer::nopool: there is no pool 'big'",
    ]
    (select, close) = expression_frames(bytes(w.value("fakeWritten"))[12:])
    assert select.args == ({"pool": "big"},)
    assert close == (FrameKind.CLOSE, encode_close(CloseCode.NORMAL))


# ---------------------------------------------------------------- against a real LinkServer

@pytest.fixture(scope="module")
def tcp(scripted: WL) -> WL:
    """The session, whose real socket built-ins reach any address but 31415@127.0.0.1."""
    return scripted


def test_real_server_with_key(tcp: WL) -> None:
    """LinkServerConnect/Evaluate/Close against linkserver's own LinkServer over TCP.

    The sockets are the real built-ins; a Python thread plays the kernel side with the
    link API; the handshake, key proofs, frames and close are linkserver's real code.
    """
    import threading

    import linkserver

    settings = linkserver.LinkSettings(keys=(("admin", KEY.encode()),))
    seen: list[Any] = []
    with linkserver.LinkServer(port=0, settings=settings) as server:
        def serve() -> None:
            link = server.accept(timeout=20)
            seen.append(link.get(timeout=20))
            link.put(wl.TextPacket("from the server"))
            link.put(wl.ReturnPacket(wl.Times(6, 7)))
            link.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        tcp.session.evaluate(f'conn = LinkServerConnect["{server.port}@127.0.0.1", "Key" -> "{KEY}"]')
        assert [o.text for o in tcp.session.evaluation.out] == []
        assert tcp.value('conn["Open"]') is True
        result = from_mathics_value(tcp.session.evaluate("LinkServerEvaluate[conn, 6 * 7]"))
        out = [(type(o).__name__, o.text) for o in tcp.session.evaluation.out]
        assert out == [("Print", "from the server")]
        assert result == 42  # ReturnPacket[6 7] is evaluated here, as BinaryDeserialize does
        assert seen[0] == wl.EvaluatePacket(wl.Times(6, 7))
        sock = tcp.value('conn["Socket"][[1]]')
        assert tcp.value(f'SocketObject["{sock}"]["DestinationPort"]') == server.port
        tcp.session.evaluate("LinkServerClose[conn]")  # answers the server's CLOSE
        thread.join(20)
        assert not thread.is_alive()
        assert tcp.value('conn["Open"]') is False


def test_real_server_wrong_key(tcp: WL) -> None:
    import linkserver

    settings = linkserver.LinkSettings(keys=(("admin", b"another key of 32 bytes........."),))
    with linkserver.LinkServer(port=0, settings=settings) as server:
        tcp.session.evaluate(f'conn = LinkServerConnect["{server.port}@127.0.0.1", "Key" -> "{KEY}"]')
        messages = [o.text for o in tcp.session.evaluation.out]
    assert tcp.value("conn") == "$Failed"
    assert len(messages) == 1 and messages[0].startswith("Key authentication with"), messages


def test_real_server_needs_key(tcp: WL) -> None:
    import linkserver

    settings = linkserver.LinkSettings(keys=(("admin", KEY.encode()),))
    with linkserver.LinkServer(port=0, settings=settings) as server:
        tcp.session.evaluate(f'conn = LinkServerConnect["{server.port}@127.0.0.1"]')
        messages = [o.text for o in tcp.session.evaluation.out]
    assert tcp.value("conn") == "$Failed"
    assert len(messages) == 1 and "needs a key" in messages[0], messages


# ---------------------------------------------------------------- (3) the WXF payloads

#: What the package sends and receives, as wolframclient spells them.
PAYLOADS = [
    wl.EvaluatePacket(wl.Plus(1, 1)),
    wl.EvaluatePacket(wl.Set(wl.Global.x, 42)),
    wl.EvaluatePacket(wl.CompoundExpression(wl.Print("hi"), wl.Power(2, 100))),
    wl.Global.LinkServerSelect({"pool": "big", "persistent": True}),
    wl.EnterTextPacket("answer"),
    wl.ReturnPacket(2),
    wl.TextPacket("hi"),
    wl.MessagePacket(wl.Power, "infy"),
    wl.ReturnPacket(wl.Failure("nopool", {"MessageTemplate": "no pool"})),
]


@pytest.mark.parametrize("expr", PAYLOADS, ids=repr)
def test_wxf_matches_wolframclient(expr: Any) -> None:
    """linkserver's WXF is wolframclient's (Wolfram's Python BinarySerialize) byte for byte."""
    assert wxf.dumps(expr) == export(expr, target_format="wxf")


@pytest.mark.parametrize(("text", "expr"), [
    ("EvaluatePacket[1 + 1]", wl.EvaluatePacket(wl.Plus(1, 1))),
    ("EvaluatePacket[x = 42]", wl.EvaluatePacket(wl.Set(wl.Global.x, 42))),
    ('EnterTextPacket["answer"]', wl.EnterTextPacket("answer")),
    (f'{PRIVATE}selectPacket["big", True, None]',
     wl.Global.LinkServerSelect({"pool": "big", "persistent": True})),
])
def test_binary_serialize_writes_what_wolframclient_writes(session: WL, text: str, expr: Any) -> None:
    """The package's payloads, made by the real BinarySerialize (linkserver's, in Mathics3)."""
    got = session.value(f"Normal[BinarySerialize[Unevaluated[{text}]]]"
                        if "Private" not in text else f"Normal[BinarySerialize[{text}]]")
    assert bytes(got) == export(expr, target_format="wxf")


def test_doc_bytes() -> None:
    """The bytes docs/wl-client.md shows for EvaluatePacket[1+1] and its frame."""
    payload = wxf.dumps(wl.EvaluatePacket(wl.Plus(1, 1)))
    assert hex_block(DOC, "wxf-evaluate") == payload
    assert hex_block(DOC, "frame-evaluate") == encode_frame(FrameKind.EXPRESSION, payload)
