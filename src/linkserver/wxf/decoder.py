"""WXF bytes to Python values, as wolframclient's ``binary_deserialize`` gives them.

The values are those of ``wolframclient.deserializers.binary_deserialize``
with its default consumer, so that code written against wolframclient reads
our results unchanged:

=================================  ==========================================
WXF                                Python
=================================  ==========================================
machine and big integers           ``int``
machine real ``r``                 ``float``
big real ``R`` (``1.5`20.``)       ``decimal.Decimal`` of the digits written
string ``S`` / binary string ``B``  ``str`` / ``bytes``
symbol                             ``WLSymbol``, except ``True False`` and
                                   ``Null None`` (Python ``True False None``)
                                   and ``Indeterminate`` (``float("nan")``)
``List[...]``                      ``tuple``
any other function                 ``WLFunction(head, *args)``
association                        ``immutabledict`` (a hashable ``dict``)
numeric array / packed array       read-only numpy array over the input; a
                                   packed one as wolframclient's
                                   ``PackedArray`` ndarray subclass
=================================  ==========================================

Unlike wolframclient it is strict about what is not WXF: bytes after the
expression, a truncated part, a rule outside an association, invalid UTF-8
and malformed numbers are all errors, and *every* error is a
:class:`~linkserver.errors.WXFDecodeError` carrying the byte position.  That
is the contract the fuzz and property tests hold it to: any input either
decodes or raises ``WXFDecodeError``.

Theory of operation
-------------------
Decoding is one loop over the bytes with an explicit stack, never recursion:
nesting depth is then a counted limit (``max_depth``) with a clear error,
not a ``RecursionError``, and there is no Python call per part.  The loop
keeps the innermost open container in local variables -- its *kind*, the
list of its decoded *items*, how many parts it still expects
(*remaining*), and its *head* -- and pushes them on the stack when a
function or association opens inside it.  The inner ``while remaining``
loop reads atoms in place, the commonest tokens tested first; when it runs
out, its ``else`` builds the finished container and hands it to the parent.

Kinds: ``ROOT`` holds the one top-level expression; ``FUNC`` and ``LIST``
are functions whose head was a symbol (read at once, since nearly all heads
are); ``HEAD`` collects a head that is itself an expression, then turns into
``FUNC``; ``ASSOC`` accepts only rule tokens, each opening a ``RULE`` of
exactly two parts.  Rules are only legal directly inside an association, so
the inner loop treats ``-`` and ``:`` as unknown tokens.

Nothing is allocated from a declared size before the data is known to hold
it: string, symbol and array lengths are checked against the bytes left, a
function's declared length only counts down as parts actually arrive, and a
compressed body is inflated with a hard ``max_size`` cap.  Symbols are
decoded once per call and shared (a per-call cache, so its size is bounded
by the input).
"""

from __future__ import annotations

import decimal
import re
import struct
import zlib
from typing import Any

from wolframclient.language.expression import WLFunction, WLSymbol
from wolframclient.utils.datastructures import immutabledict

from ..errors import WXFDecodeError
from .tokens import (
    COMPRESSED_HEADER,
    ELEMENT_SIZES,
    HEADER,
    LITTLE_ENDIAN_DTYPES,
    PACKED_ARRAY_TYPES,
    ArrayType,
    Token,
)
from .digits import get_max_digits, int_of, too_many_digits
from .varint import MAX_VARINT_BYTES, decode_varint

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_SIZE", "loads"]

#: Default nesting limit.  Deep enough for any expression people write (a
#: kernel's own $RecursionLimit is 1024), shallow enough that comparing or
#: printing the result stays within Python's recursion limit in practice.
DEFAULT_MAX_DEPTH = 1024

#: Default bound on a WXF body, after decompression: 1 GiB.  An 8C: payload
#: can inflate a thousandfold, so the cap is what makes a small hostile
#: message unable to exhaust memory.
DEFAULT_MAX_SIZE = 1 << 30

# Container kinds (see the module docstring).
_ROOT = 0
_FUNC = 1
_LIST = 2
_ASSOC = 3
_RULE = 4
_HEAD = 5

