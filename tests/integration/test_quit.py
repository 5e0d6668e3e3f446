"""Quit[] through a real server: a shared kernel refuses it, a client's own kernel ends.

In shared mode one client's ``Quit[]`` would end every client's session, so
the kernel refuses it however it is reached (alone, buried in a larger
expression, through ``ToExpression``) and the kernel's definitions survive;
in pool mode it ends only the asker's kernel, which says so first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLSymbol

import linkserver
from linkserver.config import PoolConfig, ServerConfig, parse_config
from linkserver.errors import ConfigError
from linkserver.portal import get_portal
from linkserver.service import KernelService
from tests.packets import collect

from .test_service import KERNEL_TIMEOUT, start_service

FAILED = WLSymbol("$Failed")
NOQUIT = wl.MessagePacket(wl.LinkServer, "noquit")


@pytest.fixture(scope="module")
def service() -> Iterator[KernelService]:
    config = ServerConfig((
        PoolConfig("shared", "shared"),
        PoolConfig("own", "pool", min=1, max=2),
    ), "shared")
    service = start_service(config=config)
    yield service
    get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def evaluate(link: linkserver.Link, text: str) -> list[object]:
    link.put(wl.EvaluatePacket(wlexpr(text)))
    return collect(link, "ReturnPacket", KERNEL_TIMEOUT)


@pytest.mark.parametrize("text", [
    "Quit[]",
    "Exit[3]",
    "quitX = 1; If[quitX == 1, Quit[]]; quitX = 2",
    'ToExpression["Quit[]"]',
    "Map[Exit, {1, 2}]",
    "Quit",  # the symbol alone is not a call: evaluates to itself
])
def test_a_shared_kernel_refuses_quit_and_keeps_everyones_definitions(
    service: KernelService, text: str
) -> None:
    with linkserver.connect(service.name) as a, linkserver.Client(service.name) as b:
        assert b.evaluate("keptForB = 17") == 17
        answer = evaluate(a, text)
        if text == "Quit":
            assert answer == [wl.ReturnPacket(WLSymbol("Quit"))]
        else:
            assert answer[0] == NOQUIT
            said = answer[1].args[0]
            assert "refused" in said and "$KeepRunning = False" in said and "admin" in said
            assert answer[-1] == wl.ReturnPacket(FAILED)
        # The same kernel goes on serving both clients, with what they defined.
        assert b.evaluate("keptForB") == 17
        assert evaluate(a, "keptForB + 1") == [wl.ReturnPacket(18)]
        # The evaluation stopped where Quit[] ran, as an abort does.
        if "quitX" in text:
            assert b.evaluate("quitX") == 1


def test_a_pool_kernel_quits_and_the_client_is_told_its_definitions_are_gone(
    service: KernelService,
) -> None:
    with linkserver.Client(f"{service.name}/own") as client:
        link = client.link
        assert evaluate(link, "mine = 5") == [wl.ReturnPacket(5)]
        answer = evaluate(link, "Quit[]")
        assert answer[0] == wl.MessagePacket(wl.LinkServer, "quit")
        assert "definition" in answer[1].args[0] and "gone" in answer[1].args[0]
        assert wl.MessagePacket(wl.LinkServer, "kerneldied") in answer
        assert answer[-1] == wl.ReturnPacket(FAILED)
        # A fresh kernel serves the same link; what it defined is gone.
        assert evaluate(link, "mine") == [wl.ReturnPacket(WLSymbol("mine"))]


def test_quit_anyone_lets_a_shared_kernel_end() -> None:
    config = ServerConfig((PoolConfig("default", "shared"),), quit_allowed="anyone")
    service = start_service(config=config)
    try:
        with linkserver.connect(service.name) as link:
            assert evaluate(link, "gone = 1") == [wl.ReturnPacket(1)]
            answer = evaluate(link, "Quit[]")
            assert wl.MessagePacket(wl.LinkServer, "kerneldied") in answer
            assert answer[-1] == wl.ReturnPacket(FAILED)
            assert evaluate(link, "gone") == [wl.ReturnPacket(WLSymbol("gone"))]
    finally:
        get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def test_access_quit_is_checked() -> None:
    pools = {"pools": {"main": {}}}
    assert parse_config(pools).quit_allowed == "nobody"
    assert parse_config({**pools, "access": {"quit": "anyone"}}).quit_allowed == "anyone"
    with pytest.raises(ConfigError, match="access.quit must be one of 'nobody', 'anyone'"):
        parse_config({**pools, "access": {"quit": "admin"}})
