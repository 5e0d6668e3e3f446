"""Unit tests of linkserver.wxf: golden vectors, every token and array type, errors.

The golden vectors are written by hand from the rules of the "WXF Format
Description" (Wolfram Language tutorial), section by section -- header,
varints, each part type, arrays, compression -- and are checked both ways: ``dumps(value) == data`` and ``loads(data) == value``
(h11's SIMPLE_CASES idea).  Decode-only vectors cover what no Python value
encodes to (delayed rules, big reals as the kernel writes them, non-minimal
varints).  Parity with wolframclient, the other yardstick, is checked here
on hand-picked values and in tests/property on generated ones.
"""

from __future__ import annotations

import ast
import datetime
import decimal
import fractions
import pathlib
import struct
import sys
import zlib
import zoneinfo

import numpy as np
import pytest
from wolframclient.deserializers import binary_deserialize
from wolframclient.language import Global, wl, wlexpr
from wolframclient.language.array import NumericArray as WLNumericArray
from wolframclient.language.array import PackedArray as WLPackedArray
from wolframclient.language.expression import WLFunction, WLSymbol
from wolframclient.serializers import export
from wolframclient.utils.datastructures import Association, immutabledict
from wolframclient.utils.packedarray import PackedArray

import linkserver.wxf
from linkserver import wxf
from linkserver.errors import WXFDecodeError, WXFEncodeError
from linkserver.wxf import encoder
from linkserver.wxf.tokens import (
    ARRAY_TYPE_NAMES,
    ELEMENT_SIZES,
    LITTLE_ENDIAN_DTYPES,
    PACKED_ARRAY_TYPES,
    ArrayType,
    Token,
)
from linkserver.wxf.varint import MAX_VARINT, decode_varint, encode_varint
from tests.strategies import same_expression


def packed(values: object, dtype: str) -> np.ndarray:
    return np.array(values, dtype=dtype).view(PackedArray)


def le(fmt: str, *values: object) -> bytes:
    return struct.pack("<" + fmt, *values)


