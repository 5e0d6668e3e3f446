"""Python values to WXF bytes, byte for byte as wolframclient writes them.

The values are wolframclient's expression API and plain Python data, mapped
the way ``wolframclient.serializers.export(x, target_format="wxf")`` maps
them, so the bytes are identical for anything wolframclient can write:

==============================  ============================================
Python                          WXF
==============================  ============================================
``int``                         smallest of ``C j i L``; ``I`` beyond 64 bits
``float``                       ``r``; inf is ``DirectedInfinity[±1]``, nan is
                                ``Indeterminate``
``str`` / ``bytes``             ``S`` (UTF-8) / ``B`` (also bytearray,
                                memoryview)
``True False None``             symbols ``True False Null``
``list tuple set range``        ``List[...]`` (also generators and any other
                                iterable that is not a string)
``dict``                        association ``A`` of ``-`` rules
``wl.X`` / ``wl.F(...)``        symbol ``s`` / function ``f``
``wlexpr("...")``               ``ToExpression["..."]``
``Decimal``                     big real ``R``, text ``"{:f}``28"``
``Fraction`` / ``complex``      ``Rational[n, d]`` / ``Complex[re, im]``
numpy arrays                    numeric array; wolframclient's ``PackedArray``
                                subclass as a packed array
datetime, date, time, tzinfo,   ``DateObject``, ``TimeObject``, ``Quantity``
timedelta                       as wolframclient writes them
==============================  ============================================

Where wolframclient writes broken bytes or fails, this encoder writes the
correct thing instead: a non-ASCII symbol name gets its UTF-8 byte count
(wolframclient counts characters), big-endian and ``longlong`` numpy arrays
are encoded rather than refused, and a memoryview of non-byte items is
written as all of its bytes.

Theory of operation
-------------------
Speed comes from doing little per value.  The walk is iterative: a stack of
iterators, one per open container, and a ``for`` loop over the innermost
that ``break``s to descend and falls into its ``else`` to climb back.  That
spares a Python call per value, which is the largest cost a recursive
encoder pays, and it bounds depth without touching the recursion limit.
Inside the loop the commonest exact types (``int``, ``str``, ``float``,
``list``, ``tuple``, ``WLFunction``, ``WLSymbol``, ``dict``) are tested with
``type(x) is ...`` and encoded inline from precomputed pieces: the bytes of
every int8 value, of short string, list and function headers, and of each
symbol seen (a bounded cache).  Every other type goes through a dispatch
that walks the type's MRO, as wolframclient's ``Dispatch`` does, so a
subclass is encoded the way wolframclient would encode it.  The pieces are
joined once at the end; large numpy arrays enter that join as buffers, so
their data is copied exactly once.

Classes of optional or heavy modules (numpy, wolframclient's serializers)
are matched by qualified name: if such a module is not imported, no value
of its classes can exist, so it need not be imported here.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import re
import struct
import sys
import types
import zlib
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any

from wolframclient.language.expression import (
    WLFunction,
    WLInputExpression,
    WLSymbol,
    WLSymbolFactory,
)
from wolframclient.utils.datastructures import Association

from ..errors import WXFEncodeError
from .decoder import DEFAULT_MAX_DEPTH
from .tokens import (
    ARRAY_TYPE_NAMES,
    COMPRESSED_HEADER,
    DTYPE_ARRAY_TYPES,
    HEADER,
    LITTLE_ENDIAN_DTYPES,
    PACKED_ARRAY_TYPES,
    ArrayType,
    Token,
)
from .digits import digits_of, get_max_digits, too_many_digits
from .varint import encode_varint

__all__ = ["dumps", "encode_parts"]

_Piece = bytes | bytearray | memoryview
_Append = Callable[[_Piece], None]

# ---------------------------------------------------------------------------
# Precomputed pieces
# ---------------------------------------------------------------------------

_F = bytes((Token.FUNCTION,))
_S = bytes((Token.STRING,))
_B = bytes((Token.BINARY_STRING,))
_A = bytes((Token.ASSOCIATION,))
_RULE_BYTE = bytes((Token.RULE,))

_pack_j = struct.Struct("<ch").pack
_pack_i = struct.Struct("<ci").pack
_pack_L = struct.Struct("<cq").pack
_pack_r = struct.Struct("<cd").pack
_J = bytes((Token.INTEGER16,))
_I32 = bytes((Token.INTEGER32,))
_L = bytes((Token.INTEGER64,))
_R = bytes((Token.REAL64,))

#: ``_SMALL_INT[x + 128]`` is the whole part for an int8 value ``x``.
_SMALL_INT: tuple[bytes, ...] = tuple(
    bytes((Token.INTEGER8, x & 0xFF)) for x in range(-128, 128)
)


def _symbol_bytes(name: str) -> bytes:
    raw = name.encode("utf-8")
    return bytes((Token.SYMBOL,)) + encode_varint(len(raw)) + raw


def _function_head(length: int) -> bytes:
    return _F + encode_varint(length)


_LIST_SYMBOL = _symbol_bytes("List")
_STR_HEADS: tuple[bytes, ...] = tuple(_S + bytes((n,)) for n in range(128))
_BIN_HEADS: tuple[bytes, ...] = tuple(_B + bytes((n,)) for n in range(128))
_FUNC_HEADS: tuple[bytes, ...] = tuple(_F + bytes((n,)) for n in range(128))
_LIST_HEADS: tuple[bytes, ...] = tuple(h + _LIST_SYMBOL for h in _FUNC_HEADS)

_TRUE = _symbol_bytes("True")
_FALSE = _symbol_bytes("False")
_NULL = _symbol_bytes("Null")
_INDETERMINATE = _symbol_bytes("Indeterminate")
# wolframclient writes float infinities as DirectedInfinity[1] / [-1].
_INFINITY = _function_head(1) + _symbol_bytes("DirectedInfinity") + _SMALL_INT[129]
_MINUS_INFINITY = _function_head(1) + _symbol_bytes("DirectedInfinity") + _SMALL_INT[127]
_COMPLEX_HEAD = _function_head(2) + _symbol_bytes("Complex")
_RATIONAL_HEAD = _function_head(2) + _symbol_bytes("Rational")
_TO_EXPRESSION_HEAD = _function_head(1) + _symbol_bytes("ToExpression")

# Symbol parts by name.  Bounded: names come from user data, and an
# unbounded module-level cache would be a slow memory leak.
_SYMBOL_CACHE_LIMIT = 4096
_SYMBOLS: dict[str, bytes] = {
    name: _symbol_bytes(name)
    for name in (
        "List", "Rule", "RuleDelayed", "Association", "True", "False", "Null",
        "None", "Plus", "Times", "Power", "Subtract", "Divide", "Sqrt", "Sin",
        "Cos", "Exp", "Log", "Pi", "E", "I", "Infinity", "DirectedInfinity",
        "Indeterminate", "Complex", "Rational", "Integer", "Real", "String",
        "Symbol", "Hold", "HoldComplete", "ToExpression", "Print", "Set",
        "SetDelayed", "CompoundExpression", "Function", "Slot", "Missing",
        "Failure", "$Failed", "$Aborted",
    )
}

#: The accuracy wolframclient appends to a Decimal's text ("1.5``28"): the
#: decimal context precision when the module is imported, as there.
_DECIMAL_PRECISION = decimal.getcontext().prec

#: Most zeros a Decimal's exponent may add to its fixed-point text (the form
#: wolframclient writes); beyond, the text is mantissa`precision*^exponent.
_MAX_FIXED_POINT_ZEROS = 100_000

#: Shared with the decoder's default, so that what is written can be read.
_DEFAULT_MAX_DEPTH = DEFAULT_MAX_DEPTH


class _Raw:
    """A pre-encoded piece placed among the values a container yields.

    Associations use it for the rule token before each key.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


