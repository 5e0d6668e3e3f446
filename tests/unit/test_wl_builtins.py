"""linkserver.kernel.wl_builtins: the Wolfram Language built-ins Mathics3 lacks.

One Mathics3 session with the built-ins contributed (what every linkserver kernel
has); the bytes are compared with wolframclient's serializer and hashlib, the JSON
messages with what wolframclient's own tests expect of a Wolfram kernel, and the
sockets talk to a Python server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mathics")

from wolframclient.language import wl  # noqa: E402
from wolframclient.language.expression import WLFunction, WLSymbol  # noqa: E402
from wolframclient.serializers import export  # noqa: E402

from linkserver import wxf  # noqa: E402
from linkserver.kernel import wl_builtins  # noqa: E402
from linkserver.kernel.mathics_exprs import from_mathics  # noqa: E402
from linkserver.kernel.wl_builtins import sockets  # noqa: E402
from tests.timeouts import TIMEOUT  # noqa: E402


class Session:
    """A Mathics3 session with linkserver's built-ins."""

    def __init__(self) -> None:
        from mathics.core.load_builtin import import_and_load_builtins, mathics3_builtins_modules
        from mathics.session import MathicsSession

        if not mathics3_builtins_modules:
            import_and_load_builtins()
        self.session = MathicsSession(catch_interrupt=False)
        wl_builtins.contribute(self.session.definitions)

    def run(self, text: str) -> tuple[Any, list[str]]:
        """(value, message texts) of evaluating ``text``; lists as tuples, as WXF gives them."""
        result = self.session.evaluate(text)
        messages = [getattr(o, "text", str(o)) for o in self.session.evaluation.out]
        self.session.evaluation.out.clear()
        return from_mathics(result), messages

    def value(self, text: str) -> Any:
        value, messages = self.run(text)
        assert not messages, f"{text}: {messages}"
        return value


@pytest.fixture(scope="module")
def s() -> Session:
    return Session()


def test_the_kernel_has_them() -> None:
    from linkserver.kernel.mathics import prepare

    builtin = prepare().definitions.builtin
    for name in ("System`SocketConnect", "System`BinarySerialize", "System`BitXor",
                 "System`ByteArrayQ", "System`AbortProtect", "System`FromLetterNumber",
                 "System`ReturnPacket", "Developer`ReadRawJSONString"):
        assert name in builtin, name


# ------------------------------------------------------------ ByteArray


def test_bytearray_q_and_length(s: Session) -> None:
    assert s.value("ByteArrayQ[ByteArray[{1, 2, 3}]]") is True
    assert s.value("ByteArrayQ[{1, 2, 3}]") is False
    assert s.value("Length[ByteArray[{1, 2, 3}]]") == 3
    assert s.value("Length[ByteArray[{}]]") == 0
    assert s.value("Length[f[a, b]]") == 2  # Mathics3's own rule is still there
    assert s.value("Length[x]") == 0


@pytest.mark.parametrize("kind", ["SHA256", "MD5", "SHA512"])
def test_hash_of_bytes_in_every_form(s: Session, kind: str) -> None:
    data = bytes(range(256)) + b"\x00abc"
    digest = hashlib.new(kind.lower(), data).digest()
    ba = f"ByteArray[{{{','.join(map(str, data))}}}]"
    assert s.value(f'Hash[{ba}, "{kind}", "ByteArray"]') == digest
    assert s.value(f'Hash[{ba}, "{kind}", "HexString"]') == digest.hex()
    assert s.value(f'Hash[{ba}, "{kind}", "HexStringLittleEndian"]') == digest[::-1].hex()
    assert s.value(f'Hash[{ba}, "{kind}"]') == int.from_bytes(digest, "big")
    assert s.value(f'Hash["abc", "{kind}", "ByteArray"]') == hashlib.new(kind.lower(), b"abc").digest()


def test_hash_of_a_crc_is_four_bytes(s: Session) -> None:
    assert s.value('Hash["abc", "CRC32", "ByteArray"]') == zlib.crc32(b"abc").to_bytes(4, "big")


