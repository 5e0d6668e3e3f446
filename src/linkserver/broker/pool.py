"""Pool mode: each link gets a kernel of its own from a pool of warm kernels.

State never leaks between clients: a kernel serves one link and is
discarded when that link closes; a fresh one is warmed in the background.
At most ``max_kernels`` exist at once; a link that finds them all taken
waits up to ``wait_timeout`` seconds in a queue and is then refused with a
close code that says so (``TOO_MANY_LINKS``).

A link may ask for a *persistent* kernel: when it closes, its kernel is kept
(``_parked``) for ``keepalive`` seconds, and a new link -- from another
process or machine -- can take it back by the kernel's id
(WSTPServer's "connect, disconnect and reconnect"). Parked kernels count
towards the maximum.

Kept kernels that outlive the server (a Ray pool's, :mod:`linkserver.launcher.ray`):
the broker tells a persistent link's kernel that it is kept, with the id
clients know it by and its user (:meth:`KernelHandle.keep`); at shutdown it
lets such kernels go (:meth:`KernelHandle.release`) instead of stopping
them; and when it starts it parks the kernels its launcher adopted from a
previous run of the server (:meth:`KernelLauncher.adopt`), under their old
ids, so that ``Client(..., kernel=ID)`` takes one back with its definitions.

Theory of operation: ``_warm`` holds started kernels nobody uses yet;
``_launching`` counts kernels being started; ``_workers`` maps each served
link to its worker. Whenever any of these change, :meth:`_balance` decides
-- synchronously, with no I/O -- which waiting link gets which warm kernel
and how many kernels to start, then starts them.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .. import records
from ..aio.link import Link
from ..errors import LinkError
from ..launcher import KernelError, KernelHandle, KernelLauncher, PlacementError
from ..launcher.base import KeptKernel
from ..protocol import CloseCode, answers
from .control import Control
from .worker import DEFAULT_MAX_QUEUED, KernelWorker, UserOf, as_request

__all__ = ["PoolBroker", "PoolStatistics"]

log = logging.getLogger("linkserver.broker")


def _refuse_pending(link: Link, reason: str) -> None:
    """Answer each request a link sent while it waited for a kernel with ``shutdown``.

    A waiting link has no worker yet, so its requests sit in the link itself;
    they were received all the same, and docs/protocol.md §8.7 promises every
    queued request the ``shutdown`` answer (§8.3) before the link closes --
    without this they were dropped by the close (found by
    tests/integration/test_shutdown.py).
    """
    while (payload := link.take_nowait()) is not None:
        try:
            final = as_request(payload)[1]
        except LinkError:
            final = "ReturnPacket"
        try:
            for packet in answers.failure(final, "shutdown", reason):
                link.put_payload_nowait(packet)
        except LinkError:
            return  # the client is gone: nobody is left to answer


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a pool."""

    mode: str
    kernels: int  #: started kernels, warm or serving
    warm: int  #: kernels ready for the next link
    serving: int  #: links being served
    waiting: int  #: links waiting for a kernel
    launching: int  #: kernels being started
    parked: int  #: persistent kernels waiting for their client to come back
    problem: str = ""  #: why no kernel can start now (a placement failure); "" if none


