"""Preemptive requests (docs/protocol.md §8.9), end to end with Mathics3.

One shared-mode server, with an evaluation time limit that the tests meet
only on purpose. Pool mode runs the same broker code on a kernel per link;
its case -- a link preempting its own evaluation -- is tested here too.

The long evaluations here wait on a flag that only a preemptive evaluation
can set (``While[flag =!= True, ...]``): if preemption did not work, the test
would hang until its timeout instead of passing by luck of timing. Each test
uses flags of its own, so they do not depend on one another's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLFunction, WLSymbol

import linkserver
from linkserver.kernel.mathics import ABORT_GRACE
from linkserver.launcher import KernelSpec
from linkserver.portal import get_portal
from linkserver.protocol.packets import PREEMPTIVE
from linkserver.service import KernelService
from tests.packets import collect
from tests.timeouts import TIMEOUT, wait_until

from .test_service import KERNEL_TIMEOUT, start_service

ABORTED = WLSymbol("$Aborted")


# The evaluation time limit: the waiting evaluations of the tests end within
# milliseconds of their own evaluation time (it is held while they are
# preempted); one test waits for it once.
LIMIT = 0.3 * TIMEOUT


@pytest.fixture(scope="module")
def shared() -> Iterator[KernelService]:
    # quit_allowed: one test ends the shared kernel with Quit[] on purpose.
    service = start_service(
        mode="shared", spec=KernelSpec(eval_timeout=LIMIT), quit_allowed="anyone"
    )
    yield service
    get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def preemptive(expr: Any) -> WLFunction:
    return WLFunction(WLSymbol(PREEMPTIVE), wl.EvaluatePacket(expr))


def start_waiting(link: linkserver.Link, flag: str, then: str = "1") -> None:
    """Start an evaluation on ``link`` that runs until ``flag`` is True; return once it runs."""
    link.put(wl.EvaluatePacket(wlexpr(
        f'Print["started"]; n{flag} = 0; While[{flag} =!= True, n{flag}++]; {then}'
    )))
    assert link.get(KERNEL_TIMEOUT) == wl.TextPacket("started")


def test_preemptive_request_is_served_during_another_evaluation(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as a, linkserver.Client(shared.name) as b:
        a.put(wl.EvaluatePacket(wlexpr("seenByB = 42")))
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(42)]
        start_waiting(a, "flag1", then='Print["a done"]; {seenByB, Total[Range[100]]}')
        # A waits for flag1, which only B can set: B is served while A runs.
        assert b.evaluate("1 + 1", preemptive=True) == 2
        assert not a.ready()
        # Its Print goes to B only; it sees A's definitions.
        result = b.evaluate_wrap('Print["for b"]; seenByB + 1', preemptive=True)
        assert result.result == 43 and result.printed == ["for b"]
        assert not a.ready()
        assert b.evaluate("flag1 = True; 3", preemptive=True) == 3
        # A resumes and ends correctly, with only its own output.
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [
            wl.TextPacket("a done"),
            wl.ReturnPacket((42, 5050)),
        ]


def test_preemptive_request_is_served_during_a_pause(shared: KernelService) -> None:
    # The seed's recipe: a kernel pausing while preemptive links are served.
    # If the preemptive request waited for the pause to end, A would answer
    # the symbol setDuringPause unevaluated; the pause is well inside LIMIT.
    with linkserver.connect(shared.name) as a, linkserver.Client(shared.name) as b:
        a.put(wl.EvaluatePacket(wlexpr(
            f'Print["pausing"]; Pause[{0.9 * LIMIT}]; setDuringPause'
        )))
        assert a.get(KERNEL_TIMEOUT) == wl.TextPacket("pausing")
        assert b.evaluate("setDuringPause = 1 + 1", preemptive=True) == 2
        assert not a.ready()  # B was answered while A still paused
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(2)]


def test_abort_stops_a_pause_at_once(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as a:
        a.put(wl.EvaluatePacket(wlexpr(f'Print["pausing"]; Pause[{10 * LIMIT}]; 1')))
        assert a.get(KERNEL_TIMEOUT) == wl.TextPacket("pausing")
        a.abort()
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(ABORTED)]


def test_ordinary_request_waits_for_the_running_one(shared: KernelService) -> None:
    with (
        linkserver.connect(shared.name) as a,
        linkserver.connect(shared.name) as b,
        linkserver.Client(shared.name) as c,
    ):
        start_waiting(a, "flag2", then="2")
        b.put(wl.EvaluatePacket(wlexpr("flag2 = True; 7")))  # queued behind A: no help
        assert not wait_until(b.ready, 0.05 * TIMEOUT)
        assert not a.ready()
        assert c.evaluate("flag2 = True", preemptive=True) is True
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(2)]
        assert collect(b, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(7)]


def test_preemptive_request_on_an_idle_kernel(shared: KernelService) -> None:
    with linkserver.Client(shared.name) as client:
        assert client.evaluate("6 * 7", preemptive=True) == 42
        result = client.evaluate_wrap('Print["x"]; 1/0', preemptive=True)
        assert result.printed == ["x"] and result.messages_name == ["Power::infy"]


def test_only_an_evaluation_can_be_preemptive(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as link:
        link.put(WLFunction(WLSymbol(PREEMPTIVE), wl.EnterTextPacket("1+1")))
        answer = collect(link, "ReturnPacket", KERNEL_TIMEOUT)
        assert answer[0] == wl.MessagePacket(wl.LinkServer, "badpacket")
        assert "EvaluatePacket" in answer[1].args[0]
        assert answer[-1] == wl.ReturnPacket(WLSymbol("$Failed"))


def test_aborts_reach_only_the_request_they_aim_at(shared: KernelService) -> None:
    with (
        linkserver.connect(shared.name) as a,
        linkserver.connect(shared.name) as b,
        linkserver.Client(shared.name) as c,
    ):
        start_waiting(a, "flag3", then="3")
        # B's preemptive evaluation spins too; aborting it leaves A running.
        b.put(preemptive(wlexpr('Print["b started"]; While[True, 1]')))
        assert b.get(KERNEL_TIMEOUT) == wl.TextPacket("b started")
        b.abort()
        assert collect(b, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(ABORTED)]
        assert not a.ready()
        # A's abort, while a preemptive evaluation of B's runs, waits for it.
        b.put(preemptive(wlexpr('Print["b again"]; While[flag4 =!= True, 1]; 4')))
        assert b.get(KERNEL_TIMEOUT) == wl.TextPacket("b again")
        a.abort()
        assert not wait_until(b.ready, 2 * ABORT_GRACE)  # nor escalated to B
        assert not a.ready()
        # C cannot nest into B's preemptive evaluation: it runs once B's ends.
        c.link.put(preemptive(wlexpr("flag4 = True; 5")))
        b.abort()
        assert collect(b, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(ABORTED)]
        assert collect(c.link, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(5)]
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(ABORTED)]
        assert c.evaluate("1 + 1") == 2


def test_preemptive_client_vanishing_costs_nothing(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as a, linkserver.Client(shared.name) as c:
        start_waiting(a, "flag5", then="5")
        with linkserver.connect(shared.name) as b:
            b.put(preemptive(wlexpr('Print["b"]; While[True, 1]')))
            assert b.get(KERNEL_TIMEOUT) == wl.TextPacket("b")
        # B is gone: its evaluation is aborted, A goes on and C is served.
        assert c.evaluate("flag5 = True; 6", preemptive=True) == 6
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(5)]


def test_preemptive_request_while_waiting_for_input(shared: KernelService) -> None:
    with linkserver.connect(shared.name) as a, linkserver.Client(shared.name) as b:
        a.put(wl.EvaluatePacket(wlexpr('1 + Input["n? "]')))
        assert a.get(KERNEL_TIMEOUT) == wl.InputPacket("n? ")
        assert b.evaluate("Input[]", preemptive=True) == WLSymbol("EndOfFile")
        a.put(wl.EnterTextPacket("41"))
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(42)]


def test_kernel_death_in_a_preemptive_evaluation_answers_both(shared: KernelService) -> None:
    # Last: the shared kernel is replaced, its definitions lost.
    with linkserver.connect(shared.name) as a, linkserver.connect(shared.name) as b:
        start_waiting(a, "flag6")
        b.put(preemptive(wlexpr("Quit[]")))
        for link in (a, b):
            answer = collect(link, "ReturnPacket", KERNEL_TIMEOUT)
            assert answer[0] == wl.MessagePacket(wl.LinkServer, "kerneldied")
            assert answer[-1] == wl.ReturnPacket(WLSymbol("$Failed"))
        b.put(preemptive(wlexpr("2 + 2")))
        assert collect(b, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(4)]


def test_hard_stop_of_a_preemptive_evaluation_spares_the_paused_one(
    shared: KernelService,
) -> None:
    with linkserver.connect(shared.name) as a, linkserver.Client(shared.name) as b:
        start_waiting(a, "flag7", then="7")
        # Pause does not come back to the evaluator: only SIGUSR1 stops it.
        b.link.put(preemptive(wlexpr(f'Print["pausing"]; Pause[{5 * TIMEOUT}]')))
        assert b.link.get(KERNEL_TIMEOUT) == wl.TextPacket("pausing")
        b.abort()
        assert collect(b.link, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(ABORTED)]
        assert not a.ready()
        assert b.evaluate("flag7 = True", preemptive=True) is True
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(7)]


def test_preemptive_evaluation_has_its_own_time_limit(shared: KernelService) -> None:
    timeout_message = wl.MessagePacket(WLSymbol("General"), "timeout")
    with linkserver.connect(shared.name) as a, linkserver.Client(shared.name) as b:
        start_waiting(a, "flag8", then="8")
        b.link.put(preemptive(wlexpr("While[True, 1]")))
        answer = collect(b.link, "ReturnPacket", KERNEL_TIMEOUT)
        assert answer[0] == timeout_message and answer[-1] == wl.ReturnPacket(ABORTED)
        # B's limit did not stop A, which goes on (and is not timed out either).
        assert not a.ready()
        assert b.evaluate("flag8 = True", preemptive=True) is True
        assert collect(a, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(8)]


def test_a_link_may_preempt_its_own_evaluation(shared: KernelService) -> None:
    # As in pool mode, where the running evaluation is always the link's own.
    with linkserver.Client(shared.name) as client:
        link = client.link
        start_waiting(link, "flag9", then="9")
        link.put(preemptive(wlexpr("flag9 = True; 10")))
        assert collect(link, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(10)]
        assert collect(link, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(9)]
        assert client.evaluate("1 + 1", preemptive=True) == 2
