"""Properties of linkserver.kernel.mathics_exprs over generated expressions.

* Round trip from Python: ``from_mathics(to_mathics(x)) == x`` for values in
  the form ``from_mathics`` returns (the WXF decoder's form, with bare names
  for ``Global``` and ``System``` symbols), digits of Decimals included.
* Round trip from Mathics3: ``to_mathics(from_mathics(m))`` is ``SameQ`` to m.
* Oracle: ``to_mathics(x)`` is ``SameQ`` to what Mathics3's own parser builds
  from x written as InputForm text, and ``from_mathics`` of that parse is x
  (the parser is the reference for names and structure).
"""

from __future__ import annotations

import decimal
import fractions
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver.kernel.mathics import prepare
from linkserver.kernel.mathics_exprs import from_mathics, to_mathics
from tests.strategies import decimals, hashable_expressions, same_expression

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Names with a meaning to the conversion itself (they become Python values,
# tuples, dicts or number atoms) or to the WXF decoder.
_RESERVED = {
    "True", "False", "Null", "None", "Indeterminate", "List", "Association", "Rule",
    "RuleDelayed", "Rational", "Complex", "DirectedInfinity",
}  # fmt: skip
# Contexts whose names come back without them (the default $Context and $ContextPath).
_SHORTENED = ("Global`", "System`")

_start = string.ascii_letters + "$"
_rest = _start + string.digits


def _simple_name(unicode: bool = True) -> st.SearchStrategy[str]:
    rest = st.sampled_from(_rest)
    if unicode:
        rest = rest | st.sampled_from("αβγλΣ∂")
    start = st.sampled_from(_start)
    return st.builds(lambda a, b: a + "".join(b), start, st.lists(rest, max_size=7))


def _name(unicode: bool = True) -> st.SearchStrategy[str]:
    simple = _simple_name(unicode)
    qualified = st.builds(lambda c, n: f"{c}`{n}", simple, simple)
    return (simple | qualified).filter(
        lambda n: n.rpartition("`")[2] not in _RESERVED and not n.startswith(_SHORTENED)
    )


def symbols(unicode: bool = True) -> st.SearchStrategy[WLSymbol]:
    """Symbols that come back from Mathics3 as the same ``WLSymbol``."""
    return _name(unicode).map(WLSymbol)


def _rational(q: fractions.Fraction) -> WLFunction:
    return WLFunction(WLSymbol("Rational"), q.numerator, q.denominator)


def _complex(re: Any, im: Any) -> WLFunction:
    return WLFunction(WLSymbol("Complex"), re, im)


def atoms() -> st.SearchStrategy[Any]:
    """Atoms in the form from_mathics returns them."""
    finite = st.floats(allow_nan=False, allow_infinity=False).map(
        lambda x: 0.0 if x == 0 else x  # Mathics3 caches reals by value: -0.0 is 0.0
    )
    nonzero = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != 0)
    return st.one_of(
        st.integers(-(2**70), 2**70),
        st.integers(-300, 300),
        finite,
        decimals().filter(lambda d: d != 0),  # a zero Decimal keeps its value only
        st.text(max_size=20),
        st.binary(max_size=20),
        st.booleans(),
        st.none(),
        symbols(),
        st.fractions().filter(lambda q: q.denominator != 1).map(_rational),
        st.builds(_complex, finite, nonzero),
        st.builds(_complex, st.integers(-50, 50), st.integers(-50, 50).filter(bool)),
    )


def _function(head: Any, args: list[Any]) -> WLFunction:
    return WLFunction(head, *args)


def hashable() -> st.SearchStrategy[Any]:
    return hashable_expressions(atoms(), symbols())


def expressions() -> st.SearchStrategy[Any]:
    """Expressions in the form from_mathics returns them."""

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        heads = symbols() | children.filter(lambda h: not isinstance(h, WLSymbol))
        return st.one_of(
            st.lists(children, max_size=5).map(tuple),
            st.builds(_function, heads, st.lists(children, max_size=4)),
            st.dictionaries(hashable(), children, max_size=4),
        )

    return st.recursive(atoms(), extend, max_leaves=25)


@pytest.fixture(scope="module")
def defs() -> Any:
    return prepare().definitions


@SETTINGS
@given(expressions())
def test_python_round_trip(defs: Any, x: Any) -> None:
    back = from_mathics(to_mathics(x, defs), defs)
    assert same_expression(back, x, exact_types=False), (back, x)


@SETTINGS
@given(expressions())
def test_mathics_round_trip(defs: Any, x: Any) -> None:
    m = to_mathics(x, defs)
    again = to_mathics(from_mathics(m, defs), defs)
    assert again.sameQ(m), (str(again), str(m))


@SETTINGS
@given(decimals().filter(lambda d: d != 0))
def test_decimal_precision(defs: Any, d: decimal.Decimal) -> None:
    from mathics.core.expression import Expression
    from mathics.core.symbols import Symbol

    m = to_mathics(d, defs)
    precision = Expression(Symbol("System`Precision"), m).evaluate(prepare().evaluation)
    assert precision.value == len(d.as_tuple().digits)  # Precision[1.50`3] is 3.
    assert from_mathics(m, defs).as_tuple() == d.as_tuple()


# ------------------------------------------------------------ parser oracle


def _inputform(x: Any) -> str:
    """Write an oracle-strategy value as InputForm text."""
    if isinstance(x, bool) or x is None:
        return {True: "True", False: "False", None: "Null"}[x]
    if isinstance(x, int):
        return str(x) if x >= 0 else f"({x})"
    if isinstance(x, str):
        return '"' + x + '"'
    if isinstance(x, WLSymbol):
        return str(x.name)
    if isinstance(x, tuple):
        return "{" + ", ".join(_inputform(e) for e in x) + "}"
    if isinstance(x, dict):
        return "<|" + ", ".join(f"{_inputform(k)} -> {_inputform(v)}" for k, v in x.items()) + "|>"
    if isinstance(x, WLFunction):
        return _inputform(x.head) + "[" + ", ".join(_inputform(a) for a in x.args) + "]"
    raise AssertionError(x)


def oracle_expressions() -> st.SearchStrategy[Any]:
    """The part of the language whose InputForm is easy to write by hand."""
    scalars = st.one_of(
        st.integers(-(2**70), 2**70),
        st.text(string.ascii_letters + string.digits + " .,;:!?", max_size=10),
        st.booleans(),
        st.none(),
        symbols(unicode=False),
    )

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=4).map(tuple),
            st.builds(_function, symbols(unicode=False), st.lists(children, max_size=3)),
            st.dictionaries(st.text(string.ascii_letters, max_size=4), children, max_size=3),
        )

    return st.recursive(scalars, extend, max_leaves=15)


@SETTINGS
@given(oracle_expressions())
def test_conversion_agrees_with_the_parser(defs: Any, x: Any) -> None:
    from mathics.core.parser import MathicsSingleLineFeeder, parse

    parsed = parse(defs, MathicsSingleLineFeeder(_inputform(x), ""))
    assert to_mathics(x, defs).sameQ(parsed), (_inputform(x), str(parsed))
    assert same_expression(from_mathics(parsed, defs), x, exact_types=False)
