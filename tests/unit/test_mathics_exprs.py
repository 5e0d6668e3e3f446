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
from linkserver.kernel.mathics_exprs import ConversionError, from_mathics, mend_boxes, to_mathics
from tests.strategies import full_form, same_expression, same_mathics


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
        # A name no other test makes: one that exists in Global` would be found there
        # (the context path is searched first, as the Wolfram Language does).
        assert to_mathics(WLSymbol("onlyInWork"), defs) is Symbol("Work`onlyInWork")
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


# ----------------------------------------------------------------- boxes

# The results that answered "unconvertible" before boxes converted, in the form
# a client gets them: Mathics3's own boxes (its ToBoxes[Style[x, Red]] shows
# the colour as a swatch, where the Wolfram Language writes a FontColor option).
STYLE_RED = wl.RowBox(("Style", "[", wl.RowBox(("x", ",", wl.StyleBox(
    wl.GraphicsBox(
        (wl.EdgeForm(wl.RGBColor(0, 0, 0)), wl.RGBColor(1, 0, 0), wl.RectangleBox((0, 0))),
        wl.Rule(wl.ImageSize, 16),
    ),
    wl.Rule(wl.ImageSizeMultipliers, (1, 1)),
))), "]"))  # fmt: skip
FIVE_BOXES = {
    "ToBoxes[x^2]": wl.SuperscriptBox("x", "2"),
    "MakeBoxes[1 + x]": wl.RowBox(("1", "+", "x")),
    'RowBox[{"a", "+", "b"}]': wl.RowBox(("a", "+", "b")),
    "ToBoxes[Style[x, Red]]": STYLE_RED,
    "ToBoxes[Graphics[Circle[]]]": wl.GraphicsBox(wl.CircleBox((0, 0))),
}


def mathics_full_form(m: Any) -> str:
    """What Mathics3 itself prints for ``FullForm[m]``."""
    text = prepare().evaluation.format_output(Expression(Symbol("System`FullForm"), m), "text")
    assert isinstance(text, str)
    return text


@pytest.mark.parametrize("text", FIVE_BOXES)
def test_box_results_convert_to_mathics3s_own_fullform(text: str, defs: Any, parse: Any) -> None:
    result = evaluate(parse(text))
    assert not isinstance(result, Expression)  # a box object, as Mathics3 keeps it
    sent = from_mathics(result, defs)
    assert sent == FIVE_BOXES[text]
    assert full_form(sent) == mathics_full_form(result)
    assert wxf.loads(wxf.dumps(sent)) == sent  # and it travels


@pytest.mark.parametrize("text", FIVE_BOXES)
def test_box_expressions_arrive_as_the_parser_reads_them(
    text: str, defs: Any, parse: Any
) -> None:
    sent = FIVE_BOXES[text]
    received = to_mathics(wxf.loads(wxf.dumps(sent)), defs)
    # What the parser makes of the same FullForm text: an expression.
    assert isinstance(received, Expression)
    assert received.sameQ(parse(full_form(sent)))
    assert from_mathics(received, defs) == sent


# Evaluation makes boxes of box expressions again where Mathics3 has a rule
# for the head. ToBoxes[Style[x, Red]] is not among these: Mathics3 has no
# rule for GraphicsBox, so StyleBox boxes the GraphicsBox expression again,
# as text (the module docstring's "What does not survive").
@pytest.mark.parametrize("text", [t for t in FIVE_BOXES if "Style" not in t])
def test_box_expressions_evaluate_back_to_the_same_boxes(
    text: str, defs: Any, parse: Any
) -> None:
    again = evaluate(to_mathics(FIVE_BOXES[text], defs))
    assert same_mathics(again, evaluate(parse(text)))
    assert from_mathics(again, defs) == FIVE_BOXES[text]


