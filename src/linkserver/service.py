"""The kernel service: a LinkServer with pools of kernels behind it.

Binds the pieces: a :class:`~linkserver.aio.LinkServer` for clients, and per
named pool a :class:`~linkserver.launcher.KernelLauncher` and a broker
-- shared (one kernel for every link) or pool (a kernel per link). A client
chooses a pool, asks for a persistent kernel or takes one back with its first
packet, ``LinkServerSelect[<|...|>]`` (docs/protocol.md §8.6); a client that
sends an ordinary request first gets the default pool. ``linkserver serve``
runs one of these; tests and embedding programs can too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wolframclient.language import wl

from . import records, wxf
from .aio.link import Link, LinkSettings
from .aio.server import DEFAULT_MAX_LINKS, LinkServer
from .broker.pool import PoolBroker
from .broker.control import Control, is_stop_request
from .broker.shared import SharedBroker
from .broker.worker import UserOf, as_request
from .config import MODES, PoolConfig, ServerConfig
from .errors import LinkError, SelectError
from .launcher import KernelLauncher, KernelSpec, LocalLauncher
from .launcher.ray import RayCluster, RayLauncher
from .names import DEFAULT_HOST, DEFAULT_PORT
from .protocol import CloseCode, answers
from .status import STATUS_MESSAGE, status_expr
from .users import BUILT_IN, User
from .wxf.peek import head_name

__all__ = ["KernelService", "Pool", "SelectError", "ServiceStatistics"]

log = logging.getLogger("linkserver.server")

SELECT = "LinkServerSelect"
#: Who may stop the server or see its status (docs/protocol.md §8.8).
ACCESS = ("admin", "anyone", "nobody")
_SELECT_KEYS = {"pool", "persistent", "kernel"}


def _is_local(peer: str) -> bool:
    """True for a peer on this machine: loopback TCP, a Unix socket, in-process."""
    host = peer.rpartition("@")[2].strip("[]")
    if "@" not in peer:
        return True  # "unix", "memory": no network in between
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ServiceStatistics:
    """What ``linkserver status`` shows."""

    name: str
    mode: str
    backend: str
    uptime: float
    links: int
    pools: str
    broker: Any
    #: where the default pool's kernels run ("local" or "ray")
    placement: str = "local"
    #: every live kernel of every pool: "POOL ID pid PID [on NODE]"
    where: tuple[str, ...] = ()
    #: one sentence per pool that cannot start kernels now
    problems: tuple[str, ...] = ()


def _default_server_id(port: int) -> str | None:
    """``HOSTNAME-PORT``: the same server, restarted, is the same again; None for port 0
    (a random identity: its kept kernels are never adopted by a later run)."""
    if not port:
        return None
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:50] or "host"
    return f"{host}-{port}"


class Pool:
    """One named pool: its configuration, its kernel launcher and its broker.

    Args:
        config: the pool's settings.
        zygote: fork kernels from a warm template.
        control: the server's hook for requests meant for itself.
        cluster: the server's Ray connection, for a pool placed on Ray.
        kernel_interface: where a Ray pool's kernel endpoint listens (and its
            kernels dial); by default this node's address as Ray knows it.
        kernel_tls: a Ray pool's kernel endpoint speaks TLS (the server does).
        server_id: the server's identity on the Ray cluster, for kept kernels.
    """

    def __init__(
        self, config: PoolConfig, *, zygote: bool = True, control: Control | None = None,
        cluster: RayCluster | None = None, kernel_interface: str | None = None,
        quit_allowed: str = "nobody", user_of: UserOf | None = None,
        kernel_tls: bool = False, server_id: str | None = None,
    ) -> None:
        self.config = config
        spec = config.spec(quit_allowed=quit_allowed)
        self.launcher: KernelLauncher
        if cluster is not None:
            self.launcher = RayLauncher(
                spec, config.ray, cluster, pool=config.name,
                interface=kernel_interface, zygote=zygote, tls=kernel_tls,
                keepalive=config.keepalive if config.mode == "pool" else 0.0,
                server_id=server_id,
            )
        else:
            self.launcher = LocalLauncher(spec, zygote=zygote)
        self.broker: SharedBroker | PoolBroker
        if config.mode == "shared":
            self.broker = SharedBroker(self.launcher, control=control,
                                       max_queued=config.max_queued, user_of=user_of)
        else:
            self.broker = PoolBroker(
                self.launcher, min_kernels=config.min, max_kernels=config.max,
                wait_timeout=config.wait, keepalive=config.keepalive, control=control,
                max_queued=config.max_queued,
                cull_idle=config.cull_idle, cull_close=config.cull == "close",
                user_of=user_of,
            )

    async def start(self) -> None:
        """Start the launcher and the pool's first kernels.

        Raises:
            KernelError: the kernels did not start.
        """
        await self.launcher.start()
        if isinstance(self.broker, PoolBroker):
            # A cluster may lack a pool's resources for now: the server starts all the
            # same and says so to that pool's clients and in status.
            await self.broker.start(strict=self.launcher.placement == "local")
        else:
            await self.broker.start()

    @property
    def problem(self) -> str:
        """Why this pool cannot start kernels now; "" when it can."""
        return getattr(self.broker, "problem", "")

    def health(self) -> str | None:
        """None if this pool can serve a new client now or soon; else a short reason."""
        reason = self.broker.health()
        return None if reason is None else f"pool {self.config.name}: {reason}"

    async def aclose(self) -> None:
        """Answer or refuse every request, then stop every kernel."""
        await self.broker.aclose()
        await self.launcher.aclose()


class KernelService:
    """Serve Wolfram Language evaluation to any number of links at one address.

    Args:
        port: TCP port (0 picks a free one).
        interface: address to bind ("" for every interface).
        config: named pools; without it, one pool named "default" made of the
            arguments below.
        mode: "shared" (one kernel, state shared) or "pool" (a kernel per link).
        spec: how to run kernels.
        pool_min: kernels kept warm (pool mode).
        pool_max: kernels at most (pool mode).
        pool_wait: seconds a link waits for a kernel before it is refused (pool mode).
        keepalive: seconds a persistent kernel waits for its client (pool mode).
        settings: limits of client links.
        zygote: fork kernels from a warm template (fast start).
        log_streams: write a stream log of every client link to a new file in
            this directory (see :meth:`log_stream`).
        tls: speak TLS with this server context (:mod:`linkserver.security`);
            the kernel endpoints of Ray pools then speak TLS too.
        max_links: client links at most (see :class:`~linkserver.aio.LinkServer`).
        stop_allowed: who may stop the server with ``$KeepRunning = False``:
            ``"admin"`` (the default), ``"anyone"`` or ``"nobody"``.
        status_allowed: who may ask for the status: ``"admin"`` (the default)
            or ``"anyone"``. An *admin* is a client that proved a key of role
            ``"admin"`` (``settings.keys``); on a server without keys, a client
            on this machine (docs/protocol.md §8.8).
        ray: the Ray cluster that places the kernels of every pool whose
            ``placement`` is not ``"local"`` -- any ``ray.init`` address
            (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``) or ``"local"``
            for a private single-node Ray; None places kernels on this machine.
        kernel_interface: the address Ray pools' kernel endpoints listen on
            and their kernels dial (default: this node's address as Ray knows it).
        quit_allowed: who may end a shared kernel with ``Quit[]``: ``"nobody"``
            (refused in the kernel) or ``"anyone"``; None takes ``config``'s.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        interface: str | None = DEFAULT_HOST,
        *,
        config: ServerConfig | None = None,
        mode: str = "shared",
        spec: KernelSpec | None = None,
        pool_min: int = 1,
        pool_max: int = 4,
        pool_wait: float = 30.0,
        keepalive: float = 0.0,
        settings: LinkSettings | None = None,
        zygote: bool = True,
        log_streams: str | os.PathLike[str] | None = None,
        tls: ssl.SSLContext | None = None,
        max_links: int | None = DEFAULT_MAX_LINKS,
        stop_allowed: str = "admin",
        status_allowed: str = "admin",
        ray: str | None = None,
        kernel_interface: str | None = None,
        quit_allowed: str | None = None,
    ) -> None:
        if stop_allowed not in ACCESS or status_allowed not in ACCESS:
            raise ValueError(f"who may stop or ask for status is one of {', '.join(ACCESS)}")
        self.stop_allowed = stop_allowed
        self.status_allowed = status_allowed
        if config is None:
            if mode not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
            spec = spec or KernelSpec()
            config = ServerConfig((PoolConfig(
                "default", mode, spec.backend, None, pool_min, pool_max, pool_wait, keepalive,
                spec.eval_timeout, spec.memory_mb, spec.init,
            ),))
        self.config = config
        quit_allowed = quit_allowed or config.quit_allowed
        placed = {p.name: p.placed(ray) for p in config.pools}
        if ray is None and "ray" in placed.values():
            wanted = next(name for name, where in placed.items() if where == "ray")
            raise ValueError(
                f"pool {wanted!r} has placement = \"ray\": start the server with --ray ADDRESS "
                "(auto, HOST:PORT, ray://HOST:PORT, or local)"
            )
        sandboxed = next((p.name for p in config.pools if p.sandbox and placed[p.name] == "ray"),
                         None)
        if sandboxed is not None:
            raise ValueError(
                f"pool {sandboxed!r} is sandboxed and placed on Ray: the sandbox is for "
                "kernels on this machine (give that pool placement = \"local\")"
            )
        self.cluster = RayCluster(ray) if ray is not None and "ray" in placed.values() else None
        #: who this server is on the Ray cluster: the kernels it keeps are named by it
        #: (docs/cluster.md "Kernels that outlive the server")
        self.server_id = config.server_id or _default_server_id(port)
        #: who each key stands for, by the key's label (:attr:`Link.role`)
        self.users: dict[str, User] = {**BUILT_IN, **{u.name: u for u in config.users}}
        self.pools = {
            p.name: Pool(
                p, zygote=zygote, control=self._control, kernel_interface=kernel_interface,
                cluster=self.cluster if placed[p.name] == "ray" else None,
                quit_allowed=quit_allowed, user_of=self.user_of,
                kernel_tls=tls is not None, server_id=self.server_id,
            )
            for p in config.pools
        }
        self.default = self.pools[config.default]
        self.server = LinkServer(
            port, interface, settings=settings, log_streams=log_streams, tls=tls,
            max_links=max_links,
        )
        self._keyed = bool(settings and settings.keys)
        #: the keys clients prove (the side port asks for the admin one)
        self.keys: tuple[tuple[str, bytes], ...] = tuple(settings.keys) if settings and settings.keys else ()
        self._links: set[Link] = set()
        #: bytes in and out of client links already closed
        self.closed_bytes = [0, 0]
        self._started = time.monotonic()
        self._stop_requested: asyncio.Event | None = None

    # The default pool's pieces, for the common one-pool server.
    @property
    def mode(self) -> str:
        """The default pool's mode."""
        return self.default.config.mode

    @property
    def spec(self) -> KernelSpec:
        """The default pool's kernel spec."""
        return self.default.launcher.spec

    @property
    def broker(self) -> SharedBroker | PoolBroker:
        """The default pool's broker."""
        return self.default.broker

    @property
    def launcher(self) -> KernelLauncher:
        """The default pool's kernel launcher."""
        return self.default.launcher

    @property
    def name(self) -> str:
        """The address clients connect to, ``PORT@INTERFACE``."""
        return self.server.name

    async def start(self) -> KernelService:
        """Start every pool's kernels first (so no client waits for one), then listen.

        Raises:
            KernelError: the kernels did not start.
            LinkError: the address cannot be listened on.
        """
        try:
            await asyncio.gather(*(pool.start() for pool in self.pools.values()))
            await self.server.start()
        except BaseException:
            for pool in self.pools.values():
                await pool.aclose()
            if self.cluster is not None:
                await self.cluster.aclose()
            raise
        self.server.on_link(self._attach)
        self._started = time.monotonic()
        self._stop_requested = asyncio.Event()
        records.event("service-started", server=self.name, pools=",".join(self.pools))
        return self

    def _attach(self, link: Link) -> None:
        self._links.add(link)
        link.on_end(self._link_ended)
        link.on_message(lambda message, _arg: self._answer_status(link, message))
        link.set_receiver(lambda payload: self._first_packet(link, payload))

    def _link_ended(self, link: Link) -> None:
        self._links.discard(link)
        self.closed_bytes[0] += link.bytes_in
        self.closed_bytes[1] += link.bytes_out

    def traffic(self) -> tuple[int, int]:
        """Bytes clients sent and were sent so far, open links included (loop thread)."""
        return (self.closed_bytes[0] + sum(link.bytes_in for link in self._links),
                self.closed_bytes[1] + sum(link.bytes_out for link in self._links))

    @property
    def links_open(self) -> int:
        """Client links open now."""
        return len(self._links)

    def _first_packet(self, link: Link, payload: bytes) -> None:
        """The first packet chooses the pool: LinkServerSelect, or a request for the default."""
        name = head_name(payload)
        if name is None or name.rpartition("`")[2] != SELECT:
            refusal = self.default.broker.over_limit(link)
            if refusal is not None:  # answered; the next packet may try again
                try:
                    final = as_request(payload)[1]
                except LinkError:
                    final = answers.EVALUATE_FINAL
                self._refuse(link, "userlimit", refusal, final)
                return
            link.set_receiver(None)
            link.push_back(payload)  # ahead of anything that arrived after it
            self.default.broker.attach(link)
            return
        try:
            self._select(link, payload)
        except SelectError as exc:
            self._refuse(link, exc.tag, exc.message)
        except LinkError as exc:  # the packet was not even valid WXF
            self._refuse(link, "badselect", exc.message)

    def _select(self, link: Link, payload: bytes) -> None:
        expr = wxf.loads(payload)
        args: tuple[Any, ...] = tuple(getattr(expr, "args", ()))
        options = args[0] if len(args) == 1 and isinstance(args[0], dict) else None
        if options is None or not set(options) <= _SELECT_KEYS:
            raise SelectError(
                "badselect",
                "write LinkServerSelect[<|\"pool\" -> name, \"persistent\" -> True, "
                "\"kernel\" -> id|>] (every key optional)",
            )
        pool_name = options.get("pool") or self.config.default
        pool = self.pools.get(str(pool_name))
        if pool is None:
            raise SelectError("nopool", f"there is no pool {pool_name!r}; the pools are: "
                              + ", ".join(self.pools))
        persistent = options.get("persistent") is True
        kernel_id = options.get("kernel")

        def bound(kernel: str) -> None:
            answer = {
                "pool": pool.config.name, "mode": pool.config.mode, "kernel": kernel,
                "persistent": persistent or pool.config.mode == "shared",
                "keepalive": pool.config.keepalive,
                # how many kernels the pool can give at once (client.map sizes itself by it)
                "max": 1 if pool.config.mode == "shared" else pool.config.max,
            }
            if not link.closed:
                link.put_payload_nowait(wxf.dumps(wl.ReturnPacket(answer)))

        link.set_receiver(None)
        if kernel_id is not None:
            try:
                pool.broker.reattach(link, str(kernel_id), persistent=persistent)
            except KeyError:
                link.set_receiver(lambda p: self._first_packet(link, p))
                raise SelectError("nokernel", f"no kernel {kernel_id!r} is waiting in pool "
                                  f"{pool.config.name!r}: its keep-alive passed, it is in use, "
                                  "or it never was") from None
            bound(str(kernel_id))
            return
        refusal = pool.broker.over_limit(link)
        if refusal is not None:
            link.set_receiver(lambda p: self._first_packet(link, p))
            raise SelectError("userlimit", refusal)
        try:
            pool.broker.attach(link, persistent=persistent, on_bound=bound)
        except ValueError as exc:
            link.set_receiver(lambda p: self._first_packet(link, p))
            raise SelectError("nopersist", str(exc)) from None

    def _refuse(self, link: Link, tag: str, text: str, final: str = answers.EVALUATE_FINAL) -> None:
        for packet in answers.failure(final, tag, text):
            if not link.closed:
                link.put_payload_nowait(packet)

    async def wait_stop_requested(self) -> None:
        """Wait until a client asked the server to stop (``$KeepRunning = False``)."""
        assert self._stop_requested is not None, "start() first"
        await self._stop_requested.wait()

    def _control(self, link: Link, payload: bytes) -> bool:
        """Answer the requests meant for the server itself; True if this was one."""
        if not is_stop_request(payload):
            return False
        final = as_request(payload)[1]
        if not self.allowed(link, self.stop_allowed):
            self._refuse(link, "notallowed",
                         f"only {self._who(self.stop_allowed)} may stop the server", final)
            records.event("access-denied", link=records.link_ref(link), peer=link.peer, what="stop")
            return True
        records.event("service-stop-requested", link=records.link_ref(link), peer=link.peer)
        for packet in answers.value(final, False):
            link.put_payload_nowait(packet)
        if self._stop_requested is not None:
            self._stop_requested.set()
        return True

    def _answer_status(self, link: Link, message: int) -> None:
        if message == STATUS_MESSAGE and not link.closed:
            if self.allowed(link, self.status_allowed):
                answer = status_expr(self.statistics())
            else:
                records.event("access-denied", link=records.link_ref(link), peer=link.peer, what="status")
                answer = wl.LinkServerStatus(wl.Failure("notallowed", {
                    "MessageTemplate": f"only {self._who(self.status_allowed)} may see the status"}))
            link.put_payload_nowait(wxf.dumps(answer))

    def user_of(self, link: Hashable) -> User | None:
        """The user ``link``'s key stands for; None on a server without keys."""
        assert isinstance(link, Link)
        label = link.role
        return self.users.get(label) if label is not None else None

    def admin_keys(self) -> list[bytes]:
        """The keys of role admin (the side port takes them as bearer tokens)."""
        return [key for label, key in self.keys
                if (user := self.users.get(label)) is not None and user.role == "admin"]

    def allowed(self, link: Link, who: str) -> bool:
        """Whether ``link`` may do what ``who`` (``"admin"``, ``"anyone"``, ``"nobody"``) allows."""
        if who == "anyone":
            return True
        if who == "nobody":
            return False
        if self._keyed:
            user = self.user_of(link)
            return user is not None and user.role == "admin"
        return _is_local(link.peer)

    def _who(self, who: str) -> str:
        if who == "nobody":
            return "nobody (the server's settings forbid it)"
        if self._keyed:
            return "a client holding an admin key"
        return "a client on this machine"

    def log_stream(
        self, link_id: bytes | str, path: str | os.PathLike[str] | None
    ) -> Path | None:
        """Switch the stream log of one client link on (to ``path``) or off (``None``).

        See :meth:`LinkServer.log_stream`; loop thread only.

        Raises:
            KeyError: no open link has that id.
            RecordsError: the file cannot be opened.
        """
        return self.server.log_stream(link_id, path)

    def statistics(self) -> ServiceStatistics:
        """Return a snapshot for ``status`` (the broker's figures are the default pool's)."""
        return ServiceStatistics(
            name=self.name,
            mode=self.mode,
            backend=self.spec.backend,
            uptime=time.monotonic() - self._started,
            links=len(self._links),
            pools=", ".join(self.pools),
            broker=self.broker.statistics(),
            placement=self.launcher.placement,
            where=tuple(
                f"{name} {k.id} pid {k.pid}" + (f" on {k.node}" if k.node else "")
                for name, pool in self.pools.items()
                for k in pool.launcher.statistics().kernels
            ),
            problems=tuple(
                f"pool {name}: {pool.problem}" for name, pool in self.pools.items() if pool.problem
            ),
        )

    async def aclose(self) -> None:
        """Stop accepting, answer or refuse every request, stop kernels, close links."""
        await self.server.aclose()
        for pool in self.pools.values():
            await pool.broker.aclose()
        for link in list(self._links):
            link.close_nowait(CloseCode.GOING_AWAY, "the server is shutting down")
        for pool in self.pools.values():
            await pool.launcher.aclose()
        if self.cluster is not None:
            await self.cluster.aclose()
        records.event("service-stopped", server=self.name)

    async def __aenter__(self) -> KernelService:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
