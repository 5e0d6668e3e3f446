"""The programs in examples/ and the command line, run as a user would."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from wolframclient.language import wl

import linkserver
from tests.timeouts import TIMEOUT

ROOT = Path(__file__).parents[2]


@contextmanager
def start(*args: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``python ARGS`` from the project root; kill it and close its pipes at the end."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, env=env,
    ) as proc:
        try:
            yield proc
        finally:
            proc.kill()
            proc.wait()


def wait_for_name(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(\d+@[\w.:\[\]]+)", line)
    assert match, f"no address in {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
    return match.group(1)


def test_hello_server_example() -> None:
    with start("examples/hello_server.py", "0") as proc:
        name = wait_for_name(proc)
        with linkserver.connect(name, timeout=TIMEOUT) as link:
            assert link.get(TIMEOUT) == wl.Print("Hello client program.")
            assert proc.wait(TIMEOUT) == 0
        out, _ = proc.communicate(timeout=TIMEOUT)
        assert "done" in out


def test_hello_client_example_against_hello_server() -> None:
    with start("examples/hello_server.py", "0") as server:
        name = wait_for_name(server)
        client = subprocess.run(
            [sys.executable, "examples/hello_client.py", name], cwd=ROOT, capture_output=True,
            text=True, timeout=TIMEOUT * 3, stdin=subprocess.DEVNULL,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == "Print['Hello client program.']"
        assert server.wait(TIMEOUT) == 0


def test_cli_serve_demo_greets_echoes_and_stops_on_sigterm() -> None:
    with start("-m", "linkserver", "serve", "--demo", "--port", "0") as proc:
        name = wait_for_name(proc)
        with linkserver.connect(name, timeout=TIMEOUT) as link:
            assert link.get(TIMEOUT) == wl.Print("Hello client program.")
            link.put([1, "two"])
            assert link.get(TIMEOUT) == (1, "two")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0


def test_cli_reports_address_in_use_in_one_sentence() -> None:
    with linkserver.LinkServer() as server, start(
        "-m", "linkserver", "serve", "--demo", "--port", str(server.port)
    ) as proc:
        _out, err = proc.communicate(timeout=TIMEOUT * 3)
        assert proc.returncode == 3
        assert "already in use" in err
        assert "Traceback" not in err


def test_cli_help_and_version() -> None:
    for args, expected in (
        (["--version"], "linkserver"), (["serve", "--help"], "--port"),
        (["eval", "--help"], "--name"), (["connect", "--help"], "Ctrl-C"),
        (["status", "--help"], "PORT@HOST"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "linkserver", *args], cwd=ROOT, capture_output=True,
            text=True, timeout=TIMEOUT * 3,
        )
        assert result.returncode == 0 and expected in result.stdout


WOLFRAM_ENGINE_HERE = bool(shutil.which("WolframKernel") or shutil.which("wolframscript"))


@pytest.mark.skipif(
    WOLFRAM_ENGINE_HERE,
    reason="the Wolfram Engine is installed here; this test checks what a user sees without it",
)
def test_serve_without_the_wolfram_engine_says_so_and_exits() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LINKSERVER_KERNEL_PATH"}
    result = subprocess.run(
        [sys.executable, "-m", "linkserver", "serve", "--kernel", "wolfram", "--port", "0",
         "--log-level", "error"],
        capture_output=True, text=True, timeout=TIMEOUT * 6, stdin=subprocess.DEVNULL, env=env,
        cwd=ROOT,
    )
    assert result.returncode == 3
    assert "Wolfram Engine is not installed" in result.stderr
    assert "exited with code 3 before it was ready" in result.stderr
    assert "Traceback" not in result.stderr
