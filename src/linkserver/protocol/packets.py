"""WSTP packets as frozen dataclasses (docs/protocol.md §8).

A packet is an ordinary expression whose head is one of WSTP's packet heads
(``EvaluatePacket[1+1]``); it travels in an EXPRESSION frame like any other
expression, so a Wolfram Language client can ``BinaryDeserialize`` it as is.
This module names the heads, gives each its WSTP number (``wstp.h``), and
converts between packet objects and wolframclient expressions. What a kernel
answers to each packet is the kernel's business, not this module's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any, ClassVar, overload

from wolframclient.language.expression import WLFunction, WLSymbol

__all__ = [
    "BeginDialogPacket",
    "CALL_ANSWER",
    "CALL_FAILED",
    "CallPacket",
    "DisplayEndPacket",
    "DisplayPacket",
    "EndDialogPacket",
    "EnterExpressionPacket",
    "EnterTextPacket",
    "EvaluatePacket",
    "InputNamePacket",
    "InputPacket",
    "INSTALL",
    "InputStringPacket",
    "KERNEL_CALL",
    "MenuPacket",
    "MessagePacket",
    "OutputNamePacket",
    "PREEMPTIVE",
    "PREEMPTIVE_ANSWER",
    "Packet",
    "PacketType",
    "ResumePacket",
    "ReturnExpressionPacket",
    "ReturnPacket",
    "ReturnTextPacket",
    "SuspendPacket",
    "SyntaxPacket",
    "TextPacket",
    "UNINSTALL",
    "packet_from_expr",
    "packet_type",
    "short_head",
    "short_name",
]


#: The head of a preemptive request (docs/protocol.md §8.9): a client sends
#: ``LinkServer`Preemptive[EvaluatePacket[e]]``; the server hands a kernel
#: ``LinkServer`Preemptive[n, EvaluatePacket[e]]``, ``n`` a tag of its choosing.
PREEMPTIVE = "LinkServer`Preemptive"

#: The head a kernel wraps every packet of a preemptive request's answer in:
#: ``LinkServer`PreemptiveAnswer[n, packet]`` (kernel to server only).
PREEMPTIVE_ANSWER = "LinkServer`PreemptiveAnswer"

# Installable functions (docs/protocol.md §8.10).

#: A client installs a function: ``LinkServer`Install["name", index]``; the
#: server hands its kernel ``LinkServer`Install[owner, "name", index]``.
INSTALL = "LinkServer`Install"

#: A client uninstalls one: ``LinkServer`Uninstall["name"]``; the kernel gets
#: ``LinkServer`Uninstall[owner, "name"]``.
UNINSTALL = "LinkServer`Uninstall"

#: A kernel calls an installed function: ``LinkServer`CallPacket[call, owner,
#: index, {args}]`` (kernel to server only; the client gets ``CallPacket[index, {args}]``).
KERNEL_CALL = "LinkServer`CallPacket"

#: The server answers call ``n`` of a kernel: ``LinkServer`CallAnswer[n,
#: ReturnPacket[result]]`` or ``LinkServer`CallAnswer[n, LinkServer`CallFailed["tag", "text"]]``.
CALL_ANSWER = "LinkServer`CallAnswer"

#: Why a call could not be answered (inside ``LinkServer`CallAnswer``).
CALL_FAILED = "LinkServer`CallFailed"


class PacketType(enum.IntEnum):
    """WSTP's packet numbers (``wstp.h``: ``ILLEGALPKT`` ... ``INPUTSTRPKT``)."""

    ILLEGAL = 0
    INPUT = 1
    TEXT = 2
    RETURN = 3
    RETURN_TEXT = 4
    MESSAGE = 5
    MENU = 6
    CALL = 7
    INPUT_NAME = 8
    OUTPUT_NAME = 9
    SYNTAX = 10
    DISPLAY = 11
    DISPLAY_END = 12
    EVALUATE = 13
    ENTER_TEXT = 14
    ENTER_EXPRESSION = 15
    RETURN_EXPRESSION = 16
    SUSPEND = 17
    RESUME = 18
    BEGIN_DIALOG = 19
    END_DIALOG = 20
    INPUT_STRING = 21


@dataclass(frozen=True, slots=True)
class Packet:
    """Base of every packet; subclasses name their head and number."""

    head: ClassVar[str] = ""
    number: ClassVar[PacketType] = PacketType.ILLEGAL

    def to_expr(self) -> Any:
        """Return the packet as a wolframclient expression, e.g. ``EvaluatePacket[x]``."""
        # Not dataclasses.astuple: it deep-copies, and a ReturnPacket may hold megabytes.
        return WLFunction(WLSymbol(self.head), *(getattr(self, f.name) for f in fields(self)))


@dataclass(frozen=True, slots=True)
class InputPacket(Packet):
    """The kernel asks for a line of input (``Input[prompt]``)."""

    head = "InputPacket"
    number = PacketType.INPUT
    prompt: Any = ""


@dataclass(frozen=True, slots=True)
class TextPacket(Packet):
    """Printed output or the text of a message."""

    head = "TextPacket"
    number = PacketType.TEXT
    text: Any = ""


@dataclass(frozen=True, slots=True)
class ReturnPacket(Packet):
    """The result of an ``EvaluatePacket``."""

    head = "ReturnPacket"
    number = PacketType.RETURN
    expr: Any = None


@dataclass(frozen=True, slots=True)
class ReturnTextPacket(Packet):
    """The formatted result of an ``EnterTextPacket``."""

    head = "ReturnTextPacket"
    number = PacketType.RETURN_TEXT
    text: Any = ""


@dataclass(frozen=True, slots=True)
class MessagePacket(Packet):
    """A message was issued: ``MessagePacket[symbol, tag]``; a TextPacket follows."""

    head = "MessagePacket"
    number = PacketType.MESSAGE
    symbol: Any = None
    tag: Any = None


