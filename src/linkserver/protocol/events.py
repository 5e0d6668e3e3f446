"""What a :class:`~.connection.Connection` reports after it is fed bytes.

Each event is a frozen dataclass; the I/O layer turns them into link
behaviour. Payloads of expressions stay WXF bytes here: decoding happens
where the expression is wanted, outside the core (docs/protocol.md §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LinkError
from .handshake import LinkMode
from .oob import CloseCode, UrgentMessage

__all__ = [
    "CloseReceived",
    "ConnectionFailed",
    "Event",
    "ExpressionReceived",
    "HandshakeComplete",
    "MessageReceived",
    "PongReceived",
]


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The hellos were exchanged; frames may flow."""

    link_id: bytes
    mode: LinkMode
    peer_version: tuple[int, int]


@dataclass(frozen=True, slots=True)
class ExpressionReceived:
    """One expression arrived, as WXF bytes."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """An urgent message (abort, interrupt, ...) arrived."""

    message: UrgentMessage | int
    argument: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The answer to one of our pings."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer closed the link; it will send nothing more."""

    code: CloseCode | int
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The link ended abnormally; ``error`` says why (and is what users see)."""

    error: LinkError


Event = (
    HandshakeComplete
    | ExpressionReceived
    | MessageReceived
    | PongReceived
    | CloseReceived
    | ConnectionFailed
)