_RULE = _Raw(_RULE_BYTE)

#: Returned by a slow-path handler that has appended everything itself.
_DONE = object()


# ---------------------------------------------------------------------------
# Atoms
# ---------------------------------------------------------------------------


def _int_part(value: int) -> bytes:
    """Encode an int in the narrowest machine type, else as a big integer."""
    if -128 <= value < 128:
        return _SMALL_INT[value + 128]
    if -32768 <= value < 32768:
        return _pack_j(_J, value)
    if -2147483648 <= value < 2147483648:
        return _pack_i(_I32, value)
    if -9223372036854775808 <= value < 9223372036854775808:
        return _pack_L(_L, value)
    try:
        # Subquadratic, bounded by our own limit, not sys.int_max_str_digits.
        digits = digits_of(value)
    except ValueError as exc:
        raise WXFEncodeError(f"cannot write a big integer: {exc}") from None
    return bytes((Token.BIG_INTEGER,)) + encode_varint(len(digits)) + digits


def _nonfinite_part(value: float) -> bytes:
    if value != value:
        return _INDETERMINATE
    return _INFINITY if value > 0 else _MINUS_INFINITY


def _symbol_part(name: object) -> bytes:
    """Encode a symbol name, caching the result (slow path of the cache)."""
    if not isinstance(name, str):
        raise WXFEncodeError(
            f"a symbol's name must be a str, not {type(name).__name__} "
            "(is this the bare `wl` factory?)"
        )
    try:
        part = _symbol_bytes(name)
    except UnicodeEncodeError as exc:
        raise WXFEncodeError(f"symbol name {name!r} is not valid Unicode") from exc
    if len(_SYMBOLS) < _SYMBOL_CACHE_LIMIT:
        _SYMBOLS[name] = part
    return part


