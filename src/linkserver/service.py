"""The kernel service: a LinkServer with kernels behind it.

Binds the pieces: a :class:`~linkserver.aio.LinkServer` for clients, a
:class:`~linkserver.kernel.process.KernelLauncher` for kernel processes and a
broker -- shared (one kernel for every link) or pool (a kernel per link).
``linkserver serve`` runs one of these; tests and embedding programs can too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .aio.link import Link, LinkSettings
from .aio.server import LinkServer
from .broker.pool import PoolBroker
from .broker.shared import SharedBroker
from .kernel.process import KernelLauncher
from .kernel.spec import KernelSpec
from .names import DEFAULT_HOST, DEFAULT_PORT
from . import wxf
from .protocol import CloseCode
from .status import STATUS_MESSAGE, status_expr

__all__ = ["KernelService", "ServiceStatistics"]

log = logging.getLogger("linkserver.server")

MODES = ("shared", "pool")


@dataclass(frozen=True, slots=True)
class ServiceStatistics:
    """What ``linkserver status`` shows."""

    name: str
    mode: str
    backend: str
    uptime: float
    links: int
    broker: Any


class KernelService:
    """Serve Wolfram Language evaluation to any number of links at one address.

    Args:
        port: TCP port (0 picks a free one).
        interface: address to bind ("" for every interface).
        mode: "shared" (one kernel, state shared) or "pool" (a kernel per link).
        spec: how to run kernels.
        pool_min: kernels kept warm (pool mode).
        pool_max: kernels at most (pool mode).
        pool_wait: seconds a link waits for a kernel before it is refused (pool mode).
        settings: limits of client links.
        zygote: fork kernels from a warm template (fast start).
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        interface: str | None = DEFAULT_HOST,
        *,
        mode: str = "shared",
        spec: KernelSpec | None = None,
        pool_min: int = 1,
        pool_max: int = 4,
        pool_wait: float = 30.0,
        settings: LinkSettings | None = None,
        zygote: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.spec = spec or KernelSpec()
        self.mode = mode
        self.launcher = KernelLauncher(self.spec, zygote=zygote)
        self.broker: SharedBroker | PoolBroker
        if mode == "shared":
            self.broker = SharedBroker(self.launcher)
        else:
            self.broker = PoolBroker(
                self.launcher, min_kernels=pool_min, max_kernels=pool_max, wait_timeout=pool_wait
            )
        self.server = LinkServer(port, interface, settings=settings)
        self._links: set[Link] = set()
        self._started = time.monotonic()

    @property
    def name(self) -> str:
        """The address clients connect to, ``PORT@INTERFACE``."""
        return self.server.name

    async def start(self) -> KernelService:
        """Start kernels first (so no client waits for one), then listen.

        Raises:
            KernelError: the kernels did not start.
            LinkError: the address cannot be listened on.
        """
        await self.launcher.start()
        try:
            await self.broker.start()
            await self.server.start()
        except BaseException:
            await self.broker.aclose()
            await self.launcher.aclose()
            raise
        self.server.on_link(self._attach)
        self._started = time.monotonic()
        log.info("service.started %s mode %s backend %s", self.name, self.mode, self.spec.backend)
        return self

    def _attach(self, link: Link) -> None:
        self._links.add(link)
        link.on_end(self._links.discard)
        link.on_message(lambda message, _arg: self._answer_status(link, message))
        self.broker.attach(link)

    def _answer_status(self, link: Link, message: int) -> None:
        if message == STATUS_MESSAGE and not link.closed:
            link.put_payload_nowait(wxf.dumps(status_expr(self.statistics())))

    def statistics(self) -> ServiceStatistics:
        """Return a snapshot for ``status``."""
        return ServiceStatistics(
            name=self.name,
            mode=self.mode,
            backend=self.spec.backend,
            uptime=time.monotonic() - self._started,
            links=len(self._links),
            broker=self.broker.statistics(),
        )

    async def aclose(self) -> None:
        """Stop accepting, answer or refuse every request, stop kernels, close links."""
        await self.server.aclose()
        await self.broker.aclose()
        for link in list(self._links):
            link.close_nowait(CloseCode.GOING_AWAY, "the server is shutting down")
        await self.launcher.aclose()
        log.info("service.stopped %s", self.name)

    async def __aenter__(self) -> KernelService:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
