"""Read the head of a WXF expression without decoding the rest.

A server that forwards packets needs to know *which* packet it holds
(``ReturnPacket`` ends an evaluation, ``InputPacket`` asks the client a
question) but not what is inside: a ``ReturnPacket`` may carry megabytes.
:func:`head_name` reads only the first few bytes.
"""

from __future__ import annotations

from ..errors import WXFDecodeError
from .varint import decode_varint

__all__ = ["head_name"]


def head_name(data: bytes) -> str | None:
    """Return the symbol name of ``data``'s head if it is ``f[...]`` with a symbol head.

    Returns ``None`` for atoms, compound heads, the compressed ``8C:`` form
    and anything unreadable: callers then decode the whole expression.
    The name is returned as written (``"ReturnPacket"`` or ``"System`ReturnPacket"``).
    """
    # 8 : f <argc varint> s <len varint> <name>
    if data[:3] != b"8:f":
        return None
    try:
        _argc, pos = decode_varint(data, 3)
        if data[pos : pos + 1] != b"s":
            return None
        length, pos = decode_varint(data, pos + 1)
    except (WXFDecodeError, IndexError):
        return None
    if length > 256 or pos + length > len(data):
        return None
    try:
        return data[pos : pos + length].decode("utf-8")
    except UnicodeDecodeError:
        return None