#: Shortest list worth the homogeneity test of the fast paths below.
_HOMOGENEOUS_MIN = 16


def _int_parts(values: list[int] | tuple[int, ...]) -> list[bytes]:
    """Encode a run of exact ints (the inline int code, as a comprehension)."""
    small_int = _SMALL_INT
    pack_j = _pack_j
    pack_i = _pack_i
    J = _J
    I32 = _I32
    return [
        small_int[v + 128]
        if -128 <= v < 128
        else pack_j(J, v)
        if -32768 <= v < 32768
        else pack_i(I32, v)
        if -2147483648 <= v < 2147483648
        else _int_part(v)
        for v in values
    ]


def _float_parts(values: list[float] | tuple[float, ...]) -> list[bytes]:
    """Encode a run of exact floats."""
    pack_r = _pack_r
    R = _R
    return [pack_r(R, v) if v - v == 0.0 else _nonfinite_part(v) for v in values]


#: Shortest run worth numpy's fixed costs (array creation, several passes).
_VECTOR_MIN = 256

_vector_tables: Any = None


def _numpy_tables() -> Any:
    """numpy and the lookup arrays of the vector paths, made on first use."""
    global _vector_tables
    if _vector_tables is None:
        import numpy

        _vector_tables = (
            numpy,
            # token and part size of each width class: int8, 16, 32, 64
            numpy.array(
                [Token.INTEGER8, Token.INTEGER16, Token.INTEGER32, Token.INTEGER64],
                dtype=numpy.uint8,
            ),
            numpy.array([2, 3, 5, 9], dtype=numpy.intp),
        )
    return _vector_tables


def _int_run(values: Any, append: _Append, extend: Callable[[list[bytes]], None]) -> None:
    """Encode a run of exact ints, vectorized when it is long.

    Each int still gets its own narrowest type, so the bytes are those of
    the scalar code.  numpy computes every element's width class, lays the
    parts out with a cumulative sum and scatters tokens and little-endian
    bytes into one buffer: about five times faster than the comprehension
    for long runs.  Runs holding an int beyond 64 bits take the
    comprehension, which writes big integers.
    """
    if len(values) < _VECTOR_MIN:
        extend(_int_parts(values))
        return
    np, tokens, sizes = _numpy_tables()
    try:
        array = np.array(values, dtype="<i8")
    except OverflowError:
        extend(_int_parts(values))
        return
    wide16 = (array < -128) | (array > 127)
    wide32 = (array < -32768) | (array > 32767)
    wide64 = (array < -2147483648) | (array > 2147483647)
    width_class = wide16.astype(np.intp)
    width_class += wide32
    width_class += wide64
    part_sizes = sizes[width_class]
    starts = np.cumsum(part_sizes)
    starts -= part_sizes
    out = np.empty(int(starts[-1] + part_sizes[-1]), dtype=np.uint8)
    out[starts] = tokens[width_class]
    value_bytes = array.view(np.uint8).reshape(len(array), 8)
    starts += 1  # now the offset of each value's first byte
    out[starts] = value_bytes[:, 0]
    out[starts[wide16] + 1] = value_bytes[wide16, 1]
    for mask, first, stop in ((wide32, 2, 4), (wide64, 4, 8)):
        offsets = starts[mask]
        selected = value_bytes[mask]
        for k in range(first, stop):
            out[offsets + k] = selected[:, k]
    append(memoryview(out))


