"""wl/LinkServerClient.wl run for real: a kernel of server A evaluates on server B.

No stand-ins: server A's Mathics3 kernel loads the package with ``Get`` and uses
linkserver's own Wolfram Language built-ins (``SocketConnect``, ``BinarySerialize``,
``CheckAbort``, ...) to reach server B, which asks for a key. The test talks to A
as any client does, and to B directly to see what A's evaluations did there.
Both servers are shared-mode, so every client of A sees the package's
connection ``c`` and every client of B sees B's ``x``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLFunction, WLSymbol

import linkserver
from linkserver.portal import get_portal
from linkserver.service import KernelService
from tests.packets import collect
from tests.procs import free_port
from tests.timeouts import TIMEOUT

pytest.importorskip("mathics")

PACKAGE = Path(__file__).resolve().parents[2] / "wl" / "LinkServerClient.wl"
KEY = "kernel-to-kernel key, 32 bytes.."
KERNEL_TIMEOUT = TIMEOUT * 6  # kernels take seconds to load Mathics3
ABORTED = WLSymbol("$Aborted")
FAILED = WLSymbol("$Failed")

pytestmark = pytest.mark.slow


def start_services(*services: KernelService) -> None:
    async def start_all() -> None:
        await asyncio.gather(*(s.start() for s in services))

    get_portal().call(start_all(), timeout=KERNEL_TIMEOUT * 2)


def stop_services(*services: KernelService) -> None:
    for service in services:
        get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[KernelService, KernelService]]:
    """(A, B): A with no key, B asking for KEY."""
    a = KernelService(0, "127.0.0.1", mode="shared")
    b = KernelService(0, "127.0.0.1", mode="shared",
                      settings=linkserver.LinkSettings(keys=(("admin", KEY.encode()),)))
    start_services(a, b)
    yield a, b
    stop_services(a, b)


def port(service: KernelService) -> int:
    return int(service.name.split("@")[0])


class A:
    """A link to server A and what its answers hold."""

    def __init__(self, link: linkserver.Link) -> None:
        self.link = link

    def put(self, code: str) -> None:
        self.link.put(wl.EvaluatePacket(wlexpr(code)))

    def run(self, code: str) -> list[Any]:
        """Every packet of the answer to ``code``, the ReturnPacket last."""
        self.put(code)
        return collect(self.link, "ReturnPacket", KERNEL_TIMEOUT)

    def value(self, code: str) -> Any:
        *side, last = self.run(code)
        assert side == [], side
        return last.args[0]


def messages(packets: list[Any]) -> list[str]:
    """``sym::tag`` of each MessagePacket (the symbol without its context)."""
    return [f"{m.args[0].name.rpartition('`')[2]}::{m.args[1]}"
            for m in packets if isinstance(m, WLFunction) and m.head == WLSymbol("MessagePacket")]


def texts(packets: list[Any]) -> list[str]:
    return [t.args[0] for t in packets
            if isinstance(t, WLFunction) and t.head == WLSymbol("TextPacket")]


@pytest.fixture(scope="module")
def a(servers: tuple[KernelService, KernelService]) -> Iterator[A]:
    """A's kernel with the package loaded and c connected to B."""
    server_a, server_b = servers
    with linkserver.connect(server_a.name, KERNEL_TIMEOUT) as link:
        kernel = A(link)
        assert kernel.run(f"Get[{json.dumps(str(PACKAGE))}]")[-1] == wl.ReturnPacket(None)
        kernel.value(f'c = LinkServerConnect["{port(server_b)}@127.0.0.1", "Key" -> "{KEY}"]')
        assert kernel.value('c["Open"]') is True
        yield kernel


def on_b(servers: tuple[KernelService, KernelService], code: str) -> Any:
    with linkserver.Client(servers[1].name, key=KEY, timeout=KERNEL_TIMEOUT) as client:
        return client.evaluate(code)


# ------------------------------------------------------------ connect and evaluate


def test_a_kernel_evaluates_on_another_server(
    a: A, servers: tuple[KernelService, KernelService]
) -> None:
    assert a.value("LinkServerEvaluate[c, x = 6*7]") == 42
    assert on_b(servers, "x") == 42  # set on B ...
    assert a.value("{ValueQ[x], LinkServerEvaluate[c, x + 1]}") == (False, 43)  # ... not on A
    assert a.value('c["LinkID"]') == a.value('c["LinkID"]')
    assert len(a.value('c["LinkID"]')) == 32


def test_print_and_messages_of_the_remote_evaluation_come_here(a: A) -> None:
    packets = a.run('LinkServerEvaluate[c, Print["on b"]; 1/0]')
    assert texts(packets)[0] == "on b"
    assert messages(packets) == ["LinkServerEvaluate::remote"]
    assert "Power::infy" in texts(packets)[1]
    assert packets[-1] == wl.ReturnPacket(wl.DirectedInfinity())


def test_input_on_the_remote_kernel_is_asked_of_this_client(a: A) -> None:
    # B's Input sends InputPacket to A's package, whose InputString asks A's client.
    a.put('LinkServerEvaluate[c, 6 * Input["n? "]]')
    assert collect(a.link, "InputStringPacket", KERNEL_TIMEOUT) == [wl.InputStringPacket("n? ")]
    a.link.put(wl.EnterTextPacket("7"))
    assert collect(a.link, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(42)]


