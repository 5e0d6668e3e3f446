"""One kernel at work: the asyncio glue around :class:`~.core.KernelCore`.

Every decision -- which request runs, where a kernel's packet goes, what an
abort stops, who gets which failure -- is the core's (:mod:`.core`, which
documents them). A :class:`KernelWorker` feeds it what the links and the
kernel say and carries out the actions it returns: sending payloads and
urgent messages, starting a kernel through the launcher (with a back-off when
none will start), stopping it, writing records, and handing the server the
requests meant for it. It never decodes what passes through.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Hashable

from .. import records
from ..aio.link import Link
from ..errors import LinkError
from ..launcher import KernelError, KernelHandle, KernelLauncher
from ..protocol import UrgentMessage
from .control import Control
from .core import (
    DEFAULT_MAX_QUEUED,
    Action,
    Idle,
    KernelCore,
    KernelUrgent,
    Record,
    Request,
    ServerRequest,
    StartKernel,
    StopKernel,
    TimeLimit,
    ToClient,
    ToKernel,
    as_request,
)
from ..users import User

#: Which user a link stands for (None: no user, no limits); the service's.
UserOf = Callable[[Hashable], User | None]

__all__ = ["DEFAULT_MAX_QUEUED", "KernelWorker", "Request", "UserOf", "as_request"]


class KernelWorker:
    """Runs requests on one kernel, restarting the kernel when it dies.

    Args:
        launcher: where kernels come from.
        kernel: a kernel already started, or None to start one.
        on_idle: called when the queue runs empty.
        control: the server's hook for requests meant for itself (``$KeepRunning
            = False``); without one they go to the kernel.
        max_queued: requests one link may have waiting; more are answered at
            once with the ``queuefull`` failure (docs/protocol.md §8.3).
        user_of: the user each link stands for, whose limits apply (docs/configuration.md).
    """

    def __init__(
        self,
        launcher: KernelLauncher,
        kernel: KernelHandle | None = None,
        *,
        on_idle: Callable[[KernelWorker], None] | None = None,
        control: Control | None = None,
        max_queued: int = DEFAULT_MAX_QUEUED,
        user_of: UserOf | None = None,
        worker_id: str | None = None,
    ) -> None:
        self._launcher = launcher
        self._user_of = user_of
        self._on_idle = on_idle
        self._control = control
        self.kernel: KernelHandle | None = None
        self._starting: asyncio.Task[None] | None = None
        #: what clients call this kernel: stable across restarts of its process
        #: (and of the server, for a kept kernel adopted again: ``worker_id``)
        self.id = worker_id or uuid.uuid4().hex[:12]
        #: when a client last sent a packet or a message (idle culling reads it)
        self.last_heard = time.monotonic()
        #: why the last kernel start failed, until one succeeds (the side port's /healthz)
        self.start_failure: str | None = None
        self.core = KernelCore(
            self.id, clock=time.perf_counter, max_queued=max_queued,
            kernel_up=kernel is not None, kernel_id=kernel.id if kernel is not None else "",
            server_requests=control is not None, user_of=user_of,
        )
        if kernel is not None:
            self._adopt(kernel)
        self._do(self.core.initial_actions())

    # Its state (queued, busy, completed, the request running) is the core's:
    # ``worker.core``.

    # ------------------------------------------------------------ events in

    def attach(self, link: Link) -> None:
        """Serve ``link``'s requests from now on."""
        link.set_receiver(lambda payload: self.submit(link, payload))
        link.on_message(lambda message, arg: self.message(link, message, arg))
        link.on_end(self.detach)

    def submit(self, link: Link, payload: bytes) -> None:
        """One packet from ``link``."""
        self.last_heard = time.monotonic()
        self._do(self.core.client_packet(link, payload))

    def message(self, link: Link, message: UrgentMessage | int, argument: int) -> None:
        """An urgent message from a client link."""
        self.last_heard = time.monotonic()
        self._do(self.core.client_message(link, message, argument))

    def detach(self, link: Link) -> None:
        """``link`` is gone: drop its queue; abort its running request."""
        self._do(self.core.link_gone(link))

    def _adopt(self, kernel: KernelHandle) -> None:
        self.kernel = kernel
        kernel.link.set_receiver(self._from_kernel)
        kernel.link.on_end(lambda _link: self._kernel_died(kernel))

    def _from_kernel(self, payload: bytes) -> None:
        self._do(self.core.kernel_packet(payload))

    def _kernel_died(self, kernel: KernelHandle) -> None:
        if kernel is not self.kernel:
            return
        self.kernel = None
        where = f" on node {kernel.node}" if kernel.node else ""
        reason = kernel.death or ("it was stopped" if kernel.killed else f"its process ended{where}")
        self._do(self.core.kernel_died(reason, kernel.pid))

    async def _start_kernel(self) -> None:
        delay = 0.1
        while not self.core.closed:
            try:
                kernel = await self._launcher.launch()
            except KernelError as exc:
                records.event("kernel-start-failed", worker=self.id, reason=exc, retry_s=delay)
                self.start_failure = str(exc)
                self._do(self.core.kernel_start_failed(str(exc)))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.start_failure = None
            self._starting = None
            if self.core.closed:
                kernel.link.close_nowait()
                kernel.kill()
                return
            self._adopt(kernel)
            self._do(self.core.kernel_started(kernel.id, kernel.pid))
            return

    async def aclose(
        self, reason: str = "the server is shutting down", tag: str = "shutdown"
    ) -> None:
        """Refuse queued requests, answer the running one (failure ``tag``), stop the kernel."""
        self._do(self.core.close(reason, tag))

    # ----------------------------------------------------------- actions out

    def _do(self, actions: list[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is ToClient:
                assert isinstance(action, ToClient)
                self._to_client(action.link, action.payload)
            elif kind is ToKernel:
                assert isinstance(action, ToKernel)
                if self.kernel is not None:
                    try:
                        self.kernel.link.put_payload_nowait(action.payload)
                    except LinkError:
                        pass  # the kernel's link is ending: its death answers the request
            elif kind is KernelUrgent:
                assert isinstance(action, KernelUrgent)
                if self.kernel is not None:
                    try:
                        self.kernel.link.send_message_nowait(action.message, action.argument)
                    except LinkError:
                        pass
            elif kind is Record:
                assert isinstance(action, Record)
                if action.event == "request-done":
                    # After this turn of the loop: the answer it records goes out first.
                    asyncio.get_running_loop().call_soon(self._record, action)
                else:
                    self._record(action)
            elif kind is Idle:
                if self._on_idle is not None:
                    self._on_idle(self)
            elif kind is ServerRequest:
                assert isinstance(action, ServerRequest) and self._control is not None
                link = action.link
                assert isinstance(link, Link)
                self._control(link, action.payload)
            elif kind is StartKernel:
                if self._starting is None:
                    self._starting = asyncio.ensure_future(self._start_kernel())
            elif kind is StopKernel:
                self._stop_kernel()
            elif kind is TimeLimit:
                assert isinstance(action, TimeLimit)
                serial = action.serial
                asyncio.get_running_loop().call_later(
                    action.seconds, lambda: self._do(self.core.time_limit_passed(serial)))

    @staticmethod
    def _to_client(link: Hashable, payload: bytes) -> None:
        assert isinstance(link, Link)
        if link.closed:
            return
        try:
            link.put_payload_nowait(payload)
        except LinkError:
            pass  # the client left; the core keeps consuming until the final packet

    def _stop_kernel(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            self._starting = None
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            kernel.link.close_nowait()
            kernel.kill()

    def _record(self, record: Record) -> None:
        event = record.event
        if event == "request-done" and not records.enabled(event):
            return
        fields = dict(record.fields)
        link = fields.get("link")
        if link is not None:
            assert isinstance(link, Link)
            fields["link"] = records.link_ref(link)
            user = self._user_of(link) if self._user_of is not None else None
            if user is not None:
                fields.setdefault("user", user.name)
        records.event(event, **fields)
