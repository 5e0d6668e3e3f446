"""Records: server events, --log-level trace, stream logs and their files (docs/logging.md)."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wolframclient.language import wl

import linkserver
from linkserver import records
from linkserver.portal import get_portal
from linkserver.protocol import UrgentMessage
from linkserver.service import KernelService
from tests.packets import collect
from tests.timeouts import TIMEOUT, wait_until

KERNEL_TIMEOUT = TIMEOUT * 6  # a kernel template takes seconds to load Mathics3
STAMP = re.compile(r"^\d\d:\d\d:\d\d\.\d{6} [<>=x] ")


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The fields of every ``name`` event captured so far."""
    return [r.fields for r in list(caplog.records) if getattr(r, "event", None) == name]  # type: ignore[attr-defined]


def echo(link: linkserver.Link) -> None:
    """Answer each expression with ReturnPacket[it] until the link ends."""
    while True:
        try:
            expr = link.get(TIMEOUT)
        except linkserver.LinkError:
            return
        link.put(wl.ReturnPacket(expr))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def echo_server(server: linkserver.LinkServer) -> Iterator[linkserver.LinkServer]:
    server.on_link(echo)
    yield server


def test_link_opened_and_closed_are_logged_with_their_fields(
    server: linkserver.LinkServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="linkserver.server")
    client = linkserver.connect(server.name, timeout=TIMEOUT)
    accepted = server.accept(TIMEOUT)
    link_id = client.link_id[:12]
    (opened,) = [e for e in events(caplog, "link-opened") if e["link"] == link_id]
    assert re.fullmatch(r"\d+@127\.0\.0\.1", opened["peer"])
    assert opened["mode"] == "linkserver" and opened["server"] == server.name
    client.close()
    assert wait_until(lambda: any(e["link"] == link_id for e in events(caplog, "link-closed")))
    (closed,) = [e for e in events(caplog, "link-closed") if e["link"] == link_id]
    assert closed["peer"] == opened["peer"] and "closed" in closed["reason"]
    record = next(r for r in caplog.records if getattr(r, "event", None) == "link-opened")
    line = records.LogfmtFormatter().format(record)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info link-opened link=[0-9a-f]{12} "
        rf"peer=\d+@127\.0\.0\.1 mode=linkserver server={re.escape(server.name)} user=-", line
    )
    accepted.close()


def test_a_stranger_is_logged_as_rejected_with_the_reason(
    server: linkserver.LinkServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="linkserver.server")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sock.recv(1000)
    assert wait_until(lambda: bool(events(caplog, "link-rejected")))
    rejected = events(caplog, "link-rejected")[0]
    assert re.fullmatch(r"\d+@127\.0\.0\.1", rejected["peer"]) and str(rejected["reason"])