def test_bytes_and_text(s: Session) -> None:
    assert s.value('ByteArrayToString[ByteArray[{104, 195, 169}]]') == "hé"
    assert s.value('Normal[StringToByteArray["hé"]]') == (104, 195, 169)
    assert s.value('Normal[StringToByteArray["hé", "ISOLatin1"]]') == (104, 233)
    value, messages = s.run('ByteArrayToString[ByteArray[{255}], "UTF8"]')
    assert value == WLSymbol("$Failed") and "not text in UTF8" in messages[0]
    value, messages = s.run('StringToByteArray["x", "EBCDIC"]')
    assert value == WLSymbol("$Failed") and "EBCDIC is not a character encoding" in messages[0]


# ------------------------------------------------------------ bits


def test_bit_operations(s: Session) -> None:
    assert s.value("{BitXor[12, 10], BitAnd[12, 10], BitOr[12, 10], BitNot[12]}") == (6, 8, 14, -13)
    assert s.value("BitXor[{1, 2, 255}, 92]") == (93, 94, 163)  # listable, as the HMAC uses it
    assert s.value("BitXor[2^100 + 5, 3]") == (2**100 + 5) ^ 3
    assert s.value("BitAnd[-1, 2^70]") == 2**70
    assert s.value("{BitAnd[], BitOr[], BitXor[]}") == (-1, 0, 0)
    assert s.value("BitXor[a, 3]") == WLFunction(WLSymbol("BitXor"), 3, WLSymbol("a"))
    assert s.value("Attributes[BitXor]") == tuple(WLSymbol(a) for a in (
        "Flat", "Listable", "NumericFunction", "OneIdentity", "Orderless", "Protected"))


# ------------------------------------------------------------ WXF

#: WL text, and the same expression as wolframclient writes it.
SERIALIZED = [
    ("1", 1),
    ("-300", -300),
    ("2^70", 2**70),
    ("-2^200", -(2**200)),
    ("1.5", 1.5),
    ('"héllo \\[Alpha]"', "héllo α"),
    ("f[x]", wl.Global.f(wl.Global.x)),
    ("Plus[1, x]", wl.Plus(1, wl.Global.x)),
    ("Foo`bar[1]", WLFunction(WLSymbol("Foo`bar"), 1)),
    ("{True, False, Null}", [True, False, None]),
    ('<|"a" -> 1, 2 -> {3, "x"}|>', {"a": 1, 2: [3, "x"]}),
    ("ByteArray[{0, 1, 255}]", b"\x00\x01\xff"),
    ("1/3", wl.Rational(1, 3)),
    ("1 + 2 I", wl.Complex(1, 2)),
    ("Hold[1 + 1]", wl.Hold(wl.Plus(1, 1))),
    ("Unevaluated[1 + 1]", wl.Plus(1, 1)),
    ("Unevaluated[EvaluatePacket[x = 6 * 7]]",
     wl.EvaluatePacket(wl.Set(wl.Global.x, wl.Times(6, 7)))),
]


@pytest.mark.parametrize(("text", "expr"), SERIALIZED, ids=[t for t, _ in SERIALIZED])
def test_binary_serialize_is_wolframclients_wxf(s: Session, text: str, expr: Any) -> None:
    assert s.value(f"BinarySerialize[{text}]") == export(expr, target_format="wxf")
    assert s.value(f'BinarySerialize[{text}, PerformanceGoal -> "Speed"]') == export(
        expr, target_format="wxf")
    assert s.value(f'BinarySerialize[{text}, PerformanceGoal -> "Size"]') == export(
        expr, target_format="wxf", compress=True)


def test_binary_serialize_size_is_the_compressed_form(s: Session) -> None:
    # The bytes wolframclient's own kernel test expects of BinarySerialize[1, "Size"].
    assert s.value('BinarySerialize[1, PerformanceGoal -> "Size"]') == b"8C:x\x9csf\x04\x00\x00\x89\x00E"
    value, messages = s.run('BinarySerialize[1, PerformanceGoal -> "Fast"]')
    assert value == WLSymbol("$Failed") and "PerformanceGoal -> Fast" in messages[0]


