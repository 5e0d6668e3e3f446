"""The kernel's short OutputForm writer agrees with Mathics3's own formatter.

``linkserver.kernel.short_form.short_text`` writes the text of small results
without Mathics3 (the EnterTextPacket hot path); Mathics3's
``Evaluation.format_output(result, "text")`` is the reference. Generated
integers, rationals, strings, symbols (System names among them, which carry
builtin formats) and short nested lists of them must come out the same, and
anything the writer declines must be something it was right to decline.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mathics.core.atoms import Integer, Rational, String
from mathics.core.list import ListExpression
from mathics.core.symbols import Symbol

from linkserver.kernel.mathics import prepare
from linkserver.kernel.short_form import MAX_ATOMS, short_text

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Any]:
    yield prepare()


def _system_names() -> list[str]:
    from mathics.core.load_builtin import import_and_load_builtins
    from mathics.session import MathicsSession

    import_and_load_builtins()
    names = sorted(MathicsSession().definitions.builtin)
    return [name for name in names if name.startswith("System`")][::7]


_names = st.builds(
    lambda a, b: a + "".join(b),
    st.sampled_from(string.ascii_letters),
    st.lists(st.sampled_from(string.ascii_letters + string.digits), max_size=6),
)
_symbols = st.one_of(
    _names.map(lambda n: Symbol("Global`" + n)),
    _names.map(lambda n: Symbol("Other`" + n)),
    st.sampled_from(_system_names()).map(Symbol),
)
_integers = st.one_of(st.integers(-10**6, 10**6), st.integers(-(2**400), 2**400)).map(Integer)
_rationals = st.builds(
    lambda p, q: Rational(p, q),
    st.integers(-(10**30), 10**30),
    st.integers(2, 10**30),
).filter(lambda r: isinstance(r, Rational))
_strings = st.text(max_size=12).map(String)
_atoms = st.one_of(_integers, _rationals, _strings, _symbols)
_values = st.recursive(
    _atoms,
    lambda inner: st.lists(inner, max_size=6).map(lambda items: ListExpression(*items)),
    max_leaves=MAX_ATOMS + 8,
)


def _reference(kernel: Any, value: Any) -> str:
    return str(kernel.evaluation.format_output(value, "text"))


@SETTINGS
@given(_values)
def test_short_text_is_mathics3s_text(kernel: Any, value: Any) -> None:
    text = short_text(value, kernel.definitions)
    if text is not None:
        assert text == _reference(kernel, value)


@pytest.mark.parametrize(
    "source, text",
    [("1+1", "2"), ("1/3", "1 / 3"), ("-2/7", "-2 / 7"), ('"abc"', "abc"), ("x", "x"), ("E", "E"),
     ("{1, 2, {a, \"s\"}}", "{1, 2, {a, s}}"), ("{}", "{}")],
)  # fmt: skip
def test_small_results_take_the_short_way(kernel: Any, source: str, text: str) -> None:
    from mathics.core.parser import MathicsMultiLineFeeder

    ev = kernel.evaluation
    value = ev.parse_feeder(MathicsMultiLineFeeder(source, "")).evaluate(ev)
    assert short_text(value, kernel.definitions) == text == _reference(kernel, value)


def test_what_it_declines(kernel: Any) -> None:
    from mathics.core.parser import MathicsMultiLineFeeder

    ev = kernel.evaluation

    def value(source: str) -> Any:
        return ev.parse_feeder(MathicsMultiLineFeeder(source, "")).evaluate(ev)

    assert short_text(value("1.5"), kernel.definitions) is None  # reals: Mathics3's digits
    assert short_text(value("Range[MAX + 1]".replace("MAX", str(MAX_ATOMS))),
                      kernel.definitions) is None  # fmt: skip
    assert short_text(value("2^400"), kernel.definitions) is None
    assert short_text(value("Pi"), kernel.definitions) is None  # a builtin MakeBoxes rule
    value('Format[shortFormed] := "SF"')
    assert short_text(value("shortFormed"), kernel.definitions) is None
    assert short_text(value("{1, shortFormed}"), kernel.definitions) is None