def _float_run(values: Any, append: _Append, extend: Callable[[list[bytes]], None]) -> None:
    """Encode a run of exact floats, vectorized when long and all finite."""
    if len(values) < _VECTOR_MIN:
        extend(_float_parts(values))
        return
    np = _numpy_tables()[0]
    array = np.array(values, dtype="<f8")
    if not np.isfinite(array).all():
        # nan and inf are symbols, not reals: the comprehension knows how.
        extend(_float_parts(values))
        return
    out = np.empty((len(array), 9), dtype=np.uint8)
    out[:, 0] = Token.REAL64
    out[:, 1:] = array.view(np.uint8).reshape(len(array), 8)
    append(memoryview(out.reshape(-1)))


def _string_parts(raw: bytes, append: _Append) -> None:
    n = len(raw)
    append(_STR_HEADS[n] if n < 128 else _S + encode_varint(n))
    append(raw)


# ---------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------


def encode_parts(
    expr: object, out: list[_Piece], *, max_depth: int = _DEFAULT_MAX_DEPTH
) -> None:
    """Append the WXF parts of ``expr`` (no header) to ``out``.

    Args:
        expr: the value to encode.
        out: list receiving byte pieces; ``b"".join(out)`` gives the bytes.
        max_depth: most containers that may be open at once.  Each list,
            function, association and association rule counts one level, as
            in :func:`linkserver.wxf.decoder.loads`.

    Raises:
        WXFEncodeError: if a value has no WXF form, or nesting is deeper than
            ``max_depth`` (a value that contains itself ends here too).
    """
    append = out.append
    extend = out.extend
    small_int = _SMALL_INT
    str_heads = _STR_HEADS
    bin_heads = _BIN_HEADS
    func_heads = _FUNC_HEADS
    list_heads = _LIST_HEADS
    symbols = _SYMBOLS
    pack_j = _pack_j
    pack_i = _pack_i
    pack_r = _pack_r
    J = _J
    I32 = _I32
    R = _R
    stack: list[Iterator[object]] = []
    it: Iterator[object] = iter((expr,))
    x: Any
    try:
        while True:
            for x in it:
                t = type(x)
                if t is int:
                    if -128 <= x < 128:
                        append(small_int[x + 128])
                    elif -32768 <= x < 32768:
                        append(pack_j(J, x))
                    elif -2147483648 <= x < 2147483648:
                        append(pack_i(I32, x))
                    else:
                        append(_int_part(x))
                elif t is str:
                    raw = x.encode()
                    n = len(raw)
                    append(str_heads[n] if n < 128 else _S + encode_varint(n))
                    append(raw)
                elif t is float:
                    # x - x is 0.0 exactly for every finite float, nan otherwise.
                    if x - x == 0.0:
                        append(pack_r(R, x))
                    else:
                        append(_nonfinite_part(x))
                elif t is list or t is tuple:
                    n = len(x)
                    append(list_heads[n] if n < 128 else _function_head(n) + _LIST_SYMBOL)
                    if len(stack) >= max_depth:
                        raise _too_deep(max_depth)
                    if n >= _HOMOGENEOUS_MIN:
                        # Long runs of one atom type (vectors of numbers)
                        # are common; a comprehension encodes them at about
                        # twice the speed of the general loop.
                        kinds = set(map(type, x))
                        if len(kinds) == 1:
                            kind = kinds.pop()
                            if kind is int:
                                _int_run(x, append, extend)
                                continue
                            if kind is float:
                                _float_run(x, append, extend)
                                continue
                    if n:
                        stack.append(it)
                        it = iter(x)
                        break
                elif t is WLFunction:
                    args = x.args
                    head = x.head
                    n = len(args)
                    append(func_heads[n] if n < 128 else _function_head(n))
                    if len(stack) >= max_depth:
                        raise _too_deep(max_depth)
                    th = type(head)
                    if th is WLSymbolFactory or th is WLSymbol:
                        part = symbols.get(head.name)
                        append(part if part is not None else _symbol_part(head.name))
                        if n:
                            stack.append(it)
                            it = iter(args)
                            break
                    else:
                        stack.append(it)
                        it = iter((head, *args))
                        break
                elif t is WLSymbolFactory or t is WLSymbol:
                    part = symbols.get(x.name)
                    append(part if part is not None else _symbol_part(x.name))
                elif t is _Raw:
                    append(x.data)
                elif t is dict:
                    n = len(x)
                    append(_A + encode_varint(n))
                    # An association and its rules are two levels, as the
                    # decoder counts them.
                    if len(stack) + 1 >= max_depth:
                        raise _too_deep(max_depth)
                    if n:
                        # [-, k1, v1, -, k2, v2, ...] built by slice assignment,
                        # which runs in C.
                        flat: list[object] = [_RULE] * (3 * n)
                        flat[1::3] = x.keys()
                        flat[2::3] = x.values()
                        stack.append(it)
                        stack.append(iter(()))
                        it = iter(flat)
                        break
                elif t is bool:
                    append(_TRUE if x else _FALSE)
                elif x is None:
                    append(_NULL)
                elif t is bytes or t is bytearray:
                    n = len(x)
                    append(bin_heads[n] if n < 128 else _B + encode_varint(n))
                    append(x)
                else:
                    replacement = _resolve(t)(x, append)
                    if replacement is not _DONE:
                        if len(stack) >= max_depth:
                            raise _too_deep(max_depth)
                        stack.append(it)
                        it = iter((replacement,))
                        break
            else:
                if stack:
                    it = stack.pop()
                    continue
                break
    except UnicodeEncodeError as exc:
        raise WXFEncodeError(
            f"string is not valid Unicode and has no UTF-8 form: {exc}"
        ) from exc


