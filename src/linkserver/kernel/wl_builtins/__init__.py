"""Wolfram Language built-ins that Mathics3 lacks, for linkserver's Mathics3 kernel.

With these, ``wl/LinkServerClient.wl`` runs in a linkserver kernel as it would in
Mathematica: a kernel of one server can connect to another server and
evaluate there (docs/wl-client.md). Each module holds one family and says
what it leaves to Mathics3:

=================  ==========================================================
module             built-ins
=================  ==========================================================
:mod:`.sockets`    ``SocketConnect``, ``SocketObject[...][prop]``,
                   ``SocketReadyQ``, ``SocketReadMessage``, and ``BinaryWrite``,
                   ``WriteString``, ``Close`` of a socket (not in a sandbox)
:mod:`.serialize`  ``BinarySerialize`` (``PerformanceGoal -> "Size"`` too),
                   ``BinaryDeserialize``
:mod:`.bytearrays` ``ByteArrayQ``, ``Length`` and ``Hash[..., "ByteArray"]`` of
                   a ``ByteArray``, ``ByteArrayToString``, ``StringToByteArray``
:mod:`.bitwise`    ``BitAnd``, ``BitOr``, ``BitXor``, ``BitNot``
:mod:`.aborts`     ``CheckAbort`` that absorbs the client's ABORT,
                   ``AbortProtect``
:mod:`.rawjson`    ``Import``/``ImportString`` of "RawJSON",
                   ``Developer`ReadRawJSONString``, ``Developer`ReadRawJSONFile``
:mod:`.letters`    ``FromLetterNumber``
:mod:`.symbols`    the WSTP packet heads and ``IPAddress`` as ``System``` symbols
=================  ==========================================================

:func:`contribute` adds them to a Mathics3 ``Definitions``;
:class:`linkserver.kernel.evaluator.MathicsEvaluator` does it for every session.
Where a built-in of Mathics3 is extended (``Length``, ``Hash``, ``CheckAbort``,
``BinaryWrite``, ``WriteString``, ``Close``, ``Import``, ``ImportString``), the
replacement is a subclass of Mathics3's own class with one more rule, so all
its other rules stay; one that Mathics3 did not load (its files module is off)
is not added.
"""

from __future__ import annotations

from typing import Any

from . import aborts, bitwise, bytearrays, letters, rawjson, serialize, sockets, symbols
from .aborts import Absorb

__all__ = ["Absorb", "builtins", "contribute"]

#: Mathics3 built-ins that are extended here, and the module that extends each.
_EXTENDED: dict[str, type[Any]] = {
    "System`Length": bytearrays.Length,
    "System`Hash": bytearrays.Hash,
    "System`CheckAbort": aborts.CheckAbort,
    "System`BinaryWrite": sockets.BinaryWrite,
    "System`WriteString": sockets.WriteString,
    "System`Close": sockets.Close,
    "System`Import": rawjson.Import,
    "System`ImportString": rawjson.ImportString,
}

_NEW: tuple[type[Any], ...] = (
    aborts.AbortProtect,
    bitwise.BitAnd, bitwise.BitOr, bitwise.BitXor, bitwise.BitNot,
    bytearrays.ByteArrayQ, bytearrays.ByteArrayToString, bytearrays.StringToByteArray,
    serialize.BinarySerialize, serialize.BinaryDeserialize,
    letters.FromLetterNumber,
    rawjson.ReadRawJSONString, rawjson.ReadRawJSONFile,
)

_SOCKETS: tuple[type[Any], ...] = (
    sockets.SocketConnect, sockets.SocketObject, sockets.SocketReadyQ,
    sockets.SocketReadMessage,
)

#: What a socket extension needs to exist first (the rest of its family).
_SOCKET_EXTENSIONS = ("System`BinaryWrite", "System`WriteString", "System`Close")


def builtins(definitions: Any) -> list[Any]:
    """The built-ins :func:`contribute` adds to ``definitions``, as Mathics3 ``Builtin`` objects."""
    loaded = set(definitions.builtin)
    out: list[Any] = []
    for cls in _NEW:
        out.append(cls(expression=False))
    out.extend(symbols.builtins(frozenset(loaded)))
    with_sockets = sockets.available()
    if with_sockets:
        out.extend(cls(expression=False) for cls in _SOCKETS)
    for name, cls in _EXTENDED.items():
        if name not in loaded:
            continue  # Mathics3 did not load it (files module off): do not bring it in
        if name in _SOCKET_EXTENSIONS and not with_sockets:
            continue
        out.append(cls(expression=False))
    return out


def contribute(definitions: Any) -> None:
    """Add the built-ins to a Mathics3 ``Definitions`` (after Mathics3's own are loaded)."""
    for builtin in builtins(definitions):
        builtin.contribute(definitions)
    definitions.clear_cache()
