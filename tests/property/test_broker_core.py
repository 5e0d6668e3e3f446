"""The broker's decisions, driven by a hypothesis state machine with no processes at all.

Clients send requests, preemptive requests and aborts, and leave; a model
kernel evaluates what the core sends it, prints, answers, honours ABORT and
PREEMPT_ABORT, and dies; the core is closed at the end. Throughout:

- every answer reaches the link that asked, and no packet reaches a link
  that has gone;
- no link gets more final packets than it sent requests, and every value
  comes back at most once;
- an abort stops only its own link's requests (a link that never aborted
  never sees ``$Aborted``; none sees more than it asked for);
- closing answers or refuses everything: afterwards each remaining link has
  exactly one final packet per request.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver import wxf
from linkserver.broker.core import (
    Action,
    Idle,
    KernelCore,
    KernelUrgent,
    Record,
    ServerRequest,
    StartKernel,
    StopKernel,
    ToClient,
    ToKernel,
)
from linkserver.protocol import UrgentMessage
from linkserver.protocol.packets import PREEMPTIVE, PREEMPTIVE_ANSWER

ABORTED = WLSymbol("$Aborted")
FAILED = WLSymbol("$Failed")


def head(expr: Any) -> str:
    return str(getattr(getattr(expr, "head", None), "name", "")).rpartition("`")[2]


class ModelKernel:
    """What a Mathics3 kernel does with the core's payloads, one request at a time."""

    def __init__(self) -> None:
        self.up = True
        self.running: Any = None  # the ordinary request in hand: its value expression
        self.aborted = False
        self.preemptive: dict[int, Any] = {}  # tag -> value expression

    def receive(self, payload: bytes) -> None:
        expr: Any = wxf.loads(payload)
        if head(expr) == PREEMPTIVE.rpartition("`")[2]:
            tag, inner = expr.args
            self.preemptive[tag] = inner.args[0]
        else:
            assert head(expr) == "EvaluatePacket", expr
            assert self.running is None, "the core sent a second request while one ran"
            self.running, self.aborted = expr.args[0], False

    def urgent(self, message: int, argument: int) -> list[bytes]:
        if message == UrgentMessage.ABORT and self.running is not None:
            self.aborted = True
        elif message == UrgentMessage.PREEMPT_ABORT and argument in self.preemptive:
            del self.preemptive[argument]
            return [wxf.dumps(WLFunction(WLSymbol(PREEMPTIVE_ANSWER), argument,
                                         wl.ReturnPacket(ABORTED)))]
        return []

    def answer(self) -> list[bytes]:
        value, self.running = self.running, None
        return [wxf.dumps(wl.ReturnPacket(ABORTED if self.aborted else value))]

    def answer_preemptive(self, tag: int) -> list[bytes]:
        value = self.preemptive.pop(tag)
        return [wxf.dumps(WLFunction(WLSymbol(PREEMPTIVE_ANSWER), tag, wl.ReturnPacket(value)))]


class BrokerCoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = KernelCore("w", max_queued=4, kernel_up=True, kernel_id="k0")
        self.kernel = ModelKernel()
        self.starting = False
        self.kernels = 0
        self.links: list[int] = [0, 1, 2]
        self.gone: set[int] = set()
        self.next_link = 3
        self.sent: Counter[int] = Counter()  # requests per link
        self.aborts: Counter[int] = Counter()
        self.finals: Counter[int] = Counter()
        self.aborted_seen: Counter[int] = Counter()
        self.values_seen: set[Any] = set()
        self.serial = 0
        self.closed = False

    # -------------------------------------------------------- carrying out

    def do(self, actions: list[Action]) -> None:
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, ToClient):
                self.delivered(action.link, action.payload)
            elif isinstance(action, ToKernel):
                if self.kernel.up:
                    self.kernel.receive(action.payload)
            elif isinstance(action, KernelUrgent):
                if self.kernel.up:
                    for payload in self.kernel.urgent(action.message, action.argument):
                        pending.extend(self.core.kernel_packet(payload))
            elif isinstance(action, StartKernel):
                assert not self.kernel.up
                self.starting = True
            elif isinstance(action, StopKernel):
                self.kernel.up = False
            else:
                assert isinstance(action, (Record, Idle, ServerRequest)), action

    def delivered(self, link: Any, payload: bytes) -> None:
        assert link not in self.gone, f"a packet reached link {link}, which had gone"
        assert link in self.links
        expr: Any = wxf.loads(payload)
        if head(expr) == "TextPacket":
            text = expr.args[0]
            if ":" in text and not text.startswith("LinkServer::"):
                assert int(text.split(":")[0]) == link, "side output reached another link"
            return
        if head(expr) in ("MessagePacket",):
            return
        assert head(expr) == "ReturnPacket", expr
        self.finals[link] += 1
        value = expr.args[0]
        if value == ABORTED:
            self.aborted_seen[link] += 1
        elif value != FAILED:
            assert head(value) in ("f", "g"), value
            assert value.args[0] == link, f"link {link} got {value}, another link's answer"
            assert value not in self.values_seen, f"{value} answered twice"
            self.values_seen.add(value)

    # --------------------------------------------------------------- rules

    def live(self) -> list[int]:
        return [link for link in self.links if link not in self.gone]

    @rule(i=st.integers(0, 10), plain=st.booleans())
    def client_evaluates(self, i: int, plain: bool) -> None:
        live = self.live()
        if not live:
            return
        link = live[i % len(live)]
        self.serial += 1
        value = wl.f(link, self.serial)
        # A plain expression is wrapped as EvaluatePacket by the core.
        payload = wxf.dumps(value if plain else wl.EvaluatePacket(value))
        self.sent[link] += 1
        self.do(self.core.client_packet(link, payload))

    @precondition(lambda self: not self.closed)
    @rule(i=st.integers(0, 10))
    def client_preempts(self, i: int) -> None:
        live = self.live()
        if not live:
            return
        link = live[i % len(live)]
        self.serial += 1
        packet = WLFunction(WLSymbol(PREEMPTIVE), wl.EvaluatePacket(wl.g(link, self.serial)))
        self.sent[link] += 1
        self.do(self.core.client_packet(link, wxf.dumps(packet)))

    @precondition(lambda self: not self.closed)
    @rule(i=st.integers(0, 10))
    def client_aborts(self, i: int) -> None:
        live = self.live()
        if not live:
            return
        link = live[i % len(live)]
        self.aborts[link] += 1
        self.do(self.core.client_message(link, UrgentMessage.ABORT, 0))

    @precondition(lambda self: not self.closed)
    @rule(i=st.integers(0, 10))
    def client_leaves(self, i: int) -> None:
        live = self.live()
        if not live:
            return
        link = live[i % len(live)]
        self.gone.add(link)
        self.do(self.core.link_gone(link))

    @precondition(lambda self: not self.closed)
    @rule()
    def client_joins(self) -> None:
        self.links.append(self.next_link)
        self.next_link += 1

    @precondition(lambda self: self.kernel.running is not None)
    @rule()
    def kernel_prints(self) -> None:
        owner = self.kernel.running.args[0]
        payload = wxf.dumps(wl.TextPacket(f"{owner}:output"))
        self.do(self.core.kernel_packet(payload))

    @precondition(lambda self: self.kernel.up and self.kernel.running is not None)
    @rule()
    def kernel_answers(self) -> None:
        for payload in self.kernel.answer():
            self.do(self.core.kernel_packet(payload))

    @precondition(lambda self: self.kernel.up and bool(self.kernel.preemptive))
    @rule(data=st.data())
    def kernel_answers_preemptive(self, data: st.DataObject) -> None:
        tag = data.draw(st.sampled_from(sorted(self.kernel.preemptive)))
        for payload in self.kernel.answer_preemptive(tag):
            self.do(self.core.kernel_packet(payload))

    @precondition(lambda self: self.kernel.up and not self.closed)
    @rule()
    def kernel_dies(self) -> None:
        self.kernel = ModelKernel()
        self.kernel.up = False
        self.do(self.core.kernel_died("its process ended"))

    @precondition(lambda self: self.starting and not self.closed)
    @rule()
    def kernel_starts(self) -> None:
        self.starting = False
        self.kernel = ModelKernel()
        self.kernels += 1
        self.do(self.core.kernel_started(f"k{self.kernels}"))

    @precondition(lambda self: not self.closed)
    @rule()
    def server_closes(self) -> None:
        self.closed = True
        self.do(self.core.close())
        for link in self.live():
            assert self.finals[link] == self.sent[link], (
                f"link {link} sent {self.sent[link]} requests and got {self.finals[link]} answers"
            )

    # ---------------------------------------------------------- invariants

    @invariant()
    def never_more_answers_than_requests(self) -> None:
        for link in self.links:
            assert self.finals[link] <= self.sent[link]

    @invariant()
    def once_closed_every_request_is_answered_at_once(self) -> None:
        if self.closed:
            for link in self.live():
                assert self.finals[link] == self.sent[link]

    @invariant()
    def aborts_reach_only_their_link(self) -> None:
        for link in self.links:
            assert self.aborted_seen[link] <= self.aborts[link]

    @invariant()
    def the_kernel_runs_what_the_core_says(self) -> None:
        if self.kernel.up and self.kernel.running is not None:
            assert self.core.current is not None


BrokerCoreMachine.TestCase.settings = settings(
    max_examples=400, stateful_step_count=40, deadline=None
)
TestBrokerCore = BrokerCoreMachine.TestCase
