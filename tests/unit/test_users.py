"""Users and their limits without processes: the configuration, the sentences, the core."""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLSymbol

from linkserver import wxf
from linkserver.broker.core import (
    Action,
    KernelCore,
    KernelUrgent,
    Record,
    TimeLimit,
    ToClient,
    ToKernel,
)
from linkserver.config import ConfigError, load_config, parse_config
from linkserver.protocol import UrgentMessage
from linkserver.users import User

POOLS = {"pools": {"main": {"mode": "pool"}}}


def users_config(users: dict[str, object]) -> dict[str, object]:
    return {**POOLS, "access": {"users": users}}


def test_users_are_read_with_their_limits_and_key_files_beside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(
        '[pools.main]\nmode = "pool"\n'
        '[access]\nstop = "admin"\n'
        '[access.users.alice]\nkey_file = "alice.key"\nkernels = 1\nqueued = 2\n'
        'eval_seconds = 1.5\nmemory_mb = 700\n'
        '[access.users.ops]\nkey_file = "/etc/ops.key"\nrole = "admin"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    alice, ops = config.users
    assert alice == User("alice", "user", str(tmp_path / "alice.key"), kernels=1, queued=2,
                         eval_seconds=1.5, memory_mb=700)
    assert ops == User("ops", "admin", "/etc/ops.key")
    assert config.stop_allowed == "admin"


@pytest.mark.parametrize(("users", "message"), [
    ({"alice": {}}, "access.users.alice.key_file is needed"),
    ({"alice": {"key_file": "k", "kernels": 0}}, "access.users.alice.kernels must be a whole "
                                                 "number, at least 1, not 0"),
    ({"alice": {"key_file": "k", "kernels": True}}, "access.users.alice.kernels must be"),
    ({"alice": {"key_file": "k", "eval_seconds": "5"}}, "a number of seconds"),
    ({"alice": {"key_file": "k", "memory_mb": 10}}, "at least 64"),
    ({"alice": {"key_file": "k", "role": "root"}}, "role must be 'admin' or 'user'"),
    ({"alice": {"key_file": "k", "quota": 3}}, "access.users.alice.quota is not a user setting"),
    ({"admin": {"key_file": "k"}}, "the name 'admin' is the server's own (serve --key-file)"),
    ({"user": {"key_file": "k"}}, "(serve --user-key-file)"),
    ({"al ice": {"key_file": "k"}}, "letters, digits"),
    ({"alice": 3}, "access.users.alice must be a table"),
])
def test_bad_users_are_refused_in_one_sentence(users: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(users_config(users))


def test_users_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match="access.users must be a table of users"):
        parse_config({**POOLS, "access": {"users": ["alice"]}})


def test_the_sentences_name_the_user_the_limit_and_the_setting() -> None:
    alice = User("alice", kernels=1, queued=3, eval_seconds=2.5)
    assert alice.over("kernels") == (
        "user alice already holds 1 kernel, the most access.users.alice.kernels allows; "
        "close a link that holds one, or let a persistent kernel's keep-alive pass")
    assert "already has 3 requests waiting, the most access.users.alice.queued" in \
        alice.over("queued")
    assert alice.over("eval_seconds") == (
        "this evaluation ran 2.5 s, the most access.users.alice.eval_seconds allows user "
        "alice; it was aborted")


# ------------------------------------------------------------------ the core

ALICE = User("alice", queued=1, eval_seconds=2.0)
BOB = User("bob", queued=3)
CAROL = User("carol")


def core_for(users: dict[Hashable, User]) -> KernelCore:
    core = KernelCore("w", kernel_up=True, kernel_id="k", user_of=users.get)
    core.initial_actions()
    return core


def request(value: int) -> bytes:
    return wxf.dumps(wl.EvaluatePacket(value))


def to(link: str, actions: list[Action]) -> list[object]:
    return [wxf.loads(a.payload) for a in actions if isinstance(a, ToClient) and a.link == link]


def texts(packets: list[object]) -> list[str]:
    return [p.args[0] for p in packets  # type: ignore[attr-defined]
            if getattr(getattr(p, "head", None), "name", "") == "TextPacket"]


def test_a_user_past_queued_is_refused_over_all_their_links_and_others_are_not() -> None:
    core = core_for({"a1": ALICE, "a2": ALICE, "b": BOB})
    core.client_packet("a1", request(1))  # runs
    assert to("a1", core.client_packet("a1", request(2))) == []  # queued: one waiting
    refused = core.client_packet("a2", request(3))  # alice's second waiting, from another link
    [text] = texts(to("a2", refused))
    assert text.startswith("LinkServer::userlimit: user alice already has 1 request waiting")
    assert to("a2", refused)[-1] == wl.ReturnPacket(WLSymbol("$Failed"))
    assert any(isinstance(a, Record) and a.event == "user-limit"
               and a.fields["user"] == "alice" and a.fields["limit"] == "queued"
               for a in refused)
    for value in (4, 5, 6):  # bob may have three waiting
        assert to("b", core.client_packet("b", request(value))) == []
    assert texts(to("b", core.client_packet("b", request(7))))  # and not four


def test_an_evaluation_past_eval_seconds_is_told_then_aborted() -> None:
    core = core_for({"a": ALICE, "c": CAROL})
    started = core.client_packet("a", request(1))
    [limit] = [a for a in started if isinstance(a, TimeLimit)]
    assert limit.seconds == 2.0
    actions = core.time_limit_passed(limit.serial)
    [text] = texts(to("a", actions))
    assert text.startswith("LinkServer::userlimit: this evaluation ran 2 s")
    assert KernelUrgent(UrgentMessage.ABORT, 0) in actions
    # The kernel's $Aborted ends the request; a late timer for it does nothing.
    done = core.kernel_packet(wxf.dumps(wl.ReturnPacket(WLSymbol("$Aborted"))))
    assert to("a", done) == [wl.ReturnPacket(WLSymbol("$Aborted"))]
    assert core.time_limit_passed(limit.serial) == []
    # A user without the limit asks for no timer.
    assert not any(isinstance(a, TimeLimit) for a in core.client_packet("c", request(2)))


def test_a_timer_of_a_request_already_answered_leaves_the_next_one_alone() -> None:
    core = core_for({"a": ALICE})
    first = core.client_packet("a", request(1))
    [limit] = [a for a in first if isinstance(a, TimeLimit)]
    second = core.kernel_packet(wxf.dumps(wl.ReturnPacket(1)))
    assert to("a", second) == [wl.ReturnPacket(1)]
    core.client_packet("a", request(2))  # runs now, with a timer of its own
    assert core.time_limit_passed(limit.serial) == []


def test_links_without_a_user_have_no_limits() -> None:
    core = KernelCore("w", kernel_up=True, kernel_id="k")
    actions = core.client_packet("x", request(1))
    assert [a for a in actions if isinstance(a, ToKernel)]
    assert not any(isinstance(a, TimeLimit) for a in actions)
    for value in range(2, 6):
        assert to("x", core.client_packet("x", request(value))) == []