@pytest.mark.parametrize(("text", "expr"), SERIALIZED[:-2], ids=[t for t, _ in SERIALIZED[:-2]])
def test_binary_deserialize_reads_it_back(s: Session, text: str, expr: Any) -> None:
    assert s.value(f"BinaryDeserialize[BinarySerialize[{text}]] === {text}") is True
    ba = "ByteArray[{" + ",".join(map(str, export(expr, target_format="wxf"))) + "}]"
    assert s.value(f"BinaryDeserialize[{ba}] === {text}") is True
    compressed = "ByteArray[{" + ",".join(map(str, export(expr, target_format="wxf",
                                                          compress=True))) + "}]"
    assert s.value(f"BinaryDeserialize[{compressed}] === {text}") is True


def test_binary_deserialize_holds_with_a_head(s: Session) -> None:
    assert s.value("BinaryDeserialize[BinarySerialize[Unevaluated[1 + 1]], Hold]") == wl.Hold(
        wl.Plus(1, 1))
    # x = 5 is not evaluated here: it arrives held
    ba = "ByteArray[{" + ",".join(map(str, wxf.dumps(wl.Set(wl.Global.held, 5)))) + "}]"
    assert s.value(f"BinaryDeserialize[{ba}, Hold]") == wl.Hold(wl.Set(wl.held, 5))
    assert s.value("ValueQ[held]") is False
    # names without a context are read as the parser reads them
    bare = "ByteArray[{" + ",".join(map(str, wxf.dumps(wl.Plus(1, wl.y)))) + "}]"
    assert s.value(f"BinaryDeserialize[{bare}, Hold] === Hold[1 + Global`y]") is True


def test_binary_deserialize_refuses_what_is_not_wxf(s: Session) -> None:
    value, messages = s.run("BinaryDeserialize[ByteArray[{1, 2, 3}]]")
    assert value == WLSymbol("$Failed")
    assert len(messages) == 1 and "is not WXF data BinarySerialize could have written" in messages[0]
    value, messages = s.run('BinaryDeserialize[ByteArray[{56, 58, 102}]]')  # cut short
    assert value == WLSymbol("$Failed") and len(messages) == 1
    value, messages = s.run('BinaryDeserialize["8:C\\001"]')
    assert value == WLSymbol("$Failed") and "is not a ByteArray" in messages[0]


# ------------------------------------------------------------ RawJSON


def test_rawjson_as_a_wolfram_kernel_reads_it(s: Session) -> None:
    text = '{"a": [1, 2.5, true, false, null, "x"], "b": {}, "c": {"d": -7}}'
    assert s.value(f"ImportString[{json.dumps(text)}, \"RawJSON\"]") == {
        "a": (1, 2.5, True, False, None, "x"), "b": {}, "c": {"d": -7}}
    assert s.value(f"Developer`ReadRawJSONString[{json.dumps(text)}]")["c"] == {"d": -7}
    assert s.value('ImportString["[1e400]", "RawJSON"]')[0] > 10**399  # past a double: kept


def test_rawjson_errors_say_what_and_where(s: Session) -> None:
    # What wolframclient's test_one_eval_many_msg_wrap expects of a Wolfram kernel.
    value, messages = s.run('ImportString["[1,2", "RawJSON"]')
    assert value == WLSymbol("$Failed")
    assert messages == ["Expecting end of array or a value separator.",
                        "An error occurred near character 'EOF', at line 1:6"]
    _, messages = s.run('ImportString["{\\"a\\":1 \\"b\\"", "RawJSON"]')
    assert messages[0] == "Expecting end of object or a value separator."
    # Brackets inside strings, and an escaped quote, do not decide which separator is missing.
    text = '{"k\\"[": "[", "l": ["]" 1]}'
    _, messages = s.run(f'ImportString[{json.dumps(text)}, "RawJSON"]')
    assert messages[0] == "Expecting end of array or a value separator."
    _, messages = s.run(f'ImportString[{json.dumps(text.replace(" 1]", "]"))}, "RawJSON"]')
    assert messages == []
    _, messages = s.run(f'ImportString[{json.dumps(text.replace(" 1]", "] 2"))}, "RawJSON"]')
    assert messages[0] == "Expecting end of object or a value separator."
    _, messages = s.run('ImportString["{\\"a\\" 1}", "RawJSON"]')
    assert "colon" in messages[0] and messages[1].endswith("'1', at line 1:7")
    _, messages = s.run('ImportString["[1,\\n 2 3]", "RawJSON"]')
    assert messages[1] == "An error occurred near character '3', at line 2:5"
    value, messages = s.run('ImportString["[NaN]", "RawJSON"]')
    assert value == WLSymbol("$Failed") and "NaN is not a JSON value" in messages[0]
    assert s.run('ImportString["", "RawJSON"]')[0] == WLSymbol("$Failed")