class PoolBroker:
    """A kernel per link, from a warm pool.

    Args:
        launcher: where kernels come from.
        min_kernels: kernels kept warm and waiting for links.
        max_kernels: kernels that may exist at once.
        wait_timeout: seconds a link may wait for a kernel before it is refused.
        keepalive: seconds a persistent kernel is kept after its link closes;
            0 turns persistent kernels off.
        control: the server's hook for requests meant for itself.
        cull_idle: seconds a client may send nothing before its kernel is ended
            (0: never). A kernel evaluating is not idle; one waiting for the
            client's input is. Persistent kernels are never culled: their
            keep-alive governs them.
        cull_close: close a culled client's link (reason ``culled``) instead of
            answering its next request with the news and giving it a fresh kernel.
        user_of: the user each link stands for: their ``kernels`` and
            ``memory_mb`` limits apply here, ``queued`` and ``eval_seconds`` in
            each kernel's core.
    """

    mode = "pool"

    def __init__(
        self,
        launcher: KernelLauncher,
        *,
        min_kernels: int = 1,
        max_kernels: int = 4,
        wait_timeout: float = 30.0,
        keepalive: float = 0.0,
        control: Control | None = None,
        max_queued: int = DEFAULT_MAX_QUEUED,
        cull_idle: float = 0.0,
        cull_close: bool = False,
        user_of: UserOf | None = None,
    ) -> None:
        self._max_queued = max_queued
        self._user_of = user_of
        #: the user each parked persistent kernel was kept for (their ``kernels`` count it)
        self._parked_for: dict[str, str] = {}
        self.cull_idle = cull_idle
        self.cull_close = cull_close
        self._cull_timers: dict[Link, asyncio.TimerHandle] = {}
        self._busy_at: dict[Link, float] = {}
        if not 0 <= min_kernels <= max_kernels or max_kernels < 1:
            raise ValueError("need 0 <= min_kernels <= max_kernels and max_kernels >= 1")
        self._launcher = launcher
        self.min_kernels = min_kernels
        self.max_kernels = max_kernels
        self.wait_timeout = wait_timeout
        self.keepalive = keepalive
        self._control = control
        self._warm: deque[KernelHandle] = deque()
        self._launching = 0
        self._workers: dict[Link, KernelWorker] = {}
        self._waiting: deque[tuple[Link, asyncio.TimerHandle]] = deque()
        self._bound_callbacks: dict[Link, Callable[[str], None]] = {}
        self._persistent: set[Link] = set()
        self._parked: dict[str, tuple[KernelWorker, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: the sentence of the last PlacementError, until a kernel starts again
        self.problem = ""
        #: why the last kernel launch failed, until one succeeds (the side port's /healthz)
        self.launch_failure: str | None = None

    @property
    def _total(self) -> int:
        return len(self._warm) + self._launching + len(self._workers) + len(self._parked)

    async def start(self, *, strict: bool = True) -> None:
        """Start ``min_kernels`` kernels and wait until they are ready.

        Args:
            strict: raise if a kernel does not start. A pool on a cluster
                passes False: the server then starts all the same, the pool
                keeps trying in the background, and a placement failure is
                its :attr:`problem` (told to waiting clients and in ``status``).

        Raises:
            KernelError: a kernel did not start (``strict`` only).
        """
        if self.keepalive > 0:
            for kept in await self._launcher.adopt():
                self._park_adopted(kept)
        results = await asyncio.gather(
            *(self._launcher.launch() for _ in range(self.min_kernels)),
            return_exceptions=not strict,
        )
        failures = []
        for result in results:
            if isinstance(result, KernelHandle):
                self._add_warm(result)
            elif isinstance(result, KernelError):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result
        if failures:
            self._launch_failed(failures[0])
            self._schedule(self._retry_later())

    def _park_adopted(self, kept: KeptKernel) -> None:
        """Park a kept kernel a previous run of the server left, for its client to take back."""
        worker = KernelWorker(
            self._launcher, kept.handle, control=self._control, max_queued=self._max_queued,
            user_of=self._user_of, worker_id=kept.worker,
        )
        timer = asyncio.get_running_loop().call_later(self.keepalive, self._expire, worker.id)
        self._parked[worker.id] = (worker, timer)
        if kept.user is not None:
            self._parked_for[worker.id] = kept.user
        records.event("pool-parked", worker=worker.id, keepalive_s=self.keepalive,
                      adopted=True)

    def _keep(self, worker: KernelWorker, user: str | None, kept: bool = True) -> None:
        """Tell the worker's kernel whether it is kept (if it can outlive the server)."""
        if worker.kernel is not None:
            worker.kernel.keep(worker.id if kept else None, user)

    def _add_warm(self, kernel: KernelHandle) -> None:
        self._warm.append(kernel)
        kernel.link.on_end(lambda _link: self._warm_kernel_died(kernel))

    def _warm_kernel_died(self, kernel: KernelHandle) -> None:
        if kernel in self._warm:  # died before anyone used it
            self._warm.remove(kernel)
            self._balance()

    def over_limit(self, link: Link) -> str | None:
        """Why ``link``'s user may not have one more kernel now; None if they may."""
        user = self._user_of(link) if self._user_of is not None else None
        if user is None or user.kernels is None:
            return None
        held = sum(1 for other in [*self._workers, *(w for w, _h in self._waiting)]
                   if self._user_name(other) == user.name)
        held += sum(1 for name in self._parked_for.values() if name == user.name)
        if held < user.kernels:
            return None
        records.event("user-limit", user=user.name, limit="kernels",
                      link=records.link_ref(link), held=held)
        return user.over("kernels")

    def _user_name(self, link: Link) -> str | None:
        user = self._user_of(link) if self._user_of is not None else None
        return user.name if user is not None else None

    def attach(
        self,
        link: Link,
        *,
        persistent: bool = False,
        on_bound: Callable[[str], None] | None = None,
    ) -> None:
        """Give ``link`` a kernel now, or queue it until one is free.

        Args:
            link: the client's link.
            persistent: keep the kernel for ``keepalive`` seconds after the link closes.
            on_bound: called with the kernel's id once the link has its kernel.

        Raises:
            ValueError: ``persistent`` asked of a pool whose keep-alive is 0.
        """
        if persistent and self.keepalive <= 0:
            raise ValueError("this pool keeps no kernels for later (its keepalive is 0)")
        if self._closed:
            link.close_nowait(CloseCode.GOING_AWAY, "the server is shutting down")
            return
        if persistent:
            self._persistent.add(link)
        if on_bound is not None:
            self._bound_callbacks[link] = on_bound
        handle = asyncio.get_running_loop().call_later(
            self.wait_timeout, self._refuse, link
        )
        self._waiting.append((link, handle))
        link.on_end(self._link_gone)
        self._balance()

    def _refuse(self, link: Link, reason: str | None = None) -> None:
        for entry in self._waiting:
            if entry[0] is link:
                self._waiting.remove(entry)
                break
        else:
            return
        entry[1].cancel()
        records.event("pool-refused", link=records.link_ref(link), peer=link.peer,
                      wait_s=self.wait_timeout, kernels=self.max_kernels,
                      reason=reason or self.problem or None)
        if reason is None and self.problem:
            reason = self.problem
        link.close_nowait(
            CloseCode.TOO_MANY_LINKS,
            reason or
            f"all {self.max_kernels} kernels of this pool are in use and none came free "
            f"within {self.wait_timeout:g} s; try again later or ask for a larger pool",
        )

    def reattach(self, link: Link, kernel_id: str, *, persistent: bool = False) -> None:
        """Give ``link`` the parked persistent kernel ``kernel_id``.

        Args:
            link: the client's new link.
            kernel_id: the id the kernel was given when it was first asked for.
            persistent: park it again when this link closes; otherwise this
                is the kernel's last client and it is discarded afterwards.

        Raises:
            KeyError: no kernel of that id is parked (unknown, expired, in use,
                or kept for another user).
        """
        owner = self._parked_for.get(kernel_id)
        if owner is not None and owner != self._user_name(link):
            raise KeyError(kernel_id)  # kept for another user: as if there were none
        worker, timer = self._parked.pop(kernel_id)
        timer.cancel()
        self._parked_for.pop(kernel_id, None)
        if persistent:
            self._persistent.add(link)
        self._keep(worker, self._user_name(link), kept=persistent)
        self._workers[link] = worker
        worker.attach(link)
        link.on_end(self._link_gone)
        records.event("pool-reattached", worker=kernel_id, link=records.link_ref(link),
                      peer=link.peer)

    # ------------------------------------------------------------ idle culling

    def _arm_cull(self, link: Link, delay: float) -> None:
        if self.cull_idle <= 0 or link in self._persistent:
            return
        old = self._cull_timers.pop(link, None)
        if old is not None:
            old.cancel()
        self._cull_timers[link] = asyncio.get_running_loop().call_later(
            max(delay, 0.01), self._check_idle, link)

    def _check_idle(self, link: Link) -> None:
        self._cull_timers.pop(link, None)
        worker = self._workers.get(link)
        if worker is None or self._closed or link.closed:
            return
        now = time.monotonic()
        if worker.core.busy and not worker.core.waiting_on_client:
            self._busy_at[link] = now  # evaluating counts as activity
        since = max(worker.last_heard, self._busy_at.get(link, 0.0))
        if now - since < self.cull_idle:
            self._arm_cull(link, self.cull_idle - (now - since))
            return
        self._cull(link, worker)

    def _cull(self, link: Link, worker: KernelWorker) -> None:
        """End an idle client's kernel and tell the client (now if it waits, else next time)."""
        records.event("kernel-culled", worker=worker.id, link=records.link_ref(link),
                      peer=link.peer, idle_s=self.cull_idle)
        del self._workers[link]
        self._busy_at.pop(link, None)
        told = worker.core.waiting_on_client
        news = f"the kernel was ended after {self.cull_idle:g} s idle; its definitions are gone"
        if self.cull_close:
            self._discard(worker, news, tag="culled")
            link.close_nowait(CloseCode.IDLE_TIMEOUT, f"culled: {news}")
        elif told:
            # The request waiting for input gets the news; the link goes on with a fresh kernel.
            self._discard(worker, news + "; the link goes on with a fresh kernel", tag="culled")
            link.set_receiver(None)
            self.attach(link)
        else:
            self._discard(worker, news, tag="culled")
            news += "; send the request again to run it in a fresh kernel"
            link.set_receiver(lambda payload: self._tell_culled(link, payload, news))
        self._balance()

    def _tell_culled(self, link: Link, payload: bytes, news: str) -> None:
        """Answer a culled client's next request with the news, then find it a fresh kernel."""
        link.set_receiver(None)
        try:
            final = as_request(payload)[1]
        except LinkError:
            final = answers.EVALUATE_FINAL
        for packet in answers.failure(final, "culled", news):
            if not link.closed:
                link.put_payload_nowait(packet)
        self.attach(link)

    def _link_gone(self, link: Link) -> None:
        timer = self._cull_timers.pop(link, None)
        if timer is not None:
            timer.cancel()
        self._busy_at.pop(link, None)
        for entry in self._waiting:
            if entry[0] is link:
                entry[1].cancel()
                self._waiting.remove(entry)
                break
        self._bound_callbacks.pop(link, None)
        persistent = link in self._persistent
        self._persistent.discard(link)
        worker = self._workers.pop(link, None)
        if worker is not None and persistent and not self._closed:
            timer = asyncio.get_running_loop().call_later(self.keepalive, self._expire, worker.id)
            self._parked[worker.id] = (worker, timer)
            name = self._user_name(link)
            if name is not None:
                self._parked_for[worker.id] = name
            self._keep(worker, name)  # again: its kernel may have been replaced meanwhile
            records.event("pool-parked", worker=worker.id, keepalive_s=self.keepalive)
        elif worker is not None:
            # The kernel held this client's state: it is not reused (no leaks).
            self._discard(worker, "the client left")
        self._balance()

    def _expire(self, kernel_id: str) -> None:
        entry = self._parked.pop(kernel_id, None)
        self._parked_for.pop(kernel_id, None)
        if entry is not None:
            records.event("pool-expired", worker=kernel_id)
            self._discard(entry[0], "its keep-alive time passed")
            self._balance()

    def _discard(self, worker: KernelWorker, reason: str, tag: str = "shutdown") -> None:
        task = asyncio.ensure_future(worker.aclose(reason, tag))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _balance(self) -> None:
        """Match waiting links with warm kernels; start kernels to refill."""
        if self._closed:
            return
        while self._waiting and self._warm:
            link, handle = self._waiting.popleft()
            handle.cancel()
            kernel = self._warm.popleft()
            if link.closed:
                self._warm.appendleft(kernel)
                continue
            user = self._user_of(link) if self._user_of is not None else None
            if user is not None and user.memory_mb is not None:
                _limit_memory(kernel, user.memory_mb, user.name)
            worker = KernelWorker(
                self._launcher, kernel, control=self._control, max_queued=self._max_queued,
                user_of=self._user_of,
            )
            self._workers[link] = worker
            worker.attach(link)
            if link in self._persistent:
                self._keep(worker, user.name if user is not None else None)
            self._arm_cull(link, self.cull_idle)
            on_bound = self._bound_callbacks.pop(link, None)
            if on_bound is not None:
                on_bound(worker.id)
        wanted = max(self.min_kernels - len(self._warm), len(self._waiting)) - self._launching
        room = self.max_kernels - self._total
        for _ in range(max(0, min(wanted, room))):
            self._launching += 1
            task = asyncio.ensure_future(self._launch())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _schedule(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _launch_failed(self, exc: KernelError) -> None:
        """A kernel did not start. If none can be placed at all, the links waiting
        for one are told so now, in the error's sentence, not after their wait."""
        if not (isinstance(exc, PlacementError) and exc.message == self.problem):
            records.event("pool-launch-failed", reason=exc)  # once, not every retry
        self.launch_failure = str(exc)
        if isinstance(exc, PlacementError):
            self.problem = exc.message
            if not self._warm:
                for link, _handle in list(self._waiting):
                    self._refuse(link, exc.message)

    async def _retry_later(self) -> None:
        await asyncio.sleep(1.0)  # do not spin on a kernel that cannot start
        self._balance()

    async def _launch(self) -> None:
        try:
            kernel = await self._launcher.launch()
        except KernelError as exc:
            self._launching -= 1
            self._launch_failed(exc)
            await self._retry_later()
            return
        self.launch_failure = None
        self._launching -= 1
        self.problem = ""
        if self._closed:
            kernel.link.close_nowait()
            kernel.kill()
            return
        self._add_warm(kernel)
        self._balance()

    def worker_ids(self) -> list[str]:
        """The ids of this pool's kernel workers (metrics name requests by pool through them)."""
        return [w.id for w in self._workers.values()] + list(self._parked)

    def health(self) -> str | None:
        """None if a kernel is ready or may start within the limits; else why not, briefly."""
        if self._warm:
            return None
        if self.launch_failure is not None:
            return "no kernel can start"
        if self._launching or self._total < self.max_kernels:
            return None
        return f"all {self.max_kernels} kernels are in use"

    def statistics(self) -> PoolStatistics:
        """Return a snapshot of the pool."""
        return PoolStatistics(
            mode=self.mode,
            kernels=len(self._warm) + len(self._workers),
            warm=len(self._warm),
            serving=len(self._workers),
            waiting=len(self._waiting),
            launching=self._launching,
            parked=len(self._parked),
            problem=self.problem,
        )

    async def aclose(self) -> None:
        """Refuse waiting links, answer or refuse every request, stop every kernel."""
        self._closed = True
        for timer in self._cull_timers.values():
            timer.cancel()
        self._cull_timers.clear()
        waiting = list(self._waiting)
        self._waiting.clear()
        for link, handle in waiting:
            handle.cancel()
            _refuse_pending(link, "the server is shutting down")
            link.close_nowait(CloseCode.GOING_AWAY, "the server is shutting down")
        parked = []
        for worker, timer in self._parked.values():
            timer.cancel()
            parked.append(worker)
        self._parked.clear()
        kept = parked + [w for link, w in self._workers.items() if link in self._persistent]
        for worker in kept:
            # A kernel that can outlive the server waits for the next run to adopt it.
            kernel = worker.kernel
            if kernel is not None and kernel.detached:
                worker.kernel = None  # so that closing the worker does not stop it
                kernel.release()
        for worker in list(self._workers.values()) + parked:
            await worker.aclose()
        self._workers.clear()
        warm = list(self._warm)
        self._warm.clear()  # first: closing a kernel's link calls back into _warm
        for kernel in warm:
            kernel.link.close_nowait()
            kernel.kill()
        for task in list(self._tasks):
            task.cancel()


def _limit_memory(kernel: KernelHandle, memory_mb: int, user: str) -> None:
    """Lower the address-space limit of ``kernel`` (a process of this machine) for ``user``.

    Only ever lowers it: a pool's own ``memory_mb`` below the user's stays. A
    kernel on another node (Ray) keeps its pool's limit; the record says so.
    """
    limit = memory_mb * 1024 * 1024
    if kernel.node or kernel.pid is None:
        records.event("user-limit-skipped", user=user, limit="memory_mb", worker=kernel.id,
                      reason="the kernel runs on another node")
        return
    try:
        _soft, hard = resource.prlimit(kernel.pid, resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY and hard <= limit:
            return
        resource.prlimit(kernel.pid, resource.RLIMIT_AS, (limit, limit))
    except OSError as exc:  # it died meanwhile, or this system forbids it
        records.event("user-limit-skipped", user=user, limit="memory_mb", worker=kernel.id,
                      reason=exc.strerror or str(exc))
