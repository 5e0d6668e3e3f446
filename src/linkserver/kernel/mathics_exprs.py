"""Expressions between wolframclient's Python values and Mathics3 objects.

A Mathics3 kernel receives what :func:`linkserver.wxf.loads` returns and must
answer with something :func:`linkserver.wxf.dumps` can write. This module
converts between the two, building Mathics3 objects directly: going through
text (``FullForm`` out, parse back in) costs about 70 times more on large
expressions (/work/shared/NOTES.md), and loses what text cannot say.
Evaluating the objects, and the packets around them, is :mod:`.mathics`'s
business; the bytes are :mod:`linkserver.wxf`'s.

The mapping, both ways (``to_mathics`` reads the left column, ``from_mathics``
writes it):

==============================  =========================================  ===================
Mathics3 object        wolframclient form (its FullForm)          back into Mathics3
=====================  =========================================  ===================
a box: any             the box's expression form, which is        that expression;
``BoxExpression``      what Mathics3 prints for ``FullForm``      evaluation makes it
(``RowBox``,           of it: ``SuperscriptBox["x", "2"]``,       a box again where
``SuperscriptBox``,    ``RowBox[{"1", "+", "x"}]``,               Mathics3 has a rule
``GraphicsBox``,       ``GraphicsBox[CircleBox[{0, 0}]]`` --      for it (the parser
``CircleBox``,         at any depth, inside lists and             reads ``FullForm``
``RasterBox``, ...;    ``Hold`` too                               text the same way)
every concrete class)
a ``String`` in a box  the string, quotes and all                 ``String``
                       (``ToBoxes["a"]`` is ``"\\"a\\""``)
``Image``              ``Image[data, type, ColorSpace -> cs,      an ``Image`` (first
                       Interleaving -> True]``, the Wolfram       table); ``type``
                       Language's own form: data a numpy          says how to read
                       array (a WXF numeric array), a matrix      the data
                       for one channel; type ``"Bit"`` (0/1
                       bytes), ``"Byte"``, ``"Bit16"``,
                       ``"Real32"`` or ``"Real64"`` (other pixel
                       types as ``"Real64"``)
``Dispatch``           ``Dispatch[{rules}]``, as                  the expression,
                       ``BinarySerialize`` writes it              which evaluates to
                                                                  a ``Dispatch``
``ByteArray``          ``bytes``                                  ``ByteArray``
``NumericArray``       a numpy array (an empty one as nested      nested ``List``
                       tuples: WXF arrays have no empty
                       dimension)
``CompiledCode`` (the  the documented fallback for atoms with     the expression,
third part of          no expression form, ``Head["<text>"]``     which stays as it
``CompiledFunction``)  with the text Mathics3 shows:              is: to compile
and any other atom     ``CompiledCode["-PythonizedCode-"]``       again, send
                                                                  ``Compile[args,
                                                                  body]``
pattern and colour     their expression (``Blank[]``,             the expression
objects (made while    ``RGBColor[1, 0, 0]``); other internal
matching and drawing;  objects ``Name["-Name-"]``
never a result)
=====================  =========================================  ===================

Subclasses Mathics3 uses for its own bookkeeping convert as their parents do
(``StringFromPython`` as ``String``, ``SymbolConstant`` and ``BooleanType`` as
``Symbol``, ``PredefinedExpression`` as ``Expression``). So every Mathics3
object converts and no result answers ``unconvertible``: that error is left
for a Python value that is not a Mathics3 object and for an expression
nested deeper than Python's recursion limit.

Symbol names follow what a Wolfram kernel does with text input and
``InputForm`` output. A name without a context (``x``, ``Plus``) is resolved
as the parser resolves it: ``$Context``, then ``$ContextPath``, else a new
symbol in ``$Context`` -- so ``x`` is ``Global`x`` and ``Plus`` is
``System`Plus``. A name with a context is kept (``Foo`x``); one that starts
with a backquote is in ``$Context``. On the way back a name loses its context
when that context is ``$Context`` or on ``$ContextPath`` (by default
``Global``` and ``System```), so a client gets back ``x`` and ``Plus`` --
the names it sent -- and ``Foo`x`` in full.

Arbitrary-precision reals: a ``Decimal`` carries its precision as its number
of significant digits (``Decimal("1.50")`` has 3), which is how the Wolfram
Language counts precision in decimal digits: it becomes ``1.50`3.``, a
Mathics3 ``PrecisionReal`` whose binary precision is mpmath's
``dps_to_prec(3)``. The way back uses mpmath's ``prec_to_dps`` -- the exact
inverse, checked for 1 to 400 digits -- and writes that many digits, so a
Decimal survives a round trip with its digits, trailing zeros included. (A
zero has no significant digits; it keeps its value only.)

What does not survive: ``-0.0`` comes back as ``0.0`` (Mathics3 keeps one
object per machine-real value), a numpy array's element type (it is a List
in Mathics3), and a ``Rational[2, 4]`` or ``Complex[1, 0]`` is normalised as
the Wolfram Language normalises it. Boxes survive the conversion both ways,
but not always an evaluation: a box expression is evaluated as Mathics3
evaluates the same text typed in, and Mathics3 has no rule that makes a
``GraphicsBox`` of an expression, so a box holding one (the colour swatch in
``ToBoxes[Style[x, Red]]``) is boxed again as text; ``Hold[boxes]`` keeps
them as they are. An image's meta information is not carried (Mathics3
10.0.1 never sets it). Both conversions recurse: an expression
nested deeper than Python's recursion limit (6200 once Mathics3 is loaded)
is a :class:`ConversionError`, not a crash.
"""

