"""Decimal digits of big numbers, both ways, in subquadratic time and within a bound.

WXF writes a big integer (and the mantissa of a big real) as its decimal
digits. Python's own ``int(text)`` and ``str(n)`` take time quadratic in the
number of digits (about 3.5 s and 12 s for 10^6 digits here), which is why
Python refuses them beyond ``sys.get_int_max_str_digits()`` (4300 by
default; Mathics3 sets 7000 in its process). A codec bound by that guard
breaks on ``2^20000``; one that lifted it would let a hostile peer spend
minutes of a server's CPU with a few megabytes.

This module converts through GMP (``gmpy2``), whose conversions are
subquadratic (10^6 digits: about 30 ms to read, 60 ms to write; 10^7: 0.5 s
and 1 s), never touches the interpreter's limit -- the program that uses
linkserver keeps whatever limit it set -- and bounds the number of digits by
a limit of its own, :func:`get_max_digits` (10^7 by default). A number beyond
that bound is refused before any conversion work is done, so a hostile number
costs no more than a legitimate one of the same size, and the largest one
accepted costs about a second.

The bound is a setting of the process, as Python's is: the environment
variable ``LINKSERVER_MAX_DIGITS`` sets it when linkserver is imported, and
:func:`set_max_digits` changes it (``linkserver serve --max-digits`` passes it
to every kernel).
"""

from __future__ import annotations

import math
import os
import re

import gmpy2

__all__ = [
    "DEFAULT_MAX_DIGITS",
    "digits_of",
    "get_max_digits",
    "int_of",
    "set_max_digits",
    "too_many_digits",
]

#: Decimal digits a number may have on the wire, by default: far beyond any
#: number a computation shows (10000! has 35,660), and about a second to
#: convert. The frame limit (256 MiB by default) would allow more.
DEFAULT_MAX_DIGITS = 10_000_000

#: Below this many digits the interpreter's own conversion is used: it is
#: faster for short numbers, and Python's guard allows at least 640 digits
#: whatever limit a program sets (``sys.set_int_max_str_digits``).
_SHORT = 600

_INTEGER = re.compile(rb"[+-]?[0-9]+")
_LOG10_2 = math.log10(2)

_max_digits = DEFAULT_MAX_DIGITS


def _from_environment() -> int:
    text = os.environ.get("LINKSERVER_MAX_DIGITS", "")
    try:
        value = int(text)
    except ValueError:
        return DEFAULT_MAX_DIGITS
    return value if value >= _SHORT else DEFAULT_MAX_DIGITS


def get_max_digits() -> int:
    """Return the most decimal digits a big integer or big real may have on the wire."""
    return _max_digits


def set_max_digits(limit: int) -> None:
    """Set the most decimal digits a big number may have on the wire.

    Raises:
        ValueError: ``limit`` is below 600 (numbers that short are never refused).
    """
    global _max_digits
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < _SHORT:
        raise ValueError(f"max digits must be an integer of at least {_SHORT}, not {limit!r}")
    _max_digits = limit


def int_of(raw: bytes) -> int:
    """Return the integer whose decimal digits are ``raw`` (an optional sign first).

    Raises:
        ValueError: ``raw`` is not an integer, or has more digits than the bound;
            the message says which.
    """
    if len(raw) <= _SHORT:
        return int(raw)
    limit = _max_digits
    if len(raw) - (raw[:1] in b"+-") > limit:
        raise too_many_digits("an integer", len(raw) - (raw[:1] in b"+-"))
    if _INTEGER.fullmatch(raw) is None:
        raise ValueError(f"{raw[:40]!r}... is not a decimal integer")
    return int(gmpy2.mpz(raw.decode("ascii")))


def digits_of(value: int) -> bytes:
    """Return the decimal digits of ``value`` (a ``-`` first when negative).

    Raises:
        ValueError: ``value`` has more digits than the bound.
    """
    bits = value.bit_length()
    if bits < 1900:  # at most 572 digits: the interpreter's conversion, always allowed
        return b"%d" % value
    limit = _max_digits
    # floor(bits * log10(2)) is at most the number of digits, so nothing
    # within the bound is refused here.
    if int((bits - 1) * _LOG10_2) + 1 > limit:
        raise too_many_digits("an integer", int(bits * _LOG10_2) + 1, about=True)
    text: str = gmpy2.mpz(value).digits(10)
    if len(text) - (value < 0) > limit:
        raise too_many_digits("an integer", len(text) - (value < 0))
    return text.encode("ascii")


def too_many_digits(what: str, count: int, *, about: bool = False) -> ValueError:
    """Return the error for ``what`` (``"an integer"``) of ``count`` digits, beyond the bound.

    ``about``: ``count`` was estimated from the number of bits (it may be one too many).
    """
    return ValueError(
        f"{what} of {'about ' if about else ''}{count} digits exceeds the limit of "
        f"{_max_digits} digits (set LINKSERVER_MAX_DIGITS or linkserver serve --max-digits "
        "to allow more)"
    )


_max_digits = _from_environment()
