"""wolframclient's ``session.evaluate(wlexpr("1+1"))`` through ``linkserver-kernel``.

Three figures, measured in this run (medians of 300 after 50 warm-up calls):

* ``local``: wolframclient's ``WolframLanguageSession`` on ``linkserver-kernel``
  evaluating with Mathics3 in its own process;
* ``server``: the same executable with ``--server``, on the kernel of a
  shared-mode ``linkserver serve`` started here (one more hop: the server);
* the Jupyter peer: ``execute_request("1+1")`` -> ``execute_reply`` to the
  Mathics3 Jupyter kernel (``bench/jupyter_peer.py``'s measurement).

Also the time from ``session.start()`` to the first answer for each door.

    .venv/bin/python bench/wolframclient_door.py
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import cpu_placement, report
from jupyter_peer import first_working_kernel, p99
from wolframclient.evaluation import WolframLanguageSession
from wolframclient.language import wlexpr

ROUNDS = 300
WARMUP = 50
ROOT = Path(__file__).parents[1]


def door_script(folder: Path, *args: str) -> Path:
    """An executable that runs ``linkserver-kernel ARGS`` (wolframclient takes any path)."""
    script = folder / ("linkserver-kernel-" + ("server" if args else "local"))
    quoted = " ".join(f"'{a}'" for a in args)
    script.write_text(
        f"#!/bin/sh\nexec '{sys.executable}' -m linkserver.door.wolframclient_kernel "
        f"{quoted} \"$@\"\n"
    )
    script.chmod(0o755)
    return script


def through_wolframclient(kernel: Path) -> tuple[list[float], float]:
    expr = wlexpr("1+1")
    t0 = time.perf_counter()
    session = WolframLanguageSession(str(kernel), STARTUP_TIMEOUT=120)
    try:
        session.start()
        assert session.evaluate(expr) == 2
        first = time.perf_counter() - t0
        for _ in range(WARMUP):
            session.evaluate(expr)
        samples = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            session.evaluate(expr)
            samples.append(time.perf_counter() - t)
        return samples, first
    finally:
        session.terminate()


def start_server(runtime: Path) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", LINKSERVER_RUNTIME_DIR=str(runtime))
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--mode", "shared",
         "--log-level", "error"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (\d+@[\w.:\[\]]+)", line)
        if match:
            return proc, match.group(1)
    raise RuntimeError("the linkserver did not start")


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}; wolframclient, door, server and kernels "
          "in separate processes")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        local, local_first = through_wolframclient(door_script(root))
        runtime = root / "runtime"
        runtime.mkdir(mode=0o700)
        server, address = start_server(runtime)
        os.environ["LINKSERVER_RUNTIME_DIR"] = str(runtime)  # the door finds the key there
        try:
            remote, remote_first = through_wolframclient(
                door_script(root, "--server", address))
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        name, jupyter_samples, jupyter_first = first_working_kernel(root / "jupyter")
    local_median = statistics.median(local)
    remote_median = statistics.median(remote)
    jupyter = statistics.median(jupyter_samples["reply"])  # as a notebook waits
    print(f"# jupyter kernel used: {name}")
    report("wolframclient.evaluate_1plus1.local", local_median * 1e6, "us")
    report("wolframclient.evaluate_1plus1.local.p99", p99(local) * 1e6, "us")
    report("wolframclient.evaluate_1plus1.server", remote_median * 1e6, "us")
    report("wolframclient.evaluate_1plus1.server.p99", p99(remote) * 1e6, "us")
    report(f"jupyter.roundtrip_1plus1.{name}", jupyter * 1e6, "us")
    report("wolframclient.start_to_first_answer.local", local_first, "s")
    report("wolframclient.start_to_first_answer.server", remote_first, "s")
    report(f"jupyter.start_to_first_reply.{name}", jupyter_first, "s")
    report("wolframclient.local.ratio", local_median / jupyter, "(local door/jupyter)")
    report("wolframclient.server.ratio", remote_median / jupyter, "(server door/jupyter)")


if __name__ == "__main__":
    main()
