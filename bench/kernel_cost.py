"""What a kernel costs: time to a ready kernel, and memory per idle kernel.

Kernels fork from a template (zygote) that loaded Mathics3 once. Reports the
template's start time, the median time from asking for a kernel to its
KernelReady (target: 200 ms), and each idle kernel's USS and PSS (target:
USS at most 60 MB), with a kernel started from scratch as the peer.
``ready.zygote`` asks for kernels back to back (a pool filling up: the
template's spare fork, its seed, serves the first only); ``ready.seeded`` asks
with a pause between (a pool replacing a kernel, a new client: the seed is
ready each time). ``seed_uss`` is what the waiting seed costs.

    .venv/bin/python bench/kernel_cost.py
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from harness import cpu_placement, report

from linkserver.launcher import KernelSpec, LocalLauncher

KERNELS = 4


def memory_kib(pid: int) -> tuple[int, int]:
    """(USS, PSS) of a process in KiB, from smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return uss, fields.get("Pss", 0)


async def measure(
    zygote: bool,
) -> tuple[float, list[float], list[float], list[tuple[int, int]], tuple[int, int]]:
    launcher = LocalLauncher(KernelSpec(), zygote=zygote)
    t = time.perf_counter()
    await launcher.start()
    template = time.perf_counter() - t
    times, seeded, handles = [], [], []
    for _ in range(KERNELS if zygote else 1):
        t = time.perf_counter()
        handles.append(await launcher.launch())
        times.append(time.perf_counter() - t)
    for _ in range(KERNELS if zygote else 0):
        await asyncio.sleep(0.2)  # the template forks its next seed meanwhile
        t = time.perf_counter()
        handles.append(await launcher.launch())
        seeded.append(time.perf_counter() - t)
    await asyncio.sleep(1.0)  # let them settle idle
    memory = [memory_kib(h.pid) for h in handles]
    seed = launcher._zygote.seed_pid if launcher._zygote is not None else 0
    seed_memory = memory_kib(seed) if seed else (0, 0)
    await launcher.aclose()
    return template, times, seeded, memory, seed_memory


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}")
    template, times, seeded, memory, seed_memory = asyncio.run(measure(zygote=True))
    _, fresh_times, _, fresh_memory, _ = asyncio.run(measure(zygote=False))
    report("kernel.template_start", template, "s")
    report("kernel.ready.zygote", statistics.median(times) * 1000, "ms")
    report("kernel.ready.seeded", statistics.median(seeded) * 1000, "ms")
    report("kernel.ready.fresh", fresh_times[0] * 1000, "ms")
    report("kernel.ready.ratio", fresh_times[0] / statistics.median(times), "x (fresh/zygote)")
    report("kernel.idle_uss.zygote", statistics.median(m[0] for m in memory) / 1024, "MB")
    report("kernel.idle_pss.zygote", statistics.median(m[1] for m in memory) / 1024, "MB")
    report("kernel.seed_uss", seed_memory[0] / 1024, "MB")
    report("kernel.idle_uss.fresh", fresh_memory[0][0] / 1024, "MB")
    report("kernel.idle_pss.fresh", fresh_memory[0][1] / 1024, "MB")


if __name__ == "__main__":
    main()
