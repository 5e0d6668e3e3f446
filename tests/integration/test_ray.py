"""Kernels on a Ray cluster, end to end: a head and a second node on this machine.

One Ray cluster for the module (``ray.cluster_utils.Cluster``: a head and a
node of their own raylets, the second offering the custom resource
``side``, each offering one ``slot``), in a temporary HOME so that Ray's token
and session files stay out of the user's own. One KernelService on it with four
pools: ``anywhere`` (the default, kernels on any node), ``side`` (kernels that
book ``side``, so only the second node holds them), ``spread`` (kernels that
book a ``slot``, so two of them run on two nodes) and ``nowhere`` (a resource
no node offers).
Each test asks for a few kernels at most; the module stays near a minute.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLSymbol

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'linkserver[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

import linkserver  # noqa: E402
from linkserver.config import PoolConfig, ServerConfig  # noqa: E402
from linkserver.errors import AuthenticationError, LinkError  # noqa: E402
from linkserver.launcher import RayOptions  # noqa: E402
from linkserver.launcher.ray import RayKernelHandle, RayLauncher  # noqa: E402
from linkserver.portal import get_portal  # noqa: E402
from linkserver.security import self_signed, server_context  # noqa: E402
from linkserver.service import KernelService  # noqa: E402
from linkserver.status import STATUS_MESSAGE  # noqa: E402
from tests.packets import collect  # noqa: E402
from tests.timeouts import TIMEOUT, wait_until  # noqa: E402

pytestmark = pytest.mark.slow

#: Ray's start, a node's raylet and a template loading Mathics3 each take seconds.
RAY_TIMEOUT = TIMEOUT * 9
DIED = wl.MessagePacket(wl.LinkServer, "kerneldied")
#: Ray notices a lost raylet by health checks; these make it seconds, not a minute.
FAST_HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}
#: The second node: what the ``side`` pool needs, and one ``slot``.
SIDE_NODE: dict[str, Any] = {"num_cpus": 2, "resources": {"side": 2, "slot": 1}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    home = tempfile.TemporaryDirectory(prefix="linkserver-ray-home-")
    saved = {k: os.environ.get(k) for k in ("HOME", "RAY_ADDRESS")}
    os.environ["HOME"] = home.name  # Ray writes ~/.ray/auth_token and session files
    os.environ.pop("RAY_ADDRESS", None)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"slot": 1}, "include_dashboard": False,
        "_system_config": FAST_HEALTH,
    })
    cluster.add_node(**SIDE_NODE)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        home.cleanup()


def _options(**resources: float) -> RayOptions:
    return RayOptions(num_cpus=0.25, resources=tuple(sorted(resources.items())))


@pytest.fixture(scope="module")
def service(cluster: Cluster) -> Iterator[KernelService]:
    config = ServerConfig((
        PoolConfig("anywhere", "pool", min=1, max=2, wait=RAY_TIMEOUT, ray=_options()),
        PoolConfig("side", "pool", min=1, max=2, wait=RAY_TIMEOUT, ray=_options(side=1)),
        PoolConfig("spread", "pool", min=2, max=2, wait=RAY_TIMEOUT, ray=_options(slot=1)),
        PoolConfig("nowhere", "pool", min=1, max=1, wait=RAY_TIMEOUT, ray=_options(gpu_node=1)),
    ), "anywhere")
    service = KernelService(0, "127.0.0.1", config=config, ray=cluster.address)
    get_portal().call(service.start(), timeout=RAY_TIMEOUT)
    try:
        yield service
    finally:
        get_portal().call(service.aclose(), timeout=RAY_TIMEOUT)


def _node_ids() -> dict[str, str]:
    """Node id -> "head" or "side", from Ray's own list."""
    return {
        node["NodeID"]: "side" if "side" in node["Resources"] else "head"
        for node in ray.nodes() if node["Alive"]
    }


def _serving(service: KernelService, pool: str) -> RayKernelHandle:
    """The one kernel of ``pool`` that serves a client now."""
    workers = list(service.pools[pool].broker._workers.values())  # type: ignore[union-attr]
    assert len(workers) == 1
    kernel = workers[0].kernel
    assert isinstance(kernel, RayKernelHandle)
    return kernel


def evaluate(link: linkserver.Link, expr: Any) -> list[Any]:
    link.put(wl.EvaluatePacket(expr))
    return collect(link, "ReturnPacket", RAY_TIMEOUT)


