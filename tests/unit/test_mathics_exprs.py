"""Explicit cases of linkserver.kernel.mathics_exprs, one kind of value at a time.

The generated round trips are in tests/property/test_mathics_roundtrip.py.
Mathics3 loads once per test process (a few seconds), through the kernel's
own ``prepare()``.
"""

from __future__ import annotations

import decimal
import fractions
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from mathics.core.atoms import (
    ByteArray,
    Complex,
    Integer,
    MachineReal,
    PrecisionReal,
    Rational,
    String,
)
from mathics.core.atoms.arrays import NumericArray
from mathics.core.expression import Expression
from mathics.core.symbols import Symbol, SymbolFalse, SymbolNull, SymbolTrue
from wolframclient.language import wl, wlexpr
from wolframclient.language.array import PackedArray
from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver import wxf
from linkserver.kernel.mathics import prepare
from linkserver.kernel.mathics_exprs import ConversionError, from_mathics, to_mathics


def test_prepare_starts_no_thread() -> None:
    # First in this module, so usually the process's first prepare(): a
    # zygote forks after it, and a fork keeps only the forking thread.
    before = {t.ident for t in threading.enumerate()}
    kernel = prepare()
    assert {t.ident for t in threading.enumerate()} <= before
    assert prepare() is kernel  # once per process


@pytest.fixture(scope="module")
def defs() -> Any:
    """The Definitions of the process's prepared kernel."""
    return prepare().definitions


@pytest.fixture(scope="module")
def parse(defs: Any) -> Any:
    """Parse WL text with Mathics3's own parser (the reference for names)."""
    from mathics.core.parser import MathicsSingleLineFeeder, parse

    return lambda text: parse(defs, MathicsSingleLineFeeder(text, ""))


def evaluate(expr: Any) -> Any:
    return expr.evaluate(prepare().evaluation)


def roundtrip(value: Any, defs: Any) -> Any:
    return from_mathics(to_mathics(value, defs), defs)


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize("n", [0, 1, -1, 255, 2**31, -(2**63), 2**64, 10**100, -(10**400)])
def test_integers_any_size(n: int, defs: Any) -> None:
    m = to_mathics(n, defs)
    assert isinstance(m, Integer) and m.value == n
    back = from_mathics(m, defs)
    assert back == n and type(back) is int


def test_numpy_scalars_are_numbers(defs: Any) -> None:
    assert to_mathics(np.int64(-5), defs).sameQ(Integer(-5))
    assert to_mathics(np.uint8(200), defs).sameQ(Integer(200))
    assert to_mathics(np.float32(0.5), defs).sameQ(MachineReal(0.5))
    assert to_mathics(np.bool_(True), defs) is SymbolTrue


@pytest.mark.parametrize("x", [0.0, 1.5, -2.25, 1e-300, 1.7976931348623157e308, 5e-324])
def test_machine_reals(x: float, defs: Any) -> None:
    m = to_mathics(x, defs)
    assert isinstance(m, MachineReal) and m.value == x
    back = from_mathics(m, defs)
    assert back == x and type(back) is float


def test_non_finite_floats_become_symbols(defs: Any) -> None:
    # What the WXF encoder writes for them, and what the decoder gives back.
    assert to_mathics(float("nan"), defs) is Symbol("System`Indeterminate")
    assert from_mathics(to_mathics(float("inf"), defs), defs) == wl.DirectedInfinity(1)
    assert from_mathics(to_mathics(float("-inf"), defs), defs) == wl.DirectedInfinity(-1)
    assert from_mathics(Symbol("System`Indeterminate"), defs) == WLSymbol("Indeterminate")


def test_decimal_precision_is_its_significant_digits(defs: Any) -> None:
    m = to_mathics(decimal.Decimal("1.50"), defs)
    assert isinstance(m, PrecisionReal)
    precision = evaluate(Expression(Symbol("System`Precision"), m))
    assert precision.value == pytest.approx(3.0)
    assert from_mathics(m, defs).as_tuple() == decimal.Decimal("1.50").as_tuple()


