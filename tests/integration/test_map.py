"""client.map through a real pool server: order, failures, abort, limits, work distribution."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLSymbol

import linkserver
from linkserver import aio
from linkserver.config import PoolConfig, ServerConfig
from linkserver.portal import get_portal
from linkserver.service import KernelService
from tests.integration.test_service import Terminal
from tests.timeouts import TIMEOUT, wait_until

KERNEL_TIMEOUT = TIMEOUT * 6  # a kernel template takes seconds to load Mathics3
MAX = 2  # kernels of the "iso" pool

#: An item that runs until it is aborted (the tests never wait for it to end).
FOREVER = "Pause[600]"


@pytest.fixture(scope="module")
def service() -> Iterator[KernelService]:
    config = ServerConfig((
        PoolConfig("iso", "pool", min=MAX, max=MAX, wait=KERNEL_TIMEOUT),
        PoolConfig("calc", "shared"),
    ), "iso")
    started = KernelService(0, "127.0.0.1", config=config)
    get_portal().call(started.start(), timeout=KERNEL_TIMEOUT)
    yield started
    get_portal().call(started.aclose(), timeout=KERNEL_TIMEOUT)


@pytest.fixture
def client(service: KernelService) -> Iterator[linkserver.Client]:
    with linkserver.Client(service.name) as c:
        yield c
    released(service)


def released(service: KernelService) -> None:
    """Every link the map opened was closed: the pool serves only what is left."""
    broker: Any = service.pools["iso"].broker
    assert wait_until(lambda: get_portal().run_sync(broker.statistics).serving <= 1,
                      KERNEL_TIMEOUT)


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread; its value lands in the list (a hang fails the join)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def test_results_come_in_the_items_order(client: linkserver.Client) -> None:
    items = list(range(40))
    assert client.map("#^2 &", items, kernels=MAX, timeout=KERNEL_TIMEOUT) == [i * i for i in items]
    # the same with a Python function, a WL function expression, and items as expressions
    assert client.map(lambda i: f"{i} + 1", items[:5]) == [1, 2, 3, 4, 5]
    assert client.map(wl.Function(wl.Times(2, wl.Slot(1))), items[:3]) == [0, 2, 4]
    assert client.map(None, ["1+1", "2+2"]) == [2, 4]
    assert client.map("StringLength", ["ab", "abc"]) == [2, 3]  # str items are strings
    assert client.map("#&", []) == []
    # Null is a result like any other, not an item left unevaluated.
    assert client.map("(Pause[0.01]; Null) &", range(3), kernels=MAX) == [None, None, None]


def test_each_failing_item_is_its_own_result(client: linkserver.Client) -> None:
    def build(i: int) -> str:
        if i == 5:
            raise ValueError("no expression for five")
        return f"If[{i} == 3, $Failed, {i}]"

    results = client.map(build, range(8), kernels=MAX)
    assert [r for i, r in enumerate(results) if i not in (3, 5)] == [0, 1, 2, 4, 6, 7]
    failed, unbuilt = results[3], results[5]
    assert isinstance(failed, linkserver.MapItemError) and failed.index == 3
    assert failed.value == WLSymbol("$Failed") and failed.answer is not None
    assert isinstance(unbuilt, linkserver.MapItemError) and unbuilt.item == 5
    assert "no expression for five" in str(unbuilt) and unbuilt.answer is None
    # A message alone is no failure; wrap=True shows it.
    value, = client.map("1/# &", [0])
    assert value == wl.DirectedInfinity()  # ComplexInfinity, in FullForm
    wrapped, = client.map("1/# &", [0], wrap=True)
    assert wrapped.messages_name == ["Power::infy"] and not wrapped.success


def test_each_kernel_takes_a_share(client: linkserver.Client) -> None:
    pids = client.map("(Pause[0.05]; $ProcessID) &", range(12), kernels=MAX)
    assert len(set(pids)) == MAX  # every kernel of the map took items


@pytest.mark.parametrize("ahead", [0, 1])
def test_a_slow_item_holds_back_only_what_waits_behind_it(
    client: linkserver.Client, ahead: int
) -> None:
    # Item 0 runs until the map is aborted; the others are quick. With work stealing
    # the other kernel takes every item but the ones sent to item 0's kernel (ahead
    # of it), and the abort comes once they are done: no timing decides anything.
    total = 12
    stuck = 1 + ahead  # item 0 and what waits behind it

    def progress(done: int, _total: int) -> None:
        if done == total - stuck:
            client.abort()

    thread, out = in_thread(lambda: client.map(
        f"If[# == 0, {FOREVER}; #, $ProcessID] &", range(total), kernels=MAX, ahead=ahead,
        on_progress=progress))
    thread.join(KERNEL_TIMEOUT)
    assert not thread.is_alive(), "the abort did not end the map"
    results = out[0]
    assert len({results[i] for i in range(stuck, total)}) == 1  # one kernel did the rest
    for result in results[:stuck]:
        assert isinstance(result, linkserver.MapItemError)
        assert result.value == WLSymbol("$Aborted")


def test_abort_stops_the_rest_and_aborts_running_items(
    service: KernelService, client: linkserver.Client
) -> None:
    seen: list[int] = []

    def progress(done: int, _total: int) -> None:
        seen.append(done)
        if done == 2:
            client.abort()

    thread, out = in_thread(lambda: client.map(
        f"If[# < 2, #, {FOREVER}; #] &", range(10), kernels=MAX, on_progress=progress))
    thread.join(KERNEL_TIMEOUT)
    assert not thread.is_alive(), "the abort did not end the map"
    results = out[0]
    assert results[:2] == [0, 1]
    rest = results[2:]
    assert all(isinstance(r, linkserver.MapItemError) for r in rest)
    aborted = [r for r in rest if r.value == WLSymbol("$Aborted")]
    untouched = [r for r in rest if "not evaluated" in str(r)]
    assert aborted and untouched and len(aborted) + len(untouched) == len(rest)
    assert seen[:2] == [1, 2]
    released(service)
    # The pool is whole again: a new map gets its kernels.
    assert client.map("#&", range(4), kernels=MAX) == [0, 1, 2, 3]


def test_cancelling_the_asyncio_map_aborts_it(service: KernelService) -> None:
    async def scenario() -> None:
        async with aio.Client(service.name) as client:
            two = asyncio.Event()

            def progress(done: int, _total: int) -> None:
                if done == 2:
                    two.set()

            task = asyncio.ensure_future(client.map(
                f"If[# < 2, #, {FOREVER}; #] &", range(10), kernels=MAX, on_progress=progress))
            await asyncio.wait_for(two.wait(), KERNEL_TIMEOUT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, KERNEL_TIMEOUT)
            assert await client.map("# + 1 &", [1, 2], kernels=MAX) == [2, 3]

    get_portal().call(scenario(), timeout=KERNEL_TIMEOUT * 2)
    released(service)


def test_more_kernels_than_the_pool_has_is_refused_at_once(client: linkserver.Client) -> None:
    with pytest.raises(linkserver.MapError, match=f"at most {MAX} kernels") as info:
        client.map("#&", range(5), kernels=MAX + 1)
    assert info.value.code == "map-too-many-kernels"
    with pytest.raises(linkserver.MapError, match="shared"):
        client.map("#&", range(5), pool="calc", kernels=2)
    # A shared pool maps over its one kernel.
    assert client.map("#&", range(3), pool="calc") == [0, 1, 2]
    with pytest.raises(ValueError):
        client.map("#&", range(3), kernels=0)


def test_setup_defines_what_the_items_use(client: linkserver.Client) -> None:
    assert client.map("mapHelper[#] &", range(4), setup="mapHelper[x_] := x + 100",
                      kernels=MAX) == [100, 101, 102, 103]
    with pytest.raises(linkserver.MapError, match="setup code failed"):
        client.map("#&", range(4), setup="1/0", kernels=MAX)
    # The client's own kernel is not one of the map's: its definitions are not there.
    client.evaluate("mineOnly = 7")
    assert client.map("mineOnly &", [1]) == [wl.mineOnly]


def test_asyncio_twin_keeps_the_order(service: KernelService) -> None:
    async def scenario() -> list[Any]:
        async with aio.Client(service.name) as client:
            return await client.map("# * 3 &", range(20), kernels=MAX)

    assert get_portal().call(scenario(), timeout=KERNEL_TIMEOUT) == [3 * i for i in range(20)]


def run_cli(service: KernelService, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkserver", "map", "--name", service.name, *args],
        capture_output=True, text=True, timeout=KERNEL_TIMEOUT, input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def test_map_command_writes_results_in_order(service: KernelService) -> None:
    ok = run_cli(service, "#^2 &", "1", "2", "x+1", "--kernels", str(MAX))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "1\n4\n(1 + x)^2\n"  # InputForm, one line each
    assert ok.stderr == ""  # no progress bar: stderr is not a terminal
    ranged = run_cli(service, "# + 1 &", "--range", "3")
    assert ranged.stdout == "2\n3\n4\n"
    piped = run_cli(service, "StringJoin[#, \"!\"] &", "-", stdin='"a"\n\n"b"\n')
    assert piped.stdout == '"a!"\n"b!"\n'  # empty lines are no items


def test_map_command_exit_codes(service: KernelService) -> None:
    failing = run_cli(service, "If[# == 2, $Failed, #] &", "1", "2", "3")
    assert failing.returncode == 1
    assert failing.stdout == "1\n$Failed\n3\n"
    assert "item 2" in failing.stderr
    message = run_cli(service, "1/# &", "0", "1")
    assert message.returncode == 1 and message.stdout == "ComplexInfinity\n1\n"
    assert "Power::infy" in message.stderr
    too_many = run_cli(service, "#&", "1", "--kernels", str(MAX + 1))
    assert too_many.returncode == 2 and f"at most {MAX} kernels" in too_many.stderr
    assert "Traceback" not in too_many.stderr
    nobody = subprocess.run(
        [sys.executable, "-m", "linkserver", "map", "--name", "1@127.0.0.1", "#&", "1"],
        capture_output=True, text=True, timeout=KERNEL_TIMEOUT, stdin=subprocess.DEVNULL,
    )
    assert nobody.returncode == 3 and "connection refused" in nobody.stderr


def test_a_kernel_that_dies_gets_the_setup_again(client: linkserver.Client) -> None:
    # Quit[] ends a pool kernel: its item answers kerneldied, the pool puts a fresh
    # kernel behind the same link, and the map sends the setup again. The item that
    # was already waiting at the kernel ran on the fresh one before the setup could.
    results = client.map("If[# == 3, Quit[], {g[#], $ProcessID}] &", range(8), kernels=1,
                         setup="g[x_] := x + 100")
    died, early = results[3], results[4]
    assert isinstance(died, linkserver.MapItemError)
    assert "LinkServer::kerneldied" in died.answer.messages_name  # type: ignore[attr-defined]
    assert isinstance(early, linkserver.MapItemError) and "without the setup" in str(early)
    before = {pid for _, pid in results[:3]}
    after = {pid for _, pid in results[5:]}
    assert [value for value, _ in results[:3] + results[5:]] == [100, 101, 102, 105, 106, 107]
    assert len(before) == len(after) == 1 and before != after


def test_ctrl_c_at_a_terminal_aborts_the_map(service: KernelService) -> None:
    # On a terminal the command draws its progress bar; Ctrl-C there is a
    # KeyboardInterrupt in the blocking map, which closes the map's links (the
    # kernels' running items are aborted) before the command exits with 130.
    term = Terminal("map", "--name", service.name, f"If[# < 2, #, {FOREVER}; #] &",
                    "--range", "0,9")
    try:
        term.expect("/10")  # the bar is drawn: items are running
        term.type("\x03")
        term.expect("\x1b[K")  # the bar is wiped
        code = term.close()
    finally:
        term.proc.kill()
    assert code == 130, term.seen