def pool_link(service: KernelService, pool: str) -> linkserver.Link:
    """A raw link bound to ``pool`` (its first packet chooses it, docs/protocol.md §8.6)."""
    link = linkserver.connect(service.name, RAY_TIMEOUT)
    link.put(wl.LinkServerSelect({"pool": pool}))
    bound = link.get(RAY_TIMEOUT)
    assert bound.args[0]["pool"] == pool
    return link


def status(service: KernelService) -> dict[str, Any]:
    with linkserver.connect(service.name) as link:
        link.send_message(STATUS_MESSAGE)
        answer = link.get(RAY_TIMEOUT)
    info = answer.args[0]
    assert isinstance(info, dict)
    return info


def test_a_ray_kernel_evaluates_over_its_own_link_and_status_names_its_node(
    service: KernelService,
) -> None:
    with linkserver.Client(service.name, timeout=RAY_TIMEOUT) as client:
        assert client.evaluate("x = 6; x * 7") == 42
        assert client.evaluate("x") == 6  # its own kernel keeps its state
        kernel = _serving(service, "anywhere")
        assert kernel.ray_node.id in _node_ids()
        assert kernel.pid > 0 and kernel.info["id"] == kernel.id
        info = status(service)
        assert info["placement"] == "ray"
        line = next(w for w in info["where"] if w.startswith(f"anywhere {kernel.id} "))
        assert f"pid {kernel.pid}" in line and str(kernel.ray_node) in line


def test_a_pool_asking_for_a_nodes_resource_runs_its_kernels_under_that_node(
    service: KernelService,
) -> None:
    with linkserver.Client(service.name, pool="side", timeout=RAY_TIMEOUT) as client:
        assert client.evaluate("1 + 1") == 2
        kernel = _serving(service, "side")
        assert _node_ids()[kernel.ray_node.id] == "side"
        # The kernel's process really is on that node: a child of the node's raylet tree.
        assert kernel.info.get("pid") == kernel.pid


def test_a_stranger_without_the_key_cannot_pose_as_a_kernel(service: KernelService) -> None:
    launcher = service.pools["anywhere"].launcher
    assert isinstance(launcher, RayLauncher)
    with pytest.raises(AuthenticationError):
        linkserver.connect(launcher.address, TIMEOUT, key="0" * 64)
    # With the key but without a kernel's greeting, or with an id nobody waits for,
    # the endpoint closes the link instead of serving it.
    for first in (wl.f(1), wl.KernelReady({"id": "0123456789ab", "pid": 1})):
        with linkserver.connect(launcher.address, TIMEOUT, key=launcher._key) as intruder:
            intruder.put(first)
            with pytest.raises(LinkError):
                intruder.get(TIMEOUT)


def test_a_server_with_tls_has_its_kernels_dial_its_endpoint_over_tls(
    cluster: Cluster, tmp_path: Any,
) -> None:
    context, fingerprint = server_context(*self_signed(tmp_path))
    config = ServerConfig((
        PoolConfig("sealed", "pool", min=1, max=1, wait=RAY_TIMEOUT, ray=_options()),
    ), "sealed")
    sealed = KernelService(0, "127.0.0.1", config=config, ray=cluster.address, tls=context)
    get_portal().call(sealed.start(), timeout=RAY_TIMEOUT)
    try:
        launcher = sealed.pools["sealed"].launcher
        assert isinstance(launcher, RayLauncher)
        # The endpoint has a certificate of its own, which its kernels pin.
        assert launcher.fingerprint is not None and launcher.fingerprint != fingerprint
        with linkserver.Client(sealed.name, tls=True, fingerprint=fingerprint,
                               timeout=RAY_TIMEOUT) as client:
            assert client.evaluate("1 + 1") == 2  # so its kernel came in over TLS
        # It speaks nothing but TLS: the right key over plain TCP does not get in.
        with pytest.raises(LinkError):
            linkserver.connect(launcher.address, TIMEOUT, key=launcher._key, tls=False)
    finally:
        get_portal().call(sealed.aclose(), timeout=RAY_TIMEOUT)


def test_a_killed_actor_costs_its_request_one_answer_naming_the_node(
    service: KernelService,
) -> None:
    with linkserver.connect(service.name, RAY_TIMEOUT) as link:
        evaluate(link, wlexpr("beforeDeath = 1"))
        link.put(wl.EvaluatePacket(wlexpr('Print["running"]; While[True, 1]')))
        assert link.get(RAY_TIMEOUT) == wl.TextPacket("running")
        kernel = _serving(service, "anywhere")
        ray.kill(kernel.actor, no_restart=True)
        answer = [link.get(RAY_TIMEOUT) for _ in range(3)]
        assert answer[0] == DIED
        assert str(kernel.ray_node) in answer[1].args[0]
        assert answer[2] == wl.ReturnPacket(WLSymbol("$Failed"))
        # Never a re-run: the next request runs on a fresh kernel, where nothing was defined.
        assert evaluate(link, wlexpr("beforeDeath"))[-1] == wl.ReturnPacket(wl.beforeDeath)
        assert _serving(service, "anywhere") is not kernel


