"""Installed functions (docs/protocol.md §8.10): calls per second, and overhead per call.

Starts a shared Mathics3 service in this process, installs a trivial Python
function (identity) with the blocking client, and times ``Do[PyId[i], {i, N}]``
(every call a CallPacket/ReturnPacket round trip through the server) against
the same loop with a local Wolfram Language function, and against a local
Python call. Prints ``name: value unit`` lines.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import report  # noqa: E402

import linkserver  # noqa: E402
from linkserver.portal import get_portal  # noqa: E402
from linkserver.service import KernelService  # noqa: E402

N = 300


def identity(x: object) -> object:
    return x


def main() -> None:
    service = KernelService(0, "127.0.0.1", mode="shared")
    get_portal().call(service.start(), timeout=120)
    try:
        with linkserver.Client(service.name) as client:
            client.install("PyId", identity)
            client.evaluate("LocalId[x_] := x")
            client.evaluate(f"Do[PyId[i], {{i, 20}}]", timeout=60)  # warm up
            start = time.perf_counter()
            client.evaluate(f"Do[PyId[i], {{i, {N}}}]", timeout=120)
            installed = (time.perf_counter() - start) / N
            start = time.perf_counter()
            client.evaluate(f"Do[LocalId[i], {{i, {N}}}]", timeout=120)
            local_wl = (time.perf_counter() - start) / N
            start = time.perf_counter()
            for i in range(N * 100):
                identity(i)
            local_py = (time.perf_counter() - start) / (N * 100)
            # One evaluation per call, from the client: the round trip plus the call.
            start = time.perf_counter()
            for i in range(N // 3):
                client.evaluate(f"PyId[{i}]")
            per_eval = (time.perf_counter() - start) / (N // 3)
    finally:
        get_portal().call(service.aclose(), timeout=60)
    report("install.calls_per_s", 1 / installed, "calls/s")
    report("install.call_us", installed * 1e6, "us")
    report("install.overhead_vs_python_call_us", (installed - local_py) * 1e6, "us")
    report("install.overhead_vs_wl_call_us", (installed - local_wl) * 1e6, "us")
    report("install.local_python_call_us", local_py * 1e6, "us")
    report("install.evaluate_with_call_us", per_eval * 1e6, "us")


if __name__ == "__main__":
    main()