def _too_deep(max_depth: int) -> WXFEncodeError:
    return WXFEncodeError(
        f"expression nests deeper than max_depth={max_depth} "
        "(does a list or dict contain itself?)"
    )


def dumps(
    expr: object, *, compress: bool = False, max_depth: int = _DEFAULT_MAX_DEPTH
) -> bytes:
    """Serialize ``expr`` to WXF bytes, as ``json.dumps`` does to JSON text.

    Args:
        expr: a Python value or wolframclient expression (see the module
            docstring for the mapping).
        compress: write the compressed form, ``8C:`` and a zlib stream, as
            ``BinarySerialize[expr, PerformanceGoal -> "Size"]`` does.
        max_depth: most containers that may be open at once (see
            :func:`encode_parts`).

    Returns:
        The bytes, header included; identical to wolframclient's
        ``export(expr, target_format="wxf", compress=compress)``.

    Raises:
        WXFEncodeError: if some value has no WXF form (the message names its
            type), or nesting is deeper than ``max_depth``.
    """
    out: list[_Piece] = [HEADER]
    encode_parts(expr, out, max_depth=max_depth)
    data = b"".join(out)
    if compress:
        # zlib.compress at the default level gives the very bytes of
        # wolframclient's streaming compressobj(): deflate output does not
        # depend on how the input was fed in without flushes.
        return COMPRESSED_HEADER + zlib.compress(memoryview(data)[len(HEADER) :])
    return data


# ---------------------------------------------------------------------------
# Every other type: dispatch on the MRO, like wolframclient's Dispatch
# ---------------------------------------------------------------------------

_Handler = Callable[[Any, _Append], object]


def _encode_int_like(x: Any, append: _Append) -> object:
    append(_int_part(int(x)))
    return _DONE


def _encode_float_like(x: Any, append: _Append) -> object:
    value = float(x)
    append(_pack_r(_R, value) if value - value == 0.0 else _nonfinite_part(value))
    return _DONE


def _encode_raw_float(x: Any, append: _Append) -> object:
    # numpy float16/32/64 scalars: wolframclient packs them as they are,
    # without mapping nan and inf to symbols as it does for Python floats.
    append(_pack_r(_R, float(x)))
    return _DONE


def _encode_str_like(x: Any, append: _Append) -> object:
    _string_parts(x.encode("utf-8"), append)
    return _DONE


