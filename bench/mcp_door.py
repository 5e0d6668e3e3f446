"""An MCP ``evaluate`` of ``1+1``: the MCP door vs linkserver.Client vs a fresh process per call.

Three ways an agent's ``1+1`` can be served, measured in the same run:

- ``mcp``: ``tools/call evaluate {"code": "1+1"}`` through ``linkserver mcp`` over
  stdio, from the MCP SDK's own client (median over 300 calls after 30 warm-up
  calls) -- the door turns the call into one request to a pool kernel of a
  ``linkserver serve`` started here and the answer into MCP content;
- ``client``: ``linkserver.Client.evaluate_wrap("1+1")`` on the same server (the
  door's own floor: what it adds is the difference);
- ``fresh``: what the community MCP servers do per call -- start a Python process
  that loads Mathics3, evaluates ``1+1``, prints it and exits (median of 5).

Prints ``name: value unit`` lines and the ratios.

    .venv/bin/python bench/mcp_door.py
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

import linkserver

MCP_ROUNDS = 300
CLIENT_ROUNDS = 1000
FRESH_ROUNDS = 5

FRESH = (
    "from mathics.core.load_builtin import import_and_load_builtins\n"
    "import_and_load_builtins()\n"
    "from mathics.session import MathicsSession\n"
    "print(MathicsSession().evaluate('1+1'))\n"
)


def start_server() -> tuple[subprocess.Popen[str], str]:
    """A pool-mode ``linkserver serve`` (persistent kernels) on a free port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--mode", "pool",
         "--keepalive", "60", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (\d+@[\w.:\[\]]+)", line)
        if match:
            return proc, match.group(1)
    raise SystemExit("the linkserver did not start")


async def through_mcp(name: str) -> tuple[list[float], float]:
    """Per-call seconds of ``evaluate 1+1`` through the door, and start to first answer."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "linkserver", "mcp", "--server", name],
        env={k: v for k, v in os.environ.items() if k.startswith(("LINKSERVER_", "PYTHON"))})
    start = time.perf_counter()
    async with Client(params) as client:
        first = await client.call_tool("evaluate", {"code": "1+1"})
        first_answer = time.perf_counter() - start
        assert first.structured_content["result"] == "2", first  # type: ignore[index]
        for _ in range(30):
            await client.call_tool("evaluate", {"code": "1+1"})
        samples = []
        for _ in range(MCP_ROUNDS):
            t = time.perf_counter()
            await client.call_tool("evaluate", {"code": "1+1"})
            samples.append(time.perf_counter() - t)
    return samples, first_answer


def through_client(name: str) -> list[float]:
    with linkserver.Client(name, persistent=True) as client:
        for _ in range(100):
            client.evaluate_wrap("1+1")
        samples = []
        for _ in range(CLIENT_ROUNDS):
            t = time.perf_counter()
            client.evaluate_wrap("1+1")
            samples.append(time.perf_counter() - t)
    return samples


def fresh_process() -> list[float]:
    samples = []
    for _ in range(FRESH_ROUNDS):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True,
                             check=True)
        samples.append(time.perf_counter() - t)
        assert out.stdout.strip() == "2", out
    return samples


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}; server, its kernels, the door and this "
          "client are separate processes")
    with tempfile.TemporaryDirectory(prefix="bench-mcp-door-") as tmp:
        os.environ["LINKSERVER_RUNTIME_DIR"] = str(Path(tmp) / "runtime")
        proc, name = start_server()
        try:
            mcp, mcp_first = asyncio.run(through_mcp(name))
            client = through_client(name)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    fresh = fresh_process()
    mcp_median = statistics.median(mcp)
    client_median = statistics.median(client)
    fresh_median = statistics.median(fresh)
    report("mcp_door.evaluate_1plus1.mcp", mcp_median * 1e6, "us")
    report("mcp_door.evaluate_1plus1.p99.mcp", sorted(mcp)[int(len(mcp) * 0.99)] * 1e6, "us")
    report("mcp_door.evaluate_1plus1.client", client_median * 1e6, "us")
    report("mcp_door.evaluate_1plus1.fresh_process", fresh_median * 1e6, "us")
    report("mcp_door.added_by_door", (mcp_median - client_median) * 1e6, "us")
    report("mcp_door.start_to_first_answer.mcp", mcp_first, "s")
    report("mcp_door.ratio.mcp_vs_client", mcp_median / client_median, "(door/Client)")
    report("mcp_door.ratio.fresh_vs_mcp", fresh_median / mcp_median,
           "(fresh process per call/door)")


if __name__ == "__main__":
    main()
