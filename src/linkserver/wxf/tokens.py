"""The vocabulary of WXF: token bytes, array element types and headers.

WXF (the Wolfram Exchange Format, described in the Wolfram Language tutorial
"WXF Format Description") is a byte string that opens with a plain ASCII
header and then holds one expression, written depth first as a sequence of
*parts*.  Every part starts with one token byte saying what follows:

=====  ====  =============================================================
byte   char  part
=====  ====  =============================================================
0x66   f     function: varint length *n*, then the head, then *n* parts
0x43   C     signed 8-bit integer, two's complement
0x6A   j     signed 16-bit integer, little-endian
0x69   i     signed 32-bit integer, little-endian
0x4C   L     signed 64-bit integer, little-endian
0x72   r     IEEE 754 double, little-endian
0x53   S     string: varint byte count, then UTF-8
0x42   B     binary string (``ByteArray``): varint byte count, then bytes
0x73   s     symbol: varint byte count, then the name in UTF-8
0x49   I     big integer: varint byte count, then ASCII decimal digits
0x52   R     big real: varint byte count, then the InputForm text (``1.5`20.``)
0xC1   Á     packed array: element type, varint rank, varint dims, data
0xC2   Â     numeric array: same layout as the packed array
0x41   A     association: varint length *n*, then *n* rule parts
0x2D   \\-   rule inside an association: key part, value part
0x3A   :     delayed rule inside an association: key part, value part
=====  ====  =============================================================

The header is ``8:`` (format version 8), or ``8C:`` when everything after it
is a zlib stream that inflates to the parts.

This module only names these facts; :mod:`linkserver.wxf.encoder` and
:mod:`linkserver.wxf.decoder` act on them, and :mod:`linkserver.wxf.varint`
holds the length encoding.  The hot loops of the codec copy the values below
into module-level integer constants, because attribute access on an enum is
too slow to do once per token.
"""

from __future__ import annotations

import enum

__all__ = [
    "ARRAY_TYPE_NAMES",
    "ArrayType",
    "COMPRESSED_HEADER",
    "DTYPE_ARRAY_TYPES",
    "ELEMENT_SIZES",
    "HEADER",
    "LITTLE_ENDIAN_DTYPES",
    "PACKED_ARRAY_TYPES",
    "Token",
    "VERSION",
]

#: The format version byte, ASCII ``8``.
VERSION = b"8"

#: Header of an uncompressed WXF byte string.
HEADER = b"8:"

#: Header of a compressed WXF byte string: a zlib stream follows.
COMPRESSED_HEADER = b"8C:"


class Token(enum.IntEnum):
    """The byte that starts each part of a WXF expression."""

    FUNCTION = 0x66  # 'f'
    INTEGER8 = 0x43  # 'C'
    INTEGER16 = 0x6A  # 'j'
    INTEGER32 = 0x69  # 'i'
    INTEGER64 = 0x4C  # 'L'
    REAL64 = 0x72  # 'r'
    STRING = 0x53  # 'S'
    BINARY_STRING = 0x42  # 'B'
    SYMBOL = 0x73  # 's'
    BIG_INTEGER = 0x49  # 'I'
    BIG_REAL = 0x52  # 'R'
    PACKED_ARRAY = 0xC1
    NUMERIC_ARRAY = 0xC2
    ASSOCIATION = 0x41  # 'A'
    RULE = 0x2D  # '-'
    RULE_DELAYED = 0x3A  # ':'


class ArrayType(enum.IntEnum):
    """The element type byte of packed and numeric arrays.

    The high nibble is the family (0 signed, 1 unsigned, 2 real, 3 complex)
    and the low nibble the width (0..3 for 8..64-bit integers; 2 and 3 for
    32- and 64-bit reals and for complex numbers made of such reals).
    """

    INTEGER8 = 0x00
    INTEGER16 = 0x01
    INTEGER32 = 0x02
    INTEGER64 = 0x03
    UNSIGNED_INTEGER8 = 0x10
    UNSIGNED_INTEGER16 = 0x11
    UNSIGNED_INTEGER32 = 0x12
    UNSIGNED_INTEGER64 = 0x13
    REAL32 = 0x22
    REAL64 = 0x23
    COMPLEX_REAL32 = 0x33
    COMPLEX_REAL64 = 0x34


