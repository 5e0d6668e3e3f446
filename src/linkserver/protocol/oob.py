"""Urgent out-of-band messages and close codes (docs/protocol.md §5, §6).

Messages travel in MESSAGE frames beside the expression stream, as WSTP's
``WSPutMessage`` does: a receiver keeps them apart from expressions, so an
abort overtakes results already queued. The numbers are WSTP's, so people who
know ``wstp.h`` recognise them.
"""

from __future__ import annotations

import enum
import struct

from ..errors import RemoteProtocolError

__all__ = [
    "CLOSE_HEADER",
    "MESSAGE",
    "CloseCode",
    "UrgentMessage",
    "decode_close",
    "decode_message",
    "encode_close",
    "encode_message",
]

MESSAGE = struct.Struct("<II")  # message code, argument
CLOSE_HEADER = struct.Struct("<H")  # close code; UTF-8 reason follows

#: Reasons longer than this are cut: a close reason is one sentence.
MAX_REASON_BYTES = 1024


class UrgentMessage(enum.IntEnum):
    """WSTP's urgent message codes (``wstp.h``: ``WSTerminateMessage`` ...).

    Codes 128-255 are free for applications, as in WSTP.
    """

    TERMINATE = 1
    INTERRUPT = 2
    ABORT = 3
    SYNCHRONIZE = 5
    IMDYING = 6
    LINK_CLOSING = 9
    AUTHENTICATE_FAILURE = 10
    # Ours, in the user range (docs/protocol.md §5; 200 is the status request):
    # server to kernel only, the argument is a preemptive request's tag (§8.9).
    PREEMPT = 201  #: preemptive request n waits on the expression stream: serve it now
    PREEMPT_ABORT = 202  #: abort preemptive request n (in hand or still waiting)


class CloseCode(enum.IntEnum):
    """Why a link was closed (docs/protocol.md §6)."""

    NORMAL = 0  #: done; nothing went wrong
    GOING_AWAY = 1  #: the server is shutting down
    PROTOCOL_ERROR = 2  #: the peer broke the protocol
    FRAME_TOO_LARGE = 3  #: a frame above max_frame_size
    IDLE_TIMEOUT = 4  #: nothing received for idle_timeout seconds
    HANDSHAKE_TIMEOUT = 5  #: the handshake did not finish in time
    UNSUPPORTED_VERSION = 6  #: no protocol version in common
    INTERNAL_ERROR = 7  #: a bug on the sender's side
    AUTH_FAILED = 8  #: reserved for key authentication
    TOO_MANY_LINKS = 9  #: no room: the server's link limit, or no kernel came free in time


def encode_message(message: int, argument: int = 0) -> bytes:
    """Return the payload of a MESSAGE frame.

    Raises:
        ValueError: code or argument outside 0..2**32-1.
    """
    if not (0 <= message < 2**32 and 0 <= argument < 2**32):
        raise ValueError("message code and argument must fit in 32 unsigned bits")
    return MESSAGE.pack(message, argument)


def decode_message(payload: bytes) -> tuple[int, int]:
    """Parse a MESSAGE payload into ``(code, argument)``; known codes become :class:`UrgentMessage`.

    Raises:
        RemoteProtocolError: the payload is not 8 bytes.
    """
    if len(payload) != MESSAGE.size:
        raise RemoteProtocolError(
            f"a MESSAGE frame must carry 8 bytes, not {len(payload)}", code="bad-frame"
        )
    code, argument = MESSAGE.unpack(payload)
    try:
        return UrgentMessage(code), argument
    except ValueError:
        return code, argument


def encode_close(code: int, reason: str = "") -> bytes:
    """Return the payload of a CLOSE frame (the reason is cut to 1024 bytes)."""
    data = reason.encode("utf-8")[:MAX_REASON_BYTES]
    return CLOSE_HEADER.pack(code) + data.decode("utf-8", "ignore").encode("utf-8")


def decode_close(payload: bytes) -> tuple[CloseCode | int, str]:
    """Parse a CLOSE payload into ``(code, reason)``.

    Raises:
        RemoteProtocolError: the payload is shorter than 2 bytes.
    """
    if len(payload) < CLOSE_HEADER.size:
        raise RemoteProtocolError("a CLOSE frame must carry at least 2 bytes", code="bad-frame")
    (code,) = CLOSE_HEADER.unpack_from(payload)
    reason = payload[2 : 2 + MAX_REASON_BYTES].decode("utf-8", "replace")
    try:
        return CloseCode(code), reason
    except ValueError:
        return code, reason
