"""Properties of linkserver.kernel.mathics_exprs over generated expressions.

* Round trip from Python: ``from_mathics(to_mathics(x)) == x`` for values in
  the form ``from_mathics`` returns (the WXF decoder's form, with bare names
  for ``Global``` and ``System``` symbols), digits of Decimals included.
* Round trip from Mathics3: ``to_mathics(from_mathics(m))`` is ``SameQ`` to m.
* Oracle: ``to_mathics(x)`` is ``SameQ`` to what Mathics3's own parser builds
  from x written as InputForm text, and ``from_mathics`` of that parse is x
  (the parser is the reference for names and structure).
* Boxes: a box expression evaluates to Mathics3 box objects that convert
  back to it; the boxes of any expression (``ToBoxes``, in StandardForm and
  TraditionalForm) travel as WXF and arrive as what Mathics3's parser makes
  of Mathics3's own ``FullForm`` text of them.
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
from tests.strategies import decimals, hashable_expressions, same_expression, same_mathics

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


# ------------------------------------------------------------------ boxes

# Text in boxes: what _inputform can write without escapes.
_box_text = st.text(string.ascii_letters + string.digits + " +-*/^=,.()[]{}", max_size=6)


def box_expressions() -> st.SearchStrategy[Any]:
    """Box expressions of strings, with the heads Mathics3 has rules for.

    Evaluating one makes Mathics3 box objects of it; converting those back
    must give the same expression.
    """

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        def box(name: str, *parts: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
            return st.tuples(*parts).map(lambda args: WLFunction(WLSymbol(name), *args))

        return st.one_of(
            box("RowBox", st.lists(children, max_size=4).map(tuple)),
            box("SuperscriptBox", children, children),
            box("SubscriptBox", children, children),
            box("SubsuperscriptBox", children, children, children),
            box("FractionBox", children, children),
            box("SqrtBox", children),
            box("FormBox", children, st.sampled_from([WLSymbol("TraditionalForm")])),
        )

    return st.recursive(_box_text, extend, max_leaves=10)


def _held(x: Any) -> Any:
    return WLFunction(WLSymbol("HoldForm"), x)


def formatted_expressions() -> st.SearchStrategy[Any]:
    """Expressions whose boxes take many shapes: operators, scripts, layouts.

    Arithmetic gets numbers and symbols only (Mathics3 10.0.1 fails an
    assertion of its own formatting ``0 * 0^""``); strings go in lists and
    in ``f[...]``, where they are boxed with their quotes.
    """
    scalars = st.one_of(
        st.integers(-20, 20),
        st.sampled_from([WLSymbol(n) for n in ("x", "y", "abc", "Pi", "Infinity")]),
    )
    texts = st.text(string.ascii_letters + " ", max_size=4)

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        def call(name: str, *parts: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
            return st.tuples(*parts).map(lambda args: WLFunction(WLSymbol(name), *args))

        anything = children | texts
        two = st.lists(children, min_size=2, max_size=3)
        rows = st.lists(st.lists(anything, min_size=2, max_size=2).map(tuple), min_size=1,
                        max_size=2).map(tuple)  # fmt: skip
        return st.one_of(
            st.builds(_function, st.sampled_from([WLSymbol("Plus"), WLSymbol("Times")]), two),
            call("Power", children, children),
            call("Subscript", children, children),
            call("Subsuperscript", children, children, children),
            call("Sqrt", children),
            call("Rule", children, anything),
            st.lists(anything, max_size=3).map(tuple),
            st.builds(lambda args: WLFunction(WLSymbol("f"), *args), st.lists(anything, max_size=2)),
            call("Grid", rows),
            call("Style", children, st.just(WLSymbol("Bold"))),
            call("FullForm", children),
        )

    return st.recursive(scalars, extend, max_leaves=8)


@SETTINGS
@given(box_expressions())
def test_box_expressions_evaluate_to_boxes_that_convert_back(defs: Any, b: Any) -> None:
    from mathics.core.parser import MathicsSingleLineFeeder, parse

    m = to_mathics(b, defs)
    assert m.sameQ(parse(defs, MathicsSingleLineFeeder(_inputform(b), "")))  # parser oracle
    boxes = m.evaluate(prepare().evaluation)
    back = from_mathics(boxes, defs)
    assert same_expression(back, b, exact_types=False), (back, b)


@SETTINGS
@given(formatted_expressions(), st.sampled_from(["StandardForm", "TraditionalForm"]))
def test_boxes_of_any_expression_convert_both_ways(defs: Any, x: Any, form: str) -> None:
    from mathics.core.element import BoxElementMixin
    from mathics.core.expression import Expression
    from mathics.core.parser import MathicsSingleLineFeeder, parse
    from mathics.core.symbols import Symbol

    from linkserver import wxf

    evaluation = prepare().evaluation
    query = Expression(Symbol("System`ToBoxes"), to_mathics(_held(x), defs), Symbol(form))
    boxes = query.evaluate(evaluation)
    assert isinstance(boxes, BoxElementMixin), str(boxes)  # a box, or a String
    sent = from_mathics(boxes, defs)
    received = to_mathics(wxf.loads(wxf.dumps(sent)), defs)
    assert same_mathics(received, boxes), (str(received), str(boxes))
    # Mathics3's own FullForm text of the boxes, parsed, is what arrives.
    text = evaluation.format_output(Expression(Symbol("System`FullForm"), boxes), "text")
    assert received.sameQ(parse(defs, MathicsSingleLineFeeder(text, ""))), text
