"""Idle culling: a pool kernel whose client sends nothing for cull_idle seconds is ended, and
the client is told -- at its next request, or at once if a request of its waits for input."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from wolframclient.language import wl
from wolframclient.language.expression import WLSymbol

import linkserver
from linkserver.config import PoolConfig, ServerConfig
from linkserver.metrics import Metrics
from linkserver.portal import get_portal
from linkserver.service import KernelService
from tests.packets import collect
from tests.timeouts import TIMEOUT, wait_until

KERNEL_TIMEOUT = TIMEOUT * 6  # a kernel template takes seconds to load Mathics3
IDLE = 1.0  # seconds; the tests wait on events, never on this


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[KernelService, Metrics]]:
    config = ServerConfig((
        PoolConfig("idle", "pool", min=1, max=2, wait=KERNEL_TIMEOUT, cull_idle=IDLE,
                   keepalive=60),
        PoolConfig("strict", "pool", min=0, max=1, wait=KERNEL_TIMEOUT, cull_idle=IDLE,
                   cull="close"),
    ), "idle")
    service = KernelService(0, "127.0.0.1", config=config)
    portal = get_portal()
    portal.call(service.start(), timeout=KERNEL_TIMEOUT)
    metrics = portal.run_sync(Metrics, service)
    yield service, metrics
    metrics.close()
    portal.call(service.aclose(), timeout=KERNEL_TIMEOUT)


def culls(metrics: Metrics, pool: str) -> float:
    text = get_portal().run_sync(metrics.render).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "linkserver_kernel_culls_total" and sample.labels == {"pool": pool}:
                return float(sample.value)
    return 0.0


def culled_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in list(caplog.records)  # type: ignore[attr-defined]
            if getattr(r, "event", None) == "kernel-culled"]


def evaluate(link: linkserver.Link, expr: Any) -> list[Any]:
    link.put(wl.EvaluatePacket(expr))
    return collect(link, "ReturnPacket", KERNEL_TIMEOUT)


def test_the_next_request_is_told_then_a_fresh_kernel_serves(
    served: tuple[KernelService, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    service, metrics = served
    caplog.set_level(logging.INFO, logger="linkserver")
    before = culls(metrics, "idle")
    with linkserver.connect(service.name, timeout=TIMEOUT) as link:
        assert evaluate(link, wl.Set(wl.Global.x, 5))[-1] == wl.ReturnPacket(5)
        assert wait_until(lambda: bool(culled_events(caplog)), KERNEL_TIMEOUT)
        (event,) = culled_events(caplog)
        assert event["idle_s"] == IDLE and event["link"] == link.link_id[:12]
        told = evaluate(link, wl.Global.x)
        texts = [p.args[0] for p in told if p.head == wl.TextPacket]
        assert texts == [f"LinkServer::culled: the kernel was ended after {IDLE:g} s idle; its "
                         "definitions are gone; send the request again to run it in a fresh kernel"]
        assert told[-1] == wl.ReturnPacket(WLSymbol("$Failed"))
        # The link goes on, with a kernel that never saw x.
        assert evaluate(link, wl.Global.x)[-1].args[0].name.rpartition("`")[2] == "x"
        assert evaluate(link, wl.Plus(1, 1))[-1] == wl.ReturnPacket(2)
    assert culls(metrics, "idle") == before + 1


def test_a_request_waiting_for_input_is_told_at_once(
    served: tuple[KernelService, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    service, _metrics = served
    caplog.set_level(logging.INFO, logger="linkserver")
    with linkserver.connect(service.name, timeout=TIMEOUT) as link:
        link.put(wl.EvaluatePacket(wl.Input("n? ")))
        packets = collect(link, "ReturnPacket", KERNEL_TIMEOUT)  # the news ends the request
        assert any(p.head == wl.InputPacket for p in packets)
        texts = [p.args[0] for p in packets if p.head == wl.TextPacket]
        assert texts and texts[-1].startswith("LinkServer::culled: the kernel was ended after")
        assert texts[-1].endswith("the link goes on with a fresh kernel")
        assert evaluate(link, wl.Plus(2, 2))[-1] == wl.ReturnPacket(4)


def test_a_pool_set_to_close_closes_the_link_with_reason_culled(
    served: tuple[KernelService, Metrics]
) -> None:
    service, metrics = served
    with linkserver.connect(f"{service.name}", timeout=TIMEOUT) as link:
        link.put(wl.LinkServerSelect({"pool": "strict"}))
        assert collect(link, "ReturnPacket", KERNEL_TIMEOUT)[-1].args[0]["pool"] == "strict"
        assert evaluate(link, wl.Plus(1, 2))[-1] == wl.ReturnPacket(3)
        with pytest.raises(linkserver.LinkClosed) as closed:
            while True:
                link.get(KERNEL_TIMEOUT)
        assert "culled" in str(closed.value)
    assert culls(metrics, "strict") == 1


def test_a_persistent_kernel_is_not_culled(
    served: tuple[KernelService, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    service, _metrics = served
    caplog.set_level(logging.INFO, logger="linkserver")
    with linkserver.connect(service.name, timeout=TIMEOUT) as link:
        link.put(wl.LinkServerSelect({"persistent": True}))
        collect(link, "ReturnPacket", KERNEL_TIMEOUT)
        assert evaluate(link, wl.Set(wl.Global.y, 7))[-1] == wl.ReturnPacket(7)
        # Another client is culled meanwhile: this one, as old, is not.
        with linkserver.connect(service.name, timeout=TIMEOUT) as other:
            evaluate(other, wl.Plus(1, 1))
            assert wait_until(lambda: any(e["link"] == other.link_id[:12]
                                          for e in culled_events(caplog)), KERNEL_TIMEOUT)
        assert evaluate(link, wl.Global.y)[-1] == wl.ReturnPacket(7)
        assert all(e["link"] != link.link_id[:12] for e in culled_events(caplog))
