"""The server's end of a kernel template: start it, ask it for kernels, stop it.

The template itself -- the process that loads a backend once and forks warm
kernels from it -- is :mod:`linkserver.kernel.zygote`, run as ``python -m
linkserver.kernel.zygote``; its docstring holds the line protocol spoken on
its stdin and stdout. It lives on the child side because it runs where
kernels run and loads no server code; this half runs in the server and loads
no backend. :class:`Zygote` is what a launcher holds: it starts the process,
waits for ``ready``, turns ``spawn``/``spawned`` into one awaitable call, and
reports anything else the template prints.
"""

from __future__ import annotations

import asyncio
import sys

from .. import records
from .base import KernelError

__all__ = ["Zygote"]

#: Seconds a template may take to exit after its stdin closes before it is killed.
_EXIT_GRACE = 5.0


class Zygote:
    """One running kernel template for one backend.

    Args:
        backend: a key of :data:`linkserver.kernel.BACKENDS` that can fork
            (:data:`linkserver.kernel.FORKABLE`).
        start_timeout: seconds the template may take to load the backend, and a
            fork to be reported.
    """

    def __init__(self, backend: str, *, start_timeout: float) -> None:
        self.backend = backend
        self.start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pids: dict[str, asyncio.Future[int]] = {}
        #: the template's spare fork, waiting to become the next kernel (0: none yet)
        self.seed_pid = 0

    @property
    def pid(self) -> int:
        """The template's process id (0 before it started)."""
        return self._process.pid if self._process is not None else 0

    @property
    def running(self) -> bool:
        """True while the template process runs and can fork kernels."""
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start the template and wait until it has loaded the backend.

        Raises:
            KernelError: it did not say ``ready`` within ``start_timeout``.
        """
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "linkserver.kernel.zygote", "--backend", self.backend,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), self.start_timeout)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            process.kill()
            await process.wait()
            raise KernelError(
                f"the {self.backend} kernel template did not start "
                f"(it said {line.decode(errors='replace').strip()!r}); see its messages above"
            )
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        """Match each ``spawned ID PID`` to its request, note each ``seed PID``;
        report any other line."""
        process = self._process
        assert process is not None and process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                break
            words = line.decode(errors="replace").split()
            if len(words) == 3 and words[0] == "spawned":
                future = self._pids.pop(words[1], None)
                if future is not None and not future.done():
                    future.set_result(int(words[2]))
            elif len(words) == 2 and words[0] == "seed" and words[1].isdigit():
                self.seed_pid = int(words[1])
            else:
                records.event("kernel-template-output", backend=self.backend,
                              line=line[:200].decode(errors="replace").rstrip())
        error = KernelError("the kernel template exited; no new kernels can start")
        for future in self._pids.values():
            if not future.done():
                future.set_exception(error)
        self._pids.clear()

    async def spawn(
        self, kernel_id: str, connect: str, *, eval_timeout: float | None, memory_mb: int | None,
        options: list[str] | None = None,
    ) -> int:
        """Fork one kernel that connects to ``connect`` as ``kernel_id``; return its pid.

        The pid comes back as soon as the fork happened; the kernel is ready
        when it greets on its link, which is the caller's to wait for.
        ``options`` are the kernel's policy options (``KernelSpec.policy_options``).

        Raises:
            KernelError: the template is gone, or did not report the fork in time.
        """
        process = self._process
        if process is None or process.stdin is None or not self.running:
            raise KernelError("the kernel template is not running; no new kernels can start")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pids[kernel_id] = future
        timeout = "-" if eval_timeout is None else repr(eval_timeout)
        memory = "-" if memory_mb is None else str(memory_mb)
        extra = "".join(f" {option}" for option in options or ())
        try:
            process.stdin.write(
                f"spawn {kernel_id} {connect} {timeout} {memory}{extra}\n".encode()
            )
            await process.stdin.drain()
            return await asyncio.wait_for(future, self.start_timeout)
        except TimeoutError as exc:
            raise KernelError(
                f"the {self.backend} kernel template did not fork a kernel within "
                f"{self.start_timeout:g} s"
            ) from exc
        except OSError as exc:  # its stdin broke: it exited under us
            raise KernelError("the kernel template exited; no new kernels can start") from exc
        finally:
            self._pids.pop(kernel_id, None)

    async def aclose(self) -> None:
        """Close the template's stdin (it then exits) and wait for it, bounded."""
        process = self._process
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), _EXIT_GRACE)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            self._reader.cancel()
