"""The kernel template forks ahead: a spawn is served by its seed (kernel/zygote.py).

Each test runs a real Mathics3 template through the server's end of it
(:class:`linkserver.launcher.zygote.Zygote`) and gives its kernels a Unix
socket of the test's own to dial: a kernel that connects there is a kernel
that started. No server runs; a kernel that meets no handshake ends by itself,
and the test closes what it accepted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from linkserver.launcher.zygote import Zygote
from tests.procs import alive, children
from tests.timeouts import TIMEOUT
from tests.timeouts import eventually as poll_until

START_TIMEOUT = TIMEOUT * 6  # the template loads Mathics3: seconds


async def eventually(condition: Callable[[], object], timeout: float = START_TIMEOUT) -> bool:
    return await poll_until(condition, timeout)


def listen(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(START_TIMEOUT)
    return server


async def dialled(server: socket.socket) -> None:
    """Wait for one kernel to connect to ``server``, then hang up on it."""
    conn, _ = await asyncio.get_running_loop().run_in_executor(None, server.accept)
    conn.close()


async def spawn(zygote: Zygote, kernel_id: str, path: Path) -> int:
    return await zygote.spawn(kernel_id, f"unix:{path}", eval_timeout=None, memory_mb=None)


Body = Callable[[Zygote, socket.socket, Path, int], Awaitable[None]]


def run(body: Body, tmp_path: Path) -> None:
    """Start a template, wait for its first seed, run ``body(zygote, server, path, seed)``."""
    async def main() -> None:
        zygote = Zygote("mathics", start_timeout=START_TIMEOUT)
        await zygote.start()
        template = zygote.pid
        path = tmp_path / "kernels.sock"
        server = listen(path)
        try:
            assert await eventually(lambda: zygote.seed_pid), "the template forked no seed"
            await body(zygote, server, path, zygote.seed_pid)
        finally:
            server.close()
            await zygote.aclose()
        # The template is gone, and with it its seed: nothing it forked waits on.
        assert not alive(template)
        assert zygote.seed_pid
        assert await eventually(lambda: not alive(zygote.seed_pid), TIMEOUT), "the seed outlived the template"

    asyncio.run(main())


def test_a_spawn_becomes_the_seed_and_the_next_seed_follows(tmp_path: Path) -> None:
    async def body(zygote: Zygote, server: socket.socket, path: Path, seed: int) -> None:
        assert seed in children(zygote.pid)
        pid = await spawn(zygote, "k1", path)
        assert pid == seed  # the spare fork became this kernel
        await dialled(server)
        # Once the template is quiet, another seed waits for the next spawn.
        assert await eventually(lambda: zygote.seed_pid not in (0, seed))
        assert await spawn(zygote, "k2", path) == zygote.seed_pid
        await dialled(server)

    run(body, tmp_path)


def test_a_spawn_with_its_seed_killed_forks_as_before(tmp_path: Path) -> None:
    async def body(zygote: Zygote, server: socket.socket, path: Path, seed: int) -> None:
        os.kill(seed, signal.SIGKILL)
        assert await eventually(lambda: not alive(seed), TIMEOUT)
        pid = await spawn(zygote, "k1", path)
        assert pid != seed and pid in children(zygote.pid)
        await dialled(server)

    run(body, tmp_path)


def test_a_burst_of_spawns_is_served_whole(tmp_path: Path) -> None:
    async def body(zygote: Zygote, server: socket.socket, path: Path, seed: int) -> None:
        # Three at once: the seed takes the first, the others fork at once.
        pids = await asyncio.gather(*(spawn(zygote, f"k{i}", path) for i in range(3)))
        assert pids[0] == seed and len(set(pids)) == 3
        for _ in pids:
            await dialled(server)

    run(body, tmp_path)
