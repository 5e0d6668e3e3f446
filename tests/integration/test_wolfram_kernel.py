"""The Wolfram Engine kernel process, ``python -m linkserver.kernel.wolfram``.

One test runs against a real Wolfram Engine and is skipped where there is
none (these machines). The others check what the process does without one:
the one-sentence exit when there is no engine or it will not start, and a
whole run through wolframclient's real ``WolframLanguageSession`` -- its
controller thread, the engine process it launches, its ZeroMQ sockets -- with
a stand-in engine executable that answers from a small table, as the
engine's ``initkernel.m`` would.

What only the real engine can show (the real-engine test checks some): that
``EvaluationData`` reports messages as the unit tests' fake does; that
``Block[{Print = ...}]`` catches what the engine prints and ``$MessageList``
orders it among the messages; that ``TimeConstrained`` stops engine code;
the exact text of messages and of ``OutputForm``; and how long a restart
after an abort takes (licence check included).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol
from wolframclient.utils.environment import find_default_kernel_path

import linkserver
from linkserver.kernel import wolfram
from tests.timeouts import TIMEOUT


def _real_engine() -> str | None:
    try:
        return wolfram.find_engine()
    except wolfram.EngineNotFound:
        return None


REAL_ENGINE = _real_engine()
ABORTED = WLSymbol("$Aborted")


def p(head: str, *args: Any) -> WLFunction:
    return WLFunction(WLSymbol(head), *args)


def kernel_command(link: linkserver.Link, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "linkserver.kernel.wolfram",
        "--connect", link.name, "--kernel-id", "k1", *args,
    ]  # fmt: skip


def collect(link: linkserver.Link, until: str, timeout: float = TIMEOUT) -> list[Any]:
    packets = []
    while True:
        packet = link.get(timeout)
        packets.append(packet)
        if isinstance(packet, WLFunction) and packet.head == WLSymbol(until):
            return packets


@pytest.fixture
def link() -> Iterator[linkserver.Link]:
    listening = linkserver.listen(0)
    try:
        yield listening
    finally:
        listening.close()


@pytest.fixture
def no_engine_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which no engine can be found."""
    if find_default_kernel_path():
        pytest.skip("a Wolfram Engine is installed in a standard location here")
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != wolfram.KERNEL_PATH_ENV}
    env["PATH"] = str(empty)
    env["WOLFRAM_INSTALLATION_DIRECTORY"] = str(empty)
    return env


# ------------------------------------------------------------ no engine


