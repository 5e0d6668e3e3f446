"""Pool throughput: 8 clients evaluating a 10 ms computation in a loop, 2 kernels.

Pool mode gives each connected client a kernel of its own, so 8 clients and
2 kernels can meet in two ways, both reported against the ideal of
2 kernels x 1/t:

* ``pool.held``: each client connects once and evaluates in a loop; two hold
  the kernels, the other six wait in the pool's queue (what the issue's
  wording describes: the kernels' own throughput behind the server).
* ``pool.turns``: clients take turns -- connect, evaluate 5 times, disconnect
  (the kernel is discarded and a fresh one forked, so no state leaks), come
  back. This adds the cost of replacing a kernel every 5 evaluations.

and, for comparison, a shared-mode kernel serving all 8 at once (ideal 1/t).
Target (issue 3): >= 80% of ideal.

    .venv/bin/python bench/pool_throughput.py
"""

from __future__ import annotations

import asyncio
import statistics
import time

from harness import cpu_placement, report
from wolframclient.language import wlexpr

import linkserver.aio
from linkserver.service import KernelService

CLIENTS = 8
DURATION = 15.0  # seconds of load per mode
PER_CONNECTION = 5  # evaluations before a pool client lets its kernel go


async def calibrate(name: str) -> tuple[str, float]:
    """Find a CPU-bound expression that takes about 10 ms in this kernel."""
    async with linkserver.aio.Client(name) as client:
        n = 100
        for _ in range(8):
            code = f"Do[Null, {{{n}}}]"
            samples = []
            for _ in range(5):
                t = time.perf_counter()
                await client.evaluate(wlexpr(code))
                samples.append(time.perf_counter() - t)
            took = statistics.median(samples)
            if 0.009 <= took <= 0.012:
                break
            n = max(1, int(n * 0.0105 / max(took, 1e-5)))
        return code, took


async def load(name: str, code: str, reconnect: bool) -> int:
    done = 0
    deadline = time.perf_counter() + DURATION

    async def client_loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            async with linkserver.aio.Client(name, timeout=600) as client:
                for _ in range(PER_CONNECTION if reconnect else 10**9):
                    if time.perf_counter() >= deadline:
                        return
                    await client.evaluate(wlexpr(code))
                    done += 1

    await asyncio.gather(*(client_loop() for _ in range(CLIENTS)))
    return done


async def run(mode: str, kernels: int, reconnect: bool = False) -> tuple[float, float, str]:
    service = KernelService(0, "127.0.0.1", mode=mode, pool_min=kernels, pool_max=kernels,
                            pool_wait=600)
    await service.start()
    try:
        code, took = await calibrate(service.name)
        t = time.perf_counter()
        done = await load(service.name, code, reconnect=reconnect)
        rate = done / (time.perf_counter() - t)
    finally:
        await service.aclose()
    return rate, took, code


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}; {CLIENTS} clients, {DURATION:g} s per mode")
    rate, took, code = asyncio.run(run("pool", 2))
    report("pool.evaluation_time", took * 1000, f"ms ({code})")
    report("pool.held.throughput", rate, "evaluations/s")
    report("pool.held.throughput.of_ideal", rate / (2 / took) * 100, "% of 2 kernels x 1/t")
    rate, took, code = asyncio.run(run("pool", 2, reconnect=True))
    report("pool.turns.throughput", rate, "evaluations/s")
    report("pool.turns.throughput.of_ideal", rate / (2 / took) * 100, "% of 2 kernels x 1/t")
    rate, took, _ = asyncio.run(run("shared", 1))
    report("shared.throughput", rate, "evaluations/s")
    report("shared.throughput.of_ideal", rate / (1 / took) * 100, "% of 1 kernel x 1/t")


if __name__ == "__main__":
    main()
