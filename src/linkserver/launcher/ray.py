"""Kernels on a Ray cluster: Ray places them, our own links carry the work.

:class:`RayLauncher` keeps the contract of :mod:`.base` with kernels that
run on whatever node of a Ray cluster Ray picks. Each kernel is a Ray actor
(:class:`linkserver.kernel.ray_node.KernelActor`) that books the pool's
resources (``[pools.NAME.ray]``: CPUs, memory, custom resources) and lives
exactly as long as the kernel process beside it. That process dials back to
this launcher's *kernel endpoint* -- a link server on TCP, at an address the
cluster's nodes reach, that accepts only links proving a key made for this
launcher -- and from then on every evaluation travels over that link, never
as a Ray call (DESIGN.md "Kernels on a cluster").

Warm starts.  The first kernel placed on a node starts a
:class:`~linkserver.kernel.ray_node.NodeTemplate` actor pinned to that node,
which loads the backend once (seconds) and forks every later kernel there
(tens of milliseconds), as the local launcher's template does on this machine.

Never a re-run.  Actors are created with ``max_restarts=0`` and
``max_task_retries=0``: Ray must never bring a kernel back blank on its own.

Death.  The kernel process watches its actor and exits with it, so a killed
actor or a node whose raylet died ends the kernel's link at once. The
launcher also waits on a call that returns only when the kernel ends; when
Ray fails that call because the actor or its node died, the launcher calls
:meth:`~.base.KernelHandle.lost` with a reason naming the node -- which is
what ends the link when the node vanished without closing its sockets.

TLS.  A launcher made with ``tls=True`` (the server speaks TLS) makes a
self-signed certificate for its endpoint when it starts, keeps it only in
memory, and hands its fingerprint to every kernel, which dials over TLS and
accepts only that certificate: evaluations between nodes are then encrypted
as the clients' are (docs/protocol.md §8.12).

Kept kernels.  A launcher made with a ``keepalive`` (a pool whose persistent
kernels wait for their client) places every kernel as a *detached* actor,
named ``linkserver-kept:SERVER:POOL:ID`` in the pool's namespace, SERVER
being the server's stable identity (``server_id``), so that the actor
outlives the server's driver. The broker says which kernels are kept for a
client (:meth:`RayKernelHandle.keep`); a kept kernel whose server dies or
stops keeps its session for the keep-alive time and waits on its actor
(:mod:`linkserver.kernel.redial`). When a launcher with the same identity
starts again on the same cluster and namespace, :meth:`RayLauncher.adopt`
lists those actors, hands each kept one this run's endpoint and key
(:meth:`~linkserver.kernel.ray_node.KernelActor.rebind`), and takes back the
kernel that dials in. A kernel still linked to a live server is refused by
its actor, so two servers never take each other's kernels, and names keep a
server with another identity from even looking.

Placement failures.  Before it asks Ray for an actor, the launcher checks
that some live node offers the resources at all; if none does it raises
:class:`~.base.PlacementError` with one sentence that says so, instead of
leaving an actor pending for ever. A kernel Ray cannot place within
``spec.start_timeout`` (every fitting node is full) is a plain
:class:`~.base.KernelError`.

Ray itself is imported only when a :class:`RayCluster` connects, so that a
server without the ``ray`` extra loads none of it.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from pathlib import Path
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from .. import records
from ..aio.link import Link, LinkSettings
from ..aio.server import LinkServer
from ..errors import LinkError
from ..kernel import FORKABLE
from ..kernel.ray_node import KernelActor, NodeTemplate
from ..security import new_key, self_signed, server_context
from .base import (
    KernelError,
    KernelHandle,
    KeptKernel,
    KernelLauncher,
    Pending,
    PlacementError,
    run_init,
    take_greeting,
)
from .spec import KernelSpec, RayOptions

__all__ = ["RayCluster", "RayKernelHandle", "RayLauncher", "RayNode"]

log = logging.getLogger("linkserver.kernel")

#: Seconds a snapshot of the cluster's nodes is reused for placement checks.
_NODES_TTL = 2.0
#: Seconds an adopting server waits for a kept kernel to notice that its old
#: server went (its link breaks at once when that server's process dies; this
#: covers a restart quicker than the kernel's notice). A kernel still linked
#: after it is a live server's and is left alone.
_ADOPT_WAIT = 5.0
#: Threads of a kernel's actor: each server that adopts it waits on one (wait()).
_KEPT_CONCURRENCY = 16


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise KernelError(
            "Ray is not installed; install it with: pip install 'linkserver[ray]'"
        ) from exc
    return ray


class RayCluster:
    """The server's one connection to a Ray cluster, shared by its Ray pools.

    Ray allows one connection per process, so every :class:`RayLauncher` of
    a server uses the same :class:`RayCluster`. If this process is already
    connected (a test, an embedding program), it uses that connection and
    leaves it open at the end.

    Args:
        address: anything ``ray.init(address=...)`` accepts -- ``"auto"``,
            ``"HOST:PORT"``, ``"ray://HOST:PORT"`` -- or ``"local"`` for a
            private single-node Ray started for this server.
    """

    def __init__(self, address: str = "local") -> None:
        self.address = address
        self.node_ip = ""
        self._owned = False
        self._connected = False
        self._lock = asyncio.Lock()
        self._nodes: list[dict[str, Any]] = []
        self._nodes_at = -_NODES_TTL

    @property
    def connected(self) -> bool:
        """True once :meth:`connect` succeeded (and until :meth:`aclose`)."""
        return self._connected

    async def connect(self) -> None:
        """Connect to the cluster (once; later calls return at once).

        Raises:
            KernelError: Ray is not installed or the cluster cannot be reached.
        """
        async with self._lock:
            if not self._connected:
                await asyncio.to_thread(self._connect)
                self._connected = True

    def _connect(self) -> None:
        ray = _import_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False,
                         configure_logging=False, log_to_driver=True)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
                raise KernelError(
                    f"cannot reach the Ray cluster at {self.address!r} ({exc}); start one with "
                    "'ray start --head' or pass --ray local"
                ) from exc
            self._owned = True
        self.node_ip = ray.util.get_node_ip_address()
        records.event("ray-connected", address=self.address, node_ip=self.node_ip,
                      owned=self._owned)

    async def nodes(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The cluster's nodes as ``ray.nodes()`` lists them (cached for 2 s unless ``fresh``)."""
        now = time.monotonic()
        if fresh or now - self._nodes_at >= _NODES_TTL:
            ray = _import_ray()
            self._nodes = await asyncio.to_thread(ray.nodes)
            self._nodes_at = time.monotonic()
        return self._nodes

    async def aclose(self) -> None:
        """Disconnect, and stop the private Ray this object started; idempotent."""
        if self._connected and self._owned:
            ray = _import_ray()
            await asyncio.to_thread(ray.shutdown)
        self._connected = False
        self._owned = False