def test_no_engine_exits_3_with_one_sentence(
    link: linkserver.Link, no_engine_env: dict[str, str]
) -> None:
    done = subprocess.run(
        kernel_command(link), env=no_engine_env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 3
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "the Wolfram Engine is not installed here" in line
    assert "--kernel-path" in line and line.endswith(".")


def test_a_kernel_path_that_is_not_a_kernel_exits_3(
    link: linkserver.Link, tmp_path: Path
) -> None:
    done = subprocess.run(
        kernel_command(link, "--kernel-path", str(tmp_path / "nothing")),
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 3
    [line] = done.stderr.splitlines()
    assert f"there is no Wolfram Engine kernel at {tmp_path / 'nothing'}" in line


def test_an_engine_that_does_not_start_exits_3(link: linkserver.Link, tmp_path: Path) -> None:
    # wolframclient really launches it, and sees it die before it says OK.
    kernel = tmp_path / "WolframKernel"
    kernel.write_text("#!/bin/sh\necho 'not activated' >&2\nexit 1\n")
    kernel.chmod(0o755)
    done = subprocess.run(
        kernel_command(link, "--kernel-path", str(kernel)),
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 3
    assert "not activated" in done.stderr  # the engine's own words reach our stderr
    assert f"the Wolfram Engine at {kernel} did not start" in done.stderr


# ----------------------------------------- wolframclient with a stand-in engine

STAND_IN = '''#!{python}
"""A stand-in Wolfram Engine: wolframclient's kernel protocol, canned answers."""
import os, re, sys
import zmq
from wolframclient.deserializers import binary_deserialize
from wolframclient.language.expression import WLFunction, WLSymbol
from wolframclient.serializers import export

with open({pid_file!r}, "w") as f:
    f.write(str(os.getpid()))
# wolframclient runs: KERNEL -noprompt -initfile F -run 'KernelPrivateStart["in", "out"];'
pull_uri, push_uri = re.findall(r'"(tcp://[^"]+)"', sys.argv[sys.argv.index("-run") + 1])
context = zmq.Context()
pull = context.socket(zmq.PULL)
pull.connect(pull_uri)
push = context.socket(zmq.PUSH)
push.connect(push_uri)
push.send(b"OK")

def answer(expr):
    head = getattr(getattr(expr, "head", None), "name", "")
    if head == "CompoundExpression":  # the backend's set-up: answer $Version's number
        return "14.1.0"
    if head == "linkserver`Private`run" and getattr(expr.args[0], "head", None) == WLSymbol("Plus"):
        value = sum(expr.args[0].args)
        return WLFunction(WLSymbol("linkserver`Private`record"), value, [], False, False)
    return WLSymbol("$Failed")

while True:
    expr = binary_deserialize(pull.recv())
    data = {{
        "Result": export(answer(expr), target_format="wxf"),
        "Success": True, "FailureType": None, "Messages": [], "MessagesText": [],
    }}
    push.send(export(data, target_format="wxf"))
'''


def test_the_kernel_drives_wolframclient_and_stops_its_engine(
    link: linkserver.Link, tmp_path: Path
) -> None:
    pid_file = tmp_path / "engine.pid"
    engine = tmp_path / "WolframKernel"
    engine.write_text(STAND_IN.format(python=sys.executable, pid_file=str(pid_file)))
    engine.chmod(0o755)
    proc = subprocess.Popen(
        kernel_command(link, "--kernel-path", str(engine)),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = link.get(TIMEOUT)
        assert ready == p(
            "KernelReady",
            {"id": "k1", "pid": proc.pid, "backend": "wolfram", "version": "14.1.0"},
        )
        link.put(wl.EvaluatePacket(wl.Plus(1, 2)))
        assert collect(link, "ReturnPacket") == [p("ReturnPacket", 3)]
        engine_pid = int(pid_file.read_text())
        link.terminate()
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=TIMEOUT)
    assert out == ""
    # wolframclient killed the engine: no orphan is left behind.
    stat = Path(f"/proc/{engine_pid}/stat")
    if Path("/proc/self/stat").exists() and stat.exists():
        assert stat.read_text().rpartition(")")[2].split()[0] == "Z", err  # dead, not reaped


# ------------------------------------------------------------ the real engine


@pytest.mark.skipif(
    REAL_ENGINE is None,
    reason="the Wolfram Engine is not installed on this machine; the backend is tested "
    "against a fake wolframclient session in tests/unit/test_wolfram_backend.py",
)
def test_real_engine(link: linkserver.Link) -> None:
    start = wolfram.ENGINE_START_TIMEOUT
    proc = subprocess.Popen(
        kernel_command(link, "--eval-timeout", str(0.5 * TIMEOUT)),
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = link.get(start)
        assert ready.args[0]["backend"] == "wolfram"
        assert ready.args[0]["version"][:1].isdigit()

        link.put(wl.EvaluatePacket(wl.Plus(1, 1)))
        assert collect(link, "ReturnPacket") == [p("ReturnPacket", 2)]

        link.put(wl.EvaluatePacket(wl.CompoundExpression(wl.Print("a"), wl.Divide(1, 0))))
        packets = collect(link, "ReturnPacket")
        assert packets[0] == p("TextPacket", "a")
        assert packets[1] == p("MessagePacket", wl.Power, "infy")
        assert packets[2].args[0].startswith("Power::infy: ")
        assert packets[3] == p("ReturnPacket", wl.DirectedInfinity())

        link.put(wl.EnterTextPacket("a = 6*7"))
        assert collect(link, "InputNamePacket") == [
            p("OutputNamePacket", "Out[1]= "),
            p("ReturnTextPacket", "42"),
            p("InputNamePacket", "In[2]:= "),
        ]
        link.put(wl.EnterTextPacket("1+)"))
        packets = collect(link, "InputNamePacket")
        assert packets[0].args[0] == WLSymbol("Syntax")
        assert packets[-2:] == [p("SyntaxPacket", 3), p("InputNamePacket", "In[2]:= ")]

        link.put(wl.EvaluatePacket(wl.While(True, 1)))  # stopped by TimeConstrained
        assert collect(link, "ReturnPacket", TIMEOUT + wolfram.TIMEOUT_GRACE)[-3:] == [
            p("MessagePacket", wl.General, "timeout"),
            p("TextPacket", "General::timeout: Timeout reached."),
            p("ReturnPacket", ABORTED),
        ]
        link.put(wl.EvaluatePacket(wl.Pause(60)))
        link.flush()
        link.abort()  # running or not yet: either way the answer is $Aborted
        assert collect(link, "ReturnPacket", start)[-1] == p("ReturnPacket", ABORTED)
        link.put(wl.EvaluatePacket(wl.Plus(1, 1)))
        assert collect(link, "ReturnPacket", start) == [p("ReturnPacket", 2)]

        link.terminate()
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=TIMEOUT)
