"""What runs on a Ray node for a kernel: the kernel's actor and the node's template.

The server's Ray launcher (:mod:`linkserver.launcher.ray`) places each kernel
as a :class:`KernelActor`, so that Ray books the kernel's resources, chooses
its node and tells the server when the actor or its node dies. The actor
does not evaluate: it only holds the place. The kernel itself is a process
on the actor's node that dials back to the server's kernel endpoint over TCP
with a key and carries every evaluation there (DESIGN.md "Kernels on a
cluster"): a Ray call costs about 0.85 ms, a TCP round trip far less.

So that a node's kernels do not each pay the backend's start of seconds, the
launcher keeps one :class:`NodeTemplate` actor per node (and pool): it runs
our kernel template (:mod:`.zygote`) as a plain child process and asks it to
fork each kernel. The fork happens in that child, never in a Ray worker,
whose gRPC threads a fork would not copy. A forked kernel is not its
actor's child, so it watches the actor's process (``WATCH_PID`` in the
zygote's protocol) and exits with it: a kernel never outlives the actor that
Ray believes holds it. A backend that cannot fork is started by its actor as
a fresh child process with the same watch.

Kept kernels.  A pool with a keep-alive makes its actors *detached* (Ray
keeps them when the server's driver ends) and each :class:`KernelActor` then
holds a rendezvous (:class:`_Rendezvous`, the protocol in :mod:`.redial`):
when the kernel's link to its server ends, the kernel keeps its session and
asks the actor where to dial next. The server says, while it runs, whether
the kernel is kept for a client (:meth:`KernelActor.keep`); a kernel that is
not is told to end at once, and its actor ends with it. A kept kernel waits
up to the keep-alive for a server to adopt it (:meth:`KernelActor.rebind`),
then ends the same way. An actor refuses to be rebound while its kernel is
still linked to a server: two servers never take the same kernel.

These classes are plain Python; the launcher turns them into actors
(``ray.remote(...).options(...)``) with ``max_restarts=0`` and
``max_task_retries=0``, since a silent re-run of an evaluation on a blank
kernel is the one failure we must never have. Ray is imported lazily: this
module is loaded in Ray workers, which have it, and by the launcher.
"""

from __future__ import annotations

import importlib
import os
import resource
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import BACKENDS
from .loop import FINGERPRINT_ENV, WATCH_PID_ENV
from .redial import REDIAL_ENV, Endpoint, address, format_answer, peer_pid
from .zygote import REDIAL_OPTION, WATCH_OPTION

__all__ = ["KernelActor", "NodeTemplate", "where"]

#: The environment variable that carries the kernel endpoint's key to a kernel
#: (read by :func:`linkserver.security.credentials_for`, as for any client).
KEY_ENV = "LINKSERVER_KEY"


def _kernel_env(key: str, fingerprint: str | None) -> dict[str, str]:
    """This process's environment, with how a kernel proves itself to the endpoint."""
    env = dict(os.environ)
    env[KEY_ENV] = key
    env.pop(FINGERPRINT_ENV, None)
    if fingerprint:
        env[FINGERPRINT_ENV] = fingerprint
    return env


def where() -> dict[str, Any]:
    """This process's node id, node address and pid, as Ray knows them."""
    ray: Any = importlib.import_module("ray")  # present in every Ray worker
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "ip": ray.util.get_node_ip_address(),
        "pid": os.getpid(),
    }


def _wait_pid(pid: int, process: subprocess.Popen[bytes] | None) -> int | None:
    """Block until process ``pid`` ends; return its exit code if it was our child."""
    if process is not None:
        return process.wait()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)
    return None