# (id, value, WXF bytes without the "8:" header), checked both ways.
GOLDEN: list[tuple[str, object, bytes]] = [
    # Integers: the narrowest signed type that holds the value.
    ("int8-zero", 0, b"C\x00"),
    ("int8-max", 127, b"C\x7f"),
    ("int8-min", -128, b"C\x80"),
    ("int16-min-positive", 128, b"j\x80\x00"),
    ("int16-negative", -129, b"j\x7f\xff"),
    ("int16-max", 32767, b"j\xff\x7f"),
    ("int32", 32768, b"i\x00\x80\x00\x00"),
    ("int32-min", -(2**31), b"i\x00\x00\x00\x80"),
    ("int64", 2**31, b"L\x00\x00\x00\x80\x00\x00\x00\x00"),
    ("int64-max", 2**63 - 1, b"L\xff\xff\xff\xff\xff\xff\xff\x7f"),
    ("int64-min", -(2**63), b"L\x00\x00\x00\x00\x00\x00\x00\x80"),
    # Big integers: ASCII digits after a varint length.
    ("bigint", 2**63, b"I\x139223372036854775808"),
    ("bigint-negative", -(2**63) - 1, b"I\x14-9223372036854775809"),
    ("bigint-10^30", 10**30, b"I\x1f1" + b"0" * 30),
    # Machine reals: IEEE double, little-endian.
    ("real", 1.5, b"r" + le("d", 1.5)),
    ("real-negative-zero", -0.0, b"r" + le("d", -0.0)),
    ("real-tiny", 5e-324, b"r" + le("d", 5e-324)),
    # Big reals: InputForm text; a Decimal is written with wolframclient's
    # "``28" accuracy mark.
    ("bigreal", decimal.Decimal("1.5"), b"R\x071.5``28"),
    ("bigreal-negative", decimal.Decimal("-0.001"), b"R\x0a-0.001``28"),
    # Strings: varint byte count, then UTF-8.
    ("string", "hello", b"S\x05hello"),
    ("string-empty", "", b"S\x00"),
    ("string-unicode", "中文", b"S\x06\xe4\xb8\xad\xe6\x96\x87"),
    ("string-200", "a" * 200, b"S\xc8\x01" + b"a" * 200),
    # Binary strings (ByteArray).
    ("binary", b"\x01\x02\x03", b"B\x03\x01\x02\x03"),
    ("binary-empty", b"", b"B\x00"),
    # Symbols.
    ("symbol", wl.x, b"s\x01x"),
    ("symbol-context", Global.x, b"s\x08Global`x"),
    ("symbol-unicode", wl.α, b"s\x02\xce\xb1"),
    ("true", True, b"s\x04True"),
    ("false", False, b"s\x05False"),
    ("null", None, b"s\x04Null"),
    # Functions: length, head, parts.
    ("function", wl.f(wl.x), b"f\x01s\x01fs\x01x"),
    ("function-empty", wl.f(), b"f\x00s\x01f"),
    ("function-two", wl.Plus(1, wl.x), b"f\x02s\x04PlusC\x01s\x01x"),
    ("function-head-expression", wl.f(1)(2), b"f\x01f\x01s\x01fC\x01C\x02"),
    ("function-head-string", WLFunction("g", 1), b"f\x01S\x01gC\x01"),
    ("list", (1, 2, 3), b"f\x03s\x04ListC\x01C\x02C\x03"),
    ("list-empty", (), b"f\x00s\x04List"),
    ("list-nested", ((1,), ()), b"f\x02s\x04Listf\x01s\x04ListC\x01f\x00s\x04List"),
    # Associations: length, then rules of key and value.
    ("association", {"a": 1}, b"A\x01-S\x01aC\x01"),
    ("association-empty", {}, b"A\x00"),
    ("association-two", {wl.x: (1,), 2: "b"}, b"A\x02-s\x01xf\x01s\x04ListC\x01-C\x02S\x01b"),
    # Packed arrays: type, rank, dimensions, data.
    ("packed-int8", packed([1, 2, 3], "i1"), b"\xc1\x00\x01\x03\x01\x02\x03"),
    ("packed-2x2", packed([[1, 2], [3, 4]], "i1"), b"\xc1\x00\x02\x02\x02\x01\x02\x03\x04"),
    ("packed-real64", packed([1.5], "f8"), b"\xc1\x23\x01\x01" + le("d", 1.5)),
    # Numeric arrays: same layout, unsigned types allowed.
    ("numeric-uint8", np.array([1, 2, 3], dtype="u1"), b"\xc2\x10\x01\x03\x01\x02\x03"),
    ("numeric-int16", np.array([-1, 256], dtype="i2"), b"\xc2\x01\x01\x02\xff\xff\x00\x01"),
    (
        "numeric-complex64",
        np.array([1 + 2j], dtype="c8"),
        b"\xc2\x33\x01\x01" + le("ff", 1.0, 2.0),
    ),
]


PI_TEXT = b"3.14159265358979323846264338327950288419716939937510582097`50."

# (id, WXF bytes without header, expected value): decoding only.
DECODE_ONLY: list[tuple[str, bytes, object]] = [
    ("rule-delayed", b"A\x01:S\x01aC\x01", {"a": 1}),
    ("both-rules", b"A\x02-C\x01C\x02:C\x03C\x04", {1: 2, 3: 4}),
    ("bigreal-precision", b"R\x071.5`20.", decimal.Decimal("1.5")),
    ("bigreal-exponent", b"R\x0b1.5`20.*^10", decimal.Decimal("1.5E10")),
    ("bigreal-negative-exponent", b"R\x0c-2.5`20.*^-3", decimal.Decimal("-2.5E-3")),
    ("bigreal-machine-mark", b"R\x041.5`", decimal.Decimal("1.5")),
    ("bigreal-no-mark-exponent", b"R\x071.5*^10", decimal.Decimal("1.5E10")),
    (
        "bigreal-pi",
        b"R" + bytes((len(PI_TEXT),)) + PI_TEXT,
        decimal.Decimal(PI_TEXT[:-4].decode()),
    ),
    ("indeterminate", b"s\x0dIndeterminate", "nan"),
    ("none-symbol", b"s\x04None", None),
    ("non-minimal-varint", b"S\x85\x00hello", "hello"),
    ("int8-wide-form", b"j\x01\x00", 1),
    ("function-head-true", b"f\x01s\x04TrueC\x01", WLFunction(True, 1)),
]


def assert_same(actual: object, expected: object) -> None:
    assert same_expression(actual, expected, exact_types=False), (actual, expected)


