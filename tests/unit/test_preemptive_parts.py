"""The pieces of preemptive requests (docs/protocol.md §8.9) that need no kernel."""

from __future__ import annotations

from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

import linkserver
from linkserver import wxf
from linkserver.broker.queue import FairQueue
from linkserver.broker.core import _preemptive_packet
from linkserver.kernel.loop import is_preemptive
from linkserver.protocol import UrgentMessage
from linkserver.protocol.oob import decode_message, encode_message
from linkserver.protocol.packets import PREEMPTIVE
from tests.timeouts import TIMEOUT, wait_until


def test_push_first_goes_ahead_of_every_owner() -> None:
    q: FairQueue[str, int] = FairQueue()
    q.push("a", 1)
    q.push("b", 2)
    q.push("b", 3)
    q.push_first("b", 0)
    assert q.pop() == ("b", 0)
    assert [q.pop() for _ in range(len(q))] == [("a", 1), ("b", 2), ("b", 3)]
    q.push_first("c", 9)  # an owner with nothing queued
    assert q.take_oldest("c") == 9 and not q


def test_kernel_recognises_the_servers_preemptive_request() -> None:
    request = WLFunction(WLSymbol(PREEMPTIVE), 2**40, wl.EvaluatePacket(wl.Plus(1, 1)))
    assert is_preemptive(wxf.dumps(request))
    assert not is_preemptive(wxf.dumps(wl.EvaluatePacket(wl.Plus(1, 1))))
    assert not is_preemptive(wxf.dumps(WLFunction(WLSymbol(PREEMPTIVE + "X"), 1, 2)))


def test_only_an_evaluate_packet_can_be_preemptive() -> None:
    def wrapped(*args: object) -> WLFunction:
        return WLFunction(WLSymbol(PREEMPTIVE), *args)

    evaluate = wl.EvaluatePacket(wl.Plus(1, 1))
    assert _preemptive_packet(wrapped(evaluate)) == evaluate
    assert _preemptive_packet(wrapped(WLFunction(WLSymbol("System`EvaluatePacket"), 1))) is not None
    assert _preemptive_packet(wrapped(wl.EnterTextPacket("1+1"))) is None
    assert _preemptive_packet(wrapped(wl.EvaluatePacket(1, 2))) is None
    assert _preemptive_packet(wrapped(evaluate, evaluate)) is None
    assert _preemptive_packet(wrapped()) is None


def test_preempt_messages_are_known_codes() -> None:
    assert decode_message(encode_message(UrgentMessage.PREEMPT, 5)) == (UrgentMessage.PREEMPT, 5)
    assert int(UrgentMessage.PREEMPT_ABORT) == 202


def test_take_nowait_if_leaves_what_it_does_not_accept() -> None:
    a, b = linkserver.link_pair()
    with a, b:
        a.put(1)
        assert wait_until(b.ready)
        assert b.aio.take_nowait_if(lambda payload: False) is None
        assert b.get(TIMEOUT) == 1
        a.put(2)
        assert wait_until(b.ready)
        two = wxf.dumps(2)
        assert b.aio.take_nowait_if(lambda payload: payload == two) == two
        assert b.aio.take_nowait_if(lambda payload: True) is None
