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
import select
import signal
import subprocess
import sys
import threading
from typing import Any

from . import BACKENDS
from .loop import FINGERPRINT_ENV, WATCH_PID_ENV
from .zygote import WATCH_OPTION

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
        memory_mb: int | None, watch_pid: int, options: list[str],
    ) -> int:
        """Fork one kernel that dials ``connect`` as ``kernel_id`` and lives while
        ``watch_pid`` does, with the kernel policy ``options``; return its pid.

        Raises:
            RuntimeError: the template process has exited.
        """
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        timeout = "-" if eval_timeout is None else repr(eval_timeout)
        memory = "-" if memory_mb is None else str(memory_mb)
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
                print(f"linkserver kernel template: {line.decode(errors='replace').rstrip()}",
                      file=sys.stderr, flush=True)

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.stdin is not None:
            process.stdin.close()  # the template then exits; its kernels live on their watch


class KernelActor:
    """Ray's place for one kernel: books its resources and lives as long as it.

    The kernel process (forked by the node's :class:`NodeTemplate`, or
    started here) exits when this actor's process does; :meth:`wait` returns
    when the kernel exits, so the server hears of either end.
    """

    def __init__(self) -> None:
        self._pid = 0
        self._process: subprocess.Popen[bytes] | None = None

    def where(self) -> dict[str, Any]:
        """The node and pid of this actor (its kernel's guardian)."""
        return where()

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
