"""The linkserver protocol without I/O: handshake, frames, messages, packets.

Nothing here imports ``socket``, ``asyncio``, ``time`` or ``random``: clocks
and link ids are passed in, so every behaviour can be tested by feeding bytes
(docs/protocol.md is the normative description).
"""

from .connection import Connection, Side, State
from .events import (
    CloseReceived,
    ConnectionFailed,
    Event,
    ExpressionReceived,
    HandshakeComplete,
    MessageReceived,
    PongReceived,
)
from .framing import FrameKind
from .handshake import MAGIC, VERSION, LinkMode
from .oob import CloseCode, UrgentMessage

__all__ = [
    "MAGIC",
    "VERSION",
    "CloseCode",
    "CloseReceived",
    "Connection",
    "ConnectionFailed",
    "Event",
    "ExpressionReceived",
    "FrameKind",
    "HandshakeComplete",
    "LinkMode",
    "MessageReceived",
    "PongReceived",
    "Side",
    "State",
    "UrgentMessage",
]
