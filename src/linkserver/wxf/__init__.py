"""WXF, the Wolfram Exchange Format: the expression codec of every link payload.

:func:`dumps` turns a Python value -- wolframclient's expression objects
(``wl.Plus(1, wl.x)``, ``wlexpr("x^2")``) or plain data (ints, floats,
strings, bytes, lists, dicts, numpy arrays, ...) -- into WXF bytes, and
:func:`loads` turns WXF bytes back into such values, in the manner of
``json.dumps``/``json.loads``::

    >>> from wolframclient.language import wl
    >>> from linkserver import wxf
    >>> wxf.dumps(wl.f(wl.x))
    b'8:f\\x01s\\x01fs\\x01x'
    >>> wxf.loads(b'8:f\\x03s\\x04ListC\\x01C\\x02C\\x03')
    (1, 2, 3)

The bytes are those of wolframclient's ``export(x, target_format="wxf")``
and the values those of its ``binary_deserialize``, so either side of a link
may use wolframclient, this package or the Wolfram Language's own
``BinarySerialize``/``BinaryDeserialize``.  It implements the whole of the
"WXF Format Description": every integer width, big integers and big reals,
strings, binary strings, symbols, functions, associations with rules and
delayed rules, packed and numeric arrays of every element type, and the
compressed ``8C:`` form.

Big integers and big reals travel as decimal digits, converted in
subquadratic time and never bound by Python's ``sys.int_max_str_digits``;
linkserver's own bound, 10^7 digits by default, refuses larger ones with a
clear error (:func:`get_max_digits`, :func:`set_max_digits`, the environment
variable ``LINKSERVER_MAX_DIGITS``; see :mod:`.digits`).

The package holds the codec only, in Python (GMP converts the digits of big
numbers) and free of I/O: :mod:`.tokens` names the format's bytes,
:mod:`.varint` its lengths, :mod:`.digits` the digits of big numbers,
:mod:`.encoder` and :mod:`.decoder` do the work.  Framing the payloads on a
link is :mod:`linkserver.protocol`'s job.
"""

from __future__ import annotations

from .decoder import DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, loads
from .digits import DEFAULT_MAX_DIGITS, get_max_digits, set_max_digits
from .encoder import dumps
from .tokens import ArrayType, Token

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_DIGITS",
    "DEFAULT_MAX_SIZE",
    "ArrayType",
    "Token",
    "dumps",
    "get_max_digits",
    "loads",
    "set_max_digits",
]
