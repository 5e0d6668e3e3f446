"""The rendezvous where a kept kernel asks its Ray actor where to dial next (kernel/redial.py)."""

from __future__ import annotations

import concurrent.futures
import os
import threading

import pytest

from linkserver.kernel.ray_node import _Rendezvous
from linkserver.kernel.redial import Endpoint, ask, format_answer, parse_answer
from tests.timeouts import TIMEOUT

ENDPOINT = Endpoint("40001@10.0.0.5", "ab" * 32, "sha256:" + "cd" * 32)


@pytest.mark.parametrize("endpoint", [ENDPOINT, Endpoint("1@h", "k" * 64, None), None])
def test_an_answer_reads_back_as_it_was_written(endpoint: Endpoint | None) -> None:
    assert parse_answer(format_answer(endpoint)) == endpoint


@pytest.mark.parametrize("line", [b"", b"dial\n", b"dial a b\n", b"hello a b c\n", b"exit\n"])
def test_anything_but_a_whole_dial_line_means_end(line: bytes) -> None:
    assert parse_answer(line) is None


class Rendezvous:
    """A rendezvous whose kernel is this process, and a record of its end."""

    def __init__(self, keepalive: float = TIMEOUT, pid: int | None = None) -> None:
        self.ended = threading.Event()
        self.it = _Rendezvous(keepalive, lambda: os.getpid() if pid is None else pid,
                              self.ended.set)

    def ask(self) -> concurrent.futures.Future[Endpoint | None]:
        future: concurrent.futures.Future[Endpoint | None] = concurrent.futures.Future()
        threading.Thread(target=lambda: future.set_result(ask(self.it.path, os.getpid())),
                         daemon=True).start()
        return future


def test_a_kept_kernel_gets_the_endpoint_a_server_offers_once_it_asks() -> None:
    place = Rendezvous()
    place.it.keep(1, "worker1", "alice")
    assert not place.it.offer(ENDPOINT, 0.05)  # its kernel is linked: nobody may take it
    answer = place.ask()
    assert place.it.offer(ENDPOINT, TIMEOUT)
    assert answer.result(TIMEOUT) == ENDPOINT
    assert not place.ended.is_set()
    place.it.close()


def test_a_kernel_kept_for_no_one_is_told_to_end_and_so_is_its_actor() -> None:
    place = Rendezvous()
    place.it.keep(2, "worker1", None)
    place.it.keep(1, None, None)  # older: overtaken on a threaded actor, ignored
    assert place.it.kept == (2, "worker1", None)
    place.it.keep(3, None, None)
    assert place.ask().result(TIMEOUT) is None
    assert place.ended.wait(TIMEOUT)


def test_a_kept_kernel_nobody_adopts_ends_after_its_keepalive() -> None:
    place = Rendezvous(keepalive=0.2)
    place.it.keep(1, "worker1", None)
    assert place.ask().result(TIMEOUT) is None
    assert place.ended.wait(TIMEOUT)


def test_only_the_actors_own_kernel_may_ask() -> None:
    place = Rendezvous(pid=os.getpid() + 1_000_000)  # some other process is its kernel
    place.it.keep(1, "worker1", None)
    assert place.ask().result(TIMEOUT) is None  # closed without an answer
    assert not place.ended.is_set() and not place.it.waiting
    place.it.close()


def test_a_kernel_believes_only_its_own_actor() -> None:
    place = Rendezvous()
    place.it.keep(1, "worker1", None)
    assert ask(place.it.path, os.getpid() + 1_000_000) is None  # not its guardian
    assert not place.ended.is_set()
    place.it.close()
