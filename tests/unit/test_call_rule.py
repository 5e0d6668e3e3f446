"""An installed function's definition in the kernel: the call without pattern matching.

The kernel defines ``PyId[args___] := LinkServer`Call[owner, index, {args}]``
and puts a :class:`CallRule` in its place (docs/protocol.md §8.10). Here a
kernel serves requests in this process, over a link that keeps what is sent
and answers each call at once.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver import wxf
from linkserver.kernel.evaluator import CallRule, Host, MathicsEvaluator, install_call_rule
from linkserver.kernel.mathics import MathicsKernel
from linkserver.protocol.packets import (
    CALL_ANSWER,
    INSTALL,
    KERNEL_CALL,
    UNINSTALL,
    MessagePacket,
    Packet,
    ReturnPacket,
)


class _AnsweringLink:
    """Keeps what the kernel sends; answers a call with its first argument doubled."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.calls: list[Any] = []
        self.incoming: deque[bytes] = deque()
        self.error = None

    def put(self, expr: Any) -> None:
        expr = wxf.loads(wxf.dumps(expr))
        self.sent.append(expr)
        if getattr(expr, "head", None) == WLSymbol(KERNEL_CALL):
            serial, owner, index, args = expr.args
            self.calls.append((owner, index, tuple(args)))
            answer = wl.ReturnPacket(2 * args[0] if args else "none")
            self.incoming.append(wxf.dumps(WLFunction(WLSymbol(CALL_ANSWER), serial, answer)))

    def put_payload(self, payload: bytes) -> None:
        self.put(wxf.loads(payload))

    def corked(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def take_nowait(self) -> bytes | None:
        return self.incoming.popleft() if self.incoming else None

    def ready(self) -> bool:
        return bool(self.incoming)


@pytest.fixture()
def kernel() -> tuple[MathicsKernel, _AnsweringLink]:
    kernel = MathicsKernel()
    link = _AnsweringLink()
    kernel._link = link  # type: ignore[assignment]
    return kernel, link


def _serve(kernel: MathicsKernel, link: _AnsweringLink, expr: Any) -> Any:
    link.sent.clear()
    kernel._serve_request(wxf.dumps(expr))
    return link.sent[-1]


def _downvalues(kernel: MathicsKernel, link: _AnsweringLink, name: str) -> str:
    return _serve(kernel, link, wl.EvaluatePacket(
        wl.ToString(wl.DownValues(WLSymbol(name)), WLSymbol("InputForm")))).args[0]


def test_a_call_goes_to_the_client_through_the_call_rule(
    kernel: tuple[MathicsKernel, _AnsweringLink],
) -> None:
    k, link = kernel
    installed = _serve(k, link, WLFunction(WLSymbol(INSTALL), 3, "PyDouble", 7))
    assert installed.args[0].name.endswith("PyDouble")
    rules = k.evaluator.definitions.get_downvalues("Global`PyDouble")
    assert [type(rule) for rule in rules] == [CallRule]
    assert _serve(k, link, wl.EvaluatePacket(wl.PyDouble(21, 5))) == wl.ReturnPacket(42)
    assert link.calls == [(3, 7, (21, 5))]
    # Inside an evaluation, and with no arguments, as the pattern args___ allows.
    assert _serve(k, link, wl.EvaluatePacket(wl.ToExpression("{PyDouble[1] + 1, PyDouble[]}"))) \
        == wl.ReturnPacket((3, "none"))
    assert link.calls[-2:] == [(3, 7, (1,)), (3, 7, ())]


def test_the_definition_reads_as_before_and_other_rules_keep_their_place(
    kernel: tuple[MathicsKernel, _AnsweringLink],
) -> None:
    k, link = kernel
    _serve(k, link, wl.EvaluatePacket(wl.ToExpression(
        'PyPlain[args___] := LinkServer`Call[3, 8, {args}]')))
    before = _downvalues(k, link, "PyPlain")
    _serve(k, link, WLFunction(WLSymbol(INSTALL), 3, "PyPlain", 8))
    assert _downvalues(k, link, "PyPlain") == before.replace("args", "LinkServer`Private`args")
    # A more specific rule the user adds still comes first.
    _serve(k, link, wl.EvaluatePacket(wl.ToExpression('PyPlain[0] := "zero"')))
    assert _serve(k, link, wl.EvaluatePacket(wl.PyPlain(0))) == wl.ReturnPacket("zero")
    assert _serve(k, link, wl.EvaluatePacket(wl.PyPlain(4))) == wl.ReturnPacket(8)
    # ReplaceList takes the ordinary way: the replacement, not a call.
    calls = len(link.calls)
    listed = _serve(k, link, wl.EvaluatePacket(wl.ToExpression(
        "ReplaceList[Hold[PyPlain[5]], DownValues[PyPlain], {1}]")))
    assert len(link.calls) == calls and listed.args[0] != ()


def test_an_uninstalled_function_is_not_called(
    kernel: tuple[MathicsKernel, _AnsweringLink],
) -> None:
    k, link = kernel
    _serve(k, link, WLFunction(WLSymbol(INSTALL), 3, "PyGone", 9))
    _serve(k, link, WLFunction(WLSymbol(UNINSTALL), 3, "PyGone"))
    assert _serve(k, link, wl.EvaluatePacket(wl.PyGone(1))) == wl.ReturnPacket(wl.PyGone(1))
    assert link.calls == []


class _Host(Host):
    def __init__(self) -> None:
        self.packets: list[Packet] = []

    def put(self, packet: Packet) -> None:
        self.packets.append(packet)


def test_without_a_client_the_call_rule_fails_as_the_definition_does() -> None:
    host = _Host()
    evaluator = MathicsEvaluator(host)  # a session with no kernel loop: nobody to call
    evaluator.evaluate_packet(wl.ToExpression('PyAlone[args___] := LinkServer`Call[4, 1, {args}]'))
    assert install_call_rule(evaluator.definitions, "PyAlone", 4, 1)
    assert not install_call_rule(evaluator.definitions, "PyAlone", 4, 2)  # no such rule
    host.packets.clear()
    evaluator.evaluate_packet(wl.PyAlone(1))
    assert isinstance(host.packets[0], MessagePacket) and host.packets[0].tag == "nocall"
    assert host.packets[-1] == ReturnPacket(WLSymbol("$Failed"))
