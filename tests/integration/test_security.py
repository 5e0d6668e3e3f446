"""Who gets in: keys, TLS, connection files, protected mode and roles."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from wolframclient.language import wl

import linkserver
from linkserver import security
from linkserver.errors import AuthenticationError, ConnectFailed, LinkBroken, NotALinkServerError
from linkserver.security import SecurityError
from tests.integration.test_examples import ROOT, start, wait_for_name
from tests.timeouts import TIMEOUT, wait_until

ADMIN = "a" * 32
USER = "u" * 32


@pytest.fixture
def keyed() -> Iterator[linkserver.LinkServer]:
    settings = linkserver.LinkSettings(keys=(("admin", ADMIN.encode()), ("user", USER.encode())))
    with linkserver.LinkServer(settings=settings) as server:
        yield server


def test_the_right_key_opens_a_link_with_its_role(keyed: linkserver.LinkServer) -> None:
    for key, role in ((ADMIN, "admin"), (USER, "user")):
        with linkserver.connect(keyed.name, TIMEOUT, key=key) as client:
            link = keyed.accept(timeout=TIMEOUT)
            assert link.role == role
            client.put(wl.Plus(1, 2))
            assert link.get(timeout=TIMEOUT) == wl.Plus(1, 2)
            link.close()


def test_a_wrong_or_missing_key_is_refused_clearly(keyed: linkserver.LinkServer) -> None:
    with pytest.raises(AuthenticationError, match="key is wrong"):
        linkserver.connect(keyed.name, TIMEOUT, key="w" * 32)
    with pytest.raises(AuthenticationError, match="requires a key"):
        linkserver.connect(keyed.name, TIMEOUT, key=None)
    with pytest.raises(SecurityError, match="at least 16"):
        linkserver.connect(keyed.name, TIMEOUT, key="short")
    # Nothing half-open reached the program, and the server still serves.
    assert keyed.statistics().waiting == 0
    with linkserver.connect(keyed.name, TIMEOUT, key=ADMIN):
        assert keyed.accept(timeout=TIMEOUT).role == "admin"


def test_a_keyed_client_refuses_a_server_without_keys(server: linkserver.LinkServer) -> None:
    with pytest.raises(AuthenticationError, match="did not ask"):
        linkserver.connect(server.name, TIMEOUT, key=ADMIN)


def test_the_key_comes_from_the_environment(
    keyed: linkserver.LinkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINKSERVER_KEY", USER)
    with linkserver.connect(keyed.name, TIMEOUT):
        assert keyed.accept(timeout=TIMEOUT).role == "user"


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return security.self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[linkserver.LinkServer, str]]:
    context, fingerprint = security.server_context(*certificate)
    with linkserver.LinkServer(tls=context) as server:
        yield server, fingerprint


def test_tls_with_a_pinned_certificate_carries_a_link(
    tls_server: tuple[linkserver.LinkServer, str]
) -> None:
    server, fingerprint = tls_server
    with linkserver.connect(server.name, TIMEOUT, fingerprint=fingerprint) as client:
        link = server.accept(timeout=TIMEOUT)
        client.put("over TLS")
        assert link.get(timeout=TIMEOUT) == "over TLS"
        big = "x" * 300_000
        link.put(big)
        assert client.get(timeout=TIMEOUT) == big
        link.close()


def test_tls_refuses_another_certificate(tls_server: tuple[linkserver.LinkServer, str]) -> None:
    server, _fingerprint = tls_server
    with pytest.raises(SecurityError, match="not the pinned"):
        linkserver.connect(server.name, TIMEOUT, fingerprint="sha256:" + "0" * 64)
    with pytest.raises(ConnectFailed, match="not trusted"):
        linkserver.connect(server.name, TIMEOUT, tls=True)  # no pin, no CA: untrusted


def test_plain_and_tls_mixups_say_what_happened(
    tls_server: tuple[linkserver.LinkServer, str], server: linkserver.LinkServer
) -> None:
    tls, fingerprint = tls_server
    with pytest.raises((LinkBroken, NotALinkServerError), match="TLS"):
        linkserver.connect(tls.name, TIMEOUT, tls=False)
    with pytest.raises(ConnectFailed, match="does not speak TLS"):
        linkserver.connect(server.name, TIMEOUT, fingerprint=fingerprint)
    # Plain bytes to the TLS port and a TLS hello to the plain port hurt neither.
    for target in (tls, server):
        with socket.create_connection(("127.0.0.1", target.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n\x00\xff" * 10)
            sock.settimeout(TIMEOUT)
            while sock.recv(4096):
                pass
    with linkserver.connect(tls.name, TIMEOUT, fingerprint=fingerprint):
        tls.accept(timeout=TIMEOUT).close()


def test_key_and_tls_together(certificate: tuple[Path, Path]) -> None:
    context, fingerprint = security.server_context(*certificate)
    settings = linkserver.LinkSettings(keys=(("admin", ADMIN.encode()),))
    with linkserver.LinkServer(settings=settings, tls=context) as server:
        with linkserver.connect(server.name, TIMEOUT, key=ADMIN, fingerprint=fingerprint) as c:
            link = server.accept(timeout=TIMEOUT)
            c.put(7)
            assert link.get(timeout=TIMEOUT) == 7 and link.role == "admin"
        with pytest.raises(AuthenticationError):
            linkserver.connect(server.name, TIMEOUT, key=USER, fingerprint=fingerprint)


def test_a_bad_certificate_pair_is_one_sentence(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    other = security.self_signed(tmp_path)
    with pytest.raises(SecurityError, match="cannot use the TLS certificate"):
        security.server_context(certificate[0], other[1])
    with pytest.raises(SecurityError, match="cannot use"):
        security.server_context(tmp_path / "missing.crt", tmp_path / "missing.key")


# ------------------------------------------------------------------ connection files


def test_connection_files_are_private_found_by_address_and_skip_dead_servers(tmp_path: Path) -> None:
    info = security.ConnectionInfo(address="4000@127.0.0.1", key=ADMIN, pools=["default"])
    tmp_path.chmod(0o755)
    path = security.write_connection_file(info, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) & 0o077 == 0  # made private
    found = security.find_connection("4000@localhost", tmp_path)
    assert found is not None and found.key == ADMIN and found.pools == ["default"]
    assert security.find_connection("4000@127.0.0.1/other", tmp_path) is not None
    assert security.find_connection("4001@127.0.0.1", tmp_path) is None
    assert security.find_connection(None, tmp_path) is not None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = security.ConnectionInfo(address="4002@127.0.0.1", pid=int(dead.stdout))
    security.write_connection_file(stale, tmp_path)
    assert security.find_connection("4002@127.0.0.1", tmp_path) is None
    (tmp_path / "server-9-9.json").write_text("{not json")
    assert security.find_connection(None, tmp_path) is not None  # a broken file is skipped
    security.remove_connection_file(path)
    assert not path.exists()
    security.remove_connection_file(path)  # twice is fine


def test_key_files(tmp_path: Path) -> None:
    good = tmp_path / "key"
    good.write_text(ADMIN + "\nignored\n")
    assert security.read_key_file(good) == ADMIN.encode()
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(SecurityError, match="at least 16"):
        security.read_key_file(short)
    with pytest.raises(SecurityError, match="cannot read"):
        security.read_key_file(tmp_path / "missing")


def test_serve_writes_a_private_connection_file_that_clients_use_and_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINKSERVER_RUNTIME_DIR", str(tmp_path))
    with start("-m", "linkserver", "serve", "--demo", "--port", "0", "--tls") as proc:
        name = wait_for_name(proc)
        wait_until(lambda: list(tmp_path.glob("server-*.json")), TIMEOUT)
        (path,) = tmp_path.glob("server-*.json")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        info = security.find_connection(name, tmp_path)
        assert info is not None and info.key and info.tls and info.fingerprint
        assert info.key not in proc.stdout.readline() if proc.stdout else True
        # Found by itself: no key, no TLS options given.
        with linkserver.connect(name, TIMEOUT) as link:
            assert link.get(timeout=TIMEOUT) == wl.Print("Hello client program.")
        with pytest.raises(AuthenticationError):
            linkserver.connect(name, TIMEOUT, key="n" * 32)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
    assert not list(tmp_path.iterdir()), "connection file and certificate removed on exit"


def test_cli_clients_find_the_server_without_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINKSERVER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("LINKSERVER_ADDRESS", raising=False)
    with start("-m", "linkserver", "serve", "--demo", "--port", "0") as proc:
        wait_for_name(proc)
        wait_until(lambda: list(tmp_path.glob("server-*.json")), TIMEOUT)
        # The demo server echoes; `status` shows its greeting as an unexpected answer,
        # which proves the link (key included) was made with no name and no key given.
        done = subprocess.run([sys.executable, "-m", "linkserver", "status"], cwd=ROOT,
                              capture_output=True, text=True, timeout=TIMEOUT * 3)
        assert done.returncode == 0 and "Hello client program" in done.stdout, done.stderr
        wrong = tmp_path / "wrong.key"
        wrong.write_text("w" * 32)
        done = subprocess.run(
            [sys.executable, "-m", "linkserver", "status", "--key-file", str(wrong)],
            cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT * 3,
        )
        assert done.returncode == 3 and "key is wrong" in done.stderr


# ------------------------------------------------------------------ protected mode


def serve_and_exit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkserver", "serve", "--demo", "--port", "0", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT * 3, stdin=subprocess.DEVNULL,
    )


def test_protected_mode_refuses_an_open_interface_without_key_or_tls() -> None:
    done = serve_and_exit("--interface", "0.0.0.0", "--no-key")
    assert done.returncode == 3
    assert "neither a key nor TLS" in done.stderr and "--insecure" in done.stderr
    assert done.stderr.count("\n") == 1  # one sentence, no traceback


@pytest.mark.parametrize("extra", [["--insecure", "--no-key"], []])
def test_protected_mode_lets_a_key_or_insecure_through(extra: list[str]) -> None:
    with start("-m", "linkserver", "serve", "--demo", "--port", "0", "--interface", "0.0.0.0",
               *extra) as proc:
        name = wait_for_name(proc)
        port = int(name.split("@")[0])
        with linkserver.connect(f"{port}@127.0.0.1", TIMEOUT) as link:
            assert link.get(timeout=TIMEOUT) == wl.Print("Hello client program.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-key", "--key-file", "x"], "contradicts"),
        (["--tls-cert", "x.pem"], "go together"),
        (["--key-file", os.devnull], "at least 16"),
    ],
)
def test_bad_security_options_are_one_sentence(args: list[str], message: str) -> None:
    done = serve_and_exit(*args)
    assert done.returncode == 3 and message in done.stderr, done.stderr


# ------------------------------------------------------------------ roles


def test_only_admins_stop_the_server_or_see_its_status() -> None:
    from linkserver.portal import get_portal
    from linkserver.status import STATUS_MESSAGE
    from tests.integration.test_service import KERNEL_TIMEOUT, start_service
    from tests.packets import collect

    settings = linkserver.LinkSettings(keys=(("admin", ADMIN.encode()), ("user", USER.encode())))
    service = start_service(mode="shared", settings=settings)
    try:
        with linkserver.connect(service.name, TIMEOUT, key=USER) as user:
            user.send_message(STATUS_MESSAGE)
            refused = user.get(timeout=KERNEL_TIMEOUT)
            assert "only a client holding an admin key" in str(refused)
            user.put(wl.EvaluatePacket(wl.Set(wl.Global.__getattr__("$KeepRunning"), False)))
            packets = collect(user, "ReturnPacket", KERNEL_TIMEOUT)
            assert wl.MessagePacket(wl.LinkServer, "notallowed") in packets
            user.put(wl.EvaluatePacket(wl.Plus(1, 1)))
            assert collect(user, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(2)]
        with linkserver.connect(service.name, TIMEOUT, key=ADMIN) as admin:
            admin.send_message(STATUS_MESSAGE)
            status = admin.get(timeout=KERNEL_TIMEOUT)
            assert isinstance(status.args[0], dict) and status.args[0]["mode"] == "shared"
            admin.put(wl.EvaluatePacket(wl.Set(wl.Global.__getattr__("$KeepRunning"), False)))
            assert collect(admin, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(False)]
            get_portal().call(service.wait_stop_requested(), timeout=KERNEL_TIMEOUT)
    finally:
        get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def test_access_table_in_the_configuration() -> None:
    from linkserver.config import ConfigError, parse_config

    config = parse_config({"pools": {"a": {}}, "access": {"stop": "nobody", "status": "anyone"}})
    assert (config.stop_allowed, config.status_allowed) == ("nobody", "anyone")
    with pytest.raises(ConfigError, match="access.stop must be one of"):
        parse_config({"pools": {"a": {}}, "access": {"stop": "everyone"}})
    with pytest.raises(ConfigError, match="access.who is not an access setting"):
        parse_config({"pools": {"a": {}}, "access": {"who": "admin"}})


def test_auth_failures_are_logged_as_such(
    keyed: linkserver.LinkServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="linkserver"):
        with pytest.raises(AuthenticationError):
            linkserver.connect(keyed.name, TIMEOUT, key="w" * 32)
        wait_until(lambda: any(getattr(r, "event", "") == "auth-failed" for r in caplog.records),
                   TIMEOUT)
    (record,) = [r for r in caplog.records if getattr(r, "event", "") == "auth-failed"]
    assert "key" in str(record.fields["reason"])  # type: ignore[attr-defined]
