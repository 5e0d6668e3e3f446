"""Shared mode: one long-lived kernel whose state every link sees.

``x = 42`` set by one client is seen by the next. Requests from all links go
through one fair queue (:mod:`.queue`); each link's side output goes only to
that link (:mod:`.worker`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..aio.link import Link
from ..launcher import KernelLauncher
from .control import Control
from .worker import DEFAULT_MAX_QUEUED, KernelWorker, UserOf

__all__ = ["SharedBroker", "SharedStatistics"]


@dataclass(frozen=True, slots=True)
class SharedStatistics:
    """A snapshot of a shared broker."""

    mode: str
    kernels: int
    busy: bool
    queued: int
    completed: int


class SharedBroker:
    """Every link on one kernel.

    Args:
        launcher: where the kernel comes from (it is replaced if it dies).
        control: the server's hook for requests meant for itself.
        max_queued: requests one link may have waiting.
        user_of: the user each link stands for (their ``queued`` and
            ``eval_seconds`` limits apply; a shared kernel is no one's to hold).
    """

    mode = "shared"

    def __init__(
        self, launcher: KernelLauncher, *, control: Control | None = None,
        max_queued: int = DEFAULT_MAX_QUEUED,
        user_of: UserOf | None = None,
    ) -> None:
        self._launcher = launcher
        self._user_of = user_of
        self._control = control
        self._max_queued = max_queued
        self._worker: KernelWorker | None = None

    async def start(self) -> None:
        """Start the kernel and wait until it is ready.

        Raises:
            KernelError: the kernel did not start.
        """
        kernel = await self._launcher.launch()
        self._worker = KernelWorker(
            self._launcher, kernel, control=self._control, max_queued=self._max_queued,
            user_of=self._user_of,
        )

    def over_limit(self, link: Link) -> None:
        """Nothing: a shared kernel is everyone's, so no user holds it (pools have limits)."""
        return None

    def attach(
        self,
        link: Link,
        *,
        persistent: bool = False,
        on_bound: Callable[[str], None] | None = None,
    ) -> None:
        """Serve ``link`` from the shared kernel (which always persists).

        Args:
            link: the client's link.
            persistent: accepted for symmetry with pools: the shared kernel outlives every link.
            on_bound: called at once with the kernel's id.
        """
        assert self._worker is not None, "start() first"
        self._worker.attach(link)
        if on_bound is not None:
            on_bound(self._worker.id)

    def reattach(self, link: Link, kernel_id: str, *, persistent: bool = False) -> None:
        """Serve ``link`` from the shared kernel if ``kernel_id`` names it (it always persists).

        Raises:
            KeyError: ``kernel_id`` is not this pool's kernel.
        """
        if self._worker is None or kernel_id != self._worker.id:
            raise KeyError(kernel_id)
        self._worker.attach(link)

    def worker_ids(self) -> list[str]:
        """The ids of this pool's kernel workers (metrics name requests by pool through them)."""
        return [self._worker.id] if self._worker is not None else []

    def health(self) -> str | None:
        """None if the kernel is up or starting; else why not, in a few words, no details."""
        worker = self._worker
        if worker is None:
            return "not started"
        if worker.kernel is None and worker.start_failure is not None:
            return "its kernel cannot start"
        return None

    def statistics(self) -> SharedStatistics:
        """Return a snapshot of the queue and the kernel."""
        worker = self._worker
        return SharedStatistics(
            mode=self.mode,
            kernels=1 if worker is not None and worker.kernel is not None else 0,
            busy=worker.core.busy if worker is not None else False,
            queued=worker.core.queued if worker is not None else 0,
            completed=worker.core.completed if worker is not None else 0,
        )

    async def aclose(self) -> None:
        """Answer or refuse every request, then stop the kernel."""
        if self._worker is not None:
            await self._worker.aclose()
