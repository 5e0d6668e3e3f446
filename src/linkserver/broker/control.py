"""Requests for the server itself, recognised among requests for kernels.

The WSTP link-server recipe stops a server with ``$KeepRunning = False``.
:func:`is_stop_request` recognises that request in any of the packet forms a
client may send, cheaply: only small payloads that mention ``KeepRunning``
are decoded at all. What to do about it (who may stop the server) is the
service's decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wolframclient.language.expression import WLFunction, WLSymbol

from .. import wxf
from ..aio.link import Link
from ..errors import WXFDecodeError

__all__ = ["Control", "is_stop_request"]

#: ``control(link, payload) -> handled``: a hook that may answer a request itself.
Control = Callable[[Link, bytes], bool]

_MAX_CONTROL_SIZE = 256  # "$KeepRunning = False" in any packet is far smaller


def _name(expr: Any) -> str:
    if isinstance(expr, WLSymbol):
        name: str = expr.name
        return name.rpartition("`")[2]
    return ""


def _is_stop_expr(expr: Any) -> bool:
    return (
        isinstance(expr, WLFunction)
        and _name(expr.head) == "Set"
        and len(expr.args) == 2
        and _name(expr.args[0]) == "$KeepRunning"
        and expr.args[1] is False
    )


def is_stop_request(payload: bytes) -> bool:
    """True if ``payload`` asks to set ``$KeepRunning = False``, as any request packet."""
    if len(payload) > _MAX_CONTROL_SIZE or b"KeepRunning" not in payload:
        return False
    try:
        expr = wxf.loads(payload)
    except WXFDecodeError:
        return False
    if isinstance(expr, WLFunction) and _name(expr.head) in (
        "EvaluatePacket", "EnterExpressionPacket",
    ) and len(expr.args) == 1:
        expr = expr.args[0]
    elif isinstance(expr, WLFunction) and _name(expr.head) == "EnterTextPacket":
        return _is_stop_text(expr.args[0] if len(expr.args) == 1 else None)
    if isinstance(expr, WLFunction) and _name(expr.head) == "ToExpression" and len(expr.args) == 1:
        return _is_stop_text(expr.args[0])  # Client.evaluate("$KeepRunning = False")
    return _is_stop_expr(expr)


def _is_stop_text(text: Any) -> bool:
    return isinstance(text, str) and "".join(text.split()).rstrip(";") == "$KeepRunning=False"