def test_rawjson_files(s: Session, tmp_path: Path) -> None:
    info = {"address": "31415@127.0.0.1", "key": "q3Xf", "tls": False, "fingerprint": None}
    path = tmp_path / "server.json"
    path.write_text(json.dumps(info))
    assert s.value(f'Import["{path}", "RawJSON"]') == info
    assert s.value(f'Developer`ReadRawJSONFile["{path}"]') == info
    value, messages = s.run(f'Import["{tmp_path / "missing.json"}", "RawJSON"]')
    assert value == WLSymbol("$Failed") and messages
    assert s.value(f'Import["{path}", "Text"]') == path.read_text()  # other formats: Mathics3's


# ------------------------------------------------------------ letters


def test_from_letter_number(s: Session) -> None:
    assert s.value("FromLetterNumber[Range[10]]") == tuple("abcdefghij")
    assert s.value("FromLetterNumber[{-1, 26}]") == ("z", "z")
    assert s.value('FromLetterNumber[2, "Greek"]') == "β"
    assert s.value("LetterNumber[FromLetterNumber[7]]") == 7
    assert s.value("FromLetterNumber[27]") == wl.Missing("NotApplicable")


# ------------------------------------------------------------ aborts, in a plain session


def test_check_abort_and_abort_protect_without_a_kernel(s: Session) -> None:
    assert s.value("CheckAbort[Abort[]; 1, 2]") == 2
    assert s.value("CheckAbort[1, 2]") == 1
    assert s.value("AbortProtect[1 + 1]") == 2
    assert s.value("Attributes[AbortProtect]") == (WLSymbol("HoldAll"), WLSymbol("Protected"))


# ------------------------------------------------------------ sockets


