"""``linkserver connect`` on a real terminal: the line editor of linkserver.terminal.

Driven in a pseudo-terminal with ``TERM=xterm`` as a person would type, the screen
read with its escape sequences taken out (tests/integration/test_service.py's
Terminal answers the editor's cursor-position questions as a terminal does).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from wolframclient.language import wl, wlexpr

import linkserver
from linkserver.config import PoolConfig, ServerConfig
from linkserver.history import HistoryStore
from linkserver.portal import get_portal
from linkserver.service import KernelService
from tests.integration.test_service import KERNEL_TIMEOUT, Terminal, start_service
from tests.packets import collect


@pytest.fixture(scope="module")
def shared() -> Iterator[KernelService]:
    service = start_service(mode="shared")
    yield service
    get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def _terminal(service: KernelService, history: Path) -> Terminal:
    return Terminal("connect", service.name, term="xterm",
                    env={"LINKSERVER_HISTORY": str(history)})


def test_tab_completes_names_the_kernel_knows_even_while_it_is_busy(
        shared: KernelService, tmp_path: Path) -> None:
    term = _terminal(shared, tmp_path / "h.sqlite")
    busy = linkserver.connect(shared.name)
    try:
        term.expect(":=")
        term.expect("Tab completes")  # the status line, with the server's address
        assert shared.name.split("@")[0] in term.seen.rsplit("Tab completes", 1)[0]
        term.type("Integr\t")
        term.expect("Integrate")
        term.type("\x15")  # Ctrl-U: clear the line
        # Another client of the shared kernel defines a name, then keeps the kernel busy.
        with linkserver.Client(shared.name) as other:
            other.evaluate(wlexpr("zebraTerminalFunction[x_] := x + 1"))
        busy.put(wl.EvaluatePacket(wlexpr('Print["busy"]; Pause[60]')))
        assert "busy" in str(collect(busy, until="TextPacket", timeout=KERNEL_TIMEOUT))
        term.type("zebraTermi\t")  # asked preemptively: the Pause does not hold it up
        term.expect("zebraTerminalFunction")
        busy.abort()
        collect(busy, until="ReturnPacket", timeout=KERNEL_TIMEOUT)
        term.type("[41]\r")
        term.expect("= 42")
        term.expect(":=")
        term.type("\x04")
        assert term.close() == 0
    finally:
        term.kill()
        busy.close()


def test_ctrl_c_aborts_and_question_mark_shows_usage(shared: KernelService,
                                                     tmp_path: Path) -> None:
    term = _terminal(shared, tmp_path / "h.sqlite")
    try:
        term.expect(":=")
        term.type("keepMe = 5\r")
        term.expect("= 5")
        term.expect(":=")
        term.type('Print["sp" <> "in"]; Do[Null, {10^10}]\r')
        term.expect("\nspin")  # the printed line, not the echo of the input
        term.type("\x03")  # Ctrl-C aborts the evaluation, not the session
        term.expect("$Aborted")
        term.expect(":=")
        term.expect("aborted in")  # the status line says how the last input went
        term.type("keepMe + 1\r")
        term.expect("= 6")
        term.type("?Plus\r")
        term.expect("represents the sum")
        term.expect(":=")
        term.type("f[{1,\r")  # unfinished: Enter opens a new line
        term.type("2}]\r")
        term.expect("= f[{1, 2}]")
        term.expect(":=")
        term.type("half a line")
        term.expect("half a line")
        term.type("\x03")  # Ctrl-C at the prompt clears the line and stays
        term.expect(":=")
        term.type("\x04")
        assert term.close() == 0
    finally:
        term.kill()


def test_history_is_kept_and_ctrl_r_finds_it_in_the_next_session(
        shared: KernelService, tmp_path: Path) -> None:
    history = tmp_path / "h.sqlite"
    first = _terminal(shared, history)
    try:
        first.expect(":=")
        first.type("historyMarker = 17\r")
        first.expect("= 17")
        first.expect(":=")
        first.type("\x04")
        assert first.close() == 0
    finally:
        first.kill()
    with HistoryStore(history) as store:
        assert [e[2] for e in store.search("historyMarker*")] == ["historyMarker = 17"]
    second = _terminal(shared, history)
    try:
        second.expect(":=")
        second.type("\x12")  # Ctrl-R: search backwards through the history
        second.type("historyMar")
        second.expect("historyMarker = 17")
        second.type("\r")  # take the line found
        second.type("\r")  # and run it
        second.expect("Out[")
        second.expect("= 17")
        second.expect(":=")
        second.type("\x04")
        assert second.close() == 0
    finally:
        second.kill()


def test_the_status_line_names_the_pool_and_the_kernel(tmp_path: Path) -> None:
    config = ServerConfig((PoolConfig("iso", "pool", min=1, max=2),), "iso")
    service = start_service(config=config)
    term = _terminal(service, tmp_path / "h.sqlite")
    try:
        term.expect(":=")
        screen = term.expect("Tab completes")
        line = screen.rsplit("Tab completes", 1)[0].rsplit("\n", 1)[-1]
        assert "pool iso" in line and "a kernel of its own" in line and "kernel " in line
        term.type("\x04")
        assert term.close() == 0
    finally:
        term.kill()
        get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)