from __future__ import annotations

import decimal
import fractions
import math
import re
from collections.abc import Callable
from typing import Any

import mpmath.libmp
import numpy
import sympy
from mathics.core.atoms import (
    ByteArray,
    Complex,
    Integer,
    MachineReal,
    PrecisionReal,
    Rational,
    Real,
    String,
)
from mathics.core.atoms.arrays import NumericArray
from mathics.core.element import BaseElement, BoxElementMixin
from mathics.core.expression import Expression
from mathics.core.list import ListExpression
from mathics.core.symbols import (
    Atom,
    Symbol,
    SymbolFalse,
    SymbolList,
    SymbolNull,
    SymbolTrue,
)
from mathics.core.systemsymbols import (
    SymbolAssociation,
    SymbolDirectedInfinity,
    SymbolIndeterminate,
    SymbolRule,
)
from wolframclient.language.expression import (
    WLFunction,
    WLInputExpression,
    WLSymbol,
    WLSymbolFactory,
)

__all__ = ["ConversionError", "from_mathics", "mend_boxes", "to_mathics"]


class ConversionError(ValueError):
    """A value has no Mathics3 form, or a Mathics3 object has no wolframclient form."""


# ------------------------------------------------------------------ names

# What may not appear in a symbol name: whitespace and the ASCII characters
# the Wolfram Language uses as operators or brackets (`_` is Blank). All else
# -- letters of any script, `$`, private-use characters such as \[FormalX] --
# is allowed, as in the Wolfram Language; a segment may not start with a digit.
_BAD_NAME = re.compile(r"[\s!-#%-/:-@\[-_{-~]|^[0-9]|`[0-9]|``|`$")

_SYSTEM = "System`"
_GLOBAL = "Global`"
# Defaults of a fresh kernel, used when no Definitions is given.
_DEFAULT_CONTEXT = _GLOBAL
_DEFAULT_PATH = (_SYSTEM, _GLOBAL)

SymbolRational = Symbol("System`Rational")
SymbolComplex = Symbol("System`Complex")
SymbolRuleDelayed = Symbol("System`RuleDelayed")
SymbolToExpression = Symbol("System`ToExpression")
SymbolDispatch = Symbol("System`Dispatch")
SymbolImage = Symbol("System`Image")

_INFINITY = Expression(SymbolDirectedInfinity, Integer(1))
_MINUS_INFINITY = Expression(SymbolDirectedInfinity, Integer(-1))


