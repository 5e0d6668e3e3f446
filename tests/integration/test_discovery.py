"""Discovery on the local network: advertise, browse, resolve ``service:NAME``, withdraw.

Multicast DNS is spoken on the loopback interface only
(``LINKSERVER_MDNS_INTERFACES=127.0.0.1``, inherited by the servers these
tests start): nothing leaves the machine. Names carry this run's pid and a
random part, so concurrent runs do not see each other's servers.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLSymbol
from zeroconf import DNSQuestionType, IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

import linkserver
from linkserver import aio, discovery, security
from linkserver.errors import ConnectFailed, LinkNameError
from linkserver.portal import get_portal
from linkserver.security import SecurityError
from tests.integration.test_examples import ROOT, start, wait_for_name
from tests.timeouts import TIMEOUT

LOOPBACK = "127.0.0.1"
KEY = "k" * 32


@pytest.fixture(autouse=True)
def loopback_mdns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKSERVER_MDNS_INTERFACES", LOOPBACK)


def fresh_name(what: str) -> str:
    return f"{what}-{os.getpid()}-{secrets.token_hex(3)}"


class Watcher:
    """A browser that stays open and records what appears and disappears (goodbyes)."""

    def __init__(self) -> None:
        self.zc = Zeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
        self.added: set[str] = set()
        self.removed: set[str] = set()
        self._changed = threading.Condition()
        self.browser = ServiceBrowser(
            self.zc, discovery.SERVICE_TYPE, handlers=[self._on_change],
            question_type=DNSQuestionType.QM,
        )

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        label = name[: -len(discovery.SERVICE_TYPE) - 1]
        with self._changed:
            if state_change is ServiceStateChange.Removed:
                self.removed.add(label)
            else:
                self.added.add(label)
            self._changed.notify_all()

    def wait(self, which: set[str], name: str, timeout: float = TIMEOUT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: name in which, timeout)

    def raw_txt(self, name: str) -> dict[bytes, bytes | None]:
        info = self.zc.get_service_info(discovery.SERVICE_TYPE, f"{name}.{discovery.SERVICE_TYPE}",
                                        timeout=int(TIMEOUT * 1000),
                                        question_type=DNSQuestionType.QM)
        assert info is not None
        return dict(info.properties)

    def close(self) -> None:
        self.browser.cancel()
        self.zc.close()


@pytest.fixture
def watcher() -> Iterator[Watcher]:
    w = Watcher()
    try:
        yield w
    finally:
        w.close()


def find(name: str, timeout: float = TIMEOUT) -> discovery.ServiceRecord:
    """Browse until ``name`` answers (registration runs in the server's background)."""
    deadline = time.monotonic() + timeout
    while True:
        for record in linkserver.browse(1.5):
            if record.name == name:
                return record
        assert time.monotonic() < deadline, f"{name} was not advertised within {timeout:g} s"


def linkserver_cli(*args: str, timeout: float = TIMEOUT * 3) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkserver", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


# ------------------------------------------------------------------ the demo server, end to end


def test_advertised_demo_server_is_listed_connected_to_and_withdrawn(watcher: Watcher) -> None:
    name = fresh_name("demo")
    started = time.monotonic()
    with start("-m", "linkserver", "serve", "--demo", "--port", "0", "--tls",
               "--advertise", name) as proc:
        address = wait_for_name(proc)
        # Advertising is in the background: the server listens before the name is probed.
        assert time.monotonic() - started < TIMEOUT
        assert watcher.wait(watcher.added, name)

        record = discovery.resolve(name, TIMEOUT)
        assert record.address == address
        assert (record.mode, record.kernel, record.auth, record.tls) == ("demo", "none", "key", True)
        assert record.protocol == "1.1" and record.version == linkserver.__version__
        assert record.fingerprint is not None and record.fingerprint.startswith("sha256:")

        # The record tells how to connect, never the key.
        info = security.find_connection(address)
        assert info is not None and info.key and info.fingerprint == record.fingerprint
        txt = watcher.raw_txt(name)
        assert {k.decode() for k in txt} == {
            "txtvers", "protocol", "version", "mode", "kernel", "pools", "auth", "tls", "fingerprint"
        }
        assert not any(info.key.encode() in (value or b"") for value in txt.values())

        # service:NAME resolves, pins the advertised certificate and proves the key.
        with linkserver.connect(f"service:{name}", TIMEOUT) as link:
            assert link.get(TIMEOUT) == wl.Print("Hello client program.")
            link.put([1, "two"])
            assert link.get(TIMEOUT) == (1, "two")

        # The command line lists it as a table.
        listed = linkserver_cli("services", "--timeout", "2")
        assert listed.returncode == 0, listed.stderr
        header, *rows = listed.stdout.splitlines()
        assert header.split() == ["NAME", "ADDRESS", "MODE", "KERNEL", "AUTH", "TLS", "POOLS"]
        assert [name, address, "demo", "none", "key", "yes", "-"] in [row.split() for row in rows]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
    # Goodbye packets: a browser that was watching sees it go at once.
    assert watcher.wait(watcher.removed, name)
    assert name not in [r.name for r in linkserver.browse(1.0)]


def test_ctrl_c_withdraws_too(watcher: Watcher) -> None:
    name = fresh_name("sigint")
    with start("-m", "linkserver", "serve", "--demo", "--port", "0", "--no-key",
               "--advertise", name) as proc:
        wait_for_name(proc)
        assert watcher.wait(watcher.added, name)
        txt = watcher.raw_txt(name)
        assert (txt[b"auth"], txt[b"tls"]) == (b"none", b"0") and b"fingerprint" not in txt
        proc.send_signal(signal.SIGINT)
        assert proc.wait(TIMEOUT) == 0
    assert watcher.wait(watcher.removed, name)


# ------------------------------------------------------------------ errors


def test_an_unknown_name_is_one_clear_sentence() -> None:
    began = time.monotonic()
    with pytest.raises(ConnectFailed, match=r"no linkserver service named 'nobody-here' answered "
                       r"within 1 s on this network; `linkserver services` lists those"):
        linkserver.connect("service:nobody-here", 1.0)
    assert time.monotonic() - began < TIMEOUT
    result = linkserver_cli("eval", "--name", "service:nobody-here", "--timeout", "1", "1+1")
    assert result.returncode == 3
    assert "no linkserver service named 'nobody-here'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_names_are_refused_before_serving() -> None:
    for bad in ("", "a/b", "a.b", "x" * 64):
        with pytest.raises(LinkNameError):
            discovery.check_service_name(bad)
    result = linkserver_cli("serve", "--demo", "--port", "0", "--advertise", "a/b")
    assert result.returncode == 3 and "may not contain '/'" in result.stderr


def test_a_name_already_taken_is_not_stolen(watcher: Watcher) -> None:
    name = fresh_name("taken")

    async def scenario() -> tuple[bool, str | None]:
        first = discovery.Advertiser(name, LOOPBACK)
        second = discovery.Advertiser(name, LOOPBACK)
        first.start(1111, {"auth": "none"})
        try:
            assert await first.wait_registered(TIMEOUT)
            second.start(2222, {"auth": "none"})
            ok = await second.wait_registered(TIMEOUT)
            return ok, second.failure
        finally:
            await second.aclose()
            await first.aclose()

    ok, failure = get_portal().call(scenario(), timeout=TIMEOUT * 3)
    assert not ok and failure is not None and "already advertises" in failure


# ------------------------------------------------------------------ TLS pinned from the record


def test_the_advertised_fingerprint_is_pinned(tmp_path: Path) -> None:
    """No connection file here: TLS and the pin come from the TXT record alone."""
    cert, private = security.self_signed(tmp_path)
    context, fingerprint = security.server_context(cert, private)
    good, forged = fresh_name("tls"), fresh_name("forged")

    async def scenario() -> tuple[object, BaseException | None]:
        settings = aio.LinkSettings(keys=(("admin", KEY.encode()),))
        server = aio.LinkServer(0, LOOPBACK, settings=settings, tls=context)
        await server.start()
        adverts = []
        for name, pin in ((good, fingerprint), (forged, "sha256:" + "0" * 64)):
            advert = discovery.Advertiser(name, LOOPBACK)
            advert.start(server.port, discovery.properties_for(
                protocol="1.1", version="test", mode="demo", kernel="none", pools=[],
                key=True, tls=True, fingerprint=pin))
            adverts.append(advert)
        try:
            for advert in adverts:
                assert await advert.wait_registered(TIMEOUT)
            server.on_link(lambda link: link.put("over TLS"))
            link = await aio.connect(f"service:{good}", TIMEOUT, key=KEY)
            got = await link.get(TIMEOUT)
            await link.aclose()
            try:
                await aio.connect(f"service:{forged}", TIMEOUT, key=KEY)
            except SecurityError as exc:
                refused: BaseException | None = exc
            else:
                refused = None
            found = {r.name: r for r in await aio.browse(2.0)}
            assert found[good].fingerprint == fingerprint and found[good].tls
            return got, refused
        finally:
            for advert in adverts:
                await advert.aclose()
            await server.aclose()

    got, refused = get_portal().call(scenario(), timeout=TIMEOUT * 4)
    assert got == "over TLS"
    assert isinstance(refused, SecurityError) and "not the pinned" in str(refused)


# ------------------------------------------------------------------ kernels, pools, $KeepRunning


@pytest.mark.slow
def test_kernel_server_by_service_name_keeps_the_pool(tmp_path: Path, watcher: Watcher) -> None:
    name = fresh_name("kernels")
    config = tmp_path / "pools.json"
    config.write_text(json.dumps({"default": "main", "pools": {
        "main": {"mode": "shared"}, "calc": {"mode": "shared"}}}))
    with start("-m", "linkserver", "serve", "--port", "0", "--config", str(config),
               "--advertise", name) as proc:
        assert watcher.wait(watcher.added, name, TIMEOUT * 6)
        record = find(name)
        assert (record.mode, record.kernel, record.pools) == ("shared", "mathics", ("main", "calc"))

        result = linkserver_cli("eval", "--name", f"service:{name}", "6*7")
        assert result.returncode == 0 and result.stdout.strip().endswith("42"), result.stderr
        status = linkserver_cli("status", f"service:{name}")
        assert status.returncode == 0 and "shared" in status.stdout, status.stderr

        with linkserver.Client(f"service:{name}/calc") as client:
            assert client.pool == "calc"
            assert client.evaluate("calcOnly = 5; calcOnly + 1") == 6
        with linkserver.Client(f"service:{name}") as client:
            assert client.evaluate("ValueQ[calcOnly]") is False  # main is another kernel
            # An admin on this machine (key from the connection file) stops it.
            assert client.evaluate(wl.Set(WLSymbol("$KeepRunning"), False)) is False
        assert proc.wait(TIMEOUT * 3) == 0
    assert watcher.wait(watcher.removed, name)


def test_service_name_keeps_its_pool() -> None:
    assert aio.Client("service:lab/calc").pool == "calc"
    record = discovery.ServiceRecord("lab", LOOPBACK, 4000)
    assert str(record.link_name("calc")) == "4000@127.0.0.1/calc"


def test_records_and_table_shape() -> None:
    txt = discovery.properties_for(protocol="1.1", version="0.1.0", mode="pool", kernel="mathics",
                                   pools=["a", "b" * 150, "c" * 100], key=True, tls=False,
                                   fingerprint="sha256:ff")
    assert txt["pools"] == "a," + "b" * 150 and "fingerprint" not in txt and txt["auth"] == "key"
    record = discovery._record("lab", 31415, ["fd00::2", "192.0.2.7"], "h.local.", txt)
    assert record.address == "31415@192.0.2.7" and record.pools == ("a", "b" * 150)
    assert record.tls_settings(None, None, None) == (False, None)
    pinned = discovery.ServiceRecord("x", "h", 1, tls=True, fingerprint="sha256:aa")
    assert pinned.tls_settings(None, None, None) == (True, "sha256:aa")
    assert pinned.tls_settings(None, "sha256:bb", None) == (True, "sha256:bb")
    assert pinned.tls_settings(False, None, None) == (False, None)
    table = discovery.format_services([record]).splitlines()
    assert table[1].split()[:6] == ["lab", "31415@192.0.2.7", "pool", "mathics", "key", "no"]