@dataclass(frozen=True, slots=True)
class RayNode:
    """A Ray node as ``status`` and error messages name it."""

    id: str
    ip: str

    def __str__(self) -> str:
        return f"{self.id[:12]}@{self.ip}"


def _ray_reason(exc: BaseException, node: RayNode) -> str:
    """Why a kernel's actor is gone, in a few words for ``kerneldied``."""
    text = str(exc).lower()
    if "node" in text and ("died" in text or "dead" in text):
        return f"Ray lost its node {node}"
    return f"its Ray actor on node {node} died or was killed"


class RayKernelHandle(KernelHandle):
    """A kernel whose place is a Ray actor; killing it is ``ray.kill`` of the actor."""

    placement = "ray"

    def __init__(
        self, kernel_id: str, pid: int, link: Link, info: dict[str, Any], *,
        actor: Any, node: RayNode, detached: bool = False, keep_seq: int = 0,
    ) -> None:
        super().__init__(kernel_id, pid, link, info)
        self.actor = actor
        self.ray_node = node
        #: its actor is detached: it can outlive the server, kept or released
        self.detached = detached
        #: let go at shutdown (:meth:`release`): its end must not kill its actor
        self.released = False
        self._keep_seq = keep_seq
        self._kept: tuple[str | None, str | None] = (None, None)

    def keep(self, worker: str | None, user: str | None = None) -> None:
        """Tell the actor whether (and for whom) its kernel is kept; see :mod:`.base`."""
        if not self.detached or self._kept == (worker, user) or not self.alive:
            return
        self._kept = (worker, user)
        self._keep_seq += 1
        ref = self.actor.keep.remote(self._keep_seq, worker, user)
        task = asyncio.ensure_future(_quietly(ref, self.id))
        _background.add(task)
        task.add_done_callback(_background.discard)

    def release(self) -> None:
        """Close the link and leave a detached kernel to wait for adoption;
        any other is stopped."""
        if not self.detached:
            self.stop()
            return
        self.released = True
        self.link.close_nowait()

    @property
    def node(self) -> str | None:
        """``NODEID@ADDRESS`` of the Ray node it runs on (the id cut to 12 digits)."""
        return str(self.ray_node)

    def _terminate(self) -> None:
        _kill_actor(self.actor)


