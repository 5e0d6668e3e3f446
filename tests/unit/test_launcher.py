"""The launcher interface, proven by a second implementation with no processes.

:class:`FakeLauncher` keeps the contract of ``linkserver.launcher.base`` the way a
cluster launcher would -- a kernel greets with ``KernelReady`` on a link, the
launcher matches its id, death comes as the end of that link or as ``lost()`` --
but its kernels are coroutines at the far end of in-memory link pairs. A
``KernelWorker`` driven by it serves a request, and answers the request a lost
kernel took down, knowing nothing of where kernels run.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import itertools
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

import linkserver
from linkserver import launcher as launcher_package
from linkserver.aio import Link, link_pair
from linkserver.broker.worker import KernelWorker
from linkserver.errors import LinkError
from linkserver.kernel import BACKENDS
from linkserver.kernel.loop import EXIT_GUARDIAN_GONE
from linkserver.launcher import (
    KernelError,
    KernelHandle,
    KernelLauncher,
    KernelSpec,
    KernelStatistics,
    LocalLauncher,
)
from tests.timeouts import TIMEOUT

SRC = Path(linkserver.__file__).parent

#: What the fake kernel answers with a silence that lasts until it dies.
HANG = wl.Hang


class FakeHandle(KernelHandle):
    """A kernel 'on a node': ending it means ending the coroutine that plays it."""

    placement = "fake"

    def __init__(self, *args: Any, task: asyncio.Task[None], node: str) -> None:
        super().__init__(*args)
        self._task = task
        self._node = node
        self.terminated = 0

    @property
    def node(self) -> str | None:
        return self._node

    def _terminate(self) -> None:
        self.terminated += 1
        self._task.cancel()


async def fake_kernel(link: Link, kernel_id: str, hung: asyncio.Event) -> None:
    """Greet, then answer ``EvaluatePacket[e]`` with ``ReturnPacket[{id, e}]`` (Hang: never)."""
    await link.put(wl.KernelReady({"id": kernel_id, "pid": 0, "backend": "fake"}))
    try:
        while True:
            packet = await link.get()
            expr = packet.args[0]
            if expr == HANG:
                hung.set()
                continue
            await link.put(wl.ReturnPacket([kernel_id, expr]))
    except LinkError:
        return  # the server ended its link: a kernel then exits


class FakeLauncher(KernelLauncher):
    """Places kernels nowhere: each is a coroutine behind an in-memory link."""

    placement = "fake"

    def __init__(self) -> None:
        super().__init__(KernelSpec(start_timeout=TIMEOUT))
        self.launched: list[FakeHandle] = []
        self.hung = asyncio.Event()
        self._ids = itertools.count(1)
        self._started = False

    async def start(self) -> None:
        self._started = True

    async def launch(self) -> KernelHandle:
        if not self._started:
            raise KernelError("start the fake launcher first")
        kernel_id = f"k{next(self._ids)}"
        theirs, ours = await link_pair()
        task = asyncio.ensure_future(fake_kernel(theirs, kernel_id, self.hung))
        hello = await ours.get(timeout=self.spec.start_timeout)
        info = dict(hello.args[0])
        assert info["id"] == kernel_id  # the contract: the greeting names the launch
        handle = FakeHandle(kernel_id, int(info["pid"]), ours, info,
                            task=task, node=f"node-{kernel_id}")
        handle.on_dead(lambda _h: theirs.close_nowait())
        self.launched.append(handle)
        return handle

    def handles(self) -> list[KernelHandle]:
        return [handle for handle in self.launched if handle.alive]

    async def aclose(self) -> None:
        for handle in self.launched:
            handle.stop()


async def answer(link: Link) -> list[Any]:
    """Packets up to and including the ReturnPacket."""
    packets = []
    while True:
        packet = await link.get(timeout=TIMEOUT)
        packets.append(packet)
        if isinstance(packet, WLFunction) and packet.head == wl.ReturnPacket:
            return packets


def run(body: Callable[[FakeLauncher, KernelWorker, Link], Awaitable[None]]) -> FakeLauncher:
    """Run ``body`` with a started fake launcher, a worker on it and one client link."""

    async def main() -> FakeLauncher:
        async with FakeLauncher() as launcher:
            worker = KernelWorker(launcher)
            client, server_end = await link_pair()
            worker.attach(server_end)
            try:
                await body(launcher, worker, client)
            finally:
                await worker.aclose()
                client.close_nowait()
        return launcher

    return asyncio.run(asyncio.wait_for(main(), TIMEOUT * 2))


def test_a_fake_launcher_drives_a_worker_for_one_request() -> None:
    async def body(launcher: FakeLauncher, worker: KernelWorker, client: Link) -> None:
        await client.put(wl.EvaluatePacket(wl.Plus(1, 1)))
        assert await answer(client) == [wl.ReturnPacket(("k1", wl.Plus(1, 1)))]
        assert worker.core.completed == 1
        stats = launcher.statistics()
        assert (stats.placement, stats.backend) == ("fake", "mathics")
        assert stats.kernels == (KernelStatistics(id="k1", pid=0, placement="fake",
                                                  node="node-k1"),)

    launcher = run(body)
    # Closing the worker stopped its kernel through the handle.
    assert [h.killed for h in launcher.launched] == [True]
    assert launcher.handles() == []


def test_a_kernel_lost_by_its_launcher_costs_one_error_answer_and_is_replaced() -> None:
    async def body(launcher: FakeLauncher, worker: KernelWorker, client: Link) -> None:
        await client.put(wl.EvaluatePacket(HANG))
        await asyncio.wait_for(launcher.hung.wait(), TIMEOUT)
        first = launcher.launched[0]
        first.lost("node-k1 was lost")
        # on_dead ran at once: the running request is answered, not left waiting.
        packets = await answer(client)
        assert packets[0] == wl.MessagePacket(wl.LinkServer, "kerneldied")
        assert "node-k1 was lost" in packets[1].args[0]  # the launcher's reason, told
        assert packets[-1] == wl.ReturnPacket(WLSymbol("$Failed"))
        assert (first.death, first.alive, first.terminated, first.killed) == (
            "node-k1 was lost", False, 1, False)
        # The worker asked the launcher for a fresh kernel, which serves the next request.
        await client.put(wl.EvaluatePacket(wl.x))
        assert await answer(client) == [wl.ReturnPacket(("k2", wl.x))]
        assert [h.id for h in launcher.handles()] == ["k2"]

    run(body)


def test_a_handle_already_gone_keeps_its_reason_and_stops_once_more_harmlessly() -> None:
    async def main() -> None:
        async with FakeLauncher() as launcher:
            handle = await launcher.launch()
            seen: list[KernelHandle] = []
            handle.on_dead(seen.append)
            handle.stop()
            assert seen == [handle] and handle.killed and handle.death is None
            handle.lost("late news")  # a launcher hearing of it afterwards changes nothing
            assert handle.death is None
            handle.on_dead(seen.append)  # registering on a dead kernel calls at once
            assert seen == [handle, handle]
            assert "dead" in repr(handle) and "node-k1" in repr(handle)

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_the_interface_is_abstract_and_the_local_launcher_implements_it() -> None:
    with pytest.raises(TypeError):
        KernelLauncher(KernelSpec())  # type: ignore[abstract]
    local = LocalLauncher(KernelSpec())
    assert isinstance(local, KernelLauncher) and local.placement == "local"
    assert local.handles() == [] and local.statistics().kernels == ()
    for name in launcher_package.__all__:
        assert hasattr(launcher_package, name), name


def test_a_launcher_that_is_not_started_refuses_with_a_kernel_error() -> None:
    async def main() -> None:
        with pytest.raises(KernelError, match="start"):
            await LocalLauncher(KernelSpec()).launch()

    asyncio.run(main())


def test_spec_modules_are_the_backends_of_the_kernel_package() -> None:
    # The argv a launcher runs names a module of the child side, which must exist.
    for backend, module in BACKENDS.items():
        argv = KernelSpec(backend).argv("unix:/tmp/k.sock", "k1")
        assert argv[1:3] == ["-m", module]
        assert importlib.util.find_spec(module) is not None


def _imports(path: Path) -> set[str]:
    """Absolute names of the linkserver modules a file imports (relative ones resolved)."""
    package = "linkserver." + ".".join(path.parent.relative_to(SRC).parts)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_child_side_loads_nothing_of_the_launcher_and_the_launcher_no_backend() -> None:
    # A kernel (or a template on another node) must not need the server's launcher,
    # and the server must not load a backend that takes seconds to import.
    for path in (SRC / "kernel").glob("*.py"):
        assert not any(n.startswith("linkserver.launcher") for n in _imports(path)), path.name
    backends = set(BACKENDS.values()) | {"linkserver.kernel.zygote", "linkserver.kernel.loop"}
    for path in (SRC / "launcher").glob("*.py"):
        imported = _imports(path)
        assert not imported & backends, (path.name, imported & backends)
        assert not any(n.split(".")[0] == "mathics" for n in imported), path.name


def test_a_kernel_watching_its_guardian_exits_when_the_guardian_does() -> None:
    # A kernel forked for a Ray actor is not the actor's child: it watches the actor's
    # pid and must exit the moment the actor does (linkserver.kernel.loop.watch_guardian).
    guardian = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    kernel = subprocess.Popen([
        sys.executable, "-c",
        "import sys, time; from linkserver.kernel.loop import watch_guardian; "
        f"watch_guardian({guardian.pid}); print('watching', flush=True); time.sleep(60)",
    ], stdout=subprocess.PIPE)
    try:
        assert kernel.stdout is not None and kernel.stdout.readline() == b"watching\n"
        assert kernel.poll() is None
        guardian.kill()
        guardian.wait()
        assert kernel.wait(TIMEOUT) == EXIT_GUARDIAN_GONE
    finally:
        for process in (guardian, kernel):
            process.kill()
            process.wait()
        if kernel.stdout is not None:
            kernel.stdout.close()
