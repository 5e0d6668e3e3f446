"""Big integers and big reals in WXF: any size up to the digit bound, both ways.

Python refuses int <-> str beyond ``sys.get_int_max_str_digits()`` (4300 by
default, 7000 once Mathics3 is imported) and is quadratic below it; the codec
converts through GMP, never reads or changes that limit, and bounds digits by
its own setting (:mod:`linkserver.wxf.digits`).
"""

from __future__ import annotations

import contextlib
import decimal
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wolframclient.deserializers import binary_deserialize
from wolframclient.serializers import export

from linkserver import wxf
from linkserver.errors import WXFDecodeError, WXFEncodeError
from linkserver.wxf import digits
from linkserver.wxf.varint import encode_varint


@contextlib.contextmanager
def python_limit(limit: int) -> Iterator[None]:
    """Run with Python's own int/str limit set to ``limit``, then restore it."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(limit)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(old)


@contextlib.contextmanager
def max_digits(limit: int) -> Iterator[None]:
    """Run with linkserver's digit bound set to ``limit``, then restore it."""
    old = wxf.get_max_digits()
    wxf.set_max_digits(limit)
    try:
        yield
    finally:
        wxf.set_max_digits(old)


def big_integer_bytes(text: bytes) -> bytes:
    return b"8:I" + encode_varint(len(text)) + text


def reference_digits(value: int) -> bytes:
    """The digits as Python writes them with its limit lifted (slow, but plain)."""
    with python_limit(0):
        return b"%d" % value


# Digit counts at and around every limit there is: the codec's own switch to
# GMP (600), the least limit Python allows (640), Python's default (4300),
# Mathics3's (7000), and far beyond them.
EDGES = [1, 18, 19, 20, 599, 600, 601, 640, 641, 4299, 4300, 4301, 6999, 7000, 7001, 20_000]


@pytest.mark.parametrize("count", EDGES)
@pytest.mark.parametrize("sign", [1, -1])
def test_integers_of_every_size_round_trip_under_any_python_limit(count: int, sign: int) -> None:
    value = sign * int("9" * count) if count < 600 else sign * (10**count - 1)
    with python_limit(640):  # the strictest limit a program can set
        data = wxf.dumps(value)
        assert wxf.loads(data) == value
        assert sys.get_int_max_str_digits() == 640  # untouched
    if count < 600:
        assert data == bytes(export(value, target_format="wxf"))
    if abs(value) >= 2**63:
        assert data == big_integer_bytes(reference_digits(value))


def test_bytes_are_wolframclients() -> None:
    value = 3**40_000  # 19,085 digits
    with python_limit(0):  # wolframclient converts with str()
        theirs = bytes(export(value, target_format="wxf"))
        assert binary_deserialize(wxf.dumps(value)) == value
    assert wxf.dumps(value) == theirs
    assert wxf.loads(theirs) == value


@settings(max_examples=60, deadline=None)
@given(
    count=st.sampled_from(EDGES) | st.integers(1, 9000),
    data=st.data(),
)
def test_random_integers_near_every_limit_round_trip(count: int, data: st.DataObject) -> None:
    rng = random.Random(data.draw(st.integers(0, 2**32), label="seed of the digits"))
    text = (str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=count - 1))).encode()
    if data.draw(st.booleans(), label="negative"):
        text = b"-" + text
    with python_limit(0):
        value = int(text)
    with python_limit(640):
        assert wxf.loads(big_integer_bytes(text)) == value
        encoded = wxf.dumps(value)
    assert wxf.loads(encoded) == value
    if abs(value) >= 2**63:
        assert encoded == big_integer_bytes(text)


@settings(max_examples=40, deadline=None)
@given(count=st.integers(600, 3000), over=st.integers(-3, 3), negative=st.booleans())
def test_the_digit_bound_is_exact_both_ways(count: int, over: int, negative: bool) -> None:
    digits_wanted = count + over
    value = 10 ** (digits_wanted - 1)  # exactly digits_wanted digits
    if negative:
        value = -value
    text = reference_digits(value)
    with max_digits(count):
        if digits_wanted <= count:
            assert wxf.dumps(value) == big_integer_bytes(text)
            assert wxf.loads(big_integer_bytes(text)) == value
        else:
            with pytest.raises(WXFEncodeError, match=f"exceeds the limit of {count} digits"):
                wxf.dumps(value)
            with pytest.raises(WXFDecodeError, match=f"exceeds the limit of {count} digits"):
                wxf.loads(big_integer_bytes(text))


