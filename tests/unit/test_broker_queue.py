"""The fair queue and request classification, without processes."""

from __future__ import annotations

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLSymbol

from linkserver import wxf
from linkserver.broker.queue import FairQueue
from linkserver.broker.worker import as_request
from linkserver.status import format_status, status_expr
from linkserver.broker.shared import SharedStatistics


def test_owners_take_turns_and_keep_their_order() -> None:
    q: FairQueue[str, int] = FairQueue()
    for i in range(5):
        q.push("greedy", i)
    q.push("polite", 100)
    q.push("polite", 101)
    order = [q.pop() for _ in range(len(q))]
    assert order[:4] == [("greedy", 0), ("polite", 100), ("greedy", 1), ("polite", 101)]
    assert [item for owner, item in order if owner == "greedy"] == [0, 1, 2, 3, 4]
    assert not q and len(q) == 0


def test_one_request_is_not_starved_by_a_thousand() -> None:
    q: FairQueue[str, int] = FairQueue()
    for i in range(1000):
        q.push("flood", i)
    q.pop()
    q.push("single", -1)
    served = [q.pop()[0] for _ in range(2)]
    assert "single" in served


def test_remove_owner_and_item() -> None:
    q: FairQueue[str, int] = FairQueue()
    q.push("a", 1)
    q.push("a", 2)
    q.push("b", 3)
    assert q.queued("a") == 2
    assert q.remove("a", 2) and not q.remove("a", 2)
    assert q.remove_owner("a") == [1]
    assert q.remove_owner("a") == []
    assert list(q.drain()) == [("b", 3)]
    with pytest.raises(IndexError):
        q.pop()


@pytest.mark.parametrize(
    ("packet", "final"),
    [
        (wl.EvaluatePacket(wl.Plus(1, 1)), "ReturnPacket"),
        (wl.EnterTextPacket("1+1"), "InputNamePacket"),
        (wl.EnterExpressionPacket(wl.Plus(1, 1)), "InputNamePacket"),
        (wl.System.EvaluatePacket(1), "ReturnPacket"),
    ],
)
def test_requests_keep_their_bytes_and_know_their_last_packet(packet: object, final: str) -> None:
    payload = wxf.dumps(packet)
    assert as_request(payload) == (payload, final)


@pytest.mark.parametrize("value", [wl.Plus(1, 2), 5, "text", [1, 2], wl.x])
def test_plain_expressions_are_wrapped_as_evaluate_packets(value: object) -> None:
    payload, final = as_request(wxf.dumps(value))
    assert final == "ReturnPacket"
    assert wxf.loads(payload) == wl.EvaluatePacket(wxf.loads(wxf.dumps(value)))


def test_compressed_packets_are_classified() -> None:
    payload = wxf.dumps(wl.EnterTextPacket("1+1"), compress=True)
    assert as_request(payload)[1] == "InputNamePacket"
    wrapped, _ = as_request(wxf.dumps(wl.f(1), compress=True))
    assert wxf.loads(wrapped) == wl.EvaluatePacket(wl.f(1))


def test_status_answer_reads_as_lines() -> None:
    expr = status_expr(SharedStatistics("shared", 1, False, 0, 7))
    assert wxf.loads(wxf.dumps(expr)) == expr
    text = format_status(expr)
    assert "completed  7" in text and "mode" in text


@pytest.mark.parametrize(
    ("packet", "stops"),
    [
        (wl.EvaluatePacket(wl.Set(WLSymbol("$KeepRunning"), False)), True),
        (wl.EnterExpressionPacket(wl.Set(WLSymbol("$KeepRunning"), False)), True),
        (wl.Set(WLSymbol("$KeepRunning"), False), True),
        (wl.EnterTextPacket("$KeepRunning = False"), True),
        (wl.EnterTextPacket(" $KeepRunning=False ;"), True),
        (wl.EvaluatePacket(wl.ToExpression("$KeepRunning = False")), True),  # Client.evaluate(str)
        (wl.EvaluatePacket(wl.ToExpression("$KeepRunning = True")), False),
        (wl.EnterTextPacket("$KeepRunning = True"), False),
        (wl.EvaluatePacket(wl.Set(WLSymbol("$KeepRunning"), True)), False),
        (wl.EvaluatePacket(wl.Set(wl.KeepRunning, False)), False),
        (wl.EvaluatePacket(wl.Plus(1, 1)), False),
        (wl.EnterTextPacket("x = \"$KeepRunning = False\" <> " + "y" * 300), False),
    ],
)
def test_stop_requests_are_recognised_in_every_form(packet: object, stops: bool) -> None:
    from linkserver.broker.control import is_stop_request

    assert is_stop_request(wxf.dumps(packet)) is stops


def test_take_oldest_leaves_the_rest_queued() -> None:
    q: FairQueue[str, int] = FairQueue()
    q.push("a", 1)
    q.push("a", 2)
    q.push("b", 3)
    assert q.take_oldest("a") == 1
    assert q.take_oldest("c") is None
    assert list(q.drain()) == [("a", 2), ("b", 3)]
