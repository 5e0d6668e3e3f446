"""The answers the server makes by itself: failures, ``$Aborted``, plain values.

docs/protocol.md §8.3: every request gets exactly one answer, in the shape of
the request's normal answer. A request whose final packet is ``ReturnPacket``
(an ``EvaluatePacket``) ends with ``ReturnPacket[v]``; one answered by the
closing ``InputNamePacket`` (``EnterTextPacket``, ``EnterExpressionPacket``)
ends with ``ReturnTextPacket["v"]`` and ``InputNamePacket["In[?]:= "]``. A
failure is a ``MessagePacket[LinkServer, tag]`` and its ``TextPacket`` first.
Every part of the server that answers on a kernel's behalf -- the broker, the
pools, the service -- builds its answers here, as encoded payloads ready to
send.
"""

from __future__ import annotations

from functools import lru_cache

from wolframclient.language.expression import WLFunction, WLSymbol

from .. import wxf

__all__ = ["ENTER_FINAL", "EVALUATE_FINAL", "aborted", "failure", "message", "value"]

#: The final packet of an ``EvaluatePacket`` request.
EVALUATE_FINAL = "ReturnPacket"
#: The final packet of an ``EnterTextPacket`` or ``EnterExpressionPacket`` request.
ENTER_FINAL = "InputNamePacket"

_UNKNOWN_PROMPT = "In[?]:= "


def _packet(head: str, *args: object) -> bytes:
    return wxf.dumps(WLFunction(WLSymbol(head), *args))


@lru_cache(maxsize=None)
def _ending(final: str, text: str, expr: object) -> tuple[bytes, ...]:
    if final == ENTER_FINAL:
        return (_packet("ReturnTextPacket", text), _packet("InputNamePacket", _UNKNOWN_PROMPT))
    return (_packet("ReturnPacket", expr),)


def value(final: str, expr: bool | str) -> list[bytes]:
    """The packets that end a request with ``expr`` (``False``, ``"$Failed"``...).

    A string names a symbol (``"$Failed"``); a bool is itself.
    """
    text = expr if isinstance(expr, str) else str(expr)
    wl_value: object = WLSymbol(expr) if isinstance(expr, str) else expr
    return list(_ending(final, text, wl_value))


def aborted(final: str) -> list[bytes]:
    """The packets that answer an aborted request."""
    return value(final, "$Aborted")


def message(tag: str, text: str) -> list[bytes]:
    """The packets of the message ``LinkServer::tag`` (side output: no final packet)."""
    return [
        _packet("MessagePacket", WLSymbol("LinkServer"), tag),
        _packet("TextPacket", f"LinkServer::{tag}: {text}"),
    ]


def failure(final: str, tag: str, text: str) -> list[bytes]:
    """The packets of the failure ``LinkServer::tag``, one sentence ``text`` saying why."""
    return [*message(tag, text), *value(final, "$Failed")]
