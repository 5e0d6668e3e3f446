"""Cell round trip of ``1+1``: linkserver-jupyter vs the Mathics3 Jupyter kernel, same run.

``execute_request("1+1")`` -> ``execute_reply`` through ``jupyter_client``,
median over 300 rounds after 50 warm-up rounds, to two kernels running side by
side, measured in alternating blocks of 25 rounds (so that the machine's drift
falls on both alike):

- ``linkserver``: the ``linkserver-jupyter`` kernel (linkserver.door.jupyter_kernel),
  forwarding each cell to a shared-mode ``linkserver serve`` started here, whose
  Mathics3 kernel evaluates it -- two hops (Jupyter -> kernel process -> server
  -> Mathics3 kernel process) where the peer has one;
- ``mathics3``: mathics3-jupyter-kernel, which evaluates in its own process (set up
  as in bench/jupyter_peer.py).

Also, for scale: ``EnterTextPacket["1+1"]`` straight over a link to the same
server (what the Jupyter kernel adds is the difference), and each kernel's
start to first reply. Prints ``name: value unit`` lines and the ratio.

    .venv/bin/python bench/jupyter_door.py
"""

from __future__ import annotations

import asyncio
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
from jupyter_peer import JUPYTER_ROUNDS, KERNELS, jupyter_kernel, p99, sample_as_notebook
from wolframclient.language import wl

import linkserver.aio

LINK_ROUNDS = 1000
BLOCK = 25  # rounds of one kernel before the other's turn


def start_server() -> tuple[subprocess.Popen[str], str]:
    """A shared-mode ``linkserver serve`` on a free port; returns it and its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--mode", "shared",
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (\d+@[\w.:\[\]]+)", line)
        if match:
            return proc, match.group(1)
    raise SystemExit("the linkserver did not start")


async def through_link(name: str) -> float:
    """Median ``EnterTextPacket["1+1"]`` round trip (to its InputNamePacket) on one link."""
    link = await linkserver.aio.connect(name)
    packet = wl.EnterTextPacket("1+1")

    async def once() -> None:
        await link.put(packet)
        while True:
            answer = await link.get()
            if getattr(getattr(answer, "head", None), "name", "") == "InputNamePacket":
                return

    for _ in range(100):
        await once()
    samples = []
    for _ in range(LINK_ROUNDS):
        t = time.perf_counter()
        await once()
        samples.append(time.perf_counter() - t)
    await link.aclose()
    return statistics.median(samples)


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}; server, its kernel and the Jupyter kernels "
          "run in separate processes")
    with tempfile.TemporaryDirectory(prefix="bench-jupyter-door-") as tmp:
        # The server's connection file (with its key) goes here; the Jupyter kernel
        # process inherits the variable and finds it by itself.
        os.environ["LINKSERVER_RUNTIME_DIR"] = str(Path(tmp) / "runtime")
        proc, name = start_server()
        try:
            link = asyncio.run(through_link(name))
            door_argv = [sys.executable, "-m", "linkserver.door.jupyter_kernel", "--server",
                         name, "-f", "{connection_file}"]
            door: dict[str, list[float]] = {}
            peer: dict[str, list[float]] = {}
            with jupyter_kernel("linkserver", door_argv, Path(tmp)) as (door_client, door_first), \
                    jupyter_kernel("mathics3", KERNELS["mathics3"], Path(tmp)) as (
                        peer_client, peer_first):
                for _ in range(JUPYTER_ROUNDS // BLOCK):
                    sample_as_notebook(door_client, BLOCK, door)
                    sample_as_notebook(peer_client, BLOCK, peer)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    for figure in ("reply", "idle"):  # both measured as a notebook waits (jupyter_peer.py)
        report(f"jupyter_door.roundtrip_1plus1.linkserver.{figure}",
               statistics.median(door[figure]) * 1e6, "us")
        report(f"jupyter_door.roundtrip_1plus1.p99.linkserver.{figure}", p99(door[figure]) * 1e6, "us")
        report(f"jupyter_door.roundtrip_1plus1.mathics3.{figure}",
               statistics.median(peer[figure]) * 1e6, "us")
        report(f"jupyter_door.roundtrip_1plus1.p99.mathics3.{figure}", p99(peer[figure]) * 1e6, "us")
    door_median, peer_median = statistics.median(door["reply"]), statistics.median(peer["reply"])
    report("jupyter_door.link_enter_text_1plus1", link * 1e6, "us")
    report("jupyter_door.added_by_jupyter_kernel", (door_median - link) * 1e6, "us")
    report("jupyter_door.start_to_first_reply.linkserver", door_first, "s")
    report("jupyter_door.start_to_first_reply.mathics3", peer_first, "s")
    report("jupyter_door.ratio", door_median / peer_median,
           "(linkserver-jupyter / mathics3 kernel, execute_reply as a notebook waits; target <= 1/2)")


if __name__ == "__main__":
    main()