@pytest.mark.parametrize(
    "text",
    [
        "1.2345678901234567890123",
        "-0.000123",
        "1500",
        "1.5E+3",
        "9.99",
        "1E-30",
        "3.14159265358979323846264338327950288419716939937510",
        "-7.000000000000000000000000000000000000001E+100000",
    ],
)
def test_decimals_round_trip_with_their_digits(text: str, defs: Any) -> None:
    d = decimal.Decimal(text)
    back = roundtrip(d, defs)
    assert type(back) is decimal.Decimal
    assert back.as_tuple() == d.as_tuple()


def test_decimal_zero_keeps_its_value(defs: Any) -> None:
    # A zero has no significant digits: only its value survives.
    back = roundtrip(decimal.Decimal("0.000"), defs)
    assert back == 0 and type(back) is decimal.Decimal


def test_non_finite_decimals(defs: Any) -> None:
    assert to_mathics(decimal.Decimal("nan"), defs) is Symbol("System`Indeterminate")
    assert roundtrip(decimal.Decimal("-inf"), defs) == wl.DirectedInfinity(-1)


def test_precision_reals_from_mathics(parse: Any, defs: Any) -> None:
    assert from_mathics(parse("1.25`20"), defs).as_tuple() == (
        decimal.Decimal("1.2500000000000000000").as_tuple()
    )
    pi = from_mathics(evaluate(parse("N[Pi, 30]")), defs)
    assert pi == decimal.Decimal("3.14159265358979323846264338328")


def test_rationals(defs: Any) -> None:
    m = to_mathics(wl.Rational(1, 3), defs)
    assert isinstance(m, Rational)
    assert from_mathics(m, defs) == wl.Rational(1, 3)
    assert to_mathics(wl.Rational(-4, 6), defs).sameQ(Rational(-2, 3))
    assert to_mathics(wl.Rational(4, 2), defs).sameQ(Integer(2))
    assert to_mathics(fractions.Fraction(-5, 7), defs).sameQ(Rational(-5, 7))
    assert to_mathics(fractions.Fraction(6, 3), defs).sameQ(Integer(2))
    # Not numbers: left as expressions, for evaluation to make sense of.
    zero_den = to_mathics(wl.Rational(1, 0), defs)
    assert isinstance(zero_den, Expression) and zero_den.get_head_name() == "System`Rational"
    assert isinstance(to_mathics(wl.Rational(wl.x, 2), defs), Expression)


def test_complex_numbers(defs: Any) -> None:
    m = to_mathics(wl.Complex(1.0, 2.0), defs)
    assert isinstance(m, Complex)
    assert from_mathics(m, defs) == wl.Complex(1.0, 2.0)
    exact = to_mathics(wl.Complex(1, wl.Rational(1, 2)), defs)
    assert isinstance(exact, Complex)
    assert from_mathics(exact, defs) == wl.Complex(1, wl.Rational(1, 2))
    assert from_mathics(to_mathics(3 - 4j, defs), defs) == wl.Complex(3.0, -4.0)
    assert isinstance(to_mathics(wl.Complex(wl.x, 1), defs), Expression)
    # sqrt(-4) is 2 I: an exact Complex with a zero real part.
    assert from_mathics(evaluate(to_mathics(wl.Sqrt(-4), defs)), defs) == wl.Complex(0, 2)


# ------------------------------------------------------- strings and bytes


@pytest.mark.parametrize(
    "s", ["", "hello", "héllo wörld", "日本語", "emoji 🎉", 'q"uo\\te\n']
)
def test_strings(s: str, defs: Any) -> None:
    m = to_mathics(s, defs)
    assert isinstance(m, String) and m.value == s
    assert roundtrip(s, defs) == s


@pytest.mark.parametrize("b", [b"", b"\x00\xffab", bytearray(b"xyz"), memoryview(b"mv")])
def test_bytes_are_byte_arrays(b: Any, defs: Any) -> None:
    m = to_mathics(b, defs)
    assert isinstance(m, ByteArray)
    back = from_mathics(m, defs)
    assert back == bytes(b) and type(back) is bytes


# ------------------------------------------------------------ symbols