def test_connect_with_the_servers_connection_file(
    a: A, servers: tuple[KernelService, KernelService], tmp_path: Path
) -> None:
    info = {"address": f"{port(servers[1])}@127.0.0.1", "key": KEY, "tls": False}
    path = tmp_path / "server-b.json"
    path.write_text(json.dumps(info))
    assert a.value(f"c2 = LinkServerConnect[Import[{json.dumps(str(path))}, \"RawJSON\"]]; "
                   "{LinkServerEvaluate[c2, 2 + 3], LinkServerClose[c2], c2[\"Open\"]}") == (
        5, None, False)


def test_connect_failures_say_why(a: A, servers: tuple[KernelService, KernelService]) -> None:
    server_a, server_b = servers
    wrong = a.run(f'LinkServerConnect["{port(server_b)}@127.0.0.1", "Key" -> "not the key"]')
    assert messages(wrong) == ["LinkServerConnect::auth"] and wrong[-1] == wl.ReturnPacket(FAILED)
    nokey = a.run(f'LinkServerConnect["{port(server_b)}@127.0.0.1"]')
    assert messages(nokey) == ["LinkServerConnect::needkey"]
    nobody = a.run(f'LinkServerConnect["{free_port()}@127.0.0.1"]')
    assert messages(nobody) == ["LinkServerConnect::connect"]
    # A asks for no key: a client that holds one refuses a server that cannot prove it
    unproven = a.run(f'LinkServerConnect["{port(server_a)}@127.0.0.1", "Key" -> "{KEY}"]')
    assert messages(unproven) == ["LinkServerConnect::auth"]
    assert "did not ask for the key" in texts(unproven)[0]


# ------------------------------------------------------------ abort


def test_timeout_option_aborts_the_remote_evaluation(a: A) -> None:
    packets = a.run('LinkServerEvaluate[c, While[True, 1], "Timeout" -> 1]')
    assert messages(packets) == ["LinkServerEvaluate::timeout"]
    assert packets[-1] == wl.ReturnPacket(ABORTED)
    assert a.value("LinkServerEvaluate[c, 2 + 2]") == 4


def test_aborting_here_aborts_there(a: A, servers: tuple[KernelService, KernelService]) -> None:
    """ABORT of A's request: the package's CheckAbort sends ABORT to B and reads B's $Aborted."""
    a.put('LinkServerEvaluate[c, Print["looping"]; While[True, 1]]')
    assert collect(a.link, "TextPacket", KERNEL_TIMEOUT) == [wl.TextPacket("looping")]
    a.link.abort()
    assert collect(a.link, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(ABORTED)]
    # B's loop stopped (B is shared: it would not answer otherwise) ...
    assert on_b(servers, "1 + 1") == 2
    # ... and the link is in step: the next answer is the next request's
    assert a.value("LinkServerEvaluate[c, 3 + 3]") == 6


def test_link_server_abort_from_another_client(
    a: A, servers: tuple[KernelService, KernelService]
) -> None:
    """LinkServerAbort[c], asked preemptively by a second client of A while c waits."""
    a.put('LinkServerEvaluate[c, Print["waiting"]; While[True, 1]]')
    assert collect(a.link, "TextPacket", KERNEL_TIMEOUT) == [wl.TextPacket("waiting")]
    with linkserver.Client(servers[0].name, timeout=KERNEL_TIMEOUT) as other:
        assert other.evaluate("LinkServerAbort[c]", preemptive=True) is None
    assert collect(a.link, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(ABORTED)]
    assert a.value("LinkServerEvaluate[c, 4 + 4]") == 8


# ------------------------------------------------------------ close


def test_close_ends_the_link(a: A, servers: tuple[KernelService, KernelService]) -> None:
    a.value(f'c3 = LinkServerConnect["{port(servers[1])}@127.0.0.1", "Key" -> "{KEY}"]')
    sock = a.value('c3["Socket"][[1]]')
    assert a.value("LinkServerClose[c3]") is None
    packets = a.run('{c3["Open"], LinkServerEvaluate[c3, 1]}')
    assert messages(packets) == ["LinkServerEvaluate::notopen"]
    assert packets[-1] == wl.ReturnPacket((False, FAILED))
    # the package closed its socket too
    closed = a.run(f'SocketReadyQ[SocketObject["{sock}"]]')
    assert messages(closed) == ["SocketReadyQ::closed"]


def test_a_server_going_away_is_reported(a: A) -> None:
    server = KernelService(0, "127.0.0.1", mode="shared")
    start_services(server)
    try:
        a.value(f'c4 = LinkServerConnect["{port(server)}@127.0.0.1"]')
        assert a.value("LinkServerEvaluate[c4, 1 + 1]") == 2
    finally:
        stop_services(server)  # says GOING_AWAY to its links, then closes them
    packets = a.run("LinkServerEvaluate[c4, 1 + 1]")
    assert messages(packets) == ["LinkServerEvaluate::closed"]
    assert "(GOING_AWAY)" in texts(packets)[0]
    assert packets[-1] == wl.ReturnPacket(FAILED)
    assert a.value('c4["Open"]') is False
