"""What a /metrics scrape costs the server: render time on its loop, and a whole GET.

Starts a service in this process (a shared pool and a pool of two kernels),
sends requests so the request counters and the latency histogram have label
sets to print, then times (1) ``Metrics.render`` alone on the server's loop --
the CPU a scrape takes from the kernels' broker -- and (2) whole HTTP GETs of
/metrics from a client on this machine, and reports the size of the answer.

    PYTHONPATH=src .venv/bin/python bench/metrics_scrape.py
"""

from __future__ import annotations

import http.client
import time

from harness import median_time, report
from wolframclient.language import wl

import linkserver
from linkserver.aio.link import LinkSettings
from linkserver.config import PoolConfig, ServerConfig
from linkserver.portal import get_portal
from linkserver.security import check_key, new_key
from linkserver.service import KernelService
from linkserver.sideport import SidePort

REQUESTS = 200
SCRAPES = 200


def main() -> None:
    key = new_key()
    config = ServerConfig((PoolConfig("calc", "shared"), PoolConfig("iso", "pool", min=2, max=2)),
                          "calc")
    service = KernelService(0, "127.0.0.1", config=config,
                            settings=LinkSettings(keys=(("admin", check_key(key)),)))
    portal = get_portal()
    portal.call(service.start(), timeout=300)
    side = portal.call(SidePort(service, 0, "127.0.0.1").start(), timeout=30)
    try:
        with linkserver.connect(service.name, timeout=30, key=key) as link:
            for n in range(REQUESTS):
                link.put(wl.EvaluatePacket(wl.Plus(n, 1)))
                while getattr(link.get(30), "head", None) != wl.ReturnPacket:
                    pass
        render = median_time(lambda: portal.run_sync(side.metrics.render), repeat=5, number=50)
        loop_hop = median_time(lambda: portal.run_sync(lambda: None), repeat=5, number=50)
        conn = http.client.HTTPConnection("127.0.0.1", side.port, timeout=30)
        headers = {"Authorization": f"Bearer {key}"}
        size = 0
        start = time.perf_counter()
        for _ in range(SCRAPES):
            conn = http.client.HTTPConnection("127.0.0.1", side.port, timeout=30)
            conn.request("GET", "/metrics", headers=headers)
            size = len(conn.getresponse().read())
            conn.close()
        scrape = (time.perf_counter() - start) / SCRAPES
        report("metrics_render_on_loop", (render - loop_hop) * 1e6, "us")
        report("metrics_scrape_get", scrape * 1e3, "ms")
        report("metrics_scrape_size", size / 1024, "KiB")
    finally:
        portal.call(side.aclose(), timeout=30)
        portal.call(service.aclose(), timeout=60)


if __name__ == "__main__":
    main()
