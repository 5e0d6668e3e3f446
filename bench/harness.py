"""What every benchmark script shares: peers in subprocesses, timing, output lines.

Each script prints ``name: value unit`` lines, and ``name.ratio: x`` lines
comparing linkserver with the peer measured in the same run. Absolute times
vary with CPU placement on these 2-core machines (see shared NOTES); ratios
measured side by side are what to compare between runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).parent


def report(name: str, value: float, unit: str) -> None:
    """Print one figure in the ``name: value unit`` form."""
    if abs(value) >= 100:
        text = f"{value:,.0f}".replace(",", "")
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.4g}"
    print(f"{name}: {text} {unit}", flush=True)


def median_time(fn: Callable[[], object], *, repeat: int = 5, number: int = 1) -> float:
    """Median seconds per call of ``fn`` over ``repeat`` runs of ``number`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


@contextmanager
def peer_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``bench/peers.py ARGS`` and yield it with the first line it prints (its port)."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "peers.py"), *args], stdout=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"peer {args} did not start")
        yield proc, line
    finally:
        proc.terminate()
        proc.wait(10)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_placement() -> str:
    """Which CPUs this process may run on (NOTES: placement changes round-trip times)."""
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
