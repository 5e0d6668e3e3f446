"""The server's bounds: open links and requests waiting per link (docs/protocol.md §9)."""

from __future__ import annotations

import pytest
from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLSymbol

import linkserver
from linkserver.config import PoolConfig, ServerConfig
from linkserver.portal import get_portal
from tests.integration.test_service import KERNEL_TIMEOUT, start_service
from tests.packets import collect
from tests.timeouts import TIMEOUT


def test_a_link_past_the_limit_is_told_why_and_the_others_go_on() -> None:
    with linkserver.LinkServer(max_links=2) as server:
        first = linkserver.connect(server.name, TIMEOUT)
        second = linkserver.connect(server.name, TIMEOUT)
        a, b = server.accept(timeout=TIMEOUT), server.accept(timeout=TIMEOUT)
        third = linkserver.connect(server.name, TIMEOUT)
        with pytest.raises(linkserver.LinkClosed, match="maximum of 2 links"):
            third.get(timeout=TIMEOUT)
        first.put(1)
        assert a.get(timeout=TIMEOUT) == 1  # the links already open are untouched
        first.close()
        a.close()
        with linkserver.connect(server.name, TIMEOUT) as again:  # room again
            again.put(2)
            assert server.accept(timeout=TIMEOUT).get(timeout=TIMEOUT) == 2
        second.put(3)
        assert b.get(timeout=TIMEOUT) == 3
        second.close()
        third.close()


def test_requests_past_the_per_link_queue_bound_are_answered_at_once() -> None:
    config = ServerConfig((PoolConfig("default", "shared", max_queued=2),))
    service = start_service(config=config)
    try:
        with linkserver.connect(service.name, TIMEOUT) as link:
            link.put(wl.EvaluatePacket(wlexpr("Pause[0.5]; 0")))  # running, not queued
            for i in (1, 2, 3):
                link.put(wl.EvaluatePacket(wl.Plus(i, 100)))
            answers = [collect(link, "ReturnPacket", KERNEL_TIMEOUT) for _ in range(4)]
        refused = [a for a in answers if wl.MessagePacket(wl.LinkServer, "queuefull") in a]
        assert len(refused) == 1 and refused[0][-1] == wl.ReturnPacket(WLSymbol("$Failed"))
        assert "2 requests waiting" in str(refused[0][1])
        results = sorted(a[-1].args[0] for a in answers if a is not refused[0])
        assert results == [0, 101, 102]
    finally:
        get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)
