"""Frames: the unit of the byte stream after the handshake (docs/protocol.md §4).

A frame is a 5-byte header -- one byte of kind, four bytes of payload length,
unsigned little-endian -- followed by the payload. This module knows how to
write frames and how to cut them out of a growing buffer; it knows nothing of
sockets or of what the payloads mean (see :mod:`.connection` and :mod:`.oob`).

Theory of operation: :class:`FrameParser` keeps one ``bytearray``. Each call to
:meth:`FrameParser.next_frame` looks at the header only when five bytes are
there, checks the kind and the declared length against the limit *before*
waiting for the payload (so a frame that declares 4 GiB is refused at once and
nothing is ever allocated from a declared length), and returns a frame only
when all of its payload has arrived -- the h11 "extract if complete, else
None" pattern. Consumed bytes are dropped in one slice per call batch.
"""

from __future__ import annotations

import enum
import struct

from ..errors import LimitError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "HEADER",
    "FrameKind",
    "FrameParser",
    "encode_frame",
]

#: kind (u8) and payload length (u32, little-endian, as WXF itself is).
HEADER = struct.Struct("<BI")

# 256 MiB. Big enough for a 2-million-element packed array eight times over and
# for the images people pass through links; small enough that one peer cannot
# make us hold more than that for a single frame. Memory is only ever taken as
# bytes really arrive, never from the declared length.
DEFAULT_MAX_FRAME_SIZE = 256 * 1024 * 1024


class FrameKind(enum.IntEnum):
    """The kinds of frame (docs/protocol.md §4.1)."""

    EXPRESSION = 0x01  #: payload is one WXF-encoded expression
    MESSAGE = 0x02  #: an urgent out-of-band message (code, argument)
    CLOSE = 0x03  #: close code and reason; the sender sends nothing after it
    PING = 0x04  #: keep-alive; the peer answers with PONG and the same payload
    PONG = 0x05  #: answer to PING


_KINDS = {int(k): k for k in FrameKind}  # a dict lookup is cheaper than FrameKind(n)


def encode_frame(kind: FrameKind, payload: bytes) -> bytes:
    """Return the bytes of one frame.

    Args:
        kind: the frame kind.
        payload: the frame's payload.

    Returns:
        header followed by payload.
    """
    return HEADER.pack(kind, len(payload)) + payload


class FrameParser:
    """Cuts complete frames out of bytes fed to it in arbitrary pieces.

    Args:
        max_frame_size: the largest payload accepted, in bytes.
    """

    __slots__ = ("_buf", "_pos", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        # bytes while it holds one received chunk (the common case: frames are
        # sliced out of it with a single copy), a bytearray once a partial
        # frame has to be extended.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self.max_frame_size = max_frame_size

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._pos >= len(self._buf):
            self._buf = bytes(data)
            self._pos = 0
        elif isinstance(self._buf, bytes):
            self._buf = bytearray(self._buf[self._pos :]) + data
            self._pos = 0
        else:
            self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf) - self._pos

    def next_frame(self) -> tuple[FrameKind, bytes] | None:
        """Return the next complete frame, or ``None`` if it has not all arrived.

        Raises:
            RemoteProtocolError: the header names an unknown frame kind.
            LimitError: the header declares a payload above ``max_frame_size``.
        """
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if end - pos < 5:
            self._compact()
            return None
        code, length = HEADER.unpack_from(buf, pos)
        kind = _KINDS.get(code)
        if kind is None:
            raise RemoteProtocolError(
                f"the peer sent a frame of unknown kind 0x{code:02x}; "
                "it does not follow docs/protocol.md §4",
                code="bad-frame",
            )
        if length > self.max_frame_size:
            raise LimitError(
                f"the peer declared a frame of {length} bytes, above the limit of "
                f"{self.max_frame_size} bytes (max_frame_size)",
                code="frame-too-large",
            )
        start = pos + 5
        stop = start + length
        if stop > end:
            self._compact()
            return None
        payload = buf[start:stop]
        self._pos = stop
        return kind, payload if type(payload) is bytes else bytes(payload)

    def _compact(self) -> None:
        # Drop what has been consumed once we have to wait for more bytes, so
        # the buffer never holds more than one partial frame plus what arrived.
        if self._pos:
            if isinstance(self._buf, bytes):
                self._buf = bytearray(self._buf[self._pos :])
            else:
                del self._buf[: self._pos]
            self._pos = 0
