"""Installable functions (docs/protocol.md §8.10): Python functions called from the kernel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy
import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

import linkserver
from linkserver import wxf
from linkserver.portal import get_portal
from linkserver.service import KernelService
from tests.integration.test_service import KERNEL_TIMEOUT, start_service


@pytest.fixture(scope="module")
def shared() -> Iterator[KernelService]:
    service = start_service(mode="shared")
    yield service
    get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def client(service: KernelService) -> linkserver.Client:
    return linkserver.Client(service.name, timeout=KERNEL_TIMEOUT)


def test_install_and_call_from_this_and_another_client(shared: KernelService) -> None:
    with client(shared) as owner, client(shared) as other:
        assert owner.install("PyFib", fib) == WLSymbol("PyFib")
        assert owner.evaluate("PyFib[20]", timeout=KERNEL_TIMEOUT) == 6765
        assert other.evaluate("PyFib[30]", timeout=KERNEL_TIMEOUT) == 832040
        assert other.evaluate("Map[PyFib, Range[10]]", timeout=KERNEL_TIMEOUT) == tuple(
            fib(n) for n in range(1, 11))
        # Ownership: another client cannot replace it.
        with pytest.raises(linkserver.LinkError, match="another client"):
            other.install("PyFib", lambda n: 0)
        assert owner.installed() == ["PyFib"]


def test_decorators_and_uninstall(shared: KernelService) -> None:
    with client(shared) as c:
        @c.installable
        def PyTwice(x: int) -> int:  # noqa: N802
            return 2 * x

        @c.install_function("PyPlus")
        def plus(*xs: int) -> int:
            return sum(xs)

        assert c.evaluate("{PyTwice[4], PyPlus[1, 2, 3], PyPlus[]}") == (8, 6, 0)
        c.uninstall("PyTwice")
        assert c.evaluate("PyTwice[4]") == wl.PyTwice(4)
        with pytest.raises(KeyError):
            c.uninstall("PyTwice")


def test_numpy_arrays_stay_packed(shared: KernelService) -> None:
    seen: list[object] = []

    def double(array: object) -> object:
        seen.append(array)
        return numpy.asarray(array) * 2

    with client(shared) as c:
        c.install("PyDouble", double)
        result = c.evaluate(wl.PyDouble(numpy.arange(6, dtype=numpy.int64).reshape(2, 3)))
        assert isinstance(seen[0], numpy.ndarray) and seen[0].shape == (2, 3)
        assert seen[0].dtype == numpy.int64
        assert numpy.array_equal(numpy.asarray(result), numpy.arange(6).reshape(2, 3) * 2)
        real = c.evaluate("PyDouble[{0.5, 1.5}]")
        assert isinstance(seen[1], numpy.ndarray) and seen[1].dtype == numpy.float64
        assert tuple(real) == (1.0, 3.0)
    # The answer travels packed: ReturnPacket[packed array] decodes as numpy.
    packet: Any = wxf.loads(wxf.dumps(wl.ReturnPacket(numpy.arange(3) * 2)))
    assert isinstance(packet.args[0], numpy.ndarray)


def test_exception_becomes_failure(shared: KernelService) -> None:
    def bad(x: int) -> float:
        return 1 / x

    with client(shared) as c:
        c.install("PyBad", bad)
        result = c.evaluate("PyBad[0]")
        assert isinstance(result, WLFunction) and result.head == WLSymbol("Failure")
        assert result.args[0] == "PythonError"
        assert "ZeroDivisionError" in result.args[1]["MessageTemplate"]
        assert c.evaluate("PyBad[4]") == 0.25


def test_callback_evaluates_back_into_the_kernel(shared: KernelService) -> None:
    with client(shared) as c, client(shared) as other:
        def nested(n: int) -> object:
            # Evaluates back, and even calls an installed function again.
            return c.evaluate(f"{n} + PyInner[{n}]", timeout=KERNEL_TIMEOUT)

        c.install("PyInner", lambda n: 100 * n)
        c.install("PyOuter", nested)
        assert c.evaluate("PyOuter[2] + 1", timeout=KERNEL_TIMEOUT) == 203
        assert other.evaluate("PyOuter[3]", timeout=KERNEL_TIMEOUT) == 303
        assert c.evaluate("1 + 1") == 2  # the link is in step afterwards


def test_owner_disconnect_fails_calls_clearly(shared: KernelService) -> None:
    caller = client(shared)
    started = threading.Event()
    release = threading.Event()

    def slow(x: int) -> int:
        started.set()
        release.wait(KERNEL_TIMEOUT)
        return x

    owner = client(shared)
    try:
        owner.install("PyGone", lambda x: x)
        owner.install("PySlow", slow)
        assert caller.evaluate("PyGone[1]") == 1
        result: list[object] = []
        thread = threading.Thread(
            target=lambda: result.append(caller.evaluate_wrap("PySlow[5]", timeout=KERNEL_TIMEOUT)))
        thread.start()
        assert started.wait(KERNEL_TIMEOUT)
        owner.close()  # with a call in flight
        thread.join(KERNEL_TIMEOUT)
        assert not thread.is_alive()
        in_flight = result[0]
        assert in_flight.result == WLSymbol("$Failed")  # type: ignore[attr-defined]
        assert in_flight.messages_name == ["LinkServer::nocallee"]  # type: ignore[attr-defined]
        later = caller.evaluate_wrap("PyGone[2]", timeout=KERNEL_TIMEOUT)
        assert later.result == WLSymbol("$Failed")
        assert "disconnected" in later.messages[0]
        # The name is free again.
        with client(shared) as again:
            again.install("PyGone", lambda x: -x)
            assert caller.evaluate("PyGone[2]") == -2
    finally:
        release.set()
        owner.close()
        caller.close()


def test_pool_mode_and_abort() -> None:
    service = start_service(mode="pool")
    try:
        with client(service) as c:
            gate = threading.Event()
            c.install("PyFib", fib)
            assert c.evaluate("PyFib[20]", timeout=KERNEL_TIMEOUT) == 6765
            c.install("PyWait", lambda: gate.wait(KERNEL_TIMEOUT))
            result: list[object] = []
            thread = threading.Thread(
                target=lambda: result.append(c.evaluate("PyWait[]", timeout=KERNEL_TIMEOUT)))
            thread.start()
            threading.Timer(0.5, c.abort).start()
            thread.join(KERNEL_TIMEOUT)
            assert result == [WLSymbol("$Aborted")]
            gate.set()  # the late answer of the aborted call is dropped
            assert c.evaluate("PyFib[10]", timeout=KERNEL_TIMEOUT) == 55
    finally:
        get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)