#: Bytes taken by one element of each array type.
ELEMENT_SIZES: dict[ArrayType, int] = {
    ArrayType.INTEGER8: 1,
    ArrayType.INTEGER16: 2,
    ArrayType.INTEGER32: 4,
    ArrayType.INTEGER64: 8,
    ArrayType.UNSIGNED_INTEGER8: 1,
    ArrayType.UNSIGNED_INTEGER16: 2,
    ArrayType.UNSIGNED_INTEGER32: 4,
    ArrayType.UNSIGNED_INTEGER64: 8,
    ArrayType.REAL32: 4,
    ArrayType.REAL64: 8,
    ArrayType.COMPLEX_REAL32: 8,
    ArrayType.COMPLEX_REAL64: 16,
}

#: The Wolfram Language name of each type, as ``NumericArrayType`` gives it
#: and as wolframclient's ``NumericArray(..., type=...)`` takes it.
ARRAY_TYPE_NAMES: dict[ArrayType, str] = {
    ArrayType.INTEGER8: "Integer8",
    ArrayType.INTEGER16: "Integer16",
    ArrayType.INTEGER32: "Integer32",
    ArrayType.INTEGER64: "Integer64",
    ArrayType.UNSIGNED_INTEGER8: "UnsignedInteger8",
    ArrayType.UNSIGNED_INTEGER16: "UnsignedInteger16",
    ArrayType.UNSIGNED_INTEGER32: "UnsignedInteger32",
    ArrayType.UNSIGNED_INTEGER64: "UnsignedInteger64",
    ArrayType.REAL32: "Real32",
    ArrayType.REAL64: "Real64",
    ArrayType.COMPLEX_REAL32: "ComplexReal32",
    ArrayType.COMPLEX_REAL64: "ComplexReal64",
}

#: numpy dtype strings, little-endian as WXF requires whatever the host.
LITTLE_ENDIAN_DTYPES: dict[ArrayType, str] = {
    ArrayType.INTEGER8: "<i1",
    ArrayType.INTEGER16: "<i2",
    ArrayType.INTEGER32: "<i4",
    ArrayType.INTEGER64: "<i8",
    ArrayType.UNSIGNED_INTEGER8: "<u1",
    ArrayType.UNSIGNED_INTEGER16: "<u2",
    ArrayType.UNSIGNED_INTEGER32: "<u4",
    ArrayType.UNSIGNED_INTEGER64: "<u8",
    ArrayType.REAL32: "<f4",
    ArrayType.REAL64: "<f8",
    ArrayType.COMPLEX_REAL32: "<c8",
    ArrayType.COMPLEX_REAL64: "<c16",
}

#: The element type of each numpy dtype WXF has, by the dtype's ``(kind,
#: itemsize)`` (``("i", 8)`` for int64), so that every spelling of a type
#: (int64 and longlong, say) finds it; the kind is the letter in its dtype
#: string above.
DTYPE_ARRAY_TYPES: dict[tuple[str, int], ArrayType] = {
    (dtype[1], ELEMENT_SIZES[kind]): kind for kind, dtype in LITTLE_ENDIAN_DTYPES.items()
}

#: A packed array holds machine integers, reals or complex numbers only:
#: the unsigned types exist for numeric arrays alone.
PACKED_ARRAY_TYPES: frozenset[ArrayType] = frozenset(
    {
        ArrayType.INTEGER8,
        ArrayType.INTEGER16,
        ArrayType.INTEGER32,
        ArrayType.INTEGER64,
        ArrayType.REAL32,
        ArrayType.REAL64,
        ArrayType.COMPLEX_REAL32,
        ArrayType.COMPLEX_REAL64,
    }
)
