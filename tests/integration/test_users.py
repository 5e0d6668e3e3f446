"""Users and quotas against a real server: two users with different limits, each
refused past their own, the log and the metrics naming the user and never the key."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLSymbol

import linkserver
from linkserver import records
from linkserver.aio.link import LinkSettings
from linkserver.config import PoolConfig, ServerConfig
from linkserver.metrics import Metrics
from linkserver.portal import get_portal
from linkserver.security import check_key, new_key
from linkserver.service import KernelService
from linkserver.status import STATUS_MESSAGE
from linkserver.users import User
from tests.packets import collect
from tests.timeouts import TIMEOUT, wait_until

KERNEL_TIMEOUT = TIMEOUT * 6  # a kernel template takes seconds to load Mathics3
KEYS = {"alice": new_key(), "bob": new_key(), "ops": new_key()}
ALICE = User("alice", kernels=1, queued=1, eval_seconds=1.5, memory_mb=700)
BOB = User("bob", kernels=2, queued=3)
OPS = User("ops", role="admin")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[KernelService, list[tuple[str, dict[str, object]]]]]:
    seen: list[tuple[str, dict[str, object]]] = []

    def sink(name: str, fields: Mapping[str, object]) -> None:
        seen.append((name, dict(fields)))

    records.add_sink(sink)
    config = ServerConfig((
        PoolConfig("work", "pool", min=1, max=4, wait=KERNEL_TIMEOUT),
        PoolConfig("calc", "shared"),
        PoolConfig("keep", "pool", min=0, max=2, keepalive=60, wait=KERNEL_TIMEOUT),
    ), "work", users=(ALICE, BOB, OPS))
    settings = LinkSettings(keys=tuple((name, check_key(key)) for name, key in KEYS.items()))
    service = KernelService(0, "127.0.0.1", config=config, settings=settings)
    portal = get_portal()
    portal.call(service.start(), timeout=KERNEL_TIMEOUT)
    yield service, seen
    portal.call(service.aclose(), timeout=KERNEL_TIMEOUT)
    records.remove_sink(sink)


def client(service: KernelService, user: str, pool: str = "work") -> linkserver.Client:
    return linkserver.Client(service.name, pool=pool, key=KEYS[user], timeout=KERNEL_TIMEOUT)


def test_each_user_holds_kernels_up_to_their_own_limit(served: tuple[KernelService, list]) -> None:
    service, seen = served
    with client(service, "alice") as a:
        assert a.evaluate("1+1") == 2
        with pytest.raises(linkserver.LinkError, match=re.escape(
                "user alice already holds 1 kernel, the most access.users.alice.kernels allows")):
            client(service, "alice")
        # bob's limit is his own: two at once, not a third.
        with client(service, "bob") as b1, client(service, "bob") as b2:
            assert b1.evaluate("bobX = 1") == 1 and b2.evaluate("bobX") == WLSymbol("bobX")
            with pytest.raises(linkserver.LinkError, match="user bob already holds 2 kernels"):
                client(service, "bob")
    # Once alice's link is gone, she may have one again; her refusal was logged by name.
    with client(service, "alice") as again:
        assert again.evaluate("2+2") == 4
    refusals = [f for name, f in seen if name == "user-limit" and f.get("limit") == "kernels"]
    assert {f["user"] for f in refusals} == {"alice", "bob"}


def test_a_persistent_kernel_is_taken_back_only_by_its_own_user(
        served: tuple[KernelService, list]) -> None:
    service, _ = served
    first = linkserver.Client(service.name, pool="keep", persistent=True, key=KEYS["bob"],
                              timeout=KERNEL_TIMEOUT)
    first.evaluate("bobKept = 3")
    kernel_id = first.kernel_id
    first.close()
    with pytest.raises(linkserver.LinkError, match="no kernel"):
        linkserver.Client(service.name, pool="keep", kernel=kernel_id, key=KEYS["alice"],
                          timeout=KERNEL_TIMEOUT)
    with linkserver.Client(service.name, pool="keep", kernel=kernel_id, key=KEYS["bob"],
                           timeout=KERNEL_TIMEOUT) as again:
        assert again.evaluate("bobKept") == 3


def test_a_link_without_select_is_answered_and_may_ask_again(
        served: tuple[KernelService, list]) -> None:
    service, _ = served
    with client(service, "alice") as holder:
        assert holder.evaluate("1") == 1
        link = linkserver.connect(service.name, KERNEL_TIMEOUT, key=KEYS["alice"])
        try:
            link.put(wl.EvaluatePacket(wlexpr("1+1")))
            answer = collect(link, "ReturnPacket", KERNEL_TIMEOUT)
            assert any("LinkServer::userlimit: user alice already holds 1 kernel" in str(p)
                       for p in answer)
            assert answer[-1] == wl.ReturnPacket(WLSymbol("$Failed"))
        finally:
            link.close()


def test_requests_queued_are_counted_per_user(served: tuple[KernelService, list]) -> None:
    service, _ = served
    # In the shared pool both users' requests wait in one queue.
    alice_client, bob_client = client(service, "alice", "calc"), client(service, "bob", "calc")
    alice, bob = alice_client.link, bob_client.link
    try:
        bob.put(wl.EvaluatePacket(wlexpr("Pause[1.2]; 0")))  # runs, holding the queue
        assert wait_until(lambda: service.pools["calc"].broker.statistics().busy, KERNEL_TIMEOUT)
        alice.put(wl.EvaluatePacket(1))  # her one request waiting
        alice.put(wl.EvaluatePacket(2))  # one too many: answered at once
        refused = collect(alice, "ReturnPacket", KERNEL_TIMEOUT)
        assert any("user alice already has 1 request waiting" in str(p) for p in refused)
        assert refused[-1] == wl.ReturnPacket(WLSymbol("$Failed"))
        for value in (3, 4):  # bob may have three waiting
            bob.put(wl.EvaluatePacket(value))
        answers = [collect(bob, "ReturnPacket", KERNEL_TIMEOUT)[-1] for _ in range(3)]
        assert answers == [wl.ReturnPacket(0), wl.ReturnPacket(3), wl.ReturnPacket(4)]
        assert collect(alice, "ReturnPacket", KERNEL_TIMEOUT)[-1] == wl.ReturnPacket(1)
    finally:
        alice_client.close()
        bob_client.close()


def test_an_evaluation_past_eval_seconds_is_aborted_with_one_sentence(
        served: tuple[KernelService, list]) -> None:
    service, seen = served
    with client(service, "alice", "calc") as a, client(service, "bob", "calc") as b:
        result = a.evaluate_wrap("usersKept = 5; Do[Null, {10^10}]")
        assert result.result == WLSymbol("$Aborted")
        assert any("this evaluation ran 1.5 s, the most access.users.alice.eval_seconds "
                   "allows user alice; it was aborted" in str(m) for m in result.messages)
        assert a.evaluate("usersKept") == 5  # the shared kernel went on
        assert b.evaluate("Pause[2]; 7") == 7  # bob has no time limit
    assert any(name == "user-limit" and f.get("limit") == "eval_seconds"
               and f.get("user") == "alice" for name, f in seen)


def test_a_pool_kernel_given_to_a_user_carries_their_memory_limit(
        served: tuple[KernelService, list]) -> None:
    service, _ = served
    broker = service.pools["work"].broker
    with client(service, "alice") as a, client(service, "bob") as b:
        assert a.evaluate("1") == 1 and b.evaluate("1") == 1

        def pid(c: linkserver.Client) -> int:
            worker = next(w for w in broker._workers.values()  # type: ignore[union-attr]
                          if w.id == c.kernel_id)
            return worker.kernel.pid

        def address_space(p: int) -> str:
            line = next(x for x in Path(f"/proc/{p}/limits").read_text().splitlines()
                        if x.startswith("Max address space"))
            return line.split()[3]

        assert address_space(pid(a)) == str(700 * 1024 * 1024)
        assert address_space(pid(b)) == "unlimited"
        # And it bites: a gigabyte of string does not fit in alice's kernel.
        result = a.evaluate_wrap('StringLength[StringRepeat["x", 10^9]]')
        assert not result.success
        assert b.evaluate('StringLength[StringRepeat["x", 10^8]]') == 10**8


def test_admin_is_a_role_and_users_are_named_in_the_log_and_metrics(
        served: tuple[KernelService, list]) -> None:
    service, seen = served
    metrics = Metrics(service)
    try:
        for who, allowed in (("ops", True), ("bob", False)):
            with client(service, who, "calc") as each:
                link = each.link
                link.put(wl.EvaluatePacket(1))
                assert collect(link, "ReturnPacket", KERNEL_TIMEOUT) == [wl.ReturnPacket(1)]
                link.send_message(STATUS_MESSAGE)
                status = link.get(timeout=KERNEL_TIMEOUT)
                # ops holds an admin key of its own; bob's role is user
                assert isinstance(status.args[0], dict) == allowed, status
        text = metrics.render().decode()
        assert re.search(r'linkserver_user_requests_total\{user="bob"\} [1-9]', text)
    finally:
        metrics.close()
    done = [f for name, f in seen if name == "request-done" and f.get("user") == "ops"]
    assert done
    everything = repr(seen)
    assert not any(key in everything for key in KEYS.values())


def test_serve_reads_the_users_key_files_and_refuses_no_key(tmp_path: Path) -> None:
    for name in ("alice",):
        (tmp_path / f"{name}.key").write_text(KEYS[name] + "\n", encoding="utf-8")
        (tmp_path / f"{name}.key").chmod(0o600)
    config = tmp_path / "server.toml"
    config.write_text('[pools.main]\nmode = "shared"\n'
                      '[access.users.alice]\nkey_file = "alice.key"\nqueued = 2\n',
                      encoding="utf-8")
    refused = subprocess.run(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--config", str(config),
         "--no-key"], capture_output=True, text=True, timeout=KERNEL_TIMEOUT,
        stdin=subprocess.DEVNULL)
    assert refused.returncode != 0
    assert "users (alice, ...), who are told apart by their keys: drop --no-key" in refused.stderr
    with subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--config", str(config),
         "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    ) as server:
        try:
            assert server.stdout is not None
            address = ""
            while not address:
                line = server.stdout.readline()
                assert line, "the server exited before listening"
                match = re.search(r"listening on (\S+)", line)
                address = match.group(1) if match else ""
            with linkserver.Client(address, key=KEYS["alice"], timeout=KERNEL_TIMEOUT) as a:
                assert a.evaluate("1+1") == 2
        finally:
            server.terminate()
            _out, log = server.communicate(timeout=KERNEL_TIMEOUT)
    assert "user=alice" in log
    assert KEYS["alice"] not in log