class NodeTemplate:
    """One node's kernel template: loads the backend once, forks kernels on request.

    Args:
        backend: a forkable backend (:data:`linkserver.kernel.FORKABLE`).
        key: the kernel endpoint's key, which every forked kernel proves.
        fingerprint: the certificate of an endpoint that speaks TLS, which every
            forked kernel pins; None for an endpoint without TLS.
    """

    def __init__(self, backend: str, key: str, fingerprint: str | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown kernel backend {backend!r}")
        env = _kernel_env(key, fingerprint)
        env.pop(WATCH_PID_ENV, None)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "linkserver.kernel.zygote", "--backend", backend],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if line.strip() != b"ready":
            self._process.kill()
            self._process.wait()
            raise RuntimeError(
                f"the {backend} kernel template did not start on this node "
                f"(it said {line.decode(errors='replace').strip()!r}); see the node's worker log"
            )
        self._lock = threading.Lock()

    def ready(self) -> dict[str, Any]:
        """Where the template runs (answered once it has loaded the backend)."""
        return {**where(), "template_pid": self._process.pid}

    def spawn(
        self, kernel_id: str, connect: str, eval_timeout: float | None,
        memory_mb: int | None, watch_pid: int, options: list[str], redial: str | None = None,
    ) -> int:
        """Fork one kernel that dials ``connect`` as ``kernel_id`` and lives while
        ``watch_pid`` does, with the kernel policy ``options``; return its pid.
        ``redial`` is its actor's rendezvous, for a kept kernel (:mod:`.redial`).

        Raises:
            RuntimeError: the template process has exited.
        """
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        timeout = "-" if eval_timeout is None else repr(eval_timeout)
        memory = "-" if memory_mb is None else str(memory_mb)
        if redial is not None:
            options = [*options, f"{REDIAL_OPTION}{redial}"]
        with self._lock:
            try:
                process.stdin.write(
                    f"spawn {kernel_id} {connect} {timeout} {memory} "
                    f"{' '.join(options)} {WATCH_OPTION}{watch_pid}\n".encode()
                )
                process.stdin.flush()
            except OSError as exc:
                raise RuntimeError("the kernel template on this node has exited") from exc
            while True:
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError("the kernel template on this node has exited")
                words = line.decode(errors="replace").split()
                if len(words) == 3 and words[0] == "spawned" and words[1] == kernel_id:
                    return int(words[2])
                if len(words) == 2 and words[0] == "seed":
                    continue  # the template's spare fork for the next kernel (zygote.py)
                print(f"linkserver kernel template: {line.decode(errors='replace').rstrip()}",
                      file=sys.stderr, flush=True)

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.stdin is not None:
            process.stdin.close()  # the template then exits; its kernels live on their watch


