"""Link round trip vs a raw asyncio length-prefixed ping-pong, on 127.0.0.1.

A 20-byte expression is put and its echo got back. Both servers run in their
own process; the clients run here. Reports the median single-client round
trip (asyncio and blocking API) and the total round trips per second of 32
concurrent clients, each with its ratio to the raw peer measured in this run.
Target (issue 2): at most 1.5x the raw round trip; 32 clients within 1.5x of
the raw server's round trips per second.

    .venv/bin/python bench/link_roundtrip.py
"""

from __future__ import annotations

import asyncio
import statistics
import struct
import time

from harness import cpu_placement, peer_process, report
from wolframclient.language import wl

import linkserver
import linkserver.aio
from linkserver import wxf

EXPR = wl.f("abcdefghijk")  # 20 bytes of WXF
ROUNDS = 3000
CLIENTS = 32
PER_CLIENT = 300


class RawClient(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= 4:
            (n,) = struct.unpack_from("<I", self.buf)
            if len(self.buf) >= 4 + n and self.waiter is not None:
                msg = bytes(self.buf[4 : 4 + n])
                del self.buf[: 4 + n]
                self.waiter.set_result(msg)

    async def round_trip(self, payload: bytes) -> bytes:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(struct.pack("<I", len(payload)) + payload)  # type: ignore[attr-defined]
        return await self.waiter


async def raw_client(port: int) -> RawClient:
    _, proto = await asyncio.get_running_loop().create_connection(RawClient, "127.0.0.1", port)
    return proto


async def raw_single(port: int) -> float:
    # Bytes only: the raw peer pays for no codec, so the ratio includes ours.
    client = await raw_client(port)
    payload = wxf.dumps(EXPR)
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        await client.round_trip(payload)
        samples.append(time.perf_counter() - t)
    client.transport.close()
    return statistics.median(samples)


async def link_single(port: int) -> float:
    link = await linkserver.aio.connect(f"{port}@127.0.0.1")
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        await link.put(EXPR)
        await link.get()
        samples.append(time.perf_counter() - t)
    await link.aclose()
    return statistics.median(samples)


def blocking_single(port: int) -> float:
    link = linkserver.connect(f"{port}@127.0.0.1")
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        link.put(EXPR)
        link.get()
        samples.append(time.perf_counter() - t)
    link.close()
    return statistics.median(samples)


async def raw_concurrent(port: int) -> float:
    clients = [await raw_client(port) for _ in range(CLIENTS)]

    payload = wxf.dumps(EXPR)

    async def run(c: RawClient) -> None:
        for _ in range(PER_CLIENT):
            await c.round_trip(payload)

    t = time.perf_counter()
    await asyncio.gather(*(run(c) for c in clients))
    elapsed = time.perf_counter() - t
    for c in clients:
        c.transport.close()
    return CLIENTS * PER_CLIENT / elapsed


async def link_concurrent(port: int) -> float:
    links = [await linkserver.aio.connect(f"{port}@127.0.0.1") for _ in range(CLIENTS)]

    async def run(link: linkserver.aio.Link) -> None:
        for _ in range(PER_CLIENT):
            await link.put(EXPR)
            await link.get()

    t = time.perf_counter()
    await asyncio.gather(*(run(link) for link in links))
    elapsed = time.perf_counter() - t
    for link in links:
        await link.aclose()
    return CLIENTS * PER_CLIENT / elapsed


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}; expression {len(wxf.dumps(EXPR))} bytes of WXF")
    with peer_process("raw") as (_, raw_port), peer_process("link") as (_, link_port):
        raw, lnk = int(raw_port), int(link_port)
        for attempt in range(2):  # first pass warms both peers
            raw_rt = asyncio.run(raw_single(raw))
            link_rt = asyncio.run(link_single(lnk))
            block_rt = blocking_single(lnk)
        report("roundtrip.raw", raw_rt * 1e6, "us")
        report("roundtrip.link.aio", link_rt * 1e6, "us")
        report("roundtrip.link.blocking", block_rt * 1e6, "us")
        report("roundtrip.link.aio.ratio", link_rt / raw_rt, "x")
        report("roundtrip.link.blocking.ratio", block_rt / raw_rt, "x")
        raw_tp = asyncio.run(raw_concurrent(raw))
        link_tp = asyncio.run(link_concurrent(lnk))
        report("concurrent32.raw", raw_tp, "round trips/s")
        report("concurrent32.link", link_tp, "round trips/s")
        report("concurrent32.link.ratio", raw_tp / link_tp, "x (raw/link)")


if __name__ == "__main__":
    main()