def test_a_number_past_the_bound_is_refused_before_any_conversion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoGMP:
        def mpz(self, *args: Any) -> Any:
            raise AssertionError("converted a number that should have been refused")

    monkeypatch.setattr(digits, "gmpy2", NoGMP())
    with max_digits(1000):
        with pytest.raises(WXFDecodeError, match="integer of 5000 digits exceeds"):
            wxf.loads(big_integer_bytes(b"7" * 5000))
        with pytest.raises(WXFEncodeError, match="about 5000 digits exceeds"):
            wxf.dumps(10**4999)


def test_default_bound_is_ten_million_digits() -> None:
    assert wxf.DEFAULT_MAX_DIGITS == 10_000_000
    assert wxf.get_max_digits() == wxf.DEFAULT_MAX_DIGITS
    # 10^7 digits exactly pass; one more is refused by its size alone.
    with pytest.raises(WXFEncodeError, match="exceeds the limit of 10000000 digits"):
        wxf.dumps(10**10_000_000)


@pytest.mark.parametrize(
    "text, message",
    [
        (b"1" * 700 + b"x", "not a decimal integer"),
        (b" " + b"1" * 700, "not a decimal integer"),
        (b"1_" * 400, "not a decimal integer"),
        (b"--" + b"1" * 700, "not a decimal integer"),
        (b"", "invalid big integer"),
    ],
)
def test_malformed_long_integers_are_decode_errors(text: bytes, message: str) -> None:
    with pytest.raises(WXFDecodeError, match=message):
        wxf.loads(big_integer_bytes(text))


def test_set_max_digits_refuses_nonsense() -> None:
    for bad in (0, 599, -1, 1.5e7, True, "1000"):
        with pytest.raises(ValueError, match="at least 600"):
            wxf.set_max_digits(bad)  # type: ignore[arg-type]
    assert wxf.get_max_digits() == wxf.DEFAULT_MAX_DIGITS


@pytest.mark.parametrize("setting, expected", [("2000", 2000), ("12", 10_000_000), ("x", 10_000_000)])
def test_the_environment_sets_the_bound(setting: str, expected: int) -> None:
    code = "from linkserver import wxf; print(wxf.get_max_digits())"
    env = {**os.environ, "LINKSERVER_MAX_DIGITS": setting}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == expected


# ------------------------------------------------------------ big reals


def test_big_reals_of_many_digits_round_trip() -> None:
    value = decimal.Decimal("3." + "1415926535" * 500)
    data = wxf.dumps(value)
    assert data == bytes(export(value, target_format="wxf"))
    assert wxf.loads(data) == value
    assert binary_deserialize(data) == value


@pytest.mark.parametrize(
    "value",
    ["1E+999999999", "-1.2345E-999999", "9.99E+100010", "1.5E-100001"],
)
def test_reals_with_huge_exponents_travel_in_scientific_form(value: str) -> None:
    number = decimal.Decimal(value)
    data = wxf.dumps(number)
    assert len(data) < 50  # no sea of zeros
    assert b"*^" in data
    assert wxf.loads(data) == number
    assert binary_deserialize(data) == number  # wolframclient reads the form too


def test_reals_within_the_fixed_point_range_keep_wolframclients_bytes() -> None:
    for value in ["1E+100000", "-1.25E-99990", "0.5"]:
        number = decimal.Decimal(value)
        assert wxf.dumps(number) == bytes(export(number, target_format="wxf"))


def test_big_reals_past_the_bound_are_refused_both_ways() -> None:
    with max_digits(1000):
        wxf.dumps(decimal.Decimal("1." + "2" * 999))
        with pytest.raises(WXFEncodeError, match="real of 1001 digits exceeds"):
            wxf.dumps(decimal.Decimal("1." + "2" * 1000))
        text = b"-1." + b"2" * 1000 + b"`1001."
        with pytest.raises(WXFDecodeError, match="real of 1001 digits exceeds"):
            wxf.loads(b"8:R" + encode_varint(len(text)) + text)
        text = b"-1." + b"2" * 999 + b"`1000."
        assert wxf.loads(b"8:R" + encode_varint(len(text)) + text) == decimal.Decimal(
            "-1." + "2" * 999
        )
