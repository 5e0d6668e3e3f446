"""Write the seed corpora of the fuzz targets with the project's own encoders.

Run from the project root: ``python fuzz/make_corpus.py``. The files are
small and deterministic, so the seeds can be committed and re-made.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from wolframclient.language import wl, wlexpr

from linkserver import wxf
from linkserver.protocol.framing import FrameKind, encode_frame
from linkserver.protocol.handshake import ClientHello
from linkserver.protocol.oob import CloseCode, UrgentMessage, encode_close, encode_message

ROOT = Path(__file__).resolve().parent / "corpus"

EXPRESSIONS: dict[str, object] = {
    "int8": 7,
    "int16": -3000,
    "int32": 2**31 - 1,
    "int64": -(2**62),
    "bigint": 3**100,
    "real": 2.5,
    "string": "héllo, wörld",
    "binary": b"\x00\x01\xff",
    "symbol": wl.Global.x,
    "function": wl.EvaluatePacket(wl.Plus(wl.Times(3, 100000), 7)),
    "nested": wl.f(wl.g(wl.h(1, [2, 3]), "s"), {"a": 1}),
    "association": {"pool": "big", "persistent": True, "kernel": "4f1c2a9b7e30"},
    "list": [1, 2.0, "three", None, True, False],
    "packed-int": np.arange(12, dtype=np.int32).reshape(3, 4),
    "packed-real": np.linspace(0, 1, 5),
    "numeric-uint8": np.arange(6, dtype=np.uint8),
    "numeric-complex": np.array([1 + 2j, 3 - 4j]),
    "text": wlexpr("Table[i^2, {i, 10}]"),
    "enter-text": wl.EnterTextPacket("$KeepRunning = False"),
}


def wxf_seeds() -> dict[str, bytes]:
    seeds = {name: wxf.dumps(expr) for name, expr in EXPRESSIONS.items()}
    seeds["compressed"] = wxf.dumps(EXPRESSIONS["nested"], compress=True)
    seeds["compressed-array"] = wxf.dumps(np.zeros(64, dtype=np.int64), compress=True)
    return seeds


def protocol_seeds() -> dict[str, bytes]:
    hello = ClientHello().encode()
    expr = encode_frame(FrameKind.EXPRESSION, wxf.dumps(wl.EvaluatePacket(wl.Plus(1, 1))))
    abort = encode_frame(FrameKind.MESSAGE, encode_message(UrgentMessage.ABORT))
    status = encode_frame(FrameKind.MESSAGE, encode_message(200))
    ping = encode_frame(FrameKind.PING, b"ping")
    pong = encode_frame(FrameKind.PONG, b"")
    close = encode_frame(FrameKind.CLOSE, encode_close(CloseCode.NORMAL, "bye"))
    streams = {
        "hello": hello,
        "session": hello + expr + ping + abort + expr + status + close,
        "pipelined": hello + expr * 5 + pong + close,
        "too-large": hello + bytes([FrameKind.EXPRESSION]) + (2**32 - 1).to_bytes(4, "little"),
        "http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    }
    # Schedule byte 0: one slice; 1 and 0x81: small slices, with a key when the tree has keys.
    seeds = {f"{name}-whole": b"\x00" + data for name, data in streams.items()}
    seeds["session-sliced"] = b"\x01" + streams["session"]
    seeds["session-keyed"] = b"\x81" + streams["session"]
    return seeds


def write(target: str, seeds: dict[str, bytes]) -> None:
    folder = ROOT / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        digest = hashlib.sha1(data).hexdigest()[:8]
        (folder / f"{name}-{digest}").write_bytes(data)


if __name__ == "__main__":
    write("wxf", wxf_seeds())
    write("protocol", protocol_seeds())
