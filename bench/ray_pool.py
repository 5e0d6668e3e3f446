"""Kernels placed on Ray against kernels on this machine, on a two-node cluster here.

The cluster is Ray's own test cluster (``ray.cluster_utils.Cluster``): a head and one
more node, each with its own raylet, all on this machine, in a temporary HOME. One
server (a :class:`~linkserver.service.KernelService` in this process, which is also
Ray's driver) runs four pools: ``local`` (processes here, the usual launcher),
``remote`` (kernels that book the node's custom resource ``node``, so they run on the
second node, two kept warm), ``cold`` (the same, none kept warm) and ``spread`` (one
kernel per node, for ``map``).

Figures, measured in this run:

* ``ray.roundtrip.local`` / ``.remote``: ``client.evaluate("1+1")`` on a kernel of each
  pool, median; ``ray.roundtrip.ratio`` is remote over local (target: <= 1.2). The
  remote kernel's link is TCP to the server; the local kernel's is a Unix socket;
* ``ray.first_answer.warm``: from asking for a kernel of ``remote`` (a ``Client`` that
  selects the pool) to the answer to its first ``1+1``, with warm kernels waiting on
  the node (target: <= 200 ms); ``.local`` is the same for the local pool;
* ``ray.first_answer.cold``: the same for ``cold``, which has no warm kernel: Ray places
  an actor and the node's template forks a kernel; ``.cold_first`` is the first such
  kernel of the pool on the node, when its template must first load Mathics3;
* ``ray.map.efficiency``: ``client.map`` of 200 ``Pause[0.01]`` over the two kernels of
  ``spread`` (one per node), ideal (1 s) over the time measured (target: >= 0.8);
  ``.local_efficiency`` is the same map over two kernels of ``local``;
* ``ray.memory.head`` / ``.node``: PSS of each node's Ray processes and everything they
  started (raylet, GCS on the head, workers, actors, templates, kernels), with the
  pools' warm kernels running (``ray.kernels.head`` / ``.node`` say how many);
  ``ray.memory.server`` is this process (server and driver); ``.per_kernel`` is a placed
  kernel process, ``.per_actor`` the Ray worker process that holds its place.

    .venv/bin/python bench/ray_pool.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness import report

import linkserver
from linkserver.config import PoolConfig, ServerConfig
from linkserver.launcher import RayOptions
from linkserver.portal import get_portal
from linkserver.service import KernelService

ROUNDTRIPS = 200
ASKS = 7
TIMEOUT = 180.0


def _pss_mb(pids: Iterable[int]) -> float:
    total_kib = 0
    for pid in set(pids):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # gone meanwhile
            continue
        total_kib += sum(int(line.split()[1]) for line in rollup.splitlines()
                         if line.startswith("Pss:"))
    return total_kib / 1024


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _tree(node: Any) -> set[int]:
    """Every live process a Ray node started, and their descendants."""
    parents = _parents()
    pids = {info.process.pid for infos in node.all_processes.values() for info in infos
            if info.process.pid in parents}
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in pids} - pids
        pids |= more
        grew = bool(more)
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {TIMEOUT:g} s")
        time.sleep(0.05)


def _roundtrip(service: KernelService, pool: str) -> float:
    with linkserver.Client(service.name, pool=pool, timeout=TIMEOUT) as client:
        for _ in range(30):
            client.evaluate("1+1")
        times = []
        for _ in range(ROUNDTRIPS):
            start = time.perf_counter()
            client.evaluate("1+1")
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _first_answer(service: KernelService, pool: str, warm: int) -> float:
    """Median seconds from asking for a kernel of ``pool`` to its first answer; before
    each ask, wait until ``warm`` kernels are ready (the pool refills after each)."""
    broker = service.pools[pool].broker
    times = []
    for _ in range(ASKS):
        _wait(lambda: broker.statistics().warm >= warm, f"pool {pool} warming")  # type: ignore[attr-defined]
        start = time.perf_counter()
        with linkserver.Client(service.name, pool=pool, timeout=TIMEOUT) as client:
            assert client.evaluate("1+1") == 2
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cold(service: KernelService) -> tuple[float, float]:
    times = []
    for _ in range(4):
        start = time.perf_counter()
        with linkserver.Client(service.name, pool="cold", timeout=TIMEOUT) as client:
            assert client.evaluate("1+1") == 2
            times.append(time.perf_counter() - start)
        launcher = service.pools["cold"].launcher
        _wait(lambda: not launcher.handles(), "the cold kernel's end")
    return times[0], statistics.median(times[1:])


def _map(service: KernelService, pool: str) -> float:
    launcher = service.pools[pool].launcher
    with linkserver.Client(service.name, timeout=TIMEOUT) as client:
        times = []
        for _ in range(3):
            _wait(lambda: len(launcher.handles()) >= 2, f"two kernels of pool {pool}")
            start = time.perf_counter()
            results = client.map("Pause[0.01]&", range(200), pool=pool, kernels=2,
                                 timeout=TIMEOUT)
            times.append(time.perf_counter() - start)
            failed = [r for r in results if isinstance(r, linkserver.MapItemError)]
            assert not failed, f"{len(failed)} items failed, the first: {failed[0]}"
    return 200 * 0.01 / 2 / statistics.median(times)


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    home = tempfile.TemporaryDirectory(prefix="linkserver-ray-bench-")
    os.environ["HOME"] = home.name  # Ray writes its token and session files under HOME
    os.environ.pop("RAY_ADDRESS", None)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"slot": 1}, "include_dashboard": False,
    })
    node = cluster.add_node(num_cpus=2, resources={"node": 8, "slot": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    remote = RayOptions(num_cpus=0.1, resources=(("node", 1.0),))
    config = ServerConfig((
        PoolConfig("local", "pool", min=2, max=3, wait=TIMEOUT, placement="local"),
        PoolConfig("remote", "pool", min=2, max=3, wait=TIMEOUT, ray=remote),
        PoolConfig("cold", "pool", min=0, max=1, wait=TIMEOUT, ray=remote),
        PoolConfig("spread", "pool", min=2, max=2, wait=TIMEOUT,
                   ray=RayOptions(num_cpus=0.1, resources=(("slot", 1.0),))),
    ), "local")
    service = KernelService(0, "127.0.0.1", config=config, ray=cluster.address)
    portal = get_portal()
    portal.call(service.start(), timeout=TIMEOUT)
    try:
        # Every pool warm first: a template loading Mathics3 meanwhile would take the CPU.
        for pool in ("local", "remote", "spread"):
            _wait(lambda: service.pools[pool].broker.statistics().warm >= 2,  # type: ignore[attr-defined]
                  f"pool {pool} warming")
        rounds = [(_roundtrip(service, "local"), _roundtrip(service, "remote")) for _ in range(3)]
        local = statistics.median(r[0] for r in rounds)
        placed = statistics.median(r[1] for r in rounds)
        report("ray.roundtrip.local", local * 1e6, "us")
        report("ray.roundtrip.remote", placed * 1e6, "us")
        report("ray.roundtrip.ratio", placed / local, "x (target <= 1.2)")
        report("ray.first_answer.local", _first_answer(service, "local", 2) * 1e3, "ms")
        report("ray.first_answer.warm", _first_answer(service, "remote", 2) * 1e3,
               "ms (target <= 200)")
        cold_first, cold = _cold(service)
        report("ray.first_answer.cold_first", cold_first * 1e3, "ms (template loads Mathics3)")
        report("ray.first_answer.cold", cold * 1e3, "ms (actor placed, kernel forked)")
        report("ray.map.efficiency", _map(service, "spread"), "of ideal (target >= 0.8)")
        report("ray.map.local_efficiency", _map(service, "local"), "of ideal (same map, local pool)")
        _wait(lambda: len(service.pools["spread"].launcher.handles()) == 2, "spread refill")
        report("ray.memory.head", _pss_mb(_tree(cluster.head_node)), "MB PSS")
        report("ray.memory.node", _pss_mb(_tree(node)), "MB PSS")
        report("ray.memory.server", _pss_mb([os.getpid()]), "MB PSS")
        kernels = [k.pid for n, p in service.pools.items() if n != "local"
                   for k in p.launcher.handles()]
        actors = [pid for pid in _tree(cluster.head_node) | _tree(node)
                  if "KernelActor" in _cmdline(pid)]
        report("ray.memory.per_kernel", _pss_mb(kernels) / len(kernels), "MB PSS (kernel process)")
        report("ray.memory.per_actor", _pss_mb(actors) / max(len(actors), 1),
               "MB PSS (its Ray actor worker)")
        head_id = ray.get_runtime_context().get_node_id()  # the driver runs on the head
        placed_on = [getattr(k, "ray_node").id for n, p in service.pools.items() if n != "local"
                     for k in p.launcher.handles()]
        report("ray.kernels.head", placed_on.count(head_id), "kernels (and 1 template)")
        report("ray.kernels.node", len(placed_on) - placed_on.count(head_id),
               "kernels (and 2 templates)")
    finally:
        portal.call(service.aclose(), timeout=TIMEOUT)
        ray.shutdown()
        cluster.shutdown()
        home.cleanup()


if __name__ == "__main__":
    main()
