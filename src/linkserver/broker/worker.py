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
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from wolframclient.language import wl
from wolframclient.language.expression import WLSymbol

from .. import wxf
from ..aio.link import Link
from ..errors import LinkError
from ..kernel.process import KernelError, KernelHandle, KernelLauncher
from ..protocol import UrgentMessage
from ..wxf.peek import head_name
from .control import Control
from .queue import FairQueue

__all__ = ["KernelWorker", "Request"]

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


class KernelWorker:
    """Runs requests on one kernel, restarting the kernel when it dies.

    Args:
        launcher: where kernels come from.
        kernel: a kernel already started, or None to start one.
        on_idle: called when the queue runs empty (pool mode uses it).
        control: sees each request first and may answer it itself (the server's
            own requests, such as ``$KeepRunning = False``).
    """

    def __init__(
        self,
        launcher: KernelLauncher,
        kernel: KernelHandle | None = None,
        *,
        on_idle: Callable[[KernelWorker], None] | None = None,
        control: Control | None = None,
    ) -> None:
        self._launcher = launcher
        self.kernel: KernelHandle | None = None
        self._queue: FairQueue[Link, Request] = FairQueue()
        self.current: Request | None = None
        self._awaiting_input: Link | None = None
        self._starting: asyncio.Task[None] | None = None
        self._closed = False
        self._on_idle = on_idle
        self._control = control
        self.completed = 0
        #: what clients call this kernel: stable across restarts of its process
        self.id = uuid.uuid4().hex[:12]
        if kernel is not None:
            self._adopt(kernel)
        else:
            self._restart()

    # ------------------------------------------------------------- kernels

    def _adopt(self, kernel: KernelHandle) -> None:
        self.kernel = kernel
        kernel.link.set_receiver(self._from_kernel)
        kernel.link.on_end(lambda _link: self._kernel_died(kernel))
        init = self._launcher.spec.init
        if init and self.current is None:
            # The pool's start-up code runs before any client request.
            expr = wl.EvaluatePacket(wl.ToExpression(init))
            self.current = Request(None, wxf.dumps(expr), "ReturnPacket")
            try:
                kernel.link.put_payload_nowait(self.current.payload)
            except LinkError:
                pass  # the kernel is already gone: _kernel_died handles it
            return
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
                log.warning("kernel.start.failed: %s; retrying in %.1f s", exc, delay)
                self._fail_queued(f"no kernel could be started: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._starting = None
            if self._closed:
                kernel.link.close_nowait()
                kernel.kill()
                return
            self._adopt(kernel)
            return

    def _kernel_died(self, kernel: KernelHandle) -> None:
        if kernel is not self.kernel:
            return
        self.kernel = None
        self._awaiting_input = None
        request, self.current = self.current, None
        if self._closed:
            return
        reason = "it was stopped" if kernel.killed else "its process ended"
        log.warning("kernel.died %s (%s); starting a fresh one", kernel.id, reason)
        if request is not None and request.link is not None:
            self._answer_failure(
                request,
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
        try:
            payload, final = as_request(payload)
        except LinkError as exc:
            self._answer_failure(Request(link, payload, "ReturnPacket"), "badpacket", str(exc))
            return
        self._queue.push(link, Request(link, payload, final))
        self._dispatch()

    def message(self, link: Link, message: UrgentMessage | int, argument: int) -> None:
        """An urgent message from a client link."""
        current = self.current
        if message in (UrgentMessage.ABORT, UrgentMessage.INTERRUPT):
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

    def _dispatch(self) -> None:
        if self.current is not None or self.kernel is None or not self._queue:
            if self.current is None and not self._queue and self._on_idle is not None:
                self._on_idle(self)
            return
        _link, request = self._queue.pop()
        self.current = request
        try:
            self.kernel.link.put_payload_nowait(request.payload)
        except LinkError:
            pass  # the kernel's link is ending: _kernel_died answers the request

    def _from_kernel(self, payload: bytes) -> None:
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
            request.answered = True
            self.current = None
            self.completed += 1
            self._dispatch()

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
        return self.current is not None or bool(self._queue)

    async def aclose(self, reason: str = "the server is shutting down") -> None:
        """Refuse queued requests, answer the running one, stop the kernel."""
        self._closed = True
        for _link, request in self._queue.drain():
            self._answer_failure(request, "shutdown", reason)
        if self.current is not None:
            self._answer_failure(self.current, "shutdown", reason)
            self.current = None
        if self._starting is not None:
            self._starting.cancel()
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            kernel.link.close_nowait()
            kernel.kill()