def test_boxes_inside_expressions(defs: Any, parse: Any) -> None:
    held = evaluate(parse("Hold[Evaluate[ToBoxes[x^2]]]"))
    assert from_mathics(held, defs) == wl.Hold(wl.SuperscriptBox("x", "2"))
    listed = evaluate(parse("{ToBoxes[x^2], ToBoxes[Sqrt[y]], ToBoxes[1/2]}"))
    assert from_mathics(listed, defs) == (
        wl.SuperscriptBox("x", "2"), wl.SqrtBox("y"), wl.FractionBox("1", "2"),
    )  # fmt: skip
    wrapped = evaluate(parse("ToBoxes[a ^ b] // FullForm"))  # one of Mathics3's examples
    assert from_mathics(wrapped, defs) == wl.FullForm(wl.SuperscriptBox("a", "b"))
    # A string in a box keeps its quotes: ToBoxes["a"] is the text "a", quotes and all.
    assert from_mathics(evaluate(parse('ToBoxes["a"]')), defs) == '"a"'


# Every box class an evaluation can return, with an evaluation that returns it
# at the top (inside a RowBox, Mathics3 itself gives nested boxes as expressions).
BOX_SOURCES = {
    "SuperscriptBox": "ToBoxes[x^2]",
    "SubscriptBox": "ToBoxes[Subscript[x, 1]]",
    "SubsuperscriptBox": "ToBoxes[Subsuperscript[x, 1, 2]]",
    "SqrtBox": "ToBoxes[Sqrt[x]]",
    "FractionBox": "ToBoxes[x/y]",
    "RowBox": "ToBoxes[x + y]",
    "GridBox": "ToBoxes[Grid[{{a, b}, {c, d}}]]",
    "StyleBox": 'StyleBox["x", FontWeight -> "Bold"]',
    "PaneBox": "ToBoxes[Pane[x]]",
    "TagBox": "ToBoxes[FullForm[x]]",
    "FormBox": 'FormBox[RowBox[{"a"}], TraditionalForm]',
    "InterpretationBox": 'InterpretationBox["Four", 4]',
    "GraphicsBox": "ToBoxes[Graphics[{Red, Disk[], Line[{{0, 0}, {1, 1}}]}]]",
    "Graphics3DBox": "ToBoxes[Graphics3D[{Sphere[], Cuboid[]}]]",
    "RasterBox": "ToBoxes[Image[{{0, 0.5}, {1, 0.25}}]]",
    "CompiledCodeBox": "ToBoxes[Compile[{x}, x^2][[3]]]",
}
# Box classes Mathics3 never builds: nothing makes them (no rule, no code),
# so their symbols stay expressions -- the test below shows it.
NEVER_BUILT = {
    "ButtonBox": 'ButtonBox["a"]',
    "TooltipBox": 'TooltipBox["a", "b"]',
    "TemplateBox": 'TemplateBox[{"a"}, "RowDefault"]',
}


def _box_classes() -> set[type]:
    from mathics.builtin.box.expression import BoxExpression

    found: set[type] = set()
    todo: list[type] = [BoxExpression]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


def test_every_box_class_is_accounted_for() -> None:
    from mathics.builtin.box.graphics import GraphicsElementBox

    # The graphics element boxes (CircleBox, LineBox, Sphere3DBox, ...) exist
    # only while a GraphicsBox draws itself: in a result they are heads in
    # its expression, GraphicsBox[CircleBox[{0, 0}]], as above.
    drawing = {c for c in _box_classes() if issubclass(c, GraphicsElementBox)}
    names = {c.__name__ for c in _box_classes() - drawing - {GraphicsElementBox}}
    assert names == set(BOX_SOURCES) | set(NEVER_BUILT)


@pytest.mark.parametrize("name", BOX_SOURCES)
def test_every_box_class_converts(name: str, defs: Any, parse: Any) -> None:
    result = evaluate(parse(BOX_SOURCES[name]))
    assert type(result).__name__ == name
    sent = from_mathics(result, defs)
    assert isinstance(sent, WLFunction) and sent.head == WLSymbol(name)
    received = to_mathics(wxf.loads(wxf.dumps(sent)), defs)
    assert same_mathics(received, result)
    assert same_expression(from_mathics(received, defs), sent)
    # Evaluating it changes nothing (a box again, or the expression kept).
    assert same_expression(from_mathics(evaluate(received), defs), sent)


