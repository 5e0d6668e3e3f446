"""Round trip of ``1+1`` through the server vs the same evaluation in-process.

Three figures, measured in this run: ``session.evaluate("1+1")`` in
Mathics3 in this process (the kernel's own cost), a raw asyncio TCP
ping-pong of 20 bytes (the network's cost), and ``EvaluatePacket[1+1]``
through a shared-mode server to its kernel and back. Target (issue 3): the
server's overhead -- round trip minus in-process evaluation -- at most 3x
one raw round trip. Also: time from starting the service to the first
answered evaluation.

    .venv/bin/python bench/kernel_roundtrip.py
"""

from __future__ import annotations

import asyncio
import statistics
import time

from harness import cpu_placement, peer_process, report
from link_roundtrip import raw_single
from wolframclient.language import wl

import linkserver.aio
from linkserver.service import KernelService

ROUNDS = 2000


def mathics_in_process() -> float:
    from mathics.core.load_builtin import import_and_load_builtins
    from mathics.session import MathicsSession

    import_and_load_builtins()
    session = MathicsSession()
    for _ in range(200):
        session.evaluate("1+1")
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        session.evaluate("1+1")
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


async def through_server() -> tuple[float, float]:
    t0 = time.perf_counter()
    service = KernelService(0, "127.0.0.1", mode="shared")
    await service.start()
    link = await linkserver.aio.connect(service.name)
    await link.put(wl.EvaluatePacket(wl.Plus(1, 1)))
    await link.get()
    first = time.perf_counter() - t0
    packet = wl.EvaluatePacket(wl.Plus(1, 1))
    for _ in range(200):
        await link.put(packet)
        await link.get()
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        await link.put(packet)
        await link.get()
        samples.append(time.perf_counter() - t)
    await link.aclose()
    await service.aclose()
    return statistics.median(samples), first


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}; kernel and server run in separate processes")
    with peer_process("raw") as (_, port):
        raw = asyncio.run(raw_single(int(port)))
    server, first = asyncio.run(through_server())
    local = mathics_in_process()
    report("kernel.evaluate_1plus1.in_process", local * 1e6, "us")
    report("kernel.roundtrip_1plus1.server", server * 1e6, "us")
    report("kernel.roundtrip.raw_tcp", raw * 1e6, "us")
    report("kernel.server_overhead", (server - local) * 1e6, "us")
    report("kernel.server_overhead.ratio", (server - local) / raw, "x raw round trip")
    report("kernel.start_to_first_answer", first, "s")


if __name__ == "__main__":
    main()