class Peer:
    """One TCP connection accepted on 127.0.0.1, for the session's SocketConnect."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(TIMEOUT)
        try:
            self.conn, _ = self.listener.accept()
        except OSError:
            return
        self.accepted.set()

    def side(self) -> socket.socket:
        assert self.accepted.wait(TIMEOUT)
        assert self.conn is not None
        self.conn.settimeout(TIMEOUT)
        return self.conn

    def read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.side().recv(n - len(data))
            assert chunk
            data += chunk
        return data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


def test_socket_connect_write_read_close(s: Session, peer: Peer) -> None:
    s.value(f'sock = SocketConnect[{{"127.0.0.1", {peer.port}}}]')
    assert s.value("Head[sock]") == WLSymbol("SocketObject")
    assert s.value('sock["DestinationPort"]') == peer.port
    assert s.value('sock["DestinationIPAddress"]') == wl.IPAddress("127.0.0.1")
    assert s.value('sock["SourcePort"]') == peer.side().getpeername()[1]
    assert s.value('sock["Protocol"]') == "TCP"
    # every form of bytes BinaryWrite takes, and WriteString's UTF-8
    assert s.value("BinaryWrite[sock, ByteArray[{1, 2}]] === sock") is True
    s.value("BinaryWrite[sock, {3, 4}]; BinaryWrite[sock, 5]; BinaryWrite[sock, \"ab\"]")
    s.value('WriteString[sock, "é", 12]')
    assert peer.read(11) == b"\x01\x02\x03\x04\x05ab" + "é12".encode()
    # nothing to read yet, then what the peer sent
    assert s.value("SocketReadyQ[sock]") is False
    assert s.value("SocketReadyQ[sock, 0.05]") is False
    peer.side().sendall(b"hello")
    assert s.value("SocketReadyQ[sock, 10]") is True
    data = b""
    while len(data) < 5:  # TCP may hand the bytes over in pieces
        data += s.value("SocketReadMessage[sock]")
    assert data == b"hello"
    # the peer ends its stream: ready, then EndOfFile, as often as asked
    peer.side().close()
    assert s.value("SocketReadyQ[sock, 10]") is True
    assert s.value("SocketReadMessage[sock]") == WLSymbol("EndOfFile")
    assert s.value("SocketReadMessage[sock]") == WLSymbol("EndOfFile")
    assert s.value("Close[sock]") is None
    value, messages = s.run("SocketReadMessage[sock]")
    assert value == WLSymbol("$Failed") and messages == [
        f"SocketObject[{s.value('sock[[1]]')}] is closed; open a new connection with SocketConnect."]
    value, messages = s.run("Close[sock]")
    assert value == WLSymbol("$Failed") and "already closed" in messages[0]


@pytest.mark.parametrize("spec", ['"127.0.0.1:{port}"', "{{\"127.0.0.1\", \"{port}\"}}",
                                  "{{\"localhost\", {port}}}"])
def test_socket_address_forms(s: Session, peer: Peer, spec: str) -> None:
    s.value(f"sock = SocketConnect[{spec.format(port=peer.port)}, \"TCP\"]")
    assert peer.accepted.wait(TIMEOUT)
    assert s.value('sock["DestinationPort"]') == peer.port
    s.value("Close[sock]")


def test_socket_read_message_time_constraint(s: Session, peer: Peer) -> None:
    s.value(f"sock = SocketConnect[{peer.port}]")
    value, messages = s.run("SocketReadMessage[sock, TimeConstraint -> 0.1]")
    assert value == WLSymbol("$Failed") and messages[0].startswith("No bytes came on SocketObject[")
    value, messages = s.run("SocketReadMessage[sock, TimeConstraint -> -1]")
    assert value == WLSymbol("$Failed") and "not a number of seconds" in messages[0]
    value, messages = s.run('SocketReadyQ[sock, "soon"]')
    assert value == WLSymbol("$Failed") and "not a number of seconds" in messages[0]
    value, messages = s.run("BinaryWrite[sock, {1, 300}]")
    assert value == WLSymbol("$Failed") and "is not bytes" in messages[0]
    s.value("Close[sock]")


def test_socket_connect_failures(s: Session) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    value, messages = s.run(f'SocketConnect["127.0.0.1:{port}"]')
    assert value == WLSymbol("$Failed") and messages == [
        f"Cannot connect to 127.0.0.1:{port}: Connection refused."]
    value, messages = s.run('SocketConnect["no port here"]')
    assert value == WLSymbol("$Failed") and "is not a socket address" in messages[0]
    value, messages = s.run('SocketConnect[{"127.0.0.1", 1}, "ZMQ"]')
    assert value == WLSymbol("$Failed") and 'only "TCP"' in messages[0]
    value, messages = s.run('SocketConnect["no-such-host.invalid:80"]')
    assert value == WLSymbol("$Failed") and "the host is unknown" in messages[0]


def test_a_stop_while_a_socket_waits_is_an_abort(peer: Peer) -> None:
    """A wait asks the evaluation whether to stop between slices, and stops as an abort.

    (A stop is TimeoutInterrupt in Mathics3; it becomes AbortInterrupt, which
    CheckAbort sees. The end to end abort through a kernel is in
    tests/integration/test_wl_client_kernels.py.)
    """
    from mathics.core.interrupt import AbortInterrupt, TimeoutInterrupt

    class StopsOnTheThirdLook:
        looks = 0

        def check_stopped(self) -> None:
            self.looks += 1
            if self.looks == 3:
                raise TimeoutInterrupt

    evaluation = StopsOnTheThirdLook()
    with socket.create_connection(("127.0.0.1", peer.port)) as sock:
        with pytest.raises(AbortInterrupt):
            sockets._wait(sock, write=False, seconds=600, evaluation=evaluation)
    assert evaluation.looks == 3