# Token bytes as plain ints for the loop (enum access is too slow there).
_T_FUNCTION = int(Token.FUNCTION)
_T_INTEGER8 = int(Token.INTEGER8)
_T_INTEGER16 = int(Token.INTEGER16)
_T_INTEGER32 = int(Token.INTEGER32)
_T_INTEGER64 = int(Token.INTEGER64)
_T_REAL64 = int(Token.REAL64)
_T_STRING = int(Token.STRING)
_T_BINARY_STRING = int(Token.BINARY_STRING)
_T_SYMBOL = int(Token.SYMBOL)
_T_BIG_INTEGER = int(Token.BIG_INTEGER)
_T_BIG_REAL = int(Token.BIG_REAL)
_T_PACKED_ARRAY = int(Token.PACKED_ARRAY)
_T_NUMERIC_ARRAY = int(Token.NUMERIC_ARRAY)
_T_ASSOCIATION = int(Token.ASSOCIATION)
_T_RULE = int(Token.RULE)
_T_RULE_DELAYED = int(Token.RULE_DELAYED)

#: ``_INT8[b]`` is the signed value of byte ``b``.
_INT8: tuple[int, ...] = tuple(range(128)) + tuple(range(-128, 0))

_unpack_int16 = struct.Struct("<h").unpack_from
_unpack_int32 = struct.Struct("<i").unpack_from
_unpack_int64 = struct.Struct("<q").unpack_from
_unpack_real64 = struct.Struct("<d").unpack_from

_LIST_SYMBOL = WLSymbol("List")

#: Symbols wolframclient turns into Python values, and ``List``, whose one
#: object lets the loop test a head with ``is``.  Each decode starts from a
#: copy and adds the names it meets.
_SEED_SYMBOLS: dict[bytes, object] = {
    b"True": True,
    b"False": False,
    b"Null": None,
    b"None": None,
    b"Indeterminate": float("nan"),
    b"List": _LIST_SYMBOL,
}

_MISSING = object()

_ARRAY_KINDS = frozenset(int(kind) for kind in ArrayType)
_PACKED_KINDS = frozenset(int(kind) for kind in PACKED_ARRAY_TYPES)
_ELEMENT_SIZES = {int(kind): size for kind, size in ELEMENT_SIZES.items()}
_DTYPES = {int(kind): dtype for kind, dtype in LITTLE_ENDIAN_DTYPES.items()}

# What Mathematica writes for a big real: mantissa, then a precision mark
# (`prec, ``acc or a bare `), then an optional exponent (*^exp), as in
# "1.5`20.", "-2.``28" or "1.000`21.*^1000".
_NUMBER = rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
_BIG_REAL = re.compile(
    rb"(?P<mantissa>" + _NUMBER + rb")(?:`(?:`?" + _NUMBER + rb")?)?"
    rb"(?:\*\^(?P<exponent>[+-]?[0-9]+))?"
)


