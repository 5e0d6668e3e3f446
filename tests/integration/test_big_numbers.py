"""Big numbers through a real server and Mathics3 kernel, as a new user tries them.

``3000!`` once ended a shared kernel (its answer could not be encoded and the
failure closed the kernel's link); a result that cannot travel now answers
``linkserver`KernelError["unsendable", ...]`` and the kernel keeps its
definitions.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Iterator

import mpmath
import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

import linkserver
from linkserver import wxf
from linkserver.errors import WXFDecodeError
from linkserver.portal import get_portal
from linkserver.service import KernelService
from tests.timeouts import TIMEOUT

KERNEL_TIMEOUT = TIMEOUT * 6


@pytest.fixture(scope="module")
def client() -> Iterator[linkserver.Client]:
    service = KernelService(0, "127.0.0.1", mode="shared")
    get_portal().call(service.start(), timeout=KERNEL_TIMEOUT)
    try:
        with linkserver.Client(service.name, timeout=KERNEL_TIMEOUT) as c:
            yield c
    finally:
        get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def kernel_error_code(answer: object) -> str | None:
    if isinstance(answer, WLFunction) and answer.head == WLSymbol("linkserver`KernelError"):
        return str(answer.args[0])
    return None


@pytest.mark.parametrize("n", [3000, 10000])
def test_factorials_come_back_whole(client: linkserver.Client, n: int) -> None:
    assert client.evaluate(f"{n}!") == math.factorial(n)


def test_powers_of_two(client: linkserver.Client) -> None:
    assert client.evaluate("2^100000") == 2**100000
    assert client.evaluate(wl.Power(2, 100000)) == 2**100000


def test_pi_to_2000_digits(client: linkserver.Client) -> None:
    value = client.evaluate("N[Pi, 2000]")
    assert isinstance(value, decimal.Decimal)
    with mpmath.workdps(2010):
        pi = mpmath.nstr(mpmath.pi, 2000, strip_zeros=False)
    assert str(value)[:1990] == pi[:1990]
    assert len(value.as_tuple().digits) >= 2000


def test_numbers_sent_from_python(client: linkserver.Client) -> None:
    assert client.evaluate(wl.Mod(7**20000, 1000)) == pow(7, 20000, 1000)
    assert client.evaluate(wl.IntegerLength(10**100_000)) == 100_001
    assert client.evaluate(wl.Plus(-(10**9000), 1)) == -(10**9000) + 1
    precise = decimal.Decimal("1." + "3" * 3000)
    assert client.evaluate(wl.Precision(precise)) == 3001


def test_results_that_cannot_travel_cost_one_error_not_the_kernel(
    client: linkserver.Client,
) -> None:
    client.evaluate("bigKept = 17")
    pid = client.evaluate("$ProcessID")
    # Beyond the digit bound (10^7 digits), and a string with a lone surrogate.
    for code in ["10^(10^7 + 5)", "FromCharacterCode[55296]"]:
        answer = client.evaluate(code)
        assert kernel_error_code(answer) == "unsendable", answer
        assert client.evaluate("$ProcessID") == pid
        assert client.evaluate("bigKept") == 17
    too_big = client.evaluate("10^(10^7 + 5)")
    assert "exceeds the limit of 10000000 digits" in str(too_big.args[1])


def test_a_client_with_a_smaller_bound_gets_a_clear_error_and_keeps_its_link(
    client: linkserver.Client,
) -> None:
    old = wxf.get_max_digits()
    wxf.set_max_digits(1000)
    try:
        with pytest.raises(WXFDecodeError, match="exceeds the limit of 1000 digits"):
            client.evaluate("10^2000")
    finally:
        wxf.set_max_digits(old)
    assert client.evaluate("1 + 1") == 2


def test_mathics3s_own_text_cap_is_explained(client: linkserver.Client) -> None:
    # sympy converts the integer to text under Mathics3's 7000-digit cap.
    answer = client.evaluate("N[10000!, 20]")
    assert kernel_error_code(answer) == "internal"
    assert "$MaxLengthIntStringConversion" in str(answer.args[1])
    assert client.evaluate("1 + 1") == 2
