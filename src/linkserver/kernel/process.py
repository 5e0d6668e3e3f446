"""Kernel processes: start them warm, know when they are ready, kill them.

Each kernel is its own OS process connected to the server by a link of our
own protocol, as WSTP launches kernels with ``-linkmode connect``. The
:class:`KernelLauncher` listens for those links on a Unix socket in a private
directory (mode 0700), starts kernels -- forked from a :mod:`.zygote` that
has the backend loaded (fast), or as fresh processes (slow, the fallback) --
and matches each ``KernelReady[<|"id" -> ...|>]`` greeting to the kernel it
asked for. What kernels are used for is the broker's business.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import signal
import sys
import tempfile
import uuid
from typing import Any

from wolframclient.language import wl

from .. import records
from ..aio.link import Link, LinkSettings
from ..aio.server import LinkServer
from ..errors import LinkError
from .spec import FORKABLE, KernelSpec


def _kill(pid: int) -> None:
    """SIGKILL one process by id; 0 (never started) and a process already gone are fine."""
    if pid > 0:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

__all__ = ["KernelError", "KernelHandle", "KernelLauncher"]

log = logging.getLogger("linkserver.kernel")


class KernelError(LinkError):
    """A kernel could not be started or died."""

    code = "kernel-error"


class KernelHandle:
    """One running kernel: its id, process id and link.

    Attributes:
        id: the id the launcher gave it.
        pid: its process id.
        link: the server's end of its link.
        info: what it said in ``KernelReady`` (backend, version, ...).
    """

    def __init__(self, kernel_id: str, pid: int, link: Link, info: dict[str, Any]) -> None:
        self.id = kernel_id
        self.pid = pid
        self.link = link
        self.info = info
        self.killed = False

    @property
    def alive(self) -> bool:
        """True while its link is open."""
        return not self.link.closed

    def kill(self) -> None:
        """Kill the process at once (SIGKILL); its link then breaks."""
        self.killed = True
        _kill(self.pid)

    def __repr__(self) -> str:
        return f"<KernelHandle {self.id} pid={self.pid} {'alive' if self.alive else 'dead'}>"


class KernelLauncher:
    """Starts kernels of one :class:`KernelSpec` and hands them over when ready.

    Args:
        spec: what kernels to run.
        zygote: fork kernels from a warm template (fast); False starts each
            kernel as a fresh process.
    """

    def __init__(self, spec: KernelSpec, *, zygote: bool = True) -> None:
        self.spec = spec
        self._use_zygote = zygote and spec.backend in FORKABLE
        self._dir = ""
        self._server: LinkServer | None = None
        self._pending: dict[str, asyncio.Future[tuple[Link, dict[str, Any]]]] = {}
        self._pids: dict[str, asyncio.Future[int]] = {}
        self._zygote: asyncio.subprocess.Process | None = None
        self._zygote_reader: asyncio.Task[None] | None = None
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._handles: set[KernelHandle] = set()
        self._closed = False

    @property
    def address(self) -> str:
        """The link name kernels connect to."""
        return f"unix:{os.path.join(self._dir, 'kernels.sock')}"

    async def start(self) -> None:
        """Listen for kernels and, with a zygote, load the backend once.

        Raises:
            KernelError: the zygote did not start.
        """
        self._dir = tempfile.mkdtemp(prefix="linkserver-kernels-")
        os.chmod(self._dir, 0o700)  # only this user's processes may pose as kernels
        self._server = LinkServer(
            path=self.address[5:], settings=LinkSettings(idle_timeout=None)
        )
        await self._server.start()
        self._server.on_link(self._greeted)
        if self._use_zygote:
            await self._start_zygote()

    async def _start_zygote(self) -> None:
        self._zygote = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "linkserver.kernel.zygote", "--backend", self.spec.backend,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert self._zygote.stdout is not None
        try:
            line = await asyncio.wait_for(self._zygote.stdout.readline(), self.spec.start_timeout)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            self._zygote.kill()
            raise KernelError(
                f"the {self.spec.backend} kernel template did not start "
                f"(it said {line.decode(errors='replace').strip()!r}); see its messages above"
            )
        self._zygote_reader = asyncio.ensure_future(self._read_zygote())

    async def _read_zygote(self) -> None:
        zygote = self._zygote
        assert zygote is not None and zygote.stdout is not None
        while True:
            line = await zygote.stdout.readline()
            if not line:
                break
            words = line.decode(errors="replace").split()
            if len(words) == 3 and words[0] == "spawned":
                future = self._pids.pop(words[1], None)
                if future is not None and not future.done():
                    future.set_result(int(words[2]))
            else:
                records.event("kernel-template-output", backend=self.spec.backend,
                              line=line[:200].decode(errors="replace").rstrip())
        error = KernelError("the kernel template exited; no new kernels can start")
        for future in self._pids.values():
            if not future.done():
                future.set_exception(error)

    async def _greeted(self, link: Link) -> None:
        """A kernel connected: read its KernelReady and wake whoever launched it."""
        try:
            hello = await link.get(timeout=self.spec.start_timeout)
            info = dict(hello.args[0]) if getattr(hello, "args", None) else {}
            kernel_id = str(info.get("id", ""))
        except (LinkError, TypeError, ValueError, IndexError) as exc:
            records.event("kernel-rejected", reason=f"the connection did not greet: {exc}")
            await link.aclose()
            return
        future = self._pending.pop(kernel_id, None)
        if future is None or future.done():
            records.event("kernel-rejected", reason=f"unexpected kernel id {kernel_id!r}")
            await link.aclose()
            return
        future.set_result((link, info))

    async def launch(self) -> KernelHandle:
        """Start one kernel and return it once it is ready to evaluate.

        Raises:
            KernelError: it did not start within ``spec.start_timeout``.
        """
        if self._closed or self._server is None:
            raise KernelError("the kernel launcher is closed")
        kernel_id = uuid.uuid4().hex[:12]
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[tuple[Link, dict[str, Any]]] = loop.create_future()
        self._pending[kernel_id] = ready
        pid = 0
        try:
            pid = await self._spawn(kernel_id)
            link, info = await self._wait_ready(kernel_id, ready)
        except BaseException:
            _kill(pid)  # forked but never ready: it must not linger
            raise
        finally:
            self._pending.pop(kernel_id, None)
        handle = KernelHandle(kernel_id, pid, link, info)
        self._handles.add(handle)
        link.on_end(lambda _link: self._ended(handle))
        if self.spec.init:
            await self._initialise(handle)
        records.event("kernel-started", kernel=kernel_id, pid=pid, backend=self.spec.backend)
        return handle

    async def _initialise(self, handle: KernelHandle) -> None:
        """Run the pool's start-up code while the kernel is still warming, not when
        a client is already waiting for it. Its output is dropped; a failure is logged
        and the kernel is still used (the code's messages say what went wrong)."""
        assert self.spec.init is not None
        link = handle.link
        try:
            await link.put(wl.EvaluatePacket(wl.ToExpression(self.spec.init)))
            while True:
                packet = await link.get(timeout=self.spec.start_timeout)
                if getattr(getattr(packet, "head", None), "name", "") == "ReturnPacket":
                    break
        except LinkError as exc:
            await link.aclose()
            raise KernelError(f"the kernel's start-up code did not finish: {exc}") from exc

    async def _wait_ready(
        self, kernel_id: str, ready: asyncio.Future[tuple[Link, dict[str, Any]]]
    ) -> tuple[Link, dict[str, Any]]:
        """Wait for the kernel's greeting, or for its process to end first."""
        process = self._processes.get(kernel_id)
        exited = asyncio.ensure_future(process.wait()) if process is not None else None
        waits: set[asyncio.Future[Any]] = {ready} if exited is None else {ready, exited}
        try:
            done, _ = await asyncio.wait(
                waits, timeout=self.spec.start_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if exited is not None and not exited.done():
                exited.cancel()
        if ready in done:
            return ready.result()
        if exited is not None and exited in done:
            self._processes.pop(kernel_id, None)
            raise KernelError(
                f"the {self.spec.backend} kernel exited with code {exited.result()} before it "
                "was ready (its own message, if any, is printed above)"
            )
        raise KernelError(
            f"a {self.spec.backend} kernel did not become ready within "
            f"{self.spec.start_timeout:g} s"
        )

    def _ended(self, handle: KernelHandle) -> None:
        self._handles.discard(handle)
        process = self._processes.pop(handle.id, None)
        if process is not None and process.returncode is None:
            process.kill()  # its link is gone: it has nothing left to do

    async def _spawn(self, kernel_id: str) -> int:
        spec = self.spec
        if self._zygote is not None and self._zygote.returncode is None:
            assert self._zygote.stdin is not None
            pid_future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._pids[kernel_id] = pid_future
            timeout = "-" if spec.eval_timeout is None else repr(spec.eval_timeout)
            memory = "-" if spec.memory_mb is None else str(spec.memory_mb)
            self._zygote.stdin.write(
                f"spawn {kernel_id} {self.address} {timeout} {memory}\n".encode()
            )
            await self._zygote.stdin.drain()
            return await asyncio.wait_for(pid_future, spec.start_timeout)
        process = await asyncio.create_subprocess_exec(
            *spec.argv(self.address, kernel_id), stdin=asyncio.subprocess.DEVNULL
        )
        if spec.memory_mb is not None:
            limit = spec.memory_mb * 1024 * 1024
            resource.prlimit(process.pid, resource.RLIMIT_AS, (limit, limit))
        self._processes[kernel_id] = process
        return process.pid

    async def aclose(self) -> None:
        """Stop every kernel and the template, and remove the socket directory."""
        if self._closed:
            return
        self._closed = True
        for handle in list(self._handles):
            handle.link.close_nowait()
        for handle in list(self._handles):
            handle.kill()
        for process in self._processes.values():
            if process.returncode is None:
                process.kill()
        for process in self._processes.values():
            await process.wait()
        if self._zygote is not None:
            if self._zygote.stdin is not None:
                self._zygote.stdin.close()
            try:
                await asyncio.wait_for(self._zygote.wait(), 5)
            except TimeoutError:
                self._zygote.kill()
                await self._zygote.wait()
        if self._zygote_reader is not None:
            self._zygote_reader.cancel()
        if self._server is not None:
            await self._server.aclose()
        shutil.rmtree(self._dir, ignore_errors=True)
