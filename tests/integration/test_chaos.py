"""Chaos: many clients, many evaluations, kernels killed at random with SIGKILL.

The promise under test is docs/protocol.md §8.3: every request the server
accepts gets exactly one answer. Here the answer to request ``i`` of client
``k`` is either its own, unique value ``k*100000 + i`` or the documented
``kerneldied`` failure -- never lost (every client gets as many answers as it
asked), never duplicated (a sentinel request at the end must be answered next),
never another client's (values are unique per client and request).

A shared-mode and a pool-mode service run side by side in one event loop, with
eight clients each; a killer task SIGKILLs a random kernel process of either
service every so often. Afterwards both services must be healthy: a fresh
client evaluates, status shows the expected kernels, the kernel processes alive
are exactly the ones the server knows about, and the descriptors of this
process (the server's) are back near where they were.

Every wait is bounded by :data:`tests.timeouts.TIMEOUT`; nothing asserts time.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver import aio
from linkserver.aio.link import Link
from linkserver.service import KernelService
from linkserver.status import STATUS_MESSAGE
from tests.procs import alive, children, open_fds
from tests.timeouts import TIMEOUT
from tests.timeouts import eventually as poll_until

pytestmark = pytest.mark.slow

KERNEL_TIMEOUT = TIMEOUT * 6  # starting a kernel template takes seconds
CLIENTS_PER_MODE = 8
REQUESTS_PER_CLIENT = 125  # 2 modes x 8 clients x 125 = 2,000 evaluations
WINDOW = 4  # requests a client keeps in flight at once (they queue in the server)
KILL_PAUSE = (0.01, 0.08)  # seconds between two kills, drawn at random
POOL_MIN = 2

FAILED = wl.ReturnPacket(WLSymbol("$Failed"))
DIED = wl.MessagePacket(wl.LinkServer, "kerneldied")


def expected(client: int, i: int) -> int:
    return client * 100_000 + i


def request(client: int, i: int) -> object:
    # Plus[Times[k, 100000], i]: the kernel has to evaluate it; the value is unique.
    return wl.EvaluatePacket(wl.Plus(wl.Times(client, 100_000), i))





async def eventually(condition: Callable[[], bool], timeout: float = KERNEL_TIMEOUT) -> bool:
    """Poll ``condition`` without blocking the loop (the server runs on it)."""
    return await poll_until(condition, timeout)


def kernel_pids(service: KernelService) -> set[int]:
    return {handle.pid for handle in service.launcher.handles()}


@dataclass
class Tally:
    results: int = 0
    died: int = 0
    seen_pids: set[int] = field(default_factory=set)
    kills: int = 0


async def answer_of(link: Link) -> list[object]:
    """Every packet up to and including the ReturnPacket that ends one answer."""
    packets: list[object] = []
    while True:
        packet = await link.get(KERNEL_TIMEOUT)
        packets.append(packet)
        if isinstance(packet, WLFunction) and packet.head == WLSymbol("ReturnPacket"):
            return packets


def judge(packets: list[object], value: int, tally: Tally, where: str) -> bool:
    """True for the right result, False for the kerneldied failure; anything else fails."""
    if packets == [wl.ReturnPacket(value)]:
        tally.results += 1
        return True
    assert len(packets) == 3 and packets[0] == DIED and packets[2] == FAILED, (where, packets)
    text = packets[1]
    assert isinstance(text, WLFunction) and text.head == WLSymbol("TextPacket"), (where, packets)
    assert str(text.args[0]).startswith("LinkServer::kerneldied: "), (where, packets)
    tally.died += 1
    return False


async def client(name: str, k: int, tally: Tally) -> None:
    """Send REQUESTS_PER_CLIENT requests, WINDOW at a time; check every answer in order."""
    link = await aio.connect(name, TIMEOUT)
    try:
        sent = answered = 0
        while answered < REQUESTS_PER_CLIENT:
            while sent < REQUESTS_PER_CLIENT and sent - answered < WINDOW:
                await link.put(request(k, sent))
                sent += 1
            # Answers come in the order of the requests (§8.1): the next one is `answered`'s.
            judge(await answer_of(link), expected(k, answered), tally, f"client {k} #{answered}")
            answered += 1
        # Nothing more may come for those requests: the next packet answers the sentinel.
        # (Retried while the killer is still at work, since the sentinel may be hit too.)
        while True:
            await link.put(request(k, 99_999))
            if judge(await answer_of(link), expected(k, 99_999), Tally(), f"client {k} end"):
                break
        assert not link.ready(), f"client {k} got packets nobody asked for"
    finally:
        await link.aclose()


async def killer(services: list[KernelService], stop: asyncio.Event, tally: Tally) -> None:
    rng = random.Random(31415)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(*KILL_PAUSE))
        except TimeoutError:
            pass
        if stop.is_set():
            return
        pids = sorted(set().union(*(kernel_pids(s) for s in services)))
        if not pids:
            continue  # every kernel is being replaced right now
        pid = rng.choice(pids)
        tally.seen_pids.add(pid)
        try:
            # A crash, not a polite stop: the server learns of it only from the broken link.
            os.kill(pid, signal.SIGKILL)
            tally.kills += 1
        except ProcessLookupError:
            pass


async def status_of(name: str) -> dict[str, object]:
    async with await aio.connect(name, TIMEOUT) as link:
        await link.send_message(STATUS_MESSAGE)
        answer = await link.get(TIMEOUT)
        assert isinstance(answer, WLFunction) and answer.head == WLSymbol("LinkServerStatus")
        info = answer.args[0]
        assert isinstance(info, dict)
        return info


async def with_services(body: Callable[[KernelService, KernelService], Awaitable[None]]) -> None:
    shared = KernelService(0, "127.0.0.1", mode="shared")
    pool = KernelService(0, "127.0.0.1", mode="pool", pool_min=POOL_MIN,
                         pool_max=CLIENTS_PER_MODE + 1, pool_wait=KERNEL_TIMEOUT)
    await asyncio.wait_for(asyncio.gather(shared.start(), pool.start()), KERNEL_TIMEOUT)
    templates = [s.launcher._zygote.pid for s in (shared, pool)]  # type: ignore[union-attr]
    try:
        await body(shared, pool)
    finally:
        await asyncio.wait_for(shared.aclose(), KERNEL_TIMEOUT)
        await asyncio.wait_for(pool.aclose(), KERNEL_TIMEOUT)
    # Closing a service leaves no kernel and no template behind.
    for pid in templates:
        assert await eventually(lambda pid=pid: not alive(pid)), f"template {pid} still runs"


def test_kernels_killed_at_random_every_request_answered_once() -> None:
    async def body(shared: KernelService, pool: KernelService) -> None:
        services = [shared, pool]
        # Warm up both (a first evaluation loads code paths), then take the baseline.
        for service in services:
            async with aio.Client(service.name) as warm:
                assert await warm.evaluate(wl.Plus(1, 1), timeout=KERNEL_TIMEOUT) == 2
        assert await eventually(lambda: pool.broker.statistics().kernels == POOL_MIN
                                and pool.broker.statistics().launching == 0)
        baseline = open_fds()
        first_pids = kernel_pids(shared) | kernel_pids(pool)

        tally, stop = Tally(), asyncio.Event()
        chaos = asyncio.ensure_future(killer(services, stop, tally))
        clients = [client(service.name, k, tally)
                   for service, ks in ((shared, range(0, 8)), (pool, range(8, 16)))
                   for k in ks]
        try:
            await asyncio.wait_for(asyncio.gather(*clients), KERNEL_TIMEOUT * 10)
        finally:
            stop.set()
            await asyncio.wait_for(chaos, TIMEOUT)

        print(f"chaos: {tally.results} results, {tally.died} kerneldied, {tally.kills} kills")
        total = 2 * CLIENTS_PER_MODE * REQUESTS_PER_CLIENT
        assert tally.results + tally.died == total  # none lost, none twice
        assert tally.kills > 0
        assert tally.died > 0, "no kill hit a running request; the test proved nothing"
        assert tally.results > total // 2  # kills are rare next to evaluations

        # The last kill may still be on its way: once the server has seen every killed
        # kernel's link end (a request sent before that is answered `kerneldied`, rightly),
        # it must be healthy. A fresh client is served by each service...
        assert await eventually(
            lambda: not tally.seen_pids & (kernel_pids(shared) | kernel_pids(pool)))
        for service in services:
            async with aio.Client(service.name) as fresh:
                assert await fresh.evaluate(wl.Plus(20, 22), timeout=KERNEL_TIMEOUT) == 42
        # ...status shows the kernels each should have...
        assert await eventually(lambda: shared.broker.statistics().kernels == 1)
        assert (await status_of(shared.name))["kernels"] == 1
        assert await eventually(lambda: pool.broker.statistics() is not None
                                and pool.broker.statistics().serving == 0
                                and pool.broker.statistics().launching == 0
                                and pool.broker.statistics().kernels == POOL_MIN)
        info = await status_of(pool.name)
        assert info["kernels"] == POOL_MIN and info["serving"] == 0
        # ...the kernel processes alive are exactly those the server holds (none leaked),
        # besides the template's one spare fork (its seed, not a kernel yet)...
        for service in services:
            zygote = service.launcher._zygote  # type: ignore[union-attr]
            assert await eventually(
                lambda s=service, z=zygote: children(z.pid) - {z.seed_pid} == kernel_pids(s)), (
                children(zygote.pid), zygote.seed_pid, kernel_pids(service))
        killed = tally.seen_pids | first_pids
        gone = killed - kernel_pids(shared) - kernel_pids(pool)
        assert await eventually(lambda: not any(alive(pid) for pid in gone)), (
            "kernels outlived their links", [pid for pid in gone if alive(pid)])
        # ...and every connection and kernel link of the chaos is closed again.
        assert await eventually(lambda: open_fds() <= baseline + 2), (open_fds(), baseline)

    asyncio.run(with_services(body))