def test_a_pool_no_node_can_hold_says_so_to_its_client_and_in_status(
    service: KernelService,
) -> None:
    assert wait_until(lambda: bool(service.pools["nowhere"].problem), RAY_TIMEOUT)
    problems = status(service)["problems"]
    assert any("pool nowhere:" in p and "gpu_node=1" in p for p in problems)
    # The client is told at once, not after its wait of RAY_TIMEOUT.
    with pytest.raises(LinkError, match="no node of the Ray cluster offers"):
        linkserver.Client(service.name, pool="nowhere", timeout=RAY_TIMEOUT)


def test_map_spreads_over_kernels_on_two_nodes_and_one_failing_item_is_its_own_result(
    service: KernelService,
) -> None:
    launcher = service.pools["spread"].launcher
    seen: dict[int, str] = {}  # kernel pid -> its node, while the map runs

    def progress(_done: int, _total: int) -> None:
        seen.update({k.pid: k.ray_node.id for k in list(launcher.handles())
                     if isinstance(k, RayKernelHandle)})

    # Both kernels warm first (each node's template loads Mathics3 once), and items long
    # enough that the first kernel cannot take them all before the second link is open.
    assert wait_until(lambda: len(launcher.handles()) == 2, RAY_TIMEOUT)
    with linkserver.Client(service.name, timeout=RAY_TIMEOUT) as client:
        results = client.map("If[# == 3, $Failed, Pause[0.1]; {#^2, $ProcessID}] &", range(8),
                             pool="spread", kernels=2, timeout=RAY_TIMEOUT,
                             on_progress=progress)
    failed = results[3]
    assert isinstance(failed, linkserver.MapItemError) and failed.index == 3
    assert failed.value == WLSymbol("$Failed")
    rest = results[:3] + results[4:]
    assert [square for square, _pid in rest] == [0, 1, 4, 16, 25, 36, 49]
    # Each node offers one slot and each kernel books one: the two kernels ran on two nodes.
    pids = {pid for _square, pid in rest}
    assert len(pids) == 2 and pids <= seen.keys()
    assert {_node_ids()[seen[pid]] for pid in pids} == {"head", "side"}


def test_a_lost_node_costs_one_answer_the_pool_says_so_and_a_new_node_serves_it(
    service: KernelService, cluster: Cluster,
) -> None:
    side = next(n for n in cluster.worker_nodes)
    with pool_link(service, "side") as link:
        link.put(wl.EvaluatePacket(wlexpr('Print["running"]; While[True, 1]')))
        assert link.get(RAY_TIMEOUT) == wl.TextPacket("running")
        kernel = _serving(service, "side")
        cluster.remove_node(side, allow_graceful=False)
        answer = [link.get(RAY_TIMEOUT) for _ in range(3)]
        assert answer[0] == DIED and answer[2] == wl.ReturnPacket(WLSymbol("$Failed"))
        assert str(kernel.ray_node) in answer[1].args[0]
        lost = kernel.ray_node.id
        # No node offers "side" now: the pool says so (once Ray has noticed the loss).
        assert wait_until(lambda: "no node" in service.pools["side"].problem, RAY_TIMEOUT)
        # Nothing of the lost node is left in status; the other pools serve from the head.
        assert wait_until(lambda: not any(lost[:12] in w for w in status(service)["where"]),
                          RAY_TIMEOUT)
        with linkserver.Client(service.name, pool="spread", timeout=RAY_TIMEOUT) as client:
            assert client.evaluate("3 + 3") == 6
            assert _node_ids()[_serving(service, "spread").ray_node.id] == "head"
        # A node that offers it joins: the pool refills there and serves again, on the
        # same link, and the request that died with the node is never run again.
        cluster.add_node(**SIDE_NODE)
        cluster.wait_for_nodes()
        again = evaluate(link, wlexpr("1 + 1"))
        assert again == [wl.ReturnPacket(2)]
        kernel = _serving(service, "side")
        assert kernel.ray_node.id != lost and _node_ids()[kernel.ray_node.id] == "side"
    with linkserver.Client(service.name, pool="side", timeout=RAY_TIMEOUT) as client:
        assert client.evaluate("2 + 2") == 4
    assert service.pools["side"].problem == ""
