"""What clients, the broker and kernels share about installable functions.

A client *installs* a Python function under a Wolfram Language name
(docs/protocol.md §8.10): its kernel then defines ``name[args___]`` so that
evaluating it sends the client ``CallPacket[index, {args}]``, and the client
answers ``ReturnPacket[result]``. This module holds the pieces the three
parties agree on: which names may be installed (:func:`check_name`), how an
exception in the function becomes a ``Failure[...]`` (:func:`python_failure`),
and how a kernel without packed arrays sends lists of machine numbers to the
function packed after all (:func:`pack_arrays`).
"""

from __future__ import annotations

import re
from typing import Any

from wolframclient.language.expression import WLFunction, WLSymbol

__all__ = ["check_name", "pack_arrays", "python_failure"]

# A symbol name, optionally with contexts: Foo, Foo`Bar, $x, a1`b2`c3.
_NAME = re.compile(r"[A-Za-z$][A-Za-z0-9$]*(`[A-Za-z$][A-Za-z0-9$]*)*")

#: The longest name a client may install.
MAX_NAME = 200


def check_name(name: object) -> str | None:
    """Return why ``name`` cannot be installed, or None if it can."""
    if not isinstance(name, str):
        return f"the name of an installed function must be a string, not {type(name).__name__}"
    if len(name) > MAX_NAME or not _NAME.fullmatch(name):
        shown = name if len(name) <= 60 else name[:57] + "..."
        return (
            f"{shown!r} is not a symbol name: use letters, digits and $, not starting with "
            "a digit, with contexts separated by `"
        )
    if name.startswith("System`") or name.startswith("LinkServer`"):
        return f"{name!r} is in a context reserved for the system; choose another name"
    return None


def python_failure(name: str, exc: BaseException) -> Any:
    """Return ``Failure["PythonError", <|...|>]`` for ``exc`` raised by installed ``name``."""
    kind = type(exc).__name__
    text = str(exc)
    return WLFunction(
        WLSymbol("Failure"),
        "PythonError",
        {
            "MessageTemplate": f"{name} raised {kind}: {text}" if text else f"{name} raised {kind}",
            "Function": name,
            "Exception": kind,
            "Message": text,
        },
    )


def pack_arrays(value: Any) -> Any:
    """Return ``value`` as a numpy array if it is a full array of machine numbers, else as is.

    A Mathics3 kernel keeps lists, never packed arrays: this gives a Python
    function the numpy array a Wolfram kernel would have sent for a packed
    one. Only tuples whose leaves are all ``int`` (within 64 bits) or all
    ``float``, at equal depth, are packed; booleans, mixed lists and ragged
    lists are left alone.
    """
    if type(value) is not tuple or not value:
        return value
    kind = _leaf_kind(value)
    if kind is None:
        return value
    import numpy

    try:
        array = numpy.array(value, dtype=numpy.int64 if kind is int else numpy.float64)
    except (OverflowError, ValueError):  # an integer beyond 64 bits, a ragged list
        return value
    return array


def _leaf_kind(value: tuple[Any, ...]) -> type | None:
    # int or float if every leaf is of that one type and the nesting is even.
    first = value[0]
    if type(first) is tuple:
        if not first:
            return None
        kind = _leaf_kind(first)
        if kind is None:
            return None
        for item in value[1:]:
            if type(item) is not tuple or len(item) != len(first) or _leaf_kind(item) is not kind:
                return None
        return kind
    kind = type(first)
    if kind is not int and kind is not float:
        return None
    for item in value:
        if type(item) is not kind:
            return None
    return kind
