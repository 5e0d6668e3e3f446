"""A kernel's own work for one request, in this process, with no link at all.

``MathicsKernel._serve_request`` is called with the WXF bytes of a request;
what it would send is encoded and kept in a list. So the figure is decoding,
the packet vocabulary, the conversion to and from Mathics3, Mathics3's own
evaluation, In/Out history, formatting and encoding -- everything a kernel
process does for a request but read and write its socket. The peer is
Mathics3's ``session.evaluate("1+1")`` in the same process, measured in the
same run.

``call`` is ``EvaluatePacket[PyId[1]]`` for a function installed the way the
server installs it (``LinkServer`Install``), the list link answering each call
at once: a request that makes one call of an installed function.

    .venv/bin/python bench/kernel_request.py
"""

from __future__ import annotations

import contextlib
import statistics
from collections import deque
from collections.abc import Callable
from typing import Any

from harness import median_time, report
from mathics.session import MathicsSession
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver import wxf
from linkserver.kernel.mathics import MathicsKernel
from linkserver.protocol.packets import CALL_ANSWER, INSTALL, KERNEL_CALL

_KERNEL_CALL = WLSymbol(KERNEL_CALL)
_CALL_ANSWER = WLSymbol(CALL_ANSWER)

ROUNDS = 2000
BLOCKS = 5


class _ListLink:
    """Stands in for the kernel's wire: keeps what would be sent, encoded; answers calls."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.incoming: deque[bytes] = deque()
        self.error = None

    def put(self, expr: Any) -> None:
        self.sent.append(wxf.dumps(expr))
        if getattr(expr, "head", None) == _KERNEL_CALL:  # answer ReturnPacket[first argument]
            serial, _owner, _index, args = expr.args
            self.incoming.append(wxf.dumps(WLFunction(_CALL_ANSWER, serial, wl.ReturnPacket(args[0]))))

    def take_nowait(self) -> bytes | None:
        return self.incoming.popleft() if self.incoming else None

    def ready(self) -> bool:
        return bool(self.incoming)

    def put_payload(self, payload: bytes) -> None:
        self.sent.append(payload)

    def corked(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


def main() -> None:
    kernel = MathicsKernel()
    link = _ListLink()
    kernel._link = link  # type: ignore[assignment]
    session = MathicsSession()  # a plain one, as a Mathics3 user makes it
    requests = {
        "plus": wxf.dumps(wl.EvaluatePacket(wl.Plus(1, 1))),
        "string": wxf.dumps(wl.EvaluatePacket(wl.ToExpression("1+1"))),
        "enter": wxf.dumps(wl.EnterTextPacket("1+1")),
        "call": wxf.dumps(wl.EvaluatePacket(wl.PyId(1))),
    }
    kernel._serve_request(wxf.dumps(WLFunction(WLSymbol(INSTALL), 1, "PyId", 1)))
    paths: dict[str, Callable[[], object]] = {
        key: (lambda payload=payload: kernel._serve_request(payload))
        for key, payload in requests.items()
    }
    paths["peer"] = lambda: session.evaluate("1+1")
    for fn in paths.values():  # warm up
        for _ in range(200):
            fn()
    blocks: dict[str, list[float]] = {key: [] for key in paths}
    for _ in range(BLOCKS):
        for key, fn in paths.items():
            blocks[key].append(median_time(fn, repeat=ROUNDS) * 1e6)
            link.sent.clear()
    us = {key: statistics.median(values) for key, values in blocks.items()}
    report("kernel_request.peer_session_evaluate", us["peer"], "us")
    for key in requests:
        report(f"kernel_request.{key}", us[key], "us")
        report(f"kernel_request.{key}.ratio", us[key] / us["peer"], "x session.evaluate")


if __name__ == "__main__":
    main()
