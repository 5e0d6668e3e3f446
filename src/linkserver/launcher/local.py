"""Local kernels: child processes of the server, forked warm from a template.

Each kernel is its own OS process connected to the server by a link of our
own protocol, as WSTP launches kernels with ``-linkmode connect``. The
:class:`LocalLauncher` listens for those links on a Unix socket in a private
directory (mode 0700), starts kernels -- forked from a template
(:class:`~.zygote.Zygote`) that has the backend loaded (fast), or as fresh
processes (slow, the fallback) -- and matches each ``KernelReady[<|"id" ->
...|>]`` greeting to the kernel it asked for. It keeps the contract of
:mod:`.base`; what kernels are used for is the broker's business.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import signal
import tempfile
import uuid
from typing import Any

from .. import records
from ..aio.link import Link, LinkSettings
from ..aio.server import LinkServer
from ..errors import SandboxError
from ..kernel import FORKABLE, sandbox
from .base import (
    KernelError,
    KernelHandle,
    KernelLauncher,
    Pending,
    run_init,
    take_greeting,
)
from .spec import KernelSpec
from .zygote import Zygote

__all__ = ["LocalKernelHandle", "LocalLauncher", "SandboxError"]

log = logging.getLogger("linkserver.kernel")


def _kill(pid: int) -> None:
    """SIGKILL one process by id; 0 (never started) and a process already gone are fine."""
    if pid > 0:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class LocalKernelHandle(KernelHandle):
    """A kernel that is a process on this machine; killing it is SIGKILL."""

    placement = "local"

    def _terminate(self) -> None:
        _kill(self.pid)


class LocalLauncher(KernelLauncher):
    """Starts kernels of one :class:`KernelSpec` as processes on this machine.

    Args:
        spec: what kernels to run.
        zygote: fork kernels from a warm template (fast); False starts each
            kernel as a fresh process.
    """

    placement = "local"

    def __init__(self, spec: KernelSpec, *, zygote: bool = True) -> None:
        super().__init__(spec)
        self._use_zygote = zygote and spec.backend in FORKABLE
        self._dir = ""
        self._server: LinkServer | None = None
        self._pending: Pending = {}
        self._zygote: Zygote | None = None
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
        if self.spec.sandbox:
            await self._check_sandbox()
        if self._use_zygote:
            self._zygote = Zygote(self.spec.backend, start_timeout=self.spec.start_timeout)
            await self._zygote.start()

    def _scratch(self, kernel_id: str) -> str:
        """A sandboxed kernel's scratch directory: the one place it may write."""
        return os.path.join(self._dir, "scratch", kernel_id)

    async def _check_sandbox(self) -> None:
        """Try the sandbox once, in a throw-away process, before any kernel needs it.

        Raises:
            SandboxError: this operating system cannot apply it.
        """
        if any(c.isspace() for c in self._dir):  # the template's protocol splits on spaces
            await self.aclose()
            raise SandboxError(
                f"--sandbox needs a kernel directory without spaces, not {self._dir!r}; "
                "set TMPDIR to a directory whose path has none"
            )
        scratch = self._scratch("probe")
        os.makedirs(scratch, mode=0o700)
        try:
            why = await asyncio.get_running_loop().run_in_executor(None, sandbox.probe, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if why is not None:
            await self.aclose()
            raise SandboxError(
                f"the sandbox (--sandbox, sandbox = true) cannot confine kernels on this "
                f"machine ({why}); it needs Linux with Landlock and seccomp, so serve without "
                "it or on such a machine"
            )

    async def _greeted(self, link: Link) -> None:
        """A kernel connected: read its KernelReady and wake whoever launched it."""
        await take_greeting(link, self.spec.start_timeout, self._pending)

    async def launch(self) -> KernelHandle:
        """Start one kernel and return it once it is ready to evaluate.

        Raises:
            KernelError: the launcher is closed, the kernel exited first, it did
                not start within ``spec.start_timeout``, or its start-up code failed.
        """
        if self._closed:
            raise KernelError("the kernel launcher is closed; start a new one")
        if self._server is None:
            raise KernelError("the kernel launcher has not started; call start() first")
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
            self._remove_scratch(kernel_id)
            raise
        finally:
            self._pending.pop(kernel_id, None)
        handle = LocalKernelHandle(kernel_id, pid, link, info)
        self._handles.add(handle)
        handle.on_dead(self._ended)
        if self.spec.init:
            try:
                await self._initialise(handle)
            except BaseException:
                handle.stop()  # failed or cancelled while warming: it must not linger
                raise
        records.event("kernel-started", kernel=kernel_id, pid=pid, backend=self.spec.backend)
        return handle

    async def _initialise(self, handle: KernelHandle) -> None:
        """Run the pool's start-up code while the kernel is still warming, not when
        a client is already waiting for it. Its output is dropped; a failure is logged
        and the kernel is still used (the code's messages say what went wrong)."""
        await run_init(handle, self.spec)

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

    def handles(self) -> list[KernelHandle]:
        """Return every kernel handed out whose link is still open."""
        return [handle for handle in self._handles if handle.alive]

    def _remove_scratch(self, kernel_id: str) -> None:
        if self.spec.sandbox:
            shutil.rmtree(self._scratch(kernel_id), ignore_errors=True)

    def _ended(self, handle: KernelHandle) -> None:
        self._handles.discard(handle)
        self._remove_scratch(handle.id)  # the kernel's files go with it
        process = self._processes.pop(handle.id, None)
        if process is not None and process.returncode is None:
            process.kill()  # its link is gone: it has nothing left to do

    async def _spawn(self, kernel_id: str) -> int:
        spec = self.spec
        options = spec.policy_options()
        scratch = None
        if spec.sandbox:
            scratch = self._scratch(kernel_id)
            os.makedirs(scratch, mode=0o700)
            options.append(f"--sandbox={scratch}")
        if self._zygote is not None and self._zygote.running:
            return await self._zygote.spawn(
                kernel_id, self.address, eval_timeout=spec.eval_timeout, memory_mb=spec.memory_mb,
                options=options,
            )
        # No template (or it died): a fresh process, slow but independent of it.
        argv = spec.argv(self.address, kernel_id, scratch)
        process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
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
            await self._zygote.aclose()
        if self._server is not None:
            await self._server.aclose()
        shutil.rmtree(self._dir, ignore_errors=True)