def _encode_bytes_like(x: Any, append: _Append) -> object:
    data = x.tobytes() if isinstance(x, memoryview) else bytes(x)
    n = len(data)
    append(_BIN_HEADS[n] if n < 128 else _B + encode_varint(n))
    append(data)
    return _DONE


def _encode_bool(x: Any, append: _Append) -> object:
    append(_TRUE if x else _FALSE)
    return _DONE


def _encode_none(x: Any, append: _Append) -> object:
    append(_NULL)
    return _DONE


def _encode_mapping(x: Any, append: _Append) -> object:
    # A dict subclass is an association like a dict; the fast path does it.
    return dict(x.items())


def _encode_iterable(x: Any, append: _Append) -> object:
    # Materialize first: the length comes before the elements, and counting
    # what is actually iterated is the only count that cannot be wrong.
    return tuple(x)


def _encode_complex(x: Any, append: _Append) -> object:
    # Real and imaginary parts are packed as they are (inf and nan too), as
    # wolframclient does.
    append(_COMPLEX_HEAD + _pack_r(_R, float(x.real)) + _pack_r(_R, float(x.imag)))
    return _DONE


def _encode_symbol(x: Any, append: _Append) -> object:
    append(_symbol_part(x.name))
    return _DONE


def _encode_function(x: Any, append: _Append) -> object:
    # A WLFunction subclass: encode as the plain function it is.
    return WLFunction(x.head, *x.args)


def _encode_input_expression(x: Any, append: _Append) -> object:
    text = x.input
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    append(_TO_EXPRESSION_HEAD)
    _string_parts(raw, append)
    return _DONE


def _encode_wl_association(x: Any, append: _Append) -> object:
    # wolframclient's Association class is written as the function
    # Association[Rule[k, v], ...], not as an 'A' part.
    rule = WLSymbol("Rule")
    return WLFunction(
        WLSymbol("Association"), *(WLFunction(rule, k, v) for k, v in x.items())
    )


def _encode_serializable(x: Any, append: _Append) -> object:
    return x.to_wl()


def _encode_decimal(x: Any, append: _Append) -> object:
    if x.is_infinite():
        append(_INFINITY if x > 0 else _MINUS_INFINITY)
    elif x.is_nan():
        append(_INDETERMINATE)
    else:
        # wolframclient writes fixed-point digits with its accuracy mark. A
        # value whose fixed-point form would be mostly zeros
        # (Decimal("1E+999999999") is a short value) is written as
        # mantissa`precision*^exponent instead, a form the Wolfram Language
        # and wolframclient also read; beyond the bound in significant digits
        # it is refused.
        sign, digits, exponent = x.as_tuple()
        limit = get_max_digits()
        if len(digits) > limit:
            raise WXFEncodeError(
                f"cannot write a big real: {too_many_digits('a real', len(digits))}"
            )
        if abs(int(exponent)) <= _MAX_FIXED_POINT_ZEROS:
            text = f"{x:f}``{_DECIMAL_PRECISION:d}".encode("ascii")
        else:
            scientific = f"{x:e}"  # d.ddde+N, every digit kept
            mantissa, _, power = scientific.partition("e")
            text = f"{mantissa}`{len(digits)}.*^{int(power)}".encode("ascii")
        append(bytes((Token.BIG_REAL,)) + encode_varint(len(text)) + text)
    return _DONE


def _encode_fraction(x: Any, append: _Append) -> object:
    append(_RATIONAL_HEAD + _int_part(int(x.numerator)) + _int_part(int(x.denominator)))
    return _DONE


# -- dates and times, in wolframclient's forms --------------------------------

# wolframclient writes a time zone as its name when the name looks like
# "Area/City" or is "UTC", else as an offset in hours.
_ZONE_NAME = re.compile(r"[A-Za-z]+/[A-Za-z]+|UTC")


def _tz_offset_hours(tz: datetime.tzinfo, when: datetime.datetime | None) -> float:
    offset = tz.utcoffset(when)
    if offset is None:
        # wolframclient would ask the clock for "now"; a codec takes no clock.
        raise WXFEncodeError(
            f"time zone {tz!r} has no fixed UTC offset without a date"
        )
    return offset.total_seconds() / 3600