def _system_names() -> frozenset[str]:
    # Without a Definitions to ask, a bare name is System` if Mathics3 has a
    # builtin of that name (its table of loaded builtins), else Global`.
    from mathics.core import load_builtin

    return frozenset(load_builtin._builtins)


# ---------------------------------------------------------- to Mathics3


class _ToMathics:
    """One conversion into Mathics3 objects; caches resolved symbol names."""

    __slots__ = ("_definitions", "_symbols", "_system")

    def __init__(self, definitions: Any | None) -> None:
        self._definitions = definitions
        self._symbols: dict[str, BaseElement] = {}
        self._system: frozenset[str] | None = None

    def symbol(self, name: Any) -> BaseElement:
        cached = self._symbols.get(name)
        if cached is not None:
            return cached
        if not isinstance(name, str) or not name or _BAD_NAME.search(name):
            raise ConversionError(f"{name!r} is not a symbol name")
        definitions = self._definitions
        if name[0] == "`":  # `x and `a`x are relative to $Context
            context = _DEFAULT_CONTEXT if definitions is None else definitions.current_context
            full = context + name[1:]
        elif "`" in name:
            full = name  # already names its context
        elif definitions is not None:
            full = definitions.lookup_name(name)  # as the parser does
        else:
            if self._system is None:
                self._system = _system_names()
            full = _SYSTEM + name if _SYSTEM + name in self._system else _GLOBAL + name
        symbol = Symbol(full)
        self._symbols[name] = symbol
        return symbol

    def __call__(self, x: Any) -> BaseElement:
        convert = _TO_MATHICS.get(type(x))
        if convert is not None:
            return convert(self, x)
        return self._slow(x)

    def _slow(self, x: Any) -> BaseElement:
        # Subclasses and the rarer types, in the order that keeps bool apart
        # from int (bool is an int subclass).
        if isinstance(x, BaseElement):
            return x
        if isinstance(x, WLSymbol):  # wl.x is a WLSymbolFactory
            return self.symbol(x.name)
        if isinstance(x, WLFunction):
            return _wl_function(self, x)
        if isinstance(x, (bool, numpy.bool_)):
            return SymbolTrue if x else SymbolFalse
        if isinstance(x, numpy.ndarray):
            return _array(self, x)
        if isinstance(x, numpy.generic):
            return self(x.item())
        if isinstance(x, int):
            return Integer(int(x))
        if isinstance(x, float):
            return _float(self, float(x))
        if isinstance(x, str):
            return String(str(x))
        if isinstance(x, decimal.Decimal):
            return _decimal(self, x)
        if isinstance(x, dict):
            return _dict(self, x)
        if isinstance(x, (list, tuple, range, set, frozenset)):
            return ListExpression(*[self(item) for item in x])
        if isinstance(x, (bytes, bytearray, memoryview)):
            return ByteArray(bytes(x))
        if isinstance(x, WLInputExpression):
            # What the WXF encoder writes for wlexpr("..."): ToExpression["..."].
            return Expression(SymbolToExpression, String(str(x.input)))
        raise ConversionError(
            f"a {type(x).__name__} has no Wolfram Language form: {_short_repr(x)}"
        )


