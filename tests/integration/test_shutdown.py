"""Shutdown under load: every accepted request is answered or refused before exit.

A real ``linkserver serve`` subprocess gets clients with requests running,
queued, and (pool mode) links waiting for a kernel; then it is stopped by
SIGTERM or by ``$KeepRunning = False`` from a local client (docs/protocol.md
§8.7). Each request must get exactly one answer -- its result or the
``shutdown`` failure of §8.3 -- in order, before its link closes; the process
must exit with code 0 and leave no kernel process behind.

Every wait is bounded by :data:`tests.timeouts.TIMEOUT`; nothing asserts time.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLFunction, WLSymbol

import linkserver
from linkserver.status import STATUS_MESSAGE
from tests.procs import alive, children
from tests.timeouts import TIMEOUT, wait_until

pytestmark = pytest.mark.slow

KERNEL_TIMEOUT = TIMEOUT * 6
SHUTDOWN = wl.MessagePacket(wl.LinkServer, "shutdown")
FAILED = wl.ReturnPacket(WLSymbol("$Failed"))




@dataclass
class Server:
    proc: subprocess.Popen[str]
    name: str
    stdout: list[str] = field(default_factory=list)
    #: the connection file it said it wrote (serve writes one where clients find it)
    connection_file: Path | None = None


@pytest.fixture
def serve(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    mode = request.param
    # The server writes its connection file (with its key) here, and our clients read it.
    monkeypatch.setenv("LINKSERVER_RUNTIME_DIR", str(tmp_path))
    args = [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--log-level", "error",
            "--mode", mode]
    if mode == "pool":
        args += ["--pool-size", "3", "--pool-min", "3", "--pool-wait", str(KERNEL_TIMEOUT)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        name, lines = "", []
        while not name:  # bounded: the server prints the line or exits (pytest-timeout backs it)
            line = proc.stdout.readline()
            assert line, f"the server exited before listening: {proc.stderr.read()}"  # type: ignore[union-attr]
            lines.append(line)
            match = re.search(r"listening on (\S+)", line)
            name = match.group(1) if match else ""
        server = Server(proc, name, lines)
        while True:  # the rest of the banner, up to its last line
            line = proc.stdout.readline()
            assert line, "the server exited while starting"
            lines.append(line)
            match = re.search(r"connection file: (\S+)", line)
            if match:
                server.connection_file = Path(match.group(1))
            if "stop with" in line:
                break
        yield server
    finally:
        proc.kill()
        proc.wait(TIMEOUT)


def status(name: str) -> dict[str, object]:
    with linkserver.connect(name, timeout=TIMEOUT) as link:
        link.send_message(STATUS_MESSAGE)
        info = link.get(TIMEOUT).args[0]
        assert isinstance(info, dict)
        return info


def value(k: int, i: int) -> int:
    return 1000 * k + i


@dataclass
class Client:
    """A link and what it asked, in order: each item is the value expected, or None for Null."""

    k: int
    link: linkserver.Link
    asked: list[int] = field(default_factory=list)

    def send(self, i: int, code: str = "") -> None:
        # `code` runs first (a Print, a Pause); the value says which request this was.
        self.link.put(wl.EvaluatePacket(wlexpr(f"{code}{value(self.k, i)}")))
        self.asked.append(value(self.k, i))

    def collect(self) -> tuple[int, int]:
        """Read every answer until the link closes; return (results, refusals)."""
        results = refusals = 0
        packets: list[object] = []
        answers: list[list[object]] = []
        while True:
            try:
                packet = self.link.get(KERNEL_TIMEOUT)
            except linkserver.LinkClosed:
                break
            packets.append(packet)
            if isinstance(packet, WLFunction) and packet.head == WLSymbol("ReturnPacket"):
                answers.append(packets)
                packets = []
        assert packets == [], f"client {self.k}: a partial answer before the close: {packets}"
        assert len(answers) == len(self.asked), (self.k, self.asked, answers)
        for want, answer in zip(self.asked, answers):
            answer = [p for p in answer if not (isinstance(p, WLFunction)
                                                and p.head == WLSymbol("TextPacket")
                                                and str(p.args[0]).startswith("running"))]
            if answer == [wl.ReturnPacket(want)]:
                results += 1
            else:
                assert len(answer) == 3 and answer[0] == SHUTDOWN and answer[2] == FAILED, (
                    self.k, want, answer)
                assert str(answer[1].args[0]).startswith("LinkServer::shutdown: ")
                refusals += 1
        self.link.close()
        return results, refusals


def load_shared(name: str) -> list[Client]:
    """Five clients; one request runs (long), eleven wait in the fair queue."""
    clients = [Client(k, linkserver.connect(name, timeout=TIMEOUT)) for k in range(5)]
    clients[0].send(0)
    assert clients[0].link.get(KERNEL_TIMEOUT) == wl.ReturnPacket(value(0, 0))
    clients[0].asked.clear()  # answered already; what follows is the load
    clients[0].send(1, 'Print["running"]; Pause[60]; ')
    clients[0].link.flush()
    assert clients[0].link.get(KERNEL_TIMEOUT) == wl.TextPacket("running")
    for c in clients:
        for i in range(2, 5 if c.k else 4):
            c.send(i)
        c.link.flush()
    # Accepted = queued in the server: wait until the server says so.
    assert wait_until(lambda: status(name)["queued"] == 2 + 4 * 3, KERNEL_TIMEOUT)
    return clients


def load_pool(name: str, admin: linkserver.Link) -> list[Client]:
    """Three kernels: the admin's, two busy clients'; two more clients wait for a kernel."""
    served = [Client(k, linkserver.connect(name, timeout=TIMEOUT)) for k in (1, 2)]
    for c in served:
        c.send(0)
        assert c.link.get(KERNEL_TIMEOUT) == wl.ReturnPacket(value(c.k, 0))
        c.asked.clear()
        c.send(1, 'Print["running"]; Pause[60]; ')
        c.send(2)
        c.send(3)
        c.link.flush()
        assert c.link.get(KERNEL_TIMEOUT) == wl.TextPacket("running")
    waiting = [Client(k, linkserver.connect(name, timeout=TIMEOUT)) for k in (3, 4)]
    for c in waiting:
        c.send(0)  # its first request: the link now waits for a kernel
        c.link.flush()
    assert wait_until(lambda: status(name)["waiting"] == 2, KERNEL_TIMEOUT)
    return served + waiting


def connection_file_removed(server: Server) -> None:
    """CONNECTION FILE: ``serve`` writes one (linkserver.security) and removes it on exit."""
    if server.connection_file is None:
        return  # a server that does not announce one: nothing to check
    assert not server.connection_file.exists(), f"{server.connection_file} outlived the server"


@pytest.mark.parametrize("serve", ["shared", "pool"], indirect=True)
@pytest.mark.parametrize("how", ["sigterm", "keeprunning"])
def test_stop_under_load_answers_every_request(serve: Server, how: str) -> None:
    mode = status(serve.name)["mode"]
    admin = linkserver.connect(serve.name, timeout=TIMEOUT)
    if mode == "pool":
        # In pool mode the admin's request needs a kernel of its own: take it first.
        admin.put(wl.EvaluatePacket(wl.Plus(1, 1)))
        assert admin.get(KERNEL_TIMEOUT) == wl.ReturnPacket(2)
        clients = load_pool(serve.name, admin)
    else:
        clients = load_shared(serve.name)
    kernels = children(serve.proc.pid, recursive=True)
    assert kernels, "the server runs no kernel processes?"
    if serve.connection_file is not None:
        assert serve.connection_file.exists()

    if how == "sigterm":
        serve.proc.send_signal(signal.SIGTERM)
    else:
        admin.put(wl.EnterTextPacket("$KeepRunning = False"))
        assert admin.get(KERNEL_TIMEOUT) == wl.ReturnTextPacket("False")
        assert admin.get(KERNEL_TIMEOUT) == wl.InputNamePacket("In[?]:= ")

    totals = [c.collect() for c in clients]
    results = sum(r for r, _ in totals)
    refusals = sum(f for _, f in totals)
    assert refusals >= 1 + 2 * (mode == "pool")  # the long ones (and the waiting links) at least
    assert results + refusals == sum(len(c.asked) for c in clients)

    out, err = serve.proc.communicate(timeout=KERNEL_TIMEOUT)
    assert serve.proc.returncode == 0, err
    assert "linkserver stopped" in out
    assert "Traceback" not in err
    admin.close()
    # No kernel (nor the kernel template) outlives the server.
    assert wait_until(lambda: not any(alive(p) for p in kernels)), [p for p in kernels if alive(p)]
    connection_file_removed(serve)