@pytest.mark.parametrize(("name", "value", "body"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_encode(name: str, value: object, body: bytes) -> None:
    assert wxf.dumps(value) == b"8:" + body


@pytest.mark.parametrize(("name", "value", "body"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_decode(name: str, value: object, body: bytes) -> None:
    assert_same(wxf.loads(b"8:" + body), value)


@pytest.mark.parametrize(("name", "value", "body"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_compressed_both_ways(name: str, value: object, body: bytes) -> None:
    data = b"8C:" + zlib.compress(body)
    assert wxf.dumps(value, compress=True) == data
    assert_same(wxf.loads(data), value)


@pytest.mark.parametrize(("name", "body", "value"), DECODE_ONLY, ids=[d[0] for d in DECODE_ONLY])
def test_decode_only(name: str, body: bytes, value: object) -> None:
    result = wxf.loads(b"8:" + body)
    if value == "nan":
        assert isinstance(result, float) and result != result
    else:
        assert_same(result, value)
    # And exactly as wolframclient reads it, where wolframclient reads it.
    if name != "bigreal-no-mark-exponent":  # wolframclient fails on this one
        assert same_expression(result, binary_deserialize(b"8:" + body))


def test_golden_vectors_match_wolframclient() -> None:
    for name, value, body in GOLDEN:
        if name == "symbol-unicode":
            continue  # wolframclient writes the character count, not bytes
        assert export(value, target_format="wxf") == b"8:" + body, name
        assert same_expression(binary_deserialize(b"8:" + body), value, exact_types=False), name


def test_list_and_tuple_encode_alike() -> None:
    assert wxf.dumps([1, [2, "x"]]) == wxf.dumps((1, (2, "x")))


# -- varints ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "data"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (500, b"\xf4\x03"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (MAX_VARINT, b"\xff" * 8 + b"\x7f"),
    ],
)
def test_varint_both_ways(value: int, data: bytes) -> None:
    assert encode_varint(value) == data
    assert decode_varint(data, 0) == (value, len(data))
    assert decode_varint(b"xx" + data + b"yy", 2) == (value, 2 + len(data))


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1])
def test_varint_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_varint(value)


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\xff" * 9 + b"\x01"])
def test_varint_invalid(data: bytes) -> None:
    with pytest.raises(WXFDecodeError):
        decode_varint(data, 0)


def test_long_lengths_use_multibyte_varints() -> None:
    text = "é" * 10_000
    data = wxf.dumps(text)
    assert data.startswith(b"8:S" + encode_varint(20_000))
    assert wxf.loads(data) == text
    big = tuple(range(300))
    assert wxf.dumps(big).startswith(b"8:f\xac\x02s\x04List")
    assert wxf.loads(wxf.dumps(big)) == big
    blob = bytes(range(256)) * 3
    assert wxf.loads(wxf.dumps(blob)) == blob


# -- tokens and array types ---------------------------------------------------


def test_token_values_are_the_format_bytes() -> None:
    chars = {
        Token.FUNCTION: "f", Token.INTEGER8: "C", Token.INTEGER16: "j",
        Token.INTEGER32: "i", Token.INTEGER64: "L", Token.REAL64: "r",
        Token.STRING: "S", Token.BINARY_STRING: "B", Token.SYMBOL: "s",
        Token.BIG_INTEGER: "I", Token.BIG_REAL: "R", Token.ASSOCIATION: "A",
        Token.RULE: "-", Token.RULE_DELAYED: ":",
    }  # fmt: skip
    for token, char in chars.items():
        assert token == ord(char)
    assert Token.PACKED_ARRAY == 0xC1
    assert Token.NUMERIC_ARRAY == 0xC2
    assert len(Token) == 16


def test_array_type_tables_are_complete() -> None:
    for table in (ELEMENT_SIZES, ARRAY_TYPE_NAMES, LITTLE_ENDIAN_DTYPES):
        assert set(table) == set(ArrayType)
    for kind in ArrayType:
        assert np.dtype(LITTLE_ENDIAN_DTYPES[kind]).itemsize == ELEMENT_SIZES[kind]
    assert not any(ARRAY_TYPE_NAMES[k].startswith("Unsigned") for k in PACKED_ARRAY_TYPES)
    assert len(PACKED_ARRAY_TYPES) == 8


SAMPLE = {
    "i": [[1, -2, 3], [4, 5, -6]],
    "u": [[1, 2, 3], [4, 5, 255]],
    "f": [[1.5, -2.25, 0.0], [np.inf, -np.inf, 1e-30]],
    "c": [[1 + 2j, -3j, 0], [1.5, 2, 3 + 4j]],
}


def flat_reals(array: np.ndarray) -> list[object]:
    # wolframclient's array wrappers take complex numbers as (re, im) pairs.
    if array.dtype.kind == "c":
        array = array.view(np.dtype(f"<f{array.dtype.itemsize // 2}"))
    return list(array.reshape(-1).tolist())


@pytest.mark.parametrize("kind", list(ArrayType), ids=lambda k: ARRAY_TYPE_NAMES[k])
def test_numeric_array_every_type(kind: ArrayType) -> None:
    dtype = np.dtype(LITTLE_ENDIAN_DTYPES[kind])
    array = np.array(SAMPLE[dtype.kind], dtype=dtype)
    body = bytes((0xC2, kind, 2, 2, 3)) + array.tobytes()
    assert wxf.dumps(array) == b"8:" + body
    assert export(array, target_format="wxf") == b"8:" + body
    decoded = wxf.loads(b"8:" + body)
    assert type(decoded) is np.ndarray
    assert decoded.dtype == dtype and decoded.shape == (2, 3)
    assert decoded.tobytes() == array.tobytes()
    assert same_expression(decoded, binary_deserialize(b"8:" + body))
    # wolframclient's own array wrapper writes the same bytes.
    wrapper = WLNumericArray(flat_reals(array), ARRAY_TYPE_NAMES[kind], shape=(2, 3))
    assert wxf.dumps(wrapper) == b"8:" + body


@pytest.mark.parametrize("kind", sorted(PACKED_ARRAY_TYPES), ids=lambda k: ARRAY_TYPE_NAMES[k])
def test_packed_array_every_type(kind: ArrayType) -> None:
    dtype = np.dtype(LITTLE_ENDIAN_DTYPES[kind])
    array = packed(SAMPLE[dtype.kind], dtype.str)
    body = bytes((0xC1, kind, 2, 2, 3)) + array.tobytes()
    assert wxf.dumps(array) == b"8:" + body
    assert export(array, target_format="wxf") == b"8:" + body
    decoded = wxf.loads(b"8:" + body)
    assert type(decoded) is PackedArray
    assert decoded.dtype == dtype and decoded.tobytes() == array.tobytes()
    assert same_expression(decoded, binary_deserialize(b"8:" + body))
    wrapper = WLPackedArray(flat_reals(array), ARRAY_TYPE_NAMES[kind], shape=(2, 3))
    assert wxf.dumps(wrapper) == b"8:" + body


@pytest.mark.parametrize(
    ("dtype", "widened"),
    [("u1", ArrayType.INTEGER16), ("u2", ArrayType.INTEGER32), ("u4", ArrayType.INTEGER64)],
)
def test_packed_unsigned_arrays_widen_like_wolframclient(dtype: str, widened: ArrayType) -> None:
    array = packed([1, 2, 255], dtype)
    data = wxf.dumps(array)
    assert data[2:4] == bytes((0xC1, widened))
    assert data == export(array, target_format="wxf")


def test_unsigned_types_are_not_packed() -> None:
    for kind in ArrayType:
        if kind not in PACKED_ARRAY_TYPES:
            with pytest.raises(WXFDecodeError, match="element type"):
                wxf.loads(bytes((0x38, 0x3A, 0xC1, kind, 1, 1)) + b"\x00" * 8)


def test_arrays_decode_read_only_and_detached_from_caller_buffers() -> None:
    source = bytearray(wxf.dumps(np.array([1, 2, 3], dtype="i4")))
    decoded = wxf.loads(source)
    assert isinstance(decoded, np.ndarray)
    assert not decoded.flags.writeable
    source[-1] = 0x7F
    assert decoded.tolist() == [1, 2, 3]
    assert wxf.loads(memoryview(source)).tolist() == [1, 2, 0x7F000003]


def test_array_layouts_and_byte_orders() -> None:
    base = np.arange(12, dtype="<i4").reshape(3, 4)
    expected = wxf.dumps(base)
    assert wxf.dumps(base.astype(">i4")) == expected  # wolframclient fails here
    assert wxf.dumps(np.asfortranarray(base)) == expected
    assert wxf.dumps(base.T) == export(base.T, target_format="wxf")
    assert wxf.dumps(base[:, ::2]) == export(base[:, ::2], target_format="wxf")
    assert wxf.dumps(np.arange(3, dtype=np.longlong)) == wxf.dumps(np.arange(3, dtype="<i8"))


def test_zero_dimensional_arrays_are_their_element() -> None:
    for value in (np.array(5), np.array(1.5), np.array(True), np.array(np.nan)):
        assert wxf.dumps(value) == export(value, target_format="wxf")


# -- Python values, as wolframclient maps them --------------------------------

UTC = datetime.timezone.utc
PLUS2 = datetime.timezone(datetime.timedelta(hours=2))

PARITY_VALUES: list[object] = [
    float("nan"), float("inf"), -float("inf"),
    1 + 2j, complex(float("inf"), float("nan")),
    fractions.Fraction(3, 4), fractions.Fraction(-(10**30), 7),
    decimal.Decimal("1E+30"), decimal.Decimal("-0"), decimal.Decimal("inf"),
    decimal.Decimal("-inf"), decimal.Decimal("nan"),
    wlexpr("x^2"), wlexpr(b"y + 1"),
    Association(a=1, b=[2]), {1: 2}, {"k": {"n": None}},
    {1, 2}, frozenset({3}), range(4),
    memoryview(b"ab"), bytearray(b"yz"),
    wl.f(a=1), wl.f(wl.g)(wl.h), wl.Global.f(wl.System.x),
    np.float64("nan"), np.float32(1.5), np.float16(2.5), np.int8(3), np.uint64(2**64 - 1),
    np.longdouble(1.5), np.complex64(1 + 2j), np.str_("hi"), np.bytes_(b"by"),
    datetime.datetime(2020, 1, 2, 3, 4, 5, 600),
    datetime.datetime(2020, 1, 2, tzinfo=UTC),
    datetime.datetime(2020, 1, 2, tzinfo=PLUS2),
    datetime.date(2020, 1, 2), datetime.time(1, 2, 3), datetime.time(1, 2, 3, tzinfo=PLUS2),
    datetime.timedelta(seconds=3.5), UTC, PLUS2,
    [True, False, None, "x", b"x", 1.5, -(2**80), [[]], {}],
    list(range(-300, 300, 7)), [float(i) / 7 for i in range(300)],
    [0.5] * 299 + [float("nan")], [1] * 300 + [2**70], [1] * 300 + [True],
]  # fmt: skip


@pytest.mark.parametrize("value", PARITY_VALUES, ids=lambda v: type(v).__name__)
def test_encoding_matches_wolframclient(value: object) -> None:
    assert wxf.dumps(value) == export(value, target_format="wxf")
    assert wxf.dumps(value, compress=True) == export(value, target_format="wxf", compress=True)


@pytest.mark.parametrize("value", PARITY_VALUES, ids=lambda v: type(v).__name__)
def test_decoding_matches_wolframclient(value: object) -> None:
    data = export(value, target_format="wxf")
    assert same_expression(wxf.loads(data), binary_deserialize(data))


def test_one_shot_iterables_match_wolframclient() -> None:
    import itertools

    makers = [
        lambda: (i for i in range(3)),
        lambda: map(abs, [-1, -2]),
        lambda: itertools.chain([1], [2]),
        lambda: zip([1, 2], "ab"),
        lambda: iter([wl.x]),
    ]
    for make in makers:
        assert wxf.dumps(make()) == export(make(), target_format="wxf")


def test_symbols_of_note_decode_to_python_values() -> None:
    assert wxf.loads(b"8:s\x04True") is True
    assert wxf.loads(b"8:s\x05False") is False
    assert wxf.loads(b"8:s\x04Null") is None
    assert wxf.loads(b"8:f\x00s\x04List") == ()
    association = wxf.loads(b"8:A\x01-S\x01aC\x01")
    assert type(association) is immutabledict
    assert hash(association) == hash(immutabledict({"a": 1}))


def test_associations_as_keys_and_repeated_symbols() -> None:
    value = {immutabledict({"a": (1, 2)}): wl.x, (1, wl.f(2)): [wl.x, wl.x]}
    decoded = wxf.loads(wxf.dumps(value))
    assert decoded == {immutabledict({"a": (1, 2)}): wl.x, (1, wl.f(2)): (wl.x, wl.x)}
    inner = decoded[(1, wl.f(2))]
    assert inner[0] is inner[1]  # one symbol object per name and call


def test_subclasses_are_encoded_like_their_base() -> None:
    import enum
    import collections

    class Color(enum.IntEnum):
        RED = 300

    class Text(str):
        pass

    class Row(tuple):
        pass

    for value in (Color.RED, Text("t"), Row((1, 2)), collections.OrderedDict(a=1),
                  collections.defaultdict(int, b=2), collections.deque([1, 2])):  # fmt: skip
        assert wxf.dumps(value) == export(value, target_format="wxf")


def test_wl_serializable_objects() -> None:
    from wolframclient.serializers.serializable import WLSerializable

    class Point(WLSerializable):
        def to_wl(self) -> object:
            return wl.Point([1, 2])

    assert wxf.dumps(Point()) == export(Point(), target_format="wxf")


# -- errors -------------------------------------------------------------------

BAD_INPUT: list[tuple[str, bytes, str]] = [
    ("empty", b"", "not WXF"),
    ("wrong-version", b"7:C\x00", "not WXF"),
    ("no-separator", b"8C\x00", "not WXF"),
    ("no-body", b"8:", "data ends"),
    ("truncated-int8", b"8:C", "data ends"),
    ("truncated-int32", b"8:i\x01\x02", "data ends"),
    ("truncated-real", b"8:r\x00\x00", "data ends"),
    ("truncated-function", b"8:f\x02s\x01fC\x01", "data ends"),
    ("truncated-head", b"8:f\x01s\x05ab", "symbol declares 5 bytes"),
    ("truncated-association", b"8:A\x02-C\x01C\x01", "data ends"),
    ("truncated-rule", b"8:A\x01-C\x01", "data ends"),
    ("truncated-varint", b"8:S\x80", "data ends"),
    ("extra-bytes", b"8:C\x01\x00", "extra bytes"),
    ("two-expressions", b"8:C\x01C\x02", "extra bytes"),
    ("string-overrun", b"8:S\x05ab", "string declares 5 bytes"),
    ("string-utf8", b"8:S\x02\xff\xfe", "not valid UTF-8"),
    ("long-string-utf8", b"8:S\x80\x40" + b"\xff" * 8192, "not valid UTF-8"),
    ("symbol-utf8", b"8:s\x02\xff\xfe", "not valid UTF-8"),
    ("head-utf8", b"8:f\x00s\x01\xff", "not valid UTF-8"),
    ("binary-overrun", b"8:B\x09abc", "declares 9 bytes"),
    ("unknown-token", b"8:\x00", "unknown token byte 0x00"),
    ("unknown-token-in-list", b"8:f\x01s\x04List\xff", "unknown token byte 0xff"),
    ("rule-outside", b"8:-C\x01C\x02", "outside an association"),
    ("rule-delayed-in-list", b"8:f\x01s\x04List:C\x01C\x02", "outside an association"),
    ("atom-in-association", b"8:A\x01C\x01", "must be a rule"),
    ("bigint-letters", b"8:I\x03abc", "invalid big integer"),
    ("bigint-empty", b"8:I\x00", "invalid big integer"),
    ("bigreal-letters", b"8:R\x03abc", "invalid big real"),
    ("bigreal-trailing", b"8:R\x051.5`x", "invalid big real"),
    ("bigreal-empty", b"8:R\x00", "invalid big real"),
    ("bigreal-huge-exponent", b"8:R\x171*^99999999999999999999", "out of range"),
    ("packed-unsigned", b"8:\xc1\x10\x01\x01\x00", "invalid element type"),
    ("numeric-type", b"8:\xc2\x99\x01\x01\x00", "invalid element type"),
    ("array-rank-0", b"8:\xc2\x00\x00", "rank 0"),
    ("array-zero-dim", b"8:\xc2\x00\x01\x00", "zero dimension"),
    ("array-short-data", b"8:\xc2\x03\x01\x05\x00", "needs more bytes"),
    ("array-truncated-dims", b"8:\xc2\x00\x03\x01", "needs more bytes"),
    ("array-huge-dims", b"8:\xc2\x00\x02" + b"\xff\xff\xff\x0f" * 2 + b"\x00", "needs more"),
    ("array-huge-rank", b"8:\xc2\x00\xff\xff\xff\xff\x0f\x01", "needs more bytes"),
    ("array-rank-beyond-numpy", b"8:\xc2\x00\x41" + b"\x01" * 65 + b"\x00", "cannot be made"),
    ("huge-string-length", b"8:S\xff\xff\xff\xff\xff\xff\xff\xff\x7fab", "remain"),
    ("overlong-varint", b"8:S" + b"\xff" * 9 + b"\x01", "varint longer"),
    ("unhashable-key", b"8:A\x01-\xc1\x00\x01\x01\x05C\x01", "dict key"),
    ("compressed-corrupt", b"8C:not zlib at all", "corrupt"),
    ("compressed-truncated", b"8C:" + zlib.compress(b"S\x05hello")[:-3], "truncated"),
    ("compressed-extra", b"8C:" + zlib.compress(b"C\x01") + b"!", "after the compressed"),
    ("compressed-bad-body", b"8C:" + zlib.compress(b"C\x01C\x01"), "decompressed body"),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_raises_wxf_decode_error(name: str, data: bytes, message: str) -> None:
    with pytest.raises(WXFDecodeError, match=message) as info:
        wxf.loads(data)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.code == "wxf-decode"
    assert isinstance(error.position, int) and 0 <= error.position <= len(data)
    assert f"at byte {error.position}" in str(error)


def test_error_position_points_at_the_fault() -> None:
    with pytest.raises(WXFDecodeError) as info:
        wxf.loads(b"8:f\x02s\x04ListC\x01\x07")
    assert info.value.position == 12
    with pytest.raises(WXFDecodeError) as info:
        wxf.loads(b"8:f\x01s\x04ListC\x01XYZ")
    assert info.value.position == 12


def test_nesting_is_bounded_without_recursion_error() -> None:
    deep = b"8:" + b"f\x01s\x01f" * 5000 + b"C\x00"
    with pytest.raises(WXFDecodeError, match="max_depth=1024"):
        wxf.loads(deep)
    assert isinstance(wxf.loads(deep, max_depth=5000), type(wl.f(1)))
    lists = b"8:" + b"f\x01s\x04List" * 100_000 + b"C\x00"
    with pytest.raises(WXFDecodeError, match="max_depth"):
        wxf.loads(lists)
    heads = b"8:" + b"f\x00" * 3000 + b"s\x01f"
    with pytest.raises(WXFDecodeError, match="max_depth"):
        wxf.loads(heads)
    associations = b"8:" + b"A\x01-C\x01" * 3000 + b"C\x00"
    with pytest.raises(WXFDecodeError, match="max_depth"):
        wxf.loads(associations)


def test_depth_limit_counts_every_container() -> None:
    def nested(levels: int) -> bytes:
        return b"8:" + b"f\x01s\x04List" * levels + b"C\x00"

    wxf.loads(nested(10), max_depth=10)
    with pytest.raises(WXFDecodeError):
        wxf.loads(nested(11), max_depth=10)
    # An association and its rule are one level each.
    wxf.loads(b"8:A\x01-C\x01f\x00s\x01f", max_depth=3)
    with pytest.raises(WXFDecodeError):
        wxf.loads(b"8:A\x01-C\x01f\x00s\x01f", max_depth=2)


def test_size_limits() -> None:
    body = b"S\x80\x08" + b"a" * 1024
    with pytest.raises(WXFDecodeError, match="max_size=100"):
        wxf.loads(b"8C:" + zlib.compress(body), max_size=100)
    with pytest.raises(WXFDecodeError, match="max_size=100"):
        wxf.loads(b"8:" + body, max_size=100)
    assert wxf.loads(b"8C:" + zlib.compress(body), max_size=len(body)) == "a" * 1024
    # A zlib bomb: 16 KiB inflating to 16 MiB is refused without inflating it.
    bomb = b"8C:" + zlib.compress(b"B\x80\x80\x80\x08" + bytes(16 << 20), 9)
    assert len(bomb) < 20_000
    with pytest.raises(WXFDecodeError, match="beyond max_size"):
        wxf.loads(bomb, max_size=1 << 20)


def test_loads_rejects_non_bytes() -> None:
    with pytest.raises(TypeError):
        wxf.loads("8:C\x01")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "builtins.object"),
        (type, "builtins.type"),
        (wl, "symbol's name must be a str"),
        ("\ud800", "not valid Unicode"),
        (WLSymbol("\udcff"), "not valid Unicode"),
        (np.array([], dtype="i4"), "empty dimension"),
        (np.zeros((2, 0)), "empty dimension"),
        (np.array([True]), "dtype bool"),
        (np.array([1], dtype="f2"), "dtype float16"),
        (np.array([1], dtype="u8").view(PackedArray), "packed array cannot hold"),
        (np.bool_(True), "numpy.bool"),
        (datetime.time(1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")), "no fixed UTC offset"),
        # Beyond the digit bound, which the test sets to 1000.
        (10**5000, "integer of about 5001 digits exceeds the limit of 1000"),
        (decimal.Decimal("1." + "1" * 1000), "real of 1001 digits exceeds"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unencodable_values_raise_wxf_encode_error(value: object, message: str) -> None:
    old_limit = wxf.get_max_digits()
    wxf.set_max_digits(1000)
    try:
        with pytest.raises(WXFEncodeError, match=message) as info:
            wxf.dumps(value)
    finally:
        wxf.set_max_digits(old_limit)
    assert isinstance(info.value, TypeError)


def test_cycles_and_depth_in_encoding() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(WXFEncodeError, match="max_depth"):
        wxf.dumps(cycle)
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(WXFEncodeError, match="max_depth"):
        wxf.dumps(loop)
    deep: object = 0
    for _ in range(20):
        deep = [deep]
    assert wxf.loads(wxf.dumps(deep, max_depth=20), max_depth=20) is not None
    with pytest.raises(WXFEncodeError):
        wxf.dumps(deep, max_depth=19)
    # What the encoder accepts at a depth, the decoder accepts at that depth.
    # Association, rule, association, rule, list, function: six levels.
    nested = {"a": {"b": [wl.f()]}}
    wxf.loads(wxf.dumps(nested, max_depth=6), max_depth=6)
    with pytest.raises(WXFEncodeError):
        wxf.dumps(nested, max_depth=5)
    with pytest.raises(WXFDecodeError):
        wxf.loads(wxf.dumps(nested), max_depth=5)


def test_vector_paths_agree_with_scalar_code() -> None:
    import random

    rng = random.Random(7)
    for size in (encoder._VECTOR_MIN - 1, encoder._VECTOR_MIN, 5000):
        ints = [rng.randint(-(2**63), 2**63 - 1) >> rng.randint(0, 63) for _ in range(size)]
        ints[:8] = [-128, 127, -129, 128, -32769, 32768, -(2**31) - 1, 2**31]
        scalar = b"".join(encoder._int_part(i) for i in ints)
        assert wxf.dumps(ints) == b"8:f" + encode_varint(size) + b"s\x04List" + scalar
        assert wxf.dumps(ints) == export(ints, target_format="wxf")
        floats = [rng.uniform(-1e300, 1e300) for _ in range(size)]
        assert wxf.dumps(floats) == export(floats, target_format="wxf")
        assert wxf.loads(wxf.dumps(tuple(floats))) == tuple(floats)


# -- the package --------------------------------------------------------------


def test_public_names() -> None:
    assert set(linkserver.wxf.__all__) == {
        "DEFAULT_MAX_DEPTH", "DEFAULT_MAX_SIZE", "ArrayType", "Token", "dumps", "loads",
        "DEFAULT_MAX_DIGITS", "get_max_digits", "set_max_digits",
    }  # fmt: skip
    for name in linkserver.wxf.__all__:
        assert getattr(linkserver.wxf, name) is not None


def test_codec_imports_no_io_modules() -> None:
    # DESIGN: the codec is pure; clocks, sockets and randomness live elsewhere.
    forbidden = {"socket", "asyncio", "time", "random", "selectors", "threading"}
    package = pathlib.Path(linkserver.wxf.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, (path.name, name)


def test_numpy_is_not_imported_by_the_codec_itself() -> None:
    import subprocess

    code = (
        "import sys; from linkserver import wxf; "
        "wxf.loads(wxf.dumps({'a': [1, 2.5, 'x']})); "
        "print('numpy' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
