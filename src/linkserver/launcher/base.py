"""The launcher interface: how a pool gets kernels, wherever they run.

A *launcher* starts kernels of one :class:`~.spec.KernelSpec` for one pool and
hands each to the broker as a :class:`KernelHandle` once it is ready. From
then on the broker talks to the kernel only over :attr:`KernelHandle.link`,
learns that it died when that link ends, and stops it through the handle.
Where the kernel runs and how it got there -- a child process forked on this
machine (:mod:`.local`), an actor on a cluster node -- is the launcher's
business; nothing else in the server depends on it.

The contract
------------
Every launcher keeps these rules; :mod:`.local` is one that does, and a
second one needs nothing from it but this page.

Reaching the server.  A kernel is a process running one of
:data:`linkserver.kernel.BACKENDS` -- ``python -m <module> --connect NAME
--kernel-id ID`` (:meth:`.spec.KernelSpec.argv`), or a fork of a template
that loaded the backend (:mod:`linkserver.kernel.zygote`). It connects as a
client to a link server the launcher listens on: a Unix socket in a private
directory for a kernel on this machine; a TCP address, with a key (and TLS
when the server has it), for a kernel on another one. Its first expression
is ``KernelReady[<|"id" -> ID, "pid" -> PID, "backend" -> ..., "version" ->
...|>]``. The launcher matches ID to the launch waiting for it and closes
any link whose greeting is missing, malformed, or names an id no launch
waits for: a stranger on the endpoint must never pose as a kernel.

:meth:`KernelLauncher.launch`.  Returns only when the kernel has greeted
*and* the pool's start-up code (``spec.init``) has been evaluated on it
(its output dropped), so that no client ever waits for either. The link it
returns has no receiver yet: the broker sets one (``link.set_receiver``)
and owns the link from then on. It raises :class:`KernelError` -- nothing
else -- when the kernel cannot be placed, ends before it is ready, or is not
ready within ``spec.start_timeout``; and whether it raises or is
cancelled, it leaves no kernel running behind it.

Death.  The one signal that a kernel died is the end of its link
(:meth:`KernelHandle.on_dead`, the link's ``on_end``). A kernel whose process
exits ends its link by itself: the operating system closes its socket. A
launcher that hears of a death some other way first -- a cluster saying a
node was lost or an actor killed, while the TCP connection has not noticed
yet -- calls :meth:`KernelHandle.lost` with the reason, which ends the link
at once, so the broker answers the running request instead of waiting.

Never a re-run.  A launcher never restarts a kernel or retries anything by
itself: a silent re-run of a non-idempotent evaluation on a blank kernel is
the one failure we must never have (DESIGN.md "Kernels on a cluster"). The
broker answers the request a dead kernel took down and calls ``launch()``
again.

Stopping.  :meth:`KernelHandle.kill` ends the kernel at once (SIGKILL for a
process, ``ray.kill`` for an actor); :meth:`KernelHandle.stop` closes the link
first, so that a kernel still listening sees an orderly end.
:meth:`KernelLauncher.aclose` stops every kernel the launcher started and
whatever it started them with (listeners, templates, temporary files).

Kernels that outlive the server.  A launcher may place kernels that survive
the server's end (Ray's detached actors, :mod:`.ray`). The broker tells
such a kernel for whom it is kept (:meth:`KernelHandle.keep`), lets it go
at shutdown instead of stopping it (:meth:`KernelHandle.release`), and takes
back, when it starts, the kept kernels a previous run of the same server
left (:meth:`KernelLauncher.adopt`). Every other launcher keeps the defaults:
nothing is kept, release stops, nothing is adopted.

Status.  :meth:`KernelLauncher.statistics` is a frozen snapshot: where the
launcher places kernels and, for each live one, its id, its process id and
the node it runs on.

Errors.  A launcher raises only :class:`KernelError`, with one sentence that
says what to do and the cause kept (``raise KernelError(...) from exc``).
When no place can hold the kernel at all -- no cluster node offers the
resources the pool asks for -- it raises the subclass
:class:`PlacementError`, so that the broker can say so to waiting clients
at once instead of retrying in silence.

Everything here runs in the server's event loop; nothing blocks.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from wolframclient.language import wl

from .. import records
from ..errors import KernelError, LinkError, PlacementError

if TYPE_CHECKING:
    import asyncio

    from ..aio.link import Link
    from .spec import KernelSpec

__all__ = [
    "KernelError",
    "PlacementError",
    "KernelHandle",
    "KernelLauncher",
    "KernelStatistics",
    "KeptKernel",
    "LauncherStatistics",
    "Pending",
    "run_init",
    "take_greeting",
]

#: Launches waiting for their kernel's greeting, by the id each kernel was started with.
Pending = dict[str, "asyncio.Future[tuple[Link, dict[str, Any]]]"]


async def run_init(handle: KernelHandle, spec: KernelSpec) -> None:
    """Run ``spec.init`` in a kernel that has just greeted, before any client waits for it.

    Its output is dropped.

    Raises:
        KernelError: the code did not finish within ``spec.start_timeout`` (the
            kernel's link is closed).
    """
    assert spec.init is not None
    link = handle.link
    try:
        await link.put(wl.EvaluatePacket(wl.ToExpression(spec.init)))
        while True:
            packet = await link.get(timeout=spec.start_timeout)
            if getattr(getattr(packet, "head", None), "name", "") == "ReturnPacket":
                break
    except LinkError as exc:
        await link.aclose()
        raise KernelError(f"the kernel's start-up code did not finish: {exc}") from exc


async def take_greeting(link: Link, timeout: float, pending: Pending) -> None:
    """A kernel dialled in: read its ``KernelReady`` and wake the launch that waits for it.

    A connection whose first expression is not ``KernelReady[...]`` within
    ``timeout`` seconds, or that greets with an id no launch waits for, is
    closed and recorded (``kernel-rejected``).
    """
    try:
        hello = await link.get(timeout=timeout)
        if getattr(getattr(hello, "head", None), "name", "") != "KernelReady":
            raise ValueError(f"its first expression is not KernelReady[...]: {hello!r:.80}")
        info = dict(hello.args[0]) if getattr(hello, "args", None) else {}
        kernel_id = str(info.get("id", ""))
    except (LinkError, TypeError, ValueError, IndexError) as exc:
        records.event("kernel-rejected", reason=f"the connection did not greet: {exc}")
        await link.aclose()
        return
    future = pending.pop(kernel_id, None)
    if future is None or future.done():
        records.event("kernel-rejected", reason=f"unexpected kernel id {kernel_id!r}")
        await link.aclose()
        return
    future.set_result((link, info))


@dataclass(frozen=True, slots=True)
class KernelStatistics:
    """One live kernel, for ``status``.

    Attributes:
        id: the launcher's id for it (``kernel`` in records).
        pid: its process id on the machine it runs on; 0 if unknown.
        placement: what placed it (``"local"``, ``"ray"``).
        node: the cluster node it runs on (an id, with an address if known);
            None for a kernel on the server's own machine.
    """

    id: str
    pid: int
    placement: str
    node: str | None


@dataclass(frozen=True, slots=True)
class LauncherStatistics:
    """What one launcher holds, for ``status``.

    Attributes:
        placement: what places its kernels (``"local"``, ``"ray"``).
        backend: the backend of its :class:`~.spec.KernelSpec`.
        kernels: every kernel it launched that is still alive.
    """

    placement: str
    backend: str
    kernels: tuple[KernelStatistics, ...]


class KernelHandle(abc.ABC):
    """One ready kernel, as the broker sees it.

    A launcher subclasses it to say how the kernel is killed (:meth:`_terminate`)
    and, for a kernel elsewhere, where it runs (:attr:`node`); the rest is
    common to every placement.

    Args:
        kernel_id: the id the launcher gave it and the kernel announced.
        pid: its process id where it runs (0 if unknown).
        link: the server's end of its link, greeted and initialised.
        info: what it said in ``KernelReady`` (backend, version, ...).

    Attributes:
        id: ``kernel_id``.
        pid: ``pid``.
        link: ``link``.
        info: ``info``.
        killed: True once :meth:`kill` was called: its end was asked for.
        death: why it ended, when its launcher knows more than that its link
            ended (see :meth:`lost`); None otherwise.
    """

    #: What places kernels of this kind (``"local"``, ``"ray"``).
    placement: ClassVar[str]
    #: True for a kernel that can outlive the server (see :meth:`keep`, :meth:`release`).
    detached: bool = False

    def __init__(self, kernel_id: str, pid: int, link: Link, info: dict[str, Any]) -> None:
        self.id = kernel_id
        self.pid = pid
        self.link = link
        self.info = info
        self.killed = False
        self.death: str | None = None

    @property
    def alive(self) -> bool:
        """True while its link is open."""
        return not self.link.closed

    @property
    def node(self) -> str | None:
        """The cluster node it runs on; None on the server's own machine."""
        return None

    def on_dead(self, callback: Callable[[KernelHandle], None]) -> None:
        """Call ``callback(handle)`` once, in the event loop, when the kernel is gone.

        Gone means its link ended, for whatever reason (:attr:`killed` and
        :attr:`death` say more); a kernel already gone calls it at once.
        """
        self.link.on_end(lambda _link: callback(self))

    def lost(self, reason: str) -> None:
        """Say the kernel is gone, for a launcher that heard so before its link did.

        Records ``reason`` as :attr:`death` and ends the link at once, which
        runs every :meth:`on_dead` callback. Never raises; a kernel already gone
        keeps the reason it had.
        """
        if self.alive and self.death is None:
            self.death = reason
        self.link.close_nowait(reason=reason)
        self._terminate()  # whatever is left of it must not run on unwatched

    def kill(self) -> None:
        """End the kernel at once; its link then ends. Never raises; idempotent."""
        self.killed = True
        self._terminate()

    def stop(self) -> None:
        """Close the link, then end the kernel: the orderly way to stop one."""
        self.link.close_nowait()
        self.kill()

    def keep(self, worker: str | None, user: str | None = None) -> None:
        """Say that a kernel that can outlive the server is kept for a client,
        known to clients as ``worker`` (None: it is not kept), for ``user``.

        A kernel that cannot outlive the server ignores it. Never raises.
        """

    def release(self) -> None:
        """Let the kernel go without ending it, when it can outlive the server
        (it then waits to be adopted); any other kernel is stopped."""
        self.stop()

    @abc.abstractmethod
    def _terminate(self) -> None:
        """End the kernel's process (or actor) at once, if it still runs; never raise."""

    def statistics(self) -> KernelStatistics:
        """Return a snapshot for ``status``."""
        return KernelStatistics(id=self.id, pid=self.pid, placement=self.placement, node=self.node)

    def __repr__(self) -> str:
        where = f" on {self.node}" if self.node else ""
        state = "alive" if self.alive else "dead"
        return f"<{type(self).__name__} {self.id} pid={self.pid}{where} {state}>"


@dataclass(frozen=True, slots=True)
class KeptKernel:
    """A kept kernel a previous run of the server left, now adopted again.

    Attributes:
        handle: the kernel, greeted anew.
        worker: the id its clients know it by (``Client(..., kernel=ID)``).
        user: the user it was kept for; None for any.
    """

    handle: KernelHandle
    worker: str
    user: str | None


class KernelLauncher(abc.ABC):
    """Starts kernels of one :class:`~.spec.KernelSpec` for one pool (the contract above).

    Use it as ``await launcher.start()`` ... ``await launcher.aclose()``, or as
    ``async with launcher:``.

    Args:
        spec: what kernels to run.

    Attributes:
        spec: ``spec``.
    """

    #: What places this launcher's kernels (``"local"``, ``"ray"``).
    placement: ClassVar[str]

    def __init__(self, spec: KernelSpec) -> None:
        self.spec = spec

    @abc.abstractmethod
    async def start(self) -> None:
        """Get ready to launch: listen where kernels connect, warm what makes them fast.

        Raises:
            KernelError: the launcher cannot start kernels.
        """

    @abc.abstractmethod
    async def launch(self) -> KernelHandle:
        """Start one kernel; return it once it has greeted and run ``spec.init``.

        Raises:
            KernelError: it could not be started, ended before it was ready, or
                was not ready within ``spec.start_timeout``; nothing is left running.
        """

    async def adopt(self) -> list[KeptKernel]:
        """Take back the kept kernels a previous run of this server left (after
        :meth:`start`); a launcher whose kernels cannot outlive it has none."""
        return []

    @abc.abstractmethod
    def handles(self) -> list[KernelHandle]:
        """Return every kernel this launcher handed out that is still alive."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop every kernel it started and what it started them with; idempotent."""

    def statistics(self) -> LauncherStatistics:
        """Return a snapshot for ``status``."""
        return LauncherStatistics(
            placement=self.placement,
            backend=self.spec.backend,
            kernels=tuple(handle.statistics() for handle in self.handles()),
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
