"""Soak: a server under steady mixed load for 10 minutes; memory and fd drift.

Starts ``linkserver serve`` (shared mode, a key, the Mathics3 kernel) in its own
process and keeps it busy from here: clients that connect, evaluate and leave,
clients that stay and evaluate in a loop, Print output, messages, aborted
evaluations, a stranger's bytes now and then. Every 30 s it samples the
server's resident memory and open file descriptors (and its kernels'
memory). Reports the figures after warm-up and at the end, and the drift.
Not part of CI (it runs for minutes).

    .venv/bin/python bench/soak.py [SECONDS]      # default 600
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import cpu_placement, report
from wolframclient.language import wlexpr

import linkserver.aio

DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
SAMPLE_EVERY = 30.0
WARMUP = min(60.0, DURATION / 5)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    found = []
    for child in map(int, text.split()):
        found.append(child)
        found.extend(children(child))
    return found


async def churn(name: str, stop: float, counts: dict[str, int]) -> None:
    """Connect, evaluate a few things, leave; again."""
    while time.monotonic() < stop:
        async with linkserver.aio.Client(name, timeout=60) as client:
            for _ in range(random.randint(1, 5)):
                result = await client.evaluate_wrap(
                    random.choice(['Print["p"]; 1+1', "1/0", "Range[50]^2", "StringJoin[\"a\", \"b\"]"])
                )
                counts["answers" if result is not None else "lost"] += 1


async def stayer(name: str, stop: float, counts: dict[str, int]) -> None:
    """Stay connected and evaluate in a loop, aborting now and then."""
    async with linkserver.aio.Client(name, timeout=60) as client:
        i = 0
        while time.monotonic() < stop:
            i += 1
            if i % 50 == 0:
                task = asyncio.ensure_future(client.evaluate(wlexpr("Do[Null, {10^6}]")))
                await asyncio.sleep(0.05)
                await client.abort()
                await task
                counts["aborts"] += 1
            else:
                await client.evaluate(wlexpr(f"soakX = {i}; soakX + 1"))
            counts["answers"] += 1


async def stranger(port: int, stop: float, counts: dict[str, int]) -> None:
    """A port scanner's bytes every few seconds."""
    while time.monotonic() < stop:
        await asyncio.sleep(3)
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            await writer.drain()
            writer.close()
            counts["strangers"] += 1
        except OSError:
            pass


async def sampler(pid: int, stop: float, samples: list[tuple[float, int, int, int]]) -> None:
    start = time.monotonic()
    while time.monotonic() < stop:
        kernels = sum(rss_kb(c) for c in children(pid) if Path(f"/proc/{c}").exists())
        samples.append((time.monotonic() - start, rss_kb(pid), fds(pid), kernels))
        print(f"# t={samples[-1][0]:5.0f} s  server rss {samples[-1][1] / 1024:6.1f} MB  "
              f"fds {samples[-1][2]}  kernels rss {kernels / 1024:6.1f} MB", flush=True)
        await asyncio.sleep(SAMPLE_EVERY)


async def load(name: str, port: int, pid: int) -> tuple[dict[str, int], list[tuple[float, int, int, int]]]:
    stop = time.monotonic() + DURATION
    counts = {"answers": 0, "lost": 0, "aborts": 0, "strangers": 0}
    samples: list[tuple[float, int, int, int]] = []
    await asyncio.gather(
        sampler(pid, stop, samples),
        stranger(port, stop, counts),
        *(churn(name, stop, counts) for _ in range(4)),
        *(stayer(name, stop, counts) for _ in range(2)),
    )
    return counts, samples


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}; {DURATION:g} s of load")
    with tempfile.TemporaryDirectory() as runtime:
        os.environ["LINKSERVER_RUNTIME_DIR"] = runtime
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "linkserver", "serve", "--port", str(port), "--log-level", "warning"],
            stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )
        try:
            assert server.stdout is not None
            for line in server.stdout:
                if re.search(r"listening on", line):
                    break
            name = f"{port}@127.0.0.1"
            counts, samples = asyncio.run(load(name, port, server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    settled = [s for s in samples if s[0] >= WARMUP] or samples
    first, last = settled[0], samples[-1]
    report("soak.duration", DURATION, "s")
    report("soak.answers", counts["answers"], "evaluations answered")
    report("soak.aborts", counts["aborts"], "evaluations aborted")
    report("soak.strangers", counts["strangers"], "stranger connections")
    report("soak.server_rss.after_warmup", first[1] / 1024, "MB")
    report("soak.server_rss.end", last[1] / 1024, "MB")
    report("soak.server_rss.drift", (last[1] - first[1]) / 1024, "MB")
    report("soak.server_fds.after_warmup", first[2], "fds")
    report("soak.server_fds.drift", last[2] - first[2], "fds")
    report("soak.kernel_rss.drift", (last[3] - first[3]) / 1024, "MB")


if __name__ == "__main__":
    main()
