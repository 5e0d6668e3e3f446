"""The broker's decisions for one kernel, without I/O: events in, actions out.

A :class:`KernelCore` is what :class:`~.worker.KernelWorker` used to be
minus every socket, task and clock: it is told what happened -- a packet
from a client link, an urgent message from one, a link gone, a packet from
the kernel, the kernel ready or dead, closing -- and answers with a list of
:class:`Action` objects saying what to do: send this payload to that link or
to the kernel, send the kernel an urgent message, start a kernel, stop it,
write a record, hand a request to the server. It imports no asyncio, socket,
threading or time (the clock is passed in), so that every decision is tested
without processes (tests/property/test_broker_core.py drives it with a
hypothesis state machine). The glue (:mod:`.worker`) feeds it from the links'
callbacks and carries its actions out, in order.

Links are opaque to the core: any hashable value that the glue maps to a
real link. The core never decodes what only passes through, except the head
of each packet (:func:`linkserver.wxf.peek.head_name`).

Theory of operation
-------------------

A *request* is one packet from a client link: ``EvaluatePacket`` (answered
when the kernel sends ``ReturnPacket``), ``EnterTextPacket`` or
``EnterExpressionPacket`` (answered by the closing ``InputNamePacket``). Any
other expression is wrapped as ``EvaluatePacket[expr]`` so a plain
``link.put(expr)`` gets its value back. Requests wait in a
:class:`~.queue.FairQueue` (round robin over links, first in first out
within one) and run one at a time. Every packet the kernel sends while a
request runs goes to that request's link (side output goes only to the link
that asked); the final packet ends the request and the next one starts.

While the kernel waits for ``Input[]`` (it sent ``InputPacket`` or
``InputStringPacket``), the next packet from the asking link is the answer
and goes straight to the kernel, not to the queue.

Every request gets exactly one answer (docs/protocol.md §8.3):

- ABORT from the link that owns the running request goes to the kernel,
  which answers ``$Aborted``; ABORT for a queued request removes the oldest
  one and answers it ``$Aborted`` at once.
- A kernel that dies answers its running request with
  ``MessagePacket[LinkServer, "kerneldied"]``, a ``TextPacket`` saying so and
  ``ReturnPacket[$Failed]``; a fresh kernel is asked for and the queue goes on.
- A link that goes away loses its queued requests; its running request is
  aborted in the kernel and the output is dropped.
- Closing refuses every queued request with ``shutdown``.

Preemptive requests (docs/protocol.md §8.9): ``LinkServer`Preemptive[
EvaluatePacket[e]]`` is not queued behind the running request. If one runs,
the core numbers the new one (a *tag* n), sends the kernel
``LinkServer`Preemptive[n, EvaluatePacket[e]]`` and then the urgent message
PREEMPT n. The kernel wraps every packet of that answer as
``LinkServer`PreemptiveAnswer[n, packet]``; the core unwraps them and sends
them to the link that asked. If nothing runs, a preemptive request goes first
in line and runs as an ordinary one.

Installed functions (docs/protocol.md §8.10): ``LinkServer`Install`` and
``Uninstall`` are checked here and passed to the kernel with the owner's
number; the kernel's ``LinkServer`CallPacket[n, owner, index, {args}]``
becomes a ``CallPacket`` to the owning link, whose ``ReturnPacket`` goes back
as ``LinkServer`CallAnswer[n, packet]``. Requests the owner sends while it
computes are served inside the call (``nested``), one at a time. A call the
kernel gave up on (its evaluation was aborted) still has an answer coming:
it is *stale* and dropped when it arrives.

``$KeepRunning = False`` (any packet form, :func:`.control.is_stop_request`)
is not the kernel's: it becomes a :class:`ServerRequest` action, and the
server decides who may stop it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from .. import wxf
from ..errors import LinkError
from ..install import check_name
from ..protocol import UrgentMessage
from ..protocol import answers
from ..protocol.packets import (
    CALL_ANSWER,
    CALL_FAILED,
    INSTALL,
    KERNEL_CALL,
    PREEMPTIVE,
    PREEMPTIVE_ANSWER,
    UNINSTALL,
    short_name,
)
from ..users import User
from ..wxf.peek import head_name
from .control import is_stop_request
from .queue import FairQueue

__all__ = [
    "Action",
    "DEFAULT_MAX_QUEUED",
    "Idle",
    "KernelCore",
    "KernelUrgent",
    "Record",
    "Request",
    "ServerRequest",
    "StartKernel",
    "StopKernel",
    "TimeLimit",
    "ToClient",
    "ToKernel",
    "as_request",
]

#: Requests one link may have waiting for a kernel (a bound, docs/protocol.md §9).
DEFAULT_MAX_QUEUED = 1000

_EVALUATE_PREFIX = b"8:f\x01s\x0eEvaluatePacket"
_ENTER = frozenset({"EnterTextPacket", "EnterExpressionPacket"})
_INPUT = frozenset({"InputPacket", "InputStringPacket"})


_UNKNOWN = object()


def as_request(payload: bytes, name: str | None | object = _UNKNOWN) -> tuple[bytes, str]:
    """Return ``(payload, final packet head)`` for a client packet, wrapping non-packets.

    ``name`` is the payload's :func:`~linkserver.wxf.peek.head_name`, when the
    caller has looked already (each look decodes the head again).

    Raises:
        WXFDecodeError: a compressed payload that is not valid WXF.
    """
    head = short_name(head_name(payload) if name is _UNKNOWN else name)  # type: ignore[call-overload]
    if head is None and payload[:3] == b"8C:":
        head = short_name(getattr(getattr(wxf.loads(payload), "head", None), "name", None))
    if head in _ENTER:
        return payload, answers.ENTER_FINAL
    if head == "EvaluatePacket":
        return payload, answers.EVALUATE_FINAL
    if payload[:2] == b"8:":
        return _EVALUATE_PREFIX + payload[2:], answers.EVALUATE_FINAL
    return wxf.dumps(wl.EvaluatePacket(wxf.loads(payload))), answers.EVALUATE_FINAL


def _preemptive_packet(expr: object) -> WLFunction | None:
    """Return ``EvaluatePacket[e]`` out of ``LinkServer`Preemptive[EvaluatePacket[e]]``, else None."""
    args: tuple[object, ...] = tuple(getattr(expr, "args", ()))
    if len(args) != 1:
        return None
    inner = args[0]
    if (
        isinstance(inner, WLFunction)
        and isinstance(inner.head, WLSymbol)
        and short_name(inner.head.name) == "EvaluatePacket"
        and len(inner.args) == 1
    ):
        return inner
    return None


# ------------------------------------------------------------------ actions


class Action:
    """Something the glue must do, in the order the core returns them."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ToClient(Action):
    """Send ``payload`` to client ``link`` (drop it if the link is gone meanwhile)."""

    link: Hashable
    payload: bytes


@dataclass(frozen=True, slots=True)
class ToKernel(Action):
    """Send ``payload`` to the kernel."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class KernelUrgent(Action):
    """Send the kernel the urgent message ``message`` with ``argument``."""

    message: int
    argument: int = 0


@dataclass(frozen=True, slots=True)
class StartKernel(Action):
    """Start a kernel; report :meth:`KernelCore.kernel_started` or ``kernel_start_failed``."""


@dataclass(frozen=True, slots=True)
class StopKernel(Action):
    """Stop the kernel for good (the core is closed)."""


@dataclass(frozen=True, slots=True)
class Record(Action):
    """Write the record ``event`` with ``fields`` (docs/logging.md)."""

    event: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServerRequest(Action):
    """``payload`` from ``link`` is for the server itself (``$KeepRunning = False``)."""

    link: Hashable
    payload: bytes


@dataclass(frozen=True, slots=True)
class TimeLimit(Action):
    """Call :meth:`KernelCore.time_limit_passed` with ``serial`` after ``seconds``.

    Asked when a request of a user with ``eval_seconds`` starts; a call that
    comes after the request ended does nothing, so the glue need not cancel it.
    """

    serial: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Idle(Action):
    """Nothing runs and nothing waits (a pool may give the kernel to someone else)."""


_IDLE = Idle()

# ----------------------------------------------------------------- requests


@dataclass(eq=False)
class Request:
    """One request of one link, from queueing to its final packet.

    ``link`` is None for the server's own requests, whose output nobody reads.
    """

    link: Hashable | None
    payload: bytes
    final: str
    answered: bool = field(default=False)
    #: a preemptive request sent to the kernel while another ran: its tag, else 0
    tag: int = field(default=0)
    #: the core's clock when it went to the kernel (the request-done record)
    started: float = field(default=0.0)
    #: the request packet's head, short (the request-done record)
    head: str | None = field(default=None)
    #: its number, when a time limit of its user watches it (:class:`TimeLimit`)
    serial: int = field(default=0)


@dataclass(eq=False)
class _Call:
    """A call of an installed function, from the kernel's CallPacket to its answer."""

    id: int  # the kernel's number of the call
    owner: Hashable | None  # None once the owner is gone
    name: str
    caller: Request
    nested: Request | None = None
    held: deque[bytes] = field(default_factory=deque)


class KernelCore:
    """Every decision about one kernel and the links it serves.

    Args:
        worker_id: the id records and clients know this kernel by (stable
            across restarts of its process).
        clock: seconds, for the ``ms`` of request records (``time.perf_counter``).
        max_queued: requests one link may have waiting; more are answered at
            once with the ``queuefull`` failure (docs/protocol.md §8.3).
        kernel_up: a kernel is already started (else the first action asks for one).
        kernel_id: that kernel's id.
        server_requests: hand ``$KeepRunning = False`` to the server as a
            :class:`ServerRequest` (else it goes to the kernel like any request).
        user_of: the :class:`~linkserver.users.User` a link stands for, whose
            ``queued`` and ``eval_seconds`` limits the core applies; None for none.
    """

    def __init__(
        self,
        worker_id: str,
        *,
        clock: Callable[[], float] = lambda: 0.0,
        max_queued: int = DEFAULT_MAX_QUEUED,
        kernel_up: bool = False,
        kernel_id: str = "",
        server_requests: bool = True,
        user_of: Callable[[Hashable], User | None] | None = None,
    ) -> None:
        self.id = worker_id
        self._user_of = user_of
        self._serial = 0
        self._server_requests = server_requests
        self.max_queued = max_queued
        self._clock = clock
        self._out: list[Action] = []
        self.kernel_up = kernel_up
        self.kernel_id = kernel_id
        self._starting = not kernel_up
        self._lost_kernel: str | None = None
        self._queue: FairQueue[Hashable, Request] = FairQueue()
        self.current: Request | None = None
        self._awaiting_input: Hashable | None = None
        self._gone: set[Hashable] = set()
        self.closed = False
        self.completed = 0
        # Preemptive requests sent to the kernel beside the running one, by tag.
        self._preempting: dict[int, Request] = {}
        self._preempt_tag = 0
        # Installed functions: owners by link and number, names by owner, the
        # calls the kernel waits for (innermost last), and stale answers owed.
        self._owner_ids: dict[Hashable, int] = {}
        self._owners: dict[int, Hashable] = {}
        self._installed: dict[str, int] = {}
        self._function_names: dict[tuple[int, int], str] = {}
        self._calls: list[_Call] = []
        self._stale: dict[Hashable, int] = {}
        self._next_owner = 0
        # Packets taken back from calls, submitted again once the event is handled.
        self._held: list[tuple[Hashable, bytes]] = []

    def initial_actions(self) -> list[Action]:
        """What to do before any event: ask for a kernel if there is none."""
        return [StartKernel()] if self._starting else []

    def _take(self) -> list[Action]:
        if self._gone:
            # A gone link is remembered only while some of its answers are
            # still to come from the kernel (they are consumed, then dropped).
            self._gone = {link for link in self._gone if self._owns_anything(link)}
        out, self._out = self._out, []
        return out

    # --------------------------------------------------------------- status

    @property
    def queued(self) -> int:
        """Requests waiting (not counting the running one)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """True while a request runs or waits."""
        return self.current is not None or bool(self._queue) or bool(self._preempting)

    # ------------------------------------------------------------- kernels

    def kernel_started(self, kernel_id: str, pid: int | None = None) -> list[Action]:
        """A kernel asked for with :class:`StartKernel` is ready."""
        self._starting = False
        if self.closed:
            return [StopKernel()]
        self.kernel_up = True
        self.kernel_id = kernel_id
        if self._lost_kernel is not None:
            self._out.append(Record("kernel-replaced", {
                "worker": self.id, "old": self._lost_kernel, "kernel": kernel_id, "pid": pid,
            }))
            self._lost_kernel = None
        self._dispatch()
        return self._take()

    def kernel_start_failed(self, reason: str) -> list[Action]:
        """A kernel could not be started: the queue is refused (the glue retries)."""
        for _link, request in self._queue.drain():
            self._answer_failure(request, "nokernel", f"no kernel could be started: {reason}")
        return self._take()

    def kernel_died(self, reason: str, pid: int | None = None) -> list[Action]:
        """The kernel's process ended (``reason``: "it was stopped", "its process ended")."""
        if not self.kernel_up:
            return []
        self.kernel_up = False
        self._awaiting_input = None
        request, self.current = self.current, None
        lost = list(self._preempting.values())
        self._preempting.clear()
        # Requests paused under calls die with the kernel too; the definitions are gone.
        lost += [r for r in self._abandon_calls() if r is not request]
        self._installed.clear()
        if self.closed:
            return self._take()
        self._out.append(Record("kernel-died", {
            "kernel": self.kernel_id, "worker": self.id, "pid": pid, "reason": reason,
            "link": request.link if request is not None else None,
        }))
        self._lost_kernel = self.kernel_id
        for each in ([request] if request is not None else []) + lost:
            if each.link is not None:
                self._answer_failure(
                    each, "kerneldied",
                    f"the kernel died while evaluating this request ({reason}); "
                    "a fresh kernel is starting, but definitions made before are gone",
                )
        self._starting = True
        self._out.append(StartKernel())
        self._resubmit_held()
        return self._take()

    # ------------------------------------------------------------ requests

    def client_packet(self, link: Hashable, payload: bytes) -> list[Action]:
        """One packet from ``link``: queued, or passed on as an Input[] or call answer."""
        self._submit(link, payload)
        self._resubmit_held()
        return self._take()

    def _submit(self, link: Hashable, payload: bytes) -> None:
        if link in self._gone:
            return
        if self._awaiting_input == link and self.kernel_up:
            self._awaiting_input = None
            self._out.append(ToKernel(payload))
            return
        if (self._calls or self._stale) and self._route_to_call(link, payload):
            return
        if self.closed:
            self._answer_failure(Request(link, payload, answers.EVALUATE_FINAL), "shutdown",
                                 "the server is shutting down")
            return
        if self._server_requests and is_stop_request(payload):
            self._out.append(ServerRequest(link, payload))
            return
        name = head_name(payload)
        if name == PREEMPTIVE:
            self._submit_preemptive(link, payload)
            return
        request = self._request(link, payload, name)
        if request is None:
            return
        if self._queue.queued(link) >= self.max_queued:
            self._answer_failure(
                request, "queuefull",
                f"this link already has {self.max_queued} requests waiting; wait for "
                "answers before sending more",
            )
            return
        user = self._user_of(link) if self._user_of is not None else None
        if user is not None and user.queued is not None and self._queued_by(user) >= user.queued:
            self._over_limit(request, user, "queued")
            return
        self._queue.push(link, request)
        self._dispatch()

    def _queued_by(self, user: User) -> int:
        """Requests ``user``'s links have waiting in this kernel's queue."""
        user_of = self._user_of
        assert user_of is not None
        return sum(self._queue.queued(link) for link in self._queue.owners()
                   if link is not None and (u := user_of(link)) is not None and u.name == user.name)

    def _over_limit(self, request: Request, user: User, limit: str) -> None:
        self._out.append(Record("user-limit", {"user": user.name, "limit": limit,
                                               "link": request.link, "worker": self.id}))
        self._answer_failure(request, "userlimit", user.over(limit))

    def submit_own(self, payload: bytes) -> list[Action]:
        """Queue a request of the server's own (its output is dropped)."""
        try:
            payload, final = as_request(payload)
        except LinkError:
            return []
        self._queue.push(None, Request(None, payload, final))
        self._dispatch()
        return self._take()

    def _request(self, link: Hashable, payload: bytes, name: str | None) -> Request | None:
        """Return the request ``payload`` makes, or None if it has been answered already."""
        if name == INSTALL or name == UNINSTALL:
            return self._install_request(link, payload, name == INSTALL)
        try:
            wrapped, final = as_request(payload, name)
        except LinkError as exc:
            self._answer_failure(Request(link, payload, answers.EVALUATE_FINAL), "badpacket",
                                 str(exc))
            return None
        # The head the request-done record names: the packet's, or EvaluatePacket
        # for a plain expression the core wrapped.
        head = short_name(name) if wrapped is payload else "EvaluatePacket"
        return Request(link, wrapped, final, head=head)

    def client_message(self, link: Hashable, message: int, argument: int) -> list[Action]:
        """An urgent message from a client link."""
        if message in (UrgentMessage.ABORT, UrgentMessage.INTERRUPT) and link not in self._gone:
            self._abort(link, argument)
        # Other messages are not the client's to send to a kernel it may share.
        return self._take()

    def _abort(self, link: Hashable, argument: int) -> None:
        current = self.current
        # A preemptive request of this link runs (or is about to) ahead of the rest.
        tag = next((t for t, r in self._preempting.items() if r.link == link), 0)
        if tag and self.kernel_up:
            self._out.append(KernelUrgent(UrgentMessage.PREEMPT_ABORT, tag))
            return
        if self.kernel_up and (
            (current is not None and current.link == link)
            or any(c.caller.link == link for c in self._calls)
        ):
            # Also a request paused under a call: the whole evaluation stops.
            self._out.append(KernelUrgent(UrgentMessage.ABORT, argument))
            return
        # Abort the oldest queued request of this link; the others stay queued.
        request = self._queue.take_oldest(link)
        if request is not None:
            self._answer(request, answers.aborted(request.final))

    def link_gone(self, link: Hashable) -> list[Action]:
        """``link`` is gone: drop its queue; abort its running request."""
        self._gone.add(link)
        self._queue.remove_owner(link)  # nobody is left to answer
        if self._awaiting_input == link:
            self._awaiting_input = None
        self._drop_owner(link)
        # The evaluation that runs for this link (a request served inside a call
        # of another link's evaluation is left to finish: its caller waits).
        current = self._calls[0].caller if self._calls else self.current
        if current is not None and current.link == link and self.kernel_up:
            self._out.append(KernelUrgent(UrgentMessage.ABORT))
        for tag, request in list(self._preempting.items()):
            if request.link == link and self.kernel_up:
                # Its answer is still consumed, then dropped.
                self._out.append(KernelUrgent(UrgentMessage.PREEMPT_ABORT, tag))
        self._resubmit_held()
        return self._take()

    def _owns_anything(self, link: Hashable) -> bool:
        if self.current is not None and self.current.link == link:
            return True
        return any(r.link == link for r in self._preempting.values()) or any(
            c.caller.link == link or (c.nested is not None and c.nested.link == link)
            for c in self._calls
        )

    def _dispatch(self) -> None:
        if self.current is not None or not self.kernel_up or not self._queue:
            if self.current is None and not self._queue and not self.closed:
                self._out.append(_IDLE)
            return
        _link, request = self._queue.pop()
        self._start(request)

    def _start(self, request: Request) -> None:
        """Make ``request`` the running one and send it to the kernel."""
        self.current = request
        request.started = self._clock()
        self._out.append(ToKernel(request.payload))
        if self._user_of is not None and request.link is not None:
            user = self._user_of(request.link)
            if user is not None and user.eval_seconds is not None:
                self._serial += 1
                request.serial = self._serial
                self._out.append(TimeLimit(request.serial, user.eval_seconds))

    def time_limit_passed(self, serial: int) -> list[Action]:
        """The :class:`TimeLimit` ``serial`` asked for is up: abort that request if it runs.

        Its link is told why first (``LinkServer::userlimit``, side output);
        the kernel's own ``$Aborted`` then ends the request as any abort does.
        """
        request = self.current
        if self._calls:  # a request paused under a call: the evaluation is its caller's
            request = self._calls[0].caller
        if (request is None or request.serial != serial or request.answered
                or request.link is None or self._user_of is None):
            return self._take()
        user = self._user_of(request.link)
        if user is None or user.eval_seconds is None:
            return self._take()
        self._out.append(Record("user-limit", {"user": user.name, "limit": "eval_seconds",
                                               "link": request.link, "worker": self.id}))
        for packet in answers.message("userlimit", user.over("eval_seconds")):
            self._send(request.link, packet)
        if self.kernel_up:
            self._out.append(KernelUrgent(UrgentMessage.ABORT, 0))
        return self._take()

    # ----------------------------------------------------- kernel's packets

    def kernel_packet(self, payload: bytes) -> list[Action]:
        """One packet from the kernel."""
        name = head_name(payload)
        if name == PREEMPTIVE_ANSWER:
            self._from_kernel_preemptive(payload)
        elif name == KERNEL_CALL:
            self._kernel_call(payload)
        else:
            self._from_kernel(payload, short_name(name))
        self._resubmit_held()
        return self._take()

    def _send(self, link: Hashable | None, payload: bytes) -> None:
        if link is not None and link not in self._gone:
            self._out.append(ToClient(link, payload))

    def _from_kernel(self, payload: bytes, head: str | None) -> None:
        request = self.current
        if request is None:
            return  # nothing runs: a stray packet of a request already answered
        link = request.link
        self._send(link, payload)  # a client that left: keep consuming until the final packet
        if head in _INPUT and link is not None:
            self._awaiting_input = link
        elif head == request.final:
            if self._awaiting_input == link:  # answered (aborted) while it waited for input
                self._awaiting_input = None
            self._out.append(Record("request-done", {
                "link": link, "worker": self.id,
                "head": request.head if request.head is not None
                else short_name(head_name(request.payload)),
                "ms": (self._clock() - request.started) * 1000 if request.started else None,
            }))
            request.answered = True
            self.completed += 1
            if self._calls and self._end_in_call(request):
                return
            self.current = None
            self._dispatch()

    def _from_kernel_preemptive(self, payload: bytes) -> None:
        # LinkServer`PreemptiveAnswer[n, packet]: to the link of request n.
        try:
            answer: Any = wxf.loads(payload)
            tag, packet = answer.args
            request = self._preempting.get(tag)
        except (LinkError, AttributeError, ValueError, TypeError):
            self._out.append(Record("kernel-bad-packet", {"worker": self.id,
                                                          "what": "preemptive answer"}))
            return
        if request is None:
            return  # its link went away and it was aborted: nobody waits
        self._send(request.link, wxf.dumps(packet))
        if short_name(getattr(getattr(packet, "head", None), "name", None)) == request.final:
            request.answered = True
            del self._preempting[tag]
            self.completed += 1

    # ------------------------------------------------------- preemptive

    def _submit_preemptive(self, link: Hashable, payload: bytes) -> None:
        """Serve ``LinkServer`Preemptive[EvaluatePacket[e]]`` ahead of the queue (§8.9)."""
        refused = Request(link, payload, answers.EVALUATE_FINAL)
        try:
            inner = _preemptive_packet(wxf.loads(payload))
        except LinkError as exc:
            self._answer_failure(refused, "badpacket", str(exc))
            return
        if inner is None:
            self._answer_failure(
                refused, "badpacket",
                f"only an evaluation can be preemptive: send {PREEMPTIVE}[EvaluatePacket[expr]]",
            )
            return
        request = Request(link, wxf.dumps(inner), answers.EVALUATE_FINAL)
        if self.current is None or not self.kernel_up:
            self._queue.push_first(link, request)  # nothing to preempt: first in line
            self._dispatch()
            return
        self._preempt_tag += 1
        request.tag = self._preempt_tag
        self._preempting[request.tag] = request
        self._out.append(ToKernel(wxf.dumps(WLFunction(WLSymbol(PREEMPTIVE), request.tag, inner))))
        # After the payload, so it is on the kernel's link when the flag is seen.
        self._out.append(KernelUrgent(UrgentMessage.PREEMPT, request.tag))

    # ------------------------------------------------ installed functions

    def _install_request(self, link: Hashable, payload: bytes, install: bool) -> Request | None:
        """``LinkServer`Install["name", index]`` / ``LinkServer`Uninstall["name"]`` (§8.10)."""
        request = Request(link, payload, answers.EVALUATE_FINAL)
        usage = f'send {INSTALL}["name", index]' if install else f'send {UNINSTALL}["name"]'
        try:
            args: tuple[Any, ...] = tuple(getattr(wxf.loads(payload), "args", ()))
        except LinkError as exc:
            self._answer_failure(request, "badpacket", str(exc))
            return None
        if len(args) != (2 if install else 1) or (
            install and (type(args[1]) is not int or not 0 <= args[1] < 2**31)
        ):
            self._answer_failure(request, "badinstall", f"a malformed request: {usage}")
            return None
        name = args[0]
        why = check_name(name)
        if why is not None:
            self._answer_failure(request, "badinstall", why)
            return None
        holder = self._owners.get(self._installed.get(name, 0))
        if holder is not None and holder != link:
            self._answer_failure(
                request, "notowner",
                f"{name} is installed by another client; only that client can "
                f"{'replace' if install else 'uninstall'} it",
            )
            return None
        if not install and holder is None:
            self._answer_failure(request, "notowner", f"{name} is not installed by this client")
            return None
        owner = self._owner_ids.get(link)
        if owner is None:  # numbers are never reused: a gone owner's calls fail
            self._next_owner += 1
            owner = self._owner_ids[link] = self._next_owner
            self._owners[owner] = link
        if install:
            self._installed[name] = owner
            self._function_names[owner, args[1]] = name
            expr = WLFunction(WLSymbol(INSTALL), owner, name, args[1])
        else:
            del self._installed[name]
            expr = WLFunction(WLSymbol(UNINSTALL), owner, name)
        request.payload = wxf.dumps(expr)
        return request

    def _kernel_call(self, payload: bytes) -> None:
        """The kernel calls an installed function: ``LinkServer`CallPacket[n, owner, index, {args}]``."""
        try:
            expr: Any = wxf.loads(payload)
            call_id, owner_id, index, args = expr.args
        except (LinkError, AttributeError, ValueError):
            self._out.append(Record("kernel-bad-packet", {"worker": self.id, "what": "call"}))
            return
        caller = self.current
        if caller is None:
            self._out.append(Record("kernel-bad-packet", {"worker": self.id,
                                                          "what": "call with no request"}))
            return
        owner = self._owners.get(owner_id)
        name = self._function_names.get((owner_id, index), "the installed function")
        call = _Call(call_id, owner, name, caller)
        self._calls.append(call)
        if owner is None or owner in self._gone:
            self._fail_call(call)
            return
        self._out.append(ToClient(owner, wxf.dumps(WLFunction(WLSymbol("CallPacket"), index, args))))

    def _fail_call(self, call: _Call) -> None:
        """Answer the innermost call, whose owner is gone, with ``nocallee``."""
        self._calls.pop()
        text = f"{call.name} cannot be called: the client that installed it has disconnected"
        self._answer_call(call, wxf.dumps(WLFunction(WLSymbol(CALL_FAILED), "nocallee", text)))

    def _answer_call(self, call: _Call, packet: bytes) -> None:
        # LinkServer`CallAnswer[n, packet], spliced without decoding the packet.
        if packet[:2] == b"8:":
            prefix = wxf.dumps(WLFunction(WLSymbol(CALL_ANSWER), call.id, 0))[:-2]
            data = prefix + packet[2:]
        else:
            data = wxf.dumps(WLFunction(WLSymbol(CALL_ANSWER), call.id, wxf.loads(packet)))
        if self.kernel_up:
            self._out.append(ToKernel(data))

    def _route_to_call(self, link: Hashable, payload: bytes) -> bool:
        """Pass a packet of a link that owes a call its answer; True if it was taken."""
        for call in reversed(self._calls):
            if call.owner == link:
                if call.nested is None and call is self._calls[-1]:
                    self._to_call(call, payload)
                else:
                    call.held.append(payload)  # after the request served in the call
                return True
        stale = self._stale.get(link, 0)
        if stale and short_name(head_name(payload)) == "ReturnPacket":
            # The answer to a call the kernel gave up on (it was aborted).
            if stale > 1:
                self._stale[link] = stale - 1
            else:
                del self._stale[link]
            return True
        return False

    def _to_call(self, call: _Call, payload: bytes) -> None:
        """A packet from the owner of the innermost call, which waits for its answer."""
        assert call.owner is not None
        name = head_name(payload)
        if short_name(name) == "ReturnPacket":
            self._calls.pop()
            self._answer_call(call, payload)
            return
        if name == PREEMPTIVE:
            self._submit_preemptive(call.owner, payload)
            return
        if self.closed:
            self._answer_failure(Request(call.owner, payload, answers.EVALUATE_FINAL),
                                 "shutdown", "the server is shutting down")
            return
        # A request while the client computes (a callback evaluating back):
        # served inside the call, at once.
        request = self._request(call.owner, payload, name)
        if request is None or not self.kernel_up:
            return
        call.nested = request
        self._start(request)

    def _end_in_call(self, request: Request) -> bool:
        """``request`` was answered while calls wait: True if it was served inside one."""
        resubmit = self._pop_calls_of(request)
        served_in_call = False
        if self._calls and self._calls[-1].nested is request:
            call = self._calls[-1]
            call.nested = None
            self.current = call.caller
            served_in_call = True
            while call.held and call.nested is None and self._calls and self._calls[-1] is call:
                self._to_call(call, call.held.popleft())
            if call.held and call not in self._calls:  # answered: the rest are requests
                resubmit.extend((call.owner, p) for p in call.held if call.owner is not None)
                call.held.clear()
            if self._calls and self._calls[-1] is call and call.nested is None and (
                call.owner is None or call.owner in self._gone
            ):
                self._fail_call(call)
        self._held.extend(resubmit)
        return served_in_call

    def _pop_calls_of(self, request: Request) -> list[tuple[Hashable, bytes]]:
        """Drop the calls ``request`` made that the kernel gave up on; return held packets."""
        resubmit: list[tuple[Hashable, bytes]] = []
        while self._calls and self._calls[-1].caller is request:
            resubmit.extend(self._drop_call(self._calls.pop()))
        return resubmit

    def _drop_call(self, call: _Call) -> list[tuple[Hashable, bytes]]:
        owner = call.owner
        if owner is None or owner in self._gone:
            return []
        answered = False
        resubmit = []
        for payload in call.held:
            if not answered and short_name(head_name(payload)) == "ReturnPacket":
                answered = True
            else:
                resubmit.append((owner, payload))
        if not answered:
            self._stale[owner] = self._stale.get(owner, 0) + 1
        return resubmit

    def _abandon_calls(self) -> list[Request]:
        """Drop every call (the kernel died or the core closes); return the requests paused."""
        paused: list[Request] = []
        while self._calls:
            call = self._calls.pop()
            self._held.extend(self._drop_call(call))
            for request in (call.nested, call.caller):
                if request is not None and not request.answered and request not in paused:
                    paused.append(request)
        return paused

    def _resubmit_held(self) -> None:
        while self._held:
            link, payload = self._held.pop(0)
            self._submit(link, payload)

    def _drop_owner(self, link: Hashable) -> None:
        """``link`` is gone: its functions are uninstalled; calls to them fail ``nocallee``."""
        owner = self._owner_ids.pop(link, None)
        if owner is not None:
            del self._owners[owner]
            for name in [n for n, o in self._installed.items() if o == owner]:
                del self._installed[name]
        self._stale.pop(link, None)
        for call in self._calls:
            if call.owner == link:
                call.owner = None
                call.held.clear()
        if self._calls:
            top = self._calls[-1]
            if top.owner is None and top.nested is None:
                self._fail_call(top)

    # -------------------------------------------------------------- answers

    def _answer(self, request: Request, packets: Iterable[bytes]) -> None:
        request.answered = True
        for payload in packets:
            self._send(request.link, payload)

    def _answer_failure(self, request: Request, tag: str, text: str) -> None:
        self._out.append(Record("request-failed", {"link": request.link, "worker": self.id,
                                                   "tag": tag}))
        self._answer(request, answers.failure(request.final, tag, text))

    # -------------------------------------------------------------- closing

    @property
    def waiting_on_client(self) -> bool:
        """True while the running request waits for the client's input (culling: idle)."""
        return self._awaiting_input is not None

    def close(
        self, reason: str = "the server is shutting down", tag: str = "shutdown"
    ) -> list[Action]:
        """Refuse queued requests, answer the running ones (failure ``tag``), stop the kernel."""
        if self.closed:
            return []
        self.closed = True
        for _link, request in self._queue.drain():
            self._answer_failure(request, tag, reason)
        if self.current is not None:
            self._answer_failure(self.current, tag, reason)
        for request in self._abandon_calls():
            if request is not self.current:
                self._answer_failure(request, tag, reason)
        self._held.clear()
        self.current = None
        for request in self._preempting.values():
            self._answer_failure(request, tag, reason)
        self._preempting.clear()
        self.kernel_up = False
        self._out.append(StopKernel())
        return self._take()