def test_the_two_broken_box_classes_are_mended(defs: Any, parse: Any) -> None:
    # In Mathics3 10.0.1 the expression form of SubsuperscriptBox and RasterBox
    # raises, and so does every box holding one and Mathics3's own FullForm
    # of them; the kernel mends both (mend_boxes) before it evaluates.
    nested = evaluate(parse("ToBoxes[Subsuperscript[x, 1, 2]^2]"))
    assert from_mathics(nested, defs) == wl.SuperscriptBox(wl.SubsuperscriptBox("x", "1", "2"), "2")
    assert mathics_full_form(nested) == 'SuperscriptBox[SubsuperscriptBox["x", "1", "2"], "2"]'
    raster = from_mathics(evaluate(parse("ToBoxes[Image[{{0, 1}}]]")), defs)
    assert raster.head == WLSymbol("RasterBox")
    [image] = raster.args
    assert image.head == WLSymbol("Image") and image.args[0].tolist() == [[0.0, 1.0]]
    mend_boxes()  # again: nothing changes
    assert from_mathics(nested, defs) == wl.SuperscriptBox(wl.SubsuperscriptBox("x", "1", "2"), "2")


@pytest.mark.parametrize("name", NEVER_BUILT)
def test_box_symbols_without_rules_stay_expressions(name: str, defs: Any, parse: Any) -> None:
    result = evaluate(parse(NEVER_BUILT[name]))
    assert isinstance(result, Expression)
    sent = from_mathics(result, defs)
    assert full_form(sent) == NEVER_BUILT[name]  # as typed
    assert to_mathics(sent, defs).sameQ(result)


# ------------------------------------------------- images and other objects


def test_images_travel_as_the_wolfram_language_writes_them(defs: Any, parse: Any) -> None:
    image = evaluate(parse("Image[{{0, 0.5}, {1, 0.25}}]"))
    sent = from_mathics(image, defs)
    assert sent.head == WLSymbol("Image")
    data, kind, *options = sent.args
    assert isinstance(data, np.ndarray) and data.tolist() == [[0, 0.5], [1, 0.25]]
    assert kind == "Real64"
    assert options == [wl.Rule(wl.ColorSpace, "Grayscale"), wl.Rule(wl.Interleaving, True)]
    back = to_mathics(wxf.loads(wxf.dumps(sent)), defs)
    assert back.sameQ(image)  # an Image atom again: pixels, their type, colour space


@pytest.mark.parametrize(
    "text",
    [
        "Binarize[Image[{{0, 0.5}, {1, 0.25}}]]",  # bool pixels: "Bit"
        "Image[{{{1, 0, 0}, {0, 1, 0}}}]",  # RGB
        "Image[{{{1, 0, 0, 0.5}}}]",  # RGB and alpha
        'ColorConvert[Image[{{{1, 0, 0}}}], "HSB"]',
    ],
)
def test_images_of_every_kind_come_back_the_same(text: str, defs: Any, parse: Any) -> None:
    image = evaluate(parse(text))
    assert image.get_head_name() == "System`Image"
    back = to_mathics(wxf.loads(wxf.dumps(from_mathics(image, defs))), defs)
    assert back.sameQ(image)