def test_trace_logs_every_packet_and_message_both_ways(
    echo_server: linkserver.LinkServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(records.TRACE, logger="linkserver.link")  # links made from now on trace
    with linkserver.connect(echo_server.name, timeout=TIMEOUT) as link:
        link.put(wl.EvaluatePacket(wl.Plus(1, 1)))
        assert link.get(TIMEOUT) == wl.ReturnPacket(wl.EvaluatePacket(wl.Plus(1, 1)))
        get_portal().call_soon(link.aio.put_payload_nowait, b"junk")  # not WXF
        link.send_message(UrgentMessage.ABORT)
        link_id = link.link_id[:12]
        assert wait_until(lambda: any(e["message"] == "ABORT"
                                      for e in events(caplog, "message-received")))
    sent = [e["expr"] for e in events(caplog, "packet-sent") if e["link"] == link_id]
    received = [e["expr"] for e in events(caplog, "packet-received") if e["link"] == link_id]
    # Both ends are in this process: the client's and the server's records.
    assert "EvaluatePacket[Plus[1, 1]]" in sent and "EvaluatePacket[Plus[1, 1]]" in received
    assert "ReturnPacket[EvaluatePacket[Plus[1, 1]]]" in sent
    assert "ReturnPacket[EvaluatePacket[Plus[1, 1]]]" in received
    assert "<4 bytes, not WXF: 6a 75 6e 6b>" in received
    assert any(e["message"] == "ABORT" for e in events(caplog, "message-sent"))


def test_stream_log_is_switched_on_and_off_for_one_link_only(
    echo_server: linkserver.LinkServer, tmp_path: Path
) -> None:
    with linkserver.connect(echo_server.name, timeout=TIMEOUT) as a, \
            linkserver.connect(echo_server.name, timeout=TIMEOUT) as b:
        path = echo_server.log_stream(a.link_id, tmp_path)
        assert path is not None and path.parent == tmp_path and a.link_id[:12] in path.name
        for link, marker in ((a, "forA"), (b, "forB")):
            link.put(wl.EvaluatePacket(marker))
            assert link.get(TIMEOUT) == wl.ReturnPacket(wl.EvaluatePacket(marker))
        a.send_message(UrgentMessage.INTERRUPT)
        a.put("beforeOff")
        assert a.get(TIMEOUT) == wl.ReturnPacket("beforeOff")
        assert echo_server.log_stream(a.link_id[:8], None) is None  # off: flushed and closed
        a.put("afterOff")
        assert a.get(TIMEOUT) == wl.ReturnPacket("afterOff")
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        assert lines[0].startswith(f"# linkserver stream log: link {a.link_id} (server end)")
        assert all(STAMP.match(line) for line in lines[1:]), text
        bodies = [line[16:] for line in lines[1:]]
        assert '< EvaluatePacket["forA"]' in bodies
        assert '> ReturnPacket[EvaluatePacket["forA"]]' in bodies
        assert "< urgent INTERRUPT 0" in bodies and '> ReturnPacket["beforeOff"]' in bodies
        assert bodies[-1] == "x stream log off"
        assert "forB" not in text and "afterOff" not in text
        # On again, into a named file, from the client's own end this time.
        mine = tmp_path / "client.log"
        assert a.log_stream(mine) == mine
        a.put("again")
        assert a.get(TIMEOUT) == wl.ReturnPacket("again")
    assert wait_until(lambda: "x link ended" in mine.read_text(encoding="utf-8"))
    client_lines = mine.read_text(encoding="utf-8").splitlines()
    assert "(client end)" in client_lines[0]
    assert [line[16:] for line in client_lines if '"again"' in line] == [
        '> "again"', '< ReturnPacket["again"]']
    with pytest.raises(KeyError, match="no open link"):
        echo_server.log_stream(b"\x00" * 16, tmp_path)


def test_log_streams_dir_gives_each_link_a_file_closed_when_it_ends(tmp_path: Path) -> None:
    get_portal()  # the event loop's own descriptors are not the server's
    baseline = open_fds()
    with linkserver.LinkServer(port=0, interface="127.0.0.1", log_streams=tmp_path) as server:
        server.on_link(echo)
        clients = [linkserver.connect(server.name, timeout=TIMEOUT) for _ in range(5)]
        for i, client in enumerate(clients):
            client.put(wl.EvaluatePacket(i))
            assert client.get(TIMEOUT) == wl.ReturnPacket(wl.EvaluatePacket(i))
        ids = {client.link_id[:12] for client in clients}
        for client in clients:
            client.close()
        files = sorted(tmp_path.iterdir())
        assert {f.name.split("-")[1] for f in files} == ids
        assert wait_until(lambda: all("x link ended" in f.read_text(encoding="utf-8")
                                      for f in files))
    assert wait_until(lambda: open_fds() <= baseline), (open_fds(), baseline)
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o600
        text = f.read_text(encoding="utf-8")
        assert "< EvaluatePacket[" in text and "> ReturnPacket[EvaluatePacket[" in text


def test_kernel_service_records_kernels_requests_and_stream_logs(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="linkserver")
    service = KernelService(0, "127.0.0.1", mode="shared")
    portal = get_portal()
    portal.call(service.start(), timeout=KERNEL_TIMEOUT)
    try:
        (started,) = events(caplog, "kernel-started")
        assert started["backend"] == "mathics" and started["pid"] > 0
        assert events(caplog, "service-started")[0]["server"] == service.name
        with linkserver.connect(service.name, timeout=TIMEOUT) as link:
            link_id = link.link_id[:12]
            path = portal.run_sync(service.log_stream, link.link_id, tmp_path)
            link.put(wl.EvaluatePacket(wl.Plus(1, 1)))
            assert collect(link, "ReturnPacket", KERNEL_TIMEOUT)[-1] == wl.ReturnPacket(2)

            def done_records() -> list[dict[str, Any]]:
                return [e for e in events(caplog, "request-done") if e["link"] == link_id]

            # The server logs the request after it has passed the answer on.
            assert wait_until(lambda: bool(done_records()), TIMEOUT)
            (done,) = done_records()
            assert done["head"] == "EvaluatePacket" and done["ms"] >= 0
            worker = done["worker"]
            kernel = service.broker._worker.kernel  # type: ignore[union-attr]
            assert kernel is not None and kernel.id == started["kernel"]
            portal.call_soon(kernel.kill)
            assert wait_until(lambda: bool(events(caplog, "kernel-replaced")), KERNEL_TIMEOUT)
            (died,) = events(caplog, "kernel-died")
            assert died["kernel"] == started["kernel"] and died["worker"] == worker
            assert died["reason"] == "it was stopped"
            (replaced,) = events(caplog, "kernel-replaced")
            assert replaced["old"] == started["kernel"] and replaced["worker"] == worker
            assert replaced["kernel"] != started["kernel"]
            assert [e["kernel"] for e in events(caplog, "kernel-started")][1] == replaced["kernel"]
            assert portal.run_sync(service.log_stream, link_id, None) is None
        text = path.read_text(encoding="utf-8")  # type: ignore[union-attr]
        assert "< EvaluatePacket[Plus[1, 1]]" in text and "> ReturnPacket[2]" in text
    finally:
        portal.call(service.aclose(), timeout=KERNEL_TIMEOUT)
    assert events(caplog, "service-stopped")


def serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )


