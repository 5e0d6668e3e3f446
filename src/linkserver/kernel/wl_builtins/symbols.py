"""System` symbols of the Wolfram Language that only name things: packet heads, IPAddress.

In a Wolfram kernel ``ReturnPacket``, ``TextPacket`` and the other WSTP packet
heads are ``System``` symbols; in Mathics3 they are not defined, so text such
as ``Hold[ReturnPacket[_]]`` in a package makes ``Global`ReturnPacket`` (or a
private symbol of the package) and never matches what ``BinaryDeserialize``
reads. Making them here, with no rules, gives them their Wolfram Language
names; what they mean on a link is :mod:`linkserver.protocol.packets`'.
Names Mathics3 already defines are left as they are.
"""

from __future__ import annotations

from typing import Any

from mathics.core.attributes import A_PROTECTED
from mathics.core.builtin import Builtin

__all__ = ["NAMES", "builtins"]

#: The WSTP packet heads (DESIGN.md "Reference numbers from wstp.h"), and the
#: head SocketObject properties give addresses in.
NAMES = (
    "InputPacket", "TextPacket", "ReturnPacket", "ReturnTextPacket", "MessagePacket",
    "MenuPacket", "CallPacket", "InputNamePacket", "OutputNamePacket", "SyntaxPacket",
    "DisplayPacket", "DisplayEndPacket", "EvaluatePacket", "EnterTextPacket",
    "EnterExpressionPacket", "ReturnExpressionPacket", "SuspendPacket", "ResumePacket",
    "BeginDialogPacket", "EndDialogPacket", "InputStringPacket", "IPAddress",
)


def _inert(name: str) -> type[Any]:
    doc = f"""
    <dl>
      <dt>'{name}'[...]
      <dd>is the Wolfram Language's '{name}'; it has no rules of its own.
    </dl>
    """
    return type(name, (Builtin,), {
        "__doc__": doc,
        "__module__": __name__,
        "name": name,
        "context": "System`",
        "attributes": A_PROTECTED,
        "summary_text": "IP address" if name == "IPAddress" else "a WSTP packet head",
    })


def builtins(defined: set[str] | frozenset[str]) -> list[Any]:
    """One builtin per name of :data:`NAMES` that ``defined`` (full names) lacks."""
    return [_inert(n)(expression=False) for n in NAMES if f"System`{n}" not in defined]
