"""The HTTP side port against a real server: /healthz, /metrics and /status, and bad clients."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from wolframclient.language import wl

import linkserver
from linkserver.aio.link import LinkSettings
from linkserver.config import PoolConfig, ServerConfig
from linkserver.portal import get_portal
from linkserver.security import check_key, new_key
from linkserver.service import KernelService
from linkserver.sideport import MAX_HEAD, SidePort
from tests.packets import collect
from tests.timeouts import TIMEOUT, wait_until

KERNEL_TIMEOUT = TIMEOUT * 6  # a kernel template takes seconds to load Mathics3
KEY = new_key()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[KernelService, SidePort]]:
    config = ServerConfig((
        PoolConfig("calc", "shared"),
        # a kernel program that is not a kernel: no kernel of this pool can ever start
        PoolConfig("broken", "pool", backend="wolfram", kernel_path="/bin/false", min=0, max=1,
                   wait=KERNEL_TIMEOUT),
    ), "calc")
    settings = LinkSettings(keys=(("admin", check_key(KEY)),))
    service = KernelService(0, "127.0.0.1", config=config, settings=settings)
    portal = get_portal()
    portal.call(service.start(), timeout=KERNEL_TIMEOUT)
    side = portal.call(SidePort(service, 0, "127.0.0.1").start(), timeout=TIMEOUT)
    yield service, side
    portal.call(side.aclose(), timeout=TIMEOUT)
    portal.call(service.aclose(), timeout=KERNEL_TIMEOUT)


def get(side: SidePort, path: str, token: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", side.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_and_status_want_the_admin_key(served: tuple[KernelService, SidePort]) -> None:
    _service, side = served
    for path in ("/metrics", "/status"):
        status, body = get(side, path)
        assert status == 401 and "Bearer" in body
        status, body = get(side, path, "not-the-key")
        assert status == 403 and KEY not in body
    status, body = get(side, "/status", KEY)
    data = json.loads(body)
    assert status == 200 and data["pools"] == "calc, broken" and data["links"] >= 0


def test_metrics_count_the_work_done(served: tuple[KernelService, SidePort]) -> None:
    _service, side = served
    before = samples(get(side, "/metrics", KEY)[1])
    done = ("linkserver_requests_total",
            (("head", "EvaluatePacket"), ("outcome", "done"), ("pool", "calc")))
    with linkserver.connect(side._service.name, timeout=TIMEOUT, key=KEY) as link:
        for n in range(3):
            link.put(wl.EvaluatePacket(wl.Plus(n, 1)))
            assert collect(link, "ReturnPacket", KERNEL_TIMEOUT)[-1] == wl.ReturnPacket(n + 1)
        during = samples(get(side, "/metrics", KEY)[1])
        assert during[("linkserver_links_open", ())] >= 1
    after = samples(get(side, "/metrics", KEY)[1])
    assert after[done] - before.get(done, 0) == 3
    count = ("linkserver_request_seconds_count", (("head", "EvaluatePacket"), ("pool", "calc")))
    assert after[count] - before.get(count, 0) == 3
    assert after[("linkserver_received_bytes_total", ())] > before[("linkserver_received_bytes_total", ())]
    assert after[("linkserver_sent_bytes_total", ())] > before[("linkserver_sent_bytes_total", ())]
    assert after[("linkserver_kernels", (("pool", "calc"), ("state", "idle")))] == 1
    assert ("linkserver_queue_length", (("pool", "calc"),)) in after


def test_a_wrong_key_on_the_link_port_is_counted(served: tuple[KernelService, SidePort]) -> None:
    service, side = served
    key = ("linkserver_handshakes_refused_total", (("cause", "key"),))
    before = samples(get(side, "/metrics", KEY)[1]).get(key, 0)
    with pytest.raises(linkserver.LinkError):
        linkserver.connect(service.name, timeout=TIMEOUT, key=new_key())
    assert wait_until(lambda: samples(get(side, "/metrics", KEY)[1]).get(key, 0) == before + 1,
                      TIMEOUT)


def test_healthz_is_200_then_503_once_a_pool_cannot_start_a_kernel(
    served: tuple[KernelService, SidePort]
) -> None:
    service, side = served
    assert get(side, "/healthz") == (200, "ok\n")
    # A client of the broken pool makes it try, and fail, to start a kernel.
    with linkserver.connect(service.name, timeout=TIMEOUT, key=KEY) as link:
        link.put(wl.LinkServerSelect({"pool": "broken"}))
        assert wait_until(lambda: get(side, "/healthz")[0] == 503, KERNEL_TIMEOUT)
        status, body = get(side, "/healthz")
        assert body == "pool broken: no kernel can start\n"
        assert "/bin/false" not in body and KEY not in body


def test_bad_clients_get_an_answer_and_the_port_keeps_serving(
    served: tuple[KernelService, SidePort]
) -> None:
    _service, side = served

    def raw(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", side.port), timeout=TIMEOUT) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    assert raw(b"GET /healthz HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD * 4) + b"\r\n\r\n").startswith(
        b"HTTP/1.1 431 ")
    assert raw(b"\x00\xff garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert raw(b"GET /nothing HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert raw(b"GET /healthz HTTP/1.1\r\n").startswith(b"HTTP/1.1 400 ")  # ended early
    assert get(side, "/healthz")[0] in (200, 503)


def test_a_silent_client_does_not_hold_up_the_others(
    served: tuple[KernelService, SidePort]
) -> None:
    _service, side = served
    with socket.create_connection(("127.0.0.1", side.port), timeout=TIMEOUT) as silent:
        silent.sendall(b"GET /metr")  # and nothing more
        assert get(side, "/healthz")[0] in (200, 503)  # answered: the broken pool fails
        status, _body = get(side, "/metrics", KEY)
        assert status == 200
        # The silent one is answered 408 and closed once its time is up.
        assert silent.recv(4096).startswith(b"HTTP/1.1 408 ")


def test_serve_http_starts_the_side_port_and_counts_from_the_start(tmp_path: Path) -> None:
    key_file = tmp_path / "admin.key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    with subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--http", "0",
         "--key-file", str(key_file), "--mode", "pool", "--pool-min", "1", "--pool-size", "2",
         "--cull-idle", "600", "--log-level", "error"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    ) as server:
        try:
            assert server.stdout is not None
            url = ""
            while not url:
                line = server.stdout.readline()
                assert line, "the server exited before serving HTTP"
                match = re.search(r"http: http://127\.0\.0\.1:(\d+)/healthz", line)
                url = match.group(1) if match else ""
            port = int(url)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b"ok\n"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {KEY}"})
            found = samples(conn.getresponse().read().decode())
            assert found[("linkserver_kernel_starts_total", (("backend", "mathics"),))] >= 1
            assert found[("linkserver_kernels", (("pool", "default"), ("state", "warm")))] == 1
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(KERNEL_TIMEOUT) == 0
