"""Accepting: 1,000 links connected and handshaken to one LinkServer.

The server runs in its own process and keeps every link idle; the clients
connect from here, 100 handshakes in flight at a time. Reports links per
second and the server's resident memory per idle link.
Target (issue 2): >= 1,000 links/s and <= 32 KB per idle link.

    .venv/bin/python bench/accept.py
"""

from __future__ import annotations

import asyncio
import resource
import time

from harness import cpu_placement, peer_process, report, rss_kib

import linkserver.aio

LINKS = 1000
IN_FLIGHT = 100


async def open_links(port: int) -> tuple[list[linkserver.aio.Link], float]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> linkserver.aio.Link:
        async with gate:
            return await linkserver.aio.connect(f"{port}@127.0.0.1", timeout=30)

    t = time.perf_counter()
    links = await asyncio.gather(*(one() for _ in range(LINKS)))
    return links, time.perf_counter() - t


async def run(port: int, pid: int) -> None:
    warm, _ = await open_links_n(port, 50)  # let the server reach its steady state
    for link in warm:
        await link.aclose()
    before = rss_kib(pid)
    links, elapsed = await open_links(port)
    await asyncio.sleep(0.5)  # let the server finish bookkeeping before reading its memory
    after = rss_kib(pid)
    report("accept.links_per_second", LINKS / elapsed, "links/s")
    report("accept.memory_per_idle_link", (after - before) * 1024 / LINKS / 1000, "KB")
    report("accept.server_rss", after / 1024, "MiB")
    await asyncio.gather(*(link.aclose() for link in links))


async def open_links_n(port: int, n: int) -> tuple[list[linkserver.aio.Link], float]:
    t = time.perf_counter()
    links = [await linkserver.aio.connect(f"{port}@127.0.0.1") for _ in range(n)]
    return links, time.perf_counter() - t


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * LINKS)), hard))
    print(f"# cpus allowed: {cpu_placement()}")
    with peer_process("idle") as (proc, port):
        asyncio.run(run(int(port), proc.pid))


if __name__ == "__main__":
    main()