def _short_repr(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _float(conv: _ToMathics, x: float) -> BaseElement:
    if math.isfinite(x):
        return MachineReal(x)
    if math.isnan(x):
        return SymbolIndeterminate  # what the WXF decoder turns Indeterminate into
    return _INFINITY if x > 0 else _MINUS_INFINITY


def _decimal(conv: _ToMathics, x: decimal.Decimal) -> BaseElement:
    if not x.is_finite():
        if x.is_nan():
            return SymbolIndeterminate
        return _INFINITY if x > 0 else _MINUS_INFINITY
    digits = len(x.as_tuple().digits)
    # sympy.Float(text, dps) rounds the decimal text to dps_to_prec(dps) bits,
    # as the Mathics3 parser does for "1.50`3".
    return PrecisionReal(sympy.Float(str(x), digits))


def _dict(conv: _ToMathics, x: dict[Any, Any]) -> BaseElement:
    return Expression(
        SymbolAssociation,
        *[Expression(SymbolRule, conv(k), conv(v)) for k, v in x.items()],
    )


def _list(conv: _ToMathics, x: Any) -> BaseElement:
    return ListExpression(*[conv(item) for item in x])


def _wl_function(conv: _ToMathics, x: WLFunction) -> BaseElement:
    head = x.head
    args = x.args
    if isinstance(head, WLSymbol) and len(args) >= 2:
        # Rational and Complex arrive as functions (WXF has no token for
        # them); the client means the number, which is an atom in Mathics3.
        # The same for an Image in the Wolfram Language's own form.
        name = head.name
        atom: BaseElement | None = None
        if name in ("Rational", "System`Rational") and len(args) == 2:
            atom = _rational(args)
        elif name in ("Complex", "System`Complex") and len(args) == 2:
            atom = _complex(conv, args)
        elif name in ("Image", "System`Image"):
            atom = _image(conv, args)
        if atom is not None:
            return atom
    return Expression(conv(head), *[conv(arg) for arg in args])


def _rational(args: tuple[Any, ...]) -> BaseElement | None:
    n, d = args
    if type(n) is not int or type(d) is not int or d == 0:
        return None  # Rational[x, y], Rational[1, 0]: left for evaluation
    q = fractions.Fraction(n, d)
    if q.denominator == 1:
        return Integer(q.numerator)
    return Rational(q.numerator, q.denominator)


def _complex(conv: _ToMathics, args: tuple[Any, ...]) -> BaseElement | None:
    parts = []
    for arg in args:
        if isinstance(arg, bool) or not isinstance(
            arg, (int, float, decimal.Decimal, WLFunction)
        ):
            return None
        part = conv(arg)
        if not isinstance(part, (Integer, Real, Rational)):
            return None  # Complex[x, 1], Complex[1., Infinity]: left as is
        parts.append(part)
    result: BaseElement = Complex(parts[0], parts[1])
    return result


# Image data types (the Wolfram Language's names) -> numpy pixel types of a
# Mathics3 Image. "Real" is the older name of "Real64"; "Bit" pixels are bool
# in Mathics3 (Binarize makes them) and 0/1 bytes on the wire.
_IMAGE_DTYPES: dict[str, Any] = {
    "Bit": numpy.bool_,
    "Byte": numpy.uint8,
    "Bit16": numpy.uint16,
    "Real32": numpy.float32,
    "Real64": numpy.float64,
    "Real": numpy.float64,
}
# The colour spaces Mathics3 converts between (mathics/builtin/colors/color_internals.py).
_COLOR_SPACES = frozenset({"Grayscale", "RGB", "CMYK", "HSB", "XYZ", "LAB", "LUV", "LCH"})


def _image(conv: _ToMathics, args: tuple[Any, ...]) -> BaseElement | None:
    # Image[data, type, ColorSpace -> cs, Interleaving -> True]: what
    # wolframclient sends a PIL image as and what from_mathics writes. Mathics3
    # itself builds images only from Image[matrix] (values clipped to [0, 1],
    # no type), so this form would stay an unevaluated expression. Anything
    # else (planar data, other options) is left to Mathics3's rules: None.
    data, kind, *options = args
    dtype = _IMAGE_DTYPES.get(kind) if isinstance(kind, str) else None
    if dtype is None:
        return None
    color_space: Any = None
    for option in options:
        if not (
            isinstance(option, WLFunction)
            and isinstance(option.head, WLSymbol)
            and option.head.name in ("Rule", "System`Rule")
            and len(option.args) == 2
            and isinstance(option.args[0], WLSymbol)
        ):
            return None
        name, value = option.args[0].name.rpartition("`")[2], option.args[1]
        if name == "ColorSpace" and (value in _COLOR_SPACES or _is_automatic(value)):
            color_space = value if isinstance(value, str) else None
        elif not (name == "Interleaving" and value is True):
            return None  # planar data, meta information: left for evaluation
    if not isinstance(data, (numpy.ndarray, tuple, list)):
        return None
    try:
        pixels = numpy.array(data)
    except (TypeError, ValueError):  # ragged nesting
        return None
    if pixels.dtype.kind not in "biuf" or pixels.ndim not in (2, 3) or 0 in pixels.shape:
        return None
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels > 4:
        return None
    pixels = pixels != 0 if dtype is numpy.bool_ else pixels.astype(dtype)
    if color_space is None:  # Automatic, as Mathics3's Image[matrix] decides it
        color_space = "RGB" if channels in (3, 4) else "Grayscale"
    from mathics.builtin.image.base import Image  # pillow: only when needed

    result: BaseElement = Image(pixels, color_space)
    return result


def _is_automatic(value: Any) -> bool:
    return isinstance(value, WLSymbol) and value.name in ("Automatic", "System`Automatic")


def _fraction(conv: _ToMathics, x: fractions.Fraction) -> BaseElement:
    if x.denominator == 1:
        return Integer(x.numerator)
    return Rational(x.numerator, x.denominator)


def _python_complex(conv: _ToMathics, x: complex) -> BaseElement:
    re_part, im_part = _float(conv, x.real), _float(conv, x.imag)
    if isinstance(re_part, MachineReal) and isinstance(im_part, MachineReal):
        result: BaseElement = Complex(re_part, im_part)
        return result
    # Infinite or nan parts have no Complex atom: Plus[re, Times[im, I]].
    return Expression(
        Symbol("System`Plus"),
        re_part,
        Expression(Symbol("System`Times"), im_part, Symbol("System`I")),
    )


def _array(conv: _ToMathics, x: numpy.ndarray[Any, Any]) -> BaseElement:
    # numpy arrays are packed or numeric arrays on the wire; Mathics3 has
    # neither, so they become the List they stand for (Normal[array]).
    def real(v: float) -> BaseElement:
        return _float(conv, v)  # nan and inf are symbols

    def boolean(v: bool) -> BaseElement:
        return SymbolTrue if v else SymbolFalse

    kind = x.dtype.kind
    make: Callable[[Any], BaseElement]
    if kind in "iu":
        make = Integer
    elif kind == "f":
        make = real
    elif kind == "b":
        make = boolean
    else:
        make = conv  # complex, strings, objects: one by one
    if x.ndim == 0:
        return make(x.item())

    def build(value: Any, depth: int) -> BaseElement:
        if depth == 1:
            return ListExpression(*[make(v) for v in value])
        return ListExpression(*[build(v, depth - 1) for v in value])

    return build(x.tolist(), x.ndim)


def _symbol(conv: _ToMathics, x: WLSymbol) -> BaseElement:
    return conv.symbol(x.name)


def _none(conv: _ToMathics, x: None) -> BaseElement:
    return SymbolNull


def _bool(conv: _ToMathics, x: bool) -> BaseElement:
    return SymbolTrue if x else SymbolFalse


def _str(conv: _ToMathics, x: str) -> BaseElement:
    return String(x)


def _int(conv: _ToMathics, x: int) -> BaseElement:
    return Integer(x)


def _bytes(conv: _ToMathics, x: bytes | bytearray | memoryview) -> BaseElement:
    return ByteArray(bytes(x))


def _same(conv: _ToMathics, x: BaseElement) -> BaseElement:
    return x


_TO_MATHICS: dict[type, Callable[[_ToMathics, Any], BaseElement]] = {
    int: _int,
    bool: _bool,
    float: _float,
    str: _str,
    type(None): _none,
    tuple: _list,
    list: _list,
    WLSymbol: _symbol,
    WLSymbolFactory: _symbol,  # wl.Plus
    WLFunction: _wl_function,
    dict: _dict,
    decimal.Decimal: _decimal,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
    fractions.Fraction: _fraction,
    complex: _python_complex,
    Integer: _same,
    String: _same,
    Symbol: _same,
    Expression: _same,
    ListExpression: _same,
}


def to_mathics(expr: Any, definitions: Any | None = None) -> Any:
    """Return the Mathics3 object for a wolframclient expression or Python value.

    Args:
        expr: what :func:`linkserver.wxf.loads` returns, or any value
            :func:`linkserver.wxf.dumps` accepts that the table in this
            module's docstring lists; Mathics3 objects pass through.
        definitions: the session's ``Definitions``, to resolve names without
            a context by ``$Context`` and ``$ContextPath`` exactly as the
            parser does. Without it, a bare name is ``System``` if Mathics3
            has a builtin of that name, else ``Global```.

    Returns:
        A ``mathics.core.element.BaseElement`` (typed ``Any``: Mathics3 has
        no type information).

    Raises:
        ConversionError: a value has no Wolfram Language form (an object of
            an unknown type, a symbol name that is not a name), or the
            expression is nested deeper than Python's recursion limit.
    """
    try:
        return _ToMathics(definitions)(expr)
    except RecursionError:
        raise ConversionError("the expression is nested too deeply to convert") from None


# -------------------------------------------------------- from Mathics3


class _FromMathics:
    """One conversion out of Mathics3; caches shortened symbol names."""

    __slots__ = ("_context", "_path", "_names")

    def __init__(self, definitions: Any | None) -> None:
        if definitions is None:
            self._context, self._path = _DEFAULT_CONTEXT, _DEFAULT_PATH
        else:
            self._context = definitions.current_context
            self._path = tuple(definitions.context_path)
        self._names: dict[str, WLSymbol] = {}

    def symbol(self, name: str) -> WLSymbol:
        cached = self._names.get(name)
        if cached is not None:
            return cached
        short = name
        # Definitions.shorten_name's rule: drop a context that is $Context
        # or on $ContextPath, when nothing follows it but the short name.
        for context in (self._context, *self._path):
            if name.startswith(context) and "`" not in name[len(context) :]:
                short = name[len(context) :]
                break
        symbol = WLSymbol(short)
        self._names[name] = symbol
        return symbol

    def __call__(self, x: Any) -> Any:
        convert = _FROM_MATHICS.get(type(x))
        if convert is not None:
            return convert(self, x)
        return self._slow(x)

    def _slow(self, x: Any) -> Any:
        if isinstance(x, Expression):
            return _from_expression(self, x)
        if isinstance(x, Symbol):
            return _from_symbol(self, x)
        if isinstance(x, Integer):
            return int(x.value)
        if isinstance(x, MachineReal):
            return float(x.value)
        if isinstance(x, PrecisionReal):
            return _from_precision_real(self, x)
        if isinstance(x, String):
            return str(x.value)
        if isinstance(x, Rational):
            return _from_rational(self, x)
        if isinstance(x, Complex):
            return _from_complex(self, x)
        if isinstance(x, ByteArray):
            return bytes(x.value)
        if isinstance(x, NumericArray):
            return _from_numeric_array(self, x)
        if isinstance(x, Atom):
            if x.get_head() is SymbolImage and hasattr(x, "pixels"):
                return _from_image(self, x)
            return _from_other_atom(self, x)
        if isinstance(x, BoxElementMixin):
            # A box (BoxExpression: RowBox, GraphicsBox, ...). Its expression
            # form is what Mathics3 prints for FullForm of it, and its
            # elements may hold boxes again (RowBox[{...}] does).
            mend_boxes()
            return self(x.to_expression())
        if isinstance(x, BaseElement):
            return _from_internal(self, x)
        raise ConversionError(f"{_short_repr(x)} is not a Mathics3 expression")


def _from_symbol(conv: _FromMathics, x: Any) -> Any:
    if x is SymbolNull:
        return None
    if x is SymbolTrue:
        return True
    if x is SymbolFalse:
        return False
    return conv.symbol(x.name)


def _from_expression(conv: _FromMathics, x: Any) -> Any:
    head = x.head
    elements = x.elements
    if head is SymbolList:
        return tuple([conv(e) for e in elements])
    if head is SymbolAssociation:
        as_dict = _association(conv, elements)
        if as_dict is not None:
            return as_dict
    # Heads convert like any part (True[1] has head True), as the WXF decoder does.
    return WLFunction(conv(head), *[conv(e) for e in elements])


def _association(conv: _FromMathics, elements: tuple[Any, ...]) -> dict[Any, Any] | None:
    result: dict[Any, Any] = {}
    for rule in elements:
        if (
            not isinstance(rule, Expression)
            or rule.head is not SymbolRule
            or len(rule.elements) != 2
        ):
            return None  # a delayed rule or a non-rule: a dict cannot say it
        key = conv(rule.elements[0])
        try:
            result[key] = conv(rule.elements[1])
        except TypeError:  # an unhashable key (a numpy array)
            return None
    if len(result) != len(elements):
        return None  # keys that differ in WL but not in Python (1, 1., True)
    return result


def _from_list(conv: _FromMathics, x: Any) -> Any:
    return tuple([conv(e) for e in x.elements])


def _from_integer(conv: _FromMathics, x: Any) -> Any:
    return x.value


def _from_machine_real(conv: _FromMathics, x: Any) -> Any:
    return float(x.value)


def _from_precision_real(conv: _FromMathics, x: Any) -> Any:
    value = x.value  # a sympy.Float
    digits = mpmath.libmp.prec_to_dps(value._prec)
    return decimal.Decimal(mpmath.libmp.to_str(value._mpf_, digits, strip_zeros=False))


def _from_string(conv: _FromMathics, x: Any) -> Any:
    return x.value


def _from_rational(conv: _FromMathics, x: Any) -> Any:
    n, d = x.value.as_numer_denom()
    return WLFunction(WLSymbol("Rational"), int(n), int(d))


def _from_complex(conv: _FromMathics, x: Any) -> Any:
    return WLFunction(WLSymbol("Complex"), conv(x.real), conv(x.imag))


# Two box classes of Mathics3 10.0.1 raise when asked for their expression
# form, and with them every box that holds one (a parent's elements ask its
# children) and Mathics3's own FullForm of them: SubsuperscriptBox.elements
# calls elements_to_expressions without the box itself, RasterBox.elements
# asks its Image atom for elements it does not have. mend_boxes gives each
# the property its siblings have -- the parts the box was made of, then its
# non-default options -- once per process, and only where the original fails
# on a probe, so a Mathics3 that fixes them keeps its own.
_boxes_mended = False


def mend_boxes() -> None:
    """Repair the two Mathics3 box classes whose expression form raises.

    Mathics3 itself needs the repair too: it compares boxes by their
    expression form while it formats (``ToBoxes[Subsuperscript[x, 1, 2]^2]``
    raises inside Mathics3 10.0.1 without it). A kernel calls this once its
    builtins are loaded; :func:`from_mathics` calls it before it converts
    its first box. Idempotent, thread-free, quick after the first call.
    """
    global _boxes_mended
    if _boxes_mended:
        return
    _boxes_mended = True
    from mathics.builtin.box.image import RasterBox
    from mathics.builtin.box.layout import SubsuperscriptBox
    from mathics.format.box.common import elements_to_expressions

    try:
        SubsuperscriptBox(String("a"), String("b"), String("c")).elements
    except TypeError:

        def sub_super_elements(self: Any) -> Any:
            if self._elements is None:
                parts = (self.base, self.subindex, self.superindex)
                self._elements = elements_to_expressions(self, parts, self.box_options)
            return self._elements

        SubsuperscriptBox.elements = property(sub_super_elements)
    try:
        RasterBox(Integer(0)).elements  # an Image has no elements; neither has 0
    except AttributeError:

        def raster_elements(self: Any) -> Any:
            return (self.image,)

        RasterBox.elements = property(raster_elements)


def _from_numeric_array(conv: _FromMathics, x: Any) -> Any:
    value = numpy.array(x.value)
    if value.size == 0:
        return _nested_tuples(value.tolist())  # WXF arrays have no empty dimension
    return value


def _nested_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple([_nested_tuples(v) for v in value])
    return value


# numpy pixel type -> Image data type (see _IMAGE_DTYPES for the way in).
_IMAGE_TYPES = {
    numpy.dtype(numpy.bool_): "Bit",
    numpy.dtype(numpy.uint8): "Byte",
    numpy.dtype(numpy.uint16): "Bit16",
    numpy.dtype(numpy.float32): "Real32",
    numpy.dtype(numpy.float64): "Real64",
}


def _from_image(conv: _FromMathics, x: Any) -> Any:
    # The Wolfram Language's own form of an image (FullForm of an Image there
    # is Image[NumericArray[...], type, ColorSpace -> ..., Interleaving -> True]),
    # so a Wolfram Language client deserialises an image. Mathics3 keeps every
    # image as height x width x channels; one channel travels as a matrix, as
    # ImageData gives it. Meta information is not carried (Mathics3 10.0.1
    # never sets it).
    pixels = x.pixels
    kind = _IMAGE_TYPES.get(pixels.dtype)
    if kind is None:  # int64, uint32, ...: the values, as reals
        kind, pixels = "Real64", pixels.astype(numpy.float64)
    elif kind == "Bit":
        pixels = pixels.astype(numpy.uint8)  # WXF has no boolean arrays
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels.reshape(pixels.shape[:2])
    data = _nested_tuples(pixels.tolist()) if pixels.size == 0 else numpy.array(pixels)
    return WLFunction(
        conv.symbol("System`Image"),
        data,
        kind,
        WLFunction(conv.symbol("System`Rule"), conv.symbol("System`ColorSpace"), str(x.color_space)),
        WLFunction(conv.symbol("System`Rule"), conv.symbol("System`Interleaving"), True),
    )


def _from_internal(conv: _FromMathics, x: Any) -> Any:
    # Objects that Mathics3 builds while it matches patterns (PatternObject)
    # or draws (colours, graphics directives) and that no evaluation returns;
    # converted all the same, so that a result holding one cannot fail.
    expr = getattr(x, "expr", None)  # a PatternObject keeps its expression
    if isinstance(expr, BaseElement) and expr is not x:
        return conv(expr)
    to_expr = getattr(x, "to_expr", None)  # a colour directive
    if callable(to_expr):
        return conv(to_expr())
    get_name = getattr(x, "get_name", None)  # every Builtin has it
    name = get_name() if callable(get_name) else _SYSTEM + type(x).__name__.lstrip("_")
    return WLFunction(conv(Symbol(name)), f"-{name.rpartition('`')[2]}-")


def _from_other_atom(conv: _FromMathics, x: Any) -> Any:
    # Atoms WXF has no token for. Dispatch keeps its rules (as
    # BinarySerialize writes it); the others (CompiledCode) go as
    # Head["<text>"] so the answer says what it was rather than failing.
    head = conv(x.get_head())
    if x.get_head() is SymbolDispatch and hasattr(x, "src"):
        return WLFunction(head, conv(x.src))
    return WLFunction(head, str(x))


_FROM_MATHICS: dict[type, Callable[[_FromMathics, Any], Any]] = {
    Integer: _from_integer,
    MachineReal: _from_machine_real,
    PrecisionReal: _from_precision_real,
    String: _from_string,
    Symbol: _from_symbol,
    type(SymbolTrue): _from_symbol,
    Expression: _from_expression,
    ListExpression: _from_list,
    Rational: _from_rational,
    Complex: _from_complex,
}


def from_mathics(obj: Any, definitions: Any | None = None) -> Any:
    """Return the wolframclient expression for a Mathics3 object.

    Args:
        obj: a Mathics3 expression or atom.
        definitions: the session's ``Definitions``: a symbol loses its
            context when that context is ``$Context`` or on ``$ContextPath``
            there. Without it, the defaults of a fresh kernel apply
            (``Global``` and ``System``` are dropped).

    Returns:
        A value :func:`linkserver.wxf.dumps` writes: Python numbers,
        strings, bytes, tuples, dicts, ``Decimal``, ``WLSymbol``,
        ``WLFunction`` (see the table in this module's docstring).

    Raises:
        ConversionError: ``obj`` is not a Mathics3 object, or is nested
            deeper than Python's recursion limit.
    """
    try:
        return _FromMathics(definitions)(obj)
    except RecursionError:
        raise ConversionError("the expression is nested too deeply to convert") from None