def loads(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_size: int = DEFAULT_MAX_SIZE,
) -> object:
    """Deserialize one WXF expression, as ``json.loads`` does JSON text.

    Args:
        data: the whole WXF byte string, header (``8:`` or ``8C:``) included,
            holding exactly one expression.
        max_depth: most containers open at once; each function, association
            and association rule counts one level.
        max_size: largest body accepted, in bytes, after decompression.

    Returns:
        The value (see the module docstring for the mapping); equal to what
        ``wolframclient.deserializers.binary_deserialize(data)`` returns.

    Raises:
        WXFDecodeError: if ``data`` is not exactly one valid WXF expression
            within the limits; the message says what and where.
        TypeError: if ``data`` is not a bytes-like object.
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"WXF data must be bytes-like, not {type(data).__name__}"
            )
        # Arrays are returned as views over the buffer: decode from an
        # immutable copy so that later writes to the caller's buffer cannot
        # change them.
        data = bytes(data)
    if data[:2] == HEADER:
        if len(data) - 2 > max_size:
            raise WXFDecodeError(f"WXF body exceeds max_size={max_size} bytes", position=2)
        return _decode(data, 2, max_depth, "")
    if data[:3] == COMPRESSED_HEADER:
        return _decode(_inflate(data, max_size), 0, max_depth, " of the decompressed body")
    raise WXFDecodeError(
        f"not WXF: data starts {bytes(data[:3])!r}, expected b'8:' or b'8C:'", position=0
    )


def _inflate(data: bytes, max_size: int) -> bytes:
    """Decompress the zlib stream after an ``8C:`` header, at most ``max_size`` bytes."""
    start = len(COMPRESSED_HEADER)
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(memoryview(data)[start:], max_size + 1)
    except zlib.error as exc:
        raise WXFDecodeError(f"compressed WXF body is corrupt: {exc}", position=start) from exc
    if len(body) > max_size:
        raise WXFDecodeError(
            f"compressed WXF body inflates beyond max_size={max_size} bytes", position=start
        )
    if not inflater.eof:
        raise WXFDecodeError("compressed WXF body is truncated", position=len(data))
    if inflater.unused_data:
        raise WXFDecodeError(
            "extra bytes after the compressed WXF body",
            position=len(data) - len(inflater.unused_data),
        )
    return body


def _decode(data: bytes, pos: int, max_depth: int, where: str) -> object:
    """Decode the one expression that must fill ``data[pos:]``.

    ``where`` is appended to error messages (it names the decompressed body,
    whose byte positions are not those of the input).
    """
    end = len(data)
    symbols = dict(_SEED_SYMBOLS)
    list_symbol = _LIST_SYMBOL
    int8 = _INT8
    unpack_int16 = _unpack_int16
    unpack_int32 = _unpack_int32
    unpack_int64 = _unpack_int64
    unpack_real64 = _unpack_real64
    missing = _MISSING
    # WLFunction(head, *args) runs a Python __init__ that only stores the
    # two slots; storing them directly is three times faster, and functions
    # are most of what a symbolic expression holds.
    new_object = object.__new__
    function_class = WLFunction

    stack: list[tuple[int, list[object], int, Any]] = []
    kind = _ROOT
    items: list[object] = []
    append = items.append
    remaining = 1
    head: Any = None
    tok = -1
    value: object
    function: Any
    try:
        while True:
            if kind == _ASSOC and remaining:
                tok = data[pos]
                if tok != _T_RULE and tok != _T_RULE_DELAYED:
                    raise WXFDecodeError(
                        "association part must be a rule ('-' or ':'), "
                        f"not {_token_name(tok)}{where}",
                        position=pos,
                    )
                pos += 1
                if len(stack) >= max_depth:
                    raise _too_deep(max_depth, pos - 1, where)
                stack.append((kind, items, remaining, head))
                kind = _RULE
                items = []
                append = items.append
                remaining = 2
            while remaining:
                tok = data[pos]
                pos += 1
                if tok == _T_INTEGER8:
                    append(int8[data[pos]])
                    pos += 1
                elif tok == _T_INTEGER32:
                    append(unpack_int32(data, pos)[0])
                    pos += 4
                elif tok == _T_INTEGER16:
                    append(unpack_int16(data, pos)[0])
                    pos += 2
                elif tok == _T_STRING:
                    n = data[pos]
                    pos += 1
                    if n > 127:
                        n, pos = _varint_rest(data, pos, n, where)
                    stop = pos + n
                    if stop > end:
                        raise _overrun("string", n, pos, end, where)
                    if n < 4096:
                        append(data[pos:stop].decode())
                    else:
                        # Decode in place: no copy of a long string's bytes.
                        append(str(memoryview(data)[pos:stop], "utf-8"))
                    pos = stop
                elif tok == _T_REAL64:
                    append(unpack_real64(data, pos)[0])
                    pos += 8
                elif tok == _T_FUNCTION:
                    n = data[pos]
                    pos += 1
                    if n > 127:
                        n, pos = _varint_rest(data, pos, n, where)
                    if len(stack) >= max_depth:
                        raise _too_deep(max_depth, pos, where)
                    stack.append((kind, items, remaining, head))
                    items = []
                    append = items.append
                    if data[pos] == _T_SYMBOL:
                        # Nearly every head is a symbol: read it here.
                        m = data[pos + 1]
                        pos += 2
                        if m > 127:
                            m, pos = _varint_rest(data, pos, m, where)
                        stop = pos + m
                        if stop > end:
                            raise _overrun("symbol", m, pos, end, where)
                        key = data[pos:stop]
                        head = symbols.get(key, missing)
                        if head is missing:
                            head = _new_symbol(key, symbols, pos, where)
                        pos = stop
                        kind = _LIST if head is list_symbol else _FUNC
                        remaining = n
                    else:
                        kind = _HEAD
                        head = n
                        remaining = 1
                    continue
                elif tok == _T_SYMBOL:
                    n = data[pos]
                    pos += 1
                    if n > 127:
                        n, pos = _varint_rest(data, pos, n, where)
                    stop = pos + n
                    if stop > end:
                        raise _overrun("symbol", n, pos, end, where)
                    key = data[pos:stop]
                    value = symbols.get(key, missing)
                    if value is missing:
                        value = _new_symbol(key, symbols, pos, where)
                    append(value)
                    pos = stop
                elif tok == _T_INTEGER64:
                    append(unpack_int64(data, pos)[0])
                    pos += 8
                elif tok == _T_ASSOCIATION:
                    n = data[pos]
                    pos += 1
                    if n > 127:
                        n, pos = _varint_rest(data, pos, n, where)
                    if len(stack) >= max_depth:
                        raise _too_deep(max_depth, pos, where)
                    stack.append((kind, items, remaining, head))
                    kind = _ASSOC
                    items = []
                    append = items.append
                    remaining = n
                    # Back to the top, where only rule tokens are let in.
                    break
                elif (
                    tok == _T_BINARY_STRING
                    or tok == _T_BIG_INTEGER
                    or tok == _T_BIG_REAL
                ):
                    n = data[pos]
                    pos += 1
                    if n > 127:
                        n, pos = _varint_rest(data, pos, n, where)
                    stop = pos + n
                    if stop > end:
                        raise _overrun(_token_name(tok), n, pos, end, where)
                    raw = data[pos:stop]
                    if tok == _T_BINARY_STRING:
                        append(raw)
                    elif tok == _T_BIG_INTEGER:
                        append(_big_integer(raw, pos, where))
                    else:
                        append(_big_real(raw, pos, where))
                    pos = stop
                elif tok == _T_PACKED_ARRAY or tok == _T_NUMERIC_ARRAY:
                    value, pos = _array(data, pos, end, tok, where)
                    append(value)
                elif tok == _T_RULE or tok == _T_RULE_DELAYED:
                    raise WXFDecodeError(
                        f"rule token {chr(tok)!r} outside an association{where}",
                        position=pos - 1,
                    )
                else:
                    raise WXFDecodeError(
                        f"unknown token byte 0x{tok:02x}{where}", position=pos - 1
                    )
                remaining -= 1
            else:
                # The open container has all its parts: build it.
                if kind == _LIST:
                    value = tuple(items)
                elif kind == _FUNC:
                    function = new_object(function_class)
                    function.head = head
                    function.args = tuple(items)
                    value = function
                elif kind == _RULE:
                    value = tuple(items)
                elif kind == _ASSOC:
                    value = _association(items, pos, where)
                elif kind == _HEAD:
                    # The head is complete; the function's arguments follow.
                    remaining = head
                    head = items[0]
                    kind = _LIST if head is list_symbol else _FUNC
                    items = []
                    append = items.append
                    continue
                else:
                    if pos != end:
                        raise WXFDecodeError(
                            f"{end - pos} extra bytes after the expression{where}",
                            position=pos,
                        )
                    return items[0]
                kind, items, remaining, head = stack.pop()
                append = items.append
                append(value)
                remaining -= 1
    except (IndexError, struct.error):
        raise WXFDecodeError(
            f"data ends inside a part{_while_reading(tok)}{where}", position=min(pos, end)
        ) from None
    except UnicodeDecodeError as exc:
        raise WXFDecodeError(
            f"string is not valid UTF-8 ({exc.reason}){where}", position=pos
        ) from None


def _token_name(tok: int) -> str:
    try:
        return Token(tok).name.lower().replace("_", " ")
    except ValueError:
        return f"byte 0x{tok:02x}"


def _while_reading(tok: int) -> str:
    return "" if tok < 0 else f" (reading a {_token_name(tok)})"


def _too_deep(max_depth: int, pos: int, where: str) -> WXFDecodeError:
    return WXFDecodeError(
        f"expression nests deeper than max_depth={max_depth}{where}", position=pos
    )


def _overrun(what: str, length: int, pos: int, end: int, where: str) -> WXFDecodeError:
    return WXFDecodeError(
        f"{what} declares {length} bytes but only {end - pos} remain{where}", position=pos
    )


def _varint_rest(data: bytes, pos: int, first: int, where: str) -> tuple[int, int]:
    """Finish a varint whose first byte (``first`` >= 0x80) is already read."""
    value = first & 0x7F
    shift = 7
    while True:
        byte = data[pos]  # IndexError: truncated, reported by the caller
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 7 * MAX_VARINT_BYTES:
            raise WXFDecodeError(
                f"varint longer than {MAX_VARINT_BYTES} bytes{where}", position=pos
            )


def _new_symbol(key: bytes, symbols: dict[bytes, object], pos: int, where: str) -> object:
    try:
        name = key.decode()
    except UnicodeDecodeError as exc:
        raise WXFDecodeError(
            f"symbol name is not valid UTF-8 ({exc.reason}){where}", position=pos
        ) from None
    symbol = WLSymbol(name)
    symbols[key] = symbol
    return symbol


def _big_integer(raw: bytes, pos: int, where: str) -> int:
    try:
        # Subquadratic, bounded by our own limit, not sys.int_max_str_digits.
        return int_of(raw)
    except ValueError as exc:
        raise WXFDecodeError(f"invalid big integer: {exc}{where}", position=pos) from None


def _big_real(raw: bytes, pos: int, where: str) -> decimal.Decimal:
    match = _BIG_REAL.fullmatch(raw)
    if match is None:
        raise WXFDecodeError(f"invalid big real {raw[:40]!r}{where}", position=pos)
    mantissa = match.group("mantissa")
    if len(mantissa) > get_max_digits():
        count = len(mantissa) - mantissa.count(b".") - (mantissa[:1] in b"+-")
        if count > get_max_digits():
            raise WXFDecodeError(
                f"invalid big real: {too_many_digits('a real', count)}{where}", position=pos
            )
    text = mantissa.decode("ascii")
    exponent = match.group("exponent")
    if exponent is not None:
        text = f"{text}e{exponent.decode('ascii')}"
    # Same value wolframclient makes: every written digit kept, the
    # precision mark dropped.
    try:
        return decimal.Decimal(text)
    except ArithmeticError:
        # decimal.InvalidOperation: an exponent beyond what decimal holds.
        raise WXFDecodeError(f"big real out of range {raw[:40]!r}{where}", position=pos) from None


def _association(items: list[Any], pos: int, where: str) -> object:
    try:
        return immutabledict(items)
    except TypeError:
        raise WXFDecodeError(
            f"association has a key that cannot be a Python dict key{where}",
            position=pos,
        ) from None


_numpy_module: Any = None
_packed_array_class: Any = None


def _array(data: bytes, pos: int, end: int, tok: int, where: str) -> tuple[object, int]:
    """Read a packed or numeric array whose token is at ``pos - 1``."""
    global _numpy_module, _packed_array_class
    packed = tok == _T_PACKED_ARRAY
    what = "packed array" if packed else "numeric array"
    kind = data[pos]
    if kind not in (_PACKED_KINDS if packed else _ARRAY_KINDS):
        raise WXFDecodeError(
            f"{what} has invalid element type 0x{kind:02x}{where}", position=pos
        )
    pos += 1
    rank, pos = decode_varint(data, pos, end)
    if rank == 0:
        raise WXFDecodeError(f"{what} has rank 0{where}", position=pos)
    if rank > end - pos:
        # Each dimension takes at least one byte.
        raise WXFDecodeError(
            f"{what} of rank {rank} needs more bytes than remain ({end - pos}){where}",
            position=pos,
        )
    size = _ELEMENT_SIZES[kind]
    dims: list[int] = []
    count = 1
    for _ in range(rank):
        dim, pos = decode_varint(data, pos, end)
        if dim == 0:
            raise WXFDecodeError(f"{what} has a zero dimension{where}", position=pos)
        dims.append(dim)
        count *= dim
        # Checked as we go, so that hostile dimensions stop before the
        # product grows huge.
        if count * size > end - pos:
            raise WXFDecodeError(
                f"{what} of dimensions {dims}... needs more bytes than remain "
                f"({end - pos}){where}",
                position=pos,
            )
    if _numpy_module is None:
        import numpy

        from wolframclient.utils.packedarray import PackedArray

        _numpy_module = numpy
        _packed_array_class = PackedArray
    try:
        array = _numpy_module.frombuffer(
            data, dtype=_DTYPES[kind], count=count, offset=pos
        ).reshape(dims)
    except ValueError as exc:
        raise WXFDecodeError(f"{what} cannot be made: {exc}{where}", position=pos) from None
    if packed:
        array = array.view(_packed_array_class)
    return array, pos + count * size