def test_cli_trace_to_a_log_file_shows_packets_both_ways(tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    streams = tmp_path / "streams"
    streams.mkdir()
    with serve("--demo", "--log-level", "trace", "--log-file", str(log_file),
               "--log-streams", str(streams)) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            name = re.search(r"listening on (\S+)", line).group(1)  # type: ignore[union-attr]
            with linkserver.connect(name, timeout=TIMEOUT) as link:
                assert link.get(TIMEOUT) == wl.Print("Hello client program.")
                link.put(wl.EvaluatePacket(wl.Plus(1, 1)))
                assert link.get(TIMEOUT) == wl.EvaluatePacket(wl.Plus(1, 1))
                link_id = link.link_id[:12]
            (stream,) = streams.iterdir()
            assert wait_until(lambda: "x link ended" in stream.read_text(encoding="utf-8"))
        finally:
            proc.terminate()
            _out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0 and "packet-" not in err  # the log went to the file
    log = log_file.read_text(encoding="utf-8")
    for expected in (
        f"info link-opened link={link_id} ",
        f'trace packet-sent link={link_id} bytes=34 expr="Print[\\"Hello client program.\\"]"',
        f'trace packet-received link={link_id} bytes=32 expr="EvaluatePacket[Plus[1, 1]]"',
        f'trace close-received link={link_id} code=NORMAL',
        f"info link-closed link={link_id} ",
    ):
        assert expected in log, log
    text = stream.read_text(encoding="utf-8")
    assert '> Print["Hello client program."]' in text and "< EvaluatePacket[Plus[1, 1]]" in text


@pytest.mark.parametrize("args, message", [
    (["--log-streams", "/nonexistent/streams"],
     "linkserver: the stream log directory /nonexistent/streams does not exist\n"),
    (["--log-streams", "/etc/hostname"],
     "linkserver: the stream log directory /etc/hostname is not a directory\n"),
    (["--log-file", "/nonexistent/dir/server.log"],
     "linkserver: cannot write the log file /nonexistent/dir/server.log: "
     "No such file or directory\n"),
])
def test_cli_bad_log_setting_is_one_line_and_exit_code_3(args: list[str], message: str) -> None:
    for mode in (["--demo"], []):  # with kernels: refused before any kernel starts
        with serve(*mode, *args) as proc:
            _out, err = proc.communicate(timeout=KERNEL_TIMEOUT)
        assert proc.returncode == 3 and err == message