def test_true_false_null(defs: Any) -> None:
    assert to_mathics(True, defs) is SymbolTrue
    assert to_mathics(False, defs) is SymbolFalse
    assert to_mathics(None, defs) is SymbolNull
    assert from_mathics(SymbolTrue, defs) is True
    assert from_mathics(SymbolFalse, defs) is False
    assert from_mathics(SymbolNull, defs) is None


@pytest.mark.parametrize(
    ("name", "full"),
    [
        ("x", "Global`x"),
        ("Plus", "System`Plus"),
        ("$Version", "System`$Version"),
        ("Global`y", "Global`y"),
        ("Foo`Bar`z", "Foo`Bar`z"),
        ("`w", "Global`w"),
        ("System`Sin", "System`Sin"),
        ("αβ", "Global`αβ"),
    ],
)
def test_names_resolve_as_the_parser_does(name: str, full: str, defs: Any, parse: Any) -> None:
    m = to_mathics(WLSymbol(name), defs)
    assert m is Symbol(full)
    assert m is parse(name)


@pytest.mark.parametrize(
    ("full", "short"),
    [("Global`x", "x"), ("System`Plus", "Plus"), ("Foo`x", "Foo`x"), ("Global`a`b", "Global`a`b")],
)
def test_names_come_back_as_inputform_writes_them(full: str, short: str, defs: Any) -> None:
    assert from_mathics(Symbol(full), defs) == WLSymbol(short)


def test_names_follow_the_current_context(defs: Any) -> None:
    context = defs.get_current_context()
    defs.set_current_context("Work`")
    try:
        assert to_mathics(WLSymbol("v"), defs) is Symbol("Work`v")
        assert to_mathics(WLSymbol("Plus"), defs) is Symbol("System`Plus")
        assert from_mathics(Symbol("Work`v"), defs) == WLSymbol("v")
        assert from_mathics(Symbol("Global`v"), defs) == WLSymbol("v")  # still on the path
    finally:
        defs.set_current_context(context)


def test_names_without_definitions_use_the_defaults() -> None:
    assert to_mathics(WLSymbol("Plus")) is Symbol("System`Plus")
    assert to_mathics(WLSymbol("notabuiltin")) is Symbol("Global`notabuiltin")
    assert to_mathics(WLSymbol("`q")) is Symbol("Global`q")
    assert from_mathics(Symbol("Global`x")) == WLSymbol("x")
    assert from_mathics(Symbol("Other`x")) == WLSymbol("Other`x")


def test_wl_symbol_factories(defs: Any) -> None:
    assert to_mathics(wl.x, defs) is Symbol("Global`x")
    assert to_mathics(wl.Global.x, defs) is Symbol("Global`x")
    assert to_mathics(wl.Developer.PackedArrayQ, defs) is Symbol("Developer`PackedArrayQ")


@pytest.mark.parametrize("name", ["", "a b", "x_", "1a", "a`", "a``b", "f[x]", "a`1b", "x+y"])
def test_non_names_are_refused(name: str, defs: Any) -> None:
    with pytest.raises(ConversionError):
        to_mathics(WLSymbol(name), defs)


# -------------------------------------------------------- compound


def test_lists(defs: Any) -> None:
    for value in ([1, 2], (1, (2, "a")), range(3), [], ()):
        m = to_mathics(value, defs)
        assert m.get_head_name() == "System`List"
    assert roundtrip([1, [2, [3.5, "a"]]], defs) == (1, (2, (3.5, "a")))
    assert roundtrip(frozenset({7}), defs) == (7,)


def test_functions(defs: Any, parse: Any) -> None:
    expr = wl.Plus(1, wl.Times(2, wl.x))
    assert to_mathics(expr, defs).sameQ(parse("Plus[1, Times[2, x]]"))
    assert roundtrip(expr, defs) == expr
    curried = wl.f(1)(2, 3)
    assert to_mathics(curried, defs).sameQ(parse("f[1][2, 3]"))
    assert roundtrip(curried, defs) == curried
    assert roundtrip(WLFunction(True, 1), defs) == WLFunction(True, 1)


