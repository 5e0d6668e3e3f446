"""Varints: how WXF writes every length, count, rank and dimension.

A varint is an unsigned integer written seven bits at a time, least
significant group first; every byte but the last has its high bit set
("WXF Format Description", section Varint; the same scheme as Protocol
Buffers' varints).  500 = 0b11_1110100 is written ``0xF4 0x03``.

WXF lengths are 63-bit, so a varint takes at most nine bytes; a longer one
is an error rather than a reason to build an ever larger integer from
hostile input.  Decoding accepts non-minimal forms (``0x80 0x00`` for 0), as
wolframclient does, since nothing in the format forbids them.

The decoder inlines the one-byte case; these functions are the general
path and the reference the tests check both against.
"""

from __future__ import annotations

from ..errors import WXFDecodeError

__all__ = ["MAX_VARINT", "MAX_VARINT_BYTES", "decode_varint", "encode_varint"]

#: Longest varint accepted, in bytes (9 x 7 = 63 bits).
MAX_VARINT_BYTES = 9

#: Largest value a varint can carry.
MAX_VARINT = (1 << (7 * MAX_VARINT_BYTES)) - 1

# One-byte varints are by far the commonest (short strings, small functions);
# a table spares building a new bytes object for each.
_ONE_BYTE: tuple[bytes, ...] = tuple(bytes((n,)) for n in range(128))


def encode_varint(value: int) -> bytes:
    """Return the varint bytes of a non-negative integer.

    Args:
        value: the integer, ``0 <= value <= MAX_VARINT``.

    Returns:
        One to nine bytes.

    Raises:
        ValueError: if ``value`` is negative or does not fit in 63 bits.
    """
    if 0 <= value < 128:
        return _ONE_BYTE[value]
    if value < 0 or value > MAX_VARINT:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, pos: int, end: int | None = None) -> tuple[int, int]:
    """Read one varint.

    Args:
        data: the buffer.
        pos: offset of the varint's first byte.
        end: offset just past the readable data (default ``len(data)``).

    Returns:
        ``(value, offset just past the varint)``.

    Raises:
        WXFDecodeError: if the data ends inside the varint, or the varint is
            longer than :data:`MAX_VARINT_BYTES`.
    """
    if end is None:
        end = len(data)
    start = pos
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise WXFDecodeError("data ends inside a varint", position=start)
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 7 * MAX_VARINT_BYTES:
            raise WXFDecodeError(
                f"varint longer than {MAX_VARINT_BYTES} bytes", position=start
            )