@dataclass(frozen=True, slots=True)
class MenuPacket(Packet):
    """An interrupt menu: ``MenuPacket[code, prompt]``."""

    head = "MenuPacket"
    number = PacketType.MENU
    code: Any = 0
    prompt: Any = ""


@dataclass(frozen=True, slots=True)
class CallPacket(Packet):
    """A call to an installed function: ``CallPacket[index, args]``."""

    head = "CallPacket"
    number = PacketType.CALL
    index: Any = 0
    args: Any = ()


@dataclass(frozen=True, slots=True)
class InputNamePacket(Packet):
    """The next input prompt, e.g. ``"In[2]:= "``."""

    head = "InputNamePacket"
    number = PacketType.INPUT_NAME
    name: Any = ""


@dataclass(frozen=True, slots=True)
class OutputNamePacket(Packet):
    """The output label, e.g. ``"Out[1]= "``."""

    head = "OutputNamePacket"
    number = PacketType.OUTPUT_NAME
    name: Any = ""


@dataclass(frozen=True, slots=True)
class SyntaxPacket(Packet):
    """The position of a syntax error in an ``EnterTextPacket``."""

    head = "SyntaxPacket"
    number = PacketType.SYNTAX
    position: Any = 0


@dataclass(frozen=True, slots=True)
class DisplayPacket(Packet):
    """Part of graphical output."""

    head = "DisplayPacket"
    number = PacketType.DISPLAY
    data: Any = ""


@dataclass(frozen=True, slots=True)
class DisplayEndPacket(Packet):
    """The last part of graphical output."""

    head = "DisplayEndPacket"
    number = PacketType.DISPLAY_END
    data: Any = ""


@dataclass(frozen=True, slots=True)
class EvaluatePacket(Packet):
    """Evaluate ``expr``; the answer is a ``ReturnPacket``."""

    head = "EvaluatePacket"
    number = PacketType.EVALUATE
    expr: Any = None


@dataclass(frozen=True, slots=True)
class EnterTextPacket(Packet):
    """Evaluate input text as a notebook would (``In``/``Out`` numbering)."""

    head = "EnterTextPacket"
    number = PacketType.ENTER_TEXT
    text: Any = ""


@dataclass(frozen=True, slots=True)
class EnterExpressionPacket(Packet):
    """Evaluate ``expr`` with ``In``/``Out`` numbering; answer ``ReturnExpressionPacket``."""

    head = "EnterExpressionPacket"
    number = PacketType.ENTER_EXPRESSION
    expr: Any = None


@dataclass(frozen=True, slots=True)
class ReturnExpressionPacket(Packet):
    """The result of an ``EnterExpressionPacket``."""

    head = "ReturnExpressionPacket"
    number = PacketType.RETURN_EXPRESSION
    expr: Any = None


@dataclass(frozen=True, slots=True)
class SuspendPacket(Packet):
    """The kernel suspends output to this link."""

    head = "SuspendPacket"
    number = PacketType.SUSPEND


@dataclass(frozen=True, slots=True)
class ResumePacket(Packet):
    """The kernel resumes output to this link."""

    head = "ResumePacket"
    number = PacketType.RESUME


@dataclass(frozen=True, slots=True)
class BeginDialogPacket(Packet):
    """A dialog subsession starts at ``level``."""

    head = "BeginDialogPacket"
    number = PacketType.BEGIN_DIALOG
    level: Any = 1


@dataclass(frozen=True, slots=True)
class EndDialogPacket(Packet):
    """A dialog subsession at ``level`` ends."""

    head = "EndDialogPacket"
    number = PacketType.END_DIALOG
    level: Any = 1


@dataclass(frozen=True, slots=True)
class InputStringPacket(Packet):
    """The kernel asks for a string (``InputString[prompt]``)."""

    head = "InputStringPacket"
    number = PacketType.INPUT_STRING
    prompt: Any = ""


_BY_HEAD: dict[str, type[Packet]] = {
    cls.head: cls for cls in Packet.__subclasses__()
}
# Arguments per head, computed once: dataclasses.fields() costs a microsecond a call.
_ARITY: dict[str, int] = {head: len(fields(cls)) for head, cls in _BY_HEAD.items()}


@overload
def short_name(name: str) -> str: ...
@overload
def short_name(name: None) -> None: ...
@overload
def short_name(name: str | None) -> str | None: ...
def short_name(name: str | None) -> str | None:
    """A symbol's name without its context: ``"System`ReturnPacket"`` -> ``"ReturnPacket"``.

    Packet heads arrive either way (``BinarySerialize`` drops ``System``` and a
    Wolfram Language client may not), so every side compares short names.
    ``None`` (no head) stays ``None``.
    """
    return name.rpartition("`")[2] if name else name


def short_head(expr: Any) -> str:
    """The short name of ``expr``'s head (``"ReturnPacket"``), or "" if its head is no symbol."""
    if isinstance(expr, WLFunction) and isinstance(expr.head, WLSymbol):
        return short_name(str(expr.head.name))
    return ""


def packet_type(expr: Any) -> PacketType:
    """Return the WSTP packet number of ``expr`` (``ILLEGAL`` if it is no packet), like ``WSNextPacket``."""
    cls = _BY_HEAD.get(short_head(expr))
    return cls.number if cls is not None else PacketType.ILLEGAL


def packet_from_expr(expr: Any) -> Packet | None:
    """Return the packet object for ``expr``, or None if its head is no packet head or its arity is wrong."""
    head = short_head(expr)
    cls = _BY_HEAD.get(head)
    if cls is None:
        return None
    args = expr.args
    if len(args) != _ARITY[head]:
        return None
    return cls(*args)
