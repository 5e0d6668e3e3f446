"""Kept kernels that outlive their server, on Ray's own test cluster on this machine.

The cluster is test_ray.py's (a head and a ``side`` node, a temporary HOME).
A server whose pool has a keep-alive places every kernel as a detached actor
named from its ``server_id``; these tests kill such a server with SIGKILL (it
runs as ``linkserver serve`` in a process of its own), stop one the orderly
way, and run two servers side by side, and check that the kept kernels come
back with their definitions to the same server identity and to no other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wolframclient.language import wl, wlexpr

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'linkserver[ray]')")

import linkserver  # noqa: E402
from linkserver.config import PoolConfig, ServerConfig  # noqa: E402
from linkserver.errors import LinkError  # noqa: E402
from linkserver.launcher import RayOptions  # noqa: E402
from linkserver.portal import get_portal  # noqa: E402
from linkserver.security import new_key  # noqa: E402
from linkserver.service import KernelService  # noqa: E402
from tests.integration.test_ray import RAY_TIMEOUT, cluster, evaluate  # noqa: E402,F401
from tests.procs import stop  # noqa: E402
from tests.timeouts import wait_until  # noqa: E402

pytestmark = pytest.mark.slow

NAMESPACE = "linkserver-kept-tests"
#: Long enough that nothing expires while a test runs; the short pool's is one second.
KEEP = RAY_TIMEOUT * 2


def kept_actors(server_id: str, pool: str) -> set[str]:
    """The kernel ids of the live actors named for ``server_id``'s ``pool``."""
    prefix = f"linkserver-kept:{server_id}:{pool}:"
    return {
        entry["name"][len(prefix):]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == NAMESPACE and entry["name"].startswith(prefix)
    }


def _config_file(path: Path, server_id: str) -> Path:
    path.write_text(f"""
server_id = "{server_id}"
[pools.kept]
mode = "pool"
min = 0
max = 4
wait = {RAY_TIMEOUT}
keepalive = {KEEP}
[pools.kept.ray]
num_cpus = 0.25
namespace = "{NAMESPACE}"
""")
    return path