#: Tasks of fire-and-forget actor calls, kept so that they finish.
_background: set[asyncio.Future[None]] = set()


async def _quietly(ref: Any, kernel_id: str) -> None:
    """Await an actor call whose answer nobody needs; record a failure."""
    try:
        await _result(ref)
    except Exception as exc:  # the actor died meanwhile: its death is reported elsewhere
        records.event("kernel-keep-failed", kernel=kernel_id, reason=str(exc).splitlines()[0][:200])


def _kill_actor(actor: Any) -> None:
    """End an actor at once (its kernel follows it); never raise."""
    try:
        ray = _import_ray()
        ray.kill(actor, no_restart=True)
    except Exception:  # already gone, or Ray is shutting down
        pass


async def _result(ref: Any) -> Any:
    """Await a Ray ObjectRef from any asyncio loop."""
    return await asyncio.wrap_future(ref.future())


class RayLauncher(KernelLauncher):
    """Starts kernels of one :class:`KernelSpec` as Ray actors (the contract of :mod:`.base`).

    Args:
        spec: what kernels to run.
        options: what each kernel books on Ray, and its namespace.
        cluster: the server's connection to Ray.
        pool: the pool's name, for actor names and messages.
        interface: the address the kernel endpoint binds and kernels dial;
            by default this node's address as Ray knows it.
        zygote: fork a node's kernels from a template on that node (fast);
            False starts each kernel as a fresh process.
        tls: the endpoint speaks TLS with a certificate of its own that kernels
            pin (for a server that speaks TLS to its clients).
        keepalive: seconds a kept kernel waits to be adopted when this server
            goes; above 0, every kernel is a detached actor named from
            ``server_id`` (see "Kept kernels" above).
        server_id: the server's stable identity on the cluster: a server
            started again with the same one adopts the kernels kept for it.
            By default a random one (nothing is ever adopted).
    """

    placement = "ray"

    def __init__(
        self, spec: KernelSpec, options: RayOptions, cluster: RayCluster, *,
        pool: str = "default", interface: str | None = None, zygote: bool = True,
        tls: bool = False, keepalive: float = 0.0, server_id: str | None = None,
    ) -> None:
        super().__init__(spec)
        self.options = options
        self.cluster = cluster
        self.pool = pool
        self._interface = interface
        self._use_zygote = zygote and spec.backend in FORKABLE
        #: tells this launcher's actors apart from another server's on the same cluster
        self.token = uuid.uuid4().hex[:8]
        self.keepalive = keepalive
        self.server_id = server_id or self.token
        #: the names of this server's kept kernels' actors begin so (then the kernel's id)
        self.kept_prefix = f"linkserver-kept:{self.server_id}:{pool}:"
        self._key = new_key()
        self._tls = tls
        #: the endpoint certificate's ``sha256:<hex>`` that kernels pin; None without TLS
        self.fingerprint: str | None = None
        self._server: LinkServer | None = None
        self._pending: Pending = {}
        self._templates: dict[str, asyncio.Future[Any]] = {}
        self._handles: set[RayKernelHandle] = set()
        self._watchers: dict[RayKernelHandle, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._actor_class: Any = None
        self._template_class: Any = None
        self._closed = False

    @property
    def address(self) -> str:
        """The kernel endpoint, ``PORT@HOST``, that kernels dial."""
        if self._server is None:
            return ""
        return f"{self._server.port}@{self._interface}"

    async def start(self) -> None:
        """Connect to Ray and listen for kernels on TCP, with this launcher's key.

        Raises:
            KernelError: Ray is missing or unreachable, or the endpoint cannot listen.
        """
        await self.cluster.connect()
        ray = _import_ray()
        self._interface = self._interface or self.cluster.node_ip
        settings = LinkSettings(idle_timeout=None, keys=(("kernel", self._key.encode()),))
        context = None
        if self._tls:
            # The pair lives only in the context: its files go as soon as it is loaded.
            with tempfile.TemporaryDirectory(prefix="linkserver-kernel-tls-") as scratch:
                context, self.fingerprint = server_context(
                    *self_signed(Path(scratch), self._interface)
                )
        self._server = LinkServer(0, self._interface, settings=settings, tls=context)
        try:
            await self._server.start()
        except LinkError as exc:
            raise KernelError(
                f"the kernel endpoint cannot listen on {self._interface} ({exc}); "
                "choose a reachable address with --kernel-interface"
            ) from exc
        self._server.on_link(self._greeted)
        common = {"max_restarts": 0, "max_task_retries": 0, "max_concurrency": 4}
        kernel_options = dict(common)
        if self.keepalive > 0:
            kernel_options["max_concurrency"] = _KEPT_CONCURRENCY
        self._actor_class = ray.remote(**kernel_options)(KernelActor)
        self._template_class = ray.remote(**common)(NodeTemplate)
        records.event("ray-launcher-started", pool=self.pool, endpoint=self.address,
                      namespace=self.options.namespace, tls=self._tls)

    async def _greeted(self, link: Link) -> None:
        """A kernel dialled in with the key: read its KernelReady and wake its launch."""
        await take_greeting(link, self.spec.start_timeout, self._pending)

    async def _check_placeable(self) -> None:
        """Raise PlacementError when no live node offers what one kernel books."""
        need = self.options.demand()
        for fresh in (False, True):  # a cached "no" is checked afresh: a node may have joined
            try:
                nodes = await self.cluster.nodes(fresh=fresh)
            except Exception as exc:
                raise KernelError(
                    f"cannot list the Ray cluster's nodes ({exc}); is it up?"
                ) from exc
            for node in nodes:
                offered = node.get("Resources", {})
                if node.get("Alive") and all(offered.get(k, 0.0) >= v for k, v in need.items()):
                    return
        raise PlacementError(
            f"no node of the Ray cluster offers what a kernel of pool {self.pool!r} asks for "
            f"({self.options.describe()}); add a node that has it or change [pools."
            f"{self.pool}.ray]"
        )

    async def _within(self, awaitable: Awaitable[Any], deadline: float, what: str) -> Any:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(awaitable, max(remaining, 0.001))
        except TimeoutError as exc:
            raise KernelError(
                f"a kernel of pool {self.pool!r} was not {what} within "
                f"{self.spec.start_timeout:g} s; every node that fits may be busy "
                "(see 'ray status')"
            ) from exc

    async def launch(self) -> KernelHandle:
        """Place one kernel on Ray and return it once it dialled back and ran ``spec.init``.

        Raises:
            PlacementError: no node offers the resources the pool asks for.
            KernelError: the launcher is closed, Ray failed, or the kernel was
                not placed or ready within ``spec.start_timeout``.
        """
        if self._closed:
            raise KernelError("the kernel launcher is closed; start a new one")
        if self._server is None:
            raise KernelError("the kernel launcher has not started; call start() first")
        await self._check_placeable()
        ray = _import_ray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.start_timeout
        kernel_id = uuid.uuid4().hex[:12]
        ready: asyncio.Future[tuple[Link, dict[str, Any]]] = loop.create_future()
        self._pending[kernel_id] = ready
        actor: Any = None
        exited: asyncio.Future[Any] | None = None
        try:
            options = self.options
            detached = self.keepalive > 0
            actor = self._actor_class.options(
                name=(f"{self.kept_prefix}{kernel_id}" if detached
                      else f"linkserver-kernel-{self.token}-{kernel_id}"),
                namespace=options.namespace,
                lifetime="detached" if detached else None,
                num_cpus=options.num_cpus,
                memory=options.memory_mb * 1024 * 1024 if options.memory_mb else None,
                resources=dict(options.resources) or None,
            ).remote(self.keepalive)
            placed = await self._placed(actor, deadline)
            node = RayNode(str(placed["node_id"]), str(placed["ip"]))
            pid = await self._start_kernel(actor, kernel_id, node, int(placed["pid"]), deadline,
                                           placed.get("redial"))
            exited = asyncio.ensure_future(_result(actor.wait.remote()))
            link, info = await self._wait_ready(ready, exited, deadline, node)
        except ray.exceptions.RayError as exc:
            if exited is not None:
                exited.cancel()
            _kill_actor(actor)
            raise KernelError(
                f"Ray could not start a kernel of pool {self.pool!r}: {str(exc).splitlines()[0]}"
            ) from exc
        except BaseException:
            if exited is not None:
                exited.cancel()
            if actor is not None:
                _kill_actor(actor)  # placed but never ready: it must not linger
            raise
        finally:
            self._pending.pop(kernel_id, None)
        handle = RayKernelHandle(kernel_id, pid, link, info, actor=actor, node=node,
                                 detached=self.keepalive > 0)
        self._track(handle, exited)
        if self.spec.init:
            try:
                await self._initialise(handle)
            except BaseException:
                handle.stop()
                raise
        records.event("kernel-started", kernel=kernel_id, pid=pid, backend=self.spec.backend,
                      placement="ray", node=str(node))
        return handle

    def _track(self, handle: RayKernelHandle, exited: asyncio.Future[Any]) -> None:
        self._handles.add(handle)
        self._watchers[handle] = asyncio.ensure_future(self._watch(handle, exited))
        handle.on_dead(self._ended)

    async def adopt(self) -> list[KeptKernel]:
        """Take back the kernels kept for this server (its ``server_id``) and pool
        that a previous run left on the cluster; see "Kept kernels" above.

        A kernel is adopted when its actor says it is kept for a client and
        hands it this run's endpoint, and it dials in within the start time.
        Kernels not kept, or still linked to a live server, are left alone;
        one that took the endpoint but never dialled in is killed. Never raises.
        """
        if self.keepalive <= 0 or self._server is None:
            return []
        ray = _import_ray()
        namespace = self.options.namespace
        try:
            named = await asyncio.to_thread(ray.util.list_named_actors, True)
        except Exception as exc:
            records.event("kernel-adopt-failed", pool=self.pool, reason=str(exc)[:200])
            return []
        names = sorted(entry["name"] for entry in named if entry.get("namespace") == namespace
                       and str(entry.get("name", "")).startswith(self.kept_prefix))
        found = await asyncio.gather(*(self._adopt_one(name) for name in names))
        kept = [kernel for kernel in found if kernel is not None]
        if names:
            records.event("kernels-adopted", pool=self.pool, server_id=self.server_id,
                          found=len(names), adopted=len(kept))
        return kept

    async def _adopt_one(self, name: str) -> KeptKernel | None:
        ray = _import_ray()
        kernel_id = name[len(self.kept_prefix):]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.start_timeout
        ready: asyncio.Future[tuple[Link, dict[str, Any]]] = loop.create_future()
        exited: asyncio.Future[Any] | None = None
        actor: Any = None
        told = False
        try:
            actor = await asyncio.to_thread(ray.get_actor, name, self.options.namespace)
            info = await self._within(_result(actor.kept.remote()), deadline, "reached")
            worker, user = info.get("worker"), info.get("user")
            if not worker:
                return None  # not kept for a client: it ends by itself when its server goes
            node = RayNode(str(info["node_id"]), str(info["ip"]))
            self._pending[kernel_id] = ready
            told = bool(await self._within(_result(actor.rebind.remote(
                self.address, self._key, self.fingerprint, _ADOPT_WAIT,
            )), deadline, "handed this server's endpoint"))
            if not told:
                records.event("kernel-not-adopted", pool=self.pool, kernel=kernel_id,
                              reason="still linked to a live server")
                return None
            exited = asyncio.ensure_future(_result(actor.wait.remote()))
            link, hello = await self._wait_ready(ready, exited, deadline, node)
        except (KernelError, ray.exceptions.RayError, ValueError) as exc:
            # ValueError: the actor is gone (get_actor); a RayError: it died meanwhile.
            if exited is not None:
                exited.cancel()
            if told:
                _kill_actor(actor)  # it has our endpoint but never came: it must not linger
            records.event("kernel-not-adopted", pool=self.pool, kernel=kernel_id,
                          reason=str(exc).splitlines()[0][:200])
            return None
        finally:
            self._pending.pop(kernel_id, None)
        handle = RayKernelHandle(
            kernel_id, int(info.get("kernel_pid") or hello.get("pid") or 0), link, hello,
            actor=actor, node=node, detached=True, keep_seq=int(info.get("seq", 0)),
        )
        handle._kept = (str(worker), user)
        self._track(handle, exited)
        records.event("kernel-adopted", kernel=kernel_id, worker=worker, pool=self.pool,
                      node=str(node), pid=handle.pid)
        return KeptKernel(handle, str(worker), None if user is None else str(user))

    async def _placed(self, actor: Any, deadline: float) -> dict[str, Any]:
        """Wait until Ray has placed ``actor`` and it answers; say so at once if the
        cluster changes meanwhile so that no node can hold it (a pending actor
        would otherwise wait for ever, silently)."""
        where = asyncio.ensure_future(_result(actor.where.remote()))
        loop = asyncio.get_running_loop()
        try:
            while True:
                remaining = deadline - loop.time()
                done, _ = await asyncio.wait({where}, timeout=min(1.0, max(remaining, 0.001)))
                if done:
                    return dict(where.result())
                if remaining <= 1.0:
                    raise KernelError(
                        f"a kernel of pool {self.pool!r} was not placed within "
                        f"{self.spec.start_timeout:g} s; every node that fits may be busy "
                        "(see 'ray status')"
                    )
                await self._check_placeable()
        finally:
            where.cancel()

    async def _start_kernel(
        self, actor: Any, kernel_id: str, node: RayNode, guardian: int, deadline: float,
        redial: str | None = None,
    ) -> int:
        """Fork the kernel from the node's template, or start it fresh; return its pid.
        ``redial`` is the actor's rendezvous, for a kernel that may be kept."""
        spec = self.spec
        if self._use_zygote:
            template = await self._template(node, deadline)
            if template is not None:
                ray = _import_ray()
                try:
                    pid = int(await self._within(_result(template.spawn.remote(
                        kernel_id, self.address, spec.eval_timeout, spec.memory_mb, guardian,
                        spec.policy_options(), redial,
                    )), deadline, "forked"))
                except ray.exceptions.RayError as exc:  # the template died or broke
                    self._templates.pop(node.id, None)  # the next kernel there starts a new one
                    records.event("kernel-template-failed", pool=self.pool, node=str(node),
                                  reason=str(exc).splitlines()[0][:200])
                else:
                    await self._within(_result(actor.adopt.remote(pid)), deadline, "adopted")
                    return pid
        argv = spec.argv(self.address, kernel_id)[1:]  # the node's own Python runs it
        return int(await self._within(
            _result(actor.start.remote(argv, self._key, spec.memory_mb, self.fingerprint)),
            deadline, "started"
        ))

    async def _template(self, node: RayNode, deadline: float) -> Any:
        """The node's template actor, started the first time a kernel lands there;
        None if it cannot start (kernels there then start fresh)."""
        future = self._templates.get(node.id)
        if future is None:
            future = asyncio.ensure_future(self._new_template(node))
            self._templates[node.id] = future
        try:
            return await self._within(asyncio.shield(future), deadline, "forked")
        except Exception as exc:
            if self._templates.get(node.id) is future and future.done():
                self._templates.pop(node.id, None)
            records.event("kernel-template-failed", pool=self.pool, node=str(node), reason=exc)
            return None

    async def _new_template(self, node: RayNode) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        template = self._template_class.options(
            name=f"linkserver-template-{self.token}-{node.id[:12]}",
            namespace=self.options.namespace,
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node.id, soft=False),
        ).remote(self.spec.backend, self._key, self.fingerprint)
        try:
            info = await _result(template.ready.remote())
        except BaseException:
            _kill_actor(template)
            raise
        records.event("kernel-template-started", pool=self.pool, node=str(node),
                      pid=info.get("template_pid"))
        return template

    async def _wait_ready(
        self, ready: asyncio.Future[tuple[Link, dict[str, Any]]], exited: asyncio.Future[Any],
        deadline: float, node: RayNode,
    ) -> tuple[Link, dict[str, Any]]:
        """Wait for the kernel's greeting, or for it to end first."""
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.001)
        done, _ = await asyncio.wait(
            {ready, exited}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        if ready in done:
            return ready.result()
        if exited in done:
            raise KernelError(
                f"the {self.spec.backend} kernel on Ray node {node} ended before it was ready "
                f"(code {exited.result() if exited.exception() is None else '?'}); see the "
                "node's worker log"
            )
        raise KernelError(
            f"a {self.spec.backend} kernel on Ray node {node} did not dial back within "
            f"{self.spec.start_timeout:g} s; can the node reach {self.address}?"
        )

    async def _initialise(self, handle: KernelHandle) -> None:
        """Run the pool's start-up code before any client waits for it (as the local
        launcher does); its output is dropped."""
        await run_init(handle, self.spec)

    async def _watch(self, handle: RayKernelHandle, exited: asyncio.Future[Any]) -> None:
        """Turn Ray's news of the actor's (or its node's) death into :meth:`lost`."""
        try:
            await exited
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not handle.killed and handle.alive:
                records.event("kernel-lost", kernel=handle.id, node=str(handle.ray_node),
                              reason=str(exc).splitlines()[0][:200])
                handle.lost(_ray_reason(exc, handle.ray_node))
            return
        if handle.alive and not handle.killed:
            handle.lost(f"its process on Ray node {handle.ray_node} ended")

    def handles(self) -> list[KernelHandle]:
        """Return every kernel handed out whose link is still open."""
        return [handle for handle in self._handles if handle.alive]

    def _ended(self, handle: KernelHandle) -> None:
        assert isinstance(handle, RayKernelHandle)
        self._handles.discard(handle)
        watcher = self._watchers.pop(handle, None)
        if watcher is not None and not watcher.done():
            watcher.cancel()
        if not handle.released:
            _kill_actor(handle.actor)  # its link is gone: free what it booked on Ray

    async def aclose(self) -> None:
        """Stop every kernel and template actor and the endpoint; the cluster stays."""
        if self._closed:
            return
        self._closed = True
        handles = [handle for handle in self._handles if not handle.released]
        for handle in handles:
            handle.link.close_nowait()
        for handle in handles:
            handle.kill()
        for watcher in self._watchers.values():
            watcher.cancel()
        self._watchers.clear()
        for future in self._templates.values():
            if future.done() and not future.cancelled() and future.exception() is None:
                _kill_actor(future.result())
            else:
                future.cancel()
        self._templates.clear()
        if self._server is not None:
            await self._server.aclose()
