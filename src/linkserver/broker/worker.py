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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from .. import records, wxf
from ..aio.link import Link
from ..errors import LinkError
from ..kernel.process import KernelError, KernelHandle, KernelLauncher
from ..protocol import UrgentMessage
from ..protocol.packets import PREEMPTIVE, PREEMPTIVE_ANSWER
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
        if self._closed:
            self._answer_failure(
                Request(link, payload, "ReturnPacket"), "shutdown", "the server is shutting down"
            )
            return
        if self._control is not None and self._control(link, payload):
            return
        if head_name(payload) == PREEMPTIVE:
            self._submit_preemptive(link, payload)
            return
        try:
            payload, final = as_request(payload)
        except LinkError as exc:
            self._answer_failure(Request(link, payload, "ReturnPacket"), "badpacket", str(exc))
            return
        if self._queue.queued(link) >= self.max_queued:
            self._answer_failure(
                Request(link, payload, final), "queuefull",
                f"this link already has {self.max_queued} requests waiting; wait for "
                "answers before sending more",
            )
            return
        self._queue.push(link, Request(link, payload, final))
        self._dispatch()

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
            if current is not None and current.link is link and self.kernel is not None:
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
        current = self.current
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
        self.current = request
        request.started = time.perf_counter()
        try:
            self.kernel.link.put_payload_nowait(request.payload)
        except LinkError:
            pass  # the kernel's link is ending: _kernel_died answers the request

    def _from_kernel(self, payload: bytes) -> None:
        if head_name(payload) == PREEMPTIVE_ANSWER:
            self._from_kernel_preemptive(payload)
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
            self.current = None
            self.completed += 1
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