class _Rendezvous:
    """A kept kernel's actor's end of redialling (:mod:`.redial`).

    One thread accepts the kernel's question on an abstract Unix socket of a
    random name and answers it: ``exit`` if the kernel is not kept for a
    client, else the first endpoint a server hands over (:meth:`offer`)
    within ``keepalive`` seconds, else ``exit``. After an ``exit`` the
    kernel and the actor end (``on_end``).

    Args:
        keepalive: seconds a kept kernel waits for a server to adopt it.
        kernel_pid: the kernel's pid, once known (only it may ask).
        on_end: ends the kernel and the actor.
    """

    def __init__(
        self, keepalive: float, kernel_pid: Callable[[], int], on_end: Callable[[], None],
    ) -> None:
        self.keepalive = keepalive
        self._kernel_pid = kernel_pid
        self._on_end = on_end
        #: ``$LINKSERVER_REDIAL`` for the kernel (kernel/redial.py)
        self.path = f"@linkserver-redial-{secrets.token_hex(8)}"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(address(self.path))
        self._listener.listen(1)
        self._cond = threading.Condition()
        #: (sequence, worker id, user) of the server's last :meth:`keep`
        self.kept: tuple[int, str | None, str | None] = (0, None, None)
        self.waiting = False  # the kernel has asked and waits for an answer
        self._offered: Endpoint | None = None
        threading.Thread(target=self._serve, name="linkserver-rendezvous", daemon=True).start()

    def keep(self, seq: int, worker: str | None, user: str | None) -> None:
        with self._cond:
            if seq > self.kept[0]:  # calls may overtake each other on a threaded actor
                self.kept = (seq, worker, user)
                self._cond.notify_all()

    def offer(self, endpoint: Endpoint, wait: float) -> bool:
        """Hand ``endpoint`` to the kernel once it asks (within ``wait`` s); True if it did."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.waiting and self._offered is None, wait):
                return False  # still linked to a server (or already taken)
            self._offered = endpoint
            self._cond.notify_all()
            return True

    def _answer(self) -> Endpoint | None:
        deadline = time.monotonic() + self.keepalive
        with self._cond:
            self.waiting = True
            self._offered = None
            self._cond.notify_all()
            try:
                self._cond.wait_for(
                    lambda: self._offered is not None or self.kept[1] is None,
                    max(deadline - time.monotonic(), 0.0),
                )
                return self._offered if self.kept[1] is not None else None
            finally:
                self.waiting = False
                self._offered = None

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                if peer_pid(conn) != self._kernel_pid():
                    continue  # only our kernel may ask
                endpoint = self._answer()
                try:
                    conn.sendall(format_answer(endpoint))
                except OSError:
                    endpoint = None
            if endpoint is None:
                self.close()
                self._on_end()
                return

    def close(self) -> None:
        self._listener.close()


class KernelActor:
    """Ray's place for one kernel: books its resources and lives as long as it.

    The kernel process (forked by the node's :class:`NodeTemplate`, or
    started here) exits when this actor's process does; :meth:`wait` returns
    when the kernel exits, so the server hears of either end.

    Args:
        keepalive: seconds a kept kernel waits for a server to adopt it when
            its own goes (a detached actor, :class:`_Rendezvous`); 0 for a
            kernel that ends with its link.
    """

    def __init__(self, keepalive: float = 0.0) -> None:
        self._pid = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._rendezvous = (
            _Rendezvous(keepalive, lambda: self._pid, self._end) if keepalive > 0 else None
        )

    def where(self) -> dict[str, Any]:
        """The node and pid of this actor (its kernel's guardian), and its rendezvous."""
        info = where()
        info["redial"] = self._rendezvous.path if self._rendezvous is not None else None
        return info

    def adopt(self, pid: int) -> int:
        """Watch kernel ``pid``, forked for this actor by the node's template."""
        self._pid = pid
        return pid

    def start(
        self, args: list[str], key: str, memory_mb: int | None, fingerprint: str | None = None,
    ) -> int:
        """Start the kernel as a fresh child process (a backend that cannot fork).

        ``args`` is its command line after the interpreter: this node's own
        Python runs it, wherever the server's is. ``fingerprint`` pins the
        certificate of an endpoint that speaks TLS.
        """
        env = _kernel_env(key, fingerprint)
        env[WATCH_PID_ENV] = str(os.getpid())
        if self._rendezvous is not None:
            env[REDIAL_ENV] = self._rendezvous.path
        self._process = subprocess.Popen([sys.executable, *args], stdin=subprocess.DEVNULL, env=env)
        self._pid = self._process.pid
        if memory_mb is not None:
            limit = memory_mb * 1024 * 1024
            resource.prlimit(self._pid, resource.RLIMIT_AS, (limit, limit))
        return self._pid

    def wait(self) -> int | None:
        """Return when the kernel process ends (its exit code, if known)."""
        return _wait_pid(self._pid, self._process) if self._pid else None

    def stop(self) -> None:
        """SIGKILL the kernel process, if it still runs."""
        if self._pid:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -------------------------------------------------- kept kernels

    def keep(self, seq: int, worker: str | None, user: str | None = None) -> None:
        """Say whether the kernel is kept for a client: the id clients know it by
        (``worker``; None: not kept) and the user it is kept for. ``seq`` orders
        the calls; an older one than the last is ignored."""
        if self._rendezvous is not None:
            self._rendezvous.keep(seq, worker, user)

    def kept(self) -> dict[str, Any]:
        """What an adopting server needs: for whom the kernel is kept, its pid,
        whether it waits for a server now, and where it runs."""
        rendezvous = self._rendezvous
        seq, worker, user = rendezvous.kept if rendezvous is not None else (0, None, None)
        return {
            **where(), "kernel_pid": self._pid, "worker": worker, "user": user, "seq": seq,
            "waiting": rendezvous is not None and rendezvous.waiting,
        }

    def rebind(self, connect: str, key: str, fingerprint: str | None, wait: float) -> bool:
        """Send the kernel to the endpoint ``connect`` once it asks (within ``wait`` s).

        Returns:
            True if the kernel was told; False if it is still linked to a
            server (it is not this caller's to take) or keeps no session.
        """
        if self._rendezvous is None:
            return False
        return self._rendezvous.offer(Endpoint(connect, key, fingerprint), wait)

    def _end(self) -> None:
        """The kernel was not kept or not adopted in time: end it and this actor."""
        self.stop()
        try:
            ray: Any = importlib.import_module("ray")
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
        except Exception:  # not in an actor (a test), or Ray is going: end the process
            pass
        os._exit(0)