def _tz_value(
    tz: datetime.tzinfo | None, when: datetime.datetime | None, by_name: bool = True
) -> object:
    if tz is None:
        # Kernels since 12 read None as "no time zone".
        return WLSymbol("None")
    if by_name:
        key = tz.key if isinstance(tz, zoneinfo.ZoneInfo) else None
        for name in (tz.tzname(None), key):
            if isinstance(name, str) and _ZONE_NAME.fullmatch(name):
                return name
    return _tz_offset_hours(tz, when)


def _encode_datetime(x: Any, append: _Append) -> object:
    return WLFunction(
        WLSymbol("DateObject"),
        [x.year, x.month, x.day, x.hour, x.minute, x.second + x.microsecond / 1000000.0],
        "Instant",
        "Gregorian",
        _tz_value(x.tzinfo, x),
    )


def _encode_date(x: Any, append: _Append) -> object:
    return WLFunction(
        WLSymbol("DateObject"), [x.year, x.month, x.day], "Day", "Gregorian", WLSymbol("None")
    )


def _encode_time(x: Any, append: _Append) -> object:
    parts: list[object] = [[x.hour, x.minute, x.second + x.microsecond / 1000000.0]]
    if x.tzinfo is not None:
        parts.append(
            WLFunction(WLSymbol("Rule"), WLSymbol("TimeZone"), _tz_value(x.tzinfo, None, False))
        )
    return WLFunction(WLSymbol("TimeObject"), *parts)


def _encode_timedelta(x: Any, append: _Append) -> object:
    return WLFunction(WLSymbol("Quantity"), x.total_seconds(), "Seconds")


def _encode_tzinfo(x: Any, append: _Append) -> object:
    return _tz_value(x, None)


# -- arrays ---------------------------------------------------------------------

_TYPE_BY_NAME = {name: kind for kind, name in ARRAY_TYPE_NAMES.items()}

# A packed array has no unsigned types: wolframclient widens them to the next
# signed type, and has no room for uint64.
_PACKED_WIDENING: dict[ArrayType, ArrayType] = {
    ArrayType.UNSIGNED_INTEGER8: ArrayType.INTEGER16,
    ArrayType.UNSIGNED_INTEGER16: ArrayType.INTEGER32,
    ArrayType.UNSIGNED_INTEGER32: ArrayType.INTEGER64,
}


def _array_header(token: Token, kind: ArrayType, shape: tuple[int, ...]) -> bytes:
    for dim in shape:
        if dim <= 0:
            raise WXFEncodeError(
                f"array of shape {shape} has an empty dimension; WXF arrays "
                "need every dimension positive"
            )
    return (
        bytes((token, kind))
        + encode_varint(len(shape))
        + b"".join(encode_varint(dim) for dim in shape)
    )


def _encode_ndarray(x: Any, append: _Append, packed: bool) -> object:
    np = sys.modules["numpy"]
    if not x.shape:
        # A 0-d array is its one element.
        return x.item()
    dtype = x.dtype
    kind = DTYPE_ARRAY_TYPES.get((dtype.kind, dtype.itemsize))
    if kind is None:
        raise WXFEncodeError(f"numpy arrays of dtype {dtype} have no WXF form")
    if packed:
        if kind in _PACKED_WIDENING:
            kind = _PACKED_WIDENING[kind]
            x = x.astype(LITTLE_ENDIAN_DTYPES[kind])
        elif kind not in PACKED_ARRAY_TYPES:
            raise WXFEncodeError(f"a packed array cannot hold numpy dtype {dtype}")
    # WXF is little-endian whatever the host; 0-copy when already so.
    x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<"))
    append(
        _array_header(
            Token.PACKED_ARRAY if packed else Token.NUMERIC_ARRAY, kind, tuple(x.shape)
        )
    )
    # The buffer itself goes into the final join: one copy, no tobytes().
    append(memoryview(x.reshape(-1).view(np.uint8)))
    return _DONE


def _encode_numeric_ndarray(x: Any, append: _Append) -> object:
    return _encode_ndarray(x, append, packed=False)


def _encode_packed_ndarray(x: Any, append: _Append) -> object:
    return _encode_ndarray(x, append, packed=True)


