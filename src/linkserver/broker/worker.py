"""One kernel at work: run its requests one at a time, route its packets back.

A :class:`KernelWorker` owns one kernel (through a launcher, which replaces it
when it dies) and a :class:`~.queue.FairQueue` of requests from the links it
serves -- every link in shared mode, one link in pool mode. It never decodes
what passes through except the head of each packet (:func:`wxf.peek.head_name`).

Theory of operation
-------------------

A *request* is one packet from a client link: ``EvaluatePacket`` (answered
when the kernel sends ``ReturnPacket``), ``EnterTextPacket`` or
``EnterExpressionPacket`` (answered by the closing ``InputNamePacket``). Any
other expression is wrapped as ``EvaluatePacket[expr]`` so a plain
``link.put(expr)`` gets its value back. Every packet the kernel sends while a
request runs goes to that request's link (side output goes only to the link
that asked); the final packet ends the request and the next one starts.

While the kernel waits for ``Input[]`` (it sent ``InputPacket`` or
``InputStringPacket``), the next packet from the asking link is the answer
and goes straight to the kernel, not to the queue.

Every request gets exactly one answer (docs/protocol.md §8.3):

- ABORT from the link that owns the running request goes to the kernel,
  which answers ``$Aborted``; ABORT for a queued request removes it and
  answers ``$Aborted`` at once.
- A kernel that dies answers its running request with
  ``MessagePacket[LinkServer, "kerneldied"]``, a ``TextPacket`` saying so and
  ``ReturnPacket[$Failed]``; a fresh kernel is started and the queue goes on.
- A link that goes away loses its queued requests; its running request is
  aborted in the kernel and the output is dropped.
- Closing the worker refuses every queued request with ``shutting down``.

Preemptive requests (docs/protocol.md §8.9): ``LinkServer`Preemptive[
EvaluatePacket[e]]`` from a client is not queued behind the running request.
If a request is running in the kernel, the worker numbers it (a *tag* n),
sends the kernel ``LinkServer`Preemptive[n, EvaluatePacket[e]]`` at once and
then the urgent message PREEMPT n, which makes a Mathics3 kernel serve it at
the running evaluation's next safe point (a kernel that cannot preempt, the
Wolfram Engine, finds it first in line on its link when the running request
ends). The kernel wraps every packet of that answer as
``LinkServer`PreemptiveAnswer[n, packet]``; the worker unwraps them and sends
them to the link that asked, whatever request is ``current``. Requests in
flight this way wait in ``_preempting`` until their ``ReturnPacket``: a
kernel that dies answers them ``kerneldied``, closing answers them
``shutdown``, an ABORT from their link becomes PREEMPT_ABORT n, and a link
that goes away has them aborted. If no request is running, a preemptive
request simply goes first in line and runs as an ordinary one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from .. import records, wxf
from ..aio.link import Link
from ..errors import LinkError
from ..install import check_name
from ..launcher import KernelError, KernelHandle, KernelLauncher
from ..protocol import UrgentMessage
from ..protocol.packets import (
    CALL_ANSWER,
    CALL_FAILED,
    INSTALL,
    KERNEL_CALL,
    PREEMPTIVE,
    PREEMPTIVE_ANSWER,
    UNINSTALL,
)
from ..wxf.peek import head_name
from .control import Control
from .queue import FairQueue

__all__ = ["DEFAULT_MAX_QUEUED", "KernelWorker", "Request"]

#: Requests one link may have waiting for a kernel (a bound, docs/protocol.md §9).
DEFAULT_MAX_QUEUED = 1000

log = logging.getLogger("linkserver.broker")

_EVALUATE_PREFIX = b"8:f\x01s\x0eEvaluatePacket"
_ENTER = frozenset({"EnterTextPacket", "EnterExpressionPacket"})
_INPUT = frozenset({"InputPacket", "InputStringPacket"})
_REQUESTS = frozenset({"EvaluatePacket"}) | _ENTER


def _short(name: str | None) -> str | None:
    return name.rpartition("`")[2] if name else name


def as_request(payload: bytes) -> tuple[bytes, str]:
    """Return ``(payload, final packet head)`` for a client packet, wrapping non-packets.

    Raises:
        WXFDecodeError: a compressed payload that is not valid WXF.
    """
    head = _short(head_name(payload))
    if head is None and payload[:3] == b"8C:":
        head = _short(getattr(getattr(wxf.loads(payload), "head", None), "name", None))
    if head in _ENTER:
        return payload, "InputNamePacket"
    if head == "EvaluatePacket":
        return payload, "ReturnPacket"
    if payload[:2] == b"8:":
        return _EVALUATE_PREFIX + payload[2:], "ReturnPacket"
    return wxf.dumps(wl.EvaluatePacket(wxf.loads(payload))), "ReturnPacket"


def _preemptive_packet(expr: object) -> WLFunction | None:
    """Return ``EvaluatePacket[e]`` out of ``LinkServer`Preemptive[EvaluatePacket[e]]``, else None."""
    args: tuple[object, ...] = tuple(getattr(expr, "args", ()))
    if len(args) != 1:
        return None
    inner = args[0]
    if (
        isinstance(inner, WLFunction)
        and isinstance(inner.head, WLSymbol)
        and _short(inner.head.name) == "EvaluatePacket"
        and len(inner.args) == 1
    ):
        return inner
    return None


@dataclass(eq=False)
class Request:
    """One request of one link, from queueing to its final packet.

    ``link`` is None for the server's own requests (a pool's start-up code),
    whose output nobody reads.
    """

    link: Link | None
    payload: bytes
    final: str
    answered: bool = field(default=False)
    #: a preemptive request sent to the kernel while another ran: its tag, else 0
    tag: int = field(default=0)
    #: time.perf_counter() when it went to the kernel (the request-done record)
    started: float = field(default=0.0)


@dataclass(eq=False)
class _Call:
    """A call of an installed function, from the kernel's CallPacket to its answer.

    The kernel waits for the answer inside the evaluation of ``caller``; the
    requests the owner sends meanwhile are served there (``nested``, one at a
    time; the rest wait in ``held``).
    """

    id: int  # the kernel's number of the call
    owner: Link | None  # None once the owner is gone
    name: str
    caller: Request
    nested: Request | None = None
    held: deque[bytes] = field(default_factory=deque)


class KernelWorker:
    """Runs requests on one kernel, restarting the kernel when it dies.

    Args:
        launcher: where kernels come from.
        kernel: a kernel already started, or None to start one.
        on_idle: called when the queue runs empty (pool mode uses it).
        control: sees each request first and may answer it itself (the server's
            own requests, such as ``$KeepRunning = False``).
        max_queued: requests one link may have waiting; more are answered at
            once with the ``queuefull`` failure (docs/protocol.md §8.3).
    """

    def __init__(
        self,
        launcher: KernelLauncher,
        kernel: KernelHandle | None = None,
        *,
        on_idle: Callable[[KernelWorker], None] | None = None,
        control: Control | None = None,
        max_queued: int = DEFAULT_MAX_QUEUED,
    ) -> None:
        self._launcher = launcher
        self.max_queued = max_queued
        self.kernel: KernelHandle | None = None
        self._queue: FairQueue[Link, Request] = FairQueue()
        self.current: Request | None = None
        self._awaiting_input: Link | None = None
        self._starting: asyncio.Task[None] | None = None
        self._closed = False
        self._on_idle = on_idle
        self._control = control
        self.completed = 0
        # Preemptive requests sent to the kernel beside the running one, by tag.
        self._preempting: dict[int, Request] = {}
        self._preempt_tag = 0
        # Installed functions (docs/protocol.md §8.10): owners by link and number,
        # names by owner, and the calls the kernel waits for (innermost last).
        self._owner_ids: dict[Link, int] = {}
        self._owners: dict[int, Link] = {}
        self._installed: dict[str, int] = {}  # name -> owner number
        self._function_names: dict[tuple[int, int], str] = {}  # (owner, index) -> name
        self._calls: list[_Call] = []
        self._stale: dict[Link, int] = {}  # answers owed for calls the kernel gave up on
        self._next_owner = 0
        #: what clients call this kernel: stable across restarts of its process
        self.id = uuid.uuid4().hex[:12]
        self._lost_kernel: str | None = None  # the id of the kernel a restart replaces
        if kernel is not None:
            self._adopt(kernel)
        else:
            self._restart()

    # ------------------------------------------------------------- kernels

    def _adopt(self, kernel: KernelHandle) -> None:
        self.kernel = kernel
        kernel.link.set_receiver(self._from_kernel)
        kernel.link.on_end(lambda _link: self._kernel_died(kernel))
        # The pool's start-up code already ran in the launcher, while the kernel warmed.
        self._dispatch()

    def _restart(self) -> None:
        if self._closed or self._starting is not None:
            return
        self._starting = asyncio.ensure_future(self._start_kernel())

    async def _start_kernel(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                kernel = await self._launcher.launch()
            except KernelError as exc:
                records.event("kernel-start-failed", worker=self.id, reason=exc, retry_s=delay)
                self._fail_queued(f"no kernel could be started: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._starting = None
            if self._closed:
                kernel.link.close_nowait()
                kernel.kill()
                return
            if self._lost_kernel is not None:
                records.event("kernel-replaced", worker=self.id, old=self._lost_kernel,
                              kernel=kernel.id, pid=kernel.pid)
                self._lost_kernel = None
            self._adopt(kernel)
            return

    def _kernel_died(self, kernel: KernelHandle) -> None:
        if kernel is not self.kernel:
            return
        self.kernel = None
        self._awaiting_input = None
        request, self.current = self.current, None
        preempting = list(self._preempting.values())
        self._preempting.clear()
        # Requests paused under calls die with the kernel too; the definitions are gone.
        preempting += [r for r in self._abandon_calls() if r is not request]
        self._installed.clear()
        if self._closed:
            return
        reason = "it was stopped" if kernel.killed else "its process ended"
        records.event("kernel-died", kernel=kernel.id, worker=self.id, pid=kernel.pid,
                      reason=reason, link=records.link_ref(request.link) if request and
                      request.link else None)
        self._lost_kernel = kernel.id
        for lost in ([request] if request is not None else []) + preempting:
            if lost.link is not None:
                self._answer_failure(
                    lost,
                    "kerneldied",
                    f"the kernel died while evaluating this request ({reason}); "
                    "a fresh kernel is starting, but definitions made before are gone",
                )
        self._restart()

    # ------------------------------------------------------------ requests

    def attach(self, link: Link) -> None:
        """Serve ``link``'s requests from now on."""
        link.set_receiver(lambda payload: self.submit(link, payload))
        link.on_message(lambda message, arg: self.message(link, message, arg))
        link.on_end(self.detach)

    def submit(self, link: Link, payload: bytes) -> None:
        """Queue one packet from ``link`` (or pass it on as an Input[] answer)."""
        if self._awaiting_input is link and self.kernel is not None:
            self._awaiting_input = None
            self.kernel.link.put_payload_nowait(payload)
            return
        if (self._calls or self._stale) and self._route_to_call(link, payload):
            return
        if self._closed:
            self._answer_failure(
                Request(link, payload, "ReturnPacket"), "shutdown", "the server is shutting down"
            )
            return
        if self._control is not None and self._control(link, payload):
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
        self._queue.push(link, request)
        self._dispatch()

    def _request(self, link: Link, payload: bytes, name: str | None) -> Request | None:
        """Return the request ``payload`` makes, or None if it has been answered already."""
        if name == INSTALL or name == UNINSTALL:
            return self._install_request(link, payload, name == INSTALL)
        try:
            payload, final = as_request(payload)
        except LinkError as exc:
            self._answer_failure(Request(link, payload, "ReturnPacket"), "badpacket", str(exc))
            return None
        return Request(link, payload, final)

    # ------------------------------------------------ installed functions

    def _install_request(self, link: Link, payload: bytes, install: bool) -> Request | None:
        """``LinkServer`Install["name", index]`` / ``LinkServer`Uninstall["name"]`` (§8.10)."""
        request = Request(link, payload, "ReturnPacket")
        usage = (f'send {INSTALL}["name", index]' if install
                 else f'send {UNINSTALL}["name"]')
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
        if holder is not None and holder is not link:
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
            log.warning("! kernel sent a malformed call; dropped")
            return
        caller = self.current
        owner = self._owners.get(owner_id)
        name = self._function_names.get((owner_id, index), "the installed function")
        if caller is None:
            log.warning("! kernel called %s with no request running", name)
            return
        call = _Call(call_id, owner, name, caller)
        self._calls.append(call)
        if owner is None or owner.closed:
            self._fail_call(call)
            return
        try:
            owner.put_payload_nowait(wxf.dumps(WLFunction(WLSymbol("CallPacket"), index, args)))
        except LinkError:
            self._fail_call(call)

    def _fail_call(self, call: _Call) -> None:
        """Answer the innermost call, whose owner is gone, with ``nocallee``."""
        self._calls.pop()
        text = (f"{call.name} cannot be called: the client that installed it has "
                "disconnected")
        self._answer_call(call, wxf.dumps(WLFunction(WLSymbol(CALL_FAILED), "nocallee", text)))

    def _answer_call(self, call: _Call, packet: bytes) -> None:
        # LinkServer`CallAnswer[n, packet], spliced without decoding the packet.
        if packet[:2] == b"8:":
            prefix = wxf.dumps(WLFunction(WLSymbol(CALL_ANSWER), call.id, 0))[:-2]
            data = prefix + packet[2:]
        else:
            data = wxf.dumps(WLFunction(WLSymbol(CALL_ANSWER), call.id, wxf.loads(packet)))
        if self.kernel is not None:
            try:
                self.kernel.link.put_payload_nowait(data)
            except LinkError:
                pass  # the kernel is going: _kernel_died answers the request

    def _route_to_call(self, link: Link, payload: bytes) -> bool:
        """Pass a packet of a link that owes a call its answer; True if it was taken."""
        for call in reversed(self._calls):
            if call.owner is link:
                if call.nested is None and call is self._calls[-1]:
                    self._to_call(call, payload)
                else:
                    call.held.append(payload)  # after the request served in the call
                return True
        stale = self._stale.get(link, 0)
        if stale and _short(head_name(payload)) == "ReturnPacket":
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
        if _short(name) == "ReturnPacket":
            self._calls.pop()
            self._answer_call(call, payload)
            return
        if name == PREEMPTIVE:
            self._submit_preemptive(call.owner, payload)
            return
        if self._closed:
            self._answer_failure(
                Request(call.owner, payload, "ReturnPacket"), "shutdown",
                "the server is shutting down",
            )
            return
        # A request while the client computes (a callback evaluating back):
        # served inside the call, at once.
        request = self._request(call.owner, payload, name)
        if request is None or self.kernel is None:
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
                call.owner is None or call.owner.closed
            ):
                self._fail_call(call)
        for link, payload in resubmit:
            self.submit(link, payload)
        return served_in_call

    def _pop_calls_of(self, request: Request) -> list[tuple[Link, bytes]]:
        """Drop the calls ``request`` made that the kernel gave up on; return held packets."""
        resubmit: list[tuple[Link, bytes]] = []
        while self._calls and self._calls[-1].caller is request:
            resubmit.extend(self._drop_call(self._calls.pop()))
        return resubmit

    def _drop_call(self, call: _Call) -> list[tuple[Link, bytes]]:
        owner = call.owner
        if owner is None or owner.closed:
            return []
        answered = False
        resubmit = []
        for payload in call.held:
            if not answered and _short(head_name(payload)) == "ReturnPacket":
                answered = True
            else:
                resubmit.append((owner, payload))
        if not answered:
            self._stale[owner] = self._stale.get(owner, 0) + 1
        return resubmit

    def _abandon_calls(self) -> list[Request]:
        """Drop every call (the kernel died or the worker closes); return the requests paused."""
        paused: list[Request] = []
        resubmit: list[tuple[Link, bytes]] = []
        while self._calls:
            call = self._calls.pop()
            resubmit.extend(self._drop_call(call))
            for request in (call.nested, call.caller):
                if request is not None and not request.answered and request not in paused:
                    paused.append(request)
        if resubmit:
            loop = asyncio.get_running_loop()
            for link, payload in resubmit:
                loop.call_soon(self.submit, link, payload)
        return paused

    def _drop_owner(self, link: Link) -> None:
        """``link`` is gone: its functions are uninstalled; calls to them fail ``nocallee``."""
        owner = self._owner_ids.pop(link, None)
        if owner is not None:
            del self._owners[owner]
            for name in [n for n, o in self._installed.items() if o == owner]:
                del self._installed[name]
        self._stale.pop(link, None)
        for call in self._calls:
            if call.owner is link:
                call.owner = None
                call.held.clear()
        if self._calls:
            top = self._calls[-1]
            if top.owner is None and top.nested is None:
                self._fail_call(top)

    def _submit_preemptive(self, link: Link, payload: bytes) -> None:
        """Serve ``LinkServer`Preemptive[EvaluatePacket[e]]`` ahead of the queue (§8.9)."""
        try:
            inner = _preemptive_packet(wxf.loads(payload))
        except LinkError as exc:
            self._answer_failure(Request(link, payload, "ReturnPacket"), "badpacket", str(exc))
            return
        if inner is None:
            self._answer_failure(
                Request(link, payload, "ReturnPacket"),
                "badpacket",
                f"only an evaluation can be preemptive: send {PREEMPTIVE}[EvaluatePacket[expr]]",
            )
            return
        request = Request(link, wxf.dumps(inner), "ReturnPacket")
        kernel = self.kernel
        if self.current is None or kernel is None:
            # Nothing to preempt: first in line.
            self._queue.push_first(link, request)
            self._dispatch()
            return
        self._preempt_tag += 1
        request.tag = self._preempt_tag
        self._preempting[request.tag] = request
        try:
            kernel.link.put_payload_nowait(
                wxf.dumps(WLFunction(WLSymbol(PREEMPTIVE), request.tag, inner))
            )
            # After the payload, so it is on the kernel's link when the flag is seen.
            kernel.link.send_message_nowait(UrgentMessage.PREEMPT, request.tag)
        except LinkError:
            pass  # the kernel's link is ending: _kernel_died answers the request

    def message(self, link: Link, message: UrgentMessage | int, argument: int) -> None:
        """An urgent message from a client link."""
        current = self.current
        if message in (UrgentMessage.ABORT, UrgentMessage.INTERRUPT):
            # A preemptive request of this link runs (or is about to) ahead of the rest.
            tag = next((t for t, r in self._preempting.items() if r.link is link), 0)
            if tag and self.kernel is not None:
                try:
                    self.kernel.link.send_message_nowait(UrgentMessage.PREEMPT_ABORT, tag)
                except LinkError:
                    pass
                return
            if self.kernel is not None and (
                (current is not None and current.link is link) or any(
                    c.caller.link is link for c in self._calls)
            ):
                # Also a request paused under a call: the whole evaluation stops.
                try:
                    self.kernel.link.send_message_nowait(UrgentMessage.ABORT, argument)
                except LinkError:
                    pass  # the kernel is going: _kernel_died answers the request
                return
            # Abort the oldest queued request of this link; the others stay queued.
            request = self._queue.take_oldest(link)
            if request is not None:
                self._answer_aborted(request)
        # Other messages are not the client's to send to a kernel it may share.

    def detach(self, link: Link) -> None:
        """``link`` is gone: drop its queue; abort its running request."""
        for _request in self._queue.remove_owner(link):
            pass  # nobody is left to answer
        if self._awaiting_input is link:
            self._awaiting_input = None
        self._drop_owner(link)
        # The evaluation that runs for this link (a request served inside a call
        # of another link's evaluation is left to finish: its caller waits).
        current = self._calls[0].caller if self._calls else self.current
        if current is not None and current.link is link and self.kernel is not None:
            try:
                self.kernel.link.send_message_nowait(UrgentMessage.ABORT)
            except LinkError:
                pass
        for tag, request in list(self._preempting.items()):
            if request.link is link and self.kernel is not None:
                try:  # its answer is still consumed, then dropped
                    self.kernel.link.send_message_nowait(UrgentMessage.PREEMPT_ABORT, tag)
                except LinkError:
                    pass

    def _dispatch(self) -> None:
        if self.current is not None or self.kernel is None or not self._queue:
            if self.current is None and not self._queue and self._on_idle is not None:
                self._on_idle(self)
            return
        _link, request = self._queue.pop()
        self._start(request)

    def _start(self, request: Request) -> None:
        """Make ``request`` the running one and send it to the kernel."""
        assert self.kernel is not None
        self.current = request
        request.started = time.perf_counter()
        try:
            self.kernel.link.put_payload_nowait(request.payload)
        except LinkError:
            pass  # the kernel's link is ending: _kernel_died answers the request

    def _from_kernel(self, payload: bytes) -> None:
        name = head_name(payload)
        if name == PREEMPTIVE_ANSWER:
            self._from_kernel_preemptive(payload)
            return
        if name == KERNEL_CALL:
            self._kernel_call(payload)
            return
        request = self.current
        if request is None:
            log.debug("! kernel sent a packet with no request running; dropped")
            return
        head = _short(head_name(payload))
        link = request.link
        if link is not None and not link.closed:
            try:
                link.put_payload_nowait(payload)
            except LinkError:
                pass  # the client left; keep consuming until the final packet
        if head in _INPUT and link is not None:
            self._awaiting_input = link
        elif head == request.final:
            if records.enabled("request-done"):
                records.event("request-done", link=records.link_ref(link) if link else None,
                              worker=self.id, head=_short(head_name(request.payload)),
                              ms=(time.perf_counter() - request.started) * 1000
                              if request.started else None)
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
            log.warning("! kernel sent a malformed preemptive answer; dropped")
            return
        if request is None:
            log.debug("! kernel answered preemptive request %r, which nobody waits for", tag)
            return
        link = request.link
        if link is not None and not link.closed:
            try:
                link.put_payload_nowait(wxf.dumps(packet))
            except LinkError:
                pass  # the client left; keep consuming until the final packet
        if _short(getattr(getattr(packet, "head", None), "name", None)) == request.final:
            request.answered = True
            del self._preempting[tag]
            self.completed += 1

    # -------------------------------------------------------------- answers

    def _answer(self, request: Request, packets: list[object]) -> None:
        request.answered = True
        link = request.link
        if link is None or link.closed:
            return
        try:
            for packet in packets:
                link.put_payload_nowait(wxf.dumps(packet))
        except LinkError:
            pass

    def _final(self, request: Request, value: str) -> list[object]:
        # The packets that end a request of this kind (docs/protocol.md §8.3).
        if request.final == "InputNamePacket":
            return [wl.ReturnTextPacket(value), wl.InputNamePacket("In[?]:= ")]
        return [wl.ReturnPacket(WLSymbol(value))]

    def _answer_failure(self, request: Request, tag: str, text: str) -> None:
        link = request.link
        records.event("request-failed", link=records.link_ref(link) if link else None,
                      worker=self.id, tag=tag)
        self._answer(
            request,
            [wl.MessagePacket(wl.LinkServer, tag), wl.TextPacket(f"LinkServer::{tag}: {text}")]
            + self._final(request, "$Failed"),
        )

    def _answer_aborted(self, request: Request) -> None:
        self._answer(request, self._final(request, "$Aborted"))

    def _fail_queued(self, text: str) -> None:
        for _link, request in self._queue.drain():
            self._answer_failure(request, "nokernel", text)

    # --------------------------------------------------------------- status

    @property
    def queued(self) -> int:
        """Requests waiting (not counting the running one)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """True while a request runs or waits."""
        return self.current is not None or bool(self._queue) or bool(self._preempting)

    async def aclose(self, reason: str = "the server is shutting down") -> None:
        """Refuse queued requests, answer the running one, stop the kernel."""
        self._closed = True
        for _link, request in self._queue.drain():
            self._answer_failure(request, "shutdown", reason)
        if self.current is not None:
            self._answer_failure(self.current, "shutdown", reason)
        for request in self._abandon_calls():
            if request is not self.current:
                self._answer_failure(request, "shutdown", reason)
        self.current = None
        for request in self._preempting.values():
            self._answer_failure(request, "shutdown", reason)
        self._preempting.clear()
        if self._starting is not None:
            self._starting.cancel()
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            kernel.link.close_nowait()
            kernel.kill()