def test_images_as_wolframclient_sends_them(defs: Any) -> None:
    # wolframclient writes a PIL image as Image[data, "Byte", ColorSpace -> cs,
    # Interleaving -> True]; Mathics3 alone builds images from matrices only.
    pixels = np.zeros((3, 4, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)
    sent = wl.Image(pixels, "Byte", ColorSpace="RGB", Interleaving=True)
    image = to_mathics(wxf.loads(wxf.dumps(sent)), defs)
    assert image.get_head_name() == "System`Image"
    dims = evaluate(Expression(Symbol("System`ImageDimensions"), image))
    assert from_mathics(dims, defs) == (4, 3)
    back = from_mathics(image, defs)
    assert back.args[1:] == sent.args[1:] and back.args[0].tolist() == pixels.tolist()
    automatic = to_mathics(wl.Image(pixels[:, :, 0], "Byte", ColorSpace=wl.Automatic), defs)
    assert automatic.color_space == "Grayscale"  # one channel, as Image[matrix] decides


@pytest.mark.parametrize(
    "image",
    [
        wl.Image(((0, 1),), "Byte", Interleaving=False),  # planar data
        wl.Image(((0, 1),), "Byte", ColorSpace="NoSuchSpace"),
        wl.Image(((0, 1),), "Integer7"),
        wl.Image(((0, 1), (1,)), "Byte"),  # ragged
        wl.Image((wl.x,), "Byte"),
        wl.Image(((0, 1),), "Byte", wl.MetaInformation({})),
    ],
)
def test_other_image_forms_are_left_for_evaluation(image: WLFunction, defs: Any) -> None:
    m = to_mathics(image, defs)
    assert isinstance(m, Expression) and m.get_head_name() == "System`Image"
    # Image[matrix] alone is Mathics3's own: evaluation makes the image.
    matrix = evaluate(to_mathics(wl.Image(((0, 1),)), defs))
    assert matrix.get_head_name() == "System`Image" and not isinstance(matrix, Expression)


def test_compiled_code_has_the_documented_fallback(defs: Any, parse: Any) -> None:
    compiled = evaluate(parse("Compile[{x}, x^2]"))
    sent = from_mathics(compiled, defs)
    assert sent == wl.CompiledFunction((wl.x,), wl.Power(wl.x, 2), wl.CompiledCode(
        "-PythonizedCode-"
    ))  # fmt: skip
    assert roundtrip(wxf.loads(wxf.dumps(sent)), defs) == sent


def test_dispatch_comes_back_as_a_dispatch(defs: Any, parse: Any) -> None:
    dispatch = evaluate(parse("Dispatch[{a -> 1, b -> 2}]"))
    sent = from_mathics(dispatch, defs)
    assert sent == wl.Dispatch((wl.Rule(wl.a, 1), wl.Rule(wl.b, 2)))
    again = evaluate(to_mathics(sent, defs))
    assert again.get_head_name() == "System`Dispatch" and not isinstance(again, Expression)
    assert from_mathics(evaluate(parse(f"a /. {full_form(sent)}")), defs) == 1


def test_empty_numeric_arrays_are_empty_lists(defs: Any) -> None:
    # WXF arrays have no empty dimension, so an empty one goes as a list.
    assert from_mathics(NumericArray(np.zeros((2, 0), dtype=np.int8)), defs) == ((), ())


def test_bookkeeping_subclasses_convert_as_their_parents(defs: Any, parse: Any) -> None:
    from mathics.core.atoms.strings import StringFromPython
    from mathics.core.expression_predefined import PredefinedExpression

    text = evaluate(parse("PythonForm[Infinity]"))
    assert type(text) is StringFromPython and from_mathics(text, defs) == "math.inf"
    infinity = evaluate(parse("DirectedInfinity[2]"))
    assert type(infinity) is PredefinedExpression
    assert from_mathics(infinity, defs) == wl.DirectedInfinity(1)


def test_internal_objects_convert_too(defs: Any, parse: Any) -> None:
    # Pattern, colour and directive objects Mathics3 builds while matching and
    # drawing; no evaluation returns them, but none may fail to convert.
    from mathics.builtin.colors.color_directives import RGBColor
    from mathics.builtin.graphics import Thickness
    from mathics.builtin.patterns.basic import Blank

    blank = Blank(parse("Blank[]"), evaluation=prepare().evaluation)
    assert from_mathics(blank, defs) == wl.Blank()
    assert from_mathics(RGBColor(parse("RGBColor[1, 0, 0]")), defs) == wl.RGBColor(1.0, 0.0, 0.0)
    assert from_mathics(Thickness(None, parse("Thickness[0.1]")), defs) == wl.Thickness(
        "-Thickness-"
    )


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