def test_associations(defs: Any, parse: Any) -> None:
    value = {"a": 1, wl.x: (2, 3), 4: {"nested": None}}
    m = to_mathics(value, defs)
    assert m.sameQ(parse('<|"a" -> 1, x -> {2, 3}, 4 -> <|"nested" -> Null|>|>'))
    assert roundtrip(value, defs) == value
    assert from_mathics(evaluate(parse("<|a -> 1, b -> 2|>")), defs) == {wl.a: 1, wl.b: 2}


def test_associations_a_dict_cannot_hold(defs: Any, parse: Any) -> None:
    delayed = from_mathics(parse("<|a :> 1|>"), defs)
    assert delayed == wl.Association(wl.RuleDelayed(wl.a, 1))
    # 1 and True are different keys in WL but the same key in a dict.
    colliding = from_mathics(parse("<|1 -> a, True -> b|>"), defs)
    assert colliding == wl.Association(wl.Rule(1, wl.a), wl.Rule(True, wl.b))


def test_decoded_wxf_values(defs: Any) -> None:
    # What a link actually delivers: tuples, immutabledicts, PackedArrays.
    value = wxf.loads(wxf.dumps({"k": [1, 2.5, "s"], "f": wl.f(wl.x)}))
    assert roundtrip(value, defs) == {"k": (1, 2.5, "s"), "f": wl.f(wl.x)}


def test_numpy_arrays_become_lists(defs: Any) -> None:
    ints = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert roundtrip(ints, defs) == ((0, 1, 2), (3, 4, 5))
    floats = np.array([1.5, np.nan, -np.inf])
    assert roundtrip(floats, defs) == (1.5, WLSymbol("Indeterminate"), wl.DirectedInfinity(-1))
    assert roundtrip(np.array([1 + 2j]), defs) == (wl.Complex(1.0, 2.0),)
    assert roundtrip(np.array([True, False]), defs) == (True, False)
    assert roundtrip(np.array(7), defs) == 7
    # A packed array as it comes off the wire: wolframclient's ndarray subclass.
    packed = wxf.loads(wxf.dumps(PackedArray([1, 2, 3, 4], "Integer64", shape=(2, 2))))
    assert isinstance(packed, np.ndarray)
    assert roundtrip(packed, defs) == ((1, 2), (3, 4))


def test_mathics_objects_pass_through(defs: Any) -> None:
    m = Expression(Symbol("Global`f"), Integer(1))
    assert to_mathics(m, defs) is m
    assert to_mathics(wl.g(m), defs).sameQ(
        Expression(Symbol("Global`g"), Expression(Symbol("Global`f"), Integer(1)))
    )


def test_wlexpr_is_to_expression(defs: Any) -> None:
    m = to_mathics(wlexpr("1 + 1"), defs)
    assert m.get_head_name() == "System`ToExpression"
    assert evaluate(m).sameQ(Integer(2))


def test_atoms_wxf_has_no_token_for(defs: Any, parse: Any) -> None:
    dispatch = evaluate(parse("Dispatch[{a -> 1}]"))
    assert from_mathics(dispatch, defs) == wl.Dispatch(((wl.Rule(wl.a, 1)),))
    array = NumericArray(np.array([1, 2], dtype=np.uint8))
    back = from_mathics(array, defs)
    assert isinstance(back, np.ndarray) and back.tolist() == [1, 2]


# ------------------------------------------------------------ errors


def test_unknown_python_types_are_refused(defs: Any) -> None:
    with pytest.raises(ConversionError, match="object"):
        to_mathics(object(), defs)
    with pytest.raises(ConversionError):
        to_mathics([1, {2, 3}, object()], defs)


def test_non_mathics_objects_are_refused(defs: Any) -> None:
    with pytest.raises(ConversionError):
        from_mathics(object(), defs)


def test_too_deep_nesting_is_an_error_not_a_crash(defs: Any) -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = (deep,)
    with pytest.raises(ConversionError, match="deeply"):
        to_mathics(deep, defs)


def test_conversion_error_is_a_value_error() -> None:
    assert issubclass(ConversionError, ValueError)


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    # Conversions must not start threads: the kernel's prepare() is forked.
    before = threading.active_count()
    yield
    assert threading.active_count() == before