class Served:
    """``linkserver serve`` in a process of its own (so that a test can SIGKILL it)."""

    def __init__(self, address: str, config: Path, key_file: Path) -> None:
        env = dict(os.environ)
        src = str(Path(linkserver.__file__).parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "linkserver", "serve", "--ray", address, "--config",
             str(config), "--port", "0", "--interface", "127.0.0.1", "--key-file",
             str(key_file), "--log-level", "info"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        assert self.proc.stdout is not None
        #: what it printed and logged, for the message of a failing assert
        self.seen: list[str] = []
        for line in self.proc.stdout:  # ends if the server exits: then the assert says why
            self.seen.append(line)
            if " listening on " in line:
                self.name = line.split(" listening on ")[1].strip()
                break
        else:
            raise AssertionError("the server did not start:\n" + "".join(self.seen))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.seen.append(line)
        except ValueError:  # closed
            pass

    def output(self) -> str:
        return "".join(self.seen)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(RAY_TIMEOUT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            stop(self.proc)
            self._reader.join(RAY_TIMEOUT)
        print(self.output())  # shown by pytest when the test failed


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    key = new_key()
    path = tmp_path_factory.mktemp("keys") / "admin.key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    yield path, key


def test_a_sigkilled_server_started_again_adopts_its_kept_kernels_with_their_definitions(
    cluster: Any, key_file: tuple[Path, str], tmp_path: Path,
) -> None:
    path, key = key_file
    config = _config_file(tmp_path / "pools.toml", "alpha")
    first = Served(cluster.address, config, path)
    try:
        # One kept kernel parked (its client left), one kept and in use, one not kept.
        with linkserver.Client(first.name, pool="kept", persistent=True, key=key,
                               timeout=RAY_TIMEOUT) as parked:
            assert parked.evaluate("x = 6 * 7") == 42
            parked_id = parked.kernel_id
        using = linkserver.connect(first.name, RAY_TIMEOUT, key=key)
        passing = linkserver.Client(first.name, pool="kept", key=key, timeout=RAY_TIMEOUT)
        try:
            using.put(wl.LinkServerSelect({"pool": "kept", "persistent": True}))
            using_id = using.get(RAY_TIMEOUT).args[0]["kernel"]
            assert evaluate(using, wlexpr("f[n_] := n + 1; runs = 0; f[1]")) == [wl.ReturnPacket(2)]
            assert passing.evaluate("z = 3") == 3
            assert len(kept_actors("alpha", "kept")) == 3
            # The kernel in use is evaluating when its server dies.
            using.put(wl.EvaluatePacket(wlexpr('runs++; Print["running"]; While[True, 1]')))
            assert using.get(RAY_TIMEOUT) == wl.TextPacket("running")
            first.kill()
            # The two kept kernels wait for their server; the one kept for no one ends.
            assert wait_until(lambda: len(kept_actors("alpha", "kept")) == 2, RAY_TIMEOUT)
        finally:
            using.close()
            passing.close()
        waiting = kept_actors("alpha", "kept")
        again = Served(cluster.address, config, path)
        try:
            # The same two actors, adopted: no kernel was placed anew for them.
            assert kept_actors("alpha", "kept") == waiting
            with linkserver.Client(again.name, pool="kept", kernel=parked_id, key=key,
                                   timeout=RAY_TIMEOUT) as back:
                assert back.evaluate("x") == 42
            # The kernel that was evaluating when its server died comes back by its id
            # too: the evaluation was stopped, not run again, and the definitions stay.
            with linkserver.Client(again.name, pool="kept", kernel=using_id, key=key,
                                   timeout=RAY_TIMEOUT) as back:
                assert back.evaluate("f[41]") == 42
                assert back.evaluate("runs") == 1
            # Each was taken back by its last client (not persistent): now it ends.
            assert wait_until(lambda: not kept_actors("alpha", "kept"), RAY_TIMEOUT)
        finally:
            again.close()
    finally:
        first.close()


def _service(address: str, server_id: str, *pools: tuple[str, float]) -> KernelService:
    """A server in this process with a pool of each ``(name, keepalive)``, started."""
    options = RayOptions(num_cpus=0.25, namespace=NAMESPACE)
    config = ServerConfig(tuple(
        PoolConfig(name, "pool", min=0, max=2, wait=RAY_TIMEOUT, keepalive=keep, ray=options)
        for name, keep in pools
    ), pools[0][0], server_id=server_id)
    service = KernelService(0, "127.0.0.1", config=config, ray=address)
    get_portal().call(service.start(), timeout=RAY_TIMEOUT)
    return service


def _close(*services: KernelService) -> None:
    for service in services:
        get_portal().call(service.aclose(), timeout=RAY_TIMEOUT)


def test_two_servers_on_one_cluster_do_not_take_each_others_kernels(cluster: Any) -> None:
    beta = _service(cluster.address, "beta", ("kept", KEEP))
    try:
        with linkserver.Client(beta.name, pool="kept", persistent=True,
                               timeout=RAY_TIMEOUT) as client:
            assert client.evaluate("w = 1") == 1
            kernel = client.kernel_id
        # Another server on the cluster and namespace does not even look at them ...
        gamma = _service(cluster.address, "gamma", ("kept", KEEP))
        # ... and a second one that claims the same identity while beta runs is refused
        # by the kernel's actor: the kernel is linked to a live server.
        twin = _service(cluster.address, "beta", ("kept", KEEP))
        try:
            for other in (gamma, twin):
                with pytest.raises(LinkError, match="nokernel"):
                    linkserver.Client(other.name, pool="kept", kernel=kernel,
                                      timeout=RAY_TIMEOUT)
                assert other.pools["kept"].broker.statistics().parked == 0
        finally:
            _close(gamma, twin)
        # The kernel is still beta's, definitions and all.
        with linkserver.Client(beta.name, pool="kept", kernel=kernel,
                               timeout=RAY_TIMEOUT) as client:
            assert client.evaluate("w + 1") == 2
    finally:
        _close(beta)


def test_a_server_stopped_and_started_again_adopts_them_and_the_unadopted_end(
    cluster: Any,
) -> None:
    """The orderly stop of an upgrade: kept kernels are let go, not stopped."""
    first = _service(cluster.address, "delta", ("kept", KEEP), ("brief", 1.0))
    try:
        with linkserver.Client(first.name, pool="kept", persistent=True,
                               timeout=RAY_TIMEOUT) as client:
            assert client.evaluate("v = 5") == 5
            kept = client.kernel_id
        brief = linkserver.Client(first.name, pool="brief", persistent=True,
                                  timeout=RAY_TIMEOUT)
        assert brief.evaluate("u = 1") == 1
        assert kept_actors("delta", "kept") and kept_actors("delta", "brief")
    finally:
        _close(first)
    brief.close()
    # Started again without the pool "brief": its kept kernel waits its keep-alive
    # (one second) for a server that adopts it, and then it ends.
    again = _service(cluster.address, "delta", ("kept", KEEP))
    try:
        assert wait_until(lambda: not kept_actors("delta", "brief"), RAY_TIMEOUT)
        with linkserver.Client(again.name, pool="kept", kernel=kept, persistent=True,
                               timeout=RAY_TIMEOUT) as client:
            assert client.evaluate("v * 2") == 10
    finally:
        _close(again)
    # Kept (persistent) again when this server stopped: it waits once more, for its
    # keep-alive; nothing of it must outlive the module's cluster, so it is ended here.
    for kernel_id in kept_actors("delta", "kept"):
        ray.kill(ray.get_actor(f"linkserver-kept:delta:kept:{kernel_id}", NAMESPACE))
