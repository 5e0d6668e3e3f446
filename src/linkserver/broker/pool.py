"""Pool mode: each link gets a kernel of its own from a pool of warm kernels.

State never leaks between clients: a kernel serves one link and is
discarded when that link closes; a fresh one is warmed in the background.
At most ``max_kernels`` exist at once; a link that finds them all taken
waits up to ``wait_timeout`` seconds in a queue and is then refused with a
close code that says so (``TOO_MANY_LINKS``).

Theory of operation: ``_warm`` holds started kernels nobody uses yet;
``_launching`` counts kernels being started; ``_workers`` maps each served
link to its worker. Whenever any of these change, :meth:`_balance` decides
-- synchronously, with no I/O -- which waiting link gets which warm kernel
and how many kernels to start, then starts them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from ..aio.link import Link
from ..kernel.process import KernelError, KernelHandle, KernelLauncher
from ..protocol import CloseCode
from .worker import KernelWorker

__all__ = ["PoolBroker", "PoolStatistics"]

log = logging.getLogger("linkserver.broker")


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a pool."""

    mode: str
    kernels: int  #: started kernels, warm or serving
    warm: int  #: kernels ready for the next link
    serving: int  #: links being served
    waiting: int  #: links waiting for a kernel
    launching: int  #: kernels being started


class PoolBroker:
    """A kernel per link, from a warm pool.

    Args:
        launcher: where kernels come from.
        min_kernels: kernels kept warm and waiting for links.
        max_kernels: kernels that may exist at once.
        wait_timeout: seconds a link may wait for a kernel before it is refused.
    """

    mode = "pool"

    def __init__(
        self,
        launcher: KernelLauncher,
        *,
        min_kernels: int = 1,
        max_kernels: int = 4,
        wait_timeout: float = 30.0,
    ) -> None:
        if not 0 <= min_kernels <= max_kernels or max_kernels < 1:
            raise ValueError("need 0 <= min_kernels <= max_kernels and max_kernels >= 1")
        self._launcher = launcher
        self.min_kernels = min_kernels
        self.max_kernels = max_kernels
        self.wait_timeout = wait_timeout
        self._warm: deque[KernelHandle] = deque()
        self._launching = 0
        self._workers: dict[Link, KernelWorker] = {}
        self._waiting: deque[tuple[Link, asyncio.TimerHandle]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def _total(self) -> int:
        return len(self._warm) + self._launching + len(self._workers)

    async def start(self) -> None:
        """Start ``min_kernels`` kernels and wait until they are ready.

        Raises:
            KernelError: a kernel did not start.
        """
        kernels = await asyncio.gather(
            *(self._launcher.launch() for _ in range(self.min_kernels))
        )
        for kernel in kernels:
            self._add_warm(kernel)

    def _add_warm(self, kernel: KernelHandle) -> None:
        self._warm.append(kernel)
        kernel.link.on_end(lambda _link: self._warm_kernel_died(kernel))

    def _warm_kernel_died(self, kernel: KernelHandle) -> None:
        if kernel in self._warm:  # died before anyone used it
            self._warm.remove(kernel)
            self._balance()

    def attach(self, link: Link) -> None:
        """Give ``link`` a kernel now, or queue it until one is free."""
        if self._closed:
            link.close_nowait(CloseCode.GOING_AWAY, "the server is shutting down")
            return
        handle = asyncio.get_running_loop().call_later(
            self.wait_timeout, self._refuse, link
        )
        self._waiting.append((link, handle))
        link.on_end(self._link_gone)
        self._balance()

    def _refuse(self, link: Link) -> None:
        for entry in self._waiting:
            if entry[0] is link:
                self._waiting.remove(entry)
                break
        else:
            return
        log.warning("pool.refused %s after %g s: all %d kernels busy", link.peer,
                    self.wait_timeout, self.max_kernels)
        link.close_nowait(
            CloseCode.TOO_MANY_LINKS,
            f"all {self.max_kernels} kernels of this pool are in use and none came free "
            f"within {self.wait_timeout:g} s; try again later or ask for a larger pool",
        )

    def _link_gone(self, link: Link) -> None:
        for entry in self._waiting:
            if entry[0] is link:
                entry[1].cancel()
                self._waiting.remove(entry)
                break
        worker = self._workers.pop(link, None)
        if worker is not None:
            # The kernel held this client's state: it is not reused (no leaks).
            task = asyncio.ensure_future(worker.aclose("the client left"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._balance()

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
            worker = KernelWorker(self._launcher, kernel)
            self._workers[link] = worker
            worker.attach(link)
        wanted = max(self.min_kernels - len(self._warm), len(self._waiting)) - self._launching
        room = self.max_kernels - self._total
        for _ in range(max(0, min(wanted, room))):
            self._launching += 1
            task = asyncio.ensure_future(self._launch())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _launch(self) -> None:
        try:
            kernel = await self._launcher.launch()
        except KernelError as exc:
            log.warning("pool.launch.failed: %s", exc)
            self._launching -= 1
            await asyncio.sleep(1.0)  # do not spin on a kernel that cannot start
            self._balance()
            return
        self._launching -= 1
        if self._closed:
            kernel.link.close_nowait()
            kernel.kill()
            return
        self._add_warm(kernel)
        self._balance()

    def statistics(self) -> PoolStatistics:
        """Return a snapshot of the pool."""
        return PoolStatistics(
            mode=self.mode,
            kernels=len(self._warm) + len(self._workers),
            warm=len(self._warm),
            serving=len(self._workers),
            waiting=len(self._waiting),
            launching=self._launching,
        )

    async def aclose(self) -> None:
        """Refuse waiting links, answer or refuse every request, stop every kernel."""
        self._closed = True
        waiting = list(self._waiting)
        self._waiting.clear()
        for link, handle in waiting:
            handle.cancel()
            link.close_nowait(CloseCode.GOING_AWAY, "the server is shutting down")
        for worker in list(self._workers.values()):
            await worker.aclose()
        self._workers.clear()
        warm = list(self._warm)
        self._warm.clear()  # first: closing a kernel's link calls back into _warm
        for kernel in warm:
            kernel.link.close_nowait()
            kernel.kill()
        for task in list(self._tasks):
            task.cancel()