def _encode_wl_array(x: Any, append: _Append, packed: bool) -> object:
    # wolframclient.language.array.NumericArray / PackedArray: a sequence
    # with a type name and a shape; its tobytes() packs the elements.
    kind = _TYPE_BY_NAME.get(x.type)
    if kind is None or (packed and kind not in PACKED_ARRAY_TYPES):
        raise WXFEncodeError(f"unknown array type {x.type!r}")
    token = Token.PACKED_ARRAY if packed else Token.NUMERIC_ARRAY
    append(_array_header(token, kind, tuple(x.shape)))
    append(x.tobytes())
    return _DONE


def _encode_wl_numeric_array(x: Any, append: _Append) -> object:
    return _encode_wl_array(x, append, packed=False)


def _encode_wl_packed_array(x: Any, append: _Append) -> object:
    return _encode_wl_array(x, append, packed=True)


def _encode_numpy_floating(x: Any, append: _Append) -> object:
    # Extended precision (longdouble): wolframclient writes mantissa * 2^exp
    # as Times[m, Power[2, e]] with both numbers as machine reals.
    np = sys.modules["numpy"]
    mantissa, exponent = np.frexp(x)
    append(
        _function_head(2)
        + _SYMBOLS["Times"]
        + _pack_r(_R, float(mantissa))
        + _function_head(2)
        + _SYMBOLS["Power"]
        + _SMALL_INT[130]
        + _pack_r(_R, float(exponent))
    )
    return _DONE


def _encode_fallback(x: Any, append: _Append) -> object:
    # wolframclient's last resort: anything iterable that is not a string or
    # a class is a List.
    if not isinstance(x, (str, type)) and hasattr(x, "__iter__"):
        return tuple(x)
    cls = type(x)
    raise WXFEncodeError(
        f"cannot encode a value of type {cls.__module__}.{cls.__qualname__} as WXF"
    )


_BY_CLASS: dict[type, _Handler] = {
    bool: _encode_bool,
    type(None): _encode_none,
    int: _encode_int_like,
    float: _encode_float_like,
    complex: _encode_complex,
    str: _encode_str_like,
    bytes: _encode_bytes_like,
    bytearray: _encode_bytes_like,
    memoryview: _encode_bytes_like,
    dict: _encode_mapping,
    Association: _encode_wl_association,
    WLSymbol: _encode_symbol,
    WLFunction: _encode_function,
    WLInputExpression: _encode_input_expression,
    decimal.Decimal: _encode_decimal,
    fractions.Fraction: _encode_fraction,
    datetime.datetime: _encode_datetime,
    datetime.date: _encode_date,
    datetime.time: _encode_time,
    datetime.timedelta: _encode_timedelta,
    datetime.tzinfo: _encode_tzinfo,
}
for _iterable in (list, tuple, set, frozenset, range, map, types.GeneratorType):
    _BY_CLASS[_iterable] = _encode_iterable

_BY_NAME: dict[str, _Handler] = {
    "itertools.chain": _encode_iterable,
    "itertools.groupby": _encode_iterable,
    "wolframclient.serializers.serializable.WLSerializable": _encode_serializable,
    "wolframclient.language.array.NumericArray": _encode_wl_numeric_array,
    "wolframclient.language.array.PackedArray": _encode_wl_packed_array,
    "wolframclient.utils.packedarray.PackedArray": _encode_packed_ndarray,
    "numpy.ndarray": _encode_numeric_ndarray,
    "numpy.integer": _encode_int_like,
    "numpy.float16": _encode_raw_float,
    "numpy.float32": _encode_raw_float,
    "numpy.float64": _encode_raw_float,
    "numpy.floating": _encode_numpy_floating,
    "numpy.complexfloating": _encode_complex,
}

_RESOLVED: dict[type, _Handler] = {}
_RESOLVED_LIMIT = 1024


def _resolve(cls: type) -> _Handler:
    """Find the handler for ``cls``: the first class of its MRO that has one."""
    handler = _RESOLVED.get(cls)
    if handler is not None:
        return handler
    handler = _encode_fallback
    for klass in cls.__mro__:
        found = _BY_CLASS.get(klass) or _BY_NAME.get(
            f"{klass.__module__}.{klass.__qualname__}"
        )
        if found is not None:
            handler = found
            break
    if len(_RESOLVED) < _RESOLVED_LIMIT:
        _RESOLVED[cls] = handler
    return handler
