"""The Mathics3 evaluator on its own: requests in, packets out, stops asked of its host.

No link, no thread, no process: a host that keeps the packets in a list, and
one that says the evaluation must stop.
"""

from __future__ import annotations

from typing import Any

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver.kernel.evaluator import Host, MathicsEvaluator
from linkserver.kernel.loop import KernelExit, KernelPolicy
from linkserver.protocol.packets import (
    InputNamePacket,
    MessagePacket,
    OutputNamePacket,
    Packet,
    ReturnExpressionPacket,
    ReturnPacket,
    ReturnTextPacket,
    SyntaxPacket,
    TextPacket,
)


class _Collecting(Host):
    def __init__(self) -> None:
        self.packets: list[Packet] = []
        self.stop = False
        self.timed_out = False

    def put(self, packet: Packet) -> None:
        self.packets.append(packet)

    def must_stop(self) -> bool:
        return self.stop

    def timeout_to_say(self) -> bool:
        said, self.timed_out = self.timed_out, False
        return said

    def take(self) -> list[Packet]:
        packets, self.packets = self.packets, []
        return packets


@pytest.fixture(scope="module")
def session() -> tuple[_Collecting, MathicsEvaluator]:
    host = _Collecting()
    return host, MathicsEvaluator(host)


def _text(text: str) -> Any:
    return wl.ToExpression(text)


def test_an_evaluation_answers_one_return_packet_after_its_side_packets(
    session: tuple[_Collecting, MathicsEvaluator],
) -> None:
    host, evaluator = session
    evaluator.evaluate_packet(_text('Print["hi"]; 1/0; 1+1'))
    packets = host.take()
    assert packets[0] == TextPacket("hi")
    assert isinstance(packets[1], MessagePacket) and packets[1].tag == "infy"
    assert isinstance(packets[2], TextPacket) and packets[2].text.startswith("Power::infy")
    assert packets[-1] == ReturnPacket(2)
    assert len(packets) == 4


def test_entered_text_is_numbered_formatted_and_prompted(
    session: tuple[_Collecting, MathicsEvaluator],
) -> None:
    host, evaluator = session
    evaluator.enter_text("evaluatorX = 6; evaluatorX * 7")
    packets = host.take()
    assert isinstance(packets[0], OutputNamePacket) and packets[0].name.startswith("Out[")
    assert packets[1] == ReturnTextPacket("42")
    assert isinstance(packets[2], InputNamePacket)
    line = int(packets[0].name[4:].split("]")[0])
    assert packets[2].name == f"In[{line + 1}]:= "
    evaluator.enter_expression(WLFunction(WLSymbol("Out"), line))  # the history holds it
    assert host.take() == [ReturnExpressionPacket(42), InputNamePacket(f"In[{line + 2}]:= ")]


def test_a_syntax_error_says_where_and_uses_no_line(
    session: tuple[_Collecting, MathicsEvaluator],
) -> None:
    host, evaluator = session
    before = evaluator.input_name()
    evaluator.enter_text("f[1,")
    packets = host.take()
    assert any(isinstance(p, SyntaxPacket) for p in packets)
    assert packets[-1] == before


def test_without_a_client_input_reads_end_of_file_and_calls_fail(
    session: tuple[_Collecting, MathicsEvaluator],
) -> None:
    host, evaluator = session
    evaluator.evaluate_packet(_text("Input[]"))
    assert host.take()[-1] == ReturnPacket(WLSymbol("EndOfFile"))
    evaluator.evaluate_packet(_text("LinkServer`Call[1, 1, {}]"))
    packets = host.take()
    assert isinstance(packets[0], MessagePacket) and packets[0].tag == "nocall"
    assert packets[-1] == ReturnPacket(WLSymbol("$Failed"))


def test_a_host_that_says_stop_gets_aborted_and_the_timeout_said_once(
    session: tuple[_Collecting, MathicsEvaluator],
) -> None:
    host, evaluator = session
    host.stop, host.timed_out = True, True
    try:
        evaluator.evaluate_packet(_text("evaluatorRan = True"))
    finally:
        host.stop = False
    packets = host.take()
    assert isinstance(packets[0], MessagePacket) and packets[0].tag == "timeout"
    assert packets[-1] == ReturnPacket(WLSymbol("$Aborted"))
    evaluator.evaluate_packet(_text("ValueQ[evaluatorRan]"))
    assert host.take() == [ReturnPacket(False)]


def test_quit_ends_a_pool_kernel_and_is_refused_by_a_shared_one(
    session: tuple[_Collecting, MathicsEvaluator],
) -> None:
    host, evaluator = session
    with pytest.raises(KernelExit) as ended:
        evaluator.evaluate_packet(_text("Quit[3]"))
    assert ended.value.code == 3
    assert any(isinstance(p, MessagePacket) and p.tag == "quit" for p in host.take())
    host.policy = KernelPolicy(mode="shared")
    try:
        evaluator.evaluate_packet(_text("Quit[]"))
    finally:
        del host.policy
    packets = host.take()
    assert isinstance(packets[0], MessagePacket) and packets[0].tag == "noquit"
    assert packets[-1] == ReturnPacket(WLSymbol("$Failed"))
